// BatchNorm3d in eval mode (torch.nn.BatchNorm3d with running statistics):
// y = (x - mean) / sqrt(var + eps) * weight + bias, folded once into a
// per-channel y = x * scale + shift, optionally fused with the ReLU after it.
// Backward of the eval form needs only `scale` (and the output for the ReLU mask).

import Foundation

/// PyTorch's default BatchNorm epsilon.
public let batchNormEpsilon: Float = 1e-5

/// Eval-mode BatchNorm reduced to a per-channel affine map.
public struct BatchNormFold: Sendable {
    /// weight / sqrt(running_var + eps), per channel.
    public let scale: FloatTensor
    /// bias - running_mean * scale, per channel.
    public let shift: FloatTensor

    public var channels: Int { scale.count }

    /// Folds BN parameters ([C] each). A missing `weight`/`bias` (affine=False) means 1/0.
    public init(weight: FloatTensor?, bias: FloatTensor?, runningMean: FloatTensor, runningVar: FloatTensor,
                eps: Float = batchNormEpsilon) {
        let c = runningMean.count
        for (name, t) in [("weight", weight), ("bias", bias), ("running_var", runningVar)] {
            if let t { precondition(t.count == c, "batchNorm: \(name) has \(t.shape), running_mean has \(runningMean.shape)") }
        }
        let scale = FloatTensor(uninitialized: [c]), shift = FloatTensor(uninitialized: [c])
        for i in 0..<c {
            // Double, so that the fold adds no error of its own beyond the final rounding.
            let s = Double(weight?.pointer[i] ?? 1) / (Double(runningVar.pointer[i]) + Double(eps)).squareRoot()
            scale.pointer[i] = Float(s)
            shift.pointer[i] = Float(Double(bias?.pointer[i] ?? 0) - Double(runningMean.pointer[i]) * s)
        }
        self.scale = scale
        self.shift = shift
    }

    /// A fold from explicit scale and shift ([C] each).
    public init(scale: FloatTensor, shift: FloatTensor) {
        precondition(scale.count == shift.count, "batchNorm: scale \(scale.shape) vs shift \(shift.shape)")
        self.scale = scale
        self.shift = shift
    }
}

/// Eval-mode BN on channel dimension 1 of `x` ([N, C, ...]), optionally
/// followed by ReLU; `inPlace` overwrites and returns `x`.
public func batchNormEvalForward(_ x: FloatTensor, _ bn: BatchNormFold, relu: Bool = false,
                                 inPlace: Bool = false) -> FloatTensor {
    precondition(x.rank >= 2 && x.shape[1] == bn.channels,
                 "batchNorm: input \(x.shape) has \(x.rank >= 2 ? x.shape[1] : 0) channels, BN has \(bn.channels)")
    let out = inPlace ? x : FloatTensor(uninitialized: x.shape)
    let c = x.shape[1]
    let plane = x.count / max(1, x.shape[0] * c)
    let src = x.pointer, dst = out.pointer, scale = bn.scale.pointer, shift = bn.shift.pointer
    parallelFor(x.shape[0] * c, work: plane) { nc in
        let a = scale[nc % c], b = shift[nc % c]
        let s = src + nc * plane, d = dst + nc * plane
        if relu {
            for i in 0..<plane { d[i] = max(s[i] * a + b, 0) }
        } else {
            for i in 0..<plane { d[i] = s[i] * a + b }
        }
    }
    return out
}

/// The oracle: the unfolded formula in double precision.
public func batchNormEvalNaive(_ x: FloatTensor, weight: FloatTensor?, bias: FloatTensor?,
                               runningMean: FloatTensor, runningVar: FloatTensor,
                               eps: Float = batchNormEpsilon, relu: Bool = false) -> FloatTensor {
    let c = x.shape[1]
    let plane = x.count / max(1, x.shape[0] * c)
    let out = FloatTensor(uninitialized: x.shape)
    for i in 0..<x.count {
        let ch = (i / plane) % c
        let norm = (Double(x.pointer[i]) - Double(runningMean.pointer[ch]))
            / (Double(runningVar.pointer[ch]) + Double(eps)).squareRoot()
        let y = norm * Double(weight?.pointer[ch] ?? 1) + Double(bias?.pointer[ch] ?? 0)
        out.pointer[i] = Float(relu ? max(y, 0) : y)
    }
    return out
}
