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

    func testGELUForwardMatchesOracleAcrossTheRange() { forEachKernelBuild(geluForwardMatchesOracleAcrossTheRange) }

    private func geluForwardMatchesOracleAcrossTheRange(_ kernels: ElementwiseKernels) {
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
                XCTAssertLessThanOrEqual(abs(a - e), allowed, "gelu \(form)(\(v)) [\(kernels)]: \(a) vs \(e)")
            }
            let copy = x.copy()
            XCTAssertTrue(geluForward(copy, approximate: form, inPlace: true) === copy)
            XCTAssertEqual(copy.values, fast.values)
        }
    }

    func testGELUBackwardMatchesFiniteDifferences() { forEachKernelBuild(geluBackwardMatchesFiniteDifferences) }

    private func geluBackwardMatchesFiniteDifferences(_ kernels: ElementwiseKernels) {
        var rng = SeededGenerator(seed: 111)
        let x = random64([3, 5, 37], &rng, in: -6...6), r = random64(x.shape, &rng)
        for form in GELUApproximation.allCases {
            let oracle = geluBackward64(x, gradOutput: r, approximate: form)
            checkFiniteDifferences(x, analytic: oracle, samples: 80, "gelu \(form) [\(kernels)] dx") { gelu64($0, approximate: form).dot(r) }
            let dy = r.float()
            let dx = geluBackward(input: x.float(), gradOutput: dy, approximate: form, inPlace: false)
            assertGradClose(dx, oracle, tolerance: 1e-6, "gelu \(form) [\(kernels)] fast dx")
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
                                         "gelu' \(form)(\(v)) [\(kernels)]: \(a) vs \(e)")
            }
        }
    }

    // MARK: Attention

    private struct AttentionCase {
        var sequences: Int, length: Int, keyLength: Int, heads: Int, headDim: Int, blockRows: Int
        var shape: AttentionShape { AttentionShape(sequences: sequences, length: length, keyLength: keyLength, heads: heads, headDim: headDim) }
        var what: String { "attention S \(sequences) L \(length) Lk \(keyLength) H \(heads) dh \(headDim) block \(blockRows)" }
    }

    private let attentionCases = [
        AttentionCase(sequences: 2, length: 13, keyLength: 13, heads: 3, headDim: 5, blockRows: 4),   // L % block != 0, dh < 8
        AttentionCase(sequences: 1, length: 70, keyLength: 70, heads: 2, headDim: 16, blockRows: 64), // two blocks of 64
        AttentionCase(sequences: 3, length: 5, keyLength: 9, heads: 2, headDim: 3, blockRows: 2),     // keys longer than queries
        AttentionCase(sequences: 2, length: 1, keyLength: 1, heads: 4, headDim: 9, blockRows: 64),    // one token: P = 1
        AttentionCase(sequences: 1, length: 33, keyLength: 33, heads: 1, headDim: 24, blockRows: 7),
        // The AVX-512 tiles (dh a multiple of 16): a partial key panel (197 = 3 x 64 + 5) and row tiles of 6 with
        // remainders; dh 80 (a 64-column chunk and a 16 one) with keys past one 128-row pass of P V; dh 48 (three vectors).
        AttentionCase(sequences: 1, length: 197, keyLength: 197, heads: 2, headDim: 64, blockRows: 64),
        AttentionCase(sequences: 2, length: 8, keyLength: 131, heads: 1, headDim: 80, blockRows: 256),
        AttentionCase(sequences: 1, length: 20, keyLength: 40, heads: 3, headDim: 48, blockRows: 9),
    ]

    func testTheAttentionTilesRunWhereTheKernelsAreAVX512() {
        forEachKernelBuild { kernels in
            for dh in [16, 48, 64, 80, 128, 256] { XCTAssertEqual(HeadTiles.available(dh: dh), kernels == .avx512, "dh \(dh) [\(kernels)]") }
            for dh in [3, 8, 24, 72, 272] { XCTAssertFalse(HeadTiles.available(dh: dh), "dh \(dh) [\(kernels)]") }
        }
    }

    /// Float-representable random values in [-range, range].
    private func random32(_ shape: [Int], _ rng: inout SeededGenerator, _ range: Double = 1) -> Tensor64 {
        Tensor64(random64(shape, &rng, in: -range...range).float())
    }

    /// The backward's three ways: P recomputed with rowsum(P dP) summed, P recomputed with it from dO . O (the
    /// forward's output given), P kept by the forward.
    private enum BackwardPath: CaseIterable { case recomputed, withOutput, kept }

    /// Runs the strided forward and backward of separate q, k, v (and dO) tensors with `blockRows`.
    private func stridedAttention(_ c: AttentionCase, _ q: FloatTensor, _ k: FloatTensor, _ v: FloatTensor, _ dO: FloatTensor,
                                  path: BackwardPath = .withOutput)
        -> (out: FloatTensor, stats: AttentionStatistics, dq: FloatTensor, dk: FloatTensor, dv: FloatTensor) {
        let out = FloatTensor(uninitialized: q.shape), stats = AttentionStatistics(c.shape, keepProbabilities: path == .kept)
        let dq = FloatTensor(uninitialized: q.shape), dk = FloatTensor(uninitialized: k.shape), dv = FloatTensor(uninitialized: v.shape)
        withExtendedLifetime((q, k, v, dO, out, dq, dk, dv)) {
            attentionForward(c.shape, query: AttentionOperand(q), key: AttentionOperand(k), value: AttentionOperand(v),
                             output: AttentionOperand(out), statistics: stats, blockRows: c.blockRows)
            attentionBackward(c.shape, query: AttentionOperand(q), key: AttentionOperand(k), value: AttentionOperand(v),
                              output: path == .recomputed ? nil : AttentionOperand(out),
                              gradOutput: AttentionOperand(dO), statistics: stats, gradQuery: AttentionOperand(dq),
                              gradKey: AttentionOperand(dk), gradValue: AttentionOperand(dv), blockRows: c.blockRows)
        }
        return (out, stats, dq, dk, dv)
    }

    func testAttentionForwardMatchesOracle() { forEachKernelBuild(attentionForwardMatchesOracle) }

    private func attentionForwardMatchesOracle(_ kernels: ElementwiseKernels) {
        var rng = SeededGenerator(seed: 120)
        for c in attentionCases {
            let w = c.heads * c.headDim
            let q = random32([c.sequences, c.length, w], &rng, 2), k = random32([c.sequences, c.keyLength, w], &rng, 2)
            let v = random32([c.sequences, c.keyLength, w], &rng)
            let truth = attention64(query: q, key: k, value: v, heads: c.heads)
            for threads in [1, 2, 3] {
                withThreads(threads) {
                    let r = stridedAttention(c, q.float(), k.float(), v.float(), FloatTensor(zeros: q.shape))
                    assertGradClose(r.out, truth, tolerance: 1e-6, c.what + " [\(kernels)], \(threads) threads")
                    // Keeping the probabilities changes where the scores live, not the result.
                    let kept = stridedAttention(c, q.float(), k.float(), v.float(), FloatTensor(zeros: q.shape), path: .kept)
                    XCTAssertEqual(kept.out.values, r.out.values, c.what + " [\(kernels)] with kept probabilities")
                }
            }
            // Inference: no statistics. And GEMMs left to OpenBLAS's own threads (items then run one by one).
            let plain = FloatTensor(uninitialized: q.shape)
            let (qf, kf, vf) = (q.float(), k.float(), v.float())
            withExtendedLifetime((qf, kf, vf, plain)) {
                attentionForward(c.shape, query: AttentionOperand(qf), key: AttentionOperand(kf), value: AttentionOperand(vf),
                                 output: AttentionOperand(plain), blockRows: c.blockRows)
            }
            assertGradClose(plain, truth, tolerance: 1e-6, c.what + " [\(kernels)] without statistics")
            let saved = Threading.threads
            Threading.setThreads(2, splitGemms: false)
            let viaBlas = stridedAttention(c, qf, kf, vf, FloatTensor(zeros: q.shape))
            Threading.setThreads(saved)
            assertGradClose(viaBlas.out, truth, tolerance: 1e-6, c.what + " [\(kernels)] on OpenBLAS's threads")
            // The tensor entry point (default block), and the statistics: each row's max of the scaled scores and
            // sum of exp(score - max).
            let (out, stats) = attentionForward(query: q.float(), key: k.float(), value: v.float(), heads: c.heads)
            assertGradClose(out, truth, tolerance: 1e-6, c.what + " [\(kernels)] tensor entry")
            let keptStats = attentionForward(query: q.float(), key: k.float(), value: v.float(), heads: c.heads, keepProbabilities: true).statistics
            XCTAssertNil(stats.probabilities)
            let scale = 1 / Double(c.headDim).squareRoot()
            for s in 0..<c.sequences { for h in 0..<c.heads { for i in 0..<c.length {
                let scores = (0..<c.keyLength).map { j in
                    scale * (0..<c.headDim).reduce(0.0) { acc, d in
                        acc + q.values[(s * c.length + i) * w + h * c.headDim + d] * k.values[(s * c.keyLength + j) * w + h * c.headDim + d]
                    }
                }
                let m = scores.max()!, sum = scores.reduce(0) { $0 + exp($1 - m) }
                let at = (s * c.heads + h) * c.length + i
                XCTAssertEqual(Double(stats.rowMax.pointer[at]), m, accuracy: 1e-5 * max(1, abs(m)), c.what + " [\(kernels)] max")
                XCTAssertEqual(Double(stats.rowSum.pointer[at]), sum, accuracy: 1e-5 * sum, c.what + " [\(kernels)] sum")
                // Kept probabilities: exp(score - max), unnormalised.
                for j in 0..<c.keyLength {
                    XCTAssertEqual(Double(keptStats.probabilities!.pointer[at * c.keyLength + j]), exp(scores[j] - m),
                                   accuracy: 1e-5, c.what + " [\(kernels)] kept probability")
                }
            } } }
        }
    }

    func testAttentionBackwardMatchesFiniteDifferences() {
        for (n, c) in attentionCases.enumerated() where c.length * c.keyLength <= 200 {
            var rng = SeededGenerator(seed: 130 + UInt64(n))
            let w = c.heads * c.headDim
            let q = random32([c.sequences, c.length, w], &rng, 2), k = random32([c.sequences, c.keyLength, w], &rng, 2)
            let v = random32([c.sequences, c.keyLength, w], &rng), r = random32(q.shape, &rng)
            let oracle = attentionBackward64(query: q, key: k, value: v, heads: c.heads, gradOutput: r)
            checkFiniteDifferences(q, analytic: oracle.query, samples: 40, c.what + " dq") {
                attention64(query: $0, key: k, value: v, heads: c.heads).dot(r)
            }
            checkFiniteDifferences(k, analytic: oracle.key, samples: 40, c.what + " dk") {
                attention64(query: q, key: $0, value: v, heads: c.heads).dot(r)
            }
            checkFiniteDifferences(v, analytic: oracle.value, samples: 40, c.what + " dv") {
                attention64(query: q, key: k, value: $0, heads: c.heads).dot(r)
            }
        }
    }

    func testAttentionBackwardMatchesOracle() { forEachKernelBuild(attentionBackwardMatchesOracle) }

    private func attentionBackwardMatchesOracle(_ kernels: ElementwiseKernels) {
        // 1 to 3 threads: with 2 and 3 the parts' boundaries cut (sequence, head) pairs, whose dK and dV
        // two threads then add.
        var rng = SeededGenerator(seed: 140)
        for c in attentionCases {
            let w = c.heads * c.headDim
            let q = random32([c.sequences, c.length, w], &rng, 2), k = random32([c.sequences, c.keyLength, w], &rng, 2)
            let v = random32([c.sequences, c.keyLength, w], &rng), r = random32(q.shape, &rng)
            let oracle = attentionBackward64(query: q, key: k, value: v, heads: c.heads, gradOutput: r)
            for threads in [1, 2, 3] {
                for path in BackwardPath.allCases {
                    withThreads(threads) {
                        let got = stridedAttention(c, q.float(), k.float(), v.float(), r.float(), path: path)
                        let what = c.what + " [\(kernels)], \(threads) threads, P \(path)"
                        if c.keyLength == 1 {
                            // One key: P = 1 and dQ = dK = 0 exactly; dP - rowsum(P dP) leaves float roundings of
                            // dO . V (unit-sized here), which a scale relative to the zero gradient would magnify.
                            XCTAssertLessThan((got.dq.values + got.dk.values).map(abs).max()!, 1e-6, what + " dq, dk")
                        } else {
                            assertGradClose(got.dq, oracle.query, tolerance: 1e-5, what + " dq")
                            assertGradClose(got.dk, oracle.key, tolerance: 1e-5, what + " dk")
                        }
                        assertGradClose(got.dv, oracle.value, tolerance: 1e-5, what + " dv")
                    }
                }
            }
            // The tensor entry point; and accumulating onto non-zero gradients.
            let (_, stats) = attentionForward(query: q.float(), key: k.float(), value: v.float(), heads: c.heads)
            let g = attentionBackward(query: q.float(), key: k.float(), value: v.float(), statistics: stats,
                                      gradOutput: r.float(), heads: c.heads)
            assertGradClose(g.query, oracle.query, tolerance: 1e-5, c.what + " [\(kernels)] tensor entry dq")
            assertGradClose(g.key, oracle.key, tolerance: 1e-5, c.what + " [\(kernels)] tensor entry dk")
            assertGradClose(g.value, oracle.value, tolerance: 1e-5, c.what + " [\(kernels)] tensor entry dv")
            withThreads(3) {
                let (qf, kf, vf, rf) = (q.float(), k.float(), v.float(), r.float())
                let dq = FloatTensor(shape: q.shape, repeating: 0.5), dk = FloatTensor(shape: k.shape, repeating: -1)
                let dv = FloatTensor(shape: v.shape, repeating: 2)
                withExtendedLifetime((qf, kf, vf, rf, dq, dk, dv)) {
                    attentionBackward(c.shape, query: AttentionOperand(qf), key: AttentionOperand(kf), value: AttentionOperand(vf),
                                      gradOutput: AttentionOperand(rf), statistics: stats, gradQuery: AttentionOperand(dq),
                                      gradKey: AttentionOperand(dk), gradValue: AttentionOperand(dv), accumulate: true,
                                      blockRows: c.blockRows)
                }
                assertGradClose(dq, shifted(oracle.query, 0.5), tolerance: 1e-5, c.what + " [\(kernels)] accumulated dq")
                assertGradClose(dk, shifted(oracle.key, -1), tolerance: 1e-5, c.what + " [\(kernels)] accumulated dk")
                assertGradClose(dv, shifted(oracle.value, 2), tolerance: 1e-5, c.what + " [\(kernels)] accumulated dv")
            }
        }
    }

    func testFusedQKVAttentionMatchesSeparateOracle() { forEachKernelBuild(fusedQKVAttentionMatchesSeparateOracle) }

    private func fusedQKVAttentionMatchesSeparateOracle(_ kernels: ElementwiseKernels) {
        // TimeSformer's qkv linear output [S, L, 3 H dh]: columns (q heads, k heads, v heads); dqkv in the same layout.
        var rng = SeededGenerator(seed: 150)
        for (s, l, heads, dh) in [(2, 11, 3, 5), (1, 70, 2, 8)] {
            let w = heads * dh
            let qkv = random32([s, l, 3 * w], &rng, 2), r = random32([s, l, w], &rng)
            func part(_ i: Int) -> Tensor64 {
                var values: [Double] = []
                for row in 0..<(s * l) {
                    let start = row * 3 * w + i * w
                    values += qkv.values[start..<(start + w)]
                }
                return Tensor64(shape: [s, l, w], values: values)
            }
            let (q, k, v) = (part(0), part(1), part(2))
            let what = "fused qkv S \(s) L \(l) H \(heads) dh \(dh) [\(kernels)]"
            let (out, stats) = fusedAttentionForward(qkv: qkv.float(), heads: heads)
            assertGradClose(out, attention64(query: q, key: k, value: v, heads: heads), tolerance: 1e-6, what)
            let oracle = attentionBackward64(query: q, key: k, value: v, heads: heads, gradOutput: r)
            let dqkv = fusedAttentionBackward(qkv: qkv.float(), statistics: stats, gradOutput: r.float(), heads: heads)
            let (keptOut, kept) = fusedAttentionForward(qkv: qkv.float(), heads: heads, keepProbabilities: true)
            let dqkvKept = fusedAttentionBackward(qkv: qkv.float(), output: keptOut, statistics: kept, gradOutput: r.float(), heads: heads)
            var fused = Tensor64(zeros: qkv.shape)
            for row in 0..<(s * l) {
                for (i, g) in [oracle.query, oracle.key, oracle.value].enumerated() {
                    for c in 0..<w { fused.values[row * 3 * w + i * w + c] = g.values[row * w + c] }
                }
            }
            assertGradClose(dqkv, fused, tolerance: 1e-5, what + " dqkv")
            assertGradClose(dqkvKept, fused, tolerance: 1e-5, what + " dqkv, output given, probabilities kept")
        }
    }

    func testTemporalAttentionRunsOnTheTokenLayoutInPlace() { forEachKernelBuild(temporalAttentionRunsOnTheTokenLayoutInPlace) }

    private func temporalAttentionRunsOnTheTokenLayoutInPlace(_ kernels: ElementwiseKernels) {
        // TimeSformer's temporal attention: tokens [T, P, C] of one clip (frame-major), sequences = the P patches,
        // each over its T frames: rowStride P C, sequenceStride C. Compared with the oracle on the gathered
        // [P, T, C] tensors; the gradients land in [T, P, C] buffers too.
        var rng = SeededGenerator(seed: 160)
        let (t, p, heads, dh) = (8, 6, 2, 4)
        let w = heads * dh
        let q = random32([t, p, w], &rng, 2), k = random32([t, p, w], &rng, 2), v = random32([t, p, w], &rng), r = random32([t, p, w], &rng)
        func gathered(_ x: Tensor64) -> Tensor64 {
            var values: [Double] = []
            for pi in 0..<p {
                for ti in 0..<t {
                    let start = (ti * p + pi) * w
                    values += x.values[start..<(start + w)]
                }
            }
            return Tensor64(shape: [p, t, w], values: values)
        }
        let truth = attention64(query: gathered(q), key: gathered(k), value: gathered(v), heads: heads)
        let oracle = attentionBackward64(query: gathered(q), key: gathered(k), value: gathered(v), heads: heads, gradOutput: gathered(r))
        let shape = AttentionShape(sequences: p, length: t, heads: heads, headDim: dh)
        let (qf, kf, vf, rf) = (q.float(), k.float(), v.float(), r.float())
        let out = FloatTensor(zeros: [t, p, w]), stats = AttentionStatistics(shape)
        let dq = FloatTensor(zeros: [t, p, w]), dk = FloatTensor(zeros: [t, p, w]), dv = FloatTensor(zeros: [t, p, w])
        func op(_ x: FloatTensor) -> AttentionOperand { AttentionOperand(base: x.pointer, rowStride: p * w, sequenceStride: w) }
        withThreads(2) {
            withExtendedLifetime((qf, kf, vf, rf, out, dq, dk, dv)) {
                attentionForward(shape, query: op(qf), key: op(kf), value: op(vf), output: op(out), statistics: stats, blockRows: 3)
                attentionBackward(shape, query: op(qf), key: op(kf), value: op(vf), gradOutput: op(rf), statistics: stats,
                                  gradQuery: op(dq), gradKey: op(dk), gradValue: op(dv), blockRows: 3)
            }
        }
        // The results gathered to [P, T, C] (a permutation, exact) for the comparison.
        assertGradClose(gathered(Tensor64(out)).float(), truth, tolerance: 1e-6, "temporal [\(kernels)] output")
        assertGradClose(gathered(Tensor64(dq)).float(), oracle.query, tolerance: 1e-5, "temporal [\(kernels)] dq")
        assertGradClose(gathered(Tensor64(dk)).float(), oracle.key, tolerance: 1e-5, "temporal [\(kernels)] dk")
        assertGradClose(gathered(Tensor64(dv)).float(), oracle.value, tolerance: 1e-5, "temporal [\(kernels)] dv")
    }

    func testAttentionWithLargeScoresStaysFinite() { forEachKernelBuild(attentionWithLargeScoresStaysFinite) }

    private func attentionWithLargeScoresStaysFinite(_ kernels: ElementwiseKernels) {
        // Scores in the thousands: the max-subtracted softmax stays finite and one-hot where one key dominates.
        var rng = SeededGenerator(seed: 170)
        let c = AttentionCase(sequences: 1, length: 9, keyLength: 9, heads: 2, headDim: 8, blockRows: 4)
        let q = random32([1, 9, 16], &rng, 30), k = random32([1, 9, 16], &rng, 30), v = random32([1, 9, 16], &rng)
        let r = random32([1, 9, 16], &rng)
        let got = stridedAttention(c, q.float(), k.float(), v.float(), r.float())
        XCTAssertTrue((got.out.values + got.dq.values + got.dk.values + got.dv.values).allSatisfy { $0.isFinite })
        // Scores of a few hundred carry a few hundred ulp of their float rounding into exp(score - max), as in
        // PyTorch float32: the tolerance is that, not the 1e-6 of unit-sized scores.
        assertGradClose(got.out, attention64(query: q, key: k, value: v, heads: 2), tolerance: 1e-4, "large scores [\(kernels)] output")
        let oracle = attentionBackward64(query: q, key: k, value: v, heads: 2, gradOutput: r)
        assertGradClose(got.dv, oracle.value, tolerance: 1e-4, "large scores [\(kernels)] dv")
    }

    // MARK: Patch embedding

    /// (input [N, C, T, H, W], patch, D): VideoMAE's tubelet cut down, extents the patch does not divide,
    /// TimeSformer's per-frame 2-D patches (t = 1).
    private let patchCases: [([Int], Size3, Int)] = [
        ([2, 3, 4, 8, 8], Size3(2, 4, 4), 5), ([1, 2, 5, 9, 7], Size3(2, 4, 3), 4), ([2, 3, 3, 8, 8], Size3(1, 4, 4), 6),
        ([1, 3, 2, 6, 6], Size3(2, 3, 3), 17),
    ]

    func testPatchEmbedOracleAgreesWithConvOracle() {
        var rng = SeededGenerator(seed: 200)
        for (shape, patch, d) in patchCases {
            let x = random64(shape, &rng), w = random64([d, shape[1], patch.t, patch.h, patch.w], &rng), b = random64([d], &rng)
            let conv = conv3dForward64(x, weight: w, bias: b, config: Conv3dConfig(stride: patch))
            let tokens = conv.shape[2] * conv.shape[3] * conv.shape[4]
            // conv [N, D, T', H', W'] -> flatten(2).transpose(1, 2) -> [N, tokens, D].
            var expected = Tensor64(zeros: [shape[0], tokens, d])
            for n in 0..<shape[0] { for o in 0..<d { for i in 0..<tokens {
                expected.values[(n * tokens + i) * d + o] = conv.values[(n * d + o) * tokens + i]
            } } }
            let got = patchEmbed64(x, weight: w, bias: b)
            XCTAssertEqual(got.shape, expected.shape)
            XCTAssertLessThan(zip(got.values, expected.values).map { abs($0 - $1) }.max() ?? 1, 1e-12, "\(shape) patch \(patch)")
        }
    }

    func testPatchifyOrdersTokensAndRoundTrips() {
        var rng = SeededGenerator(seed: 201)
        for (shape, patch, _) in patchCases {
            let x = randomTensor(shape, &rng)
            let timeMajor = patchify(x, patch: patch), spaceMajor = patchify(x, patch: patch, order: .spaceMajor)
            let geo = PatchGeometry(input: shape, patch: patch, order: .timeMajor)
            let g = geo.grid, k = geo.features
            XCTAssertEqual(timeMajor.shape, [shape[0], g.product, shape[1] * patch.product])
            // Row (n, gt, gh, gw) of the time-major order is row (n, gh, gw, gt) of the space-major one; its
            // columns read the patch as the weight [D, C, t, ph, pw] flattens.
            for n in 0..<shape[0] { for gt in 0..<g.t { for gh in 0..<g.h { for gw in 0..<g.w {
                let a = ((n * g.t + gt) * g.h + gh) * g.w + gw, b = ((n * g.h + gh) * g.w + gw) * g.t + gt
                for c in 0..<shape[1] { for kt in 0..<patch.t { for kh in 0..<patch.h { for kw in 0..<patch.w {
                    let col = ((c * patch.t + kt) * patch.h + kh) * patch.w + kw
                    let v = x[n, c, gt * patch.t + kt, gh * patch.h + kh, gw * patch.w + kw]
                    XCTAssertEqual(timeMajor.pointer[a * k + col], v)
                    XCTAssertEqual(spaceMajor.pointer[b * k + col], v)
                } } } }
            } } } }
            // The scatter inverts the gather; what no patch covers comes back zero.
            for (rows, order) in [(timeMajor, PatchTokenOrder.timeMajor), (spaceMajor, .spaceMajor)] {
                let back = unpatchify(rows, inputShape: shape, patch: patch, order: order)
                let s = Shape5D(shape)
                for n in 0..<s.n { for c in 0..<s.c { for t in 0..<s.t { for h in 0..<s.h { for w in 0..<s.w {
                    let covered = t < g.t * patch.t && h < g.h * patch.h && w < g.w * patch.w
                    XCTAssertEqual(back[n, c, t, h, w], covered ? x[n, c, t, h, w] : 0, "\(shape) \(order) at \([n, c, t, h, w])")
                } } } } }
            }
        }
    }

    func testPatchEmbedForwardMatchesOracle() {
        var rng = SeededGenerator(seed: 202)
        for (shape, patch, d) in patchCases {
            let x = random64(shape, &rng), w = random64([d, shape[1], patch.t, patch.h, patch.w], &rng), b = random64([d], &rng)
            for order in PatchTokenOrder.allCases {
                let what = "patch embed \(shape) patch \(patch) D \(d) \(order)"
                for threads in [1, 3] {
                    withThreads(threads) {
                        assertGradClose(patchEmbedForward(x.float(), weight: w.float(), bias: b.float(), order: order),
                                        patchEmbed64(x, weight: w, bias: b, order: order), tolerance: 1e-6, what + ", \(threads) threads")
                    }
                }
                assertGradClose(patchEmbedForward(x.float(), weight: w.float(), order: order),
                                patchEmbed64(x, weight: w, bias: nil, order: order), tolerance: 1e-6, what + " no bias")
            }
        }
    }

    func testPatchEmbedBackwardMatchesFiniteDifferences() {
        var rng = SeededGenerator(seed: 203)
        for (shape, patch, d) in patchCases {
            let x = random64(shape, &rng), w = random64([d, shape[1], patch.t, patch.h, patch.w], &rng), b = random64([d], &rng)
            for order in PatchTokenOrder.allCases {
                let what = "patch embed \(shape) patch \(patch) D \(d) \(order)"
                let r = random64(patchEmbed64(x, weight: w, bias: b, order: order).shape, &rng)
                let oracle = patchEmbedBackward64(x, weight: w, gradOutput: r, order: order)
                checkFiniteDifferences(x, analytic: oracle.input, samples: 30, what + " dx") {
                    patchEmbed64($0, weight: w, bias: b, order: order).dot(r)
                }
                checkFiniteDifferences(w, analytic: oracle.weight, samples: 30, what + " dw") {
                    patchEmbed64(x, weight: $0, bias: b, order: order).dot(r)
                }
                checkFiniteDifferences(b, analytic: oracle.bias, what + " db") {
                    patchEmbed64(x, weight: w, bias: $0, order: order).dot(r)
                }
                // Fast, accumulating onto non-zero parameter gradients.
                let dw = FloatTensor(shape: w.shape, repeating: 0.25), db = FloatTensor(shape: [d], repeating: -0.5)
                let dx = patchEmbedBackward(x.float(), weight: w.float(), gradOutput: r.float(), gradWeight: dw, gradBias: db, order: order)
                assertGradClose(dx, oracle.input, tolerance: 1e-6, what + " fast dx")
                assertGradClose(dw, shifted(oracle.weight, 0.25), tolerance: 1e-6, what + " fast dw")
                assertGradClose(db, shifted(oracle.bias, -0.5), tolerance: 1e-6, what + " fast db")
                XCTAssertNil(patchEmbedBackward(x.float(), weight: w.float(), gradOutput: r.float(), gradBias: FloatTensor(zeros: [d]),
                                                order: order, needInputGradient: false))
            }
        }
    }
}
