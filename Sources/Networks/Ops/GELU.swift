// GELU, torch.nn.functional.gelu in both forms: exact, x * Phi(x) = 0.5 x erfc(-x / sqrt 2), and
// approximate="tanh", 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) = x * sigmoid(2u); with the
// double-precision oracles. The MLP of every transformer block applies it to [tokens, 4 D], so 8 lanes
// at a time, no libm call per element, polynomials by Estrin's scheme (the lane math is latency-bound).
// erfc(a), a = |x| / sqrt 2, is t exp(-a^2 + f(t)) with t = 1 / (1 + a / 2) (Numerical Recipes' erfcc
// form) and f(t) = log(erfc(a) exp(a^2) / t) a degree-10 least-squares fit in u = (t - 0.58849555) 2.4301076,
// made against mpmath on 1500 Chebyshev nodes of a in [0, 9.3] (past 9.2 erfc is below float's smallest
// normal); float evaluation keeps f within 1.4e-7. exp(-x^2 / 2) is taken with x^2 split into an exact high part and a small
// low part, so erfc keeps its relative accuracy in the tail (x = -10: PyTorch's vectorised erf, Abramowitz
// and Stegun 7.1.26, is good to 1.5e-7 absolute only). One formula for both signs: Phi(x) = erfc / 2 for
// x < 0, 1 - erfc / 2 otherwise, so neither side cancels.
// Backward from the forward's input: dx = dy (Phi(x) + x phi(x)) (erf form), dy (s + 2 x s (1 - s) u')
// (tanh form, s = sigmoid(2u)).

import Foundation

/// The form of GELU (torch's `approximate` argument; Hugging Face's `hidden_act` "gelu" is `.none`,
/// "gelu_new" and "gelu_pytorch_tanh" are `.tanh`).
public enum GELUApproximation: String, Sendable, Codable, CaseIterable {
    /// x * Phi(x), through erf.
    case none
    /// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    case tanh
}

/// exp(hi + lo) on 8 lanes where `hi` carries the magnitude and `lo` a small correction that would
/// round away in hi + lo (Cody-Waite reduction of hi, lo added to the reduced argument). hi + lo must
/// stay within [-87.3, 88.37].
@inline(__always)
func exp8(hi: SIMD8<Float>, lo: SIMD8<Float>) -> SIMD8<Float> {
    let magic = SIMD8<Float>(repeating: 12_582_912)
    let t = (hi + lo) * SIMD8(repeating: 1.442_695_04) + magic
    let n = t - magic
    let r = (hi - n * SIMD8(repeating: 0.693_359_375)) - n * SIMD8(repeating: -2.121_944_4e-4) + lo
    // Cephes' polynomial by Estrin's scheme: shorter dependency chains than Horner's (the lanes' math is
    // latency-bound on SSE).
    let r2 = r * r
    let p01 = SIMD8<Float>(repeating: 5.000_000_12e-1) + SIMD8(repeating: 1.666_666_55e-1) * r
    let p23 = SIMD8<Float>(repeating: 4.166_579_59e-2) + SIMD8(repeating: 8.333_451_9e-3) * r
    let p45 = SIMD8<Float>(repeating: 1.398_199_95e-3) + SIMD8(repeating: 1.987_569_15e-4) * r
    let p = p01 + p23 * r2 + p45 * (r2 * r2)
    let e = p * r2 + r + SIMD8(repeating: 1)
    let bits = unsafeBitCast(t, to: SIMD8<Int32>.self) &- SIMD8(repeating: 0x4B40_0000)
    let scale = unsafeBitCast((bits &+ SIMD8(repeating: 127)) &<< SIMD8(repeating: 23), to: SIMD8<Float>.self)
    return e * scale
}

