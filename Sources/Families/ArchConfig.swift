// The SlowFast / Slow / ResNet architecture as data, and the canonical PySlowFast
// state_dict it implies (names, shapes, order), mirroring PySlowFast's
// video_model_builder.py + resnet_helper.py module registration order.

import Foundation
import Formats

/// Which network family a config describes.
public enum ModelKind: String, Codable, Sendable, CaseIterable {
    /// Two pathways (slow + fast) with fast -> slow lateral fusions.
    case slowfast
    /// The slow pathway alone (Slow-only R50).
    case slow
    /// A 2D ResNet in 3D layout: one pathway, every temporal kernel 1.
    case resnet
    /// X3D: one pathway of channel-wise 3x3x3 bottlenecks with squeeze-excitation and Swish (the `x3d` fields).
    case x3d
    /// VideoMAE: tubelet tokens, joint space-time attention (the `transformer` fields).
    case videomae
    /// TimeSformer: per-frame patch tokens and a class token, divided space-time attention (the `transformer` fields).
    case timesformer

    /// A token-based family (its tensors are described by `TransformerLayout`, not a `NetworkGraph`).
    public var isTransformer: Bool { self == .videomae || self == .timesformer }
}

/// Activation the head applies in eval mode.
public enum HeadActivation: String, Codable, Sendable, CaseIterable {
    case softmax, sigmoid
}

/// A network's architecture, any family. Encoded as the `sfnet.arch` metadata (snake_case keys).
/// `model` names the family; the clip and head fields (num_classes, dropout, head_activation,
/// num_frames, train_crop, preset) are shared; the SlowFast family's fields describe SlowFast,
/// Slow-only and ResNet (those of the fast pathway and the fusions, alpha, beta_inv, fusion_*,
/// are kept but ignored when single-pathway); `x3d` holds X3D's, written flat beside the shared
/// ones, and an X3D config carries no SlowFast fields in its JSON.
public struct ArchConfig: Codable, Equatable, Sendable {
    /// Network family: "slowfast", "slow" or "resnet".
    public var model: ModelKind
    /// ResNet depth (50, 101); informational, `stage_depths` is what the builder reads.
    public var depth: Int
    /// Bottleneck blocks in res2..res5 ([3,4,6,3] for R50, [3,4,23,3] for R101).
    public var stageDepths: [Int]
    /// Slow stem output channels; bottleneck inner width of res2 is `num_groups * width_per_group`.
    public var widthPerGroup: Int
    /// Groups of the 3x3 `branch2.b` convolution (1 = ResNet, >1 = ResNeXt).
    public var numGroups: Int
    /// Frame-rate ratio fast/slow; the stride of the lateral fusion conv.
    public var alpha: Int
    /// Channel ratio slow/fast (the fast pathway has 1/beta_inv of the slow channels).
    public var betaInv: Int
    /// Output/input channel ratio of the fast -> slow fusion conv.
    public var fusionConvChannelRatio: Int
    /// Temporal kernel of the fusion conv (7 for 8x8, 5 for 4x16).
    public var fusionKernel: Int
    /// true: fusion is conv -> BN -> ReLU (PySlowFast, pytorchvideo); false: plain conv (mmaction2).
    public var fusionNorm: Bool
    /// Temporal kernel per stage (stem, res2..res5), per pathway [slow, fast]; `branch2.a` and stem conv.
    public var temporalKernels: [[Int]]
    /// Spatial stride of res2..res5 (on `branch2.b`, or on `branch2.a` when `stride_1x1`).
    public var spatialStrides: [Int]
    /// Put the spatial stride on the 1x1 `branch2.a` (MSRA style) instead of the 3x3.
    public var stride1x1: Bool
    /// Output classes of `head.projection`.
    public var numClasses: Int
    /// Dropout rate before the head projection (training only).
    public var dropout: Double
    /// Activation of the head in eval mode.
    public var headActivation: HeadActivation
    /// Fast-pathway frames the network was trained with (slow gets num_frames / alpha).
    public var numFrames: Int
    /// Training crop size; fixes the head's pooling kernel (crop / 32).
    public var trainCrop: Int
    /// Name of the preset this config equals, if any.
    public var preset: String?
    /// The X3D fields (`model` x3d only).
    public var x3d: X3DConfig?
    /// The transformer fields (`model` videomae or timesformer only).
    public var transformer: TransformerConfig?

