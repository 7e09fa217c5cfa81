// Losses against their float64 oracles, finite differences of the oracle, and
// torch.nn.functional (fixtures/train/loss_ref.safetensors, made by
// fixtures/generate_train_opt.py).

import XCTest
import Formats
@testable import Train

final class LossTests: XCTestCase {
    /// A deterministic stream of values in [-scale, scale].
    func values(_ n: Int, seed: UInt64, scale: Double) -> [Double] {
        var s = seed
        return (0 ..< n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return (Double(s >> 11) * 0x1.0p-53 * 2 - 1) * scale
        }
    }

    func testBCEMatchesFloat64OracleOverShapes() throws {
        for (batch, classes, scale) in [(1, 1, 1.0), (2, 9, 4.0), (8, 9, 12.0), (3, 140, 30.0)] {
            let x = values(batch * classes, seed: UInt64(batch * 31 + classes), scale: scale).map { Float($0) }
            let y = values(batch * classes, seed: UInt64(classes), scale: 1).map { $0 > 0.2 ? Float(1) : 0 }
            let got = try Loss.bceWithLogits(logits: x, targets: y, batch: batch, classes: classes)
            let want = Loss.bceWithLogitsReference(logits: x.map(Double.init), targets: y.map(Double.init), batch: batch, classes: classes)
            XCTAssertEqual(Double(got.loss), want.loss, accuracy: 1e-6 * max(1, want.loss), "\(batch)x\(classes)")
            assertClose(got.dLogits, want.dLogits, relL2: 1e-6, "bce dLogits \(batch)x\(classes)")
        }
    }

    func testBCEGradientMatchesFiniteDifferencesOfOracle() {
        let batch = 3, classes = 4
        let x = values(batch * classes, seed: 7, scale: 3)
        let y = values(batch * classes, seed: 8, scale: 1).map { $0 > 0 ? 1.0 : 0.3 } // soft targets too
        let d = Loss.bceWithLogitsReference(logits: x, targets: y, batch: batch, classes: classes).dLogits
        let h = 1e-6
        for i in x.indices {
            var p = x, m = x
            p[i] += h; m[i] -= h
            let fd = (Loss.bceWithLogitsReference(logits: p, targets: y, batch: batch, classes: classes).loss
                - Loss.bceWithLogitsReference(logits: m, targets: y, batch: batch, classes: classes).loss) / (2 * h)
            XCTAssertEqual(d[i], fd, accuracy: 1e-8, "logit \(i)")
        }
    }

    func testBCEIsFiniteForHugeLogits() throws {
        let r = try Loss.bceWithLogits(logits: [1000, -1000, 88, -88], targets: [0, 1, 1, 0], batch: 1, classes: 4)
        XCTAssertEqual(r.loss, Float((1000.0 + 1000.0) / 4), accuracy: 1e-3)
        XCTAssertEqual(r.dLogits[0 ..< 2], [0.25, -0.25])
        XCTAssertEqual(r.dLogits[2], 0, accuracy: 1e-38)   // sigmoid(88) - 1 underflows ...
        XCTAssertEqual(r.dLogits[3], 0, accuracy: 1e-38)   // ... sigmoid(-88) / 4 is a denormal
        XCTAssertTrue(r.dLogits.allSatisfy(\.isFinite))
    }

    func testCrossEntropyMatchesFloat64OracleWithAndWithoutSmoothing() throws {
        for (batch, classes, eps) in [(1, 2, 0.0), (4, 9, 0.0), (4, 9, 0.1), (5, 400, 0.2)] {
            let x = values(batch * classes, seed: UInt64(batch + classes), scale: 5).map { Float($0) }
            let labels = (0 ..< batch).map { ($0 * 7 + 3) % classes }
            let got = try Loss.softmaxCrossEntropy(logits: x, labels: labels, batch: batch, classes: classes, labelSmoothing: Float(eps))
            let want = Loss.softmaxCrossEntropyReference(logits: x.map(Double.init), labels: labels, batch: batch, classes: classes,
                                                         labelSmoothing: Double(Float(eps)))
            XCTAssertEqual(Double(got.loss), want.loss, accuracy: 1e-6 * max(1, want.loss))
            assertClose(got.dLogits, want.dLogits, relL2: 1e-6, "ce dLogits \(batch)x\(classes) eps \(eps)")
        }
    }

