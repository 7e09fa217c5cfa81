// Named architectures of the published checkpoints (PySlowFast model zoo configs
// SLOWFAST_8x8_R50, SLOWFAST_4x16_R50, SLOWFAST_8x8_R101, SLOW_8x8_R50, and ImageNet ResNet-50).

import Foundation

extension ArchConfig {
    /// Temporal kernels (stem, res2..res5) x [slow, fast] of SlowFast.
    static let slowFastKernels = [[1, 5], [1, 3], [1, 3], [3, 3], [3, 3]]

    /// name -> config, in the order `presetNames` lists them.
    static let presets: [(name: String, config: ArchConfig)] = [
        ("slowfast-r50-8x8", ArchConfig(
            model: .slowfast, depth: 50, stageDepths: [3, 4, 6, 3], alpha: 4, fusionKernel: 7,
            temporalKernels: slowFastKernels, numClasses: 400, numFrames: 32, preset: "slowfast-r50-8x8")),
        ("slowfast-r50-4x16", ArchConfig(
            model: .slowfast, depth: 50, stageDepths: [3, 4, 6, 3], alpha: 8, fusionKernel: 5,
            temporalKernels: slowFastKernels, numClasses: 400, numFrames: 32, preset: "slowfast-r50-4x16")),
        ("slowfast-r101-8x8", ArchConfig(
            model: .slowfast, depth: 101, stageDepths: [3, 4, 23, 3], alpha: 4, fusionKernel: 7,
            temporalKernels: slowFastKernels, numClasses: 400, numFrames: 32, preset: "slowfast-r101-8x8")),
        ("slow-r50-8x8", ArchConfig(
            model: .slow, depth: 50, stageDepths: [3, 4, 6, 3],
            temporalKernels: [[1], [1], [1], [3], [3]], numClasses: 400, numFrames: 8, preset: "slow-r50-8x8")),
        ("resnet50", ArchConfig(
            model: .resnet, depth: 50, stageDepths: [3, 4, 6, 3],
            temporalKernels: [[1], [1], [1], [1], [1]], numClasses: 1000, numFrames: 1, preset: "resnet50")),
        // PySlowFast's X3D_XS/S/M/L configs: XS, S and M share every tensor shape and differ in the clip.
        ("x3d-xs", ArchConfig(x3d: X3DConfig(), numClasses: 400, numFrames: 4, trainCrop: 160, preset: "x3d-xs")),
        ("x3d-s", ArchConfig(x3d: X3DConfig(), numClasses: 400, numFrames: 13, trainCrop: 160, preset: "x3d-s")),
        ("x3d-m", ArchConfig(x3d: X3DConfig(), numClasses: 400, numFrames: 16, trainCrop: 224, preset: "x3d-m")),
        ("x3d-l", ArchConfig(x3d: X3DConfig(depthFactor: 5.0), numClasses: 400, numFrames: 16, trainCrop: 312, preset: "x3d-l")),
        // Hugging Face's MCG-NJU/videomae-{small,base}-finetuned-kinetics and facebook/timesformer-base-finetuned-k400.
        ("videomae-s", ArchConfig(transformer: .videoMAE(hidden: 384, layers: 12, heads: 6, intermediate: 1536), family: .videomae,
                                  numClasses: 400, numFrames: 16, trainCrop: 224, preset: "videomae-s")),
        ("videomae-b", ArchConfig(transformer: .videoMAE(hidden: 768, layers: 12, heads: 12, intermediate: 3072), family: .videomae,
                                  numClasses: 400, numFrames: 16, trainCrop: 224, preset: "videomae-b")),
        ("timesformer-b", ArchConfig(transformer: .timeSformer(hidden: 768, layers: 12, heads: 12, intermediate: 3072),
                                     family: .timesformer, numClasses: 400, numFrames: 8, trainCrop: 224, preset: "timesformer-b")),
    ]

    /// Names accepted by `preset(named:)`.
    public static var presetNames: [String] { presets.map(\.name) }

    /// The preset called `name`, or nil.
    public static func preset(named name: String) -> ArchConfig? {
        presets.first { $0.name == name }?.config
    }

    /// The preset called `name`; throws listing the known names.
    public static func requirePreset(_ name: String) throws -> ArchConfig {
        guard let config = preset(named: name) else { throw FamilyError.unknownPreset(name, known: presetNames) }
        return config
    }

    /// The preset this config equals exactly (ignoring the `preset` field), if any.
    public var matchingPresetName: String? {
        var probe = self
        probe.preset = nil
        return Self.presets.first { var p = $0.config; p.preset = nil; return p == probe }?.name
    }

    /// A copy whose `preset` field names the preset it equals, or nil.
    public func withPresetName() -> ArchConfig {
        var copy = self
        copy.preset = matchingPresetName
        return copy
    }

    /// The preset that has the same tensor shapes except possibly the class count
    /// (fields the weights cannot show — frames, crop, dropout, activation, strides — ignored).
    public func presetWithSameBackbone() -> (name: String, config: ArchConfig)? {
        func backbone(_ c: ArchConfig) -> ArchConfig {
            var b = c
            b.numClasses = 0; b.preset = nil; b.numFrames = 0; b.trainCrop = 0; b.dropout = 0
            b.headActivation = .softmax; b.spatialStrides = []; b.stride1x1 = false
            return b
        }
        let mine = backbone(self)
        return Self.presets.first { backbone($0.config) == mine }
    }
}
