// Fresh initialization of tensors a checkpoint lacks, as PySlowFast's
// weight_init_helper does: convs N(0, sqrt(2/fan_out)) (c2_msra_fill), the head
// N(0, 0.01) with zero bias, BN weight 1 / bias 0 / mean 0 / var 1. Seeded and
// deterministic: each tensor draws from its own stream derived from the seed and its name.

import Foundation
import Formats

/// SplitMix64 (Steele, Lea, Flood 2014): a small, fast, well-mixed 64-bit generator.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUnit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// Standard normal draws by Box-Muller, two per pair of uniforms.
    public mutating func fillNormal(_ out: UnsafeMutablePointer<Float>, count: Int, std: Double) {
        var i = 0
        while i < count {
            let u1 = 1 - nextUnit()              // (0, 1]: log stays finite
            let u2 = nextUnit()
            let r = (-2 * Foundation.log(u1)).squareRoot() * std
            let theta = 2 * Double.pi * u2
            out[i] = Float(r * Foundation.cos(theta))
            if i + 1 < count { out[i + 1] = Float(r * Foundation.sin(theta)) }
            i += 2
        }
    }
}

public enum FreshInit {
    /// Std of the head projection weight (PySlowFast MODEL.FC_INIT_STD).
    static let headStd = 0.01

    /// A fresh tensor for canonical `name` (f32, or I64 for num_batches_tracked) and what was done.
    public static func tensor(name: String, shape: [Int], seed: UInt64) -> (tensor: Tensor, action: String) {
        let count = shape.reduce(1, *)
        if name.hasSuffix(".num_batches_tracked") {
            let buffer = OwnedBuffer(count: count * DType.i64.size)
            buffer.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count)
            return (Tensor(dtype: .i64, shape: shape, data: buffer.bytes), "initialized 0")
        }
        let buffer = OwnedBuffer(count: count * DType.f32.size)
        let floats = buffer.pointer.bindMemory(to: Float.self, capacity: count)
        func fill(_ value: Float) { floats.initialize(repeating: value, count: count) }
        let action: String
        let isNorm = name.contains("bn.")   // stem .bn., fuse .bn., branch1_bn., branch2.a_bn. ...
        if name.hasSuffix(".running_var") || (isNorm && name.hasSuffix(".weight")) {
            fill(1); action = "initialized 1"
        } else if name.hasSuffix(".running_mean") || name.hasSuffix(".bias") {
            fill(0); action = "initialized 0"
        } else {
            let std: Double
            if name.hasPrefix("head.") {
                std = headStd
                action = "initialized fresh N(0,0.01)"
            } else {
                // c2_msra_fill: kaiming normal, fan_out = out channels x kernel volume.
                let fanOut = shape.isEmpty ? 1 : shape[0] * shape.dropFirst(2).reduce(1, *)
                std = (2.0 / Double(max(fanOut, 1))).squareRoot()
                action = "initialized fresh N(0,\(String(format: "%.4g", std))) (kaiming fan_out)"
            }
            var rng = SplitMix64(seed: streamSeed(seed, name))
            rng.fillNormal(floats, count: count, std: std)
        }
        for i in 0 ..< count { floats[i] = Float(bitPattern: floats[i].bitPattern.littleEndian) }
        return (Tensor(dtype: .f32, shape: shape, data: buffer.bytes), action)
    }

    /// The seed of `name`'s stream: FNV-1a of the name mixed into the user seed, so a
    /// tensor's values do not depend on which other tensors were initialized.
    static func streamSeed(_ seed: UInt64, _ name: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return seed ^ hash
    }
}

extension FreshInit {
    /// An f32 tensor of zeros.
    public static func zeros(_ shape: [Int]) -> Tensor {
        let buffer = OwnedBuffer(count: shape.reduce(1, *) * DType.f32.size)
        buffer.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count)
        return Tensor(dtype: .f32, shape: shape, data: buffer.bytes)
    }

    /// Whether PySlowFast's init (ZERO_INIT_FINAL_BN) starts `name` at 0: the scale of
    /// each bottleneck's last BN, so a fresh block starts as the identity.
    public static func isZeroInitFinalBN(_ name: String) -> Bool {
        name.hasSuffix(".branch2.c_bn.weight")
    }
}

