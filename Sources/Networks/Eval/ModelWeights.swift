// Strict weight loading for the network builder: every canonical PySlowFast
// tensor of the config present with its exact shape, nothing unused
// (`num_batches_tracked` aside), any float dtype cast to f32. Plus seeded
// random weights in the same names, for tests and benchmarks.

import Families
import Foundation
import Formats

/// The canonical tensors of one config as float32, keyed by PySlowFast name.
struct ModelWeights {
    private var tensors: [String: FloatTensor]

    /// Checks `map` strictly against `config.expectedParameters()` and converts it.
    init(config: ArchConfig, map: TensorMap) throws {
        let expected = config.expectedParameters()
        var known = Set<String>()
        var offenders: [WeightMismatch] = []
        var tensors: [String: FloatTensor] = [:]
        for entry in expected {
            known.insert(entry.name)
            // BN batch counters are bookkeeping of training: accepted when present, not required.
            if entry.name.hasSuffix(".num_batches_tracked") { continue }
            guard let t = map[entry.name] else {
                offenders.append(WeightMismatch(kind: .missing, name: entry.name, modelShape: entry.shape))
                continue
            }
            guard t.shape == entry.shape else {
                offenders.append(WeightMismatch(kind: .misshaped, name: entry.name, fileShape: t.shape, modelShape: entry.shape))
                continue
            }
            guard t.dtype.isFloatingPoint else {
                offenders.append(WeightMismatch(kind: .wrongDType, name: entry.name, fileShape: t.shape,
                                                modelShape: entry.shape, fileDType: t.dtype.shortName))
                continue
            }
            tensors[entry.name] = Self.floatTensor(t)
        }
        for name in map.names where !known.contains(name) {
            offenders.append(WeightMismatch(kind: .unused, name: name, fileShape: map[name]?.shape))
        }
        guard offenders.isEmpty else {
            let rank: [WeightMismatch.Kind: Int] = [.misshaped: 0, .wrongDType: 1, .missing: 2, .unused: 3]
            let sorted = offenders.enumerated()
                .sorted { (rank[$0.element.kind]!, $0.offset) < (rank[$1.element.kind]!, $1.offset) }.map(\.element)
            throw ModelError.weights(offenders: Array(sorted.prefix(10)), total: offenders.count,
                                     config: config.summary, hint: Self.hint(offenders, config: config))
        }
        self.tensors = tensors
    }

    /// The tensor `name`; the constructor guaranteed its presence and shape.
    subscript(_ name: String) -> FloatTensor {
        guard let t = tensors[name] else { preconditionFailure("weight \(name) was not loaded") }
        return t
    }

    /// A tensor's elements as float32 in a new `FloatTensor` (little-endian bytes of any float dtype).
    static func floatTensor(_ t: Formats.Tensor) -> FloatTensor {
        let out = FloatTensor(uninitialized: t.shape)
        withExtendedLifetime(t.data.owner) {
            if let base = t.data.raw.baseAddress, t.numel > 0 {
                DTypeCast.convert(base, from: t.dtype, UnsafeMutableRawPointer(out.pointer), to: .f32, count: t.numel)
            }
        }
        #if _endian(big)
        for i in 0..<out.count { out.pointer[i] = Float(bitPattern: UInt32(littleEndian: out.pointer[i].bitPattern)) }
        #endif
        return out
    }

    /// A likely cause where the offenders show one.
    static func hint(_ offenders: [WeightMismatch], config: ArchConfig) -> String? {
        func variant(_ k: Int) -> String { k == 5 ? "4x16" : k == 7 ? "8x8" : "fusion-kernel-\(k)" }
        for o in offenders where o.kind == .misshaped && o.name.hasSuffix("conv_f2s.weight") {
            if let f = o.fileShape, let m = o.modelShape, f.count == 5, m.count == 5, f[2] != m[2], f[0] == m[0], f[1] == m[1] {
                return "fusion kernel \(f[2]) vs \(m[2]): \(variant(f[2])) weights with an \(variant(m[2])) config?"
            }
        }
        let fuseBN = offenders.filter { $0.name.contains("_fuse.bn.") }
        if !fuseBN.isEmpty, fuseBN.count == offenders.count {
            return config.fusionNorm ? "the weights have no fusion BN (mmaction2-style laterals): use fusion_norm false"
                                     : "the weights have fusion BN: use fusion_norm true"
        }
        if let head = offenders.first(where: { $0.name == "head.projection.weight" && $0.kind == .misshaped }),
           let f = head.fileShape, let m = head.modelShape, f.count == 2, m.count == 2, f[1] == m[1] {
            return "the weights have \(f[0]) classes, the config \(m[0])"
        }
        return nil
    }
}

// MARK: - Random weights

extension EvalNetwork {
    /// Seeded random weights in canonical names for `config` (f32, plus int64
    /// `num_batches_tracked`): He-uniform convolutions, BN statistics near
    /// identity with small residual-branch gammas so that activations stay
    /// bounded through deep stacks. Deterministic for a seed.
    public static func randomWeights(config: ArchConfig, seed: UInt64) -> TensorMap {
        // A transformer's scale matters (LayerNorm, softmax): its fresh initialisation, seeded.
        if config.model.isTransformer { return freshWeights(for: config, seed: seed) }
        var rng = Families.SplitMix64(seed: seed) // the same generator as Convert's fresh initializations
        var map = TensorMap()
        for entry in config.expectedParameters() {
            let n = entry.shape.reduce(1, *)
            if entry.dtype == .i64 {
                let buffer = OwnedBuffer(count: 8)
                buffer.pointer.storeBytes(of: Int64(1000).littleEndian, as: Int64.self)
                map.set(entry.name, Formats.Tensor(dtype: .i64, shape: entry.shape, data: buffer.bytes))
                continue
            }
            let name = entry.name
            let range: ClosedRange<Float>
            if entry.shape.count == 5 {
                let fanIn = entry.shape[1...].reduce(1, *)
                let a = (6 / Float(fanIn)).squareRoot()
                range = -a...a
            } else if name == "head.projection.weight" {
                let a = 1 / Float(entry.shape[1]).squareRoot()
                range = -a...a
            } else if name.hasSuffix(".running_var") {
                range = 0.5...2
            } else if name.hasSuffix(".weight") {
                range = name.hasSuffix("c_bn.weight") ? 0.1...0.4 : 0.5...1.5
            } else {
                range = -0.1...0.1 // BN bias, running_mean, head bias
            }
            let buffer = OwnedBuffer(count: n * 4)
            let p = buffer.pointer.bindMemory(to: Float.self, capacity: max(n, 1))
            for i in 0..<n {
                let u = Float(rng.next() >> 40) / Float(1 << 24) // [0, 1)
                p[i] = range.lowerBound + u * (range.upperBound - range.lowerBound)
            }
            #if _endian(big)
            for i in 0..<n { p[i] = Float(bitPattern: p[i].bitPattern.littleEndian) }
            #endif
            map.set(name, Formats.Tensor(dtype: .f32, shape: entry.shape, data: buffer.bytes))
        }
        return map
    }
}
