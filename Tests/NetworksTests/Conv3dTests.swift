// Conv3d's fast paths (pointwise GEMM, temporal-shift GEMMs, chunked im2col)
// against the naive loop, over kernels, strides, paddings, dilations, groups and bias.

import XCTest
@testable import Networks

final class Conv3dTests: XCTestCase {
    /// Runs fast and naive conv on random data and compares them.
    private func check(input: [Int], out: Int, kernel: Size3, stride: Size3 = 1, padding: Size3 = 0,
                       dilation: Size3 = 1, groups: Int = 1, bias: Bool = false, seed: UInt64 = 1,
                       workspace: Workspace? = nil, file: StaticString = #filePath, line: UInt = #line) {
        var rng = SeededGenerator(seed: seed)
        let x = randomTensor(input, &rng)
        let w = randomTensor([out, input[1] / groups, kernel.t, kernel.h, kernel.w], &rng)
        let b = bias ? randomTensor([out], &rng) : nil
        let config = Conv3dConfig(stride: stride, padding: padding, dilation: dilation, groups: groups)
        let fast = conv3dForward(x, weight: w, bias: b, config: config, workspace: workspace)
        let slow = conv3dForwardNaive(x, weight: w, bias: b, config: config)
        assertClose(fast, slow, "input \(input) out \(out) kernel \(kernel) stride \(stride) padding \(padding) "
                    + "dilation \(dilation) groups \(groups) bias \(bias)", file: file, line: line)
    }

    func testOutputSizeFollowsPyTorchFormula() {
        XCTAssertEqual(windowOutputLength(224, kernel: 7, stride: 2, padding: 3), 112)
        XCTAssertEqual(windowOutputLength(32, kernel: 5, stride: 1, padding: 2), 32)
        XCTAssertEqual(windowOutputLength(32, kernel: 7, stride: 4, padding: 3), 8) // fast -> slow fusion
        XCTAssertEqual(windowOutputLength(112, kernel: 3, stride: 2, padding: 1), 56) // stem max pool
        XCTAssertEqual(windowOutputLength(5, kernel: 2, stride: 2, padding: 0), 2) // floor, not ceil
        XCTAssertEqual(windowOutputLength(10, kernel: 3, stride: 1, padding: 0, dilation: 2), 6)
        XCTAssertEqual(windowOutputLength(2, kernel: 5, stride: 1, padding: 0), -2) // does not fit: callers reject < 1
        XCTAssertEqual(windowOutputSize(Size3(8, 14, 14), kernel: Size3(3, 1, 1), stride: Size3(1, 2, 2),
                                        padding: Size3(1, 0, 0)), Size3(8, 7, 7))
        let geo = Conv3dGeometry(input: [1, 3, 32, 224, 224], weight: [8, 3, 5, 7, 7],
                                 config: Conv3dConfig(stride: Size3(1, 2, 2), padding: Size3(2, 3, 3)))
        XCTAssertEqual(geo.outputShape.array, [1, 8, 32, 112, 112])
        XCTAssertEqual(geo.reduction, 735)
    }

    func testPointwiseStrideOneIsDirectGemmWithAndWithoutBias() {
        check(input: [2, 6, 3, 5, 4], out: 5, kernel: 1)
        check(input: [2, 6, 3, 5, 4], out: 5, kernel: 1, bias: true)
        check(input: [1, 8, 2, 3, 7], out: 6, kernel: 1, groups: 2, bias: true)
        check(input: [1, 8, 2, 3, 7], out: 4, kernel: 1, groups: 4)
        check(input: [1, 5, 1, 1, 1], out: 3, kernel: 1, dilation: 2, bias: true)
    }

    func testStridedPointwiseSubsamplesThenGemms() {
        check(input: [1, 6, 3, 7, 9], out: 5, kernel: 1, stride: Size3(1, 2, 2))
        check(input: [2, 4, 5, 6, 5], out: 7, kernel: 1, stride: 2, bias: true)
        check(input: [1, 8, 3, 5, 5], out: 4, kernel: 1, stride: Size3(1, 2, 2), groups: 2)
    }

    func testPaddedPointwiseTakesGeneralPath() {
        check(input: [1, 3, 2, 3, 4], out: 2, kernel: 1, padding: 1, bias: true)
        check(input: [1, 4, 3, 3, 3], out: 4, kernel: 1, stride: 2, padding: Size3(0, 1, 2), groups: 2)
    }

