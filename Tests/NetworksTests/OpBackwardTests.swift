// Backward of every op: the float64 oracle's backward against central finite
// differences of the float64 oracle's forward (loss = sum(out * R) for a fixed
// random R), then the fast float32 backward against the float64 backward, over
// strides, paddings, dilations, groups and odd sizes.

import XCTest
@testable import Networks

func random64(_ shape: [Int], _ rng: inout SeededGenerator, in range: ClosedRange<Double> = -1...1) -> Tensor64 {
    Tensor64(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in Double.random(in: range, using: &rng) })
}

/// Central differences of `loss` at up to `samples` indices of `x` (all when
/// small) against `analytic`, relative to the gradient's largest magnitude.
func checkFiniteDifferences(_ x: Tensor64, analytic: Tensor64, samples: Int = 24, seed: UInt64 = 7, _ what: String,
                            file: StaticString = #filePath, line: UInt = #line, loss: (Tensor64) -> Double) {
    XCTAssertEqual(x.shape, analytic.shape, "\(what): gradient shape", file: file, line: line)
    var rng = SeededGenerator(seed: seed)
    let indices = x.count <= samples ? Array(0..<x.count) : (0..<samples).map { _ in Int.random(in: 0..<x.count, using: &rng) }
    let scale = max(1e-3, analytic.values.map(abs).max() ?? 0)
    var worst = 0.0, worstIndex = -1
    for i in indices {
        let h = 1e-6 * max(1, abs(x.values[i]))
        var plus = x, minus = x
        plus.values[i] += h
        minus.values[i] -= h
        let numeric = (loss(plus) - loss(minus)) / (2 * h)
        let err = abs(numeric - analytic.values[i]) / scale
        if err > worst { (worst, worstIndex) = (err, i) }
    }
    XCTAssertLessThan(worst, 1e-6, "\(what): finite differences disagree at flat index \(worstIndex) "
                      + "(relative to max |grad| \(scale))", file: file, line: line)
}

/// The fast float32 gradient against the float64 oracle's: max error relative to the largest magnitude.
func assertGradClose(_ fast: FloatTensor?, _ oracle: Tensor64, tolerance: Double = 2e-5, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
    guard let fast else { return XCTFail("\(what): no gradient computed", file: file, line: line) }
    XCTAssertEqual(fast.shape, oracle.shape, "\(what): shape", file: file, line: line)
    guard fast.shape == oracle.shape else { return }
    let scale = max(1e-6, oracle.values.map(abs).max() ?? 0)
    var worst = 0.0, worstIndex = 0
    for i in 0..<oracle.count {
        let err = abs(Double(fast.pointer[i]) - oracle.values[i]) / scale
        if !(err <= worst) { (worst, worstIndex) = (err, i) }
    }
    XCTAssertLessThanOrEqual(worst, tolerance, "\(what): max error \(worst) x max|grad| at \(unflatten(worstIndex, oracle.shape)): "
                             + "\(fast.pointer[worstIndex]) vs \(oracle.values[worstIndex])", file: file, line: line)
}

final class OpBackwardTests: XCTestCase {
    // MARK: Conv3d

