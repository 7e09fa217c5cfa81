// The trainable network's state keyed by canonical PySlowFast name: parameters
// (conv weights, BN weight/bias, head projection) with their gradient buffers,
// BN running statistics and batch counters, and which parameters are frozen.
// Loaded strictly (ModelWeights), exported back as a TensorMap in canonical
// order for the eval network, checkpoints and the optimizer.

import Families
import Foundation
import Formats

/// Parameters, gradients and BN buffers of one network.
public final class ParameterStore {
    /// Learnable tensors in canonical (state_dict) order: no running statistics, no counters.
    public let parameterNames: [String]
    /// `running_mean` / `running_var` buffers, canonical order.
    public let bufferNames: [String]
    /// BN module names (`s1.pathway0_stem.bn`, ...), canonical order.
    public let batchNormModules: [String]
    private var values: [String: FloatTensor] = [:]
    private var gradients: [String: FloatTensor] = [:]
    /// `num_batches_tracked` per BN module.
    public private(set) var batchesTracked: [String: Int64] = [:]
    private let config: ArchConfig
    /// What each entry is for, from the graph.
    private var roles: [String: ParameterRole] = [:]

    /// Module name of the classifier's projection (the graph's head), read once.
    public let headProjection: String

    /// The role of a canonical entry (nil for names the network does not have).
    public func role(_ name: String) -> ParameterRole? { roles[name] }

    /// Loads `weights` strictly for `config` (every tensor present with its shape;
    /// `num_batches_tracked` optional, 0 when absent). Parameters whose name matches one
    /// of `frozen` (glob patterns: `*` any run, `?` one character) get no gradient buffer.
    public init(config: ArchConfig, weights: TensorMap, frozen: [String] = []) throws {
        let loaded = try ModelWeights(config: config, map: weights)
        self.config = config
        var params: [String] = [], buffers: [String] = [], modules: [String] = []
        headProjection = config.model.isTransformer ? TransformerLayout(arch: config).classifier : config.graph().head.projection
        for entry in config.parameterSpecs {
            let name = entry.name
            roles[name] = entry.role
            if entry.role == .batchCounter {
                let module = String(name.dropLast(".num_batches_tracked".count))
                modules.append(module)
                var count: Int64 = 0
                if let t = weights[name], t.dtype == .i64, t.numel == 1 {
                    withExtendedLifetime(t.data.owner) {
                        count = Int64(littleEndian: t.data.raw.baseAddress!.loadUnaligned(as: Int64.self))
                    }
                }
                batchesTracked[module] = count
                continue
            }
            values[name] = loaded[name]
            if !entry.role.isLearnable {
                buffers.append(name)
            } else {
                params.append(name)
                if !frozen.contains(where: { globMatch($0, name) }) {
                    gradients[name] = FloatTensor(zeros: loaded[name].shape)
                }
            }
        }
        parameterNames = params
        bufferNames = buffers
        batchNormModules = modules
    }

    /// The tensor `name` (parameter or buffer); live: the optimizer updates it in place.
    public func value(_ name: String) -> FloatTensor? { values[name] }

    /// The gradient buffer of parameter `name`; nil when frozen (or not a parameter).
    public func gradient(_ name: String) -> FloatTensor? { gradients[name] }

    /// Whether parameter `name` receives gradients.
    public func isTrainable(_ name: String) -> Bool { gradients[name] != nil }

    /// Names of the parameters that receive gradients, canonical order.
    public var trainableNames: [String] { parameterNames.filter { gradients[$0] != nil } }

    /// Sets every gradient to zero (backward accumulates, as PyTorch's .grad does).
    public func zeroGradients() {
        for g in gradients.values {
            let p = g.pointer
            parallelRanges(g.count, minPerThread: 1 << 16) { range in (p + range.lowerBound).update(repeating: 0, count: range.count) }
        }
    }

    func value(required name: String) -> FloatTensor {
        guard let t = values[name] else { preconditionFailure("parameter \(name) not loaded") }
        return t
    }

    func countBatch(_ module: String) { batchesTracked[module, default: 0] += 1 }

    /// Bytes of parameters, buffers and gradient buffers.
    public var bytes: Int { (values.values.reduce(0) { $0 + $1.count } + gradients.values.reduce(0) { $0 + $1.count }) * 4 }

    /// Every tensor as f32 (counters as i64) under its canonical name, in state_dict order: what
    /// `EvalNetwork(config:weights:)` and the native writer take.
    public func exportWeights() -> TensorMap {
        var map = TensorMap()
        for entry in config.expectedParameters() {
            if entry.name.hasSuffix(".num_batches_tracked") {
                let module = String(entry.name.dropLast(".num_batches_tracked".count))
                let buffer = OwnedBuffer(count: 8)
                buffer.pointer.storeBytes(of: (batchesTracked[module] ?? 0).littleEndian, as: Int64.self)
                map.set(entry.name, Formats.Tensor(dtype: .i64, shape: entry.shape, data: buffer.bytes))
                continue
            }
            guard let t = values[entry.name] else { continue }
            let buffer = OwnedBuffer(count: t.count * 4)
            let p = buffer.pointer.bindMemory(to: Float.self, capacity: max(1, t.count))
            p.update(from: t.pointer, count: t.count)
            #if _endian(big)
            for i in 0..<t.count { p[i] = Float(bitPattern: p[i].bitPattern.littleEndian) }
            #endif
            map.set(entry.name, Formats.Tensor(dtype: .f32, shape: t.shape, data: buffer.bytes))
        }
        return map
    }
}

/// Shell-style glob: `*` matches any run of characters (dots included), `?` one character.
public func globMatch(_ pattern: String, _ name: String) -> Bool {
    let p = Array(pattern.utf8), s = Array(name.utf8)
    var (pi, si) = (0, 0)
    var star: Int?, mark = 0
    while si < s.count {
        if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == s[si]) {
            pi += 1
            si += 1
        } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
            star = pi
            mark = si
            pi += 1
        } else if let st = star {
            pi = st + 1
            mark += 1
            si = mark
        } else {
            return false
        }
    }
    while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
    return pi == p.count
}