extension FreshInit {
    /// Std of a fresh transformer tensor (Hugging Face's initializer_range).
    static let transformerStd = 0.02

    /// A fresh tensor of a video transformer, as Hugging Face's `_init_weights` does: linear and patch
    /// weights, class token and position/time tables N(0, 0.02) (truncated at 2 std, as trunc_normal_
    /// for TimeSformer; the draw is redone beyond it), LayerNorm scale 1, biases and shifts 0.
    public static func transformerTensor(_ spec: ParameterSpec, seed: UInt64) -> (tensor: Tensor, action: String) {
        let count = spec.elementCount
        let buffer = OwnedBuffer(count: count * DType.f32.size)
        let floats = buffer.pointer.bindMemory(to: Float.self, capacity: count)
        let action: String
        switch spec.role {
        case .normScale, .runningVar:
            floats.initialize(repeating: 1, count: count); action = "initialized 1"
        case .bias, .normShift, .runningMean, .batchCounter:
            floats.initialize(repeating: 0, count: count); action = "initialized 0"
        case .convWeight, .linearWeight, .embedding:
            var rng = SplitMix64(seed: streamSeed(seed, spec.name))
            rng.fillNormal(floats, count: count, std: transformerStd)
            for i in 0 ..< count where abs(floats[i]) > Float(2 * transformerStd) {
                var redo: Float = 0
                repeat { rng.fillNormal(&redo, count: 1, std: transformerStd) } while abs(redo) > Float(2 * transformerStd)
                floats[i] = redo
            }
            action = "initialized fresh N(0,0.02) truncated at 2 std"
        }
        for i in 0 ..< count { floats[i] = Float(bitPattern: floats[i].bitPattern.littleEndian) }
        return (Tensor(dtype: .f32, shape: spec.shape, data: buffer.bytes), action)
    }
}

/// Fresh weights for a whole architecture with PySlowFast's init (MSRA fill for convs,
/// BN weight 1 except each block's last BN at 0, head N(0, 0.01), bias 0), seeded: the
/// `--init scratch` start of fine-tuning.
public func freshWeights(for arch: ArchConfig, seed: UInt64) -> TensorMap {
    var map = TensorMap()
    if arch.model.isTransformer {
        for e in arch.parameterSpecs { map.set(e.name, FreshInit.transformerTensor(e, seed: seed).tensor) }
        return map
    }
    for e in arch.parameterSpecs {
        map.set(e.name, e.zeroInit ? FreshInit.zeros(e.shape) : FreshInit.tensor(name: e.name, shape: e.shape, seed: seed).tensor)
    }
    return map
}

/// A fresh classification head for `classes` classes (N(0, 0.01) weight, zero bias) replacing
/// `head.projection` in `weights`; the arch's `numClasses` is updated by the caller.
public func replaceHead(_ weights: inout TensorMap, inputChannels: Int, classes: Int, seed: UInt64) {
    weights.set("head.projection.weight", FreshInit.tensor(name: "head.projection.weight", shape: [classes, inputChannels], seed: seed).tensor)
    weights.set("head.projection.bias", FreshInit.tensor(name: "head.projection.bias", shape: [classes], seed: seed).tensor)
}

/// A fresh classifier of `arch.numClasses` classes for a video transformer (N(0, 0.02) truncated weight,
/// zero bias), replacing the layout's `classifier` in `weights`.
public func replaceClassifier(_ weights: inout TensorMap, arch: ArchConfig, seed: UInt64) {
    let layout = TransformerLayout(arch: arch)
    for spec in layout.parameters where spec.name.hasPrefix(layout.classifier + ".") {
        weights.set(spec.name, FreshInit.transformerTensor(spec, seed: seed).tensor)
    }
}

extension TransformerLayout {
    /// The depth of a tensor for layer-wise LR decay, as VideoMAE's `get_layer_id_for_vit`: the
    /// embeddings 0, encoder layer i at i + 1, the final norm and classifier at layers + 1.
    public func depth(of name: String) -> Int {
        if name.contains(".embeddings.") { return 0 }
        if let r = name.range(of: ".encoder.layer.") {
            let rest = name[r.upperBound...]
            if let i = Int(rest.prefix { $0.isNumber }) { return i + 1 }
        }
        return config.layers + 1
    }
}
