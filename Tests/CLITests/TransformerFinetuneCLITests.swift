// VideoMAE and TimeSformer fine-tuning through the binary (issue 16, item 3): a tiny Hugging Face folder
// converts, passes `sfnet verify` against transformers' logits, fine-tunes one epoch with the transformers'
// recipe (AdamW, layer-wise LR decay, drop path, label smoothing: chosen by default and said), resumes to two,
// evaluates and predicts on data like the demo's; --print-config names the recipe as the source of each
// setting it chose and the user's own settings win; a TimeSformer clip other than its tables' is refused;
// `sfnet experiment` puts an X3D and the transformer starts in one table.

import Foundation
import XCTest
@testable import Formats

final class TransformerFinetuneCLITests: XCTestCase {
    static let x3dArch = #"{"model":"x3d","num_classes":4,"dropout":0.5,"head_activation":"softmax","num_frames":4,"train_crop":32,"width_factor":0.5,"depth_factor":1.0,"bottleneck_factor":2.25,"dim_c1":12,"dim_c5":32,"se_ratio":0.0625,"channelwise":true,"swish_inner":true,"bn_lin5":false,"scale_res2":false,"stem_temporal_kernel":5,"block_temporal_kernel":3}"#

    /// 4 classes of synthetic MP4s (4 train, 2 val, 2 test per class), 64x64: the tiny transformers' 32² crop fits.
    func data(_ dir: URL) throws -> URL {
        let data = dir.appendingPathComponent("data")
        let s = try CLI.run(["data", "synth", "-o", data.path, "--train-per-class", "4", "--val-per-class", "2", "--test-per-class", "2",
                             "--size", "64", "--seed", "1"])
        XCTAssertEqual(s.status, 0, s.stderr)
        return data
    }

