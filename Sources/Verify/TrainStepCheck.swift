// `sfnet verify` on a train-step reference (issue 6, part 5): when the reference holds
// `grad_output.logits` (dL/dlogits, R) and `grad.<parameter>` entries, made by PyTorch in
// train mode (fixtures/generate_train_grads.py), the weights run one train-mode
// forward/backward and every gradient, the logits, the BCE loss on `target` and the BN
// running statistics after the step are compared. A gradient passes by GradientCriterion:
// within 2x PyTorch float32's own distance to the float64 truth (`sfnet.torch_f32_gap`;
// batch-statistics BN makes some gradients ill-conditioned, see the generator).

import Convert
import Formats
import Foundation
import SlowFastNet
import Train

enum TrainStepCheck {
    static func isTrainReference(_ ck: Checkpoint) -> Bool { ck.tensors["grad_output.logits"] != nil }

    static func run(weights: String, ck: Checkpoint, reference path: String, ref: Checkpoint, tolerance: Double, start: Date) throws -> VerifyReport {
        guard let archText = ref.metadataValue("sfnet.arch") ?? ck.metadataValue("sfnet.arch") else {
            throw VerifyError.weights(weights, "no architecture in the reference or the weights")
        }
        let config = try ArchConfig.fromJSON(archText)
        let model = try TrainableModel(config: config, weights: ck.tensors, options: TrainOptions(dropout: 0))
        let inputs = try ReferenceInputs.load(ref, config: config)
        var gaps: [String: Double] = [:]
        if let g = ref.metadataValue("sfnet.torch_f32_gap") {
            gaps = (try? JSONDecoder().decode([String: Double].self, from: Data(g.utf8))) ?? [:]
        }
        var comparisons: [Comparison] = []
        let logits = try model.forward(inputs)
        if let e = ref.tensors["output.logits"] {
            comparisons.append(Comparison.compare("output.logits (train mode)", got: logits, expected: floatTensorCopy(e), tolerance: 1e-4, isLogits: true))
        }
        var notes = ["train-mode step: dropout off, batch statistics; gradients of sum(logits * R) with R = grad_output.logits"]
        if let target = ref.tensors["target"], let loss = ref.tensors["output.loss_bce"] {
            let k = config.numClasses
            let r = try Loss.bceWithLogits(logits: logits.values, targets: floatTensorCopy(target).values, batch: logits.shape[0], classes: k)
            let want = floatTensorCopy(loss)
            comparisons.append(Comparison.compare("output.loss (BCE, mean)", got: FloatTensor(shape: [1], values: [r.loss]), expected: want,
                                                  tolerance: 1e-5, isLogits: false))
        }
        guard let r = ref.tensors["grad_output.logits"] else { throw VerifyError.badReference(path, "no grad_output.logits") }
        model.zeroGradients()
        try model.backward(floatTensorCopy(r))
        var worst = (0.0, "")
        // The whole gradient's norm: an error that is tiny against it cannot change an SGD step.
        var wanted: [(String, FloatTensor)] = []
        var total2 = 0.0
        for name in model.store.parameterNames {
            guard let want = ref.tensors["grad." + name] else { throw VerifyError.badReference(path, "no grad.\(name)") }
            let w = floatTensorCopy(want)
            total2 += w.values.reduce(0) { $0 + Double($1) * Double($1) }
            wanted.append((name, w))
        }
        let totalNorm = total2.squareRoot()
        var rescued = 0
        let hasFloor = !gaps.isEmpty
        for (name, want) in wanted {
            guard let got = model.store.gradient(name) else { continue }
            let gap = hasFloor ? gaps[name] ?? 0 : nil
            let allowed = GradientCriterion.allowed(gap: gap, tolerance: tolerance)
            var c = Comparison.compare("grad.\(name)", got: got, expected: want, tolerance: allowed, isLogits: false)
            let norm = want.values.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
            if !c.passed, c.firstNonFinite == nil,
               GradientCriterion.passes(relativeL2: c.relativeL2, gap: gap, tensorNorm: norm, totalNorm: totalNorm, tolerance: tolerance) {
                c.passed = true
                rescued += 1
            }
            if c.relativeL2 / allowed > worst.0 { worst = (c.relativeL2 / allowed, name) }
            comparisons.append(c)
        }
        for name in model.store.bufferNames {
            guard let want = ref.tensors["running." + name] else { continue }
            comparisons.append(Comparison.compare("running.\(name)", got: model.store.value(name)!, expected: floatTensorCopy(want),
                                                  tolerance: 1e-5, isLogits: false))
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
        report.nonFiniteWeights = ck.tensors.nonFiniteNames
        return report
    }
}
