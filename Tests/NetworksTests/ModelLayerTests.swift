// The model's own layer code against the op oracles: ConvLayer (folded BN,
// every GEMM path incl. the temporal ring of the stems, fused epilogues,
// accumulation, views into wider buffers) and the separable stem max pool.

import XCTest
@testable import Networks

final class ModelLayerTests: XCTestCase {
    /// Runs a ConvLayer with BN + ReLU (+ residual or accumulation) and compares with naive conv -> BN -> add -> ReLU.
    private func check(input: [Int], out: Int, kernel: Size3, stride: Size3 = 1, padding: Size3 = 0, groups: Int = 1,
                       relu: Bool = true, residual: Bool = false, accumulate: Bool = false, bn: Bool = true, seed: UInt64 = 1,
                       file: StaticString = #filePath, line: UInt = #line) {
        var rng = SeededGenerator(seed: seed)
        let x = randomTensor(input, &rng)
        let w = randomTensor([out, input[1] / groups, kernel.t, kernel.h, kernel.w], &rng)
        let gamma = randomTensor([out], &rng, in: 0.5...1.5), beta = randomTensor([out], &rng)
        let mean = randomTensor([out], &rng), variance = randomTensor([out], &rng, in: 0.5...2)
        let config = Conv3dConfig(stride: stride, padding: padding, groups: groups)
        let layer = ConvLayer(name: "test", kind: "test", weight: w,
                              bn: bn ? BatchNormFold(weight: gamma, bias: beta, runningMean: mean, runningVar: variance) : nil,
                              config: config)
        var expected = conv3dForwardNaive(x, weight: w, config: config)
        if bn {
            expected = batchNormEvalNaive(expected, weight: gamma, bias: beta, runningMean: mean, runningVar: variance)
        }
        let os = Shape5D(expected.shape)
        let extra = randomTensor(expected.shape, &rng)
        if residual || accumulate {
            expected = FloatTensor(shape: expected.shape, values: zip(expected.values, extra.values).map { $0 + $1 })
        }
        if relu { expected = reluNaive(expected) }

        // Output into channels 2..<2+out of a wider buffer, to exercise views.
        let pool = BufferPool()
        var wide = os
        wide.c += 3
        let full = Act(pool, wide)
        let view = full.channels(2..<(2 + out))
        for n in 0..<os.n { view.sample(n).update(from: extra.pointer + n * out * os.plane, count: out * os.plane) }
        let res = residual ? Act(borrowing: extra, as: os) : nil
        layer.run(Act(borrowing: x, as: Shape5D(input)), into: view, relu: relu, accumulate: accumulate, residual: res,
                  workspace: Workspace())
        assertClose(view.tensor(), expected, atol: 1e-4, rtol: 1e-4,
                    "input \(input) kernel \(kernel) stride \(stride) padding \(padding) groups \(groups)", file: file, line: line)
    }

    func testPointwiseWithEpilogues() {
        check(input: [2, 6, 3, 5, 4], out: 5, kernel: 1)
        check(input: [2, 6, 3, 5, 4], out: 5, kernel: 1, residual: true)
        check(input: [1, 8, 2, 3, 7], out: 6, kernel: 1, groups: 2, accumulate: true)
        check(input: [1, 8, 2, 3, 7], out: 6, kernel: 1, relu: false)
        check(input: [1, 6, 3, 7, 9], out: 5, kernel: 1, stride: Size3(1, 2, 2), relu: false) // strided shortcut
    }

    func testTemporalShiftWithEpilogues() {
        check(input: [1, 6, 5, 4, 3], out: 4, kernel: Size3(3, 1, 1), padding: Size3(1, 0, 0))
        check(input: [2, 4, 7, 3, 5], out: 6, kernel: Size3(3, 1, 1), padding: Size3(1, 0, 0), residual: true)
        check(input: [1, 4, 1, 3, 5], out: 3, kernel: Size3(3, 1, 1), padding: Size3(1, 0, 0), accumulate: true)
        check(input: [1, 4, 9, 2, 3], out: 5, kernel: Size3(5, 1, 1), padding: Size3(1, 0, 0)) // no zero-shift tap
        check(input: [1, 4, 16, 2, 3], out: 8, kernel: Size3(7, 1, 1), stride: Size3(4, 1, 1), padding: Size3(3, 0, 0))
    }

