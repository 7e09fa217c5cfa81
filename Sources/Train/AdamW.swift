// AdamW (Loshchilov & Hutter 2019; torch.optim.AdamW): decoupled weight decay p -= lr * wd * p,
// then the Adam update with bias-corrected first and second moments. Per parameter a learning-rate
// scale (layer-wise LR decay, as VideoMAE's fine-tuning assigns it: the classifier at 1, each layer
// below it one factor of `layer_decay` smaller, the embeddings smallest) and a weight decay (none on
// biases, norms and position/class embeddings). The moments are kept per parameter name and
// checkpointed like SGD's momentum, so a resumed run continues the same trajectory.

import Foundation
import Formats

/// What fine-tuning asks of an optimizer: one step, and its state for checkpoints.
public protocol Optimizer: AnyObject {
    @discardableResult
    func step(_ params: TrainableParameters, lr: Double) throws -> SGDStepInfo
    /// State tensors (`optimizer.*` names), sorted by name.
    func stateTensors() -> [(name: String, tensor: Tensor)]
    /// `sfnet.optimizer` metadata: type, step count, configuration.
    func stateMetadata() -> (key: String, value: String)
    /// Replaces the state with a checkpoint's (checked against `params` when given).
    func restore(tensors: TensorMap, metadata: [(key: String, value: String)], params: TrainableParameters?) throws
    /// Threads the element-wise updates run on (the result does not depend on it).
    var threads: Int { get set }
}

extension SGD: Optimizer {}

public struct AdamWConfig: Codable, Sendable, Equatable {
    /// The betas in double, as torch keeps them (Python floats): 1 - beta is formed before rounding to float32
    /// (Float(0.999)'s complement is 1.3e-5 off 0.001, a bias in every second moment).
    public var beta1: Double
    public var beta2: Double
    public var epsilon: Float
    /// Clip the global gradient norm to this (torch's clip_grad_norm_) before the update.
    public var clipGradNorm: Float?

    public init(beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Float = 1e-8, clipGradNorm: Float? = nil) {
        (self.beta1, self.beta2, self.epsilon, self.clipGradNorm) = (beta1, beta2, epsilon, clipGradNorm)
    }

    public func validate() throws {
        guard (0 ..< 1).contains(beta1), (0 ..< 1).contains(beta2) else {
            throw TrainError(.invalidArgument, "AdamW betas must be in [0, 1), are \(beta1), \(beta2)")
        }
        guard epsilon > 0, epsilon.isFinite else { throw TrainError(.invalidArgument, "AdamW epsilon must be > 0, is \(epsilon)") }
        if let c = clipGradNorm, !(c > 0 && c.isFinite) { throw TrainError(.invalidArgument, "gradient clipping norm must be > 0, is \(c)") }
    }
}

/// One parameter group's multipliers: its learning rate is `lr * lrScale`, its decay `weightDecay`.
public struct ParameterGroup: Sendable, Equatable {
    public var lrScale: Float
    public var weightDecay: Float
    public init(lrScale: Float, weightDecay: Float) { (self.lrScale, self.weightDecay) = (lrScale, weightDecay) }
}

public final class AdamW: Optimizer {
    public let config: AdamWConfig
    /// Per parameter name; a name without a group trains at scale 1 with no decay.
    public let groups: [String: ParameterGroup]
    public private(set) var stepCount = 0
    public var threads = ProcessInfo.processInfo.activeProcessorCount
    private var firstMoment: [String: [Float]] = [:]
    private var secondMoment: [String: [Float]] = [:]
    private var shapes: [String: [Int]] = [:]

    public static let firstPrefix = "optimizer.exp_avg."
    public static let secondPrefix = "optimizer.exp_avg_sq."

    public init(config: AdamWConfig = AdamWConfig(), groups: [String: ParameterGroup]) throws {
        try config.validate()
        self.config = config
        self.groups = groups
    }

