// Swish (SiLU), x * sigmoid(x), as PySlowFast's Swish and torch.nn.SiLU, with its double-precision
// oracle. X3D applies it to every bottleneck's channel-wise conv output, so it is memory-bound work
// over large tensors: the lanes run in C (CKernels, AVX-512 where the CPU has it) with a vectorised exp
// (Cephes' expf: round-to-nearest range reduction by ln 2 in two parts, degree-5 polynomial, 2^n through
// the exponent bits; within about 1 ulp on the range used; the same core as the attention softmax's),
// not a libm call per element.
// Backward from the forward's input: dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x).

import CKernels
import Foundation

/// dst = swish(x) (g nil) or swish's backward for dy = g over `0..<count`, split over the threads
/// (`dst` may be `x` or `g`).
func swishMap(_ count: Int, _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<Float>) {
    let block = 16
    parallelRanges((count + block - 1) / block, minPerThread: 1 << 11) { range in
        let start = range.lowerBound * block, n = min(range.upperBound * block, count) - start
        if let g {
            sfk_swish_backward(x + start, g + start, dst + start, n)
        } else {
            sfk_swish_forward(x + start, dst + start, n, 1)
        }
    }
}

/// dst[i] = swish(scale * x[i]) for i in 0..<count on the calling thread (`dst` may be `x`): the fused
/// epilogue of X3D's channel-wise conv (scale 1) and of its squeeze-excitation (scale = the channel's gate).
@inline(__always)
func swishSpan(_ x: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count: Int, scale: Float = 1) {
    sfk_swish_forward(x, dst, count, scale)
}

/// Swish, x * sigmoid(x), element-wise on any shape; `inPlace` overwrites and returns `x`.
public func swishForward(_ x: FloatTensor, inPlace: Bool = false) -> FloatTensor {
    let out = inPlace ? x : FloatTensor(uninitialized: x.shape)
    withExtendedLifetime((x, out)) { swishMap(x.count, x.pointer, nil, out.pointer) }
    return out
}

/// Swish backward from the forward's input `input`: dy * s * (1 + x * (1 - s)), s = sigmoid(x).
/// `inPlace` (default) overwrites and returns `gradOutput`.
@discardableResult
public func swishBackward(input: FloatTensor, gradOutput: FloatTensor, inPlace: Bool = true) -> FloatTensor {
    precondition(input.shape == gradOutput.shape, "swishBackward: input \(input.shape), gradOutput \(gradOutput.shape)")
    let dx = inPlace ? gradOutput : FloatTensor(uninitialized: gradOutput.shape)
    withExtendedLifetime((input, gradOutput, dx)) { swishMap(input.count, input.pointer, gradOutput.pointer, dx.pointer) }
    return dx
}

// MARK: - Reference

/// The oracle: each element in double precision, rounded once.
public func swishNaive(_ x: FloatTensor) -> FloatTensor {
    FloatTensor(shape: x.shape, values: x.values.map { v in
        let d = Double(v)
        return Float(d >= 0 ? d / (1 + exp(-d)) : d * exp(d) / (1 + exp(d)))
    })
}

public func swish64(_ x: Tensor64) -> Tensor64 {
    let s = sigmoid64(x)
    return Tensor64(shape: x.shape, values: (0..<x.count).map { x.values[$0] * s.values[$0] })
}

/// Float64 swish backward by the product rule: dy * (s + x * s * (1 - s)).
public func swishBackward64(_ x: Tensor64, gradOutput: Tensor64) -> Tensor64 {
    let s = sigmoid64(x)
    return Tensor64(shape: x.shape, values: (0..<x.count).map {
        let (v, sv) = (x.values[$0], s.values[$0])
        return gradOutput.values[$0] * (sv + v * sv * (1 - sv))
    })
}
