// Scores of whole videos: every test view of each video through the eval network,
// the head's activation (sigmoid for multi-label, softmax for single-label) per view,
// ensembled per video by max (multi-label) or mean (single-label), as PySlowFast's
// multi-view testing does. Shared by validation, `sfnet eval` and `sfnet predict`.

import Convert
import Foundation
import SlowFastNet
import Video

public struct VideoScores {
    /// [videos, classes] row-major, for `samples` in order.
    public var scores: [Float]
    /// Indices into the dataset of the videos scored (bad videos skipped are absent).
    public var samples: [Int]
    public var classes: Int
    public var skipped: [VideoError]
    public var views: Int
    public var seconds: Double

    public func row(_ k: Int) -> ArraySlice<Float> { scores[k * classes ..< (k + 1) * classes] }
}

public enum Scoring {
    /// Network inputs of a batch: slow + fast for SlowFast, the clip alone for single-pathway models.
    static func inputs(_ b: ClipBatch, arch: ArchConfig) -> [FloatTensor] {
        let fast = b.fast.withUnsafeBufferPointer { FloatTensor(shape: b.fastShape, copying: $0.baseAddress!) }
        guard arch.model == .slowfast else { return [fast] }
        let slow = b.slow.withUnsafeBufferPointer { FloatTensor(shape: b.slowShape, copying: $0.baseAddress!) }
        return [slow, fast]
    }

    /// The clip settings of a network: its frames and crop, the data set's sampling.
    public static func clipConfig(arch: ArchConfig, frames: Int, samplingRate: Int, crop: Int,
                                  temporalViews: Int, spatialCrops: Int) -> ClipConfig {
        var c = ClipConfig.study(frames: frames)
        c.samplingRate = samplingRate
        c.crop = crop
        c.jitterMin = max(c.jitterMin, crop)
        c.jitterMax = max(c.jitterMax, c.jitterMin)
        c.alpha = arch.model == .slowfast ? arch.alpha : 1
        c.testTemporalViews = temporalViews
        c.testSpatialCrops = spatialCrops
        return c
    }

    public static func score(model: SlowFastModel, dataset: VideoDataset, config: ClipConfig, batch: Int, workers: Int,
                             onBadVideo: BadVideoPolicy, ensembleMax: Bool,
                             progress: ((Int, Int) -> Void)? = nil) throws -> VideoScores {
        let start = Date()
        let k = model.config.numClasses
        let loader = try ClipLoader(dataset: dataset, config: config,
                                    options: LoaderOptions(batchSize: batch, workers: workers, training: false, seed: 0, onBadVideo: onBadVideo))
        var perSample: [Int: [Float]] = [:]
        var order: [Int] = []
        var skipped: [VideoError] = []
        var done = 0
        while let b = try loader.next() {
            skipped += b.skipped
            guard b.count > 0 else { continue }
            let out = try model.forward(inputs(b, arch: model.config))
            let probs = out.probabilities
            for (j, s) in b.sampleIndices.enumerated() {
                let row = Array(UnsafeBufferPointer(start: probs.pointer + j * k, count: k))
                if var acc = perSample[s] {
                    for c in 0 ..< k { acc[c] = ensembleMax ? max(acc[c], row[c]) : acc[c] + row[c] }
                    perSample[s] = acc
                } else {
                    perSample[s] = row
                    order.append(s)
                }
            }
            done += b.count
            progress?(done, loader.items.count)
        }
        let views = config.testTemporalViews * config.testSpatialCrops
        order.sort()
        var scores: [Float] = []
        scores.reserveCapacity(order.count * k)
        for s in order {
            let acc = perSample[s]!
            scores += ensembleMax ? acc : acc.map { $0 / Float(views) }
        }
        return VideoScores(scores: scores, samples: order, classes: k, skipped: skipped, views: views,
                           seconds: Date().timeIntervalSince(start))
    }
}