    enum CodingKeys: String, CodingKey {
        case model, depth
        case stageDepths = "stage_depths"
        case widthPerGroup = "width_per_group"
        case numGroups = "num_groups"
        case alpha
        case betaInv = "beta_inv"
        case fusionConvChannelRatio = "fusion_conv_channel_ratio"
        case fusionKernel = "fusion_kernel"
        case fusionNorm = "fusion_norm"
        case temporalKernels = "temporal_kernels"
        case spatialStrides = "spatial_strides"
        case stride1x1 = "stride_1x1"
        case numClasses = "num_classes"
        case dropout
        case headActivation = "head_activation"
        case numFrames = "num_frames"
        case trainCrop = "train_crop"
        case preset
    }

    public init(model: ModelKind, depth: Int, stageDepths: [Int], widthPerGroup: Int = 64, numGroups: Int = 1,
                alpha: Int = 4, betaInv: Int = 8, fusionConvChannelRatio: Int = 2, fusionKernel: Int = 7,
                fusionNorm: Bool = true, temporalKernels: [[Int]], spatialStrides: [Int] = [1, 2, 2, 2],
                stride1x1: Bool = false, numClasses: Int, dropout: Double = 0.5,
                headActivation: HeadActivation = .softmax, numFrames: Int, trainCrop: Int = 224,
                preset: String? = nil) {
        self.model = model
        self.depth = depth
        self.stageDepths = stageDepths
        self.widthPerGroup = widthPerGroup
        self.numGroups = numGroups
        self.alpha = alpha
        self.betaInv = betaInv
        self.fusionConvChannelRatio = fusionConvChannelRatio
        self.fusionKernel = fusionKernel
        self.fusionNorm = fusionNorm
        self.temporalKernels = temporalKernels
        self.spatialStrides = spatialStrides
        self.stride1x1 = stride1x1
        self.numClasses = numClasses
        self.dropout = dropout
        self.headActivation = headActivation
        self.numFrames = numFrames
        self.trainCrop = trainCrop
        self.preset = preset
    }

    /// An X3D architecture: the SlowFast family's fields hold what X3D's imply (stage depths) or neutral values.
    public init(x3d: X3DConfig, numClasses: Int, numFrames: Int, trainCrop: Int, dropout: Double = 0.5,
                headActivation: HeadActivation = .softmax, preset: String? = nil) {
        self.init(model: .x3d, depth: 0, stageDepths: x3d.stageDepths, widthPerGroup: 0, numGroups: 1, alpha: 1, betaInv: 1,
                  fusionConvChannelRatio: 1, fusionKernel: 1, fusionNorm: false, temporalKernels: [], spatialStrides: X3DConfig.stageStrides,
                  numClasses: numClasses, dropout: dropout, headActivation: headActivation, numFrames: numFrames,
                  trainCrop: trainCrop, preset: preset)
        self.x3d = x3d
    }

