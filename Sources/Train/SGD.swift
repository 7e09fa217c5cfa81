// SGD exactly as torch.optim.SGD (single-tensor path, foreach=False):
//   d = g + wd * p;  buf = d (first step) or momentum * buf + (1 - dampening) * d;
//   d = nesterov ? d + momentum * buf : buf;  p -= lr * d
// with weight decay per parameter by name (PySlowFast's construct_optimizer
// groups: BN parameters get BN.WEIGHT_DECAY, 1-D parameters and biases none),
// optional clipping by global norm (torch.nn.utils.clip_grad_norm_), frozen
// parameters skipped. The state (momentum buffers, step count) is saved as
// `optimizer.momentum.<parameter>` tensors plus `sfnet.optimizer` metadata.

import Foundation
import Formats

/// Which parameters get how much weight decay (L2 added to the gradient, PyTorch style).
public struct WeightDecayPolicy: Codable, Sendable, Equatable {
    /// Weight decay of ordinary weights (SOLVER.WEIGHT_DECAY). The study: 1e-4.
    public var weightDecay: Float
    /// Weight decay of BatchNorm weights and biases (PySlowFast BN.WEIGHT_DECAY, default 0).
    public var bnWeightDecay: Float
    /// No weight decay on biases and other 1-D parameters (PySlowFast SOLVER.ZERO_WD_1D_PARAM).
    public var zeroDecayOnBiases: Bool
    /// More parameters without weight decay, by name pattern (`head.*`).
    public var noDecay: [NamePattern]

    public init(weightDecay: Float = 1e-4, bnWeightDecay: Float = 0, zeroDecayOnBiases: Bool = true, noDecay: [NamePattern] = []) {
        self.weightDecay = weightDecay
        self.bnWeightDecay = bnWeightDecay
        self.zeroDecayOnBiases = zeroDecayOnBiases
        self.noDecay = noDecay
    }

    /// The weight decay of one parameter.
    public func decay(for name: String, shape: [Int], isNorm: Bool? = nil) -> Float {
        if isNorm ?? Self.isBatchNorm(name) { return bnWeightDecay }
        if NamePattern.anyMatches(noDecay, name) { return 0 }
        if zeroDecayOnBiases && (shape.count <= 1 || name.hasSuffix(".bias")) { return 0 }
        return weightDecay
    }

    /// A parameter of a BatchNorm module in canonical naming: the module's last
    /// path component is `bn` or ends in `_bn` (`s1.pathway0_stem.bn.weight`,
    /// `s2.pathway0_res0.branch2.a_bn.bias`, `...branch1_bn.weight`, `s1_fuse.bn.weight`).
    public static func isBatchNorm(_ name: String) -> Bool {
        let parts = name.split(separator: ".")
        guard parts.count >= 2 else { return false }
        let module = parts[parts.count - 2]
        return module == "bn" || module.hasSuffix("_bn")
    }
}

/// torch.optim.SGD's hyperparameters (the learning rate comes from the schedule per step).
public struct SGDConfig: Codable, Sendable, Equatable {
    public var momentum: Float
    public var dampening: Float
    public var nesterov: Bool
    public var weightDecay: WeightDecayPolicy
    /// Clip the gradients' global L2 norm (over trainable parameters) to this value; nil: no clipping.
    public var clipGradNorm: Float?

    /// The study's recipe: momentum 0.9, nesterov, weight decay 1e-4 with none on BN and biases.
    public init(momentum: Float = 0.9, dampening: Float = 0, nesterov: Bool = true,
                weightDecay: WeightDecayPolicy = WeightDecayPolicy(), clipGradNorm: Float? = nil) {
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.weightDecay = weightDecay
        self.clipGradNorm = clipGradNorm
    }

    public func validate() throws {
        func bad(_ what: String, _ msg: String) -> TrainError { TrainError(.invalidArgument, msg, at: "option \(what)") }
        guard momentum >= 0 && momentum.isFinite else { throw bad("momentum", "momentum \(momentum) must be >= 0") }
        guard dampening >= 0 && dampening <= 1 else { throw bad("dampening", "dampening \(dampening) must be in [0, 1]") }
        if nesterov && (momentum <= 0 || dampening != 0) {
            throw bad("nesterov", "nesterov momentum requires momentum > 0 and dampening 0 (as torch.optim.SGD)")
        }
        for (n, v) in [("weight-decay", weightDecay.weightDecay), ("bn-weight-decay", weightDecay.bnWeightDecay)] where !(v >= 0 && v.isFinite) {
            throw bad(n, "weight decay \(v) must be >= 0")
        }
        if let c = clipGradNorm, !(c > 0 && c.isFinite) { throw bad("clip-grad-norm", "gradient clipping norm \(c) must be > 0") }
    }
}

