// Pools, concat, linear and dropout against their oracles.

import XCTest
@testable import Networks

final class PoolLinearTests: XCTestCase {
    private let poolCases: [(input: [Int], config: Pool3dConfig)] = [
        ([1, 3, 2, 9, 8], Pool3dConfig(kernel: Size3(1, 3, 3), stride: Size3(1, 2, 2), padding: Size3(0, 1, 1))), // stem
        ([2, 2, 5, 6, 7], Pool3dConfig(kernel: 3, stride: 2, padding: 1)),
        ([1, 2, 4, 5, 5], Pool3dConfig(kernel: Size3(2, 2, 3))), // stride defaults to kernel
        ([1, 3, 3, 7, 6], Pool3dConfig(kernel: Size3(3, 5, 4), stride: 1, padding: Size3(1, 2, 2))),
        ([1, 2, 6, 7, 5], Pool3dConfig(kernel: Size3(4, 6, 2), stride: Size3(3, 2, 1), padding: Size3(2, 3, 1))),
        ([2, 1, 2, 3, 3], Pool3dConfig(kernel: 1)), // identity pool after res2
    ]

    func testMaxPoolWithPaddingIgnoresPadding() {
        var rng = SeededGenerator(seed: 20)
        for (shape, config) in poolCases {
            // All-negative inputs: a zero-padded max pool would return 0 at the borders.
            let x = randomTensor(shape, &rng, in: -9 ... -1)
            assertClose(maxPool3dForward(x, config), pool3dNaive(x, config, max: true), atol: 0, rtol: 0,
                        "\(shape) \(config)")
        }
    }

    func testMaxPoolIndicesPointAtTheMaximum() {
        var rng = SeededGenerator(seed: 21)
        let x = randomTensor([2, 3, 3, 7, 6], &rng)
        let (y, indices) = maxPool3dForwardWithIndices(x, Pool3dConfig(kernel: 3, stride: 2, padding: 1))
        XCTAssertEqual(indices.count, y.count)
        let plane = 3 * 7 * 6
        for o in 0..<y.count {
            let nc = o / (y.count / 6)
            XCTAssertEqual(x.pointer[nc * plane + Int(indices[o])], y.pointer[o])
        }
    }

    func testMaxPoolPropagatesNaN() {
        let x = FloatTensor(shape: [1, 1, 1, 2, 2], values: [1, .nan, 3, 2])
        let y = maxPool3dForward(x, Pool3dConfig(kernel: Size3(1, 2, 2)))
        XCTAssertTrue(y.pointer[0].isNaN, "\(y.values) from \(x.values)")
    }

    func testAvgPoolCountsPaddingByDefault() {
        var rng = SeededGenerator(seed: 22)
        for (shape, config) in poolCases {
            let x = randomTensor(shape, &rng)
            assertClose(avgPool3dForward(x, config), pool3dNaive(x, config, max: false), "\(shape) \(config)")
            assertClose(avgPool3dForward(x, config, countIncludePad: false),
                        pool3dNaive(x, config, max: false, countIncludePad: false), "\(shape) \(config) excl. pad")
        }
        // A corner window of a padded 2x2 pool over ones: 1 real element of 4 (PyTorch gives 0.25).
        let ones = FloatTensor(shape: [1, 1, 1, 2, 2], repeating: 1)
        let y = avgPool3dForward(ones, Pool3dConfig(kernel: Size3(1, 2, 2), stride: 1, padding: Size3(0, 1, 1)))
        XCTAssertEqual(y.shape, [1, 1, 1, 3, 3])
        XCTAssertEqual(y[0, 0, 0, 0, 0], 0.25)
        XCTAssertEqual(y[0, 0, 0, 1, 1], 1)
    }

    func testGlobalAveragePoolKeepsFiveDims() {
        var rng = SeededGenerator(seed: 23)
        let x = randomTensor([2, 5, 3, 7, 7], &rng)
        let y = globalAvgPool3dForward(x)
        XCTAssertEqual(y.shape, [2, 5, 1, 1, 1])
        assertClose(y, globalAvgPool3dNaive(x), atol: 1e-6)
    }

    func testConcatPutsInputsInOrderAlongChannels() {
        var rng = SeededGenerator(seed: 24)
        let a = randomTensor([2, 3, 2, 3, 4], &rng), b = randomTensor([2, 1, 2, 3, 4], &rng)
        let c = randomTensor([2, 5, 2, 3, 4], &rng)
        let y = concatChannels([a, b, c])
        XCTAssertEqual(y.shape, [2, 9, 2, 3, 4])
        assertClose(y, concatChannelsNaive([a, b, c]), atol: 0, rtol: 0)
        XCTAssertEqual(y[1, 3, 1, 2, 3], b[1, 0, 1, 2, 3])
        let flat = concatChannels([randomTensor([3, 4], &rng), randomTensor([3, 2], &rng)])
        XCTAssertEqual(flat.shape, [3, 6])
    }

    func testLinearMatchesNaiveWithAndWithoutBias() {
        var rng = SeededGenerator(seed: 25)
        for (input, out) in [([3, 17], 5), ([2, 4, 2304], 9), ([1, 1], 1)] {
            let x = randomTensor(input, &rng)
            let w = randomTensor([out, input.last!], &rng)
            let b = randomTensor([out], &rng)
            assertClose(linearForward(x, weight: w), linearNaive(x, weight: w), "\(input)")
            let y = linearForward(x, weight: w, bias: b)
            XCTAssertEqual(y.shape, Array(input.dropLast()) + [out])
            assertClose(y, linearNaive(x, weight: w, bias: b), "\(input) bias")
        }
    }

    func testDropoutIsIdentityInEvalAndScalesKeptInTraining() {
        var rng = SeededGenerator(seed: 26)
        let x = randomTensor([4, 1000], &rng, in: 1...2)
        XCTAssertTrue(dropoutForward(x, p: 0.5) === x)
        let (evalOut, evalMask) = dropoutForward(x, p: 0.5, training: false, using: &rng)
        XCTAssertTrue(evalOut === x)
        XCTAssertNil(evalMask)
        let (y, mask) = dropoutForward(x, p: 0.5, training: true, using: &rng)
        let m = try! XCTUnwrap(mask)
        var kept = 0
        for i in 0..<x.count {
            XCTAssertTrue(m.pointer[i] == 0 || m.pointer[i] == 2)
            XCTAssertEqual(y.pointer[i], x.pointer[i] * m.pointer[i])
            if m.pointer[i] != 0 { kept += 1 }
        }
        XCTAssertEqual(Double(kept) / Double(x.count), 0.5, accuracy: 0.05)
    }

    func testSetThreadsConfiguresOpenBLASToo() {
        let saved = (Threading.threads, Threading.splitGemms)
        defer { Threading.setThreads(saved.0, splitGemms: saved.1) }
        Threading.setThreads(2)
        XCTAssertEqual(Threading.threads, 2)
        XCTAssertEqual(Threading.blasThreads, 1) // GEMMs split over our threads
        Threading.setThreads(2, splitGemms: false)
        XCTAssertEqual(Threading.blasThreads, 2)
        Threading.setThreads(0)
        XCTAssertEqual(Threading.threads, 1)
        XCTAssertFalse(Threading.blasCoreName.isEmpty)
    }
}
