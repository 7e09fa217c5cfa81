// The LR schedule against PySlowFast's get_lr_at_epoch
// (fixtures/train/schedule_ref.safetensors, generate_train_opt.py restates
// slowfast/utils/lr_policy.py) and hand-checked points of the study's recipe.

import XCTest
import Formats
@testable import Train

final class ScheduleTests: XCTestCase {
    func schedule(from s: JSONValue) throws -> LRSchedule {
        func num(_ k: String) throws -> Double {
            guard case .number(let d, _, _)? = s[k] else { throw XCTSkip("schedule lacks '\(k)'") }
            return d
        }
        let policy: LRSchedule.Policy
        switch s["policy"]?.stringValue {
        case "constant": policy = .constant
        case "cosine": policy = .cosine(endLR: try num("end_lr"), afterWarmup: s["cosine_after_warmup"] == .bool(true))
        case "steps_with_relative_lrs":
            guard case .array(let b)? = s["steps"], case .array(let r)? = s["lrs"] else { throw XCTSkip("steps schedule lacks steps/lrs") }
            func d(_ v: JSONValue) -> Double { if case .number(let x, _, _) = v { return x }; return .nan }
            policy = .steps(boundaries: b.map(d), relativeLRs: r.map(d))
        default: throw XCTSkip("unknown policy \(String(describing: s["policy"]))")
        }
        return LRSchedule(baseLR: try num("base_lr"), warmupEpochs: try num("warmup_epochs"), warmupStartLR: try num("warmup_start_lr"),
                          maxEpochs: try num("max_epoch"), policy: policy)
    }

    func testEveryPolicyMatchesPySlowFastAtFractionalEpochs() throws {
        let f = try TrainFixtures.load("train/schedule_ref.safetensors")
        guard case .object(let schedules) = try TrainFixtures.metadataJSON(f, "sfnet.schedules") else { return XCTFail("no schedules") }
        XCTAssertEqual(schedules.count, 5)
        let epochs = try f.doubles("epochs")
        for (name, spec) in schedules {
            let s = try schedule(from: spec)
            try s.validate()
            let want = try f.doubles("lr.\(name)")
            for (i, e) in epochs.enumerated() {
                XCTAssertEqual(s.lr(atEpoch: e), want[i], accuracy: 1e-15 + 1e-12 * want[i], "\(name) at epoch \(e)")
            }
        }
    }

    func testStudyWarmUpPerIteration() {
        let s = LRSchedule.study()
        XCTAssertEqual(s.lr(epoch: 0, iteration: 0, itersPerEpoch: 10), 0.00085)
        // 0.00085 + e * (0.0375 - 0.00085) / 5
        XCTAssertEqual(s.lr(epoch: 0, iteration: 5, itersPerEpoch: 10), 0.00085 + 0.5 * 0.03665 / 5, accuracy: 1e-15)
        XCTAssertEqual(s.lr(epoch: 4, iteration: 9, itersPerEpoch: 10), 0.00085 + 4.9 * 0.03665 / 5, accuracy: 1e-15)
        XCTAssertEqual(s.lr(epoch: 5, iteration: 0, itersPerEpoch: 10), 0.0375)
        XCTAssertEqual(s.lr(epoch: 19, iteration: 9, itersPerEpoch: 10), 0.0375)
        // Monotone non-decreasing through warm-up.
        let lrs = (0 ..< 60).map { s.lr(epoch: $0 / 10, iteration: $0 % 10, itersPerEpoch: 10) }
        XCTAssertEqual(lrs, lrs.sorted())
    }

    func testCosineWarmsUpToTheCosineValueAtTheEndOfWarmUp() {
        // PySlowFast: without COSINE_AFTER_WARMUP the line ends at cosine(warmup), not at the base LR.
        let s = LRSchedule(baseLR: 0.1, warmupEpochs: 5, warmupStartLR: 0.01, maxEpochs: 10, policy: .cosine(endLR: 0, afterWarmup: false))
        XCTAssertEqual(s.lr(atEpoch: 5), 0.05, accuracy: 1e-15)
        XCTAssertEqual(s.lr(atEpoch: 4.999999), 0.05, accuracy: 1e-7)
        XCTAssertEqual(s.lr(atEpoch: 10), 0, accuracy: 1e-15)
        let after = LRSchedule(baseLR: 0.1, warmupEpochs: 5, warmupStartLR: 0.01, maxEpochs: 10, policy: .cosine(endLR: 0, afterWarmup: true))
        XCTAssertEqual(after.lr(atEpoch: 5), 0.1, accuracy: 1e-15)
    }

    func testScheduleRoundTripsThroughJSON() throws {
        for s in [LRSchedule.study(), LRSchedule(baseLR: 1, maxEpochs: 3, policy: .steps(boundaries: [0, 1], relativeLRs: [1, 0.1])),
                  LRSchedule(baseLR: 1, maxEpochs: 3, policy: .cosine(endLR: 0.5, afterWarmup: true))] {
            let data = try JSONEncoder().encode(s)
            XCTAssertEqual(try JSONDecoder().decode(LRSchedule.self, from: data), s)
        }
    }

    func testInvalidSchedulesNameTheOption() {
        let cases: [(LRSchedule, String)] = [
            (LRSchedule(baseLR: -1, maxEpochs: 1), "option lr"),
            (LRSchedule(baseLR: 1, warmupEpochs: -1, maxEpochs: 1), "option warmup-epochs"),
            (LRSchedule(baseLR: 1, maxEpochs: 0), "option epochs"),
            (LRSchedule(baseLR: 1, maxEpochs: 5, policy: .cosine(endLR: 2, afterWarmup: false)), "option cosine-end-lr"),
            (LRSchedule(baseLR: 1, maxEpochs: 5, policy: .steps(boundaries: [0, 2], relativeLRs: [1])), "pair up"),
            (LRSchedule(baseLR: 1, maxEpochs: 5, policy: .steps(boundaries: [1], relativeLRs: [1])), "first step boundary"),
            (LRSchedule(baseLR: 1, maxEpochs: 5, policy: .steps(boundaries: [0, 3, 2], relativeLRs: [1, 1, 1])), "must increase"),
        ]
        for (s, text) in cases {
            XCTAssertThrowsError(try s.validate(), text) { XCTAssertTrue("\($0)".contains(text), "\($0) lacks \(text)") }
        }
    }
}