    /// The tiny Hugging Face folder converted to native weights that pass verify (the finetune gate).
    func convertAndVerify(_ family: String, in dir: URL, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let w = dir.appendingPathComponent("\(family).safetensors").path
        let c = try CLI.run(["convert", CLI.fixture("transformers/tiny_\(family)"), "-o", w])
        XCTAssertEqual(c.status, 0, c.stdout + c.stderr, file: file, line: line)
        XCTAssertTrue(c.stdout.contains("architecture from config.json: \(family), width 24, 2 layers"), c.stdout, file: file, line: line)
        let v = try CLI.run(["verify", w, "--reference", CLI.fixture("transformers/tiny_\(family)_ref.safetensors")])
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr, file: file, line: line)
        XCTAssertTrue(v.stdout.contains("PASSED"), v.stdout, file: file, line: line)
        return w
    }

    func metrics(_ run: URL) throws -> JSONValue {
        try Data(contentsOf: run.appendingPathComponent("metrics.json")).withUnsafeBytes { try JSONParser.parse($0) }
    }

    func setting(_ m: JSONValue, _ key: String) -> String? {
        guard case .array(let s)? = m["settings"] else { return nil }
        return s.first { $0["key"]?.stringValue == key }?["value"]?.stringValue
    }

    /// convert, verify, finetune 1 epoch, resume to 2, eval, predict.
    func endToEnd(_ family: String) throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try data(dir)
        let w = try convertAndVerify(family, in: dir)
        let run = dir.appendingPathComponent("run")
        func finetune(epochs: Int, resume: Bool) throws -> RunResult {
            try CLI.run(["finetune", "--weights", w, "--train", data.appendingPathComponent("train.csv").path,
                         "--val", data.appendingPathComponent("val.csv").path, "--test", data.appendingPathComponent("test.csv").path,
                         "--out", run.path, "--batch", "4", "--epochs", "\(epochs)", "--sampling-rate", "4", "--seed", "1"]
                        + (resume ? ["--resume"] : []))
        }
        let first = try finetune(epochs: 1, resume: false)
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        XCTAssertTrue(first.stdout.contains("epoch 1/1"), first.stdout)
        // The start passed verify (the gate), its 5-class classifier became the data's 4, and the recipe says itself.
        XCTAssertTrue(first.stdout.contains("start weights verified against"), first.stdout)
        XCTAssertTrue(first.stdout.contains("classifier replaced: 5 -> 4 classes"), first.stdout)
        XCTAssertTrue(first.stdout.contains("learning rate from the \(family) recipe: base 0.0005 per 256 clips x 4/256"), first.stdout)
        XCTAssertTrue(first.stdout.contains("AdamW (0.9, 0.999), weight decay 0.05 (none on biases, norms and embeddings), "
                                            + "layer-wise LR decay 0.75 (embeddings at 0.422 of the base LR), drop path 0.1, label smoothing 0.1"),
                      first.stdout)
        let m1 = try metrics(run)
        XCTAssertTrue(setting(m1, "optimizer")?.hasPrefix("AdamW (0.9, 0.999), weight decay 0.05") ?? false, "\(setting(m1, "optimizer") ?? "none")")
        XCTAssertTrue(setting(m1, "learning rate")?.contains("then cosine to 1e-06 after warm-up") ?? false, "\(setting(m1, "learning rate") ?? "none")")
        // The checkpoint carries AdamW's moments for every parameter, which the resume reads back.
        let ckpt = try CheckpointReader.read(path: run.appendingPathComponent("checkpoint-epoch001.safetensors").path)
        let params = ckpt.tensors.names.filter { !$0.hasPrefix("optimizer.") }
        XCTAssertEqual(family == "videomae" ? 36 : 49, params.count)
        for p in params {
            XCTAssertEqual(ckpt.tensors["optimizer.exp_avg." + p]?.shape, ckpt.tensors[p]?.shape, p)
            XCTAssertEqual(ckpt.tensors["optimizer.exp_avg_sq." + p]?.shape, ckpt.tensors[p]?.shape, p)
        }
        XCTAssertTrue(ckpt.metadataValue("sfnet.optimizer")?.contains("\"type\":\"adamw\"") ?? false, ckpt.metadataValue("sfnet.optimizer") ?? "none")

        let second = try finetune(epochs: 2, resume: true)
        XCTAssertEqual(second.status, 0, second.stdout + second.stderr)
        XCTAssertTrue(second.stdout.contains("resuming after epoch 1 of 2"), second.stdout)
        XCTAssertTrue(second.stdout.contains("epoch 2/2") && !second.stdout.contains("epoch 1/2"), second.stdout)
        let m2 = try metrics(run)
        guard case .array(let epochs)? = m2["epochs"] else { return XCTFail("metrics.json has no epochs") }
        XCTAssertEqual(epochs.count, 2)

        let best = run.appendingPathComponent("best.safetensors").path
        let weights = try CheckpointReader.read(path: best)
        XCTAssertTrue(weights.metadataValue("sfnet.arch")?.contains("\"model\":\"\(family)\"") ?? false, weights.metadataValue("sfnet.arch") ?? "none")
        XCTAssertEqual(weights.tensors["classifier.weight"]?.shape, [4, 24])
        let e = try CLI.run(["eval", "--weights", best, "--data", data.appendingPathComponent("test.csv").path, "--sampling-rate", "4"])
        XCTAssertEqual(e.status, 0, e.stdout + e.stderr)
        XCTAssertTrue(e.stdout.contains("mAP"), e.stdout)
        let video = try XCTUnwrap(FileManager.default.enumerator(atPath: data.appendingPathComponent("videos").path)?
            .compactMap { $0 as? String }.sorted().first { $0.hasSuffix(".mp4") })
        let p = try CLI.run(["predict", "--weights", best, "--sampling-rate", "4", "--top-k", "4", data.appendingPathComponent("videos/" + video).path])
        XCTAssertEqual(p.status, 0, p.stdout + p.stderr)
        XCTAssertTrue(p.stdout.contains(video), p.stdout)
        let classes = try String(contentsOf: data.appendingPathComponent("classes.txt"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(classes.count, 4)
        XCTAssertTrue(classes.allSatisfy { p.stdout.contains(String($0)) }, "predict scores every class: \(p.stdout)")
    }

    func testTinyVideoMAEConvertsVerifiesFineTunesResumesEvaluatesAndPredicts() throws { try endToEnd("videomae") }

    func testTinyTimeSformerConvertsVerifiesFineTunesResumesEvaluatesAndPredicts() throws { try endToEnd("timesformer") }

    /// Killed after epoch 1 of 2 (--stop-after stands for the kill) and resumed, a run with the recipe's drop path
    /// (0.1) lands on the uninterrupted run's weights and AdamW moments bit for bit: data order, schedule, optimizer
    /// state and the drop-path masks (drawn from the seed and the epoch, reseeded at every epoch) all resume.
    func testAResumedVideoMAERunWithDropPathContinuesBitForBit() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try data(dir)
        let w = try convertAndVerify("videomae", in: dir)
        let args = ["finetune", "--weights", w, "--train", data.appendingPathComponent("train.csv").path, "--val", data.appendingPathComponent("val.csv").path,
                    "--batch", "4", "--epochs", "2", "--sampling-rate", "4", "--seed", "3"]
        let a = try assertResumedRunMatchesTheStraightOne(args, in: dir)
        XCTAssertEqual(a.tensors.names.filter { $0.hasPrefix("optimizer.exp_avg") }.count, 72)
    }

    /// A transformer start takes the recipe for every setting left at its default, and --print-config says where each
    /// came from; what the user sets (--lr, --optimizer, --weight-decay) wins over it.
    func testTheTransformerRecipeIsTheDefaultAndTheUsersSettingsWin() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        for family in ["videomae", "timesformer"] {
            let w = dir.appendingPathComponent("\(family).safetensors").path
            XCTAssertEqual(try CLI.run(["convert", CLI.fixture("transformers/tiny_\(family)"), "-o", w]).status, 0)
            func lines(_ extra: [String]) throws -> [String: String] {
                let r = try CLI.run(["finetune", "--weights", w, "--train", "train.csv", "--out", "run", "--batch", "4", "--print-config"] + extra)
                XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
                var out: [String: String] = [:]
                for l in r.stdout.split(separator: "\n") { out[String(l.prefix { $0 != " " })] = String(l) }
                return out
            }
            func check(_ l: [String: String], _ setting: String, _ value: String, _ source: String, file: StaticString = #filePath, line: UInt = #line) {
                let row = l[setting] ?? ""
                XCTAssertTrue(row.contains(" \(value) ") && row.hasSuffix(source), "\(family) \(setting): '\(row)'", file: file, line: line)
            }
            let recipe = "the \(family) recipe"
            let d = try lines([])
            check(d, "optimizer", "adamw", recipe)
            check(d, "lr", "7.8125e-06", recipe + ", scaled for batch 4")   // 5e-4 x 4 / 256
            check(d, "warmup-start-lr", "0.0", recipe)
            check(d, "weight-decay", "0.05", recipe)
            check(d, "layer-decay", "0.75", recipe)
            check(d, "drop-path", "0.1", recipe)
            check(d, "label-smoothing", "0.1", recipe)
            check(d, "schedule", "cosine", recipe)
            check(d, "cosine-end-lr", "1e-06", recipe)
            check(d, "adam-betas", "0.9 0.999", "default")
            check(d, "momentum", "(not used)", "default")
            check(d, "frames", "4", "the network (4 frames)")
            check(d, "crop", "32", "the network (32²)")

            let u = try lines(["--lr", "0.001", "--weight-decay", "0.1", "--label-smoothing", "0"])
            check(u, "lr", "0.001", "command line")
            check(u, "weight-decay", "0.1", "command line")
            check(u, "label-smoothing", "0.0", "command line")
            check(u, "optimizer", "adamw", recipe)
            let sgd = try lines(["--optimizer", "sgd", "--lr", "0.01"])
            check(sgd, "optimizer", "sgd", "command line")
            check(sgd, "momentum", "0.9", "default")
            check(sgd, "adam-betas", "(not used)", "default")
        }
        // The study's SlowFast keeps the study's recipe.
        let sf = try CLI.run(["finetune", "--init", "scratch", "--arch", "slowfast-r50-8x8", "--train", "train.csv", "--out", "run", "--print-config"])
        let opt = sf.stdout.split(separator: "\n").first { $0.hasPrefix("optimizer ") }.map(String.init) ?? ""
        XCTAssertTrue(opt.contains(" sgd ") && opt.hasSuffix("default"), opt)
    }

    /// TimeSformer's learned position and time tables fix its clip: other frames or crops are refused, with what to do.
    func testTimeSformerRefusesAClipOtherThanItsTables() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try data(dir)
        let w = try convertAndVerify("timesformer", in: dir)
        for extra in [["--frames", "8"], ["--crop", "64"]] {
            let run = dir.appendingPathComponent("run-\(extra[1])")
            let r = try CLI.run(["finetune", "--weights", w, "--train", data.appendingPathComponent("train.csv").path, "--out", run.path,
                                 "--batch", "4", "--epochs", "1"] + extra)
            XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
            XCTAssertTrue(r.stderr.contains("is a TimeSformer for 4 frames of 32² (its learned position and time tables)"), r.stderr)
            XCTAssertTrue(r.stderr.contains("would need them interpolated") && r.stderr.contains("leave --frames and --crop at the network's"), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: run.appendingPathComponent("checkpoint-epoch001.safetensors").path))
        }
    }

    /// An X3D (from scratch) and the tiny VideoMAE and TimeSformer starts, fine-tuned on the same subset, in one table.
    /// The experiment gives every start the same settings (here the tiny networks' 4x32² clip); note that a transformer
    /// start there trains with those settings (the study's SGD unless --optimizer says otherwise), not the recipe
    /// `sfnet finetune` picks for it.
    func testAnExperimentComparesAnX3DAndTheTransformerStartsInOneTable() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try data(dir)
        let videomae = try convertAndVerify("videomae", in: dir)
        let timesformer = try convertAndVerify("timesformer", in: dir)
        let arch = dir.appendingPathComponent("x3d-tiny.json")
        try Self.x3dArch.write(to: arch, atomically: true, encoding: .utf8)
        let exp = dir.appendingPathComponent("exp")
        let x = try CLI.run(["experiment", "--train", data.appendingPathComponent("train.csv").path, "--val", data.appendingPathComponent("val.csv").path,
                             "--test", data.appendingPathComponent("test.csv").path, "--arch", arch.path,
                             "--starts", "scratch,videomae=\(videomae),timesformer=\(timesformer)", "--per-class", "2", "--epochs", "1",
                             "--out", exp.path, "--batch", "4", "--crop", "32", "--jitter", "32", "40", "--frames", "4", "--sampling-rate", "4",
                             "--seed", "1"])
        XCTAssertEqual(x.status, 0, x.stdout + x.stderr)
        let rows = x.stdout.split(separator: "\n").map(String.init)
        for start in ["scratch", "videomae", "timesformer"] {
            XCTAssertTrue(rows.contains { $0.hasPrefix(start + " ") && $0.contains("%") }, "\(start) row: \(x.stdout)")
        }
        for (run, family) in [("scratch-2", "x3d"), ("videomae-2", "videomae"), ("timesformer-2", "timesformer")] {
            let best = try CheckpointReader.read(path: exp.appendingPathComponent("\(run)/best.safetensors").path)
            XCTAssertTrue(best.metadataValue("sfnet.arch")?.contains("\"model\":\"\(family)\"") ?? false, "\(run): \(best.metadataValue("sfnet.arch") ?? "none")")
        }
        let json = try Data(contentsOf: exp.appendingPathComponent("experiment.json")).withUnsafeBytes { try JSONParser.parse($0) }
        guard case .array(let cells) = json else { return XCTFail("experiment.json is not a list") }
        XCTAssertEqual(cells.compactMap { $0["start"]?.stringValue }, ["scratch", "videomae", "timesformer"])
        XCTAssertTrue(cells.allSatisfy { number($0["mAP"]) != nil }, "every cell has a test mAP")
    }
}
