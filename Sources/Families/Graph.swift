// A network as data: the one description of a family's topology that the eval
// executor, the training executor, the canonical state-dict names (their order,
// shapes and roles) and the ONNX export all read. A family turns its config into
// a `NetworkGraph` (`ArchConfig.graph()`); nothing else writes a topology down.
//
// The graph is a list of nodes over *lanes* (a pathway: SlowFast has a slow and a
// fast lane, every other CNN family one): each node reads and writes the current
// value of its lane(s), in execution order, which is also PyTorch's module
// registration order, so the parameters fall out in state_dict order. Nodes are at
// the granularity the executors optimise at (a convolution with its norm and
// activation, a residual block, a fusion), not single ops.

import Foundation
import Formats

/// (t, h, w) of a kernel, stride or padding.
public struct Triple: Hashable, Sendable, CustomStringConvertible {
    public var t: Int, h: Int, w: Int
    public init(_ t: Int, _ h: Int, _ w: Int) { (self.t, self.h, self.w) = (t, h, w) }
    public init(_ all: Int) { (t, h, w) = (all, all, all) }
    public var array: [Int] { [t, h, w] }
    public var product: Int { t * h * w }
    public var description: String { "\(t)x\(h)x\(w)" }
}

/// What a parameter is for. The optimizer (no weight decay on norms and biases), fresh
/// initialisation, parameter counts and freezing rules read roles, never names.
public enum ParameterRole: String, Sendable, CaseIterable {
    case convWeight, linearWeight, bias, normScale, normShift, runningMean, runningVar, batchCounter
    /// A learned token or position table (TimeSformer's class token, position and time embeddings):
    /// trained, never weight-decayed.
    case embedding

    /// Trained by the optimizer (PyTorch's `model.parameters()`), as opposed to a buffer.
    public var isLearnable: Bool {
        switch self {
        case .convWeight, .linearWeight, .bias, .normScale, .normShift, .embedding: return true
        case .runningMean, .runningVar, .batchCounter: return false
        }
    }

    /// A normalisation layer's scale or shift.
    public var isNorm: Bool { self == .normScale || self == .normShift }
}

/// One canonical state-dict entry.
public struct ParameterSpec: Equatable, Sendable {
    public var name: String
    public var shape: [Int]
    public var dtype: DType
    public var role: ParameterRole
    /// PySlowFast's ZERO_INIT_FINAL_BN: this norm scale starts at 0 in a fresh network,
    /// so that a fresh residual block starts as the identity.
    public var zeroInit: Bool

    public init(name: String, shape: [Int], dtype: DType = .f32, role: ParameterRole, zeroInit: Bool = false) {
        (self.name, self.shape, self.dtype, self.role, self.zeroInit) = (name, shape, dtype, role, zeroInit)
    }

    public var elementCount: Int { shape.reduce(1, *) }
}

/// Activation after a unit's norm.
public enum UnitActivation: String, Sendable { case none, relu, swish }

/// A convolution (no bias) with an optional BatchNorm3d and an activation.
public struct ConvUnit: Sendable {
    /// Module name of the convolution (`<name>.weight`).
    public var name: String
    /// [out, in / groups, kT, kH, kW].
    public var weightShape: [Int]
    public var stride: Triple
    public var padding: Triple
    public var groups: Int
    /// Module name of the BatchNorm3d after the convolution, if any.
    public var norm: String?
    public var activation: UnitActivation
    /// The norm scale starts at 0 in a fresh network (a residual block's last norm).
    public var zeroInitNorm: Bool
    /// The profile's class for this unit ("conv stem", ...); nil: from the kernel.
    public var profileKind: String?

    public init(name: String, weightShape: [Int], stride: Triple = Triple(1), padding: Triple = Triple(0), groups: Int = 1,
                norm: String?, activation: UnitActivation, zeroInitNorm: Bool = false, profileKind: String? = nil) {
        self.name = name
        self.weightShape = weightShape
        self.stride = stride
        self.padding = padding
        self.groups = groups
        self.norm = norm
        self.activation = activation
        self.zeroInitNorm = zeroInitNorm
        self.profileKind = profileKind
    }

    public var outChannels: Int { weightShape[0] }
    public var kernel: Triple { Triple(weightShape[2], weightShape[3], weightShape[4]) }

    /// The unit's state-dict entries in registration order (conv, then the norm's five).
    public var parameters: [ParameterSpec] {
        var out = [ParameterSpec(name: name + ".weight", shape: weightShape, role: .convWeight)]
        if let norm {
            let c = weightShape[0]
            out.append(ParameterSpec(name: norm + ".weight", shape: [c], role: .normScale, zeroInit: zeroInitNorm))
            out.append(ParameterSpec(name: norm + ".bias", shape: [c], role: .normShift))
            out.append(ParameterSpec(name: norm + ".running_mean", shape: [c], role: .runningMean))
            out.append(ParameterSpec(name: norm + ".running_var", shape: [c], role: .runningVar))
            out.append(ParameterSpec(name: norm + ".num_batches_tracked", shape: [], dtype: .i64, role: .batchCounter))
        }
        return out
    }
}

/// Squeeze-excitation (PySlowFast's operators.SE): global average pool over (T, H, W), 1x1x1 conv
/// with bias to `reduced` channels, ReLU, 1x1x1 conv with bias back to `channels`, sigmoid, and the
/// input scaled per channel.
public struct SqueezeExcite: Sendable {
    /// Module name (`<name>.fc1.weight`, `<name>.fc1.bias`, `<name>.fc2.weight`, `<name>.fc2.bias`).
    public var name: String
    public var channels: Int
    public var reduced: Int

    public init(name: String, channels: Int, reduced: Int) { (self.name, self.channels, self.reduced) = (name, channels, reduced) }

