// Losses on logits, each returning the loss and its gradient with respect to
// the logits: binary cross-entropy for the sigmoid head (multi-label targets,
// torch.nn.functional.binary_cross_entropy_with_logits with reduction "mean":
// mean over batch and classes) and softmax cross-entropy for single-label
// targets (torch.nn.functional.cross_entropy, mean over the batch, optional
// label smoothing). The naive float64 versions beside them are the oracles.

import Foundation

/// Which loss the head trains with.
public enum LossKind: String, Codable, CaseIterable, Sendable {
    /// Sigmoid + binary cross-entropy on multi-hot targets (the study's default).
    case bce
    /// Softmax + cross-entropy on one integer label per clip.
    case ce
}

/// A loss value and the gradient of that (mean) loss with respect to every logit.
public struct LossResult: Sendable {
    public var loss: Float
    /// Same layout as the logits: [batch, classes], row-major.
    public var dLogits: [Float]
}

public enum Loss {
    // MARK: Binary cross-entropy with logits

    /// Mean over all `batch * classes` entries of
    /// `max(x, 0) - x * y + log(1 + exp(-|x|))` (the log-sum-exp form of
    /// `-[y log s(x) + (1 - y) log(1 - s(x))]`, finite for any finite logit).
    /// Writes `(sigmoid(x) - y) / (batch * classes)` into `dLogits` when given.
    /// Targets may be soft (any value in [0, 1]).
    public static func bceWithLogits(logits: UnsafeBufferPointer<Float>, targets: UnsafeBufferPointer<Float>,
                                     batch: Int, classes: Int,
                                     dLogits: UnsafeMutableBufferPointer<Float>?) throws -> Float {
        let n = try checkShape(logits: logits.count, batch: batch, classes: classes)
        guard targets.count == n else {
            throw TrainError(.invalidArgument, "targets hold \(targets.count) values, expected batch \(batch) x classes \(classes) = \(n)", at: "bce loss")
        }
        if let d = dLogits, d.count != n {
            throw TrainError(.invalidArgument, "dLogits holds \(d.count) values, expected \(n)", at: "bce loss")
        }
        for i in 0 ..< n where !(targets[i] >= 0 && targets[i] <= 1) {
            throw TrainError(.invalidArgument, "target \(targets[i]) at sample \(i / classes), class \(i % classes) is outside [0, 1]", at: "bce loss")
        }
        let scale = 1 / Double(n)
        var sum = 0.0
        for i in 0 ..< n {
            let x = Double(logits[i]), y = Double(targets[i])
            sum += max(x, 0) - x * y + log1p(exp(-abs(x)))
            if let d = dLogits { d[i] = Float((sigmoid(x) - y) * scale) }
        }
        return Float(sum * scale)
    }

    public static func bceWithLogits(logits: [Float], targets: [Float], batch: Int, classes: Int) throws -> LossResult {
        var d = [Float](repeating: 0, count: logits.count)
        let loss = try logits.withUnsafeBufferPointer { l in
            try targets.withUnsafeBufferPointer { t in
                try d.withUnsafeMutableBufferPointer { try bceWithLogits(logits: l, targets: t, batch: batch, classes: classes, dLogits: $0) }
            }
        }
        return LossResult(loss: loss, dLogits: d)
    }

    /// The float64 oracle: the textbook `-[y log s + (1 - y) log(1 - s)]` where it is
    /// finite, the stable form where it is not.
    public static func bceWithLogitsReference(logits: [Double], targets: [Double], batch: Int, classes: Int) -> (loss: Double, dLogits: [Double]) {
        let n = batch * classes
        var sum = 0.0
        var d = [Double](repeating: 0, count: n)
        for i in 0 ..< n {
            let x = logits[i], y = targets[i]
            let s = 1 / (1 + exp(-x))
            let naive = -(y * log(s) + (1 - y) * log(1 - s))
            sum += naive.isFinite && s > 1e-12 && 1 - s > 1e-12 ? naive : max(x, 0) - x * y + log1p(exp(-abs(x)))
            d[i] = (s - y) / Double(n)
        }
        return (sum / Double(n), d)
    }

    // MARK: Softmax cross-entropy