    func testSpatialKernelsWithEpilogues() {
        check(input: [1, 5, 3, 7, 8], out: 4, kernel: Size3(1, 3, 3), padding: Size3(0, 1, 1))
        check(input: [2, 4, 2, 9, 7], out: 6, kernel: Size3(1, 3, 3), stride: Size3(1, 2, 2), padding: Size3(0, 1, 1),
              groups: 2, accumulate: true)
        check(input: [1, 3, 2, 9, 10], out: 3, kernel: Size3(1, 7, 7), stride: Size3(1, 2, 2), padding: Size3(0, 3, 3))
    }

    /// The training forward's layers (no BN, the live weight): a batch with few positions per sample runs
    /// stacked into one sample (along H for Tx1x1, along T otherwise), and Tx1x1 taps whose input is
    /// smaller than their weight run on the unfolded input; each also with stacking off.
    func testBNLessLayersStackedAndUnfoldedMatchNaive() {
        let saved = Conv3dTuning.stackSamplesBelow
        defer { Conv3dTuning.stackSamplesBelow = saved }
        for stack in [saved, 0] {
            Conv3dTuning.stackSamplesBelow = stack
            // Unfolded taps: |X| = 2*32*4 = 256 < O*C = 512.
            check(input: [2, 32, 2, 1, 2], out: 16, kernel: Size3(3, 1, 1), padding: Size3(1, 0, 0), residual: true, bn: false)
            check(input: [3, 24, 1, 2, 1], out: 30, kernel: Size3(3, 1, 1), padding: Size3(1, 0, 0), accumulate: true, bn: false)
            // Shifted taps (input larger than the weight), a strided fusion, spatial kernels, pointwise.
            check(input: [2, 4, 7, 3, 5], out: 6, kernel: Size3(3, 1, 1), padding: Size3(1, 0, 0), residual: true, bn: false)
            check(input: [2, 4, 16, 2, 3], out: 8, kernel: Size3(5, 1, 1), stride: Size3(4, 1, 1), padding: Size3(2, 0, 0), bn: false)
            check(input: [3, 5, 2, 4, 4], out: 7, kernel: Size3(1, 3, 3), stride: Size3(1, 2, 2), padding: Size3(0, 1, 1),
                  accumulate: true, bn: false)
            check(input: [2, 6, 2, 3, 3], out: 5, kernel: 1, residual: true, bn: false)
        }
    }

    /// `refresh` takes the weight's new values into every derived layout (taps, rows) without a new layer.
    func testRefreshFollowsTheWeightInPlace() {
        var rng = SeededGenerator(seed: 9)
        let saved = ModelTuning.rowShiftMinWidth
        defer { ModelTuning.rowShiftMinWidth = saved }
        ModelTuning.rowShiftMinWidth = 1
        for (input, weight, padding) in [([1, 4, 5, 4, 3], [4, 4, 3, 1, 1], Size3(1, 0, 0)),   // shifted taps
                                         ([1, 3, 2, 6, 7], [4, 3, 1, 3, 3], Size3(0, 1, 1))] { // row shift
            let x = randomTensor(input, &rng), w = randomTensor(weight, &rng)
            let config = Conv3dConfig(padding: padding)
            let layer = ConvLayer(name: "test", kind: "test", weight: w, bn: nil, config: config)
            let out = FloatTensor(zeros: conv3dForwardNaive(x, weight: w, config: config).shape)
            layer.run(Act(borrowing: x, as: Shape5D(input)), into: Act(borrowing: out, as: Shape5D(out.shape)), relu: false,
                      workspace: Workspace())
            assertClose(out, conv3dForwardNaive(x, weight: w, config: config), atol: 1e-4, rtol: 1e-4, "before \(weight)")
            for i in 0..<w.count { w.pointer[i] = -2 * w.pointer[i] + 0.5 }
            XCTAssertTrue(layer.refresh(from: w))
            XCTAssertFalse(layer.refresh(from: w.copy()), "a layer refreshes only from the tensor it was made from")
            layer.run(Act(borrowing: x, as: Shape5D(input)), into: Act(borrowing: out, as: Shape5D(out.shape)), relu: false,
                      workspace: Workspace())
            assertClose(out, conv3dForwardNaive(x, weight: w, config: config), atol: 1e-4, rtol: 1e-4, "after \(weight)")
        }
    }