    private func checkConv(input: [Int], out: Int, kernel: Size3, stride: Size3 = 1, padding: Size3 = 0,
                           dilation: Size3 = 1, groups: Int = 1, seed: UInt64 = 1, chunkFloats: Int? = nil,
                           file: StaticString = #filePath, line: UInt = #line) {
        var rng = SeededGenerator(seed: seed)
        let config = Conv3dConfig(stride: stride, padding: padding, dilation: dilation, groups: groups)
        let x = random64(input, &rng), w = random64([out, input[1] / groups, kernel.t, kernel.h, kernel.w], &rng)
        let b = random64([out], &rng)
        let r = random64(Conv3dGeometry(input: input, weight: w.shape, config: config).outputShape.array, &rng)
        let what = "conv input \(input) out \(out) kernel \(kernel) stride \(stride) padding \(padding) dilation \(dilation) groups \(groups)"
        let oracle = conv3dBackward64(x, weight: w, gradOutput: r, config: config)
        checkFiniteDifferences(x, analytic: oracle.input, what + " dx", file: file, line: line) {
            conv3dForward64($0, weight: w, bias: b, config: config).dot(r)
        }
        checkFiniteDifferences(w, analytic: oracle.weight, what + " dw", file: file, line: line) {
            conv3dForward64(x, weight: $0, bias: b, config: config).dot(r)
        }
        checkFiniteDifferences(b, analytic: oracle.bias, what + " db", file: file, line: line) {
            conv3dForward64(x, weight: w, bias: $0, config: config).dot(r)
        }
        // Fast float32 backward, accumulating onto non-zero gradients.
        let saved = Conv3dTuning.backwardChunkFloats
        if let chunkFloats { Conv3dTuning.backwardChunkFloats = chunkFloats }
        defer { Conv3dTuning.backwardChunkFloats = saved }
        let dx = FloatTensor(shape: input, repeating: 0.5), dw = FloatTensor(shape: w.shape, repeating: -0.25)
        let db = FloatTensor(shape: [out], repeating: 1)
        conv3dBackward(x.float(), weight: w.float(), gradOutput: r.float(), config: config,
                       gradInput: dx, gradWeight: dw, gradBias: db, workspace: Workspace())
        func shifted(_ t: Tensor64, _ v: Double) -> Tensor64 { Tensor64(shape: t.shape, values: t.values.map { $0 + v }) }
        assertGradClose(dx, shifted(oracle.input, 0.5), what + " fast dx", file: file, line: line)
        assertGradClose(dw, shifted(oracle.weight, -0.25), what + " fast dw", file: file, line: line)
        assertGradClose(db, shifted(oracle.bias, 1), what + " fast db", file: file, line: line)
        // Each gradient alone.
        let dxOnly = FloatTensor(zeros: input)
        conv3dBackward(x.float(), weight: w.float(), gradOutput: r.float(), config: config, gradInput: dxOnly)
        assertGradClose(dxOnly, oracle.input, what + " fast dx alone", file: file, line: line)
        let dwOnly = FloatTensor(zeros: w.shape)
        conv3dBackward(x.float(), weight: w.float(), gradOutput: r.float(), config: config, gradWeight: dwOnly)
        assertGradClose(dwOnly, oracle.weight, what + " fast dw alone", file: file, line: line)
    }

    func testConvPointwiseBackwardMatchesFiniteDifferences() {
        checkConv(input: [2, 6, 3, 5, 4], out: 5, kernel: 1)
        checkConv(input: [1, 8, 2, 3, 7], out: 6, kernel: 1, groups: 2)
        checkConv(input: [2, 5, 1, 1, 1], out: 3, kernel: 1)
    }

    func testConvStridedAndPaddedPointwiseBackward() {
        checkConv(input: [1, 6, 3, 7, 9], out: 5, kernel: 1, stride: Size3(1, 2, 2))
        checkConv(input: [2, 4, 5, 6, 5], out: 7, kernel: 1, stride: 2)
        checkConv(input: [1, 3, 2, 3, 4], out: 2, kernel: 1, padding: 1)
    }

    func testConvTemporalAndFusionKernelsBackward() {
        checkConv(input: [2, 4, 7, 3, 5], out: 6, kernel: Size3(3, 1, 1), padding: Size3(1, 0, 0))
        checkConv(input: [2, 2, 16, 3, 3], out: 4, kernel: Size3(7, 1, 1), stride: Size3(4, 1, 1), padding: Size3(3, 0, 0))
        checkConv(input: [1, 3, 9, 2, 3], out: 2, kernel: Size3(5, 1, 1), stride: Size3(8, 1, 1), padding: Size3(2, 0, 0))
    }

    func testConvSpatialKernelsBackward() {
        checkConv(input: [1, 4, 2, 9, 11], out: 6, kernel: Size3(1, 3, 3), stride: Size3(1, 2, 2), padding: Size3(0, 1, 1))
        checkConv(input: [2, 3, 1, 8, 8], out: 4, kernel: Size3(1, 3, 3), padding: Size3(0, 1, 1))
        checkConv(input: [1, 3, 3, 11, 9], out: 3, kernel: Size3(3, 7, 7), stride: Size3(1, 2, 2), padding: Size3(1, 3, 3))
    }

