// Head-only fine-tuning on cached features: when every parameter before the projection is
// frozen and so are the BN statistics, the network computes the same projection inputs for
// the same clip on every epoch. They are computed once, for `views` augmented views of each
// training clip (epoch e trains on view e mod views), and the head (dropout + linear
// projection) is then trained on them: each step is a small GEMM instead of a forward pass,
// so head-only training on a laptop takes minutes. What is cached is what feeds the trained
// part: SlowFast's pooled features, or, for a head with a hidden unit (X3D: pool -> lin_5 ->
// ReLU -> dropout -> projection), lin_5's output after its ReLU -- with lin_5 frozen, only the
// projection trains (`--head-only`); a lin_5 that trains runs the full forward instead. A transformer
// has no BN statistics: with all but its classifier frozen, the cache holds what the classifier reads.

import Foundation
import Networks
import Train
import Video

struct FeatureCache {
    let views: Int
    let channels: Int
    /// features[view][sample] -> channels floats (nil when the video could not be read).
    var features: [[[Float]?]]
    var labels: [[Float]]

    static func build(model: any ClipNetwork, dataset: VideoDataset, clip: ClipConfig, views: Int, batch: Int, workers: Int, seed: UInt64,
                      onBadVideo: BadVideoPolicy, progress: (Int, Int) -> Void) throws -> FeatureCache {
        let n = dataset.samples.count
        var features = [[[Float]?]](repeating: [[Float]?](repeating: nil, count: n), count: views)
        var channels = 0
        var done = 0
        for v in 0 ..< views {
            // The same augmentation stream the full loop would draw for epoch v.
            let loader = try ClipLoader(dataset: dataset, config: clip,
                                        options: LoaderOptions(batchSize: batch, workers: workers, training: true, seed: seed, onBadVideo: onBadVideo),
                                        epoch: v)
            while let b = try loader.next() {
                guard b.count > 0 else { continue }
                let out = try model.forward(Scoring.inputs(b, arch: model.config), capture: true)
                // A CNN's pooled grid ("head.pool", N x C x 1 x 1 x 1), or what a transformer's classifier reads ("pooled", N x D).
                guard let pool = out.activations.first(where: { $0.name == "head.pool" || $0.name == "pooled" })?.value else {
                    throw FinetuneError("the network did not report its pooled head features")
                }
                guard pool.shape.count == 2 || (pool.shape.count == 5 && pool.shape[2] * pool.shape[3] * pool.shape[4] == 1) else {
                    throw FinetuneError("cached features need the clip at the network's training size (head grid 1x1x1), got \(pool.shape)")
                }
                // (N, D): pooled channels, or the hidden unit's output (X3D's lin_5); a transformer's pooled tokens as they are.
                let rows = (model as? EvalNetwork)?.projectionInputs(pool) ?? pool
                let per = rows.count / b.count
                channels = per
                for (j, s) in b.sampleIndices.enumerated() {
                    features[v][s] = Array(UnsafeBufferPointer(start: rows.pointer + j * per, count: per))
                }
                done += b.count
                progress(done, n * views)
            }
        }
        let k = dataset.classes.count
        let labels = dataset.samples.map { s -> [Float] in
            var row = [Float](repeating: 0, count: k)
            for l in s.labels where l >= 0 && l < k { row[l] = 1 }
            return row
        }
        return FeatureCache(views: views, channels: channels, features: features, labels: labels)
    }

    /// One optimisation step of the head on `rows` (features of a batch): dropout, projection,
    /// loss, and the gradients written into the store's head gradient buffers. Returns the loss.
    static func headStep(_ rows: [[Float]], targets: [Float], store: ParameterStore, dropout: Double, loss: LossKind,
                         rng: inout TrainRNG) throws -> Float {
        let head = store.headProjection
        guard let w = store.value(head + ".weight"), let b = store.value(head + ".bias"),
              let gw = store.gradient(head + ".weight"), let gb = store.gradient(head + ".bias") else {
            throw FinetuneError("the head is frozen: nothing to train")
        }
        let (k, c, n) = (w.shape[0], w.shape[1], rows.count)
        // Inverted dropout, as nn.Dropout in train mode.
        let keep = 1 - dropout
        var x = [Float](repeating: 0, count: n * c)
        for i in 0 ..< n {
            for j in 0 ..< c {
                let kept = dropout == 0 || Double(rng.next() >> 11) / Double(1 << 53) < keep
                x[i * c + j] = kept ? rows[i][j] / Float(keep) : 0
            }
        }
        var logits = [Float](repeating: 0, count: n * k)
        for i in 0 ..< n {
            for o in 0 ..< k {
                var s = b.pointer[o]
                for j in 0 ..< c { s += x[i * c + j] * w.pointer[o * c + j] }
                logits[i * k + o] = s
            }
        }
        let r: LossResult
        switch loss {
        case .bce: r = try Loss.bceWithLogits(logits: logits, targets: targets, batch: n, classes: k)
        case .ce:
            let labels = (0 ..< n).map { i in (0 ..< k).max { targets[i * k + $0] < targets[i * k + $1] }! }
            r = try Loss.softmaxCrossEntropy(logits: logits, labels: labels, batch: n, classes: k)
        }
        gw.fill(0)
        gb.fill(0)
        for i in 0 ..< n {
            for o in 0 ..< k {
                let d = r.dLogits[i * k + o]
                gb.pointer[o] += d
                for j in 0 ..< c { gw.pointer[o * c + j] += d * x[i * c + j] }
            }
        }
        return r.loss
    }
}
