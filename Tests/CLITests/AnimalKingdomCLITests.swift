// Animal Kingdom data as it ships, through the real binary (issue 17): the Charades-format frame lists,
// JPEG frame folders and df_action.xlsx of fixtures/ak (generate_ak.py) go through `data split`,
// `finetune`, `eval` (3x10 views) and `predict`; hostile spreadsheets and damaged frames fail with
// their own errors (SECURITY.md 35, 38).

import Formats
import Foundation
import XCTest

final class AnimalKingdomCLITests: XCTestCase {
    /// A copy of fixtures/ak (the tests damage frames and write beside the lists).
    func akCopy(_ dir: URL) throws -> URL {
        let ak = dir.appendingPathComponent("AK")
        try FileManager.default.copyItem(atPath: CLI.fixture("ak"), toPath: ak.path)
        return ak
    }

    /// Weights with AK's three classes: one epoch from scratch on the fixture's train list.
    func akWeights(_ dir: URL) throws -> String {
        let run = dir.appendingPathComponent("weights-run")
        let r = try CLI.run(["finetune", "--init", "scratch", "--arch", FinetuneCLITests.arch, "--train", CLI.fixture("ak/annotation/train.csv"),
                             "--frame-root", CLI.fixture("ak/dataset/image"), "--classes", CLI.fixture("ak/annotation/df_action.xlsx"),
                             "--out", run.path, "--epochs", "1"] + Self.recipe)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        return run.appendingPathComponent("best.safetensors").path
    }

    static let recipe = ["--crop", "64", "--jitter", "64", "72", "--warmup-epochs", "1", "--batch", "4", "--lr", "0.05",
                         "--dropout", "0.2", "--sampling-rate", "2", "--seed", "1"]

    func testSplitFinetuneEvalPredictOnAnAnimalKingdomFrameList() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let ak = try akCopy(dir)
        let list = ak.appendingPathComponent("annotation/train.csv").path
        let image = ak.appendingPathComponent("dataset/image").path
        let xlsx = ak.appendingPathComponent("annotation/df_action.xlsx").path
        let split = dir.appendingPathComponent("split")

        // The command from the issue, with AK's class names from the spreadsheet.
        let s = try CLI.run(["data", "split", "--frame-list", list, "--frame-root", image, "--class-list", xlsx,
                             "--train", "2", "--val", "1", "--test", "0", "-o", split.path])
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertTrue(s.stdout.contains("train 6, val 3, test 0") && s.stdout.contains("read them back with --frame-root \(image)"), s.stdout)
        let train = try String(contentsOf: split.appendingPathComponent("train.csv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(train.first, "original_vido_id video_id frame_id path labels")
        XCTAssertEqual(train.count, 1 + 6 * 16)
        let original = Set(try String(contentsOfFile: list, encoding: .utf8).split(separator: "\n").dropFirst().map { $0.split(separator: " ")[3] })
        XCTAssertTrue(train.dropFirst().allSatisfy { original.contains($0.split(separator: " ")[3]) }, "paths as the input gave them")
        XCTAssertEqual(try String(contentsOf: split.appendingPathComponent("classes.txt"), encoding: .utf8), "Moving\nJumping\nKeeping still\n")
        // `--manifest` takes the same list (told by its header), and so does a second split of the output.
        let again = try CLI.run(["data", "split", "--manifest", split.appendingPathComponent("train.csv").path, "--frame-root", image,
                                 "--class-list", split.appendingPathComponent("classes.txt").path, "--train", "1", "--val", "1", "--test", "0",
                                 "-o", dir.appendingPathComponent("split2").path])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("split 6 clips (3 classes)"), again.stdout)

        // Fine-tune on the split's frame lists (classes.txt beside them), 2 epochs.
        let run = dir.appendingPathComponent("run")
        let f = try CLI.run(["finetune", "--init", "scratch", "--arch", FinetuneCLITests.arch,
                             "--train", split.appendingPathComponent("train.csv").path, "--val", split.appendingPathComponent("val.csv").path,
                             "--frame-root", image, "--out", run.path, "--epochs", "2"] + Self.recipe)
        XCTAssertEqual(f.status, 0, f.stdout + f.stderr)
        XCTAssertTrue(f.stdout.contains("epoch 2/2") && f.stdout.contains("val mAP"), f.stdout)
        let best = run.appendingPathComponent("best.safetensors").path

        // Eval on AK's own val list with 3 spatial x 10 temporal views and the spreadsheet's names.
        let e = try CLI.run(["eval", "--weights", best, "--data", ak.appendingPathComponent("annotation/val.csv").path, "--frame-root", image,
                             "--classes", xlsx, "--views", "3x10", "--sampling-rate", "2"])
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssertTrue(e.stdout.contains("3 clips, 3x10 views") && e.stdout.contains("Keeping still") && !e.stdout.contains("skipped"), e.stdout)

        // Predict on a clip's frame folder: the names the fine-tuned weights carry, and an .xlsx given as --classes.
        let clip = try FileManager.default.contentsOfDirectory(atPath: image).sorted()[0]
        let p = try CLI.run(["predict", "--weights", best, "--top-k", "3", "--sampling-rate", "2", image + "/" + clip])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertTrue(["Moving", "Jumping", "Keeping still"].allSatisfy { p.stdout.contains($0) }, p.stdout)
        let px = try CLI.run(["predict", "--weights", best, "--top-k", "3", "--sampling-rate", "2", "--classes", xlsx, image + "/" + clip])
        XCTAssertEqual(px.status, 0, px.stderr)
        XCTAssertTrue(px.stdout.contains("Keeping still"), px.stdout)
    }