    func testConvDilatedGroupedOddBackward() {
        checkConv(input: [2, 4, 6, 8, 8], out: 6, kernel: Size3(3, 3, 3), stride: Size3(2, 1, 2), padding: Size3(2, 2, 1),
                  dilation: Size3(2, 2, 1), groups: 2)
        checkConv(input: [1, 6, 5, 7, 6], out: 3, kernel: Size3(2, 3, 2), stride: Size3(1, 3, 2), padding: Size3(1, 0, 1),
                  dilation: Size3(1, 1, 2), groups: 3)
        checkConv(input: [1, 4, 4, 5, 5], out: 4, kernel: Size3(3, 3, 3), padding: 1, groups: 4)
    }

    /// Few positions per sample: the batch runs stacked into one sample (along H for Tx1x1, along T
    /// otherwise), and Tx1x1 taps whose input is smaller than their weight take the unfolded (im2col)
    /// path; each also with stacking off.
    func testConvBackwardStackedAndUnfoldedTaps() {
        let saved = Conv3dTuning.stackSamplesBelow
        defer { Conv3dTuning.stackSamplesBelow = saved }
        for stack in [saved, 0] {
            Conv3dTuning.stackSamplesBelow = stack
            checkConv(input: [2, 32, 2, 1, 2], out: 16, kernel: Size3(3, 1, 1), padding: Size3(1, 0, 0)) // |X| 256 < 512
            checkConv(input: [2, 16, 8, 1, 1], out: 40, kernel: Size3(5, 1, 1), stride: Size3(4, 1, 1), padding: Size3(2, 0, 0))
            checkConv(input: [3, 5, 2, 4, 4], out: 7, kernel: Size3(1, 3, 3), stride: Size3(1, 2, 2), padding: Size3(0, 1, 1))
            checkConv(input: [2, 6, 2, 3, 3], out: 5, kernel: 1)
        }
    }

    func testConvBackwardOverManyChunksMatchesOneChunk() {
        checkConv(input: [2, 3, 4, 9, 10], out: 5, kernel: Size3(3, 3, 3), stride: Size3(1, 2, 1), padding: 1, chunkFloats: 50)
        checkConv(input: [1, 4, 3, 7, 7], out: 4, kernel: Size3(1, 3, 3), padding: Size3(0, 1, 1), groups: 2, chunkFloats: 200)
    }

    // MARK: BatchNorm

    func testBatchNormTrainForwardUpdatesRunningStatsWithUnbiasedVariance() {
        var rng = SeededGenerator(seed: 3)
        let x = random64([2, 3, 2, 3, 4], &rng, in: -2...3)
        let w = random64([3], &rng, in: 0.5...1.5), b = random64([3], &rng)
        let rm = random64([3], &rng), rv = random64([3], &rng, in: 0.5...2)
        let oracle = batchNormTrainForward64(x, weight: w, bias: b, runningMean: rm, runningVar: rv)
        let fm = rm.float(), fv = rv.float()
        let (y, saved) = batchNormTrainForward(x.float(), weight: w.float(), bias: b.float(), runningMean: fm, runningVar: fv)
        assertGradClose(y, oracle.output, tolerance: 1e-6, "train BN output")
        assertGradClose(fm, oracle.runningMean, tolerance: 1e-6, "running mean")
        assertGradClose(fv, oracle.runningVar, tolerance: 1e-6, "running var")
        XCTAssertTrue(saved.batchStatistics)
        // The unbiased estimate by hand for channel 0: 48 elements.
        var values: [Double] = []
        for n in 0..<2 { for i in 0..<24 { values.append(x.values[(n * 3) * 24 + i]) } }
        let mean = values.reduce(0, +) / 48
        let unbiased = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / 47
        XCTAssertEqual(Double(fv.pointer[0]), 0.9 * rv.values[0] + 0.1 * unbiased, accuracy: 1e-6)
        // ReLU fused: the same output clamped.
        let (yr, _) = batchNormTrainForward(x.float(), weight: w.float(), bias: b.float(), runningMean: nil, runningVar: nil, relu: true)
        assertGradClose(yr, relu64(oracle.output), tolerance: 1e-6, "train BN + ReLU output")
    }

