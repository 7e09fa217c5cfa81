// One interface over video files and frame folders: what the dataset layer opens per clip.

import Foundation

/// Something that hands out frames by index on its own frame grid.
public protocol FrameSource: AnyObject {
    var info: VideoInfo { get }
    /// Frames at `indices` (clamped; repeats allowed) as RGB24, scaled to `width` x `height` when given.
    func frames(at indices: [Int], width: Int?, height: Int?) throws -> [RGBFrame]
}

extension VideoDecoder: FrameSource {}

public enum VideoSource {
    /// A folder of JPEG/PNG frames (at `folderFPS`) or a video file.
    public static func open(_ path: String, limits: VideoLimits = .default, folderFPS: Double = 30,
                            threads: Int = 1) throws -> FrameSource {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw VideoError.cannotOpen(path: path, reason: "no such file or folder")
        }
        if isDir.boolValue { return try FrameFolder(folder: path, fps: folderFPS, limits: limits) }
        return try VideoDecoder(path: path, limits: limits, threads: threads)
    }
}

/// Frames stored as image files (JPEG, PNG; anything FFmpeg's image decoders read), one per frame,
/// in natural name order ("img_2" before "img_10"), decoded on demand.
public final class FrameFolder: FrameSource {
    public let path: String
    public let files: [String]
    public let info: VideoInfo
    private let limits: VideoLimits
    /// Keeps decoded frame images across clips (each file decoded once per run while the budget lasts).
    private let cache: FrameCache?

    public static let imageExtensions: Set<String> = ["jpg", "jpeg", "png", "bmp"]

    /// Every image file directly in `folder`.
    public convenience init(folder: String, fps: Double = 30, limits: VideoLimits = .default, cache: FrameCache? = nil) throws {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: folder) } catch {
            throw VideoError.cannotOpen(path: folder, reason: "cannot list the folder: \(error.localizedDescription)")
        }
        let images = names.filter { Self.imageExtensions.contains(($0 as NSString).pathExtension.lowercased()) }
            .sorted { $0.compare($1, options: [.numeric]) == .orderedAscending }
        try self.init(files: images.map { (folder as NSString).appendingPathComponent($0) }, name: folder, fps: fps, limits: limits, cache: cache)
    }

    /// An explicit frame list (a Charades / Animal Kingdom frame-list video); `name` is used in errors.
    public init(files: [String], name: String, fps: Double = 30, limits: VideoLimits = .default, cache: FrameCache? = nil) throws {
        path = name
        self.files = files
        self.limits = limits
        self.cache = cache
        guard !files.isEmpty else { throw VideoError.noFrames(path: name) }
        if files.count > limits.maxFrames {
            throw VideoError.tooLarge(path: name, what: "frame count", value: files.count, limit: limits.maxFrames)
        }
        guard fps > 0, fps.isFinite else { throw VideoError.invalidStream(path: name, reason: "frame rate \(fps)") }
        let key = "\(files.count) \(fps) \(files[0])"
        if let known = cache?.info(folder: key) {
            info = known
            return
        }
        let first = try Self.decoder(files[0], clip: name, frame: 0, limits: limits, fps: fps)
        info = VideoInfo(width: first.info.width, height: first.info.height, frameCount: files.count, fps: fps,
                         codec: first.info.codec)
        cache?.setInfo(info, folder: key)
    }

    public func frames(at indices: [Int], width: Int? = nil, height: Int? = nil) throws -> [RGBFrame] {
        let w = width ?? info.width, h = height ?? info.height
        var cache: [Int: RGBFrame] = [:]
        try limits.check(path: path, width: w, height: h)
        try limits.checkRequest(path: path, frames: Set(indices).count, width: w, height: h)
        var decodedAny = false
        defer { self.cache?.count(hit: !decodedAny) }
        return try indices.map { i in
            let k = min(max(i, 0), files.count - 1)
            if let f = cache[k] { return f }
            let f: RGBFrame
            if let kept = self.cache?.image(files[k]) {
                f = try scaled(kept, frame: k, width: w, height: h)
            } else {
                decodedAny = true
                let decoder = try Self.decoder(files[k], clip: path, frame: k, limits: limits, fps: info.fps)
                do {
                    if let runCache = self.cache {
                        // Kept as decoded, then scaled by the same libswscale settings the decoder uses.
                        guard let picture = try decoder.decodeAll().first else {
                            throw VideoError.badFrame(clip: path, frame: k, file: files[k], reason: "no decodable image in the file (truncated?)")
                        }
                        runCache.keep(picture, file: files[k])
                        f = try scaled(picture, frame: k, width: w, height: h)
                    } else {
                        guard let first = try decoder.frames(at: [0], width: w, height: h).first else {
                            throw VideoError.badFrame(clip: path, frame: k, file: files[k], reason: "no decodable image in the file (truncated?)")
                        }
                        f = first
                    }
                } catch let e as VideoError {
                    if case .badFrame = e { throw e }
                    if case .tooLarge = e { throw e }
                    throw VideoError.badFrame(clip: path, frame: k, file: files[k], reason: "\(e)")
                }
            }
            cache[k] = f
            return f
        }
    }

    private lazy var scaler = FrameScaler()

    private func scaled(_ picture: DecodedFrame, frame k: Int, width: Int, height: Int) throws -> RGBFrame {
        guard let f = scaler.rgb(picture.frame, width: width, height: height) else {
            throw VideoError.badFrame(clip: path, frame: k, file: files[k], reason: "pixel format conversion failed")
        }
        return f
    }

    /// Opens one frame file; a missing file or one that is not an image names the clip and the frame.
    private static func decoder(_ file: String, clip: String, frame: Int, limits: VideoLimits, fps: Double) throws -> VideoDecoder {
        guard FileManager.default.fileExists(atPath: file) else {
            throw VideoError.badFrame(clip: clip, frame: frame, file: file, reason: "missing (frame paths are relative to the frame root, --frame-root)")
        }
        do { return try VideoDecoder(path: file, limits: limits, assumedFPS: fps) } catch let e as VideoError {
            if case .tooLarge = e { throw e }
            throw VideoError.badFrame(clip: clip, frame: frame, file: file, reason: "not a readable image: \(e)")
        }
    }
}