    func testTemporalKernelsUseShiftedGemms() {
        check(input: [1, 6, 5, 4, 3], out: 4, kernel: Size3(3, 1, 1), padding: Size3(1, 0, 0))
        check(input: [2, 4, 7, 3, 5], out: 6, kernel: Size3(3, 1, 1), padding: Size3(1, 0, 0), bias: true)
        check(input: [1, 4, 9, 2, 3], out: 5, kernel: Size3(5, 1, 1), padding: Size3(2, 0, 0))
        check(input: [1, 8, 6, 3, 3], out: 4, kernel: Size3(3, 1, 1), padding: Size3(2, 0, 0),
              dilation: Size3(2, 1, 1), groups: 2, bias: true)
        check(input: [1, 8, 6, 2, 2], out: 8, kernel: Size3(3, 1, 1), groups: 4) // no padding
        check(input: [1, 3, 2, 3, 3], out: 2, kernel: Size3(5, 1, 1), padding: Size3(3, 0, 0)) // taps past both ends
        check(input: [1, 4, 4, 3, 2], out: 3, kernel: Size3(3, 1, 1), padding: Size3(1, 0, 0),
              dilation: Size3(1, 3, 2)) // spatial dilation is irrelevant to a 1x1 window
    }

    func testStridedTemporalKernelLikeFastToSlowFusion() {
        // conv_f2s: kernel (7,1,1), stride (alpha,1,1), padding (3,0,0)
        check(input: [1, 4, 16, 5, 6], out: 8, kernel: Size3(7, 1, 1), stride: Size3(4, 1, 1), padding: Size3(3, 0, 0))
        check(input: [2, 3, 9, 3, 3], out: 6, kernel: Size3(5, 1, 1), stride: Size3(2, 1, 1), padding: Size3(2, 0, 0),
              bias: true)
    }

    func testTemporalKernelsWithSpatialStrideOrPaddingTakeGeneralPath() {
        check(input: [1, 4, 5, 7, 6], out: 3, kernel: Size3(3, 1, 1), stride: Size3(1, 2, 2), padding: Size3(1, 0, 0))
        check(input: [1, 4, 5, 3, 4], out: 3, kernel: Size3(3, 1, 1), padding: Size3(1, 1, 2), bias: true)
    }

    func testSpatialKernels() {
        check(input: [1, 5, 3, 7, 8], out: 4, kernel: Size3(1, 3, 3), padding: Size3(0, 1, 1))
        check(input: [2, 4, 2, 9, 7], out: 6, kernel: Size3(1, 3, 3), stride: Size3(1, 2, 2), padding: Size3(0, 1, 1),
              bias: true)
        check(input: [1, 4, 3, 6, 6], out: 4, kernel: Size3(1, 3, 3), padding: Size3(0, 2, 2),
              dilation: Size3(1, 2, 2), groups: 2)
    }

    func testFullKernels() {
        check(input: [1, 3, 5, 6, 7], out: 4, kernel: 3, padding: 1, bias: true)
        check(input: [2, 4, 5, 7, 5], out: 4, kernel: 3, stride: 2, padding: 1, groups: 4)
        check(input: [1, 2, 6, 7, 7], out: 3, kernel: 3, padding: Size3(2, 0, 3), dilation: 2)
        check(input: [1, 4, 4, 5, 5], out: 2, kernel: Size3(2, 3, 2), stride: Size3(2, 1, 2), padding: Size3(0, 2, 1),
              dilation: Size3(2, 1, 1), groups: 2, bias: true)
    }

    func testStemLikeKernelWithStrideAndPadding() {
        // SlowFast fast stem: kernel (5,7,7), stride (1,2,2), padding (2,3,3)
        check(input: [1, 3, 4, 13, 11], out: 4, kernel: Size3(5, 7, 7), stride: Size3(1, 2, 2), padding: Size3(2, 3, 3))
        // slow stem: kernel (1,7,7)
        check(input: [1, 3, 2, 9, 10], out: 3, kernel: Size3(1, 7, 7), stride: Size3(1, 2, 2), padding: Size3(0, 3, 3),
              bias: true)
    }

    func testPaddingLargerThanInputGivesBiasOnlyBorders() {
        check(input: [1, 2, 1, 2, 2], out: 2, kernel: 3, padding: 3, bias: true)
        check(input: [1, 2, 2, 1, 3], out: 3, kernel: Size3(1, 1, 1), stride: Size3(1, 2, 3), padding: 3, bias: true)
    }

    func testIm2colChunkingMatchesSingleChunk() {
        let saved = (Conv3dTuning.chunkFloats, Conv3dTuning.minChunkColumns)
        defer { (Conv3dTuning.chunkFloats, Conv3dTuning.minChunkColumns) = saved }
        Conv3dTuning.minChunkColumns = 1
        for floats in [1, 50, 200] {
            Conv3dTuning.chunkFloats = floats
            check(input: [1, 3, 4, 7, 6], out: 5, kernel: 3, stride: Size3(1, 2, 1), padding: 1, bias: true)
            check(input: [2, 4, 5, 5, 5], out: 4, kernel: Size3(1, 3, 3), padding: Size3(0, 1, 1), groups: 2)
        }
    }