    func testBatchNormTrainBackwardMatchesFiniteDifferences() {
        for (seed, shape) in [(UInt64(4), [2, 3, 2, 3, 4]), (5, [1, 5, 1, 1, 7]), (6, [3, 2, 3, 1, 1])] {
            var rng = SeededGenerator(seed: seed)
            let x = random64(shape, &rng, in: -2...3)
            let c = shape[1]
            let w = random64([c], &rng, in: 0.5...1.5), b = random64([c], &rng)
            let rm = Tensor64(zeros: [c]), rv = Tensor64(shape: [c], values: Array(repeating: 1, count: c))
            let r = random64(shape, &rng)
            let oracle = batchNormTrainBackward64(x, weight: w, gradOutput: r)
            func loss(_ x: Tensor64, _ w: Tensor64, _ b: Tensor64) -> Double {
                batchNormTrainForward64(x, weight: w, bias: b, runningMean: rm, runningVar: rv).output.dot(r)
            }
            checkFiniteDifferences(x, analytic: oracle.input, "BN dx \(shape)") { loss($0, w, b) }
            checkFiniteDifferences(w, analytic: oracle.weight, "BN dw \(shape)") { loss(x, $0, b) }
            checkFiniteDifferences(b, analytic: oracle.bias, "BN db \(shape)") { loss(x, w, $0) }
            let (_, saved) = batchNormTrainForward(x.float(), weight: w.float(), bias: b.float(), runningMean: nil, runningVar: nil)
            let dw = FloatTensor(zeros: [c]), db = FloatTensor(zeros: [c])
            let dx = batchNormBackward(x.float(), gradOutput: r.float(), weight: w.float(), saved: saved, gradWeight: dw, gradBias: db)
            assertGradClose(dx, oracle.input, tolerance: 1e-5, "fast BN dx \(shape)")
            assertGradClose(dw, oracle.weight, tolerance: 1e-5, "fast BN dw \(shape)")
            assertGradClose(db, oracle.bias, tolerance: 1e-5, "fast BN db \(shape)")
        }
    }

    func testFrozenStatisticsBatchNormIsTheEvalAffineMap() {
        var rng = SeededGenerator(seed: 8)
        let x = randomTensor([2, 3, 2, 2, 2], &rng), r = randomTensor([2, 3, 2, 2, 2], &rng)
        let w = randomTensor([3], &rng, in: 0.5...1.5), b = randomTensor([3], &rng)
        let rm = randomTensor([3], &rng), rv = randomTensor([3], &rng, in: 0.5...2)
        let before = (rm.values, rv.values)
        let (y, saved) = batchNormTrainForward(x, weight: w, bias: b, runningMean: rm, runningVar: rv, batchStatistics: false)
        XCTAssertEqual(rm.values, before.0)
        XCTAssertEqual(rv.values, before.1)
        assertClose(y, batchNormEvalNaive(x, weight: w, bias: b, runningMean: rm, runningVar: rv), atol: 1e-5, rtol: 1e-5)
        let dw = FloatTensor(zeros: [3]), db = FloatTensor(zeros: [3])
        let dx = batchNormBackward(x, gradOutput: r, weight: w, saved: saved, gradWeight: dw, gradBias: db)!
        for i in 0..<x.count {
            let c = (i / 8) % 3
            let invStd = 1 / (Double(rv.pointer[c]) + 1e-5).squareRoot()
            XCTAssertEqual(Double(dx.pointer[i]), Double(r.pointer[i]) * Double(w.pointer[c]) * invStd, accuracy: 1e-5)
        }
        var expectedDw = [Double](repeating: 0, count: 3), expectedDb = [Double](repeating: 0, count: 3)
        for i in 0..<x.count {
            let c = (i / 8) % 3
            let invStd = 1 / (Double(rv.pointer[c]) + 1e-5).squareRoot()
            expectedDw[c] += Double(r.pointer[i]) * (Double(x.pointer[i]) - Double(rm.pointer[c])) * invStd
            expectedDb[c] += Double(r.pointer[i])
        }
        for c in 0..<3 {
            XCTAssertEqual(Double(dw.pointer[c]), expectedDw[c], accuracy: 1e-5)
            XCTAssertEqual(Double(db.pointer[c]), expectedDb[c], accuracy: 1e-5)
        }
    }