    func testCrossEntropyGradientMatchesFiniteDifferencesOfOracle() {
        let batch = 3, classes = 5
        let x = values(batch * classes, seed: 11, scale: 2)
        let labels = [4, 0, 2]
        for eps in [0.0, 0.15] {
            let d = Loss.softmaxCrossEntropyReference(logits: x, labels: labels, batch: batch, classes: classes, labelSmoothing: eps).dLogits
            let h = 1e-6
            for i in x.indices {
                var p = x, m = x
                p[i] += h; m[i] -= h
                let fd = (Loss.softmaxCrossEntropyReference(logits: p, labels: labels, batch: batch, classes: classes, labelSmoothing: eps).loss
                    - Loss.softmaxCrossEntropyReference(logits: m, labels: labels, batch: batch, classes: classes, labelSmoothing: eps).loss) / (2 * h)
                XCTAssertEqual(d[i], fd, accuracy: 1e-8, "logit \(i) eps \(eps)")
            }
        }
    }

    func testLossesMatchTorchFunctional() throws {
        let f = try TrainFixtures.load("train/loss_ref.safetensors")
        let shape = try XCTUnwrap(f.tensors["logits"]).shape
        let (batch, classes) = (shape[0], shape[1])

        let bce = try Loss.bceWithLogits(logits: try f.floats("logits"), targets: try f.floats("bce_targets"), batch: batch, classes: classes)
        let bceLoss = try f.doubles("bce.loss")[0]
        XCTAssertEqual(Double(bce.loss), bceLoss, accuracy: 1e-6 * bceLoss, "bce loss vs torch float64")
        XCTAssertEqual(Double(bce.loss), try f.doubles("bce.loss_f32")[0], accuracy: 1e-5 * bceLoss, "bce loss vs torch float32")
        assertClose(bce.dLogits, try f.doubles("bce.dlogits"), relL2: 1e-6, "bce dLogits vs torch")

        let labels = try f.ints("ce_labels")
        for (name, eps) in [("ce", Float(0)), ("ce_smooth", 0.1)] {
            let ce = try Loss.softmaxCrossEntropy(logits: try f.floats("ce_logits"), labels: labels, batch: batch, classes: classes,
                                                  labelSmoothing: eps)
            let want = try f.doubles("\(name).loss")[0]
            XCTAssertEqual(Double(ce.loss), want, accuracy: 1e-6 * want, "\(name) loss vs torch float64")
            XCTAssertEqual(Double(ce.loss), try f.doubles("\(name).loss_f32")[0], accuracy: 1e-5 * want, "\(name) loss vs torch float32")
            assertClose(ce.dLogits, try f.doubles("\(name).dlogits"), relL2: 1e-6, "\(name) dLogits vs torch")
        }
    }

    func testBadInputsAreTypedErrorsNamingTheProblem() {
        XCTAssertThrowsError(try Loss.bceWithLogits(logits: [0, 0, 0], targets: [0, 0, 0], batch: 2, classes: 2)) {
            XCTAssertTrue("\($0)".contains("expected batch 2 x classes 2"), "\($0)")
        }
        XCTAssertThrowsError(try Loss.bceWithLogits(logits: [0, 0], targets: [0, 2], batch: 1, classes: 2)) {
            XCTAssertTrue("\($0)".contains("target 2.0 at sample 0, class 1 is outside [0, 1]"), "\($0)")
        }
        XCTAssertThrowsError(try Loss.softmaxCrossEntropy(logits: [0, 0], labels: [2], batch: 1, classes: 2)) {
            XCTAssertTrue("\($0)".contains("label 2 of sample 0"), "\($0)")
        }
        XCTAssertThrowsError(try Loss.multiHotTargets([[0], [-1]], classes: 3)) {
            XCTAssertTrue("\($0)".contains("label -1 of sample 1"), "\($0)")
        }
    }

    func testMultiHotTargets() throws {
        XCTAssertEqual(try Loss.multiHotTargets([[0, 2], [], [1]], classes: 3), [1, 0, 1, 0, 0, 0, 0, 1, 0])
    }
}
