// `--config` through the binary: --print-config with command-line overrides, hostile YAML refused
// with nothing written, and a tiny fine-tuning run from a PySlowFast-style config on synthetic data.

import Foundation
import XCTest
@testable import Formats

final class ConfigCLITests: XCTestCase {
    static let ak = CLI.fixture("yaml/AK_SLOWFAST_8x8_R50.yaml")

    func testPrintConfigShowsEachSettingsSourceAndCommandLineOverrides() throws {
        let r = try CLI.run(["finetune", "--config", Self.ak, "--init", "scratch", "--print-config", "--epochs", "3", "--ensemble", "sum"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        func row(_ name: String) -> String { lines.first { $0.hasPrefix(name + " ") } ?? "" }
        XCTAssertTrue(row("epochs").contains("3") && row("epochs").hasSuffix("command line"), row("epochs"))
        XCTAssertTrue(row("ensemble").contains("sum") && row("ensemble").hasSuffix("command line"), row("ensemble"))
        XCTAssertTrue(row("batch").hasSuffix("file TRAIN.BATCH_SIZE (line 6)"), row("batch"))
        XCTAssertTrue(row("bgr").contains("true"), row("bgr"))
        XCTAssertTrue(row("nesterov").hasSuffix("PySlowFast default SOLVER.NESTEROV"), row("nesterov"))
        XCTAssertTrue(row("threads").hasSuffix("default"), row("threads"))
        XCTAssertTrue(r.stdout.contains("NUM_GPUS: 4 (line 78): sfnet trains in one process"), r.stdout)
        // BN.USE_PRECISE_STATS False in the file: precise BN off; --precise-bn turns it on over the config.
        XCTAssertTrue(row("precise-bn").contains("0 (off)") && row("precise-bn").contains("file BN."), row("precise-bn"))
        let on = try CLI.run(["finetune", "--config", Self.ak, "--init", "scratch", "--print-config", "--precise-bn", "20"])
        XCTAssertEqual(on.status, 0, on.stderr)
        let preciseRow = on.stdout.split(separator: "\n").first { $0.hasPrefix("precise-bn ") } ?? ""
        XCTAssertTrue(preciseRow.contains("20 batches") && preciseRow.hasSuffix("command line"), String(preciseRow))
    }

    func testHostileConfigsAreRefusedWithTheirErrorAndNothingWritten() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let cases: [(String, String, String)] = [
            ("laughs.yaml", "a: &a [lol, lol]\nb: &b [*a, *a]\nc: [*b, *b]\n", "laughs.yaml:1: anchors and aliases"),
            ("tag.yaml", "TRAIN:\n  DATASET: !!python/object/apply:os.system [\"touch pwned\"]\n", "tag.yaml:2: YAML tags"),
            ("merge.yaml", "TRAIN:\n  <<: {BATCH_SIZE: 8}\n", "merge.yaml:2: merge keys"),
            ("multi.yaml", "NUM_GPUS: 1\n---\nNUM_GPUS: 2\n", "multi.yaml:2: a second YAML document"),
            ("x3d.yaml", "MODEL:\n  ARCH: x3d\n", "x3d.yaml:2: MODEL.ARCH: x3d is not supported"),
        ]
        for (name, text, expected) in cases {
            let path = dir.appendingPathComponent(name).path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let out = dir.appendingPathComponent("run-" + name)
            let r = try CLI.run(["finetune", "--config", path, "--init", "scratch", "--train", "none.csv", "--out", out.path])
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains(expected), "\(name): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "\(name): run directory written")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "pwned"))
    }

    /// A PySlowFast-style config drives a tiny run (the tiny architecture from the command line); the
    /// run's metrics.json records every setting taken from the file and the ignored keys.
    func testFinetuneFromAConfigRecordsEverySettingItTook() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data")
        let s = try CLI.run(["data", "synth", "-o", data.path, "--classes", "moving_across,resting", "--train-per-class", "4",
                             "--val-per-class", "2", "--test-per-class", "2", "--size", "64", "--object-scale", "3", "--noise", "0", "--seed", "7"])
        XCTAssertEqual(s.status, 0, s.stderr)
        let config = dir.appendingPathComponent("tiny.yaml").path
        try """
        TRAIN: {DATASET: charades, BATCH_SIZE: 4}
        DATA:
          PATH_TO_DATA_DIR: \(data.path)
          NUM_FRAMES: 8
          SAMPLING_RATE: 4
          TRAIN_JITTER_SCALES: [64, 72]
          TRAIN_CROP_SIZE: 64
          TEST_CROP_SIZE: 64
          INV_UNIFORM_SAMPLE: True
          REVERSE_INPUT_CHANNEL: True
          MULTI_LABEL: True
          ENSEMBLE_METHOD: max
        SOLVER: {BASE_LR: 0.05, LR_POLICY: steps_with_relative_lrs, STEPS: [0, 1], LRS: [1, 0.1], MAX_EPOCH: 2,
                 WARMUP_EPOCHS: 0.5, WARMUP_START_LR: 0.01, WEIGHT_DECAY: 1e-4}
        MODEL: {NUM_CLASSES: 2, ARCH: slowfast, LOSS_FUNC: bce_loss, HEAD_ACT: sigmoid, DROPOUT_RATE: 0.2}
        TEST: {NUM_ENSEMBLE_VIEWS: 2, NUM_SPATIAL_CROPS: 1}
        NUM_GPUS: 1
        RNG_SEED: 1

        """.write(toFile: config, atomically: true, encoding: .utf8)
        let run = dir.appendingPathComponent("run")
        let r = try CLI.run(["finetune", "--config", config, "--init", "scratch", "--arch", FinetuneCLITests.arch,
                             "--test", data.appendingPathComponent("test.csv").path, "--out", run.path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let metrics = try Data(contentsOf: run.appendingPathComponent("metrics.json")).withUnsafeBytes { try JSONParser.parse($0) }
        guard case .array(let epochs)? = metrics["epochs"] else { return XCTFail("epochs") }
        XCTAssertEqual(epochs.count, 2, "SOLVER.MAX_EPOCH")
        guard case .array(let settings)? = metrics["settings"] else { return XCTFail("settings") }
        var recorded: [String: String] = [:]
        for s in settings { if let k = s["key"]?.stringValue, let v = s["value"]?.stringValue { recorded[k] = v } }
        XCTAssertEqual(recorded["config"], config)
        for key in ["TRAIN.BATCH_SIZE", "DATA.PATH_TO_DATA_DIR", "DATA.NUM_FRAMES", "DATA.SAMPLING_RATE", "DATA.TRAIN_JITTER_SCALES",
                    "DATA.TRAIN_CROP_SIZE", "DATA.TEST_CROP_SIZE", "DATA.INV_UNIFORM_SAMPLE", "DATA.REVERSE_INPUT_CHANNEL",
                    "DATA.ENSEMBLE_METHOD", "SOLVER.BASE_LR", "SOLVER.LR_POLICY", "SOLVER.STEPS", "SOLVER.LRS", "SOLVER.MAX_EPOCH",
                    "SOLVER.WARMUP_EPOCHS", "SOLVER.WARMUP_START_LR", "SOLVER.WEIGHT_DECAY", "MODEL.NUM_CLASSES", "MODEL.ARCH",
                    "MODEL.LOSS_FUNC", "MODEL.HEAD_ACT", "MODEL.DROPOUT_RATE", "TEST.NUM_ENSEMBLE_VIEWS", "TEST.NUM_SPATIAL_CROPS", "RNG_SEED"] {
            XCTAssertNotNil(recorded["config \(key)"], "\(key) not recorded: \(recorded.keys.sorted())")
        }
        XCTAssertNotNil(recorded["config NUM_GPUS (ignored)"])
        XCTAssertNotNil(recorded["config DATA.MULTI_LABEL (ignored)"])
        XCTAssertTrue(recorded["test views"]?.contains("2 x 1") == true && recorded["test views"]?.contains("max") == true, "\(recorded["test views"] ?? "")")
        XCTAssertTrue(recorded["clips"]?.contains("BGR") == true, recorded["clips"] ?? "")
        XCTAssertTrue(r.stdout.contains("test: mAP"), r.stdout)
    }
}
