// The transformer ops (VideoMAE, TimeSformer) against their float64 oracles: LayerNorm, GELU in both
// forms, multi-head softmax attention on separate, fused-qkv and TimeSformer-temporal (strided) layouts,
// and the tubelet / patch embedding. Each oracle's backward is checked by central finite differences
// of its forward (OpBackwardTests' helpers), the fast float32 kernels against the oracles, on odd
// shapes: D and dh not multiples of the vector width, L not a multiple of the query block, B > 1,
// H > 1, keys longer than queries, inputs not divisible by the patch, 1 to 3 threads.

import XCTest
@testable import Networks

final class TransformerOpsTests: XCTestCase {
    /// Runs `body` with `n` threads, restoring the count after.
    private func withThreads(_ n: Int, _ body: () throws -> Void) rethrows {
        let saved = Threading.threads
        Threading.setThreads(n)
        defer { Threading.setThreads(saved) }
        try body()
    }

    private func shifted(_ t: Tensor64, _ v: Double) -> Tensor64 { Tensor64(shape: t.shape, values: t.values.map { $0 + v }) }

    // MARK: LayerNorm

    func testLayerNormForwardMatchesOracle() {
        var rng = SeededGenerator(seed: 100)
        // (shape, eps, affine, offset): D below the vector width, odd D, ViT-S/B widths, a row mean far from
        // zero beside its spread (a residual stream: float x - mean would lose 1e-3 here).
        let cases: [([Int], Double, Bool, Double)] = [
            ([3, 7], 1e-12, true, 0), ([2, 5, 37], 1e-6, true, 0.5), ([4, 384], 1e-12, false, 0),
            ([2, 3, 768], 1e-6, true, 0), ([1, 1024], 1e-12, true, 0), ([6, 40], 1e-6, true, 300),
        ]
        for (shape, eps, affine, offset) in cases {
            let d = shape.last!
            var x = Tensor64(random64(shape, &rng, in: -2...2).float())
            if offset != 0 { x = Tensor64(shape: shape, values: x.values.map { Double(Float($0 * 0.01 + offset)) }) }
            let gamma = affine ? random64([d], &rng, in: 0.5...1.5) : nil, beta = affine ? random64([d], &rng) : nil
            let what = "layerNorm \(shape) eps \(eps) affine \(affine) offset \(offset)"
            let truth = layerNorm64(x, gamma: gamma, beta: beta, eps: eps)
            let (y, stats) = layerNormForward(x.float(), gamma: gamma?.float(), beta: beta?.float(), eps: eps)
            assertGradClose(y, truth, tolerance: 1e-6, what)
            // Statistics in double: the oracle's mean and rstd to double rounding.
            let rows = x.count / d
            for r in 0..<rows {
                let row = x.values[(r * d)..<((r + 1) * d)]
                let mean = row.reduce(0, +) / Double(d)
                let rstd = 1 / (row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(d) + eps).squareRoot()
                XCTAssertEqual(stats!.means[r], mean, accuracy: 1e-12 * max(1, abs(mean)), what + " mean \(r)")
                XCTAssertEqual(stats!.rstds[r], rstd, accuracy: 1e-12 * rstd, what + " rstd \(r)")
            }
            // In place, and without statistics, the same values.
            let inPlace = x.float()
            let (same, none) = layerNormForward(inPlace, gamma: gamma?.float(), beta: beta?.float(), eps: eps,
                                                saveStatistics: false, into: inPlace)
            XCTAssertTrue(same === inPlace)
            XCTAssertNil(none)
            XCTAssertEqual(same.values, y.values, what + " in place")
        }
    }

    func testLayerNormConstantRowGivesBeta() {
        // var = 0: y = beta exactly, rstd = eps^-1/2, no NaN.
        let x = FloatTensor(shape: [2, 9], repeating: 3.25)
        let beta = FloatTensor(shape: [9], values: (0..<9).map { Float($0) })
        let (y, stats) = layerNormForward(x, gamma: FloatTensor(shape: [9], repeating: 2), beta: beta, eps: 1e-6)
        XCTAssertEqual(y.values, beta.values + beta.values)
        XCTAssertEqual(stats!.rstds[0], 1000, accuracy: 1e-9)
    }

    func testLayerNormBackwardMatchesFiniteDifferences() {
        var rng = SeededGenerator(seed: 101)
        for (shape, eps) in [([3, 7], 1e-12), ([2, 3, 13], 1e-6), ([4, 40], 1e-5)] {
            let d = shape.last!
            let x = random64(shape, &rng, in: -2...2), gamma = random64([d], &rng, in: 0.5...1.5)
            let beta = random64([d], &rng), r = random64(shape, &rng)
            let what = "layerNorm \(shape) eps \(eps)"
            let oracle = layerNormBackward64(x, gamma: gamma, eps: eps, gradOutput: r)
            checkFiniteDifferences(x, analytic: oracle.input, samples: 40, what + " dx") {
                layerNorm64($0, gamma: gamma, beta: beta, eps: eps).dot(r)
            }
            checkFiniteDifferences(gamma, analytic: oracle.gamma, what + " dgamma") {
                layerNorm64(x, gamma: $0, beta: beta, eps: eps).dot(r)
            }
            checkFiniteDifferences(beta, analytic: oracle.beta, what + " dbeta") {
                layerNorm64(x, gamma: gamma, beta: $0, eps: eps).dot(r)
            }
            // Fast, accumulating onto non-zero parameter gradients, with 1 and 3 threads.
            for threads in [1, 3] {
                withThreads(threads) {
                    let (_, stats) = layerNormForward(x.float(), gamma: gamma.float(), beta: beta.float(), eps: eps)
                    let dg = FloatTensor(shape: [d], repeating: 0.5), db = FloatTensor(shape: [d], repeating: -1)
                    let dx = layerNormBackward(x.float(), gamma: gamma.float(), statistics: stats, eps: eps, gradOutput: r.float(),
                                               gradGamma: dg, gradBeta: db)
                    assertGradClose(dx, oracle.input, tolerance: 1e-6, what + " fast dx, \(threads) threads")
                    assertGradClose(dg, shifted(oracle.gamma, 0.5), tolerance: 1e-6, what + " fast dgamma")
                    assertGradClose(db, shifted(oracle.beta, -1), tolerance: 1e-6, what + " fast dbeta")
                }
            }
            // No affine parameters, statistics recomputed, input gradient only.
            let plain = layerNormBackward64(x, gamma: nil, eps: eps, gradOutput: r)
            let dx = layerNormBackward(x.float(), gamma: nil, statistics: nil, eps: eps, gradOutput: r.float())
            assertGradClose(dx, plain.input, tolerance: 1e-6, what + " fast dx without gamma")
            // Parameters only.
            let dg = FloatTensor(zeros: [d])
            XCTAssertNil(layerNormBackward(x.float(), gamma: gamma.float(), statistics: nil, eps: eps, gradOutput: r.float(),
                                           gradGamma: dg, needInputGradient: false))
            assertGradClose(dg, oracle.gamma, tolerance: 1e-6, what + " fast dgamma alone")
        }
    }

