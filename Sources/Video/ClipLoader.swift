// Batches of clips made on background threads while training runs: a bounded window of clips
// ahead of the consumer, each clip from its own seeded random stream, so the batches are the same
// whatever the number of workers or the thread timing. Bad videos are skipped (recorded in the
// batch) or fatal, by policy.

import Convert
import Foundation

/// What to do with a video that cannot be decoded.
public enum BadVideoPolicy: String, Sendable, CaseIterable, Codable {
    /// Leave the clip out of its batch and record why.
    case skip
    /// Stop: `next()` throws the error (it names the file).
    case fail
}

public struct LoaderOptions: Sendable {
    public var batchSize = 8
    /// Background threads making clips.
    public var workers = 2
    /// Batches prepared ahead of the consumer (memory: prefetch x batch x clip size).
    public var prefetchBatches = 2
    /// Train: shuffled, one random view per video. Test: dataset order, every test view of every video.
    public var training = true
    public var dropLast = false
    public var seed: UInt64 = 0
    public var onBadVideo = BadVideoPolicy.skip
    public var limits = VideoLimits.default
    /// Decoded frames kept across loaders (epochs, validation): clips identical to decoding afresh.
    public var frameCache: FrameCache?

    public init(batchSize: Int = 8, workers: Int = 2, prefetchBatches: Int = 2, training: Bool = true,
                dropLast: Bool = false, seed: UInt64 = 0, onBadVideo: BadVideoPolicy = .skip, frameCache: FrameCache? = nil) {
        self.batchSize = batchSize; self.workers = workers; self.prefetchBatches = prefetchBatches
        self.training = training; self.dropLast = dropLast; self.seed = seed; self.onBadVideo = onBadVideo
        self.frameCache = frameCache
    }
}

/// N clips stacked: NCTHW float32 for each pathway, multi-hot labels.
public struct ClipBatch: Sendable {
    /// [count, 3, frames, size, size]
    public var fast: [Float]
    /// [count, 3, slowFrames, size, size]
    public var slow: [Float]
    /// [count, classes], 0 or 1.
    public var labels: [Float]
    /// Data set index and view index of each clip (test views of one video share the sample index).
    public var sampleIndices: [Int]
    public var viewIndices: [Int]
    public let frames: Int
    public let slowFrames: Int
    public let size: Int
    public let classes: Int
    /// Videos left out of this batch, with why.
    public var skipped: [VideoError]

    public var count: Int { sampleIndices.count }
    public var fastShape: [Int] { [count, 3, frames, size, size] }
    public var slowShape: [Int] { [count, 3, slowFrames, size, size] }
}

public final class ClipLoader {
    public let dataset: VideoDataset
    public let config: ClipConfig
    public let options: LoaderOptions
    public let epoch: Int
    /// (sample, view) per clip, in batch order.
    public let items: [(sample: Int, view: Int)]
    public let batchCount: Int
    private let views: [ClipView]
    private let state: State
    private var nextBatch = 0

    private final class State: @unchecked Sendable {
        let condition = NSCondition()
        var nextItem = 0
        var windowEnd = 0
        var results: [Int: Result<Clip, VideoError>] = [:]
        var stopped = false
        /// Worker threads that have not returned yet.
        var running = 0
    }

