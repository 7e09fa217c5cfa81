// What the forward and train-step benchmarks share: the preset with the clip's
// frames and crop, and a seeded random clip of the network's input shapes.

import Families
import Convert
import Formats
import Networks

enum BenchSupport {
    /// The preset at the benchmark's clip size (frames, crop), threads set.
    static func config(preset: String, frames: Int, size: Int, threads: Int) throws -> ArchConfig {
        guard var config = ArchConfig.preset(named: preset) else {
            throw VerifyError.weights(preset, "unknown preset; presets: \(ArchConfig.presetNames.joined(separator: ", "))")
        }
        config.numFrames = config.model == .resnet ? 1 : frames
        config.trainCrop = size
        Threading.setThreads(threads)
        return config
    }

    /// N(0, 1) inputs of the network's shapes (slow + fast, or the single pathway), seeded.
    static func inputs(_ config: ArchConfig, batch: Int, frames: Int, size: Int) -> (shapes: [[Int]], tensors: [FloatTensor]) {
        // The graph's inputs at the training clip `config` describes (SlowFast: frames / alpha and frames).
        var clip = config
        clip.numFrames = config.model == .resnet ? 1 : frames
        let shapes = clip.graphInputs.map { [batch, 3, $0.frames, size, size] }
        var rng = SplitMix64(seed: 1)
        return (shapes, shapes.map { s -> FloatTensor in
            let t = FloatTensor(uninitialized: s)
            rng.fillNormal(t.pointer, count: t.count, std: 1)
            return t
        })
    }
}