    @discardableResult
    public func step(_ params: TrainableParameters, lr: Double) throws -> SGDStepInfo {
        guard lr.isFinite && lr >= 0 else { throw TrainError(.invalidArgument, "learning rate \(lr) must be finite and >= 0", at: "AdamW step") }
        let norm = try SGD.checkedGradientNorm(params, threads: threads)
        var coef: Float = 1
        // One rounding: the norm stays in double (torch rounds its float32 norm, then the quotient).
        if let maxNorm = config.clipGradNorm { coef = min(1, Float(Double(maxNorm) / (norm + 1e-6))) }
        stepCount += 1
        let (b2, eps) = (Float(config.beta2), config.epsilon)
        let (w1, w2) = (Float(1 - config.beta1), Float(1 - config.beta2))
        // torch's AdamW: step_size = lr / (1 - b1^t), denom = sqrt(v) / sqrt(1 - b2^t) + eps.
        let c1 = 1 - Foundation.pow(config.beta1, Double(stepCount)), c2 = 1 - Foundation.pow(config.beta2, Double(stepCount))
        var updated = 0
        for i in 0 ..< params.parameterCount where params.parameterIsTrainable(at: i) {
            let name = params.parameterName(at: i)
            let group = groups[name] ?? ParameterGroup(lrScale: 1, weightDecay: 0)
            let rate = lr * Double(group.lrScale)
            let stepSize = Float(rate / c1), decay = Float(1 - rate * Double(group.weightDecay)), bias2 = Float(c2.squareRoot())
            if firstMoment[name] == nil {
                let count = params.parameterShape(at: i).reduce(1, *)
                firstMoment[name] = [Float](repeating: 0, count: count)
                secondMoment[name] = [Float](repeating: 0, count: count)
                shapes[name] = params.parameterShape(at: i)
            }
            try params.withParameter(at: i) { p, g in
                guard p.count == g.count, p.count == firstMoment[name]!.count else {
                    throw TrainError(.shapeMismatch, "\(p.count) values, \(g.count) gradients, \(firstMoment[name]!.count) moments", at: "parameter '\(name)'")
                }
                firstMoment[name]!.withUnsafeMutableBufferPointer { m in
                    secondMoment[name]!.withUnsafeMutableBufferPointer { v in
                        ParallelLoop.ranges(p.count, threads: threads) { range in for j in range {
                            let grad = coef == 1 ? g[j] : g[j] * coef
                            // torch's order: decay, exp_avg.lerp_(grad, 1 - b1), exp_avg_sq.mul_(b2).addcmul_(grad, grad, 1 - b2),
                            // param.addcdiv_(exp_avg, denom, -step_size).
                            p[j] *= decay
                            m[j] += w1 * (grad - m[j])
                            v[j] = v[j] * b2 + w2 * grad * grad
                            p[j] -= stepSize * (m[j] / (v[j].squareRoot() / bias2 + eps))
                        } }
                    }
                }
            }
            updated += 1
        }
        return SGDStepInfo(gradNorm: norm, clipCoefficient: coef, updated: updated)
    }

    struct StateRecord: Codable {
        var type = "adamw"
        var step: Int
        var config: AdamWConfig
    }

    public func stateTensors() -> [(name: String, tensor: Tensor)] {
        firstMoment.keys.sorted().flatMap { name -> [(name: String, tensor: Tensor)] in
            let shape = shapes[name] ?? [firstMoment[name]!.count]
            return [(Self.firstPrefix + name, Tensor.float32(shape: shape, values: firstMoment[name]!)),
                    (Self.secondPrefix + name, Tensor.float32(shape: shape, values: secondMoment[name]!))]
        }
    }

    public func stateMetadata() -> (key: String, value: String) {
        (SGD.metadataKey, SGD.encodeJSON(StateRecord(step: stepCount, config: config)))
    }

    public func restore(tensors: TensorMap, metadata: [(key: String, value: String)], params: TrainableParameters? = nil) throws {
        guard let text = metadata.first(where: { $0.key == SGD.metadataKey })?.value else {
            throw TrainError(.missing, "no '\(SGD.metadataKey)' metadata: this file holds no optimizer state")
        }
        try SGD.checkType(text, "adamw")
        let record: StateRecord = try SGD.decodeJSON(text, what: "metadata '\(SGD.metadataKey)'")
        guard record.step >= 0 else { throw TrainError(.malformed, "step count \(record.step) is negative", at: "metadata '\(SGD.metadataKey)'") }
        var want: [String: [Int]] = [:]
        if let params { for i in 0 ..< params.parameterCount { want[params.parameterName(at: i)] = params.parameterShape(at: i) } }
        var m: [String: [Float]] = [:], v: [String: [Float]] = [:], s: [String: [Int]] = [:]
        for (key, t) in tensors.ordered where key.hasPrefix("optimizer.") {
            let (prefix, isFirst) = key.hasPrefix(Self.firstPrefix) ? (Self.firstPrefix, true)
                : key.hasPrefix(Self.secondPrefix) ? (Self.secondPrefix, false) : ("", false)
            guard !prefix.isEmpty else { throw TrainError(.malformed, "not an AdamW state tensor", at: "tensor '\(key)'") }
            let name = String(key.dropFirst(prefix.count))
            guard t.dtype == .f32 else { throw TrainError(.malformed, "dtype \(t.dtype.shortName), expected f32", at: "tensor '\(key)'") }
            if params != nil {
                guard let shape = want[name] else { throw TrainError(.missing, "moment for a parameter the model does not have", at: "tensor '\(key)'") }
                guard shape == t.shape else {
                    throw TrainError(.shapeMismatch, "file has \(Tensor.shapeString(t.shape)), model expects \(Tensor.shapeString(shape))", at: "tensor '\(key)'")
                }
            }
            if isFirst { m[name] = t.floats() } else { v[name] = t.floats() }
            s[name] = t.shape
        }
        guard Set(m.keys) == Set(v.keys) else {
            throw TrainError(.malformed, "first and second moments name different parameters", at: "optimizer state")
        }
        (firstMoment, secondMoment, shapes, stepCount) = (m, v, s, record.step)
    }
}
