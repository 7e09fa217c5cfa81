// `sfnet verify` on a train-step reference (issue 6, part 5): the weights run one
// train-mode forward/backward (dropout off, batch-statistics BN) on the reference's
// inputs and every gradient, the logits, the loss and the BN running statistics after
// the step are compared. The loss is either
//   - `target` + `output.loss`: BCE-with-logits (mean) for a float multi-hot [N, K]
//     target, softmax cross-entropy (mean) for integer class ids [N]; sfnet computes the
//     loss and dL/dlogits itself (Train's Loss) and backpropagates that; or
//   - `grad_output.logits` R: the loss is sum(logits * R), so dL/dlogits = R exactly
//     (fixtures/generate_train_grads.py; `output.loss_bce` on `target` optional).
// A gradient passes by GradientCriterion: within 2x PyTorch float32's own distance to the
// float64 truth (`sfnet.torch_f32_gap`; batch-statistics BN makes some gradients
// ill-conditioned, see the generator).

import Families
import Convert
import Formats
import Foundation
import Networks
import Train

enum TrainStepCheck {
    /// What makes a reference a train step: a loss to backpropagate, or what a train step produces.
    static func isTrainReference(_ ck: Checkpoint) -> Bool {
        ck.tensors.names.contains { ["grad_output.logits", "target", "output.loss", "output.loss_bce"].contains($0) || $0.hasPrefix("grad.") }
    }

    static let acceptedNames = "input.slow + input.fast or input.x (or pixels.fast / pixels.x), target + output.loss "
        + "(or grad_output.logits, with optional target + output.loss_bce), optional output.logits, grad.<parameter>, "
        + "running.<bn>.running_mean/var, weights.* (ignored)"

    /// The loss a reference's gradients belong to.
    enum Objective {
        /// Mean BCE-with-logits on a multi-hot [N, K] target.
        case bce([Float])
        /// Mean softmax cross-entropy on class ids [N].
        case ce([Int])
        /// sum(logits * R).
        case weighted(FloatTensor)
    }

    static func objective(_ ref: Checkpoint, path: String, config: ArchConfig) throws -> Objective {
        let k = config.numClasses
        if let r = ref.tensors["grad_output.logits"] {
            guard ref.tensors["output.loss"] == nil else {
                throw VerifyError.badReference(path, "holds both grad_output.logits and output.loss: the gradients belong to one loss "
                    + "(keep target + output.loss for BCE/CE, or grad_output.logits for sum(logits * R))")
            }
            guard r.dtype.isFloatingPoint else { throw VerifyError.badReference(path, "grad_output.logits has dtype \(r.dtype.shortName), expected floating point") }
            return .weighted(floatTensorCopy(r))
        }
        guard let target = ref.tensors["target"], ref.tensors["output.loss"] != nil else {
            throw VerifyError.badReference(path, "a train-step reference needs target + output.loss (or grad_output.logits); expected \(acceptedNames)")
        }
        if target.dtype.isFloatingPoint {
            guard target.shape.count == 2, target.shape[1] == k else {
                throw VerifyError.badReference(path, "a float target is a multi-hot [N, \(k)] for BCE-with-logits, is \(target.shape) "
                    + "(integer class ids [N] mean cross-entropy)")
            }
            return .bce(floatTensorCopy(target).values)
        }
        guard target.dtype != .bool, target.shape.count == 1 else {
            throw VerifyError.badReference(path, "an integer target is class ids [N] for cross-entropy, is \(target.dtype.shortName) \(target.shape) "
                + "(a float multi-hot [N, \(k)] means BCE-with-logits)")
        }
        let labels = (0 ..< target.numel).map { Int(DTypeCast.loadFloat(target.data.raw, index: $0, dtype: target.dtype)) }
        return .ce(labels)
    }

