// A recipe that holds at any batch (issue 14, part 3): the study's learning rates are for batch 8 and
// scale linearly for the batch chosen unless the user sets them; a loss that blows up (above 8x the
// loss of predicting nothing) stops the run with the epoch, the figures and the hint, before that
// epoch is kept. Through the binary, on data like the demo's (`sfnet data synth`, its four motions).

import Formats
import Foundation
import XCTest

final class RecipeScalingCLITests: XCTestCase {
    func demoData(_ dir: URL) throws -> URL {
        let data = dir.appendingPathComponent("data")
        let r = try CLI.run(["data", "synth", "-o", data.path, "--train-per-class", "6", "--val-per-class", "2", "--test-per-class", "2",
                             "--size", "64", "--object-scale", "3", "--noise", "2", "--seed", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return data
    }

    /// Batch 2 with the default recipe (no --lr, --warmup-start-lr or --warmup-epochs): the rates are scaled by
    /// 2/8, said in the run's first lines and recorded, and the run goes past the 5 warm-up epochs to the full
    /// (scaled) rate without the loss ever nearing the blow-up rule.
    func testBatchTwoWithTheDefaultRecipeScalesTheRateAndDoesNotDiverge() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try demoData(dir)
        let run = dir.appendingPathComponent("run")
        let r = try CLI.run(["finetune", "--init", "scratch", "--arch", FinetuneCLITests.arch, "--train", data.appendingPathComponent("train.csv").path,
                             "--out", run.path, "--batch", "2", "--epochs", "6", "--crop", "64", "--jitter", "64", "72",
                             "--sampling-rate", "4", "--seed", "1"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("learning rate scaled for batch 2") && r.stdout.contains("0.0375 x 2/8 = 0.009375"), r.stdout)
        let metrics = try Data(contentsOf: run.appendingPathComponent("metrics.json")).withUnsafeBytes { try JSONParser.parse($0) }
        guard case .array(let epochs)? = metrics["epochs"] else { return XCTFail("epochs") }
        XCTAssertEqual(epochs.count, 6)
        for e in epochs {
            guard case .number(let loss, _, _)? = e["trainLoss"] else { return XCTFail("trainLoss in \(e.serialized)") }
            XCTAssertLessThan(loss, 2 * log(2.0), "BCE stays near or below the loss of predicting nothing: \(e.serialized)")
        }
        guard case .array(let settings)? = metrics["settings"] else { return XCTFail("settings") }
        let lr = settings.first { $0["key"]?.stringValue == "learning rate" }?["value"]?.stringValue ?? ""
        XCTAssertTrue(lr.contains("linear scaling for batch 2") && lr.contains("0.009375"), lr)
        // A rate given on the command line is the user's: not scaled.
        let given = try CLI.run(["finetune", "--init", "scratch", "--arch", FinetuneCLITests.arch, "--train", data.appendingPathComponent("train.csv").path,
                                 "--out", dir.appendingPathComponent("given").path, "--batch", "2", "--epochs", "1", "--lr", "0.01",
                                 "--crop", "64", "--jitter", "64", "72", "--sampling-rate", "4", "--seed", "1"])
        XCTAssertEqual(given.status, 0, given.stderr)
        XCTAssertFalse(given.stdout.contains("scaled for batch"), given.stdout)
    }

    /// A deliberately too-high rate: the epoch's mean loss passes 8 ln 2 and the run stops naming the epoch,
    /// the loss, the threshold, the rate and the hint, without a checkpoint for that epoch.
    func testALossThatBlowsUpStopsTheRunWithTheEpochTheFiguresAndTheHint() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try demoData(dir)
        let run = dir.appendingPathComponent("run")
        let r = try CLI.run(["finetune", "--init", "scratch", "--arch", FinetuneCLITests.arch, "--train", data.appendingPathComponent("train.csv").path,
                             "--out", run.path, "--batch", "2", "--epochs", "2", "--lr", "2", "--warmup-epochs", "0", "--crop", "64",
                             "--jitter", "64", "72", "--sampling-rate", "4", "--seed", "1"])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("training diverged in epoch 1: the mean training loss is")
                      && r.stderr.contains("above 8x the loss of predicting nothing (0.693)")
                      && r.stderr.contains("lower --lr (the rate was 2 here)"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.appendingPathComponent("checkpoint-epoch001.safetensors").path))
    }
}