    func testRowShiftPathForSpatialKernelsMatchesNaive() {
        let saved = ModelTuning.rowShiftMinWidth
        defer { ModelTuning.rowShiftMinWidth = saved }
        ModelTuning.rowShiftMinWidth = 1
        check(input: [1, 5, 3, 7, 8], out: 4, kernel: Size3(1, 3, 3), padding: Size3(0, 1, 1))
        check(input: [2, 4, 2, 9, 7], out: 6, kernel: Size3(1, 3, 3), padding: Size3(0, 1, 1), residual: true)
        check(input: [1, 4, 2, 6, 9], out: 3, kernel: Size3(1, 3, 3), padding: Size3(0, 1, 1), accumulate: true)
        check(input: [1, 3, 2, 6, 9], out: 3, kernel: Size3(1, 3, 5), padding: Size3(0, 0, 1), relu: false)
        check(input: [1, 3, 1, 5, 5], out: 2, kernel: Size3(1, 1, 3), padding: Size3(0, 2, 0)) // rows of padding only
        let chunk = ModelTuning.rowShiftChunkFloats
        defer { ModelTuning.rowShiftChunkFloats = chunk }
        ModelTuning.rowShiftChunkFloats = 1 // one output row per chunk
        check(input: [1, 4, 3, 5, 6], out: 5, kernel: Size3(1, 3, 3), padding: Size3(0, 1, 1), residual: true)
    }

    func testTemporalRingOfTheStemsMatchesNaive() {
        // Fast stem: (5,7,7) stride (1,2,2) padding (2,3,3), including clips shorter than the kernel.
        for t in [1, 2, 3, 5, 8] {
            check(input: [1, 3, t, 13, 11], out: 4, kernel: Size3(5, 7, 7), stride: Size3(1, 2, 2),
                  padding: Size3(2, 3, 3), seed: UInt64(t))
        }
        check(input: [2, 3, 4, 9, 9], out: 5, kernel: Size3(3, 3, 3), padding: 1, residual: true)
        check(input: [1, 2, 6, 5, 6], out: 3, kernel: Size3(3, 3, 1), padding: Size3(0, 1, 0), accumulate: true) // no padding in T
        check(input: [1, 2, 3, 5, 6], out: 3, kernel: Size3(3, 1, 3), padding: Size3(3, 0, 1)) // padding beyond the kernel
    }

    func testSplitGemmsWithTwoThreadsMatchNaive() {
        let saved = (Threading.threads, Threading.splitGemms)
        defer { Threading.setThreads(saved.0, splitGemms: saved.1) }
        Threading.setThreads(2)
        check(input: [1, 3, 6, 40, 36], out: 8, kernel: Size3(5, 7, 7), stride: Size3(1, 2, 2), padding: Size3(2, 3, 3))
        check(input: [1, 64, 4, 18, 18], out: 48, kernel: 1, residual: true)
        check(input: [1, 32, 6, 15, 15], out: 24, kernel: Size3(3, 1, 1), padding: Size3(1, 0, 0), accumulate: true)
        check(input: [1, 16, 4, 20, 20], out: 16, kernel: Size3(1, 3, 3), stride: Size3(1, 2, 2), padding: Size3(0, 1, 1))
        check(input: [1, 16, 3, 30, 30], out: 16, kernel: Size3(1, 3, 3), padding: Size3(0, 1, 1), residual: true) // row shift
    }

    func testStemMaxPoolMatchesNaive() {
        var rng = SeededGenerator(seed: 3)
        let configs = [
            Pool3dConfig(kernel: Size3(1, 3, 3), stride: Size3(1, 2, 2), padding: Size3(0, 1, 1)),
            Pool3dConfig(kernel: Size3(1, 3, 2), stride: Size3(1, 1, 3), padding: Size3(0, 1, 1)),
            Pool3dConfig(kernel: Size3(2, 3, 3), stride: Size3(2, 2, 1), padding: Size3(1, 1, 0)),
        ]
        for config in configs {
            for shape in [[1, 2, 3, 9, 8], [2, 3, 1, 1, 1], [1, 1, 2, 2, 5], [1, 4, 2, 12, 13]] {
                let o = windowOutputSize(Size3(shape[2], shape[3], shape[4]), kernel: config.kernel,
                                         stride: config.stride, padding: config.padding)
                guard o.t >= 1, o.h >= 1, o.w >= 1 else { continue }
                let x = randomTensor(shape, &rng)
                let expected = pool3dNaive(x, config, max: true)
                let out = Act(BufferPool(), expected.shape5D)
                maxPool(Act(borrowing: x, as: x.shape5D), config, into: out)
                assertClose(out.tensor(), expected, atol: 0, rtol: 0, "\(shape) \(config)")
            }
        }
        let x = FloatTensor(shape: [1, 1, 1, 3, 3], values: [1, 2, 3, 4, .nan, 6, 7, 8, 9])
        let out = Act(BufferPool(), Shape5D([1, 1, 1, 2, 2]))
        maxPool(Act(borrowing: x, as: x.shape5D), configs[0], into: out)
        XCTAssertTrue(out.tensor().values.allSatisfy(\.isNaN), "NaN propagates as in PyTorch")
    }
}
