// BatchNorm fold, the fused BN+ReLU path and the activations against their oracles,
// including numerically hostile inputs.

import XCTest
@testable import Networks

final class NormActivationTests: XCTestCase {
    private func bnParams(_ c: Int, _ rng: inout SeededGenerator)
        -> (weight: FloatTensor, bias: FloatTensor, mean: FloatTensor, variance: FloatTensor) {
        (randomTensor([c], &rng, in: 0.5...2), randomTensor([c], &rng), randomTensor([c], &rng, in: -3...3),
         randomTensor([c], &rng, in: 1e-4...4))
    }

    func testBatchNormFoldMatchesUnfoldedFormula() {
        var rng = SeededGenerator(seed: 3)
        for shape in [[2, 5, 3, 4, 3], [1, 7, 1, 1, 1], [3, 4, 2, 5, 1]] {
            let x = randomTensor(shape, &rng, in: -5...5)
            let p = bnParams(shape[1], &rng)
            let fold = BatchNormFold(weight: p.weight, bias: p.bias, runningMean: p.mean, runningVar: p.variance)
            for relu in [false, true] {
                let fast = batchNormEvalForward(x, fold, relu: relu)
                let slow = batchNormEvalNaive(x, weight: p.weight, bias: p.bias, runningMean: p.mean,
                                              runningVar: p.variance, relu: relu)
                assertClose(fast, slow, "shape \(shape) relu \(relu)")
            }
        }
    }

    func testBatchNormWithoutAffineUsesUnitScaleZeroShift() {
        var rng = SeededGenerator(seed: 4)
        let x = randomTensor([1, 3, 2, 2, 2], &rng)
        let p = bnParams(3, &rng)
        let fold = BatchNormFold(weight: nil, bias: nil, runningMean: p.mean, runningVar: p.variance)
        assertClose(batchNormEvalForward(x, fold),
                    batchNormEvalNaive(x, weight: nil, bias: nil, runningMean: p.mean, runningVar: p.variance))
    }

    func testBatchNormEpsilonIsPyTorchDefault() {
        let one = FloatTensor(shape: [1], values: [1])
        let zero = FloatTensor(shape: [1], values: [0])
        let fold = BatchNormFold(weight: one, bias: zero, runningMean: zero, runningVar: zero)
        XCTAssertEqual(fold.scale.pointer[0], Float(1 / (1e-5 as Double).squareRoot()), accuracy: 1e-2)
    }

    func testFusedBatchNormReluInPlaceOverwritesInput() {
        var rng = SeededGenerator(seed: 5)
        let x = randomTensor([2, 3, 2, 3, 3], &rng)
        let p = bnParams(3, &rng)
        let expected = batchNormEvalNaive(x, weight: p.weight, bias: p.bias, runningMean: p.mean,
                                          runningVar: p.variance, relu: true)
        let fold = BatchNormFold(weight: p.weight, bias: p.bias, runningMean: p.mean, runningVar: p.variance)
        let y = batchNormEvalForward(x, fold, relu: true, inPlace: true)
        XCTAssertTrue(y === x)
        assertClose(x, expected)
    }

    func testBatchNormOnTwoDimensionalInput() {
        var rng = SeededGenerator(seed: 6)
        let x = randomTensor([4, 6], &rng)
        let p = bnParams(6, &rng)
        let fold = BatchNormFold(weight: p.weight, bias: p.bias, runningMean: p.mean, runningVar: p.variance)
        assertClose(batchNormEvalForward(x, fold),
                    batchNormEvalNaive(x, weight: p.weight, bias: p.bias, runningMean: p.mean, runningVar: p.variance))
    }

    func testReluOutOfPlaceAndInPlace() {
        var rng = SeededGenerator(seed: 8)
        let x = randomTensor([2, 3, 4, 5, 6], &rng)
        let expected = reluNaive(x)
        let y = reluForward(x)
        XCTAssertFalse(y === x)
        assertClose(y, expected, atol: 0, rtol: 0)
        XCTAssertTrue(reluForward(x, inPlace: true) === x)
        assertClose(x, expected, atol: 0, rtol: 0)
    }

    func testReluOnLargeTensorUsesThreadsCorrectly() {
        var rng = SeededGenerator(seed: 9)
        let x = randomTensor([1, 2, 4, 100, 101], &rng)
        assertClose(reluForward(x), reluNaive(x), atol: 0, rtol: 0)
    }

    func testSigmoidIsStableForLargeInputs() {
        let x = FloatTensor(shape: [8], values: [-1000, -100, -20, -1, 0, 1, 20, 1000])
        let y = sigmoidForward(x)
        XCTAssertFalse(y.values.contains { $0.isNaN })
        XCTAssertEqual(y.pointer[0], 0)
        XCTAssertEqual(y.pointer[7], 1)
        XCTAssertEqual(y.pointer[4], 0.5)
        assertClose(y, sigmoidNaive(x), atol: 1e-7, rtol: 1e-6)
        var rng = SeededGenerator(seed: 10)
        let r = randomTensor([3, 50], &rng, in: -30...30)
        assertClose(sigmoidForward(r), sigmoidNaive(r), atol: 1e-7, rtol: 1e-5)
    }

    func testSoftmaxOverLastDimIsStableForLargeInputs() {
        let x = FloatTensor(shape: [2, 3], values: [1000, 1001, 1002, -1000, -1000, -5000])
        let y = softmaxForward(x)
        XCTAssertFalse(y.values.contains { $0.isNaN })
        assertClose(y, softmaxNaive(x), atol: 1e-7, rtol: 1e-5)
        XCTAssertEqual(y[1, 0], 0.5, accuracy: 1e-6)
        XCTAssertEqual(y[1, 2], 0)
        var rng = SeededGenerator(seed: 11)
        let r = randomTensor([2, 3, 400], &rng, in: -50...50)
        let s = softmaxForward(r)
        assertClose(s, softmaxNaive(r), atol: 1e-7, rtol: 1e-4)
        for row in 0..<6 {
            XCTAssertEqual((0..<400).reduce(Float(0)) { $0 + s.pointer[row * 400 + $1] }, 1, accuracy: 1e-5)
        }
    }
}