    /// A video transformer: `numFrames` x `trainCrop`² is the clip its patch grid (and TimeSformer's
    /// learned position and time tables) is sized for.
    public init(transformer: TransformerConfig, family: ModelKind, numClasses: Int, numFrames: Int, trainCrop: Int,
                dropout: Double = 0.0, headActivation: HeadActivation = .softmax, preset: String? = nil) {
        precondition(family.isTransformer, "init(transformer:) takes videomae or timesformer")
        self.init(model: family, depth: 0, stageDepths: [], widthPerGroup: 0, numGroups: 1, alpha: 1, betaInv: 1,
                  fusionConvChannelRatio: 1, fusionKernel: 1, fusionNorm: false, temporalKernels: [], spatialStrides: [],
                  numClasses: numClasses, dropout: dropout, headActivation: headActivation, numFrames: numFrames,
                  trainCrop: trainCrop, preset: preset)
        self.transformer = transformer
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let model = try c.decode(ModelKind.self, forKey: .model)
        let numClasses = try c.decode(Int.self, forKey: .numClasses)
        let dropout = try c.decode(Double.self, forKey: .dropout)
        let headActivation = try c.decode(HeadActivation.self, forKey: .headActivation)
        let numFrames = try c.decode(Int.self, forKey: .numFrames)
        let trainCrop = try c.decode(Int.self, forKey: .trainCrop)
        let preset = try c.decodeIfPresent(String.self, forKey: .preset)
        if model == .x3d {
            self.init(x3d: try X3DConfig(from: decoder), numClasses: numClasses, numFrames: numFrames, trainCrop: trainCrop,
                      dropout: dropout, headActivation: headActivation, preset: preset)
            return
        }
        if model.isTransformer {
            self.init(transformer: try TransformerConfig(from: decoder), family: model, numClasses: numClasses, numFrames: numFrames,
                      trainCrop: trainCrop, dropout: dropout, headActivation: headActivation, preset: preset)
            return
        }
        self.init(model: model, depth: try c.decode(Int.self, forKey: .depth), stageDepths: try c.decode([Int].self, forKey: .stageDepths),
                  widthPerGroup: try c.decode(Int.self, forKey: .widthPerGroup), numGroups: try c.decode(Int.self, forKey: .numGroups),
                  alpha: try c.decode(Int.self, forKey: .alpha), betaInv: try c.decode(Int.self, forKey: .betaInv),
                  fusionConvChannelRatio: try c.decode(Int.self, forKey: .fusionConvChannelRatio),
                  fusionKernel: try c.decode(Int.self, forKey: .fusionKernel), fusionNorm: try c.decode(Bool.self, forKey: .fusionNorm),
                  temporalKernels: try c.decode([[Int]].self, forKey: .temporalKernels),
                  spatialStrides: try c.decode([Int].self, forKey: .spatialStrides), stride1x1: try c.decode(Bool.self, forKey: .stride1x1),
                  numClasses: numClasses, dropout: dropout, headActivation: headActivation, numFrames: numFrames,
                  trainCrop: trainCrop, preset: preset)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(numClasses, forKey: .numClasses)
        try c.encode(dropout, forKey: .dropout)
        try c.encode(headActivation, forKey: .headActivation)
        try c.encode(numFrames, forKey: .numFrames)
        try c.encode(trainCrop, forKey: .trainCrop)
        try c.encodeIfPresent(preset, forKey: .preset)
        if model == .x3d {
            try (x3d ?? X3DConfig()).encode(to: encoder)
            return
        }
        if model.isTransformer, let transformer {
            try transformer.encode(to: encoder)
            return
        }
        try c.encode(depth, forKey: .depth)
        try c.encode(stageDepths, forKey: .stageDepths)
        try c.encode(widthPerGroup, forKey: .widthPerGroup)
        try c.encode(numGroups, forKey: .numGroups)
        try c.encode(alpha, forKey: .alpha)
        try c.encode(betaInv, forKey: .betaInv)
        try c.encode(fusionConvChannelRatio, forKey: .fusionConvChannelRatio)
        try c.encode(fusionKernel, forKey: .fusionKernel)
        try c.encode(fusionNorm, forKey: .fusionNorm)
        try c.encode(temporalKernels, forKey: .temporalKernels)
        try c.encode(spatialStrides, forKey: .spatialStrides)
        try c.encode(stride1x1, forKey: .stride1x1)
    }

    // MARK: JSON

    /// The config as JSON with sorted keys (the `sfnet.arch` metadata value).
    public func jsonString() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    public static func fromJSON(_ text: String) throws -> ArchConfig {
        let config: ArchConfig
        do {
            config = try JSONDecoder().decode(ArchConfig.self, from: Data(text.utf8))
        } catch {
            throw FamilyError.invalidConfig(["not a valid architecture JSON: \(error)"])
        }
        try config.validate()
        return config
    }

    // MARK: Derived channels

    /// 2 for SlowFast, 1 otherwise.
    public var pathways: Int { model == .slowfast ? 2 : 1 }

    /// Stem output channels of `pathway`.
    public func stemChannels(pathway: Int) -> Int {
        pathway == 0 ? widthPerGroup : widthPerGroup / betaInv
    }

    /// Bottleneck inner width of `stage` (2...5) on `pathway`.
    public func innerChannels(stage: Int, pathway: Int) -> Int {
        let slow = (numGroups * widthPerGroup) << (stage - 2)
        return pathway == 0 ? slow : slow / betaInv
    }

    /// Output channels of `stage` (2...5) on `pathway` (inner * 4 on the slow pathway).
    public func outChannels(stage: Int, pathway: Int) -> Int {
        let slow = (widthPerGroup * 4) << (stage - 2)
        return pathway == 0 ? slow : slow / betaInv
    }

    /// Output channels of stage `stage` (1 = stem, 2...5) on `pathway`.
    func stageOutput(_ stage: Int, pathway: Int) -> Int {
        stage == 1 ? stemChannels(pathway: pathway) : outChannels(stage: stage, pathway: pathway)
    }

    /// Channels the fusion after `stage` (1...4) adds to the slow pathway (0 when single-pathway).
    public func fusedChannels(afterStage stage: Int) -> Int {
        model == .slowfast ? stageOutput(stage, pathway: 1) * fusionConvChannelRatio : 0
    }

    /// Input channels of `stage` (2...5) on `pathway`: the previous stage's output,
    /// plus the fused fast channels on the slow pathway.
    public func inChannels(stage: Int, pathway: Int) -> Int {
        let previous = stageOutput(stage - 1, pathway: pathway)
        return pathway == 0 ? previous + fusedChannels(afterStage: stage - 1) : previous
    }