/// What one step did.
public struct SGDStepInfo: Sendable {
    /// Global L2 norm of the trainable parameters' gradients before clipping.
    public var gradNorm: Double
    /// The factor the gradients were scaled by (1 without clipping or below the limit).
    public var clipCoefficient: Float
    /// How many parameters were updated (trainable ones).
    public var updated: Int
}

public final class SGD {
    public let config: SGDConfig
    /// Steps taken (torch keeps none for SGD; PySlowFast's checkpoints keep the epoch).
    public private(set) var stepCount: Int = 0
    /// Threads the element-wise updates run on (the result does not depend on it).
    public var threads = ProcessInfo.processInfo.activeProcessorCount
    /// Momentum buffers by parameter name, created on a parameter's first update.
    public private(set) var momentumBuffers: [String: [Float]] = [:]
    private var bufferShapes: [String: [Int]] = [:]

    public init(config: SGDConfig = SGDConfig()) throws {
        try config.validate()
        self.config = config
    }

    /// One update of every trainable parameter with learning rate `lr`. Gradients are
    /// read, not changed (clipping scales them inside the update). Refuses non-finite
    /// gradients before touching any parameter.
    @discardableResult
    public func step(_ params: TrainableParameters, lr: Double) throws -> SGDStepInfo {
        guard lr.isFinite && lr >= 0 else { throw TrainError(.invalidArgument, "learning rate \(lr) must be finite and >= 0", at: "SGD step") }
        let norm = try Self.checkedGradientNorm(params, threads: threads)
        let coef = Self.clipCoefficient(norm: norm, maxNorm: config.clipGradNorm)
        let m = config.momentum, damp = 1 - config.dampening, nesterov = config.nesterov
        let alpha = Float(-lr)
        var updated = 0
        for i in 0 ..< params.parameterCount where params.parameterIsTrainable(at: i) {
            let name = params.parameterName(at: i)
            let shape = params.parameterShape(at: i)
            let wd = config.weightDecay.decay(for: name, shape: shape, isNorm: params.parameterIsNorm(at: i))
            let fresh = momentumBuffers[name] == nil
            try params.withParameter(at: i) { p, g in
                guard p.count == g.count else {
                    throw TrainError(.shapeMismatch, "\(p.count) values but \(g.count) gradients", at: "parameter '\(name)'")
                }
                if m == 0 {
                    ParallelLoop.ranges(p.count, threads: threads) { range in
                        if wd == 0 {
                            for j in range { p[j] = p[j] + alpha * (g[j] * coef) }
                        } else {
                            for j in range { p[j] = p[j] + alpha * (g[j] * coef + wd * p[j]) }
                        }
                    }
                    return
                }
                if fresh {
                    momentumBuffers[name] = [Float](repeating: 0, count: p.count)
                    bufferShapes[name] = shape
                } else if momentumBuffers[name]!.count != p.count {
                    throw TrainError(.shapeMismatch, "momentum buffer holds \(momentumBuffers[name]!.count) values, parameter \(p.count)",
                                     at: "parameter '\(name)'")
                }
                momentumBuffers[name]!.withUnsafeMutableBufferPointer { buf in
                    // One loop per case, so that each is a straight vectorisable map: d = g * coef (+ wd * p; the
                    // decay term is left out only when wd is 0), torch's SGD with momentum and dampening.
                    ParallelLoop.ranges(p.count, threads: threads) { span in
                        let (lo, n) = (span.lowerBound, span.upperBound)
                        switch (fresh, nesterov, wd == 0) {
                        case (true, true, true): for j in lo ..< n { let d = g[j] * coef; buf[j] = d; p[j] = p[j] + alpha * (d + m * d) }
                        case (true, true, false): for j in lo ..< n { let d = g[j] * coef + wd * p[j]; buf[j] = d; p[j] = p[j] + alpha * (d + m * d) }
                        case (true, false, true): for j in lo ..< n { let d = g[j] * coef; buf[j] = d; p[j] = p[j] + alpha * d }
                        case (true, false, false): for j in lo ..< n { let d = g[j] * coef + wd * p[j]; buf[j] = d; p[j] = p[j] + alpha * d }
                        case (false, true, true):
                            for j in lo ..< n { let d = g[j] * coef; let b = buf[j] * m + damp * d; buf[j] = b; p[j] = p[j] + alpha * (d + m * b) }
                        case (false, true, false):
                            for j in lo ..< n {
                                let d = g[j] * coef + wd * p[j]; let b = buf[j] * m + damp * d; buf[j] = b; p[j] = p[j] + alpha * (d + m * b)
                            }
                        case (false, false, true):
                            for j in lo ..< n { let d = g[j] * coef; let b = buf[j] * m + damp * d; buf[j] = b; p[j] = p[j] + alpha * b }
                        case (false, false, false):
                            for j in lo ..< n { let d = g[j] * coef + wd * p[j]; let b = buf[j] * m + damp * d; buf[j] = b; p[j] = p[j] + alpha * b }
                        }
                    }
                }
            }
            updated += 1
        }
        stepCount += 1
        return SGDStepInfo(gradNorm: norm, clipCoefficient: coef, updated: updated)
    }