    func testStridedWidthPhaseSplitAndGatherAgree() {
        let saved = Conv3dTuning.phaseSplit
        defer { Conv3dTuning.phaseSplit = saved }
        for split in [true, false] {
            Conv3dTuning.phaseSplit = split
            check(input: [1, 3, 3, 11, 13], out: 4, kernel: Size3(3, 7, 7), stride: Size3(1, 2, 2), padding: Size3(1, 3, 3))
            check(input: [1, 4, 2, 7, 10], out: 2, kernel: Size3(1, 3, 4), stride: Size3(1, 1, 3), padding: Size3(0, 1, 2),
                  dilation: Size3(1, 1, 2), bias: true)
            check(input: [1, 2, 2, 5, 9], out: 3, kernel: Size3(1, 1, 2), stride: Size3(2, 1, 2))
        }
    }

    func testWorkspaceReusedAcrossShapes() {
        let ws = Workspace()
        check(input: [1, 3, 3, 5, 5], out: 2, kernel: 3, padding: 1, workspace: ws)
        check(input: [1, 6, 4, 9, 9], out: 3, kernel: Size3(3, 1, 1), padding: Size3(1, 0, 0), workspace: ws)
        check(input: [1, 2, 2, 3, 3], out: 4, kernel: 3, padding: 1, bias: true, workspace: ws)
        XCTAssertGreaterThan(ws.bytes, 0)
    }

    func testRandomConfigurationsMatchNaive() {
        var rng = SeededGenerator(seed: 42)
        let kernels = [Size3(1, 1, 1), Size3(3, 1, 1), Size3(5, 1, 1), Size3(1, 3, 3), Size3(3, 3, 3), Size3(2, 1, 3)]
        var checked = 0
        while checked < 60 {
            let groups = [1, 2, 4].randomElement(using: &rng)!
            let k = kernels.randomElement(using: &rng)!
            let stride = Size3(Int.random(in: 1...2, using: &rng), Int.random(in: 1...2, using: &rng),
                               Int.random(in: 1...2, using: &rng))
            let padding = Size3(Int.random(in: 0...3, using: &rng), Int.random(in: 0...2, using: &rng),
                                Int.random(in: 0...2, using: &rng))
            let dilation = Size3(Int.random(in: 1...2, using: &rng), Int.random(in: 1...2, using: &rng), 1)
            let input = [Int.random(in: 1...2, using: &rng), groups * Int.random(in: 1...3, using: &rng),
                         Int.random(in: 1...6, using: &rng), Int.random(in: 1...7, using: &rng), Int.random(in: 1...7, using: &rng)]
            let out = groups * Int.random(in: 1...3, using: &rng)
            let size = windowOutputSize(Size3(input[2], input[3], input[4]), kernel: k, stride: stride,
                                        padding: padding, dilation: dilation)
            guard size.t >= 1, size.h >= 1, size.w >= 1 else { continue }
            check(input: input, out: out, kernel: k, stride: stride, padding: padding, dilation: dilation,
                  groups: groups, bias: Bool.random(using: &rng), seed: UInt64(checked))
            checked += 1
        }
    }

    func testThreadingModesAgree() {
        let saved = (Threading.threads, Threading.splitGemms)
        defer { Threading.setThreads(saved.0, splitGemms: saved.1) }
        var rng = SeededGenerator(seed: 7)
        // Big enough (> 1M multiply-adds) for the GEMMs to be split.
        let cases: [(x: [Int], w: [Int], config: Conv3dConfig)] = [
            ([1, 4, 4, 19, 17], [16, 4, 3, 3, 3], Conv3dConfig(stride: Size3(1, 2, 2), padding: 1)),
            ([2, 32, 6, 15, 15], [24, 32, 3, 1, 1], Conv3dConfig(padding: Size3(1, 0, 0))),
            ([1, 64, 4, 12, 12], [48, 64, 1, 1, 1], Conv3dConfig()),
            ([1, 256, 2, 4, 4], [200, 256, 1, 1, 1], Conv3dConfig()), // M > N: split by rows
        ]
        for c in cases {
            let x = randomTensor(c.x, &rng), w = randomTensor(c.w, &rng)
            let expected = conv3dForwardNaive(x, weight: w, config: c.config)
            for (threads, split) in [(1, true), (2, true), (2, false), (3, true)] {
                Threading.setThreads(threads, splitGemms: split)
                XCTAssertEqual(Threading.threads, threads)
                XCTAssertEqual(Threading.blasThreads, split ? 1 : threads)
                assertClose(conv3dForward(x, weight: w, config: c.config), expected,
                            "\(c.x) threads \(threads) split \(split)")
            }
        }
    }
}
