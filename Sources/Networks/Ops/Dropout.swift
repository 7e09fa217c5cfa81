// Dropout (torch.nn.Dropout): identity in eval mode; in training, zeroes each
// element with probability p and scales the rest by 1/(1-p). The training
// form returns its mask, which is all the backward pass needs (dx = dy * mask).

import Foundation

/// Eval-mode dropout: returns `x` itself, as PyTorch does.
public func dropoutForward(_ x: FloatTensor, p: Float) -> FloatTensor {
    precondition(p >= 0 && p <= 1, "dropout: probability \(p) outside [0, 1]")
    return x
}

/// Training-mode dropout. `mask` holds 0 or 1/(1-p) per element; output = x * mask.
public func dropoutForward<R: RandomNumberGenerator>(_ x: FloatTensor, p: Float, training: Bool,
                                                     using rng: inout R) -> (output: FloatTensor, mask: FloatTensor?) {
    guard training, p > 0 else { return (dropoutForward(x, p: p), nil) }
    precondition(p <= 1, "dropout: probability \(p) outside [0, 1]")
    let mask = FloatTensor(uninitialized: x.shape)
    let keep: Float = p >= 1 ? 0 : 1 / (1 - p)
    for i in 0..<x.count { mask.pointer[i] = Float.random(in: 0..<1, using: &rng) < p ? 0 : keep }
    let out = FloatTensor(uninitialized: x.shape)
    for i in 0..<x.count { out.pointer[i] = x.pointer[i] * mask.pointer[i] }
    return (out, mask)
}

/// Dropout backward: dy * mask (the mask training-mode forward returned; nil = identity).
public func dropoutBackward(gradOutput: FloatTensor, mask: FloatTensor?) -> FloatTensor {
    guard let mask else { return gradOutput }
    precondition(mask.shape == gradOutput.shape, "dropoutBackward: mask \(mask.shape) for gradient \(gradOutput.shape)")
    let dx = FloatTensor(uninitialized: gradOutput.shape)
    for i in 0..<dx.count { dx.pointer[i] = gradOutput.pointer[i] * mask.pointer[i] }
    return dx
}