/// For x on 8 lanes: (erfc(|x| / sqrt 2), exp(-x^2 / 2) when `wantGauss`, else 0). From |x| = 13 on
/// (erfc(9.19) = 1.2e-38, exp(-84.5) = 2e-37) both are 0.
@inline(__always)
func erfcAndGauss8(_ x: SIMD8<Float>, wantGauss: Bool) -> (erfc: SIMD8<Float>, gauss: SIMD8<Float>) {
    var ax = unsafeBitCast(unsafeBitCast(x, to: SIMD8<UInt32>.self) & SIMD8(repeating: 0x7FFF_FFFF), to: SIMD8<Float>.self)
    let cap = SIMD8<Float>(repeating: 13)
    ax = ax.replacing(with: cap, where: ax .> cap)
    let t = SIMD8<Float>(repeating: 1) / (SIMD8(repeating: 1) + ax * SIMD8(repeating: 0.353_553_39))
    // f(t) = log(erfc(a) exp(a^2) / t) in u = (t - 0.58849555) * 2.4301076, u in [-1, 1].
    let u = (t - SIMD8(repeating: 0.588_495_55)) * SIMD8(repeating: 2.430_107_6)
    // Degree 10 by Estrin's scheme (see exp8(hi:lo:)).
    let u2 = u * u, u4 = u2 * u2
    let c01 = SIMD8<Float>(repeating: -5.515_272_617e-01) + SIMD8(repeating: 5.636_132_360e-01) * u
    let c23 = SIMD8<Float>(repeating: 1.428_804_174e-02) + SIMD8(repeating: -2.843_306_027e-02) * u
    let c45 = SIMD8<Float>(repeating: -7.763_330_359e-04) + SIMD8(repeating: 3.463_069_908e-03) * u
    let c67 = SIMD8<Float>(repeating: -3.001_161_385e-04) + SIMD8(repeating: -4.783_698_241e-04) * u
    let c89 = SIMD8<Float>(repeating: 1.249_048_219e-04) + SIMD8(repeating: 4.688_202_534e-05) * u
    let c810 = c89 + SIMD8(repeating: -2.103_154_111e-05) * u2
    let f = (c01 + c23 * u2) + (c45 + c67 * u2) * u4 + c810 * (u4 * u4)
    // -x^2 / 2 = -xh^2 / 2 (exact: xh has 12 significant bits) - xl (x + xh) / 2.
    let xh = unsafeBitCast(unsafeBitCast(ax, to: SIMD8<UInt32>.self) & SIMD8(repeating: 0xFFFF_F000), to: SIMD8<Float>.self)
    let hi = -(xh * xh) * SIMD8(repeating: 0.5)
    let lo = -((ax - xh) * (ax + xh)) * SIMD8(repeating: 0.5)
    // From the clamp on both are below 1e-36: zero, so that x exp(-x^2 / 2) does not grow with x.
    // (A vector zero: `replacing(with: 0, ...)`, the scalar overload, builds its mask lane by lane.)
    let beyond = ax .>= cap, zero = SIMD8<Float>()
    let erfc = (t * exp8(hi: hi, lo: lo + f)).replacing(with: zero, where: beyond)
    return (erfc, wantGauss ? exp8(hi: hi, lo: lo).replacing(with: zero, where: beyond) : zero)
}

/// One of GELU's lane maps: the forward (g ignored) or the backward for dy = g, of one form. Static
/// requirements of a type parameter, so that `geluLanes` is specialised per map with the math inlined
/// (an optional dy or a closure left the lane functions out of line, 3x slower).
private protocol GELULanes {
    static func apply(_ x: SIMD8<Float>, _ g: SIMD8<Float>) -> SIMD8<Float>
}

/// x Phi(x) = x (erfc / 2, or 1 - erfc / 2 for x >= 0).
private enum GELUErfForward: GELULanes {
    @inline(__always)
    static func apply(_ x: SIMD8<Float>, _ g: SIMD8<Float>) -> SIMD8<Float> {
        let half = SIMD8<Float>(repeating: 0.5) * erfcAndGauss8(x, wantGauss: false).erfc
        return x * half.replacing(with: SIMD8(repeating: 1) - half, where: x .>= 0)
    }
}