    // MARK: Pools

    private func checkPool(_ input: [Int], _ config: Pool3dConfig, max isMax: Bool, countIncludePad: Bool = true, seed: UInt64 = 9) {
        var rng = SeededGenerator(seed: seed)
        let x = random64(input, &rng)
        let r = random64(config.outputShape(Shape5D(input), op: "test").array, &rng)
        let oracle = pool3dBackward64(x, gradOutput: r, config, max: isMax, countIncludePad: countIncludePad)
        let what = "\(isMax ? "max" : "avg") pool \(input) kernel \(config.kernel) stride \(config.stride) padding \(config.padding)"
        checkFiniteDifferences(x, analytic: oracle, samples: 40, what) {
            pool3dForward64($0, config, max: isMax, countIncludePad: countIncludePad).dot(r)
        }
        if isMax {
            let (y, indices) = maxPool3dForwardWithIndices(x.float(), config)
            assertGradClose(y, pool3dForward64(x, config, max: true), tolerance: 1e-7, what + " forward")
            assertGradClose(maxPool3dBackward(gradOutput: r.float(), indices: indices, inputShape: input), oracle, what + " fast")
        } else {
            assertGradClose(avgPool3dBackward(gradOutput: r.float(), inputShape: input, config, countIncludePad: countIncludePad),
                            oracle, what + " fast")
        }
    }

    func testMaxPoolBackwardRoutesThroughIndices() {
        checkPool([2, 3, 3, 9, 10], Pool3dConfig(kernel: Size3(1, 3, 3), stride: Size3(1, 2, 2), padding: Size3(0, 1, 1)), max: true)
        checkPool([1, 2, 5, 6, 7], Pool3dConfig(kernel: Size3(3, 2, 3), stride: Size3(2, 1, 2), padding: Size3(1, 1, 0)), max: true)
        checkPool([1, 2, 2, 4, 4], Pool3dConfig(kernel: 1), max: true)
    }

    func testAvgPoolBackwardSpreadsByTheForwardDivisor() {
        checkPool([1, 5, 4, 7, 7], Pool3dConfig(kernel: Size3(4, 7, 7), stride: 1), max: false)
        checkPool([1, 2, 5, 6, 6], Pool3dConfig(kernel: 3, stride: 2, padding: 1), max: false)
        checkPool([1, 2, 5, 6, 6], Pool3dConfig(kernel: 3, stride: 2, padding: 1), max: false, countIncludePad: false)
        checkPool([2, 3, 3, 5, 4], Pool3dConfig(kernel: Size3(2, 3, 2), stride: Size3(1, 1, 2)), max: false)
    }

    func testGlobalAveragePoolBackwardIsUniform() {
        var rng = SeededGenerator(seed: 10)
        let x = random64([2, 3, 2, 3, 5], &rng)
        let r = random64([2, 3, 1, 1, 1], &rng)
        let config = Pool3dConfig(kernel: Size3(2, 3, 5))
        let oracle = pool3dBackward64(x, gradOutput: r, config, max: false)
        assertGradClose(globalAvgPool3dBackward(gradOutput: r.float(), inputShape: x.shape), oracle, "global avg pool")
        checkFiniteDifferences(x, analytic: oracle, "global avg pool") { pool3dForward64($0, config, max: false).dot(r) }
    }

    // MARK: Element-wise, concat, linear, dropout

