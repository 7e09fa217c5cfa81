// Video files (MP4, MKV, AVI, WebM...; H.264, MPEG-4 part 2, VP9, anything this FFmpeg decodes)
// through libavformat/libavcodec. Frames are addressed by index on the source's own frame grid,
// derived from each frame's timestamp (PyAV-style), and a request for frames deep into a long
// video seeks to the keyframe before them instead of decoding from the start.

import CFFmpeg
import Foundation

public final class VideoDecoder {
    public let path: String
    public private(set) var info: VideoInfo
    private let limits: VideoLimits
    private var format: UnsafeMutablePointer<AVFormatContext>?
    private var codec: UnsafeMutablePointer<AVCodecContext>?
    private var packet: UnsafeMutablePointer<AVPacket>?
    private var frame: UnsafeMutablePointer<AVFrame>?
    private var held: UnsafeMutablePointer<AVFrame>?
    private var streamIndex: Int32
    private var timeBase: Double
    private var startPts: Int64
    private let scaler = FrameScaler()
    /// Frames decoded so far by this decoder (tests use it to check that seeking avoided work).
    public private(set) var framesDecoded = 0
    /// Whether the demuxer is at the start of the file (nothing read since opening or rewinding).
    private var atStart = true

    /// Seeking pays off when the first wanted frame is at least this far from the start.
    public static let seekThresholdSeconds = 1.0

    /// Opens `path`. `threads` is libavcodec's decoding threads (1: clips are parallel already).
    /// `assumedFPS` is used when the stream declares no rate (still images); without it such a stream is an error.
    public init(path: String, limits: VideoLimits = .default, threads: Int = 1, assumedFPS: Double? = nil) throws {
        _ = ffmpegQuiet
        self.path = path
        self.limits = limits
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw VideoError.cannotOpen(path: path, reason: "no such file")
        }
        if isDir.boolValue { throw VideoError.cannotOpen(path: path, reason: "is a directory (frame folders open with FrameFolder)") }
        var fmt: UnsafeMutablePointer<AVFormatContext>?
        var rc = avformat_open_input(&fmt, path, nil, nil)
        guard rc >= 0, let fmt else { throw VideoError.cannotOpen(path: path, reason: ffmpegMessage(rc)) }
        format = fmt
        // From here on deinit frees what was allocated, including on a throw below.
        packet = av_packet_alloc()
        frame = av_frame_alloc()
        held = av_frame_alloc()
        streamIndex = -1; timeBase = 0; startPts = 0
        info = VideoInfo(width: 0, height: 0, frameCount: 0, fps: 0, codec: "")

