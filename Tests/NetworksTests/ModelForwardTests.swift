// Forward-pass behaviour that the oracle comparison does not cover: output and
// activation shapes, input validation messages, repeatability across buffer
// reuse and thread counts, multiply-add counts and the profile.

import Families
import Convert
import Formats
import XCTest
@testable import Networks

final class ModelForwardTests: XCTestCase {
    private let config = TinyConfigs.slowFast

    private func inputs(_ n: Int = 1, t: Int = 2, size: Int = 32, seed: UInt64 = 1) -> [FloatTensor] {
        var rng = SeededGenerator(seed: seed)
        return [randomTensor([n, 3, t, size, size], &rng), randomTensor([n, 3, t * 4, size, size], &rng)]
    }

    func testTinySlowFastOutputAndActivationShapes() throws {
        let model = EvalNetwork.random(config: config, seed: 1)
        let out = try model.forward(inputs(2), capture: true)
        XCTAssertEqual(out.logits.shape, [2, 5])
        XCTAssertEqual(out.probabilities.shape, [2, 5])
        for n in 0..<2 {
            XCTAssertEqual(out.probabilities.values[(n * 5)..<(n * 5 + 5)].reduce(0, +), 1, accuracy: 1e-5)
        }
        let shapes = out.activations.map { "\($0.name) \($0.value.shape)" }
        XCTAssertEqual(shapes, [
            "s1.pathway0 [2, 4, 2, 8, 8]", "s1.pathway1 [2, 1, 8, 8, 8]",
            "s2.pathway0 [2, 16, 2, 8, 8]", "s2.pathway1 [2, 4, 8, 8, 8]",
            "s3.pathway0 [2, 32, 2, 4, 4]", "s3.pathway1 [2, 8, 8, 4, 4]",
            "s4.pathway0 [2, 64, 2, 2, 2]", "s4.pathway1 [2, 16, 8, 2, 2]",
            "s5.pathway0 [2, 128, 2, 1, 1]", "s5.pathway1 [2, 32, 8, 1, 1]",
            "head.pool [2, 160, 1, 1, 1]",
        ])
        // Without capture: the same numbers, no activations.
        let plain = try model.forward(inputs(2))
        XCTAssertTrue(plain.activations.isEmpty)
        XCTAssertEqual(plain.logits.values, out.logits.values)
    }

    func testLogitsArePreActivationWhenTheGridIsOnePosition() throws {
        let model = EvalNetwork.random(config: config, seed: 2)
        let out = try model.forward(inputs())
        assertClose(softmaxNaive(out.logits), out.probabilities, atol: 1e-6, rtol: 1e-5)
    }

    func testRepeatedForwardsReuseBuffersAndAgree() throws {
        let model = EvalNetwork.random(config: config, seed: 3)
        let x = inputs(seed: 4)
        let first = try model.forward(x, capture: true)
        _ = try model.forward(inputs(seed: 5)) // different data through the recycled buffers
        let again = try model.forward(x, capture: true)
        XCTAssertEqual(first.logits.values, again.logits.values)
        for (a, b) in zip(first.activations, again.activations) { XCTAssertEqual(a.value.values, b.value.values, a.name) }
        XCTAssertEqual(x[0].shape, [1, 3, 2, 32, 32], "inputs are left as they were")
    }

    func testThreadCountsAgree() throws {
        let saved = (Threading.threads, Threading.splitGemms)
        defer { Threading.setThreads(saved.0, splitGemms: saved.1) }
        // Width 16 makes the GEMMs big enough (> 1M multiply-adds) to be split.
        var c = config
        c.widthPerGroup = 16
        c.stageDepths = [2, 2, 2, 2]
        let model = EvalNetwork.random(config: c, seed: 6)
        let x = inputs(size: 64, seed: 7)
        Threading.setThreads(1)
        let one = try model.forward(x)
        for (threads, split) in [(2, true), (3, true), (2, false)] {
            Threading.setThreads(threads, splitGemms: split)
            assertClose(try model.forward(x).logits, one.logits, atol: 1e-5, rtol: 1e-4, "threads \(threads) split \(split)")
        }
    }