    static func run(weights: String, ck: Checkpoint, reference path: String, ref: Checkpoint, config: ArchConfig, archNotes: [String],
                    tolerance: Double, start: Date) throws -> VerifyReport {
        let model = try makeTrainableNetwork(config: config, weights: ck.tensors, options: TrainOptions(dropout: 0))
        let parameters = Set(model.store.parameterNames), buffers = Set(model.store.bufferNames)
        let fixed: Set<String> = ["input.slow", "input.fast", "input.x", "pixels.fast", "pixels.x", "target", "output.loss",
                                  "output.loss_bce", "output.logits", "grad_output.logits"]
        let unknown = ref.tensors.names.filter { n in
            !(fixed.contains(n) || n.hasPrefix("weights.")
              || n.hasPrefix("grad.") && parameters.contains(String(n.dropFirst(5)))
              || n.hasPrefix("running.") && buffers.contains(String(n.dropFirst(8))))
        }
        if !unknown.isEmpty {
            throw VerifyError.badReference(path, "unknown entries \(unknown.prefix(5).joined(separator: ", ")) for a \(config.model.rawValue) "
                + "train step (expected \(acceptedNames))")
        }
        let objective = try objective(ref, path: path, config: config)
        let inputs = try ReferenceInputs.load(ref, config: config)
        var gaps: [String: Double] = [:]
        if let g = ref.metadataValue("sfnet.torch_f32_gap") {
            gaps = (try? JSONDecoder().decode([String: Double].self, from: Data(g.utf8))) ?? [:]
        }
        func expected(_ name: String) throws -> ExpectedOutput? {
            guard let t = ref.tensors[name] else { return nil }
            guard t.dtype.isFloatingPoint else { throw VerifyError.badReference(path, "\(name) has dtype \(t.dtype.shortName), expected floating point") }
            return ExpectedOutput(name: name, tensor: t)
        }
        var dtypes: [DType] = []
        var comparisons: [Comparison] = []
        let logits = try model.forward(inputs)
        let (n, k) = (logits.shape[0], logits.shape[1])
        if let e = try expected("output.logits") {
            comparisons.append(Comparison.compare("output.logits (train mode)", got: logits, expected: e, tolerance: 1e-4, isLogits: true))
            dtypes.append(e.dtype)
        }
        var notes = archNotes
        let mode = config.model.isTransformer ? "train-mode step: drop path off" : "train-mode step: dropout off, batch statistics"
        let dLogits: FloatTensor
        switch objective {
        case .weighted(let r):
            notes.append("\(mode); gradients of sum(logits * R) with R = grad_output.logits")
            guard r.shape == logits.shape else { throw VerifyError.badReference(path, "grad_output.logits is \(r.shape), the logits are \(logits.shape)") }
            dLogits = r
            if let target = ref.tensors["target"], let want = try expected("output.loss_bce") {
                let l = try Loss.bceWithLogits(logits: logits.values, targets: floatTensorCopy(target).values, batch: n, classes: k)
                comparisons.append(Comparison.compare("output.loss (BCE, mean)", got: FloatTensor(shape: [1], values: [l.loss]),
                                                      expected: want.float64 ?? want.value.values.map(Double.init), shape: [1],
                                                      tolerance: 1e-5, isLogits: false))
            }
        case .bce, .ce:
            let result: LossResult
            let what: String
            if case .bce(let target) = objective {
                guard target.count == n * k else { throw VerifyError.badReference(path, "target holds \(target.count) values, the logits are \([n, k])") }
                result = try Loss.bceWithLogits(logits: logits.values, targets: target, batch: n, classes: k)
                what = "BCE"
            } else if case .ce(let labels) = objective {
                guard labels.count == n else { throw VerifyError.badReference(path, "target holds \(labels.count) class ids for a batch of \(n)") }
                result = try Loss.softmaxCrossEntropy(logits: logits.values, labels: labels, batch: n, classes: k)
                what = "CE"
            } else { preconditionFailure() }
            let want = try expected("output.loss")!
            guard want.value.count == 1 else { throw VerifyError.badReference(path, "output.loss holds \(want.value.count) values, expected one (mean reduction)") }
            comparisons.append(Comparison.compare("output.loss (\(what), mean)", got: FloatTensor(shape: [1], values: [result.loss]),
                                                  expected: want.doubles, shape: [1], tolerance: 1e-5, isLogits: false))
            dtypes.append(want.dtype)
            notes.append("\(mode); gradients of the mean \(what == "BCE" ? "BCE-with-logits loss on the multi-hot target" : "softmax cross-entropy on the class ids"), "
                         + "loss and dL/dlogits computed by sfnet")
            dLogits = FloatTensor(shape: logits.shape, values: result.dLogits)
        }
        model.zeroGradients()
        try model.backward(dLogits)
        var worst = (0.0, "")
        // The whole gradient's norm: an error that is tiny against it cannot change an SGD step.
        var wanted: [(name: String, want: ExpectedOutput, norm: Double)] = []
        var total2 = 0.0
        for name in model.store.parameterNames {
            guard let w = try expected("grad." + name) else { continue }
            let norm2 = w.doubles.reduce(0) { $0 + $1 * $1 }
            total2 += norm2
            wanted.append((name, w, norm2.squareRoot()))
            dtypes.append(w.dtype)
        }
        if wanted.count < parameters.count {
            notes.append("the reference holds the gradients of \(wanted.count) of the \(parameters.count) parameters; those are compared")
        }
        let totalNorm = total2.squareRoot()
        var rescued = 0
        var ratios: [Double] = []
        let hasFloor = !gaps.isEmpty
        for (name, want, norm) in wanted {
            guard let got = model.store.gradient(name) else { continue }
            let gap = hasFloor ? gaps[name] ?? 0 : nil
            let allowed = GradientCriterion.allowed(gap: gap, tolerance: tolerance)
            var c = Comparison.compare("grad.\(name)", got: got, expected: want, tolerance: allowed, isLogits: false)
            if !c.passed, c.firstNonFinite == nil,
               GradientCriterion.passes(relativeL2: c.relativeL2, gap: gap, tensorNorm: norm, totalNorm: totalNorm, tolerance: tolerance) {
                c.passed = true
                rescued += 1
            }
            if c.relativeL2 / allowed > worst.0 { worst = (c.relativeL2 / allowed, name) }
            if let gap, gap > 0 { ratios.append(c.relativeL2 / gap) }
            comparisons.append(c)
        }
        if !ratios.isEmpty {
            // In aggregate sfnet must be as accurate as PyTorch float32: the median ratio, as one output.
            ratios.sort()
            let median = ratios[ratios.count / 2]
            comparisons.append(Comparison(name: "gradients, median vs PyTorch f32", shape: [ratios.count], maxAbsError: ratios.last!,
                                          relativeL2: median, cosine: 1, top1Agreement: nil, top5Agreement: nil, firstNonFinite: nil,
                                          passed: median <= GradientCriterion.medianFactor))
            notes.append(String(format: "sfnet's distance to the truth / PyTorch float32's over %d gradients: median %.2fx (allowed %.1fx), worst %.2fx "
                + "(the row 'gradients, median vs PyTorch f32' shows the median as rel L2 and the worst as max abs)",
                ratios.count, median, GradientCriterion.medianFactor, ratios.last!))
        }
        for name in model.store.bufferNames {
            guard let want = try expected("running." + name) else { continue }
            comparisons.append(Comparison.compare("running.\(name)", got: model.store.value(name)!, expected: want, tolerance: 1e-5, isLogits: false))
            dtypes.append(want.dtype)
        }
        if comparisons.isEmpty {
            throw VerifyError.badReference(path, "a train-step reference with nothing to compare (expected \(acceptedNames))")
        }
        notes.append(hasFloor
            ? String(format: "a gradient passes within relative L2 max(%g x PyTorch float32's own distance to the truth (sfnet.torch_f32_gap), %g), "
                + "or when its error is below %g of the whole gradient's norm (%d did so); worst relative error/allowed %.3f at %@",
                GradientCriterion.factor, GradientCriterion.floor, GradientCriterion.wholeGradientFloor, rescued, worst.0, worst.1)
            : String(format: "the reference records no float32 noise floor (sfnet.torch_f32_gap): a gradient passes within relative L2 %g, "
                + "or when its error is below %g of the whole gradient's norm (%d did so); worst relative error/allowed %.3f at %@",
                GradientCriterion.allowed(gap: nil, tolerance: tolerance), GradientCriterion.wholeGradientFloor, rescued, worst.0, worst.1))
        var report = VerifyReport(weights: weights, weightsSHA256: try SHA256.hex(file: weights), reference: path,
                                  referenceSHA256: try SHA256.hex(file: path), producedBy: ref.metadataValue("sfnet.reference"),
                                  arch: config, tolerance: tolerance, comparisons: comparisons, seconds: Date().timeIntervalSince(start))
        report.notes = notes
        report.referenceDType = Reference.describe(dtypes)
        report.nonFiniteWeights = ck.tensors.nonFiniteNames
        return report
    }
}