    func testActivationBackwardsMatchFiniteDifferences() {
        var rng = SeededGenerator(seed: 11)
        let x = random64([3, 7], &rng, in: -4...4), r = random64([3, 7], &rng)
        checkFiniteDifferences(x, analytic: reluBackward64(x, gradOutput: r), "relu") { relu64($0).dot(r) }
        checkFiniteDifferences(x, analytic: sigmoidBackward64(x, gradOutput: r), "sigmoid") { sigmoid64($0).dot(r) }
        checkFiniteDifferences(x, analytic: softmaxBackward64(x, gradOutput: r), "softmax") { softmax64($0).dot(r) }
        let xf = x.float(), rf = r.float()
        assertGradClose(reluBackward(output: reluForward(xf), gradOutput: rf, inPlace: false), reluBackward64(x, gradOutput: r), "fast relu")
        assertGradClose(sigmoidBackward(output: sigmoidForward(xf), gradOutput: rf), sigmoidBackward64(x, gradOutput: r),
                        tolerance: 1e-6, "fast sigmoid")
        assertGradClose(softmaxBackward(output: softmaxForward(xf), gradOutput: rf), softmaxBackward64(x, gradOutput: r),
                        tolerance: 1e-6, "fast softmax")
    }

    func testConcatBackwardSplitsTheGradientInInputOrder() {
        var rng = SeededGenerator(seed: 12)
        let a = randomTensor([2, 3, 2, 2, 1], &rng), b = randomTensor([2, 5, 2, 2, 1], &rng)
        let cat = concatChannels([a, b])
        let parts = concatChannelsBackward(cat, channels: [3, 5])
        XCTAssertEqual(parts[0].values, a.values)
        XCTAssertEqual(parts[1].values, b.values)
        XCTAssertEqual(parts[1].shape, [2, 5, 2, 2, 1])
    }

    func testLinearBackwardMatchesFiniteDifferences() {
        var rng = SeededGenerator(seed: 13)
        let x = random64([4, 9], &rng), w = random64([5, 9], &rng), b = random64([5], &rng), r = random64([4, 5], &rng)
        let oracle = linearBackward64(x, weight: w, gradOutput: r)
        checkFiniteDifferences(x, analytic: oracle.input, "linear dx") { linearForward64($0, weight: w, bias: b).dot(r) }
        checkFiniteDifferences(w, analytic: oracle.weight, "linear dw") { linearForward64(x, weight: $0, bias: b).dot(r) }
        checkFiniteDifferences(b, analytic: oracle.bias, "linear db") { linearForward64(x, weight: w, bias: $0).dot(r) }
        let dw = FloatTensor(zeros: [5, 9]), db = FloatTensor(zeros: [5])
        let dx = linearBackward(x.float(), weight: w.float(), gradOutput: r.float(), gradWeight: dw, gradBias: db)
        assertGradClose(dx, oracle.input, "fast linear dx")
        assertGradClose(dw, oracle.weight, "fast linear dw")
        assertGradClose(db, oracle.bias, "fast linear db")
        XCTAssertNil(linearBackward(x.float(), weight: w.float(), gradOutput: r.float(), needInputGradient: false))
    }

    func testDropoutBackwardReusesTheSeededMask() {
        var rng = SeededGenerator(seed: 14)
        let x = randomTensor([4, 500], &rng), r = randomTensor([4, 500], &rng)
        var g1 = SeededGenerator(seed: 99), g2 = SeededGenerator(seed: 99)
        let (y1, m1) = dropoutForward(x, p: 0.3, training: true, using: &g1)
        let (y2, m2) = dropoutForward(x, p: 0.3, training: true, using: &g2)
        XCTAssertEqual(y1.values, y2.values, "same seed, same mask")
        let mask = try! XCTUnwrap(m1)
        XCTAssertEqual(mask.values, m2!.values)
        let dropped = mask.values.filter { $0 == 0 }.count
        XCTAssertEqual(Double(dropped) / 2000, 0.3, accuracy: 0.04)
        XCTAssertTrue(mask.values.allSatisfy { $0 == 0 || abs($0 - 1 / 0.7) < 1e-6 })
        let dx = dropoutBackward(gradOutput: r, mask: mask)
        for i in 0..<dx.count { XCTAssertEqual(dx.pointer[i], r.pointer[i] * mask.pointer[i]) }
        XCTAssertTrue(dropoutBackward(gradOutput: r, mask: nil) === r, "eval dropout backward is the identity")
    }
}
