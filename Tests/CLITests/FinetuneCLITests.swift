// `sfnet data synth`, `finetune`, `eval`, `predict` and `experiment` through the real
// binary on real MP4 files the project generates (issue 7, "What it must show").

import Foundation
import XCTest
@testable import Formats

func number(_ v: JSONValue?) -> Double? {
    if case .number(let d, _, _)? = v { return d }
    return nil
}

final class FinetuneCLITests: XCTestCase {
    static let arch = CLI.root.appendingPathComponent("examples/demo/tiny_slowfast.json").path

    /// The easy task: objects resting vs moving across (large objects, no noise), 24 train / 8 val / 8 test per class.
    func easyData(_ dir: URL, train: Int = 24) throws -> URL {
        let data = dir.appendingPathComponent("data")
        let r = try CLI.run(["data", "synth", "-o", data.path, "--classes", "moving_across,resting", "--train-per-class", "\(train)",
                             "--val-per-class", "8", "--test-per-class", "8", "--size", "64", "--object-scale", "3", "--noise", "0", "--seed", "7"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return data
    }

    static let recipe = ["--crop", "64", "--jitter", "64", "72", "--warmup-epochs", "1", "--batch", "8", "--lr", "0.05",
                         "--dropout", "0.2", "--sampling-rate", "4", "--seed", "1"]

    /// Fine-tuning from scratch on the easy task reaches val mAP >= 0.75 (chance is about 0.5), and the run
    /// directory holds what the README promises. Seeded, but 16 validation clips make the curve noisy and its
    /// peak depends on float rounding: measured on 2026-12-06 with OPENBLAS_CORETYPE PRESCOTT 0.85, HASWELL 0.88,
    /// SKYLAKEX 0.84, COOPERLAKE 0.76, ZEN 0.88.
    func testFinetuneLearnsTheEasyTaskAndWritesCheckpointsAndReports() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try easyData(dir)
        let run = dir.appendingPathComponent("run")
        let r = try CLI.run(["finetune", "--init", "scratch", "--arch", Self.arch, "--train", data.appendingPathComponent("train.csv").path,
                             "--val", data.appendingPathComponent("val.csv").path, "--test", data.appendingPathComponent("test.csv").path,
                             "--out", run.path, "--epochs", "10"] + Self.recipe)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        print(r.stdout)
        let files = try FileManager.default.contentsOfDirectory(atPath: run.path).sorted()
        XCTAssertEqual(files, ["best.safetensors", "checkpoint-epoch009.safetensors", "checkpoint-epoch010.safetensors",
                               "metrics.csv", "metrics.json", "report.html"])
        let metrics = try Data(contentsOf: run.appendingPathComponent("metrics.json")).withUnsafeBytes { try JSONParser.parse($0) }
        guard case .array(let epochs)? = metrics["epochs"] else { return XCTFail("epochs") }
        XCTAssertEqual(epochs.count, 10)
        let best = epochs.compactMap { number($0["valMAP"]) }.max() ?? 0
        XCTAssertGreaterThanOrEqual(best, 0.75, "best val mAP \(best) on resting vs moving_across")
        XCTAssertTrue(r.stdout.contains("test: mAP"), r.stdout)
        XCTAssertEqual(try String(contentsOf: run.appendingPathComponent("metrics.csv"), encoding: .utf8).split(separator: "\n").count, 11)
        let html = try String(contentsOf: run.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("Evaluation on test") && html.contains("Example clips"))
        // best.safetensors is native weights with class names: inspect, eval and predict read it.
        let ck = try CheckpointReader.read(path: run.appendingPathComponent("best.safetensors").path)
        XCTAssertEqual(ck.metadataValue("sfnet.classes"), "[\"moving_across\",\"resting\"]")
        XCTAssertEqual(try CLI.run(["inspect", run.appendingPathComponent("best.safetensors").path]).status, 0)
        let ev = try CLI.run(["eval", "--weights", run.appendingPathComponent("best.safetensors").path, "--data", data.appendingPathComponent("test.csv").path,
                              "--sampling-rate", "4", "--views", "3x2", "--json"])
        XCTAssertEqual(ev.status, 0, ev.stderr)
        let j = try Array(ev.stdout.utf8).withUnsafeBytes { try JSONParser.parse($0) }
        XCTAssertEqual(j["clips"]?.intValue, 16)
        let csv = dir.appendingPathComponent("pred.csv").path
        let videos = try String(contentsOf: data.appendingPathComponent("test.csv"), encoding: .utf8).split(separator: "\n").dropFirst().prefix(2)
            .map { data.appendingPathComponent(String($0.split(separator: ",")[0])).path }
        let p = try CLI.run(["predict", "--weights", run.appendingPathComponent("best.safetensors").path, "--top-k", "2", "--sampling-rate", "4",
                             "--csv", csv] + videos)
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertTrue(p.stdout.contains("moving_across") && p.stdout.contains("resting"), p.stdout)
        XCTAssertEqual(try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n").count, 1 + 2 * 2)
    }

    /// kill -9 while training, then --resume: the run ends with every epoch and no corrupt checkpoint.
    func testKilledRunResumesToTheEnd() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try easyData(dir, train: 8)
        let run = dir.appendingPathComponent("run")
        let args = ["finetune", "--init", "scratch", "--arch", Self.arch, "--train", data.appendingPathComponent("train.csv").path,
                    "--val", data.appendingPathComponent("val.csv").path, "--out", run.path, "--epochs", "4"] + Self.recipe
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Kill it once the first checkpoint is in place (mid-way through epoch 2).
        let first = run.appendingPathComponent("checkpoint-epoch001.safetensors").path
        let deadline = Date().addingTimeInterval(300)
        while !FileManager.default.fileExists(atPath: first) && Date() < deadline && p.isRunning { usleep(50_000) }
        usleep(300_000)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "the run ended before it could be killed")
        // Whatever is on disk is complete: every checkpoint reads back.
        for f in try FileManager.default.contentsOfDirectory(atPath: run.path) where f.hasPrefix("checkpoint-") {
            XCTAssertNoThrow(try CheckpointReader.read(path: run.appendingPathComponent(f).path), f)
        }
        // Without --resume the run directory is refused; with it the run finishes.
        let again = try CLI.run(args)
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.stderr.contains("--resume"), again.stderr)
        let r = try CLI.run(args + ["--resume"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("resuming after epoch"), r.stdout)
        XCTAssertTrue(r.stdout.contains("epoch 4/4"), r.stdout)
        let metrics = try Data(contentsOf: run.appendingPathComponent("metrics.json")).withUnsafeBytes { try JSONParser.parse($0) }
        guard case .array(let epochs)? = metrics["epochs"] else { return XCTFail("epochs") }
        XCTAssertEqual(epochs.map { $0["epoch"]?.intValue }, [1, 2, 3, 4])
        XCTAssertNoThrow(try CheckpointReader.read(path: run.appendingPathComponent("checkpoint-epoch004.safetensors").path))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: run.path).filter { $0.contains(".sfnet-tmp-") }
        XCTAssertEqual(leftovers, [])
    }

    /// --freeze 's*' --freeze-bn-stats: features cached once, only the head changes.
    func testHeadOnlyTrainsOnCachedFeaturesAndLeavesTheBackboneUntouched() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try easyData(dir, train: 6)
        let w = dir.appendingPathComponent("w.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", CLI.fixture("torch/tiny_pyslowfast.pyth"), "-o", w]).status, 0)
        XCTAssertEqual(try CLI.run(["verify", w, "--reference", CLI.fixture("reference/tiny_slowfast_8x8_ref.safetensors")]).status, 0)
        let run = dir.appendingPathComponent("run")
        let r = try CLI.run(["finetune", "--weights", w, "--train", data.appendingPathComponent("train.csv").path,
                             "--val", data.appendingPathComponent("val.csv").path, "--out", run.path, "--epochs", "5",
                             "--freeze", "s*", "--freeze-bn-stats", "--cache-views", "2", "--lr", "0.01"] + Self.recipe.filter { $0 != "0.05" && $0 != "--lr" })
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("computing the pooled features of 12 clips x 2 augmented views once"), r.stdout)
        XCTAssertTrue(r.stdout.contains("epoch 5/5"), r.stdout)
        let start = try CheckpointReader.read(path: w), end = try CheckpointReader.read(path: run.appendingPathComponent("checkpoint-epoch005.safetensors").path)
        var changed: [String] = []
        for (name, t) in start.tensors.ordered where !name.hasPrefix("head.") {
            guard let e = end.tensors[name] else { XCTFail("missing \(name)"); continue }
            if t.floats() != e.floats() && !name.hasSuffix("num_batches_tracked") { changed.append(name) }
        }
        XCTAssertEqual(changed, [], "frozen backbone tensors (and BN statistics) must not move")
        XCTAssertEqual(end.tensors["head.projection.weight"]?.shape, [2, 160])
    }

    func testRefusals() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try easyData(dir, train: 2)
        let w = dir.appendingPathComponent("w.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", CLI.fixture("torch/tiny_pyslowfast.pyth"), "-o", w]).status, 0)
        let train = data.appendingPathComponent("train.csv").path
        // Unverified weights: refused with the command to run; --skip-verify accepts and records it.
        let r = try CLI.run(["finetune", "--weights", w, "--train", train, "--out", dir.appendingPathComponent("r1").path, "--epochs", "1"] + Self.recipe)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("sfnet verify"), r.stderr)
        let ok = try CLI.run(["finetune", "--weights", w, "--train", train, "--out", dir.appendingPathComponent("r2").path, "--epochs", "1",
                              "--skip-verify"] + Self.recipe)
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.contains("verification skipped") && ok.stdout.contains("head replaced: 5 -> 2 classes"), ok.stdout)
        // Usage errors: exit 2.
        XCTAssertEqual(try CLI.run(["finetune", "--train", train, "--out", dir.path]).status, 2)
        XCTAssertEqual(try CLI.run(["finetune", "--init", "scratch", "--train", train, "--out", dir.path, "--jitter", "300"]).status, 2)
        // A manifest line that names no known class: exit 1 with file and line.
        let bad = dir.appendingPathComponent("bad.csv")
        try "path,labels\nvideos/x.mp4,flying\n".write(to: bad, atomically: true, encoding: .utf8)
        let b = try CLI.run(["finetune", "--init", "scratch", "--arch", Self.arch, "--train", bad.path, "--classes",
                             data.appendingPathComponent("classes.txt").path, "--out", dir.appendingPathComponent("r3").path] + Self.recipe)
        XCTAssertEqual(b.status, 1, b.stderr)
        XCTAssertTrue(b.stderr.contains("bad.csv:2"), b.stderr)
    }

    // MARK: SECURITY 31-32 (hostile corpus cases made by tests: see HostileCLITests.madeElsewhere)

    /// A damaged newest checkpoint: --resume goes back to the one before, says which file it skipped and
    /// why, runs the lost epoch again and finishes; every checkpoint damaged: refused, nothing overwritten.
    func testResumeSkipsADamagedNewestCheckpoint() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try easyData(dir, train: 2)
        let run = dir.appendingPathComponent("run")
        let args = ["finetune", "--init", "scratch", "--arch", Self.arch, "--train", data.appendingPathComponent("train.csv").path,
                    "--out", run.path] + Self.recipe
        XCTAssertEqual(try CLI.run(args + ["--epochs", "2"]).status, 0)
        let second = run.appendingPathComponent("checkpoint-epoch002.safetensors")
        let bytes = try Data(contentsOf: second)
        try bytes.prefix(bytes.count / 2).write(to: second)
        let r = try CLI.run(args + ["--epochs", "3", "--resume"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("skipped checkpoint-epoch002.safetensors"), r.stdout)
        XCTAssertTrue(r.stdout.contains("resuming after epoch 1 of 3"), r.stdout)
        XCTAssertTrue(r.stdout.contains("epoch 2/3") && r.stdout.contains("epoch 3/3"), r.stdout)
        for e in [2, 3] {
            XCTAssertNoThrow(try CheckpointReader.read(path: run.appendingPathComponent(String(format: "checkpoint-epoch%03d.safetensors", e)).path))
        }
        // Every checkpoint damaged: refused with the newest one's reason; the files stay as they are.
        for f in try FileManager.default.contentsOfDirectory(atPath: run.path) where f.hasPrefix("checkpoint-") {
            try Data("not a checkpoint".utf8).write(to: run.appendingPathComponent(f))
        }
        let before = try FileManager.default.contentsOfDirectory(atPath: run.path).sorted()
        let all = try CLI.run(args + ["--epochs", "4", "--resume"])
        XCTAssertEqual(all.status, 1, all.stdout + all.stderr)
        XCTAssertTrue(all.stderr.contains("none reads back") && all.stderr.contains("checkpoint-epoch003.safetensors"), all.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: run.path).sorted(), before)
    }

    /// NaN in one weight of converted weights: `verify` fails naming the tensor; `finetune --skip-verify`
    /// refuses them by name before training and writes no checkpoint.
    func testPoisonedWeightsFailVerifyAndFinetune() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try easyData(dir, train: 2)
        let w = dir.appendingPathComponent("w.safetensors")
        XCTAssertEqual(try CLI.run(["convert", CLI.fixture("torch/tiny_pyslowfast.pyth"), "-o", w.path]).status, 0)
        var bytes = [UInt8](try Data(contentsOf: w))
        let name = "s1.pathway0_stem.conv.weight"
        let headerLength = Int(bytes[0 ..< 8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        let header = try bytes[8 ..< 8 + headerLength].withUnsafeBytes { try JSONParser.parse($0) }
        guard case .array(let offsets)? = header[name]?["data_offsets"], let start = offsets.first?.intValue else { return XCTFail("no \(name)") }
        let nan = Float.nan.bitPattern
        for k in 0 ..< 4 { bytes[8 + headerLength + start + k] = UInt8((nan >> (8 * UInt32(k))) & 0xFF) }
        let poisoned = dir.appendingPathComponent("poisoned.safetensors")
        try Data(bytes).write(to: poisoned)

        let v = try CLI.run(["verify", poisoned.path, "--reference", CLI.fixture("reference/tiny_slowfast_8x8_ref.safetensors")])
        XCTAssertEqual(v.status, 1, v.stdout + v.stderr)
        XCTAssertTrue((v.stdout + v.stderr).contains("weights with NaN/Inf: \(name)"), v.stdout + v.stderr)

        let run = dir.appendingPathComponent("run")
        let f = try CLI.run(["finetune", "--weights", poisoned.path, "--skip-verify", "--train", data.appendingPathComponent("train.csv").path,
                             "--out", run.path, "--epochs", "1"] + Self.recipe)
        XCTAssertEqual(f.status, 1, f.stdout + f.stderr)
        XCTAssertTrue(f.stderr.contains("NaN or infinite") && f.stderr.contains(name), f.stderr)
        let written = (try? FileManager.default.contentsOfDirectory(atPath: run.path)) ?? []
        XCTAssertEqual(written.filter { $0.hasSuffix(".safetensors") }, [])
    }

    /// A learning rate that blows the weights up: the run stops in the epoch where the loss turns NaN/Inf,
    /// names the last good checkpoint and writes none for the poisoned epoch.
    func testDivergingRunStopsBeforeAPoisonedCheckpoint() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try easyData(dir, train: 2)
        let run = dir.appendingPathComponent("run")
        var recipe = Self.recipe
        recipe[recipe.firstIndex(of: "--lr")! + 1] = "1e30"
        let r = try CLI.run(["finetune", "--init", "scratch", "--arch", Self.arch, "--train", data.appendingPathComponent("train.csv").path,
                             "--out", run.path, "--epochs", "3"] + recipe)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("training diverged in epoch") && r.stderr.contains("lower --lr"), r.stderr)
        // What is on disk is finite; the poisoned epoch has no checkpoint.
        let names = try FileManager.default.contentsOfDirectory(atPath: run.path).filter { $0.hasPrefix("checkpoint-") }.sorted()
        let diverged = Int(r.stderr.split(separator: " ").drop { $0 != "epoch" }.dropFirst().first?.filter(\.isNumber) ?? "") ?? 0
        XCTAssertGreaterThan(diverged, 0, r.stderr)
        XCTAssertFalse(names.contains(String(format: "checkpoint-epoch%03d.safetensors", diverged)), "\(names)")
        for n in names {
            let ck = try CheckpointReader.read(path: run.appendingPathComponent(n).path)
            for (t, tensor) in ck.tensors.ordered where tensor.dtype == .f32 {
                XCTAssertTrue(tensor.data.raw.bindMemory(to: Float.self).allSatisfy(\.isFinite), "\(n): \(t) is not finite")
            }
        }
    }

    /// Converted weights carry no class names: predict prints ids, or the names of --classes; a list of
    /// the wrong length is refused.
    func testPredictTakesClassNamesFromAFile() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try easyData(dir, train: 1)
        let w = dir.appendingPathComponent("w.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", CLI.fixture("torch/tiny_pyslowfast.pyth"), "-o", w]).status, 0)
        let videos = FileManager.default.enumerator(atPath: data.appendingPathComponent("videos").path)?.compactMap { $0 as? String } ?? []
        let video = try XCTUnwrap(videos.filter { $0.hasSuffix(".mp4") }.sorted().first)
        let path = data.appendingPathComponent("videos/" + video).path
        let plain = try CLI.run(["predict", "--weights", w, path, "--top-k", "5", "--crop", "64", "--frames", "8"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        let names = ["grooming", "feeding", "resting", "walking", "fighting"]
        let list = dir.appendingPathComponent("names.txt")
        try (names.joined(separator: "\n") + "\n").write(to: list, atomically: true, encoding: .utf8)
        let named = try CLI.run(["predict", "--weights", w, path, "--top-k", "5", "--crop", "64", "--frames", "8", "--classes", list.path])
        XCTAssertEqual(named.status, 0, named.stderr)
        for n in names { XCTAssertTrue(named.stdout.contains(n), named.stdout) }
        XCTAssertFalse(names.contains { plain.stdout.contains($0) }, plain.stdout)
        // An existing --csv is kept unless --force (SECURITY.md 29).
        let csv = dir.appendingPathComponent("p.csv")
        try "old".write(to: csv, atomically: true, encoding: .utf8)
        let kept = try CLI.run(["predict", "--weights", w, path, "--crop", "64", "--frames", "8", "--csv", csv.path])
        XCTAssertEqual(kept.status, 1, kept.stderr)
        XCTAssertTrue(kept.stderr.contains("already exists; use --force"), kept.stderr)
        XCTAssertEqual(try String(contentsOf: csv, encoding: .utf8), "old")
        XCTAssertEqual(try CLI.run(["predict", "--weights", w, path, "--crop", "64", "--frames", "8", "--csv", csv.path, "--force"]).status, 0)
        XCTAssertTrue(try String(contentsOf: csv, encoding: .utf8).hasPrefix("video,rank,label,score"))
        try "a\nb\n".write(to: list, atomically: true, encoding: .utf8)
        let wrong = try CLI.run(["predict", "--weights", w, path, "--classes", list.path])
        XCTAssertEqual(wrong.status, 1, wrong.stderr)
        XCTAssertTrue(wrong.stderr.contains("has 2 names but") && wrong.stderr.contains("5 classes"), wrong.stderr)
    }

    /// kill -9 exactly inside writes (the SFNET_FAULT_KILL_AT_BYTE hook): inside the first best.safetensors
    /// write, and inside the first checkpoint write just after best.safetensors landed. Each time the
    /// resumed run finishes with every output complete, best.safetensors present and no temporary left
    /// (a stale `.best.safetensors.sfnet-tmp-*` and a missing best file were the bugs this found).
    func testKillsInsideWritesThenResume() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try easyData(dir, train: 2)
        let args = ["finetune", "--init", "scratch", "--arch", Self.arch, "--train", data.appendingPathComponent("train.csv").path,
                    "--val", data.appendingPathComponent("val.csv").path, "--epochs", "2"] + Self.recipe
        let clean = dir.appendingPathComponent("clean")
        XCTAssertEqual(try CLI.run(args + ["--out", clean.path]).status, 0)
        let bestSize = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: clean.appendingPathComponent("best.safetensors").path)[.size] as? Int)
        for (label, at) in [("inside best.safetensors", bestSize / 2), ("inside checkpoint-epoch001", bestSize + 1000)] {
            let run = dir.appendingPathComponent(label.replacingOccurrences(of: " ", with: "-"))
            let killed = try CLI.run(args + ["--out", run.path], environment: ["SFNET_FAULT_KILL_AT_BYTE": String(at)])
            XCTAssertTrue(killed.signaled, "\(label): not killed: \(killed.stdout)")
            let before = try FileManager.default.contentsOfDirectory(atPath: run.path)
            XCTAssertEqual(before.filter { $0.contains(".sfnet-tmp-") }.count, 1, "\(label): \(before)")
            let r = try CLI.run(args + ["--out", run.path, "--resume"])
            XCTAssertEqual(r.status, 0, "\(label): " + r.stdout + r.stderr)
            let after = try FileManager.default.contentsOfDirectory(atPath: run.path)
            XCTAssertEqual(after.filter { $0.contains(".sfnet-tmp-") }, [], "\(label): temporaries left")
            XCTAssertTrue(after.contains("best.safetensors") && after.contains("checkpoint-epoch002.safetensors"), "\(label): \(after)")
            for f in after where f.hasSuffix(".safetensors") {
                XCTAssertNoThrow(try CheckpointReader.read(path: run.appendingPathComponent(f).path), "\(label): \(f)")
            }
        }
        // The state those bugs left: a checkpoint naming epoch 1 as the best, no best.safetensors, and a
        // dead process's temporary of it. The resume rewrites best from the checkpoint and removes the temporary.
        let one = dir.appendingPathComponent("one")
        XCTAssertEqual(try CLI.run(args.map { $0 == "2" ? "1" : $0 } + ["--out", one.path]).status, 0)
        try FileManager.default.removeItem(at: one.appendingPathComponent("best.safetensors"))
        let stale = one.appendingPathComponent(".best.safetensors.sfnet-tmp-4194303-1")
        try Data("half a file".utf8).write(to: stale)
        let r = try CLI.run(args + ["--out", one.path, "--resume"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("best.safetensors was missing; rewritten from checkpoint-epoch001.safetensors"), r.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale.path), "the dead process's temporary is still there")
        XCTAssertNoThrow(try CheckpointReader.read(path: one.appendingPathComponent("best.safetensors").path))
    }

    /// Each epoch line says where the time went (data, step, validation, checkpoint), the run reports its frame
    /// cache (budget first, contents after epoch 1) and its totals, and the cache changes nothing: the same run
    /// decoding every clip (--frame-cache-mb 0) takes the same steps with the same losses.
    func testEpochLinesSayWhereTheTimeWentAndTheFrameCacheChangesNothing() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try easyData(dir, train: 4)   // 8 train, 16 val videos
        let args = ["finetune", "--init", "scratch", "--arch", Self.arch, "--train", data.appendingPathComponent("train.csv").path,
                    "--val", data.appendingPathComponent("val.csv").path, "--epochs", "2"] + Self.recipe
        let cached = dir.appendingPathComponent("cached"), off = dir.appendingPathComponent("off")
        let r = try CLI.run(args + ["--out", cached.path, "--frame-cache-mb", "64"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        print(r.stdout)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.first?.hasPrefix("note: frame cache: up to 64 MiB of decoded frames") ?? false, r.stdout)
        let epochLines = lines.filter { $0.hasPrefix("epoch ") }
        XCTAssertEqual(epochLines.count, 2, r.stdout)
        let phases = try NSRegularExpression(pattern: #"\(data \d+\.\d s, step \d+\.\d s, validation \d+\.\d s, checkpoint \d+\.\d s\)"#)
        for l in epochLines {
            XCTAssertEqual(phases.numberOfMatches(in: l, range: NSRange(l.startIndex..., in: l)), 1, l)
        }
        XCTAssertTrue(r.stdout.contains("note: frame cache after epoch 1: 24 videos"), r.stdout)
        XCTAssertTrue(r.stdout.contains("time over 2 epochs: "), r.stdout)
        let metrics = try Data(contentsOf: cached.appendingPathComponent("metrics.json")).withUnsafeBytes { try JSONParser.parse($0) }
        // Epoch 2 made its 8 training clips and 16 validation clips from kept frames; epoch 1 decoded each video once.
        XCTAssertEqual(metrics["frameCache"]?["videos"]?.intValue, 24)
        XCTAssertEqual(metrics["frameCache"]?["misses"]?.intValue, 24)
        XCTAssertEqual(metrics["frameCache"]?["hits"]?.intValue, 24)
        XCTAssertEqual(metrics["frameCache"]?["budgetMB"]?.intValue, 64)
        for key in ["data", "step", "validation", "checkpoint"] {
            XCTAssertNotNil(number(metrics["phaseTotals"]?[key]), key)
        }
        XCTAssertGreaterThan(number(metrics["phaseTotals"]?["step"]) ?? 0, 0)
        guard case .array(let epochs)? = metrics["epochs"] else { return XCTFail("epochs") }
        XCTAssertEqual(epochs.compactMap { number($0["phases"]?["checkpoint"]) }.count, 2)
        let csv = try String(contentsOf: cached.appendingPathComponent("metrics.csv"), encoding: .utf8)
        XCTAssertTrue(csv.hasPrefix("epoch,train_loss,val_map,val_top1,lr,seconds,clips_per_second,data_seconds,step_seconds,validation_seconds,checkpoint_seconds\n"), csv)

        let plain = try CLI.run(args + ["--out", off.path, "--frame-cache-mb", "0"])
        XCTAssertEqual(plain.status, 0, plain.stdout + plain.stderr)
        XCTAssertTrue(plain.stdout.hasPrefix("note: frame cache off (--frame-cache-mb 0)"), plain.stdout)
        let plainMetrics = try Data(contentsOf: off.appendingPathComponent("metrics.json")).withUnsafeBytes { try JSONParser.parse($0) }
        XCTAssertNil(plainMetrics["frameCache"])
        func losses(_ m: JSONValue) -> [Double] {
            guard case .array(let its)? = m["iterations"] else { return [] }
            return its.compactMap { number($0["loss"]) }
        }
        XCTAssertEqual(losses(metrics).count, 2)
        XCTAssertEqual(losses(metrics), losses(plainMetrics), "the same clips give the same steps")
        let bad = try CLI.run(args + ["--out", dir.appendingPathComponent("bad").path, "--frame-cache-mb=-1"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--frame-cache-mb must be >= 0"), bad.stderr)
    }
}