    /// Input features of `head.projection`: slow res5 out (+ fast res5 out).
    public var headInputChannels: Int {
        (0 ..< pathways).reduce(0) { $0 + outChannels(stage: 5, pathway: $1) }
    }

    /// Temporal kernel of `stageIndex` (0 = stem, 1...4 = res2..res5) on `pathway`; 1 if the table is short.
    public func temporalKernel(stageIndex: Int, pathway: Int) -> Int {
        guard stageIndex < temporalKernels.count, pathway < temporalKernels[stageIndex].count else { return 1 }
        return temporalKernels[stageIndex][pathway]
    }

    // MARK: Canonical parameters

    /// Every canonical PySlowFast state_dict entry in PySlowFast's order (the graph's parameters).
    /// Weights are f32 in PyTorch layout `[out, in, kT, kH, kW]`; `num_batches_tracked` is an I64 scalar.
    public func expectedParameters() -> [(name: String, shape: [Int], dtype: DType)] {
        parameterSpecs.map { ($0.name, $0.shape, $0.dtype) }
    }

    /// Every canonical state-dict entry with its role, in the family's registration order: the graph's
    /// parameters (CNN families) or the transformer layout's.
    public var parameterSpecs: [ParameterSpec] {
        model.isTransformer ? TransformerLayout(arch: self).parameters : graph().parameters
    }

    /// Learnable parameters, as PyTorch's `sum(p.numel() for p in model.parameters())`
    /// (34,566,488 for SlowFast R50 8x8): BN running statistics and counters excluded.
    public var parameterCount: Int {
        parameterSpecs.filter(\.role.isLearnable).reduce(0) { $0 + $1.elementCount }
    }

    /// Floating-point state_dict elements: parameters plus BN running statistics.
    public var stateElementCount: Int {
        expectedParameters().filter { $0.dtype.isFloatingPoint }.reduce(0) { $0 + $1.shape.reduce(1, *) }
    }

    /// Whether a key names a learnable parameter (not a BN buffer) by PyTorch's buffer names;
    /// for files whose architecture is unknown (`inspect`). With a graph, read `ParameterSpec.role`.
    public static func isLearnable(_ name: String) -> Bool {
        !(name.hasSuffix(".running_mean") || name.hasSuffix(".running_var") || name.hasSuffix(".num_batches_tracked"))
    }

    // MARK: Validation