    // MARK: GELU

    /// 1001 values over [-15, 15] plus points at 0, the clamp and the tails.
    private func geluInputs() -> FloatTensor {
        var rng = SeededGenerator(seed: 110)
        var values = (0..<1001).map { _ in Float.random(in: -15...15, using: &rng) }
        values += (0..<200).map { _ in Float.random(in: -3...3, using: &rng) }
        values += [0, -0, 1e-20, -1e-20, 1e-4, -1e-4, 1, -1, -0.7517916, 5.5, -5.5, -9, -13, -13.1, 13.5, 40, -40, 1e4]
        return FloatTensor(shape: [values.count], values: values)
    }

    func testGELUForwardMatchesOracleAcrossTheRange() {
        let x = geluInputs()
        let eps = Double(Float.ulpOfOne)
        for form in GELUApproximation.allCases {
            let truth = gelu64(Tensor64(x), approximate: form)
            let fast = geluForward(x, approximate: form)
            for i in 0..<x.count {
                let e = truth.values[i], a = Double(fast.pointer[i]), v = Double(x.pointer[i])
                // erf form: a few ulp of the value, tails included (below 1e-35, float's smallest normals, aside). tanh form: the
                // float argument of tanh, 2u ~ 1.6 x^3 / 14, carries ~|2u| ulp into exp(2u) in the left tail.
                let u = 0.797_884_56 * (v + 0.044715 * v * v * v)
                let allowed = form == .none ? 6 * eps * abs(e) + 1e-35 : 6 * eps * abs(e) * max(1, abs(2 * u)) + 1e-35
                XCTAssertLessThanOrEqual(abs(a - e), allowed, "gelu \(form)(\(v)): \(a) vs \(e)")
            }
            let copy = x.copy()
            XCTAssertTrue(geluForward(copy, approximate: form, inPlace: true) === copy)
            XCTAssertEqual(copy.values, fast.values)
        }
    }

    func testGELUBackwardMatchesFiniteDifferences() {
        var rng = SeededGenerator(seed: 111)
        let x = random64([3, 5, 37], &rng, in: -6...6), r = random64(x.shape, &rng)
        for form in GELUApproximation.allCases {
            let oracle = geluBackward64(x, gradOutput: r, approximate: form)
            checkFiniteDifferences(x, analytic: oracle, samples: 80, "gelu \(form) dx") { gelu64($0, approximate: form).dot(r) }
            let dy = r.float()
            let dx = geluBackward(input: x.float(), gradOutput: dy, approximate: form, inPlace: false)
            assertGradClose(dx, oracle, tolerance: 1e-6, "gelu \(form) fast dx")
            XCTAssertTrue(geluBackward(input: x.float(), gradOutput: dy, approximate: form) === dy)
            XCTAssertEqual(dy.values, dx.values)
        }
        // Element-wise across the whole range, tails included: within a few ulp of the derivative's two terms'
        // magnitudes (they cancel where gelu' crosses zero, near x = -0.75, in float and in PyTorch alike).
        let wide = geluInputs(), ones = FloatTensor(shape: wide.shape, repeating: 1)
        for form in GELUApproximation.allCases {
            let truth = geluBackward64(Tensor64(wide), gradOutput: Tensor64(ones), approximate: form)
            let fast = geluBackward(input: wide, gradOutput: ones, approximate: form, inPlace: false)
            for i in 0..<wide.count {
                let e = truth.values[i], a = Double(fast.pointer[i]), v = Double(wide.pointer[i])
                let terms: Double
                switch form {
                case .none: terms = 0.5 * erfc(-v / 2.0.squareRoot()) + abs(v) * exp(-0.5 * v * v) / (2 * Double.pi).squareRoot()
                case .tanh:
                    let c = (2 / Double.pi).squareRoot(), u = c * (v + 0.044715 * v * v * v)
                    let (s, sm) = (1 / (1 + exp(-2 * u)), 1 / (1 + exp(2 * u)))
                    terms = s + abs(2 * v * s * sm * c * (1 + 3 * 0.044715 * v * v)) * max(1, abs(2 * u))
                }
                XCTAssertLessThanOrEqual(abs(a - e), 8 * Double(Float.ulpOfOne) * terms + 1e-35,
                                         "gelu' \(form)(\(v)): \(a) vs \(e)")
            }
        }
    }
}