    func testExperimentTakesAnAnimalKingdomFrameList() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("exp")
        let r = try CLI.run(["experiment", "--train", CLI.fixture("ak/annotation/train.csv"), "--test", CLI.fixture("ak/annotation/val.csv"),
                             "--frame-root", CLI.fixture("ak/dataset/image"), "--classes", CLI.fixture("ak/annotation/df_action.xlsx"),
                             "--starts", "scratch", "--arch", FinetuneCLITests.arch, "--per-class", "1", "--out", out.path, "--epochs", "1"] + Self.recipe)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("1/class"), r.stdout)
        // The subset is itself a frame list (paths relative to the same frame root).
        let subset = try String(contentsOf: out.appendingPathComponent("data-1/train.csv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(subset.first, "original_vido_id video_id frame_id path labels")
        XCTAssertEqual(subset.count, 1 + 3 * 16)
    }

    func testAFrameListWithoutItsFrameRootNamesTheClipAndFrame() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let ak = try akCopy(dir)
        let weights = try akWeights(dir)
        let val = ak.appendingPathComponent("annotation/val.csv").path
        let firstClip = try String(contentsOfFile: val, encoding: .utf8).split(separator: "\n")[1].split(separator: " ")[0]
        // Frame paths resolve against the list's folder by default (PySlowFast's empty PATH_PREFIX): every clip is
        // skipped and each skip names the clip, the frame and the file.
        let e = try CLI.run(["eval", "--weights", weights, "--data", val, "--classes", ak.appendingPathComponent("annotation/df_action.xlsx").path,
                             "--sampling-rate", "2"])
        XCTAssertNotEqual(e.status, 0)
        let all = e.stdout + e.stderr
        XCTAssertTrue(all.contains("clip \(firstClip), frame 0 (\(ak.path)/annotation/\(firstClip)/\(firstClip)_f000001.jpg): missing"), all)
        XCTAssertFalse(e.signaled)
        // A --frame-root on a CSV manifest is refused rather than ignored.
        let csv = dir.appendingPathComponent("m.csv").path
        try "path,labels\nx.mp4,0\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let c = try CLI.run(["eval", "--weights", weights, "--data", csv, "--frame-root", ak.path])
        XCTAssertEqual(c.status, 1)
        XCTAssertTrue(c.stderr.contains("--frame-root \(ak.path) is for frame lists, and \(csv) is a CSV manifest"), c.stderr)
    }

    func testMissingTruncatedAndNonImageFramesAreSkippedOrFatalWithClipAndFrame() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let ak = try akCopy(dir)
        let image = ak.appendingPathComponent("dataset/image")
        let val = ak.appendingPathComponent("annotation/val.csv").path
        let clips = try String(contentsOfFile: val, encoding: .utf8).split(separator: "\n").dropFirst().map { String($0.split(separator: " ")[0]) }
        let unique = clips.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        func frame(_ clip: String, _ i: Int) -> URL { image.appendingPathComponent("\(clip)/\(clip)_f\(String(format: "%06d", i + 1)).jpg") }
        try FileManager.default.removeItem(at: frame(unique[0], 0))                                         // missing
        let jpeg = try Data(contentsOf: frame(unique[1], 0))
        try jpeg.prefix(jpeg.count / 3).write(to: frame(unique[1], 0))                                      // truncated
        try Data("not an image\n".utf8).write(to: frame(unique[2], 0))                                      // not an image
        let weights = try akWeights(dir)
        let e = try CLI.run(["eval", "--weights", weights, "--data", val, "--frame-root", image.path,
                             "--classes", ak.appendingPathComponent("annotation/df_action.xlsx").path, "--sampling-rate", "2"])
        let all = e.stdout + e.stderr
        XCTAssertFalse(e.signaled, all)
        XCTAssertTrue(all.contains("clip \(unique[0]), frame 0 (\(frame(unique[0], 0).path)): missing"), all)
        XCTAssertTrue(all.contains("clip \(unique[2]), frame 0 (\(frame(unique[2], 0).path)): not a readable image"), all)
        // A JPEG cut to a third may still decode (FFmpeg conceals the missing rows); if not, it is named the same way.
        if all.contains("clip \(unique[1])") { XCTAssertTrue(all.contains("clip \(unique[1]), frame 0 (\(frame(unique[1], 0).path))"), all) }
        // Training with --on-bad-video fail stops at the first one, naming it.
        let f = try CLI.run(["finetune", "--init", "scratch", "--arch", FinetuneCLITests.arch, "--train", val, "--frame-root", image.path,
                             "--classes", ak.appendingPathComponent("annotation/df_action.xlsx").path, "--on-bad-video", "fail",
                             "--out", dir.appendingPathComponent("run").path, "--epochs", "1"] + Self.recipe)
        XCTAssertEqual(f.status, 1, f.stdout + f.stderr)
        XCTAssertTrue(f.stderr.contains("clip \(unique[0]), frame 0") || f.stderr.contains("clip \(unique[2]), frame 0") || f.stderr.contains("clip \(unique[1]), frame 0"), f.stderr)
    }

    func testHostileSpreadsheetsAreRefusedWithTheirOwnErrors() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let list = CLI.fixture("ak/annotation/train.csv")
        for (file, text) in [("entities.xlsx", "xl/sharedStrings.xml: has a DTD (<!DOCTYPE / <!ENTITY); DTDs and entity declarations are refused"),
                             ("bomb.xlsx", "entry 'xl/sharedStrings.xml': absurd compression ratio"),
                             ("long_cell.xlsx", "xl/sharedStrings.xml: shared string 1 is longer than 32767 characters (cell size limit)"),
                             ("bad_index.xlsx", "xl/worksheets/sheet1.xml: cell A2: shared string index '7' outside 0..<1")] {
            let r = try CLI.run(["data", "split", "--frame-list", list, "--class-list", CLI.fixture("ak/hostile/" + file),
                                 "--train", "1", "--val", "0", "--test", "0", "-o", dir.appendingPathComponent(file).path])
            XCTAssertEqual(r.status, 1, file)
            XCTAssertFalse(r.signaled, file)
            XCTAssertTrue(r.stderr.contains(CLI.fixture("ak/hostile/" + file)) && r.stderr.contains(text), "\(file): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path), "no output for \(file)")
        }
    }

    /// The README's "Animal Kingdom in five commands", run where the data set lies with AK's relative paths:
    /// split the frame list, fine-tune from the PySlowFast config (data, recipe, 10x3 max-ensemble test views,
    /// BGR, PATH_PREFIX all from the file; the tiny architecture from the command line), evaluate with the
    /// config's views and ensemble, predict with the spreadsheet's names.
    func testAnimalKingdomInFiveCommandsWithThePySlowFastConfig() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let ak = try akCopy(dir)
        let s = try CLI.run(["data", "split", "--frame-list", "annotation/train.csv", "--frame-root", "dataset/image",
                             "--class-list", "annotation/df_action.xlsx", "--train", "2", "--val", "1", "--test", "0", "-o", "split"], in: ak)
        XCTAssertEqual(s.status, 0, s.stderr)
        let f = try CLI.run(["finetune", "--config", "configs/SLOWFAST_8x8_R50.yaml", "--init", "scratch", "--arch", FinetuneCLITests.arch,
                             "--train", "split/train.csv", "--val", "split/val.csv", "--out", "runs/ak", "--seed", "1"], in: ak)
        XCTAssertEqual(f.status, 0, f.stdout + f.stderr)
        XCTAssertTrue(f.stdout.contains("epoch 2/2"), "SOLVER.MAX_EPOCH 2: " + f.stdout)
        // BN.USE_PRECISE_STATS True, NUM_BATCHES_PRECISE 200: precise BN (over the 3 batches there are) before each validation.
        XCTAssertEqual(f.stdout.components(separatedBy: "  precise BN ").count - 1, 2, "precise BN timed in each epoch line: " + f.stdout)
        let metrics = try Data(contentsOf: ak.appendingPathComponent("runs/ak/metrics.json")).withUnsafeBytes { try JSONParser.parse($0) }
        guard case .array(let settings)? = metrics["settings"] else { return XCTFail("settings") }
        let keys = Set(settings.compactMap { $0["key"]?.stringValue })
        for key in ["DATA.PATH_PREFIX", "DATA.ENSEMBLE_METHOD", "DATA.REVERSE_INPUT_CHANNEL", "TEST.NUM_ENSEMBLE_VIEWS", "TEST.NUM_SPATIAL_CROPS",
                    "SOLVER.BASE_LR", "SOLVER.LR_POLICY", "TRAIN.BATCH_SIZE"] {
            XCTAssertTrue(keys.contains("config \(key)"), "\(key) not recorded")
        }
        XCTAssertTrue(keys.contains("config BN.NORM_TYPE (ignored)"), "sync_batchnorm is listed as ignored")
        XCTAssertTrue(keys.contains("config BN.USE_PRECISE_STATS") && keys.contains("config BN.NUM_BATCHES_PRECISE"), "precise BN keys used")
        let precise = settings.first { $0["key"]?.stringValue == "precise BN" }?["value"]?.stringValue ?? ""
        XCTAssertTrue(precise.hasPrefix("up to 200 training batches"), precise)
        guard case .array(let epochs)? = metrics["epochs"] else { return XCTFail("epochs") }
        XCTAssertTrue(epochs.allSatisfy { if case .number? = $0["preciseBNSeconds"] { return true } else { return false } },
                      "each epoch records its precise-BN time")
        let e = try CLI.run(["eval", "--config", "configs/SLOWFAST_8x8_R50.yaml", "--weights", "runs/ak/best.safetensors",
                             "--classes", "annotation/df_action.xlsx"], in: ak)
        XCTAssertEqual(e.status, 0, e.stdout + e.stderr)
        XCTAssertTrue(e.stdout.contains("3x10 views (max)") && e.stdout.contains("Keeping still"), "PATH_TO_DATA_DIR/val.csv, 3x10, max: " + e.stdout)
        let clip = try FileManager.default.contentsOfDirectory(atPath: ak.appendingPathComponent("dataset/image").path).sorted()[0]
        let p = try CLI.run(["predict", "--weights", "runs/ak/best.safetensors", "--top-k", "3", "--classes", "annotation/df_action.xlsx",
                             "dataset/image/" + clip], in: ak)
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertTrue(["Moving", "Jumping", "Keeping still"].allSatisfy { p.stdout.contains($0) }, p.stdout)
    }
}