/// dy (Phi(x) + x phi(x)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
private enum GELUErfBackward: GELULanes {
    @inline(__always)
    static func apply(_ x: SIMD8<Float>, _ g: SIMD8<Float>) -> SIMD8<Float> {
        let (erfc, gauss) = erfcAndGauss8(x, wantGauss: true)
        let half = SIMD8<Float>(repeating: 0.5) * erfc
        let phi = half.replacing(with: SIMD8(repeating: 1) - half, where: x .>= 0)
        return g * (phi + x * gauss * SIMD8(repeating: 0.398_942_28))
    }
}

/// (s, e s) with s = sigmoid(2u), u = c (x + 0.044715 x^3), e = exp(-2u), so e s = 1 - s without the
/// subtraction (which leaves nothing of it once s rounds to 1); s is zero where exp(-2u) is clamped
/// (2u < -88: s below 1e-38, as in double).
@inline(__always)
private func tanhFormSigmoid8(_ x: SIMD8<Float>, _ x2: SIMD8<Float>) -> (s: SIMD8<Float>, complement: SIMD8<Float>) {
    let u = SIMD8<Float>(repeating: 0.797_884_56) * (x + SIMD8(repeating: 0.044_715) * x2 * x)
    let e = exp8(-(u + u))
    let limit = SIMD8<Float>(repeating: -44), zero = SIMD8<Float>()
    let s = (SIMD8<Float>(repeating: 1) / (SIMD8(repeating: 1) + e)).replacing(with: zero, where: u .< limit)
    return (s, e * s)
}

/// x sigmoid(2u).
private enum GELUTanhForward: GELULanes {
    @inline(__always)
    static func apply(_ x: SIMD8<Float>, _ g: SIMD8<Float>) -> SIMD8<Float> { x * tanhFormSigmoid8(x, x * x).s }
}

/// dy (s + 2 x s (1 - s) u'), u' = c (1 + 3 0.044715 x^2).
private enum GELUTanhBackward: GELULanes {
    @inline(__always)
    static func apply(_ x: SIMD8<Float>, _ g: SIMD8<Float>) -> SIMD8<Float> {
        let x2 = x * x
        let (s, sm) = tanhFormSigmoid8(x, x2)
        let du = SIMD8<Float>(repeating: 0.797_884_56) * (SIMD8(repeating: 1) + SIMD8(repeating: 3 * 0.044_715) * x2)
        return g * (s + (x + x) * s * sm * du)
    }
}

/// dst[i] = F.apply(x[i], g[i]) over `0..<count`, 8 lanes at a time, split over the threads (`dst` may be
/// `x` or `g`; g nil reads as zeros); the last partial block goes through a zero-padded register.
private func geluLanes<F: GELULanes>(_: F.Type, _ count: Int, _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>?,
                                     _ dst: UnsafeMutablePointer<Float>) {
    parallelRanges((count + 7) / 8, minPerThread: 1 << 11) { range in
        let full = min(range.upperBound, count / 8)
        var i = range.lowerBound * 8
        if let g {
            while i < full * 8 { store8(F.apply(load8(x + i), load8(g + i)), dst + i); i += 8 }
        } else {
            while i < full * 8 { store8(F.apply(load8(x + i), SIMD8()), dst + i); i += 8 }
        }
        if range.upperBound > full {
            let lanes = count - i
            var v = SIMD8<Float>(), w = SIMD8<Float>()
            for j in 0..<lanes { v[j] = x[i + j]; w[j] = g?[i + j] ?? 0 }
            let r = F.apply(v, w)
            for j in 0..<lanes { dst[i + j] = r[j] }
        }
    }
}

/// dst = gelu(x) (g nil) or GELU's backward for dy = g, over `0..<count`, split over the threads (`dst`
/// may be `x` or `g`).
func geluMap(_ count: Int, _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<Float>,
             approximate: GELUApproximation) {
    switch (approximate, g == nil) {
    case (.none, true): geluLanes(GELUErfForward.self, count, x, nil, dst)
    case (.none, false): geluLanes(GELUErfBackward.self, count, x, g, dst)
    case (.tanh, true): geluLanes(GELUTanhForward.self, count, x, nil, dst)
    case (.tanh, false): geluLanes(GELUTanhBackward.self, count, x, g, dst)
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
