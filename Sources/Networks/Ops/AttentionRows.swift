// The per-row softmax kernels of attention (Attention.swift): row maximum, exp of the max-shifted
// scores with their sum, and the softmax backward dS = P (dP - rowsum(P dP)) from recomputed or kept
// probabilities. 8 float lanes with the exp of Swish.swift restricted to x <= 0 (a score minus its row
// maximum never exceeds 0, so only the lower clamp remains).

/// The largest of `n` floats (n > 0).
@inline(__always)
func rowMaximum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var j = 0, m = -Float.infinity
    if n >= 8 {
        var v = load8(p)
        j = 8
        while j + 8 <= n {
            let w = load8(p + j)
            v = v.replacing(with: w, where: w .> v)
            j += 8
        }
        m = v.max()
    }
    while j < n { m = max(m, p[j]); j += 1 }
    return m
}

/// exp(x) on 8 lanes for x <= 0 (a score minus its row maximum): `exp8` without the upper clamp.
@inline(__always)
func expNonPositive8(_ v: SIMD8<Float>) -> SIMD8<Float> {
    let lo = SIMD8<Float>(repeating: -87.3)
    let x = v.replacing(with: lo, where: v .< lo)
    return exp8Clamped(x)
}

/// The last `n` < 8 floats at `p` in lanes 0..<n, -infinity beyond (exp gives 0 there after the zeroing
/// the callers do).
@inline(__always)
func loadTailPadded(_ p: UnsafePointer<Float>, _ n: Int) -> SIMD8<Float> {
    var v = SIMD8<Float>(repeating: -Float.infinity)
    for t in 0..<n { v[t] = p[t] }
    return v
}

/// p[j] = exp(p[j] - m) for j < n (m the row maximum); returns their sum. The sum runs in 16 float
/// lanes: at L = 1568 that is as accurate as double lanes measured against float64 (relative L2 of
/// the output 5.6e-7 both ways, PyTorch's flash kernel 5.4e-7) and a third faster on SSE2.
@inline(__always)
func expShifted(_ p: UnsafeMutablePointer<Float>, _ n: Int, max m: Float) -> Float {
    let mv = SIMD8<Float>(repeating: m)
    var a0 = SIMD8<Float>(repeating: 0), a1 = a0
    var j = 0
    while j + 16 <= n {
        let e0 = expNonPositive8(load8(p + j) - mv), e1 = expNonPositive8(load8(p + j + 8) - mv)
        a0 += e0
        a1 += e1
        store8(e0, p + j)
        store8(e1, p + j + 8)
        j += 16
    }
    while j + 8 <= n {
        let e = expNonPositive8(load8(p + j) - mv)
        a0 += e
        store8(e, p + j)
        j += 8
    }
    if j < n {
        var e = expNonPositive8(loadTailPadded(p + j, n - j) - mv)
        for t in (n - j)..<8 { e[t] = 0 }
        a1 += e
        for t in 0..<(n - j) { p[j + t] = e[t] }
    }
    return (a0 + a1).sum()
}

/// Recomputes one row's probabilities and their softmax gradient in one pass: p[j] = exp(p[j] - m) * inv,
/// ds[j] = p[j] * (ds[j] - d) for j < n, where `ds` holds dP on entry and d = sum over k of p[k] dP[k]
/// (given: dO . O of the row).
@inline(__always)
func probabilitiesAndGradient(_ p: UnsafeMutablePointer<Float>, _ ds: UnsafeMutablePointer<Float>, _ n: Int,
                                      max m: Float, inverseSum inv: Float, rowDot d: Float) {
    let mv = SIMD8<Float>(repeating: m), iv = SIMD8<Float>(repeating: inv), dv = SIMD8<Float>(repeating: d)
    var j = 0
    while j + 8 <= n {
        let e = expNonPositive8(load8(p + j) - mv) * iv
        store8(e, p + j)
        store8(e * (load8(ds + j) - dv), ds + j)
        j += 8
    }
    if j < n {
        let e = expNonPositive8(loadTailPadded(p + j, n - j) - mv) * iv
        for t in 0..<(n - j) {
            p[j + t] = e[t]
            ds[j + t] = e[t] * (ds[j + t] - d)
        }
    }
}

/// p[j] = exp(p[j] - m) * inv for j < n: one row's probabilities, recomputed.
@inline(__always)
func recomputeProbabilities(_ p: UnsafeMutablePointer<Float>, _ n: Int, max m: Float, inverseSum inv: Float) {
    let mv = SIMD8<Float>(repeating: m), iv = SIMD8<Float>(repeating: inv)
    var j = 0
    while j + 8 <= n {
        store8(expNonPositive8(load8(p + j) - mv) * iv, p + j)
        j += 8
    }
    if j < n {
        let e = expNonPositive8(loadTailPadded(p + j, n - j) - mv) * iv
        for t in 0..<(n - j) { p[j + t] = e[t] }
    }
}

/// ds[j] = e[j] * inv * (ds[j] - d) for j < n: dS from a kept row e = exp(S - max) (P = e inv), dP in
/// `ds` and d = sum over k of P[k] dP[k].
@inline(__always)
func scaledSoftmaxGradient(_ e: UnsafePointer<Float>, _ ds: UnsafeMutablePointer<Float>, _ n: Int,
                                   inverseSum inv: Float, rowDot d: Float) {
    let iv = SIMD8<Float>(repeating: inv), dv = SIMD8<Float>(repeating: d)
    var j = 0
    while j + 8 <= n {
        store8(load8(e + j) * iv * (load8(ds + j) - dv), ds + j)
        j += 8
    }
    while j < n { ds[j] = e[j] * inv * (ds[j] - d); j += 1 }
}

/// ds[j] = p[j] * (ds[j] - sum over k of p[k] ds[k]) for j < n: the softmax backward of one row,
/// dS from P and dP (the sum in double), when the forward's output is not at hand.
@inline(__always)
func softmaxRowBackward(_ p: UnsafePointer<Float>, _ ds: UnsafeMutablePointer<Float>, _ n: Int) {
    let d = Float(sums8d(p, UnsafePointer(ds), shift: 0, count: n).1)
    let dv = SIMD8<Float>(repeating: d)
    var j = 0
    while j + 8 <= n {
        store8(load8(p + j) * (load8(ds + j) - dv), ds + j)
        j += 8
    }
    while j < n { ds[j] = p[j] * (ds[j] - d); j += 1 }
}

/// The dot product of `n` floats at `a` and `b`, in double.
@inline(__always)
func dotInDouble(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Double {
    sums8d(a, b, shift: 0, count: n).1
}
