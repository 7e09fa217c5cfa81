// GELU, torch.nn.functional.gelu in both forms: exact, x * Phi(x) = 0.5 x erfc(-x / sqrt 2), and
// approximate="tanh", 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) = x * sigmoid(2u); with the
// double-precision oracles. The MLP of every transformer block applies it to [tokens, 4 D]; the lanes
// run in C (CKernels/kernels_body.h, AVX-512 where the CPU has it), no libm call per element: erfc(|x| / sqrt 2)
// in Numerical Recipes' erfcc form t exp(-a^2 + f(t)) with a degree-10 fit f, exp(-x^2 / 2) from an exact
// split of x^2 (relative accuracy in the tails), one formula for both signs (Phi = erfc / 2 or 1 - erfc / 2).
// Backward from the forward's input: dx = dy (Phi(x) + x phi(x)) (erf form), dy (s + 2 x s (1 - s) u')
// (tanh form, s = sigmoid(2u)).

import CKernels
import Foundation

/// The form of GELU (torch's `approximate` argument; Hugging Face's `hidden_act` "gelu" is `.none`,
/// "gelu_new" and "gelu_pytorch_tanh" are `.tanh`).
public enum GELUApproximation: String, Sendable, Codable, CaseIterable {
    /// x * Phi(x), through erf.
    case none
    /// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    case tanh
}

/// dst = gelu(x) (g nil) or GELU's backward for dy = g, over `0..<count`, split over the threads (`dst`
/// may be `x` or `g`).
func geluMap(_ count: Int, _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<Float>,
             approximate: GELUApproximation) {
    let block = 16, tanhForm: Int32 = approximate == .tanh ? 1 : 0
    parallelRanges((count + block - 1) / block, minPerThread: 1 << 10) { range in
        let start = range.lowerBound * block, n = min(range.upperBound * block, count) - start
        if let g {
            sfk_gelu_backward(x + start, g + start, dst + start, n, tanhForm)
        } else {
            sfk_gelu_forward(x + start, dst + start, n, tanhForm)
        }
    }
}

/// GELU element-wise on any shape; `inPlace` overwrites and returns `x`.
public func geluForward(_ x: FloatTensor, approximate: GELUApproximation = .none, inPlace: Bool = false) -> FloatTensor {
    let out = inPlace ? x : FloatTensor(uninitialized: x.shape)
    withExtendedLifetime((x, out)) { geluMap(x.count, x.pointer, nil, out.pointer, approximate: approximate) }
    return out
}

/// GELU backward from the forward's input `input`: dy * gelu'(x). `inPlace` (default) overwrites and
/// returns `gradOutput`.
@discardableResult
public func geluBackward(input: FloatTensor, gradOutput: FloatTensor, approximate: GELUApproximation = .none,
                         inPlace: Bool = true) -> FloatTensor {
    precondition(input.shape == gradOutput.shape, "geluBackward: input \(input.shape), gradOutput \(gradOutput.shape)")
    let dx = inPlace ? gradOutput : FloatTensor(uninitialized: gradOutput.shape)
    withExtendedLifetime((input, gradOutput, dx)) {
        geluMap(input.count, input.pointer, gradOutput.pointer, dx.pointer, approximate: approximate)
    }
    return dx
}

// MARK: - Float64 oracle

/// GELU in double precision (libm's erfc).
public func gelu64(_ x: Tensor64, approximate: GELUApproximation = .none) -> Tensor64 {
    Tensor64(shape: x.shape, values: x.values.map { v in
        switch approximate {
        case .none: return 0.5 * v * erfc(-v / 2.0.squareRoot())
        // 0.5 x (1 + tanh u) as x sigmoid(2u): 1 + tanh u cancels in the left tail, even in double.
        case .tanh: return v / (1 + exp(-2 * (2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))
        }
    })
}

/// GELU's derivative times `gradOutput` in double precision: Phi(x) + x phi(x) (erf form), or the
/// derivative of the tanh expression (written through sigmoids, which do not cancel in the tails).
public func geluBackward64(_ x: Tensor64, gradOutput: Tensor64, approximate: GELUApproximation = .none) -> Tensor64 {
    precondition(x.shape == gradOutput.shape)
    return Tensor64(shape: x.shape, values: (0..<x.count).map { i in
        let v = x.values[i]
        let d: Double
        switch approximate {
        case .none:
            d = 0.5 * erfc(-v / 2.0.squareRoot()) + v * exp(-0.5 * v * v) / (2 * Double.pi).squareRoot()
        case .tanh:
            // With s = sigmoid(2u): d/dx = s + 2 x s (1 - s) u', 1 - s = sigmoid(-2u).
            let c = (2 / Double.pi).squareRoot()
            let u = c * (v + 0.044715 * v * v * v)
            let (s, sm) = (1 / (1 + exp(-2 * u)), 1 / (1 + exp(2 * u)))
            d = s + 2 * v * s * sm * c * (1 + 3 * 0.044715 * v * v)
        }
        return gradOutput.values[i] * d
    })
}