    /// Throws `FamilyError.invalidConfig` listing every inconsistency.
    public func validate() throws {
        var problems: [String] = []
        if model == .x3d {
            guard let x3d else { throw FamilyError.invalidConfig(["model x3d needs the x3d fields"]) }
            problems += x3d.problems()
            if numClasses < 1 || numClasses > 1_000_000 { problems.append("num_classes must be in 1...1000000, is \(numClasses)") }
            if numFrames < 1 || numFrames > 4096 { problems.append("num_frames must be in 1...4096, is \(numFrames)") }
            if trainCrop < 32 || trainCrop > 8192 { problems.append("train_crop must be in 32...8192, is \(trainCrop)") }
            if !problems.isEmpty { throw FamilyError.invalidConfig(problems) }
            try checkSize()
            return
        }
        if model.isTransformer {
            guard let transformer else { throw FamilyError.invalidConfig(["model \(model.rawValue) needs the transformer fields"]) }
            problems += transformer.problems(family: model.rawValue, frames: numFrames, crop: trainCrop)
            if numClasses < 1 || numClasses > 1_000_000 { problems.append("num_classes must be in 1...1000000, is \(numClasses)") }
            if numFrames < 1 || numFrames > 4096 { problems.append("num_frames must be in 1...4096, is \(numFrames)") }
            if trainCrop < 1 || trainCrop > 8192 { problems.append("train_crop must be in 1...8192, is \(trainCrop)") }
            if !problems.isEmpty { throw FamilyError.invalidConfig(problems) }
            try checkSize()
            return
        }
        if stageDepths.count != 4 { problems.append("stage_depths needs 4 entries (res2..res5), has \(stageDepths.count)") }
        if stageDepths.contains(where: { $0 < 1 }) { problems.append("stage_depths must be >= 1: \(stageDepths)") }
        if spatialStrides.count != 4 { problems.append("spatial_strides needs 4 entries, has \(spatialStrides.count)") }
        if temporalKernels.count != 5 {
            problems.append("temporal_kernels needs 5 entries (stem, res2..res5), has \(temporalKernels.count)")
        } else if let bad = temporalKernels.firstIndex(where: { $0.count != pathways }) {
            problems.append("temporal_kernels[\(bad)] needs \(pathways) entr\(pathways == 1 ? "y" : "ies") for model \(model.rawValue), has \(temporalKernels[bad].count)")
        }
        if temporalKernels.joined().contains(where: { $0 < 1 || $0 % 2 == 0 }) {
            problems.append("temporal kernels must be odd and >= 1: \(temporalKernels)")
        }
        if widthPerGroup < 1 || numGroups < 1 { problems.append("width_per_group and num_groups must be >= 1") }
        if numClasses < 1 { problems.append("num_classes must be >= 1, is \(numClasses)") }
        if model == .slowfast {
            if betaInv < 1 || widthPerGroup % betaInv != 0 {
                problems.append("width_per_group \(widthPerGroup) is not divisible by beta_inv \(betaInv)")
            }
            if alpha < 1 { problems.append("alpha must be >= 1") }
            if fusionConvChannelRatio < 1 { problems.append("fusion_conv_channel_ratio must be >= 1") }
            if fusionKernel < 1 || fusionKernel % 2 == 0 { problems.append("fusion_kernel must be odd, is \(fusionKernel)") }
        }
        // Upper bounds, so that a crafted sfnet.arch or PySlowFast config cannot overflow the channel,
        // kernel and padding arithmetic of the builders (each far above any published network).
        if stageDepths.contains(where: { $0 > 100 }) { problems.append("stage_depths must be <= 100: \(stageDepths)") }
        if temporalKernels.joined().contains(where: { $0 > 31 }) { problems.append("temporal kernels must be <= 31: \(temporalKernels)") }
        if spatialStrides.contains(where: { !(1 ... 4).contains($0) }) { problems.append("spatial strides must be in 1...4: \(spatialStrides)") }
        if widthPerGroup > 4096 || numGroups > 1024 { problems.append("width_per_group (<= 4096) and num_groups (<= 1024) are \(widthPerGroup) and \(numGroups)") }
        if numClasses > 1_000_000 { problems.append("num_classes must be <= 1000000, is \(numClasses)") }
        if model == .slowfast, alpha > 64 || betaInv > 1024 || fusionConvChannelRatio > 64 || fusionKernel > 31 {
            problems.append("alpha (<= 64), beta_inv (<= 1024), fusion_conv_channel_ratio (<= 64) and fusion_kernel (<= 31) are "
                + "\(alpha), \(betaInv), \(fusionConvChannelRatio) and \(fusionKernel)")
        }
        if model == .resnet, temporalKernels.joined().contains(where: { $0 != 1 }) {
            problems.append("model resnet needs every temporal kernel 1: \(temporalKernels)")
        }
        if !problems.isEmpty { throw FamilyError.invalidConfig(problems) }
        try checkSize()
    }

    /// At most 2^31 state elements (8 GiB of float32, 60x the largest published video network here), so that
    /// a crafted config within every field's bounds still cannot ask a fresh initialisation for terabytes.
    static let maxStateElements = 1 << 31

    private func checkSize() throws {
        let elements = parameterSpecs.reduce(0) { $0 + $1.elementCount }
        if elements > Self.maxStateElements {
            throw FamilyError.invalidConfig(["the network would have \(elements) state elements, more than \(Self.maxStateElements) "
                                             + "(8 GiB of float32): no published network is near this"])
        }
    }

    /// The family and its size in a few words: "slowfast R50", "x3d".
    public var familyName: String { model == .x3d || model.isTransformer ? model.rawValue : "\(model.rawValue) R\(depth)" }

    /// One line for messages: the preset name, or the family with its distinguishing numbers.
    public var summary: String {
        if let preset { return "\(preset) (\(numClasses) classes)" }
        if model == .x3d, let x3d {
            return "x3d, width \(x3d.widthFactor), depth \(x3d.depthFactor), \(numFrames)x\(trainCrop)², \(numClasses) classes"
        }
        if model.isTransformer, let t = transformer {
            return "\(model.rawValue), width \(t.hiddenSize), \(t.layers) layers, \(t.heads) heads, \(numFrames)x\(trainCrop)², \(numClasses) classes"
        }
        var parts = ["\(model.rawValue) R\(depth)", "width \(widthPerGroup)"]
        if model == .slowfast {
            parts += ["alpha \(alpha)", "beta_inv \(betaInv)", "fusion kernel \(fusionKernel)"]
        }
        parts.append("\(numClasses) classes")
        return parts.joined(separator: ", ")
    }
}