        rc = avformat_find_stream_info(fmt, nil)
        guard rc >= 0 else { throw VideoError.cannotOpen(path: path, reason: "no stream information: \(ffmpegMessage(rc))") }
        var decoderPointer: UnsafePointer<AVCodec>?
        let index = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &decoderPointer, 0)
        guard index >= 0, let stream = fmt.pointee.streams[Int(index)] else {
            if index == sfnet_averror_decoder_not_found() {
                throw VideoError.unsupportedCodec(path: path, codec: "unknown")
            }
            throw VideoError.noVideoStream(path: path)
        }
        let parameters = stream.pointee.codecpar!
        let codecName = String(cString: avcodec_get_name(parameters.pointee.codec_id))
        guard let decoderPointer else { throw VideoError.unsupportedCodec(path: path, codec: codecName) }
        let width = Int(parameters.pointee.width), height = Int(parameters.pointee.height)
        try limits.check(path: path, width: width, height: height)

        var rate = stream.pointee.avg_frame_rate
        if rate.num <= 0 || rate.den <= 0 { rate = stream.pointee.r_frame_rate }
        var fps = rate.num > 0 && rate.den > 0 ? Double(rate.num) / Double(rate.den) : 0
        if !(fps > 0 && fps <= 1000) {
            guard let assumedFPS else { throw VideoError.invalidStream(path: path, reason: "no frame rate (\(rate.num)/\(rate.den))") }
            fps = assumedFPS
        }
        let tb = stream.pointee.time_base
        guard tb.num > 0, tb.den > 0 else { throw VideoError.invalidStream(path: path, reason: "time base \(tb.num)/\(tb.den)") }

        guard let ctx = avcodec_alloc_context3(decoderPointer) else {
            throw VideoError.cannotOpen(path: path, reason: "out of memory allocating the decoder")
        }
        codec = ctx
        rc = avcodec_parameters_to_context(ctx, parameters)
        guard rc >= 0 else { throw VideoError.cannotOpen(path: path, reason: ffmpegMessage(rc)) }
        ctx.pointee.thread_count = Int32(max(1, threads))
        rc = avcodec_open2(ctx, decoderPointer, nil)
        guard rc >= 0 else { throw VideoError.unsupportedCodec(path: path, codec: "\(codecName) (\(ffmpegMessage(rc)))") }

        streamIndex = index
        timeBase = Double(tb.num) / Double(tb.den)
        let declaredStart = stream.pointee.start_time
        var count = Int(stream.pointee.nb_frames)
        var firstPts = declaredStart == sfnet_av_nopts_value() ? Int64.max : declaredStart
        if count <= 0 {
            // MKV/WebM and some AVIs do not record a frame count: count the stream's packets (demux only).
            (count, firstPts) = try Self.countPackets(fmt, stream: index, packet: packet!, path: path, limits: limits, firstPts: firstPts)
            try Self.rewind(fmt, path: path)
        }
        startPts = firstPts == Int64.max ? 0 : firstPts
        if count > limits.maxFrames { throw VideoError.tooLarge(path: path, what: "frame count", value: count, limit: limits.maxFrames) }
        guard count > 0 else { throw VideoError.noFrames(path: path) }
        info = VideoInfo(width: width, height: height, frameCount: count, fps: fps, codec: codecName)
    }

    /// Bytes one decoded picture takes in the decoder's pixel format (what the frame cache reserves per frame).
    var estimatedFrameBytes: Int {
        let w = Int32(info.width), h = Int32(info.height)
        let n = codec.map { av_image_get_buffer_size($0.pointee.pix_fmt, w, h, 1) } ?? -1
        return n > 0 ? Int(n) : info.width * info.height * 3
    }

    deinit {
        av_frame_free(&frame)
        av_frame_free(&held)
        av_packet_free(&packet)
        avcodec_free_context(&codec)
        avformat_close_input(&format)
    }

    private static func countPackets(_ fmt: UnsafeMutablePointer<AVFormatContext>, stream: Int32,
                                     packet: UnsafeMutablePointer<AVPacket>, path: String, limits: VideoLimits,
                                     firstPts: Int64) throws -> (Int, Int64) {
        var count = 0
        var first = firstPts
        while true {
            let rc = av_read_frame(fmt, packet)
            if rc == sfnet_averror_eof() { break }
            guard rc >= 0 else { throw VideoError.decodeFailed(path: path, frame: count, reason: ffmpegMessage(rc)) }
            if packet.pointee.stream_index == stream {
                count += 1
                let pts = packet.pointee.pts
                if pts != sfnet_av_nopts_value(), pts < first { first = pts }
                if count > limits.maxFrames {
                    av_packet_unref(packet)
                    throw VideoError.tooLarge(path: path, what: "frame count", value: count, limit: limits.maxFrames)
                }
            }
            av_packet_unref(packet)
        }
        return (count, first)
    }

    private static func rewind(_ fmt: UnsafeMutablePointer<AVFormatContext>, path: String) throws {
        let rc = avformat_seek_file(fmt, -1, Int64.min, 0, 0, 0)
        guard rc >= 0 else { throw VideoError.decodeFailed(path: path, frame: 0, reason: "cannot rewind: \(ffmpegMessage(rc))") }
    }

    /// Index on the source frame grid of a frame with timestamp `pts`.
    private func frameIndex(pts: Int64) -> Int {
        Int((Double(pts &- startPts) * timeBase * info.fps).rounded())
    }

    /// The frames at `indices` (clamped to the video; repeats allowed, any order), as RGB24 scaled to
    /// `width` x `height` (default: the source size). A wanted index the stream skips gets the frame
    /// showing at that time.
    public func frames(at indices: [Int], width: Int? = nil, height: Int? = nil) throws -> [RGBFrame] {
        let outW = width ?? info.width, outH = height ?? info.height
        try limits.check(path: path, width: outW, height: outH)
        guard !indices.isEmpty else { return [] }
        let last = info.frameCount - 1
        let wanted = Array(Set(indices.map { min(max($0, 0), last) })).sorted()
        try limits.checkRequest(path: path, frames: wanted.count, width: outW, height: outH)
        let rgb = { (source: UnsafeMutablePointer<AVFrame>, w: Int, _: Int) throws -> RGBFrame in
            guard let f = self.scaler.rgb(source, width: outW, height: outH) else {
                throw VideoError.decodeFailed(path: self.path, frame: w, reason: "pixel format conversion failed")
            }
            return f
        }
        var decoded = try decode(wanted: wanted, allowSeek: true, emit: rgb)
        if decoded == nil {
            // The seek landed after the first wanted frame (a sparse or missing index): decode from the start.
            try Self.rewind(format!, path: path)
            avcodec_flush_buffers(codec)
            atStart = true
            decoded = try decode(wanted: wanted, allowSeek: false, emit: rgb)
        }
        let byIndex = decoded!
        return try indices.map { i in
            let k = min(max(i, 0), last)
            guard let f = byIndex[k] else { throw VideoError.decodeFailed(path: path, frame: k, reason: "frame not produced") }
            return f
        }
    }

    /// Every frame of the video as the decoder produced it (its own pixel format and size), index by
    /// index on the frame grid exactly as `frames(at:)` assigns them, decoded once from the start: what
    /// the frame cache keeps. A frame that stands for several indices (a stream that skips some) is
    /// shared, not copied. No request limit applies: the cache's budget bounds the memory.
    func decodeAll() throws -> [DecodedFrame] {
        if !atStart {
            try Self.rewind(format!, path: path)
            avcodec_flush_buffers(codec)
            atStart = true
        }
        var copies: [Int: DecodedFrame] = [:]   // by the decoded frame's serial number
        let frames = try decode(wanted: Array(0 ..< info.frameCount), allowSeek: false) { source, w, serial -> DecodedFrame in
            if let shared = copies[serial] { return shared }
            guard let copy = DecodedFrame(copying: source) else {
                throw VideoError.decodeFailed(path: self.path, frame: w, reason: "out of memory copying a decoded frame")
            }
            copies[serial] = copy
            return copy
        }
        guard let frames else { throw VideoError.noFrames(path: path) }
        return try (0 ..< info.frameCount).map { k in
            guard let f = frames[k] else { throw VideoError.decodeFailed(path: path, frame: k, reason: "frame not produced") }
            return f
        }
    }

    /// Decodes forward until every wanted index has a frame, handed to `emit` with its index and the
    /// serial number of the decoded picture (the current or the held earlier frame); nil when a seek
    /// overshot the first one.
    private func decode<T>(wanted: [Int], allowSeek: Bool,
                           emit: (UnsafeMutablePointer<AVFrame>, Int, Int) throws -> T) throws -> [Int: T]? {
        guard let format, let codec, let packet, let frame, let held else { return [:] }
        let first = wanted[0]
        let firstSeconds = Double(first) / info.fps
        var seeked = false
        if allowSeek && (firstSeconds >= Self.seekThresholdSeconds || !atStart) {
            // Half a frame early so rounding cannot skip the wanted one; BACKWARD lands on the keyframe before it.
            let target = startPts + Int64(((Double(first) - 0.5) / info.fps / timeBase).rounded(.down))
            if first > 0, av_seek_frame(format, streamIndex, max(target, startPts), AVSEEK_FLAG_BACKWARD) >= 0 {
                seeked = true
            } else {
                try Self.rewind(format, path: path)
            }
            avcodec_flush_buffers(codec)
        }
        atStart = false
        var result: [Int: T] = [:]
        var k = 0
        var heldIndex: Int? = nil
        var lastIndex = -1
        var heldSerial = -1

        // Assigns the current frame (index i) and the held earlier one to the wanted indices they cover.
        func take(_ current: UnsafeMutablePointer<AVFrame>, index i: Int) throws -> Bool {
            if heldIndex == nil && seeked && wanted[k] < i { return false }
            while k < wanted.count && wanted[k] <= i {
                let w = wanted[k]
                let source = (w < i && heldIndex != nil) ? held : current
                result[w] = try emit(source, w, source == held ? heldSerial : framesDecoded)
                k += 1
            }
            return true
        }

        func drain() throws -> Bool? {   // nil: keep going, true: done, false: overshoot
            while true {
                let rc = avcodec_receive_frame(codec, frame)
                if rc == sfnet_averror_eagain() || rc == sfnet_averror_eof() { return nil }
                guard rc >= 0 else { throw VideoError.decodeFailed(path: path, frame: lastIndex + 1, reason: ffmpegMessage(rc)) }
                framesDecoded += 1
                try limits.check(path: path, width: Int(frame.pointee.width), height: Int(frame.pointee.height))
                let pts = frame.pointee.best_effort_timestamp
                let i = pts == sfnet_av_nopts_value() ? lastIndex + 1 : frameIndex(pts: pts)
                lastIndex = max(lastIndex, i)
                if !(try take(frame, index: i)) { av_frame_unref(frame); return false }
                av_frame_unref(held)
                av_frame_move_ref(held, frame)
                heldIndex = i
                heldSerial = framesDecoded
                if k == wanted.count { return true }
            }
        }

        reading: while true {
            let rc = av_read_frame(format, packet)
            if rc == sfnet_averror_eof() { break reading }
            guard rc >= 0 else { throw VideoError.decodeFailed(path: path, frame: lastIndex + 1, reason: ffmpegMessage(rc)) }
            defer { av_packet_unref(packet) }
            guard packet.pointee.stream_index == streamIndex else { continue }
            let sent = avcodec_send_packet(codec, packet)
            guard sent >= 0 else { throw VideoError.decodeFailed(path: path, frame: lastIndex + 1, reason: ffmpegMessage(sent)) }
            switch try drain() {
            case .some(true): return result
            case .some(false): return nil
            case .none: continue
            }
        }
        // End of stream: flush the decoder's delayed frames.
        _ = avcodec_send_packet(codec, nil)
        switch try drain() {
        case .some(true): return result
        case .some(false): return nil
        case .none: break
        }
        // Wanted frames past the last decoded one: a container that overstates its count by a frame
        // or two holds the last frame; more than that is a truncated stream.
        guard heldIndex != nil else {
            if seeked { return nil }
            throw VideoError.noFrames(path: path)
        }
        let missing = wanted[k...]
        if let worst = missing.last, worst - lastIndex > 2 {
            throw VideoError.decodeFailed(path: path, frame: lastIndex + 1,
                                          reason: "stream ends at frame \(lastIndex + 1) of \(info.frameCount)")
        }
        for w in missing { result[w] = try emit(held, w, heldSerial) }
        return result
    }
}
