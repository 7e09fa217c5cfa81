// X3D's training-mode pieces: squeeze-excitation and Swish inside a residual block (the ops in
// Ops/SqueezeExcite.swift and Ops/Swish.swift), each keeping what its backward reads.

import Foundation

/// Squeeze-excitation (operators.SE) on the store's `<name>.fc1` / `<name>.fc2` weights and biases.
final class TrainSqueezeExcite {
    /// Module name: `<name>.fc1.weight` [r, C, 1, 1, 1], `.fc1.bias`, `.fc2.weight` [C, r, 1, 1, 1], `.fc2.bias`.
    let name: String
    private var input: FloatTensor?, saved: SqueezeExciteSaved?

    init(name: String) { self.name = name }

    var parameterNames: [String] { ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"].map { name + "." + $0 } }

    func forward(_ x: FloatTensor, _ ctx: TrainContext) -> FloatTensor {
        let store = ctx.store
        let (y, saved) = squeezeExciteForward(x, fc1Weight: store.value(required: name + ".fc1.weight"),
                                              fc1Bias: store.value(required: name + ".fc1.bias"),
                                              fc2Weight: store.value(required: name + ".fc2.weight"),
                                              fc2Bias: store.value(required: name + ".fc2.bias"))
        if ctx.keepForBackward { (input, self.saved) = (x, saved) }
        return y
    }

    /// dL/dy -> dL/dx, adding the four parameter gradients (when trainable).
    func backward(_ grad: FloatTensor, _ ctx: TrainContext) -> FloatTensor {
        guard let x = input, let saved else { preconditionFailure("\(name): backward without forward") }
        defer { input = nil; self.saved = nil }
        let store = ctx.store
        return squeezeExciteBackward(x, gradOutput: grad, fc1Weight: store.value(required: name + ".fc1.weight"),
                                     fc2Weight: store.value(required: name + ".fc2.weight"), saved: saved,
                                     gradFc1Weight: store.gradient(name + ".fc1.weight"), gradFc1Bias: store.gradient(name + ".fc1.bias"),
                                     gradFc2Weight: store.gradient(name + ".fc2.weight"), gradFc2Bias: store.gradient(name + ".fc2.bias"),
                                     needInputGradient: true, inPlace: true)!
    }
}

/// Swish, y = x * sigmoid(x), keeping its input for the backward.
final class TrainSwish {
    private var input: FloatTensor?

    func forward(_ x: FloatTensor, _ ctx: TrainContext) -> FloatTensor {
        if ctx.keepForBackward { input = x }
        return swishForward(x)
    }

    /// dL/dx over `grad`.
    func backward(_ grad: FloatTensor) -> FloatTensor {
        guard let x = input else { preconditionFailure("swish backward without forward") }
        input = nil
        return swishBackward(input: x, gradOutput: grad, inPlace: true)
    }
}
