// Writes RGB frames as a real video file through libavcodec/libavformat: the container comes from
// the extension (.mp4 .mkv .avi .webm), the codec from `VideoCodec`. Used for the synthetic demo data
// and for the tests' generated videos; output is written to a temporary name and renamed when complete.

import CFFmpeg
import Foundation

public enum VideoCodec: String, CaseIterable, Sendable {
    case h264, mpeg4, vp9

    var id: AVCodecID {
        switch self {
        case .h264: return AV_CODEC_ID_H264
        case .mpeg4: return AV_CODEC_ID_MPEG4
        case .vp9: return AV_CODEC_ID_VP9
        }
    }

    /// Whether this FFmpeg build can encode it (Debian's has libx264 and libvpx; others may not).
    public var isEncodable: Bool { avcodec_find_encoder(id) != nil }
    /// Whether this FFmpeg build can decode it.
    public var isDecodable: Bool { avcodec_find_decoder(id) != nil }

    /// H.264 when this FFmpeg can encode it, else MPEG-4 part 2.
    public static var preferred: VideoCodec { VideoCodec.h264.isEncodable ? .h264 : .mpeg4 }
}

public final class VideoEncoder {
    public let path: String
    public let width: Int
    public let height: Int
    private let temporaryPath: String
    private var format: UnsafeMutablePointer<AVFormatContext>?
    private var codec: UnsafeMutablePointer<AVCodecContext>?
    private var stream: UnsafeMutablePointer<AVStream>?
    private var frame: UnsafeMutablePointer<AVFrame>?
    private var packet: UnsafeMutablePointer<AVPacket>?
    private var sws: OpaquePointer?
    private var nextPts: Int64 = 0
    private var finished = false

    /// - Parameters:
    ///   - gop: keyframe interval in frames (small values make seeking tests meaningful).
    ///   - quality: 0 (best) ... 51 (worst), mapped to each codec's quantiser/CRF.
    ///   - fastStart: MP4 only: the index (moov) before the data, as streaming files have it.
    public init(path: String, width: Int, height: Int, fps: Int = 30, codec kind: VideoCodec = .preferred,
                gop: Int = 30, quality: Int = 18, fastStart: Bool = false) throws {
        _ = ffmpegQuiet
        self.path = path
        self.width = width
        self.height = height
        let url = URL(fileURLWithPath: path)
        temporaryPath = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.deletingPathExtension().lastPathComponent).partial.\(url.pathExtension)").path
        guard width > 0, height > 0, width % 2 == 0, height % 2 == 0 else {
            throw VideoError.encodeFailed(path: path, reason: "frame size \(width)x\(height) must be positive and even (YUV 4:2:0)")
        }
        guard let encoder = avcodec_find_encoder(kind.id) else {
            throw VideoError.unsupportedCodec(path: path, codec: kind.rawValue)
        }
        var rc = avformat_alloc_output_context2(&format, nil, nil, temporaryPath)
        guard rc >= 0, let format else {
            throw VideoError.encodeFailed(path: path, reason: "no container for extension '.\(url.pathExtension)': \(ffmpegMessage(rc))")
        }
        guard let ctx = avcodec_alloc_context3(encoder), let st = avformat_new_stream(format, nil) else {
            throw VideoError.encodeFailed(path: path, reason: "out of memory")
        }
        codec = ctx
        stream = st
        ctx.pointee.width = Int32(width)
        ctx.pointee.height = Int32(height)
        ctx.pointee.pix_fmt = AV_PIX_FMT_YUV420P
        ctx.pointee.time_base = AVRational(num: 1, den: Int32(fps))
        ctx.pointee.framerate = AVRational(num: Int32(fps), den: 1)
        ctx.pointee.gop_size = Int32(gop)
        ctx.pointee.max_b_frames = 0
        ctx.pointee.thread_count = 1
        let q = max(0, min(51, quality))
        switch kind {
        case .h264:
            av_opt_set(ctx.pointee.priv_data, "preset", "ultrafast", 0)
            av_opt_set(ctx.pointee.priv_data, "crf", "\(q)", 0)
        case .mpeg4:
            ctx.pointee.flags |= AV_CODEC_FLAG_QSCALE
            ctx.pointee.global_quality = Int32(FF_QP2LAMBDA) * Int32(max(2, q / 6))
        case .vp9:
            av_opt_set(ctx.pointee.priv_data, "deadline", "realtime", 0)
            av_opt_set(ctx.pointee.priv_data, "cpu-used", "8", 0)
            av_opt_set(ctx.pointee.priv_data, "crf", "\(min(63, q))", 0)
            ctx.pointee.bit_rate = 0
        }
        if (format.pointee.oformat.pointee.flags & AVFMT_GLOBALHEADER) != 0 {
            ctx.pointee.flags |= AV_CODEC_FLAG_GLOBAL_HEADER
        }
        rc = avcodec_open2(ctx, encoder, nil)
        guard rc >= 0 else { throw VideoError.encodeFailed(path: path, reason: "opening the \(kind.rawValue) encoder: \(ffmpegMessage(rc))") }
        rc = avcodec_parameters_from_context(st.pointee.codecpar, ctx)
        guard rc >= 0 else { throw VideoError.encodeFailed(path: path, reason: ffmpegMessage(rc)) }
        st.pointee.time_base = ctx.pointee.time_base
        st.pointee.avg_frame_rate = ctx.pointee.framerate

