// X3D's ops against their float64 oracles: channel-wise Conv3d (through conv3dForward /
// conv3dBackward's dispatch and the direct entry points), Swish and squeeze-excitation. The
// oracles' backward is checked by central finite differences of their forward (OpBackwardTests'
// helpers), the fast float32 kernels against the oracles, on odd shapes: stride 2, T = 1,
// widths that are not multiples of the vector width, batch > 1, dead ReLU units.

import XCTest
@testable import Networks

final class X3DOpsTests: XCTestCase {
    // MARK: Channel-wise Conv3d

    private struct ConvCase {
        var input: [Int]
        var kernel: Size3
        var stride: Size3 = 1
        var padding: Size3 = 0
        var dilation: Size3 = 1
        var config: Conv3dConfig { Conv3dConfig(stride: stride, padding: padding, dilation: dilation, groups: input[1]) }
        var weightShape: [Int] { [input[1], 1, kernel.t, kernel.h, kernel.w] }
    }

    private let convCases = [
        ConvCase(input: [2, 5, 4, 9, 11], kernel: 3, padding: 1),                                 // X3D 3x3x3, batch 2
        ConvCase(input: [1, 6, 5, 13, 10], kernel: 3, stride: Size3(1, 2, 2), padding: 1),        // X3D's strided 3x3x3
        ConvCase(input: [1, 4, 1, 7, 7], kernel: 3, padding: 1),                                  // T = 1
        ConvCase(input: [2, 3, 6, 5, 19], kernel: Size3(5, 1, 1), padding: Size3(2, 0, 0)),       // the stem's 5x1x1
        ConvCase(input: [1, 3, 7, 8, 9], kernel: 3, stride: Size3(2, 2, 1), padding: Size3(1, 1, 0),
                 dilation: Size3(1, 2, 1)),                                                        // odd strides, dilation
        ConvCase(input: [1, 2, 3, 17, 40], kernel: 3, stride: 2, padding: 1),                     // rows wider than 32 lanes
        ConvCase(input: [1, 3, 2, 6, 5], kernel: Size3(1, 5, 3), stride: Size3(1, 3, 2), padding: Size3(0, 2, 1)),
    ]

