// The Video module's errors: every case names the file (and line, frame or key) and what was expected.

import Foundation

public enum VideoError: Error, LocalizedError, CustomStringConvertible, Equatable {
    /// The file or folder cannot be opened or is not a video/image FFmpeg recognises.
    case cannotOpen(path: String, reason: String)
    /// The container holds no video stream.
    case noVideoStream(path: String)
    /// No decoder (or encoder) for the stream's codec in this FFmpeg build.
    case unsupportedCodec(path: String, codec: String)
    /// Demuxing or decoding failed part-way (truncated or corrupt data).
    case decodeFailed(path: String, frame: Int?, reason: String)
    /// A size (width, height, frame count, duration) beyond `VideoLimits`.
    case tooLarge(path: String, what: String, value: Int, limit: Int)
    /// Dimensions or frame rate that make no sense (zero, negative, NaN).
    case invalidStream(path: String, reason: String)
    /// The video decoded to no frames at all.
    case noFrames(path: String)
    /// Encoding (synthetic data, test files) failed.
    case encodeFailed(path: String, reason: String)
    /// One frame of a frame-list video (or frame folder) is missing, truncated or not an image: the clip
    /// (its id or folder), the frame's 0-based position in its list, the frame file and why.
    case badFrame(clip: String, frame: Int, file: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason): return "\(path): cannot open as video or image: \(reason)"
        case let .noVideoStream(path): return "\(path): no video stream in the file"
        case let .unsupportedCodec(path, codec): return "\(path): codec '\(codec)' is not available in this FFmpeg build"
        case let .decodeFailed(path, frame, reason):
            let at = frame.map { " at frame \($0)" } ?? ""
            return "\(path): decoding failed\(at): \(reason) (truncated or corrupt video?)"
        case let .tooLarge(path, what, value, limit): return "\(path): \(what) \(value) exceeds the limit \(limit)"
        case let .invalidStream(path, reason): return "\(path): invalid video stream: \(reason)"
        case let .noFrames(path): return "\(path): the video holds no decodable frame"
        case let .encodeFailed(path, reason): return "\(path): encoding failed: \(reason)"
        case let .badFrame(clip, frame, file, reason): return "clip \(clip), frame \(frame) (\(file)): \(reason)"
        }
    }

    public var errorDescription: String? { description }

    /// The file the error is about (for a bad frame, the frame's file).
    public var path: String {
        switch self {
        case let .cannotOpen(p, _), let .noVideoStream(p), let .unsupportedCodec(p, _), let .decodeFailed(p, _, _),
             let .tooLarge(p, _, _, _), let .invalidStream(p, _), let .noFrames(p), let .encodeFailed(p, _), let .badFrame(_, _, p, _):
            return p
        }
    }
}

/// Bounds on what a decoder accepts from an untrusted file (SECURITY.md: memory bounded, no hang).
public struct VideoLimits: Sendable, Equatable {
    /// Largest accepted frame width and height, in pixels.
    public var maxDimension: Int
    /// Largest accepted width x height.
    public var maxPixels: Int
    /// Most frames a video (or frame folder) may hold.
    public var maxFrames: Int
    /// Most frames kept in memory for one clip request (decoded RGB frames).
    public var maxFramesPerRequest: Int
    /// Most bytes of RGB frames one request may produce (frames x width x height x 3).
    public var maxRequestBytes: Int

    public init(maxDimension: Int = 8192, maxPixels: Int = 4096 * 4096, maxFrames: Int = 1_000_000,
                maxFramesPerRequest: Int = 1024, maxRequestBytes: Int = 1 << 30) {
        self.maxDimension = maxDimension
        self.maxPixels = maxPixels
        self.maxFrames = maxFrames
        self.maxFramesPerRequest = maxFramesPerRequest
        self.maxRequestBytes = maxRequestBytes
    }

    func checkRequest(path: String, frames: Int, width: Int, height: Int) throws {
        if frames > maxFramesPerRequest {
            throw VideoError.tooLarge(path: path, what: "frames requested", value: frames, limit: maxFramesPerRequest)
        }
        // Overflow-checked: the sizes may come from a caller with lifted limits.
        let (pixels, o1) = width.multipliedReportingOverflow(by: height)
        let (perFrame, o2) = pixels.multipliedReportingOverflow(by: 3)
        let (product, o3) = perFrame.multipliedReportingOverflow(by: frames)
        let bytes = o1 || o2 || o3 ? Int.max : product
        if bytes > maxRequestBytes {
            throw VideoError.tooLarge(path: path, what: "bytes of frames requested", value: bytes, limit: maxRequestBytes)
        }
    }

    public static let `default` = VideoLimits()

    func check(path: String, width: Int, height: Int) throws {
        guard width > 0, height > 0 else {
            throw VideoError.invalidStream(path: path, reason: "frame size \(width)x\(height)")
        }
        if width > maxDimension { throw VideoError.tooLarge(path: path, what: "frame width", value: width, limit: maxDimension) }
        if height > maxDimension { throw VideoError.tooLarge(path: path, what: "frame height", value: height, limit: maxDimension) }
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        if overflow || pixels > maxPixels {
            throw VideoError.tooLarge(path: path, what: "frame pixels", value: overflow ? Int.max : pixels, limit: maxPixels)
        }
    }
}