    public var parameters: [ParameterSpec] {
        [ParameterSpec(name: name + ".fc1.weight", shape: [reduced, channels, 1, 1, 1], role: .convWeight),
         ParameterSpec(name: name + ".fc1.bias", shape: [reduced], role: .bias),
         ParameterSpec(name: name + ".fc2.weight", shape: [channels, reduced, 1, 1, 1], role: .convWeight),
         ParameterSpec(name: name + ".fc2.bias", shape: [channels], role: .bias)]
    }
}

/// A residual bottleneck (PySlowFast's ResBlock around BottleneckTransform or X3DTransform):
/// a -> b -> c, each a unit (c with its norm only), plus the shortcut (a strided 1x1x1 unit, or
/// the identity), added, then ReLU. With `se`, the squeeze-excitation runs on b's normalised
/// output before b's activation (X3D: a 1x1x1 + ReLU, b channel-wise 3x3x3, SE, Swish).
public struct BottleneckBlock: Sendable {
    /// `sK.pathwayP_resI`.
    public var name: String
    public var a: ConvUnit, b: ConvUnit, c: ConvUnit
    public var shortcut: ConvUnit?
    public var se: SqueezeExcite?

    public init(name: String, a: ConvUnit, b: ConvUnit, c: ConvUnit, shortcut: ConvUnit?, se: SqueezeExcite? = nil) {
        (self.name, self.a, self.b, self.c, self.shortcut, self.se) = (name, a, b, c, shortcut, se)
    }

    /// Registration order: branch1 first, then branch2's a, b, c.
    public var units: [ConvUnit] { (shortcut.map { [$0] } ?? []) + [a, b, c] }

    /// Registration order: branch1, a, b, the squeeze-excitation, c.
    public var parameters: [ParameterSpec] {
        (shortcut?.parameters ?? []) + a.parameters + b.parameters + (se?.parameters ?? []) + c.parameters
    }
}

/// Max pooling (PyTorch semantics: padding never wins).
public struct PoolWindow: Sendable {
    public var kernel: Triple, stride: Triple, padding: Triple
    public init(kernel: Triple, stride: Triple, padding: Triple) { (self.kernel, self.stride, self.padding) = (kernel, stride, padding) }
}

/// One step of the network, in execution order.
public enum GraphNode: Sendable {
    /// lane = unit(lane).
    case unit(ConvUnit, lane: Int)
    /// lane = maxpool(lane); `name` names the op in profiles and exports.
    case maxPool(name: String, PoolWindow, lane: Int)
    /// lane = block(lane).
    case bottleneck(BottleneckBlock, lane: Int)
    /// into = concat(into, unit(from)) along channels, `into`'s channels first (SlowFast's fast -> slow fusion).
    case fuse(ConvUnit, from: Int, into: Int, stage: String)
    /// The end of a stage: each lane's value is the stage's output, named `<stage>.pathway<lane>` when captured.
    case stageEnd(String)

    /// The node's parameters in registration order.
    public var parameters: [ParameterSpec] {
        switch self {
        case let .unit(u, _), let .fuse(u, _, _, _): return u.parameters
        case let .bottleneck(block, _): return block.parameters
        case .maxPool, .stageEnd: return []
        }
    }

    /// Every convolution unit of the node, in registration order.
    public var units: [ConvUnit] {
        switch self {
        case let .unit(u, _), let .fuse(u, _, _, _): return [u]
        case let .bottleneck(block, _): return block.units
        case .maxPool, .stageEnd: return []
        }
    }
}

/// One input of the network.
public struct GraphInput: Sendable {
    /// "slow", "fast" or "x": the input's name in references and exports.
    public var name: String
    /// Frames of the training clip on this lane.
    public var frames: Int
    /// The lane also takes (N, 3, H, W) (a 2D network), read as one frame.
    public var accepts2D: Bool
}

/// The classifier after the trunk: per lane a fixed-kernel average pool (stride 1) sized by the
/// training clip, concatenated in lane order, optionally a 1x1x1 unit on the pooled grid (X3D's
/// `lin_5` with ReLU), dropout, then a linear projection applied at each position of the pooled
/// grid and averaged (logits), with the eval activation averaged likewise.
public struct HeadSpec: Sendable {
    public var poolKernels: [Triple]
    /// A 1x1x1 unit between the pool and the projection (X3D's lin_5); nil for SlowFast.
    public var hidden: ConvUnit?
    public var dropout: Double
    /// Module name of the projection (`<name>.weight` [classes, inputChannels], `<name>.bias`).
    public var projection: String
    public var inputChannels: Int
    public var classes: Int
    public var activation: HeadActivation

    /// Features the projection reads: the hidden unit's outputs, or the pooled channels.
    public var projectionInputs: Int { hidden?.outChannels ?? inputChannels }

    public var parameters: [ParameterSpec] {
        (hidden?.parameters ?? []) + [ParameterSpec(name: projection + ".weight", shape: [classes, projectionInputs], role: .linearWeight),
         ParameterSpec(name: projection + ".bias", shape: [classes], role: .bias)]
    }
}

/// A whole network: inputs (one per lane), nodes in execution order, the head.
public struct NetworkGraph: Sendable {
    /// The family's name (`sfnet.arch`'s "model").
    public var family: String
    public var inputs: [GraphInput]
    public var nodes: [GraphNode]
    public var head: HeadSpec

    public var lanes: Int { inputs.count }

    /// Every canonical state-dict entry in registration order (PyTorch's `state_dict()` order).
    public var parameters: [ParameterSpec] { nodes.flatMap(\.parameters) + head.parameters }

    /// Every convolution unit in execution order.
    public var units: [ConvUnit] { nodes.flatMap(\.units) }
}
