// Decoded frames kept for the whole run, so each video is decoded once and not once per epoch
// (PySlowFast decodes afresh every epoch; the decode-once cache of a plain PyTorch script is the
// peer). What is kept is each picture as the decoder produced it (its own pixel format at the source
// size, e.g. YUV 4:2:0 at 1.5 bytes a pixel), not RGB at one scale: every epoch draws a new short
// side, crop and flip, and libswscale then scales from the kept picture exactly as it scales from a
// freshly decoded one, so a clip made from the cache is bit for bit the clip decoding would give.
// Memory is bounded by a budget: a video that does not fit is decoded each time, as without the
// cache (videos stay once admitted: with a shuffled order each epoch, evicting would only churn).
// Shared by the loader's background threads.

import CFFmpeg
import Foundation

/// One decoded picture, copied out of the decoder's buffer pool, immutable once made (libswscale
/// only reads it, from any thread).
final class DecodedFrame: @unchecked Sendable {
    let frame: UnsafeMutablePointer<AVFrame>
    /// Bytes of its pixel buffers.
    let bytes: Int

    init?(copying source: UnsafeMutablePointer<AVFrame>) {
        guard let f = av_frame_alloc() else { return nil }
        f.pointee.format = source.pointee.format
        f.pointee.width = source.pointee.width
        f.pointee.height = source.pointee.height
        guard av_frame_get_buffer(f, 0) >= 0, av_frame_copy(f, source) >= 0, av_frame_copy_props(f, source) >= 0 else {
            var p: UnsafeMutablePointer<AVFrame>? = f
            av_frame_free(&p)
            return nil
        }
        frame = f
        bytes = withUnsafePointer(to: &f.pointee.buf) { tuple in
            tuple.withMemoryRebound(to: UnsafeMutablePointer<AVBufferRef>?.self, capacity: 8) { refs in
                (0 ..< 8).reduce(0) { $0 + (refs[$1].map { Int($0.pointee.size) } ?? 0) }
            }
        }
    }

    deinit {
        var p: UnsafeMutablePointer<AVFrame>? = frame
        av_frame_free(&p)
    }
}

/// A run's decoded frames, within a memory budget.
public final class FrameCache: @unchecked Sendable {
    /// The most bytes of pictures kept.
    public let budgetBytes: Int

    /// What the cache holds and how it served the clips asked of it so far.
    public struct Stats: Sendable, Equatable {
        /// Videos (files) and frame images held.
        public var videos = 0
        public var frames = 0
        public var bytes = 0
        /// Clips made from kept pictures only / clips that had to decode.
        public var hits = 0
        public var misses = 0
        /// Videos and frame images left to decoding because they did not fit the budget.
        public var overBudget = 0
    }

    /// The default budget: a quarter of physical memory, at most 4 GiB (in MiB).
    public static func defaultBudgetMB(physicalMemory: UInt64 = ProcessInfo.processInfo.physicalMemory) -> Int {
        min(Int((physicalMemory / 4) >> 20), 4096)
    }

    private final class StoredVideo: @unchecked Sendable {
        let info: VideoInfo
        let frames: [DecodedFrame]
        init(info: VideoInfo, frames: [DecodedFrame]) { (self.info, self.frames) = (info, frames) }
    }

    private enum Entry {
        case loading
        case ready(StoredVideo)
        case uncached
    }

    private let condition = NSCondition()
    private var videos: [String: Entry] = [:]
    private var images: [String: DecodedFrame] = [:]
    private var folderInfo: [String: VideoInfo] = [:]
    private var stats = Stats()

    /// A cache of at most `budgetMB` MiB (0: nothing is kept, every clip decodes).
    public init(budgetMB: Int) {
        budgetBytes = max(0, budgetMB).multipliedReportingOverflow(by: 1 << 20).overflow ? Int.max : max(0, budgetMB) << 20
    }

    public var statistics: Stats {
        condition.lock(); defer { condition.unlock() }
        return stats
    }