        rc = avio_open(&format.pointee.pb, temporaryPath, AVIO_FLAG_WRITE)
        guard rc >= 0 else { throw VideoError.encodeFailed(path: path, reason: "cannot create \(temporaryPath): \(ffmpegMessage(rc))") }
        var options: OpaquePointer? = nil
        if fastStart { av_dict_set(&options, "movflags", "+faststart", 0) }
        rc = avformat_write_header(format, &options)
        av_dict_free(&options)
        guard rc >= 0 else { throw VideoError.encodeFailed(path: path, reason: "writing the header: \(ffmpegMessage(rc))") }

        frame = av_frame_alloc()
        packet = av_packet_alloc()
        guard let frame else { throw VideoError.encodeFailed(path: path, reason: "out of memory") }
        frame.pointee.format = AV_PIX_FMT_YUV420P.rawValue
        frame.pointee.width = Int32(width)
        frame.pointee.height = Int32(height)
        rc = av_frame_get_buffer(frame, 0)
        guard rc >= 0 else { throw VideoError.encodeFailed(path: path, reason: ffmpegMessage(rc)) }
        sws = sws_getContext(Int32(width), Int32(height), AV_PIX_FMT_RGB24, Int32(width), Int32(height),
                             AV_PIX_FMT_YUV420P, SWS_BILINEAR, nil, nil, nil)
        guard sws != nil else { throw VideoError.encodeFailed(path: path, reason: "no RGB -> YUV converter") }
    }

    deinit {
        if !finished {
            if let format, format.pointee.pb != nil { avio_closep(&format.pointee.pb) }
            try? FileManager.default.removeItem(atPath: temporaryPath)
        }
        sws_freeContext(sws)
        av_frame_free(&frame)
        av_packet_free(&packet)
        avcodec_free_context(&codec)
        avformat_free_context(format)
    }

    /// Encodes one frame (its size must be the encoder's).
    public func append(_ rgb: RGBFrame) throws {
        guard rgb.width == width, rgb.height == height else {
            throw VideoError.encodeFailed(path: path, reason: "frame \(rgb.width)x\(rgb.height), encoder \(width)x\(height)")
        }
        guard let frame, let codec else { return }
        var rc = av_frame_make_writable(frame)
        guard rc >= 0 else { throw VideoError.encodeFailed(path: path, reason: ffmpegMessage(rc)) }
        rgb.pixels.withUnsafeBufferPointer { src in
            var srcData: [UnsafePointer<UInt8>?] = [src.baseAddress, nil, nil, nil]
            var srcStride: [Int32] = [Int32(width * 3), 0, 0, 0]
            withUnsafeMutablePointer(to: &frame.pointee.data) { dataTuple in
                dataTuple.withMemoryRebound(to: UnsafeMutablePointer<UInt8>?.self, capacity: 8) { dst in
                    withUnsafePointer(to: &frame.pointee.linesize) { strideTuple in
                        strideTuple.withMemoryRebound(to: Int32.self, capacity: 8) { dstStride in
                            _ = sws_scale(sws, &srcData, &srcStride, 0, Int32(height), dst, dstStride)
                        }
                    }
                }
            }
        }
        frame.pointee.pts = nextPts
        nextPts += 1
        rc = avcodec_send_frame(codec, frame)
        guard rc >= 0 else { throw VideoError.encodeFailed(path: path, reason: ffmpegMessage(rc)) }
        try writePackets()
    }

    private func writePackets() throws {
        guard let codec, let packet, let format, let stream else { return }
        while true {
            let rc = avcodec_receive_packet(codec, packet)
            if rc == sfnet_averror_eagain() || rc == sfnet_averror_eof() { return }
            guard rc >= 0 else { throw VideoError.encodeFailed(path: path, reason: ffmpegMessage(rc)) }
            av_packet_rescale_ts(packet, codec.pointee.time_base, stream.pointee.time_base)
            packet.pointee.stream_index = stream.pointee.index
            let w = av_interleaved_write_frame(format, packet)
            guard w >= 0 else { throw VideoError.encodeFailed(path: path, reason: ffmpegMessage(w)) }
        }
    }

    /// Flushes the encoder, writes the trailer and moves the file to `path`.
    public func finish() throws {
        guard !finished, let format else { return }
        _ = avcodec_send_frame(codec, nil)
        try writePackets()
        var rc = av_write_trailer(format)
        guard rc >= 0 else { throw VideoError.encodeFailed(path: path, reason: "writing the trailer: \(ffmpegMessage(rc))") }
        rc = avio_closep(&format.pointee.pb)
        guard rc >= 0 else { throw VideoError.encodeFailed(path: path, reason: ffmpegMessage(rc)) }
        guard rename(temporaryPath, path) == 0 else {
            throw VideoError.encodeFailed(path: path, reason: "rename from \(temporaryPath): \(String(cString: strerror(errno)))")
        }
        finished = true
    }

    /// Encodes `frames` into `path` in one call.
    public static func write(_ frames: [RGBFrame], to path: String, fps: Int = 30, codec: VideoCodec = .preferred,
                             gop: Int = 30, quality: Int = 18, fastStart: Bool = false) throws {
        guard let first = frames.first else { throw VideoError.encodeFailed(path: path, reason: "no frames") }
        let encoder = try VideoEncoder(path: path, width: first.width, height: first.height, fps: fps, codec: codec,
                                       gop: gop, quality: quality, fastStart: fastStart)
        for f in frames { try encoder.append(f) }
        try encoder.finish()
    }
}