    /// The global L2 norm of the trainable parameters' gradients; throws, naming the parameter, when one
    /// is not finite (before any parameter is updated).
    static func checkedGradientNorm(_ params: TrainableParameters, threads: Int = 1) throws -> Double {
        var sumSq = 0.0
        for i in 0 ..< params.parameterCount where params.parameterIsTrainable(at: i) {
            let s = params.withParameter(at: i) { _, g in
                ParallelLoop.chunkedSum(g.count, threads: threads) { Self.sumOfSquares(UnsafeBufferPointer(rebasing: g[$0])) }
            }
            guard s.isFinite else {
                throw TrainError(.invalidArgument, "gradient is not finite (NaN or infinity); no parameter was updated",
                                 at: "parameter '\(params.parameterName(at: i))'", hint: "lower the learning rate or enable gradient clipping")
            }
            sumSq += s
        }
        return sumSq.squareRoot()
    }

    /// torch's clip_grad_norm_: clip_coef = max_norm / (total_norm + 1e-6), clamped to at most 1 (1 without clipping).
    static func clipCoefficient(norm: Double, maxNorm: Float?) -> Float {
        guard let maxNorm else { return 1 }
        return min(1, Float(Double(maxNorm) / (Double(Float(norm)) + 1e-6)))
    }

    static func sumOfSquares(_ g: UnsafeBufferPointer<Float>) -> Double {
        guard let base = g.baseAddress else { return 0 }
        var s = 0.0
        var j = 0
        // Blocks of 256 summed in 16 float lanes keep the loop fast (a scalar float reduction does not
        // vectorise); Double across blocks keeps it accurate.
        while j < g.count {
            let end = min(j + 256, g.count)
            var lanes = SIMD16<Float>()
            while j + 16 <= end {
                let v = UnsafeRawPointer(base + j).loadUnaligned(as: SIMD16<Float>.self)
                lanes += v * v
                j += 16
            }
            var part = lanes.sum()
            while j < end { part += base[j] * base[j]; j += 1 }
            s += Double(part)
        }
        return s
    }

    // MARK: State

    public static let momentumPrefix = "optimizer.momentum."
    public static let metadataKey = "sfnet.optimizer"

    struct StateRecord: Codable {
        var type = "sgd"
        var step: Int
        var config: SGDConfig
    }

    /// The momentum buffers as float32 tensors `optimizer.momentum.<parameter>`, sorted by name.
    public func stateTensors() -> [(name: String, tensor: Tensor)] {
        momentumBuffers.keys.sorted().map { name in
            (Self.momentumPrefix + name, Tensor.float32(shape: bufferShapes[name] ?? [momentumBuffers[name]!.count], values: momentumBuffers[name]!))
        }
    }

    /// `sfnet.optimizer` metadata: step count and configuration as JSON.
    public func stateMetadata() -> (key: String, value: String) {
        (Self.metadataKey, Self.encodeJSON(StateRecord(step: stepCount, config: config)))
    }