    /// The frames of `sample`: from kept pictures when it is held (or now decoded whole and kept),
    /// else a plain decoder, exactly what `sample.open` gives.
    public func source(for sample: VideoSample, limits: VideoLimits = .default, folderFPS: Double = 30) throws -> FrameSource {
        if let files = sample.frames {
            return try FrameFolder(files: files, name: sample.path, fps: folderFPS, limits: limits, cache: self)
        }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: sample.path, isDirectory: &isDir), isDir.boolValue {
            return try FrameFolder(folder: sample.path, fps: folderFPS, limits: limits, cache: self)
        }
        let path = sample.path
        condition.lock()
        while case .loading? = videos[path] { condition.wait() }
        switch videos[path] {
        case let .ready(v)?:
            stats.hits += 1
            condition.unlock()
            return CachedVideo(path: path, stored: v, limits: limits)
        case .uncached?:
            stats.misses += 1
            condition.unlock()
            return try sample.open(limits: limits, folderFPS: folderFPS)
        case .loading?, nil:
            videos[path] = .loading
            stats.misses += 1
            condition.unlock()
        }
        // First use: decode the whole video once, if its pictures fit.
        func settle(_ entry: Entry, release: Int = 0) {
            condition.lock()
            videos[path] = entry
            stats.bytes -= release
            condition.broadcast()
            condition.unlock()
        }
        let decoder: VideoDecoder
        do { decoder = try VideoDecoder(path: path, limits: limits) } catch { settle(.uncached); throw error }
        let estimate = decoder.info.frameCount.multipliedReportingOverflow(by: decoder.estimatedFrameBytes)
        condition.lock()
        if estimate.overflow || stats.bytes + estimate.partialValue > budgetBytes {
            stats.overBudget += 1
            videos[path] = .uncached
            condition.broadcast()
            condition.unlock()
            return decoder
        }
        stats.bytes += estimate.partialValue
        condition.unlock()
        let frames: [DecodedFrame]
        do { frames = try decoder.decodeAll() } catch {
            // Whatever went wrong, the plain decoder reports it (or reads the clip) exactly as without the cache.
            settle(.uncached, release: estimate.partialValue)
            return try sample.open(limits: limits, folderFPS: folderFPS)
        }
        var seen = Set<ObjectIdentifier>()
        let actual = frames.reduce(0) { seen.insert(ObjectIdentifier($1)).inserted ? $0 + $1.bytes : $0 }
        let stored = StoredVideo(info: decoder.info, frames: frames)
        condition.lock()
        stats.bytes += actual - estimate.partialValue
        if stats.bytes > budgetBytes {
            stats.bytes -= actual
            stats.overBudget += 1
            videos[path] = .uncached
        } else {
            videos[path] = .ready(stored)
            stats.videos += 1
            stats.frames += frames.count
        }
        condition.broadcast()
        condition.unlock()
        return CachedVideo(path: path, stored: stored, limits: limits)
    }

    // MARK: frame images (frame lists and folders), kept one by one

    func image(_ file: String) -> DecodedFrame? {
        condition.lock(); defer { condition.unlock() }
        return images[file]
    }

    func keep(_ frame: DecodedFrame, file: String) {
        condition.lock(); defer { condition.unlock() }
        guard images[file] == nil else { return }
        if stats.bytes + frame.bytes > budgetBytes { stats.overBudget += 1; return }
        images[file] = frame
        stats.bytes += frame.bytes
        stats.frames += 1
    }

    func count(hit: Bool) {
        condition.lock(); defer { condition.unlock() }
        if hit { stats.hits += 1 } else { stats.misses += 1 }
    }

    func info(folder key: String) -> VideoInfo? {
        condition.lock(); defer { condition.unlock() }
        return folderInfo[key]
    }

    func setInfo(_ info: VideoInfo, folder key: String) {
        condition.lock(); defer { condition.unlock() }
        folderInfo[key] = info
    }

    /// A video's kept pictures as a frame source (one per clip: its scaler is its own).
    private final class CachedVideo: FrameSource {
        let path: String
        let stored: StoredVideo
        let limits: VideoLimits
        private let scaler = FrameScaler()
        var info: VideoInfo { stored.info }

        init(path: String, stored: StoredVideo, limits: VideoLimits) { (self.path, self.stored, self.limits) = (path, stored, limits) }

        /// As `VideoDecoder.frames(at:width:height:)`: the same checks, the same pictures, the same scaler.
        func frames(at indices: [Int], width: Int?, height: Int?) throws -> [RGBFrame] {
            let outW = width ?? info.width, outH = height ?? info.height
            try limits.check(path: path, width: outW, height: outH)
            guard !indices.isEmpty else { return [] }
            let last = info.frameCount - 1
            let wanted = Set(indices.map { min(max($0, 0), last) })
            try limits.checkRequest(path: path, frames: wanted.count, width: outW, height: outH)
            var byIndex: [Int: RGBFrame] = [:]
            for k in wanted {
                guard let f = scaler.rgb(stored.frames[k].frame, width: outW, height: outH) else {
                    throw VideoError.decodeFailed(path: path, frame: k, reason: "pixel format conversion failed")
                }
                byIndex[k] = f
            }
            return indices.map { byIndex[min(max($0, 0), last)]! }
        }
    }
}
