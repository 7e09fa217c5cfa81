// Scores of whole videos: every test view of each video through the eval network,
// the head's activation (sigmoid for multi-label, softmax for single-label) per view,
// ensembled per video by max (multi-label) or mean (single-label) unless a method is named
// (PySlowFast's DATA.ENSEMBLE_METHOD: sum or max, TestMeter in slowfast/utils/meters.py).
// Shared by validation, `sfnet eval` and `sfnet predict`.

import Families
import Convert
import Foundation
import Networks
import Video

public struct VideoScores {
    /// [videos, classes] row-major, for `samples` in order.
    public var scores: [Float]
    /// Indices into the dataset of the videos scored (bad videos skipped are absent).
    public var samples: [Int]
    public var classes: Int
    public var skipped: [VideoError]
    public var views: Int
    /// How each video's views were combined (the scores are sums with `.sum`).
    public var ensemble: EnsembleMethod
    public var seconds: Double

    public func row(_ k: Int) -> ArraySlice<Float> { scores[k * classes ..< (k + 1) * classes] }
}

/// How the views of one video combine (after the head's activation, per class).
public enum EnsembleMethod: String, Codable, Sendable, CaseIterable {
    /// The views' sum, as-is (PySlowFast ENSEMBLE_METHOD sum; ranks as `mean`).
    case sum
    /// The elementwise maximum (PySlowFast ENSEMBLE_METHOD max).
    case max
    /// The sum divided by the number of views (sfnet's default for softmax heads).
    case mean

    /// sfnet's default: max for sigmoid (multi-label) heads, mean for softmax heads.
    public static func byHead(multiLabel: Bool) -> EnsembleMethod { multiLabel ? .max : .mean }

    /// Combines `views` rows (each `classes` long, in view order) into one.
    public func combine(_ views: [[Float]]) -> [Float] {
        guard var acc = views.first else { return [] }
        for v in views.dropFirst() {
            for c in acc.indices { acc[c] = self == .max ? Swift.max(acc[c], v[c]) : acc[c] + v[c] }
        }
        return self == .mean ? acc.map { $0 / Float(views.count) } : acc
    }
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

    public static func score(model: any ClipNetwork, dataset: VideoDataset, config: ClipConfig, batch: Int, workers: Int,
                             onBadVideo: BadVideoPolicy, ensemble: EnsembleMethod, frameCache: FrameCache? = nil,
                             progress: ((Int, Int) -> Void)? = nil) throws -> VideoScores {
        let start = Date()
        let k = model.config.numClasses
        let loader = try ClipLoader(dataset: dataset, config: config,
                                    options: LoaderOptions(batchSize: batch, workers: workers, training: false, seed: 0, onBadVideo: onBadVideo,
                                                           frameCache: frameCache))
        var perSample: [Int: [[Float]]] = [:]
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
                if perSample[s] == nil { order.append(s) }
                // Each video's view rows are kept and combined at the end.
                perSample[s, default: []].append(row)
            }
            done += b.count
            progress?(done, loader.items.count)
        }
        let views = config.testTemporalViews * config.testSpatialCrops
        order.sort()
        var scores: [Float] = []
        scores.reserveCapacity(order.count * k)
        for s in order {
            scores += ensemble.combine(perSample[s]!)
        }
        return VideoScores(scores: scores, samples: order, classes: k, skipped: skipped, views: views, ensemble: ensemble,
                           seconds: Date().timeIntervalSince(start))
    }
}
