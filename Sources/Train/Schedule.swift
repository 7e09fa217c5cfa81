// Learning rate per iteration, as PySlowFast's slowfast/utils/lr_policy.py
// get_lr_at_epoch: the policy's value at the fractional epoch
// (epoch + iteration / iters_per_epoch), replaced during warm-up by the
// straight line from the warm-up start LR to the policy's value at the end of
// warm-up. Policies: constant (the study), cosine to an end LR, steps with
// relative LRs.

import Foundation

public struct LRSchedule: Codable, Sendable, Equatable {
    public enum Policy: Codable, Sendable, Equatable {
        /// The base LR throughout (the study: 0.0375 after warm-up).
        case constant
        /// `end + (base - end) * (cos(pi * (e - o) / (max - o)) + 1) / 2`, o = warm-up epochs when
        /// `afterWarmup` (SOLVER.COSINE_AFTER_WARMUP), else 0.
        case cosine(endLR: Double, afterWarmup: Bool)
        /// SOLVER.STEPS / SOLVER.LRS: from `boundaries[i]` (epochs, the first 0) the LR is
        /// `relativeLRs[i] * base`.
        case steps(boundaries: [Double], relativeLRs: [Double])
    }

    /// SOLVER.BASE_LR.
    public var baseLR: Double
    /// SOLVER.WARMUP_EPOCHS (fractional allowed; 0 = no warm-up).
    public var warmupEpochs: Double
    /// SOLVER.WARMUP_START_LR: the LR at epoch 0.
    public var warmupStartLR: Double
    /// SOLVER.MAX_EPOCH: the cosine's length and the last step's end.
    public var maxEpochs: Double
    public var policy: Policy

    public init(baseLR: Double, warmupEpochs: Double = 0, warmupStartLR: Double = 0, maxEpochs: Double, policy: Policy = .constant) {
        self.baseLR = baseLR
        self.warmupEpochs = warmupEpochs
        self.warmupStartLR = warmupStartLR
        self.maxEpochs = maxEpochs
        self.policy = policy
    }

    /// The study's recipe: 0.00085 -> 0.0375 linearly over 5 epochs, then constant.
    public static func study(maxEpochs: Double = 20) -> LRSchedule {
        LRSchedule(baseLR: 0.0375, warmupEpochs: 5, warmupStartLR: 0.00085, maxEpochs: maxEpochs, policy: .constant)
    }

    public func validate() throws {
        func bad(_ what: String, _ msg: String) -> TrainError { TrainError(.invalidArgument, msg, at: "option \(what)") }
        guard baseLR.isFinite && baseLR >= 0 else { throw bad("lr", "base learning rate \(baseLR) must be finite and >= 0") }
        guard warmupStartLR.isFinite && warmupStartLR >= 0 else { throw bad("warmup-start-lr", "warm-up start LR \(warmupStartLR) must be finite and >= 0") }
        guard warmupEpochs.isFinite && warmupEpochs >= 0 else { throw bad("warmup-epochs", "warm-up epochs \(warmupEpochs) must be >= 0") }
        guard maxEpochs.isFinite && maxEpochs > 0 else { throw bad("epochs", "epochs \(maxEpochs) must be > 0") }
        switch policy {
        case .constant: break
        case .cosine(let end, let after):
            guard end.isFinite && end >= 0 && end < baseLR else { throw bad("cosine-end-lr", "cosine end LR \(end) must be in [0, base LR \(baseLR))") }
            if after && warmupEpochs >= maxEpochs { throw bad("warmup-epochs", "cosine after warm-up needs warm-up epochs \(warmupEpochs) < epochs \(maxEpochs)") }
        case .steps(let b, let r):
            guard !b.isEmpty, b.count == r.count else { throw bad("lr-steps", "\(b.count) step boundaries but \(r.count) relative LRs; they pair up one to one") }
            guard b[0] == 0 else { throw bad("lr-steps", "the first step boundary must be epoch 0, not \(b[0])") }
            guard zip(b, b.dropFirst()).allSatisfy({ $0 < $1 }) else { throw bad("lr-steps", "step boundaries \(b) must increase") }
            guard r.allSatisfy({ $0.isFinite && $0 >= 0 }) else { throw bad("lr-steps", "relative LRs \(r) must be finite and >= 0") }
        }
    }

    /// The policy's LR at a fractional epoch, before warm-up is applied.
    public func policyLR(atEpoch e: Double) -> Double {
        switch policy {
        case .constant:
            return baseLR
        case .cosine(let end, let after):
            let offset = after ? warmupEpochs : 0
            return end + (baseLR - end) * (cos(Double.pi * (e - offset) / (maxEpochs - offset)) + 1) * 0.5
        case .steps(let boundaries, let relative):
            // The last boundary below or at e (PySlowFast get_step_index; past MAX_EPOCH the last step holds).
            var i = 0
            while i + 1 < boundaries.count && e >= boundaries[i + 1] { i += 1 }
            return relative[i] * baseLR
        }
    }

    /// The LR at a fractional epoch.
    public func lr(atEpoch e: Double) -> Double {
        guard e < warmupEpochs else { return policyLR(atEpoch: e) }
        let end = policyLR(atEpoch: warmupEpochs)
        return warmupStartLR + e * (end - warmupStartLR) / warmupEpochs
    }

    /// The LR of iteration `iteration` (0-based) of epoch `epoch` (0-based), as PySlowFast's train loop
    /// asks for it: at epoch + iteration / itersPerEpoch, before the step.
    public func lr(epoch: Int, iteration: Int, itersPerEpoch: Int) -> Double {
        lr(atEpoch: Double(epoch) + Double(iteration) / Double(max(itersPerEpoch, 1)))
    }
}