/// Writes single images (PNG, or JPEG with `.jpg`) through libavcodec's image encoders:
/// frame folders for tests and exports.
public enum ImageWriter {
    public static func write(_ rgb: RGBFrame, to path: String, jpegQuality: Int = 2) throws {
        _ = ffmpegQuiet
        let ext = (path as NSString).pathExtension.lowercased()
        let isJPEG = ext == "jpg" || ext == "jpeg"
        guard let encoder = avcodec_find_encoder(isJPEG ? AV_CODEC_ID_MJPEG : AV_CODEC_ID_PNG) else {
            throw VideoError.unsupportedCodec(path: path, codec: isJPEG ? "mjpeg" : "png")
        }
        var ctx = avcodec_alloc_context3(encoder)
        var frame = av_frame_alloc()
        var packet = av_packet_alloc()
        var sws: OpaquePointer? = nil
        defer { avcodec_free_context(&ctx); av_frame_free(&frame); av_packet_free(&packet); sws_freeContext(sws) }
        guard let ctx, let frame, let packet else { throw VideoError.encodeFailed(path: path, reason: "out of memory") }
        let pixFmt = isJPEG ? AV_PIX_FMT_YUVJ444P : AV_PIX_FMT_RGB24
        ctx.pointee.width = Int32(rgb.width)
        ctx.pointee.height = Int32(rgb.height)
        ctx.pointee.pix_fmt = pixFmt
        ctx.pointee.time_base = AVRational(num: 1, den: 1)
        if isJPEG {
            ctx.pointee.flags |= AV_CODEC_FLAG_QSCALE
            ctx.pointee.global_quality = Int32(FF_QP2LAMBDA) * Int32(jpegQuality)
        }
        var rc = avcodec_open2(ctx, encoder, nil)
        guard rc >= 0 else { throw VideoError.encodeFailed(path: path, reason: ffmpegMessage(rc)) }
        frame.pointee.format = pixFmt.rawValue
        frame.pointee.width = Int32(rgb.width)
        frame.pointee.height = Int32(rgb.height)
        frame.pointee.quality = ctx.pointee.global_quality
        rc = av_frame_get_buffer(frame, 0)
        guard rc >= 0 else { throw VideoError.encodeFailed(path: path, reason: ffmpegMessage(rc)) }
        sws = sws_getContext(Int32(rgb.width), Int32(rgb.height), AV_PIX_FMT_RGB24, Int32(rgb.width), Int32(rgb.height),
                             isJPEG ? AV_PIX_FMT_YUV444P : AV_PIX_FMT_RGB24, SWS_BILINEAR, nil, nil, nil)
        if isJPEG, let sws {
            let c = sws_getCoefficients(SWS_CS_DEFAULT)
            _ = sws_setColorspaceDetails(sws, c, 1, c, 1, 0, 1 << 16, 1 << 16)
        }
        rgb.pixels.withUnsafeBufferPointer { src in
            var srcData: [UnsafePointer<UInt8>?] = [src.baseAddress, nil, nil, nil]
            var srcStride: [Int32] = [Int32(rgb.width * 3), 0, 0, 0]
            withUnsafeMutablePointer(to: &frame.pointee.data) { dataTuple in
                dataTuple.withMemoryRebound(to: UnsafeMutablePointer<UInt8>?.self, capacity: 8) { dst in
                    withUnsafePointer(to: &frame.pointee.linesize) { strideTuple in
                        strideTuple.withMemoryRebound(to: Int32.self, capacity: 8) { dstStride in
                            _ = sws_scale(sws, &srcData, &srcStride, 0, Int32(rgb.height), dst, dstStride)
                        }
                    }
                }
            }
        }
        rc = avcodec_send_frame(ctx, frame)
        guard rc >= 0 else { throw VideoError.encodeFailed(path: path, reason: ffmpegMessage(rc)) }
        _ = avcodec_send_frame(ctx, nil)
        var bytes = Data()
        while avcodec_receive_packet(ctx, packet) >= 0 {
            bytes.append(packet.pointee.data, count: Int(packet.pointee.size))
            av_packet_unref(packet)
        }
        guard !bytes.isEmpty else { throw VideoError.encodeFailed(path: path, reason: "the encoder produced no data") }
        do { try bytes.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw VideoError.encodeFailed(path: path, reason: error.localizedDescription)
        }
    }
}