    public init(dataset: VideoDataset, config: ClipConfig, options: LoaderOptions, epoch: Int = 0) throws {
        let problems = config.problems()
        guard problems.isEmpty else { throw DatasetError.invalidRequest("clip settings: " + problems.joined(separator: "; ")) }
        guard options.batchSize >= 1, options.workers >= 1, options.prefetchBatches >= 1 else {
            throw DatasetError.invalidRequest("batch size, workers and prefetch must be >= 1")
        }
        self.dataset = dataset
        self.config = config
        self.options = options
        self.epoch = epoch
        views = options.training ? [.train] : ClipView.testViews(config)
        var order = Array(dataset.samples.indices)
        if options.training {
            var rng = ClipRandom.generator(seed: options.seed, epoch: epoch, sample: -1)
            for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.integer(0, i + 1)) }
        }
        let viewCount = views.count
        var items = order.flatMap { s in (0..<viewCount).map { (sample: s, view: $0) } }
        if options.dropLast { items.removeLast(items.count % options.batchSize) }
        self.items = items
        batchCount = (items.count + options.batchSize - 1) / options.batchSize
        state = State()
        state.windowEnd = min(items.count, options.prefetchBatches * options.batchSize)
        let maker = ClipMaker(config: config)
        state.running = options.workers
        for _ in 0..<options.workers {
            let thread = Thread { [state, items, dataset, views, options, epoch] in
                Self.work(state: state, items: items, dataset: dataset, views: views, maker: maker, options: options, epoch: epoch)
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Stops the workers and waits for them (each finishes the clip it is decoding): a process
    /// that exits right after, on an error, must not tear FFmpeg down under a running decoder.
    deinit {
        state.condition.lock()
        state.stopped = true
        state.condition.broadcast()
        while state.running > 0 { state.condition.wait() }
        state.condition.unlock()
    }

    private static func work(state: State, items: [(sample: Int, view: Int)], dataset: VideoDataset, views: [ClipView],
                             maker: ClipMaker, options: LoaderOptions, epoch: Int) {
        defer {
            state.condition.lock()
            state.running -= 1
            state.condition.broadcast()
            state.condition.unlock()
        }
        while true {
            state.condition.lock()
            while !state.stopped && state.nextItem < items.count && state.nextItem >= state.windowEnd { state.condition.wait() }
            if state.stopped || state.nextItem >= items.count { state.condition.unlock(); return }
            let i = state.nextItem
            state.nextItem += 1
            state.condition.unlock()

            let (s, v) = items[i]
            let sample = dataset.samples[s]
            var rng = ClipRandom.generator(seed: options.seed, epoch: epoch, sample: s, view: v)
            let result: Result<Clip, VideoError>
            do {
                let source = try options.frameCache?.source(for: sample, limits: options.limits, folderFPS: maker.config.folderFPS)
                    ?? sample.open(limits: options.limits, folderFPS: maker.config.folderFPS)
                result = .success(try maker.make(from: source, view: views[v], rng: &rng, frameList: sample.frames != nil))
            } catch let error as VideoError {
                result = .failure(error)
            } catch {
                result = .failure(.decodeFailed(path: sample.path, frame: nil, reason: "\(error)"))
            }
            state.condition.lock()
            state.results[i] = result
            state.condition.broadcast()
            state.condition.unlock()
        }
    }

    /// Clips made (or failed) and not yet taken by `next()`.
    public var pendingClips: Int {
        state.condition.lock(); defer { state.condition.unlock() }
        return state.results.count
    }

    /// The next batch (nil after the last). Blocks until its clips are made.
    public func next() throws -> ClipBatch? {
        guard nextBatch < batchCount else { return nil }
        let range = (nextBatch * options.batchSize)..<min(items.count, (nextBatch + 1) * options.batchSize)
        state.condition.lock()
        while !range.allSatisfy({ state.results[$0] != nil }) { state.condition.wait() }
        let results = range.map { state.results.removeValue(forKey: $0)! }
        nextBatch += 1
        state.windowEnd = min(items.count, (nextBatch + options.prefetchBatches) * options.batchSize)
        state.condition.broadcast()
        state.condition.unlock()

        let classes = dataset.classes.count
        var batch = ClipBatch(fast: [], slow: [], labels: [], sampleIndices: [], viewIndices: [], frames: config.numFrames,
                              slowFrames: config.slowFrames, size: config.crop, classes: classes, skipped: [])
        let clipFast = 3 * config.numFrames * config.crop * config.crop
        if range.count > 1 {
            batch.fast.reserveCapacity(range.count * clipFast)
            batch.slow.reserveCapacity(range.count * 3 * config.slowFrames * config.crop * config.crop)
        }
        for (i, result) in zip(range, results) {
            switch result {
            case let .success(clip):
                if batch.fast.isEmpty && range.count == 1 {
                    batch.fast = clip.fast      // a batch of one takes the clip's buffers without copying
                    batch.slow = clip.slow
                } else {
                    batch.fast += clip.fast
                    batch.slow += clip.slow
                }
                var row = [Float](repeating: 0, count: classes)
                for l in dataset.samples[items[i].sample].labels { row[l] = 1 }
                batch.labels += row
                batch.sampleIndices.append(items[i].sample)
                batch.viewIndices.append(items[i].view)
            case let .failure(error):
                if options.onBadVideo == .fail {
                    state.condition.lock(); state.stopped = true; state.condition.broadcast(); state.condition.unlock()
                    throw error
                }
                batch.skipped.append(error)
            }
        }
        return batch
    }
}