    /// Replaces the step count and momentum buffers with those in `tensors` (every
    /// `optimizer.momentum.*` entry) and `metadata` (`sfnet.optimizer`). With `params`,
    /// each buffer must name one of them and match its shape.
    public func restore(tensors: TensorMap, metadata: [(key: String, value: String)], params: TrainableParameters? = nil) throws {
        guard let text = metadata.first(where: { $0.key == Self.metadataKey })?.value else {
            throw TrainError(.missing, "no '\(Self.metadataKey)' metadata: this file holds no optimizer state")
        }
        try Self.checkType(text, "sgd")
        let record: StateRecord = try Self.decodeJSON(text, what: "metadata '\(Self.metadataKey)'")
        guard record.step >= 0 else { throw TrainError(.malformed, "step count \(record.step) is negative", at: "metadata '\(Self.metadataKey)'") }
        var shapes: [String: [Int]] = [:]
        if let params { for i in 0 ..< params.parameterCount { shapes[params.parameterName(at: i)] = params.parameterShape(at: i) } }
        var buffers: [String: [Float]] = [:], bshapes: [String: [Int]] = [:]
        for (key, t) in tensors.ordered where key.hasPrefix(Self.momentumPrefix) {
            let name = String(key.dropFirst(Self.momentumPrefix.count))
            guard t.dtype == .f32 else { throw TrainError(.malformed, "dtype \(t.dtype.shortName), expected f32", at: "tensor '\(key)'") }
            if params != nil {
                guard let want = shapes[name] else {
                    throw TrainError(.missing, "momentum buffer for a parameter the model does not have", at: "tensor '\(key)'")
                }
                guard want == t.shape else {
                    throw TrainError(.shapeMismatch, "file has \(Tensor.shapeString(t.shape)), model expects \(Tensor.shapeString(want))", at: "tensor '\(key)'")
                }
            }
            buffers[name] = t.floats()
            bshapes[name] = t.shape
        }
        momentumBuffers = buffers
        bufferShapes = bshapes
        stepCount = record.step
    }

    /// Writes the optimizer state alone to a safetensors file, atomically.
    public func save(to path: String, overwrite: Bool = true) throws {
        let items = stateTensors().map { SafetensorsWriter.Item(name: $0.name, tensor: $0.tensor) }
        let meta = stateMetadata()
        do { try SafetensorsWriter.write(items, metadata: [("sfnet.format", "1"), (meta.key, meta.value)], to: path, overwrite: overwrite) } catch let e as FormatError {
            throw TrainError(.io, e.message, file: path, at: e.location)
        }
    }

    /// Reads a state written by `save(to:)` (or a train-state checkpoint); the configuration
    /// is the one recorded in the file unless `config` is given.
    public static func load(from path: String, config: SGDConfig? = nil, params: TrainableParameters? = nil) throws -> SGD {
        let ckpt = try TrainCheckpoint.readSafetensors(path)
        do {
            let text = ckpt.metadata.first(where: { $0.key == metadataKey })?.value ?? ""
            let fileConfig = text.isEmpty ? nil : (try? decodeJSON(text, what: "metadata") as StateRecord)?.config
            let sgd = try SGD(config: config ?? fileConfig ?? SGDConfig())
            try sgd.restore(tensors: ckpt.tensors, metadata: ckpt.metadata, params: params)
            return sgd
        } catch let e as TrainError { throw e.inFile(path) }
    }

    // MARK: JSON

    static func encodeJSON<T: Encodable>(_ v: T) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try! enc.encode(v), as: UTF8.self)
    }

    /// The optimizer a state record was written by, checked before its fields are (an AdamW record is not
    /// "missing key 'momentum'", it is another optimizer's).
    static func checkType(_ text: String, _ expected: String) throws {
        struct Kind: Decodable { var type: String }
        let kind: Kind = try decodeJSON(text, what: "metadata '\(metadataKey)'")
        guard kind.type == expected else {
            throw TrainError(.malformed, "optimizer type '\(kind.type)', expected '\(expected)'", at: "metadata '\(metadataKey)'",
                             hint: "the checkpoint was written with another optimizer; resume with the run's own settings (--optimizer \(kind.type))")
        }
    }

    static func decodeJSON<T: Decodable>(_ text: String, what: String) throws -> T {
        do { return try JSONDecoder().decode(T.self, from: Data(text.utf8)) } catch {
            throw TrainError(.malformed, "not the expected JSON: \(Self.describe(error))", at: what)
        }
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let k, let c): return "missing key '\(k.stringValue)' at \(path(c))"
        case DecodingError.typeMismatch(let t, let c): return "expected \(t) at \(path(c))"
        case DecodingError.valueNotFound(let t, let c): return "missing \(t) at \(path(c))"
        case DecodingError.dataCorrupted(let c): return "\(c.debugDescription) at \(path(c))"
        default: return "\(error)"
        }
    }

    static func path(_ c: DecodingError.Context) -> String {
        c.codingPath.isEmpty ? "top level" : c.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }
}