    /// Mean over the batch of `-(sum_c q_c log softmax(x)_c)` with
    /// `q = (1 - eps) onehot(label) + eps / classes` (torch's `label_smoothing`).
    /// Writes `(softmax(x) - q) / batch` into `dLogits` when given.
    public static func softmaxCrossEntropy(logits: UnsafeBufferPointer<Float>, labels: [Int], batch: Int, classes: Int,
                                           labelSmoothing: Float = 0,
                                           dLogits: UnsafeMutableBufferPointer<Float>?) throws -> Float {
        let n = try checkShape(logits: logits.count, batch: batch, classes: classes)
        guard labels.count == batch else {
            throw TrainError(.invalidArgument, "\(labels.count) labels for a batch of \(batch)", at: "cross-entropy loss")
        }
        for (i, y) in labels.enumerated() where y < 0 || y >= classes {
            throw TrainError(.invalidArgument, "label \(y) of sample \(i) is not a class index in 0..<\(classes)", at: "cross-entropy loss")
        }
        guard labelSmoothing >= 0 && labelSmoothing <= 1 else {
            throw TrainError(.invalidArgument, "label smoothing \(labelSmoothing) is outside [0, 1]", at: "cross-entropy loss")
        }
        if let d = dLogits, d.count != n {
            throw TrainError(.invalidArgument, "dLogits holds \(d.count) values, expected \(n)", at: "cross-entropy loss")
        }
        let eps = Double(labelSmoothing)
        let uniform = eps / Double(classes)
        var total = 0.0
        var p = [Double](repeating: 0, count: classes)
        for b in 0 ..< batch {
            let row = b * classes
            var m = -Double.infinity
            for c in 0 ..< classes { m = max(m, Double(logits[row + c])) }
            var z = 0.0
            for c in 0 ..< classes {
                p[c] = exp(Double(logits[row + c]) - m)
                z += p[c]
            }
            let logZ = m + log(z)
            var rowLoss = 0.0
            for c in 0 ..< classes {
                let q = (c == labels[b] ? 1 - eps : 0) + uniform
                if q != 0 { rowLoss -= q * (Double(logits[row + c]) - logZ) }
                if let d = dLogits { d[row + c] = Float((p[c] / z - q) / Double(batch)) }
            }
            total += rowLoss
        }
        return Float(total / Double(batch))
    }

    public static func softmaxCrossEntropy(logits: [Float], labels: [Int], batch: Int, classes: Int,
                                           labelSmoothing: Float = 0) throws -> LossResult {
        var d = [Float](repeating: 0, count: logits.count)
        let loss = try logits.withUnsafeBufferPointer { l in
            try d.withUnsafeMutableBufferPointer {
                try softmaxCrossEntropy(logits: l, labels: labels, batch: batch, classes: classes,
                                        labelSmoothing: labelSmoothing, dLogits: $0)
            }
        }
        return LossResult(loss: loss, dLogits: d)
    }

    /// The float64 oracle: softmax by definition, then `-sum q log p`.
    public static func softmaxCrossEntropyReference(logits: [Double], labels: [Int], batch: Int, classes: Int,
                                                    labelSmoothing: Double = 0) -> (loss: Double, dLogits: [Double]) {
        var total = 0.0
        var d = [Double](repeating: 0, count: batch * classes)
        for b in 0 ..< batch {
            let row = Array(logits[b * classes ..< (b + 1) * classes])
            let m = row.max()!
            let e = row.map { exp($0 - m) }
            let z = e.reduce(0, +)
            for c in 0 ..< classes {
                let p = e[c] / z
                let q = (c == labels[b] ? 1 - labelSmoothing : 0) + labelSmoothing / Double(classes)
                total -= q * log(p)
                d[b * classes + c] = (p - q) / Double(batch)
            }
        }
        return (total / Double(batch), d)
    }

    // MARK: Targets

    /// Multi-hot targets [batch, classes] from per-clip label lists (for the BCE loss).
    public static func multiHotTargets(_ labels: [[Int]], classes: Int) throws -> [Float] {
        var t = [Float](repeating: 0, count: labels.count * classes)
        for (i, ls) in labels.enumerated() {
            for y in ls {
                guard y >= 0 && y < classes else {
                    throw TrainError(.invalidArgument, "label \(y) of sample \(i) is not a class index in 0..<\(classes)", at: "targets")
                }
                t[i * classes + y] = 1
            }
        }
        return t
    }

    // MARK: Helpers

    @inline(__always) static func sigmoid(_ x: Double) -> Double {
        x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x))
    }

    static func checkShape(logits: Int, batch: Int, classes: Int) throws -> Int {
        guard batch > 0, classes > 0 else {
            throw TrainError(.invalidArgument, "batch \(batch) and classes \(classes) must both be positive", at: "loss")
        }
        let (n, overflow) = batch.multipliedReportingOverflow(by: classes)
        guard !overflow, logits == n else {
            throw TrainError(.invalidArgument, "logits hold \(logits) values, expected batch \(batch) x classes \(classes)", at: "loss")
        }
        return n
    }
}
