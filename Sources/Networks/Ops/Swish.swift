// Swish (SiLU), x * sigmoid(x), as PySlowFast's Swish and torch.nn.SiLU, with its double-precision
// oracle. X3D applies it to every bottleneck's channel-wise conv output, so it is memory-bound work
// over large tensors: 8 lanes at a time with a vectorised exp (Cephes' expf: round-to-nearest
// range reduction by ln 2 in two parts, degree-6 polynomial, 2^n through the exponent bits; within
// about 1 ulp on the range used), not a libm call per element.
// Backward from the forward's input: dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x).

import Foundation

/// exp(x) on 8 lanes, inputs clamped to [-87.3, 88.37] (2^n stays a normal float: no inf, no denormals).
@inline(__always)
func exp8(_ v: SIMD8<Float>) -> SIMD8<Float> {
    // Masked selects, not clamped(): pointwiseMin/Max are not inlined (a call per vector); NaN passes through.
    let lo = SIMD8<Float>(repeating: -87.3), hi = SIMD8<Float>(repeating: 88.37)
    let x = v.replacing(with: lo, where: v .< lo).replacing(with: hi, where: v .> hi)
    return exp8Clamped(x)
}

/// exp(x) on 8 lanes for x already within [-87.3, 88.37]: Cody-Waite reduction by ln 2 and a degree-5
/// polynomial (the shared core of `exp8` and the attention's `expNonPositive8`).
@inline(__always)
func exp8Clamped(_ x: SIMD8<Float>) -> SIMD8<Float> {
    // n = round(x / ln 2) by the 1.5 * 2^23 trick: the sum's low mantissa bits hold n.
    let magic = SIMD8<Float>(repeating: 12_582_912)
    let t = x * SIMD8(repeating: 1.442_695_04) + magic
    let n = t - magic
    let r = x - n * SIMD8(repeating: 0.693_359_375) - n * SIMD8(repeating: -2.121_944_4e-4)
    var p = SIMD8<Float>(repeating: 1.987_569_15e-4)
    p = p * r + SIMD8(repeating: 1.398_199_95e-3)
    p = p * r + SIMD8(repeating: 8.333_451_9e-3)
    p = p * r + SIMD8(repeating: 4.166_579_59e-2)
    p = p * r + SIMD8(repeating: 1.666_666_55e-1)
    p = p * r + SIMD8(repeating: 5.000_000_12e-1)
    let e = p * (r * r) + r + SIMD8(repeating: 1)
    let bits = unsafeBitCast(t, to: SIMD8<Int32>.self) &- SIMD8(repeating: 0x4B40_0000)
    let scale = unsafeBitCast((bits &+ SIMD8(repeating: 127)) &<< SIMD8(repeating: 23), to: SIMD8<Float>.self)
    return e * scale
}

/// sigmoid(x) on 8 lanes: 1 / (1 + exp(-x)).
@inline(__always)
func sigmoid8(_ x: SIMD8<Float>) -> SIMD8<Float> {
    SIMD8(repeating: 1) / (SIMD8(repeating: 1) + exp8(-x))
}

/// swish (g nil) or its backward (g = dy) on 8 lanes.
@inline(__always)
private func swish8(_ v: SIMD8<Float>, _ g: SIMD8<Float>?) -> SIMD8<Float> {
    let s = sigmoid8(v)
    guard let g else { return v * s }
    let one = SIMD8<Float>(repeating: 1)
    return g * s * (one + v * (one - s))
}

/// dst = swish(x) (g nil) or swish's backward for dy = g, 8 lanes at a time over `0..<count`, split
/// over the threads; the last partial block goes through a zero-padded register. The lane math is
/// called directly in the loops: a closure parameter here would cost a call per 8 lanes.
func swishMap(_ count: Int, _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<Float>) {
    parallelRanges((count + 7) / 8, minPerThread: 1 << 12) { range in
        let full = min(range.upperBound, count / 8)
        var i = range.lowerBound * 8
        if let g {
            while i < full * 8 {
                store8(swish8(load8(x + i), load8(g + i)), dst + i)
                i += 8
            }
        } else {
            while i < full * 8 {
                store8(swish8(load8(x + i), nil), dst + i)
                i += 8
            }
        }
        if range.upperBound > full {
            let lanes = count - i
            var v = SIMD8<Float>(), w = SIMD8<Float>()
            for j in 0..<lanes { v[j] = x[i + j]; w[j] = g?[i + j] ?? 0 }
            let r = swish8(v, g == nil ? nil : w)
            for j in 0..<lanes { dst[i + j] = r[j] }
        }
    }
}

/// dst[i] = swish(scale * x[i]) for i in 0..<count on the calling thread (`dst` may be `x`): the fused
/// epilogue of X3D's channel-wise conv (scale 1) and of its squeeze-excitation (scale = the channel's gate).
@inline(__always)
func swishSpan(_ x: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count: Int, scale: Float = 1) {
    let g = SIMD8<Float>(repeating: scale)
    var i = 0
    while i + 16 <= count {
        let v0 = load8(x + i) * g, v1 = load8(x + i + 8) * g
        store8(swish8(v0, nil), dst + i)
        store8(swish8(v1, nil), dst + i + 8)
        i += 16
    }
    while i + 8 <= count {
        store8(swish8(load8(x + i) * g, nil), dst + i)
        i += 8
    }
    if i < count {
        var v = SIMD8<Float>()
        for j in 0..<(count - i) { v[j] = x[i + j] * scale }
        let r = swish8(v, nil)
        for j in 0..<(count - i) { dst[i + j] = r[j] }
    }
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