    private func inputError(_ model: EvalNetwork, _ shapes: [[Int]]) -> String {
        do {
            _ = try model.forward(shapes.map { FloatTensor(zeros: $0) })
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    func testInputProblemsAreReportedNotTrapped() {
        let model = EvalNetwork.random(config: config, seed: 1)
        let cases: [([[Int]], String)] = [
            ([[1, 3, 2, 32, 32]], "slowfast takes 2 inputs (slow, fast), got 1"),
            ([[1, 3, 2, 32, 32], [1, 3, 4, 32, 32]], "slow has 2 frames and fast 4: with alpha 4 fast needs 8"),
            ([[1, 1, 2, 32, 32], [1, 3, 8, 32, 32]], "input 0 (slow) has shape [1,1,2,32,32]: expected 3 (RGB) channels"),
            ([[1, 3, 2, 32, 32], [1, 3, 8, 32, 40]], "spatial sizes differ: slow 32x32, fast 32x40"),
            ([[1, 3, 2, 32, 32], [2, 3, 8, 32, 32]], "batch sizes differ"),
            ([[1, 3, 32, 32], [1, 3, 8, 32, 32]], "expected (N, 3, T, H, W)"),
            ([[1, 3, 1, 32, 32], [1, 3, 4, 32, 32]], "smaller than the training clip"),
            ([[0, 3, 2, 32, 32], [0, 3, 8, 32, 32]], "every dimension must be >= 1"),
        ]
        for (shapes, expected) in cases {
            let message = inputError(model, shapes)
            XCTAssertTrue(message.contains(expected), "\(shapes): \(message)")
        }
        var wideCrop = config
        wideCrop.trainCrop = 64
        XCTAssertTrue(inputError(EvalNetwork.random(config: wideCrop, seed: 1), [[1, 3, 2, 32, 32], [1, 3, 8, 32, 32]])
            .contains("the training clip's kernel (2, 2, 2)"))
        // Longer clips than the training clip give pathway grids that cannot line up.
        XCTAssertTrue(inputError(model, [[1, 3, 4, 32, 32], [1, 3, 16, 32, 32]]).contains("grids differ"))
    }

    func testMultiplyAddsOfSlowFastR50At224() throws {
        // 50.3 G multiply-adds for the convolutions (65.7 GFLOPs as fvcore counts at 256).
        let model = EvalNetwork.random(config: ArchConfig.preset(named: "slowfast-r50-8x8")!, seed: 0)
        let macs = try model.multiplyAdds(forInputs: [[1, 3, 8, 224, 224], [1, 3, 32, 224, 224]])
        XCTAssertEqual(Double(macs) / 1e9, 50.3, accuracy: 0.1)
        let at256 = try model.multiplyAdds(forInputs: [[1, 3, 8, 256, 256], [1, 3, 32, 256, 256]])
        XCTAssertEqual(Double(at256) / 1e9, 65.7, accuracy: 0.1)
        XCTAssertEqual(model.headPoolKernels, [Size3(8, 7, 7), Size3(32, 7, 7)])
    }

    func testProfileAccountsForEveryLayerKind() throws {
        let model = EvalNetwork.random(config: config, seed: 1)
        let profile = ForwardProfile()
        _ = try model.forward(inputs(), profile: profile)
        _ = try model.forward(inputs(), profile: profile)
        XCTAssertEqual(profile.passes, 2)
        for kind in ["conv stem", "conv 1x1x1", "conv Tx1x1", "conv 1x3x3", "conv 1x3x3 strided",
                     "conv 1x1x1 strided", "pool", "fuse/concat (conv_f2s)", "head"] {
            XCTAssertNotNil(profile.kinds[kind], kind)
        }
        XCTAssertEqual(profile.layers["s1.pathway1_stem.conv"]?.calls, 2)
        let report = profile.report()
        XCTAssertTrue(report.contains("by op kind:") && report.contains("s5") && report.contains("slowest layers:"), report)
    }
}