    func testChannelwiseOracleAgreesWithGeneralConvOracle() {
        var rng = SeededGenerator(seed: 11)
        for cs in convCases {
            let x = random64(cs.input, &rng), w = random64(cs.weightShape, &rng), b = random64([cs.input[1]], &rng)
            let direct = channelwiseConv3dForward64(x, weight: w, bias: b, config: cs.config)
            let general = conv3dForward64(x, weight: w, bias: b, config: cs.config)
            XCTAssertEqual(direct.shape, general.shape)
            let worst = zip(direct.values, general.values).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-12, "\(cs.input) kernel \(cs.kernel) stride \(cs.stride)")
        }
    }

    func testChannelwiseForwardMatchesOracle() {
        var rng = SeededGenerator(seed: 12)
        for cs in convCases {
            let x = random64(cs.input, &rng), w = random64(cs.weightShape, &rng), b = random64([cs.input[1]], &rng)
            let what = "input \(cs.input) kernel \(cs.kernel) stride \(cs.stride) padding \(cs.padding) dilation \(cs.dilation)"
            let oracle = channelwiseConv3dForward64(x, weight: w, bias: b, config: cs.config)
            // Through Conv3d's dispatch (what the executors call), and the direct entry point.
            let viaConv = conv3dForward(x.float(), weight: w.float(), bias: b.float(), config: cs.config)
            assertGradClose(viaConv, oracle, tolerance: 1e-6, what + " conv3dForward")
            let direct = channelwiseConv3dForward(x.float(), weight: w.float(), config: cs.config, workspace: Workspace())
            assertGradClose(direct, channelwiseConv3dForward64(x, weight: w, config: cs.config), tolerance: 1e-6, what + " no bias")
        }
    }

    func testChannelwiseForwardAtX3DShapesMatchesGeneralPath() {
        // Widths 56/28/14/7 as in X3D-M's stages (channels and frames cut), and a 112-wide strided input.
        var rng = SeededGenerator(seed: 13)
        for (shape, stride) in [([1, 3, 2, 56, 56], 1), ([1, 2, 3, 28, 28], 1), ([2, 4, 2, 14, 14], 1),
                                ([1, 5, 3, 7, 7], 1), ([1, 2, 2, 112, 112], 2)] {
            let config = Conv3dConfig(stride: Size3(1, stride, stride), padding: 1, groups: shape[1])
            let x = randomTensor(shape, &rng), w = randomTensor([shape[1], 1, 3, 3, 3], &rng)
            let fast = conv3dForward(x, weight: w, config: config)
            assertClose(fast, conv3dForwardNaive(x, weight: w, config: config), atol: 2e-6, rtol: 1e-5, "\(shape) stride \(stride)")
        }
    }

    func testChannelwiseFusedEpiloguesMatchConvThenOp() { forEachKernelBuild(channelwiseFusedEpiloguesMatchConvThenOp) }

    private func channelwiseFusedEpiloguesMatchConvThenOp(_ kernels: ElementwiseKernels) {
        // What the eval executor fuses into the conv's output pass: ReLU, Swish, or the (n, c) sums that
        // squeeze-excitation averages; many planes, so the threads share them out (two threads at least).
        let saved = Threading.threads
        Threading.setThreads(max(2, saved))
        defer { Threading.setThreads(saved) }
        var rng = SeededGenerator(seed: 14)
        for cs in [convCases[0], convCases[1], convCases[3], ConvCase(input: [1, 37, 3, 7, 7], kernel: 3, padding: 1)] {
            let x = random64(cs.input, &rng), w = random64(cs.weightShape, &rng), b = random64([cs.input[1]], &rng)
            let what = "input \(cs.input) kernel \(cs.kernel) stride \(cs.stride) [\(kernels)]"
            let plain = channelwiseConv3dForward(x.float(), weight: w.float(), bias: b.float(), config: cs.config)
            let geo = Conv3dGeometry(input: cs.input, weight: cs.weightShape, bias: [cs.input[1]], config: cs.config)
            func fused(_ epilogue: ChannelwiseEpilogue) -> FloatTensor {
                let out = FloatTensor(uninitialized: geo.outputShape.array)
                let (xf, wf, bf) = (x.float(), w.float(), b.float())
                withExtendedLifetime((xf, wf, bf)) {
                    channelwiseForward(geo, xf.pointer, wf.pointer, UnsafePointer(bf.pointer), out.pointer,
                                       workspace: Workspace(), epilogue: epilogue)
                }
                return out
            }
            XCTAssertEqual(fused(.none).values, plain.values, what + " none")
            XCTAssertEqual(fused(.relu).values, plain.values.map { max($0, 0) }, what + " relu")
            assertClose(fused(.swish), swishNaive(plain), atol: 1e-6, rtol: 1e-5, what + " swish")
            let sums = FloatTensor(zeros: [geo.input.n * geo.input.c])
            let out = withExtendedLifetime(sums) { fused(.sums(sums.pointer)) }
            XCTAssertEqual(out.values, plain.values, what + " sums' output")
            let plane = geo.positions
            for nc in 0..<sums.count {
                let expected = plain.values[(nc * plane)..<((nc + 1) * plane)].reduce(0.0) { $0 + Double($1) }
                XCTAssertEqual(Double(sums.pointer[nc]), expected, accuracy: 1e-5 * max(1, abs(expected)), what + " sum \(nc)")
            }
        }
    }

    func testChannelwiseBackwardMatchesFiniteDifferences() {
        for (i, cs) in convCases.enumerated() {
            var rng = SeededGenerator(seed: 20 + UInt64(i))
            let x = random64(cs.input, &rng), w = random64(cs.weightShape, &rng), b = random64([cs.input[1]], &rng)
            let r = random64(Conv3dGeometry(input: cs.input, weight: cs.weightShape, config: cs.config).outputShape.array, &rng)
            let what = "input \(cs.input) kernel \(cs.kernel) stride \(cs.stride) padding \(cs.padding) dilation \(cs.dilation)"
            let oracle = channelwiseConv3dBackward64(x, weight: w, gradOutput: r, config: cs.config)
            checkFiniteDifferences(x, analytic: oracle.input, what + " dx") {
                channelwiseConv3dForward64($0, weight: w, bias: b, config: cs.config).dot(r)
            }
            checkFiniteDifferences(w, analytic: oracle.weight, what + " dw") {
                channelwiseConv3dForward64(x, weight: $0, bias: b, config: cs.config).dot(r)
            }
            checkFiniteDifferences(b, analytic: oracle.bias, what + " db") {
                channelwiseConv3dForward64(x, weight: w, bias: $0, config: cs.config).dot(r)
            }
            // The fast backward through conv3dBackward, accumulating onto non-zero gradients.
            let dx = FloatTensor(shape: cs.input, repeating: 0.5), dw = FloatTensor(shape: w.shape, repeating: -0.25)
            let db = FloatTensor(shape: [cs.input[1]], repeating: 1)
            conv3dBackward(x.float(), weight: w.float(), gradOutput: r.float(), config: cs.config,
                           gradInput: dx, gradWeight: dw, gradBias: db, workspace: Workspace())
            func shifted(_ t: Tensor64, _ v: Double) -> Tensor64 { Tensor64(shape: t.shape, values: t.values.map { $0 + v }) }
            assertGradClose(dx, shifted(oracle.input, 0.5), what + " fast dx")
            assertGradClose(dw, shifted(oracle.weight, -0.25), what + " fast dw")
            assertGradClose(db, shifted(oracle.bias, 1), what + " fast db")
            // Each gradient alone, through the direct entry point.
            let dxOnly = FloatTensor(zeros: cs.input), dwOnly = FloatTensor(zeros: w.shape)
            channelwiseConv3dBackward(x.float(), weight: w.float(), gradOutput: r.float(), config: cs.config, gradInput: dxOnly)
            assertGradClose(dxOnly, oracle.input, what + " fast dx alone")
            channelwiseConv3dBackward(x.float(), weight: w.float(), gradOutput: r.float(), config: cs.config, gradWeight: dwOnly)
            assertGradClose(dwOnly, oracle.weight, what + " fast dw alone")
        }
    }

    func testGroupedButNotChannelwiseConvKeepsItsPath() {
        let geo = Conv3dGeometry(input: [1, 4, 3, 3, 3], weight: [4, 2, 3, 3, 3], config: Conv3dConfig(padding: 1, groups: 2))
        XCTAssertFalse(geo.isChannelwise)
        XCTAssertFalse(Conv3dGeometry(input: [1, 1, 3, 3, 3], weight: [1, 1, 3, 3, 3], config: Conv3dConfig()).isChannelwise)
        XCTAssertFalse(Conv3dGeometry(input: [1, 4, 3, 3, 3], weight: [8, 1, 3, 3, 3], config: Conv3dConfig(groups: 4)).isChannelwise)
        XCTAssertTrue(Conv3dGeometry(input: [1, 4, 3, 3, 3], weight: [4, 1, 3, 3, 3], config: Conv3dConfig(groups: 4)).isChannelwise)
    }

    // MARK: Swish

    func testSwishForwardMatchesOracleAcrossTheRange() { forEachKernelBuild(swishForwardMatchesOracleAcrossTheRange) }

    private func swishForwardMatchesOracleAcrossTheRange(_ kernels: ElementwiseKernels) {
        var rng = SeededGenerator(seed: 30)
        // 1001 values (not a multiple of 8) over [-30, 30], plus exact points around 0 and the clamp.
        var values = (0..<1001).map { _ in Float.random(in: -30...30, using: &rng) }
        values += [0, -0, 1e-20, -1e-20, 1, -1, -1.2785, 87, 88.5, 89, 200, -87.0, -80]
        let x = FloatTensor(shape: [values.count], values: values)
        let truth = swish64(Tensor64(x))
        let fast = swishForward(x)
        for i in 0..<x.count {
            let e = truth.values[i], a = Double(fast.pointer[i])
            XCTAssertLessThanOrEqual(abs(a - e), 4 * Double(Float.ulpOfOne) * abs(e) + 1e-40, "swish(\(values[i])) [\(kernels)]: \(a) vs \(e)")
        }
        assertGradClose(swishNaive(x), truth, tolerance: 1e-7, "swishNaive")
        // In place gives the same and returns its input.
        let copy = x.copy()
        XCTAssertTrue(swishForward(copy, inPlace: true) === copy)
        XCTAssertEqual(copy.values, fast.values)
        // The far negative tail underflows towards zero, as the truth does.
        let tail = swishForward(FloatTensor(shape: [3], values: [-95, -150, -1000]))
        XCTAssertTrue(tail.values.allSatisfy { $0 <= 0 && $0 > -1e-35 }, "\(tail.values)")
    }

    func testSwishBackwardMatchesFiniteDifferences() { forEachKernelBuild(swishBackwardMatchesFiniteDifferences) }

    private func swishBackwardMatchesFiniteDifferences(_ kernels: ElementwiseKernels) {
        var rng = SeededGenerator(seed: 31)
        let x = random64([2, 3, 2, 5, 7], &rng, in: -8...8), r = random64(x.shape, &rng)
        let oracle = swishBackward64(x, gradOutput: r)
        checkFiniteDifferences(x, analytic: oracle, samples: 60, "swish dx") { swish64($0).dot(r) }
        let dy = r.float()
        let dx = swishBackward(input: x.float(), gradOutput: dy, inPlace: false)
        assertGradClose(dx, oracle, tolerance: 1e-6, "swish fast dx [\(kernels)]")
        XCTAssertTrue(swishBackward(input: x.float(), gradOutput: dy) === dy)
        XCTAssertEqual(dy.values, dx.values)
    }

    // MARK: Squeeze-excitation

    private struct SEParams {
        var w1, b1, w2, b2: Tensor64
        init(c: Int, reduced: Int, _ rng: inout SeededGenerator) {
            w1 = random64([reduced, c, 1, 1, 1], &rng)
            b1 = random64([reduced], &rng, in: 0.2...1)
            w2 = random64([c, reduced, 1, 1, 1], &rng)
            b2 = random64([c], &rng)
            b1.values[0] = -50 // a dead hidden unit for every sample
        }
    }

    func testSqueezeExciteForwardMatchesOracle() {
        var rng = SeededGenerator(seed: 40)
        for (shape, reduced) in [([2, 8, 3, 5, 6], 4), ([1, 5, 1, 3, 7], 2), ([3, 16, 2, 7, 9], 8)] {
            let p = SEParams(c: shape[1], reduced: reduced, &rng)
            let x = random64(shape, &rng, in: -1...2)
            let truth = squeezeExcite64(x, fc1Weight: p.w1, fc1Bias: p.b1, fc2Weight: p.w2, fc2Bias: p.b2)
            let (y, saved) = squeezeExciteForward(x.float(), fc1Weight: p.w1.float(), fc1Bias: p.b1.float(),
                                                  fc2Weight: p.w2.float(), fc2Bias: p.b2.float())
            assertGradClose(y, truth, tolerance: 1e-6, "SE \(shape)")
            XCTAssertEqual(saved.channelScale.count, shape[0] * shape[1])
            // 2-D [O, I] weights are the same parameters.
            let w1 = p.w1.float(), w2 = p.w2.float()
            w1.reshape([reduced, shape[1]])
            w2.reshape([shape[1], reduced])
            let (y2, _) = squeezeExciteForward(x.float(), fc1Weight: w1, fc1Bias: p.b1.float(), fc2Weight: w2, fc2Bias: p.b2.float())
            XCTAssertEqual(y2.values, y.values)
        }
    }

    func testSqueezeExciteBackwardMatchesFiniteDifferences() {
        var rng = SeededGenerator(seed: 41)
        for (shape, reduced) in [([2, 6, 3, 4, 5], 3), ([1, 5, 1, 3, 7], 2)] {
            let p = SEParams(c: shape[1], reduced: reduced, &rng)
            let x = random64(shape, &rng, in: -1...2), r = random64(shape, &rng)
            let oracle = squeezeExciteBackward64(x, fc1Weight: p.w1, fc1Bias: p.b1, fc2Weight: p.w2, fc2Bias: p.b2, gradOutput: r)
            func loss(_ x: Tensor64, _ w1: Tensor64, _ b1: Tensor64, _ w2: Tensor64, _ b2: Tensor64) -> Double {
                squeezeExcite64(x, fc1Weight: w1, fc1Bias: b1, fc2Weight: w2, fc2Bias: b2).dot(r)
            }
            let what = "SE \(shape) reduced \(reduced)"
            checkFiniteDifferences(x, analytic: oracle.input, samples: 40, what + " dx") { loss($0, p.w1, p.b1, p.w2, p.b2) }
            checkFiniteDifferences(p.w1, analytic: oracle.fc1Weight, samples: 40, what + " dW1") { loss(x, $0, p.b1, p.w2, p.b2) }
            checkFiniteDifferences(p.b1, analytic: oracle.fc1Bias, what + " db1") { loss(x, p.w1, $0, p.w2, p.b2) }
            checkFiniteDifferences(p.w2, analytic: oracle.fc2Weight, samples: 40, what + " dW2") { loss(x, p.w1, p.b1, $0, p.b2) }
            checkFiniteDifferences(p.b2, analytic: oracle.fc2Bias, what + " db2") { loss(x, p.w1, p.b1, p.w2, $0) }
            XCTAssertEqual(oracle.fc1Bias.values[0], 0, "the dead unit's bias gradient")

            let (w1, b1, w2, b2) = (p.w1.float(), p.b1.float(), p.w2.float(), p.b2.float())
            let xf = x.float()
            let (_, saved) = squeezeExciteForward(xf, fc1Weight: w1, fc1Bias: b1, fc2Weight: w2, fc2Bias: b2)
            let g1 = FloatTensor(shape: w1.shape, repeating: 0.5), gb1 = FloatTensor(shape: b1.shape, repeating: -1)
            let g2 = FloatTensor(shape: w2.shape, repeating: 0.25), gb2 = FloatTensor(shape: b2.shape, repeating: 2)
            let dx = squeezeExciteBackward(xf, gradOutput: r.float(), fc1Weight: w1, fc2Weight: w2, saved: saved,
                                           gradFc1Weight: g1, gradFc1Bias: gb1, gradFc2Weight: g2, gradFc2Bias: gb2)
            func shifted(_ t: Tensor64, _ v: Double) -> Tensor64 { Tensor64(shape: t.shape, values: t.values.map { $0 + v }) }
            assertGradClose(dx, oracle.input, tolerance: 1e-6, what + " fast dx")
            assertGradClose(g1, shifted(oracle.fc1Weight, 0.5), tolerance: 1e-6, what + " fast dW1")
            assertGradClose(gb1, shifted(oracle.fc1Bias, -1), tolerance: 1e-6, what + " fast db1")
            assertGradClose(g2, shifted(oracle.fc2Weight, 0.25), tolerance: 1e-6, what + " fast dW2")
            assertGradClose(gb2, shifted(oracle.fc2Bias, 2), tolerance: 1e-6, what + " fast db2")
            // Parameters only: no input gradient computed.
            XCTAssertNil(squeezeExciteBackward(xf, gradOutput: r.float(), fc1Weight: w1, fc2Weight: w2, saved: saved,
                                               gradFc2Bias: FloatTensor(zeros: b2.shape), needInputGradient: false))
        }
    }
}
