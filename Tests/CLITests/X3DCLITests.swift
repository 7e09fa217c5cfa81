// X3D through the binary: a PySlowFast-layout X3D checkpoint converts (family and widths detected from
// names and shapes), passes `sfnet verify` against pytorchvideo's logits and fails a perturbed reference;
// an X3D from scratch fine-tunes, resumes, evaluates and predicts on data like the demo's.

import Formats
import Foundation
import XCTest

final class X3DCLITests: XCTestCase {
    func testTinyX3DConvertsAndVerifiesAgainstPytorchvideoAndAPerturbedReferenceFails() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let w = dir.appendingPathComponent("x3d.safetensors").path
        let c = try CLI.run(["convert", CLI.fixture("x3d/tiny_x3d.pyth"), "-o", w])
        XCTAssertEqual(c.status, 0, c.stderr)
        XCTAssertTrue(c.stdout.contains("(x3d, 5 classes)") && c.stdout.contains("Swish"), c.stdout)
        let ref = CLI.fixture("x3d/tiny_x3d_ref.safetensors")
        let v = try CLI.run(["verify", w, "--reference", ref])
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
        XCTAssertTrue(v.stdout.contains("PASSED") && v.stdout.contains("activation.s5.pathway0"), v.stdout)

        // The same reference with its logits moved by 1%: exit 1, FAILED, no record for these bytes.
        let original = try CheckpointReader.read(path: ref)
        let items = original.tensors.ordered.map { name, t -> SafetensorsWriter.Item in
            guard name == "output.logits" else { return SafetensorsWriter.Item(name: name, tensor: t) }
            let moved = t.floats().map { $0 * 1.01 }
            let buffer = OwnedBuffer(count: moved.count * 4)
            moved.withUnsafeBytes { buffer.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            return SafetensorsWriter.Item(name: name, tensor: Formats.Tensor(dtype: .f32, shape: t.shape, data: buffer.bytes))
        }
        let bad = dir.appendingPathComponent("bad_ref.safetensors").path
        try SafetensorsWriter.write(items, metadata: original.metadata.map { ($0.key, $0.value) }, to: bad, overwrite: false)
        try? FileManager.default.removeItem(atPath: w + ".verified.json")
        let f = try CLI.run(["verify", w, "--reference", bad])
        XCTAssertEqual(f.status, 1, f.stdout + f.stderr)
        XCTAssertTrue(f.stdout.contains("FAILED"), f.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: w + ".verified.json"))
    }

    /// pytorchvideo's own X3D layout (no BN on the first res2 shortcut, BN + SE under norm_b, ProjectedPool):
    /// its names map, the missing shortcut BN becomes an identity BN said in the report, and the logits match.
    func testPytorchvideoX3DConvertsWithAnIdentityShortcutBNAndVerifies() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let w = dir.appendingPathComponent("x3d.safetensors").path
        let c = try CLI.run(["convert", CLI.fixture("x3d/tiny_x3d_pytorchvideo.pyth"), "-o", w])
        XCTAssertEqual(c.status, 0, c.stderr)
        XCTAssertTrue(c.stdout.contains("pytorchvideo naming"), c.stdout)
        let report = try XCTUnwrap(CheckpointReader.read(path: w).metadataValue("sfnet.report"))
        XCTAssertTrue(report.contains("identity BN: pytorchvideo has no BN on this shortcut"), report)
        let v = try CLI.run(["verify", w, "--reference", CLI.fixture("x3d/tiny_x3d_pytorchvideo_ref.safetensors")])
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
        XCTAssertTrue(v.stdout.contains("PASSED"), v.stdout)
    }

    /// `sfnet data synth` into dir/data: 4 classes of 64x64 clips, `train`/`val`/`test` per class.
    static func synth(in dir: URL, train: Int, val: Int, test: Int, seed: Int, file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let data = dir.appendingPathComponent("data")
        let s = try CLI.run(["data", "synth", "-o", data.path, "--train-per-class", "\(train)", "--val-per-class", "\(val)",
                             "--test-per-class", "\(test)", "--size", "64", "--seed", "\(seed)"])
        XCTAssertEqual(s.status, 0, s.stderr, file: file, line: line)
        return data
    }

    /// A small X3D (width factor 0.5, depth factor 1, 4 classes, 4 frames at 32²) as an `sfnet.arch` file in `dir`.
    static func tinyArch(in dir: URL) throws -> URL {
        let arch = dir.appendingPathComponent("x3d-tiny.json")
        try #"{"model":"x3d","num_classes":4,"dropout":0.5,"head_activation":"softmax","num_frames":4,"train_crop":32,"width_factor":0.5,"depth_factor":1.0,"bottleneck_factor":2.25,"dim_c1":12,"dim_c5":32,"se_ratio":0.0625,"channelwise":true,"swish_inner":true,"bn_lin5":false,"scale_res2":false,"stem_temporal_kernel":5,"block_temporal_kernel":3}"#
            .write(to: arch, atomically: true, encoding: .utf8)
        return arch
    }

    /// A small X3D (width factor 0.5, depth factor 1) from scratch: one epoch, resumed to two, then eval and predict.
    func testAnX3DFromScratchFineTunesResumesEvaluatesAndPredicts() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try Self.synth(in: dir, train: 4, val: 2, test: 2, seed: 1)
        let arch = try Self.tinyArch(in: dir)
        let run = dir.appendingPathComponent("run")
        func finetune(epochs: Int, resume: Bool) throws -> RunResult {
            try CLI.run(["finetune", "--init", "scratch", "--arch", arch.path, "--train", data.appendingPathComponent("train.csv").path,
                         "--val", data.appendingPathComponent("val.csv").path, "--out", run.path, "--batch", "4", "--epochs", "\(epochs)",
                         "--crop", "32", "--jitter", "32", "40", "--frames", "4", "--sampling-rate", "4", "--seed", "1"]
                        + (resume ? ["--resume"] : []))
        }
        let first = try finetune(epochs: 1, resume: false)
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        XCTAssertTrue(first.stdout.contains("epoch 1/1"), first.stdout)
        let second = try finetune(epochs: 2, resume: true)
        XCTAssertEqual(second.status, 0, second.stdout + second.stderr)
        XCTAssertTrue(second.stdout.contains("epoch 2/2") && !second.stdout.contains("epoch 1/2"), second.stdout)
        let best = run.appendingPathComponent("best.safetensors").path
        let weights = try CheckpointReader.read(path: best)
        XCTAssertTrue(weights.metadataValue("sfnet.arch")?.contains("\"model\":\"x3d\"") ?? false)
        XCTAssertNotNil(weights.tensors["s2.pathway0_res0.branch2.se.fc1.weight"])
        let e = try CLI.run(["eval", "--weights", best, "--data", data.appendingPathComponent("test.csv").path])
        XCTAssertEqual(e.status, 0, e.stdout + e.stderr)
        XCTAssertTrue(e.stdout.contains("mAP"), e.stdout)
        let video = try XCTUnwrap(FileManager.default.enumerator(atPath: data.appendingPathComponent("videos").path)?
            .compactMap { $0 as? String }.first { $0.hasSuffix(".mp4") })
        let p = try CLI.run(["predict", "--weights", best, data.appendingPathComponent("videos/" + video).path])
        XCTAssertEqual(p.status, 0, p.stdout + p.stderr)
        XCTAssertTrue(p.stdout.contains(video), p.stdout)

        // An X3D and a SlowFast start in one experiment table.
        let clip = ["--batch", "4", "--crop", "32", "--jitter", "32", "40", "--frames", "4", "--sampling-rate", "4", "--seed", "1"]
        let sf = dir.appendingPathComponent("sf")
        let s2 = try CLI.run(["finetune", "--init", "scratch", "--arch", FinetuneCLITests.arch, "--train", data.appendingPathComponent("train.csv").path,
                              "--out", sf.path, "--epochs", "1"] + clip)
        XCTAssertEqual(s2.status, 0, s2.stdout + s2.stderr)
        let x = try CLI.run(["experiment", "--train", data.appendingPathComponent("train.csv").path, "--val", data.appendingPathComponent("val.csv").path,
                             "--test", data.appendingPathComponent("test.csv").path,
                             "--starts", "x3d=\(best),slowfast=\(sf.appendingPathComponent("best.safetensors").path)",
                             "--per-class", "2", "--epochs", "1", "--skip-verify", "--out", dir.appendingPathComponent("exp").path] + clip)
        XCTAssertEqual(x.status, 0, x.stdout + x.stderr)
        let rows = x.stdout.split(separator: "\n").map(String.init)
        XCTAssertTrue(rows.contains { $0.hasPrefix("x3d ") && $0.contains("%") } && rows.contains { $0.hasPrefix("slowfast ") && $0.contains("%") },
                      x.stdout)
    }

    /// Head-only fine-tuning of an X3D: `--head-only` freezes everything but the projection and the BN statistics,
    /// caches lin_5's output (after its ReLU) once per view, and trains the projection on it; every other tensor of
    /// the result is the start's, bit for bit. `--freeze 's*' --freeze-bn-stats` leaves conv_5 and lin_5 training
    /// (the full forward every step) and says how to get the cache.
    func testX3DHeadOnlyTrainsTheProjectionOnCachedLin5Features() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try Self.synth(in: dir, train: 4, val: 2, test: 2, seed: 1)
        let ref = try CheckpointReader.read(path: CLI.fixture("x3d/tiny_x3d_pytorchvideo_ref.safetensors"))
        let arch = dir.appendingPathComponent("arch.json")
        try XCTUnwrap(ref.metadataValue("sfnet.arch")).write(to: arch, atomically: true, encoding: .utf8)
        let w = dir.appendingPathComponent("x3d.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", CLI.fixture("x3d/tiny_x3d_pytorchvideo.pyth"), "-o", w, "--arch-json", arch.path]).status, 0)
        let clip = ["--train", data.appendingPathComponent("train.csv").path, "--val", data.appendingPathComponent("val.csv").path,
                    "--batch", "4", "--crop", "32", "--jitter", "32", "40", "--frames", "4", "--sampling-rate", "4", "--seed", "1",
                    "--skip-verify", "--lr", "0.05"]
        let run = dir.appendingPathComponent("head")
        let r = try CLI.run(["finetune", "--weights", w, "--out", run.path, "--epochs", "3", "--head-only", "--cache-views", "2"] + clip)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("head replaced: 5 -> 4 classes"), r.stdout)
        XCTAssertTrue(r.stdout.contains("(--head-only: all but head.projection)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("computing the head.lin_5 features (after its ReLU) of 16 clips x 2 augmented views once"), r.stdout)
        XCTAssertTrue(r.stdout.contains("epoch 3/3"), r.stdout)
        let start = try CheckpointReader.read(path: w)
        let end = try CheckpointReader.read(path: run.appendingPathComponent("checkpoint-epoch003.safetensors").path)
        var moved: [String] = []
        for (name, t) in start.tensors.ordered where !name.hasPrefix("head.projection.") {
            guard let e = end.tensors[name] else { XCTFail("missing \(name)"); continue }
            if t.data.array != e.data.array { moved.append(name) }
        }
        XCTAssertEqual(moved, [], "everything but the projection (BN statistics and counters included) must stay as loaded")
        XCTAssertEqual(end.tensors["head.projection.weight"]?.shape, [4, 32])

        let part = try CLI.run(["finetune", "--weights", w, "--out", dir.appendingPathComponent("part").path, "--epochs", "1",
                                "--freeze", "s*", "--freeze-bn-stats"] + clip)
        XCTAssertEqual(part.status, 0, part.stdout + part.stderr)
        XCTAssertTrue(part.stdout.contains("head units before the pool train (head.conv_5") && part.stdout.contains("--head-only trains head.projection"),
                      part.stdout)
        XCTAssertFalse(part.stdout.contains("augmented views once"), part.stdout)
    }

    /// X3D ONNX graphs convert (`--from onnx` detected by content), mapped from the graph: torch.onnx.export's (BN folded
    /// into the convs, SE biases de-duplicated behind Identity nodes, the projection a MatMul between Transposes) passes
    /// verify against pytorchvideo's logits, and sfnet's own export reads back with every tensor bit for bit (BN as
    /// BatchNormalization) or, with --fold-bn, verifies; a graph with ReLU after the 3x3x3 is refused unless the
    /// architecture says so.
    func testX3DOnnxGraphsFromTorchAndFromSfnetConvert() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let torchOnnx = dir.appendingPathComponent("torch.safetensors").path
        let c = try CLI.run(["convert", CLI.fixture("x3d/tiny_x3d_torch.onnx"), "-o", torchOnnx])
        XCTAssertEqual(c.status, 0, c.stdout + c.stderr)
        XCTAssertTrue(c.stdout.contains("onnx.family=x3d") && c.stdout.contains("onnx.x3d_inner=swish") && c.stdout.contains("onnx.stage_depths=1,1,3,2"),
                      c.stdout)
        let native = try CheckpointReader.read(path: torchOnnx)
        XCTAssertNotNil(native.tensors["s4.pathway0_res2.branch2.se.fc2.bias"])
        XCTAssertEqual(native.tensors["head.lin_5.weight"]?.shape, [16, 96, 1, 1, 1])
        let v = try CLI.run(["verify", torchOnnx, "--reference", CLI.fixture("x3d/tiny_x3d_torch_ref.safetensors")])
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
        XCTAssertTrue(v.stdout.contains("PASSED"), v.stdout)

        // sfnet's own ONNX of pytorchvideo's tiny X3D: BatchNormalization nodes read back bit for bit; folded, it verifies.
        let w = dir.appendingPathComponent("pv.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", CLI.fixture("x3d/tiny_x3d_pytorchvideo.pyth"), "-o", w]).status, 0)
        let onnx = dir.appendingPathComponent("pv.onnx").path, folded = dir.appendingPathComponent("pv_folded.onnx").path
        XCTAssertEqual(try CLI.run(["export", w, "--to", "onnx", "-o", onnx]).status, 0)
        XCTAssertEqual(try CLI.run(["export", w, "--to", "onnx", "-o", folded, "--fold-bn"]).status, 0)
        let back = dir.appendingPathComponent("back.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", onnx, "--from", "onnx", "-o", back]).status, 0)
        let (a, b) = (try CheckpointReader.read(path: w), try CheckpointReader.read(path: back))
        XCTAssertEqual(a.tensors.names, b.tensors.names)
        for name in a.tensors.names where !name.hasSuffix(".num_batches_tracked") {
            XCTAssertEqual(a.tensors[name]!.data.array, b.tensors[name]!.data.array, name)
        }
        let backFolded = dir.appendingPathComponent("back_folded.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", folded, "-o", backFolded]).status, 0)
        let vf = try CLI.run(["verify", backFolded, "--reference", CLI.fixture("x3d/tiny_x3d_pytorchvideo_ref.safetensors")])
        XCTAssertEqual(vf.status, 0, vf.stdout + vf.stderr)

        // ReLU after the 3x3x3 (swish_inner false): the weights cannot say so, the graph does.
        let archJSON = try XCTUnwrap(a.metadataValue("sfnet.arch")).replacingOccurrences(of: "\"swish_inner\":true", with: "\"swish_inner\":false")
        XCTAssertTrue(archJSON.contains("\"swish_inner\":false"), archJSON)
        let reluArch = dir.appendingPathComponent("relu.json")
        try archJSON.write(to: reluArch, atomically: true, encoding: .utf8)
        let relu = dir.appendingPathComponent("relu.safetensors").path, reluOnnx = dir.appendingPathComponent("relu.onnx").path
        XCTAssertEqual(try CLI.run(["convert", CLI.fixture("x3d/tiny_x3d_pytorchvideo.pyth"), "-o", relu, "--arch-json", reluArch.path]).status, 0)
        XCTAssertEqual(try CLI.run(["export", relu, "--to", "onnx", "-o", reluOnnx]).status, 0)
        let refused = try CLI.run(["convert", reluOnnx, "-o", dir.appendingPathComponent("refused.safetensors").path])
        XCTAssertEqual(refused.status, 1, refused.stdout + refused.stderr)
        XCTAssertTrue(refused.stderr.contains("ReLU after its 3x3x3") && refused.stderr.contains("swish_inner"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("refused.safetensors").path))
        let accepted = try CLI.run(["convert", reluOnnx, "-o", dir.appendingPathComponent("accepted.safetensors").path, "--arch-json", reluArch.path])
        XCTAssertEqual(accepted.status, 0, accepted.stdout + accepted.stderr)
    }

    /// X3D's head pools ceil(crop / 32), so it trains at any crop from 32 up and tests at another crop (its grid
    /// averaged), as PySlowFast's X3D-S (160, tested at 182) and X3D-L (312) do; the preset defaults were refused
    /// by a multiple-of-32 rule before. SlowFast, whose head pools crop / 32, still needs a multiple of 32 and says so.
    func testX3DTrainsAndTestsAtCropsThatAreNotMultiplesOf32() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try Self.synth(in: dir, train: 2, val: 1, test: 1, seed: 2)
        let arch = try Self.tinyArch(in: dir)
        let csv = { (n: String) in data.appendingPathComponent(n + ".csv").path }
        let clip = ["--batch", "4", "--epochs", "1", "--crop", "48", "--jitter", "48", "56", "--test-crop", "80", "--frames", "4",
                    "--sampling-rate", "4", "--seed", "1"]
        let x = try CLI.run(["finetune", "--init", "scratch", "--arch", arch.path, "--train", csv("train"), "--val", csv("val"),
                             "--test", csv("test"), "--out", dir.appendingPathComponent("x3d").path] + clip)
        XCTAssertEqual(x.status, 0, x.stdout + x.stderr)
        XCTAssertTrue(x.stdout.contains("epoch 1/1") && x.stdout.contains("test"), x.stdout)
        let best = try CheckpointReader.read(path: dir.appendingPathComponent("x3d/best.safetensors").path)
        XCTAssertTrue(best.metadataValue("sfnet.arch")?.contains("\"train_crop\":48") ?? false, best.metadataValue("sfnet.arch") ?? "")

        let sfOut = dir.appendingPathComponent("sf")
        let sf = try CLI.run(["finetune", "--init", "scratch", "--arch", FinetuneCLITests.arch, "--train", csv("train"), "--out", sfOut.path] + clip)
        XCTAssertEqual(sf.status, 1, sf.stdout + sf.stderr)
        XCTAssertTrue(sf.stderr.contains("--crop 48 is not a multiple of 32") && sf.stderr.contains("32 or 64"), sf.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: sfOut.appendingPathComponent("best.safetensors").path))
    }

    /// A CNN run with head dropout (0.5) and the frame cache, stopped after epoch 1 of 2 and resumed, ends on the
    /// uninterrupted run's weights and momentum bit for bit: the dropout masks are drawn from (seed, epoch).
    func testAResumedX3DRunWithDropoutContinuesBitForBit() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try Self.synth(in: dir, train: 2, val: 1, test: 0, seed: 3)
        let arch = try Self.tinyArch(in: dir)
        let args = ["finetune", "--init", "scratch", "--arch", arch.path, "--train", data.appendingPathComponent("train.csv").path,
                    "--val", data.appendingPathComponent("val.csv").path, "--batch", "4", "--epochs", "2", "--lr", "0.05", "--dropout", "0.5",
                    "--crop", "32", "--jitter", "32", "40", "--frames", "4", "--sampling-rate", "4", "--seed", "5"]
        let a = try assertResumedRunMatchesTheStraightOne(args, in: dir)
        XCTAssertGreaterThan(a.tensors.names.filter { $0.hasPrefix("optimizer.") }.count, 0)
    }

    /// `--init scratch --arch x3d-s` takes the preset's clip (PySlowFast's X3D_S: 13 frames at rate 6, crop 160,
    /// jitter [182, 228], test crop 182) where the user set nothing, and says so; what the user sets wins.
    func testAnX3DPresetBringsItsSamplingDefaultsAndTheUserOverridesThem() throws {
        let r = try CLI.run(["finetune", "--init", "scratch", "--arch", "x3d-s", "--train", "train.csv", "--out", "run", "--print-config"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for (setting, value) in [("frames", "13"), ("sampling-rate", "6"), ("crop", "160"), ("jitter", "182 228"), ("test-crop", "182")] {
            let line = r.stdout.split(separator: "\n").first { $0.hasPrefix(setting + " ") }.map(String.init) ?? ""
            XCTAssertTrue(line.contains(" \(value) ") && line.hasSuffix("the x3d-s preset"), "\(setting): \(line)")
        }
        let o = try CLI.run(["finetune", "--init", "scratch", "--arch", "x3d-s", "--train", "train.csv", "--out", "run", "--frames", "8",
                             "--print-config"])
        let frames = o.stdout.split(separator: "\n").first { $0.hasPrefix("frames ") }.map(String.init) ?? ""
        XCTAssertTrue(frames.contains(" 8 ") && frames.hasSuffix("command line"), frames)
        let slowfast = try CLI.run(["finetune", "--init", "scratch", "--arch", "slowfast-r50-8x8", "--train", "train.csv", "--out", "run",
                                    "--print-config"])
        let sf = slowfast.stdout.split(separator: "\n").first { $0.hasPrefix("frames ") }.map(String.init) ?? ""
        XCTAssertTrue(sf.contains(" 8 ") && sf.hasSuffix("default"), "the study's recipe for SlowFast: \(sf)")
    }

    /// X3D exports to PySlowFast (its canonical names: a bit-exact round trip through convert, and an X3D YAML)
    /// and to ONNX (onnxruntime's check is `make interop-onnx`); weights in PySlowFast's structure, whose first res2
    /// shortcut has a trained BN, are refused for pytorchvideo (which has no BN there) and for mmaction2 (the tiny
    /// widths are no mmaction2 X3D), with the reason and nothing written.
    func testX3DExportsToPySlowFastAndOnnxAndRefusesTheRest() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let w = dir.appendingPathComponent("x3d.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", CLI.fixture("x3d/tiny_x3d.pyth"), "-o", w]).status, 0)
        let pyth = dir.appendingPathComponent("x3d_ps.pyth").path
        let e = try CLI.run(["export", w, "--to", "pyslowfast", "-o", pyth])
        XCTAssertEqual(e.status, 0, e.stdout + e.stderr)
        let yaml = try String(contentsOfFile: dir.appendingPathComponent("x3d_ps.yaml").path, encoding: .utf8)
        XCTAssertTrue(yaml.contains("ARCH: x3d") && yaml.contains("WIDTH_FACTOR: 1.0") && yaml.contains("DIM_C5: 32"), yaml)
        let back = dir.appendingPathComponent("back.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", pyth, "-o", back]).status, 0)
        let (a, b) = (try CheckpointReader.read(path: w), try CheckpointReader.read(path: back))
        XCTAssertEqual(a.tensors.names, b.tensors.names)
        for name in a.tensors.names {
            XCTAssertEqual(a.tensors[name]!.data.array, b.tensors[name]!.data.array, name)
        }
        let onnx = try CLI.run(["export", w, "--to", "onnx", "-o", dir.appendingPathComponent("x3d.onnx").path])
        XCTAssertEqual(onnx.status, 0, onnx.stdout + onnx.stderr)
        XCTAssertTrue(onnx.stdout.contains("onnx opset"), onnx.stdout)
        let refused = try CLI.run(["export", w, "--to", "pytorchvideo", "-o", dir.appendingPathComponent("pv.pyth").path])
        XCTAssertEqual(refused.status, 1, refused.stdout + refused.stderr)
        XCTAssertTrue(refused.stderr.contains("s2.pathway0_res0.branch1_bn is not the identity") && refused.stderr.contains("export to pyslowfast"),
                      refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("pv.pyth").path))
        let mm = try CLI.run(["export", w, "--to", "mmaction2", "-o", dir.appendingPathComponent("mm.pth").path])
        XCTAssertEqual(mm.status, 1, mm.stdout + mm.stderr)
        XCTAssertTrue(mm.stderr.contains("mmaction2's X3D widths"), mm.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("mm.pth").path))
    }

    /// mmaction2's X3D (backbone.conv1_s/conv1_t/layerK.I.conv1..3/se_module/downsample/conv5, cls_head.fc1/fc2; the
    /// fixture's names come from reading mmaction2's source, fixtures/x3d/generate_x3d_mmaction2.py): it converts (fc1's
    /// Linear becomes lin_5's 1x1x1 conv, said), passes verify against pytorchvideo's logits of the same network, and
    /// exports back to mmaction2's names in mmaction2's order with the source's bytes; converting that again is bit-exact.
    func testMMAction2X3DConvertsVerifiesAndRoundTripsBitExact() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let source = CLI.fixture("x3d/tiny_x3d_mmaction2.pth")
        let w = dir.appendingPathComponent("mm.safetensors").path
        let c = try CLI.run(["convert", source, "-o", w, "--dtype", "keep"])
        XCTAssertEqual(c.status, 0, c.stderr)
        XCTAssertTrue(c.stdout.contains("mmaction2 naming") && c.stdout.contains("(x3d, 5 classes)"), c.stdout)
        let native = try CheckpointReader.read(path: w)
        XCTAssertTrue(native.metadataValue("sfnet.report")?.contains("X3DHead's fc1 is a Linear") ?? false)
        XCTAssertEqual(native.tensors["head.lin_5.weight"]?.shape, [2048, 96, 1, 1, 1])
        let v = try CLI.run(["verify", w, "--reference", CLI.fixture("x3d/tiny_x3d_mmaction2_ref.safetensors")])
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
        XCTAssertTrue(v.stdout.contains("PASSED"), v.stdout)

        let mm = dir.appendingPathComponent("mm_export.pth").path
        let e = try CLI.run(["export", w, "--to", "mmaction2", "-o", mm])
        XCTAssertEqual(e.status, 0, e.stdout + e.stderr)
        XCTAssertTrue(e.stdout.contains("type='X3D', gamma_w=0.333") && e.stdout.contains("gamma_b=1.5") && e.stdout.contains("in_channels=96"), e.stdout)
        let (exported, original) = (try CheckpointReader.read(path: mm), try CheckpointReader.read(path: source))
        XCTAssertEqual(exported.containerKey, "state_dict")
        XCTAssertEqual(exported.tensors.names, original.tensors.names)
        for (name, t) in original.tensors.ordered {
            XCTAssertEqual(exported.tensors[name]?.dtype, t.dtype, name)
            XCTAssertEqual(exported.tensors[name]?.shape, t.shape, name)
            XCTAssertEqual(exported.tensors[name]?.data.array, t.data.array, name)
        }
        let back = dir.appendingPathComponent("back.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", mm, "-o", back, "--dtype", "keep"]).status, 0)
        let b = try CheckpointReader.read(path: back)
        XCTAssertEqual(native.tensors.names, b.tensors.names)
        for name in native.tensors.names {
            XCTAssertEqual(native.tensors[name]!.dtype, b.tensors[name]!.dtype, name)
            XCTAssertEqual(native.tensors[name]!.data.array, b.tensors[name]!.data.array, name)
        }
    }

    /// pytorchvideo's own X3D layout round trip: convert (the missing shortcut BN becomes the identity) -> export
    /// --to pytorchvideo (the identity BN left out, said) -> convert gives the same native tensors bit for bit, and
    /// the export holds pytorchvideo's file again: its names, in its order, with its bytes.
    func testPytorchvideoX3DRoundTripsThroughItsOwnLayoutBitExact() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let source = CLI.fixture("x3d/tiny_x3d_pytorchvideo.pyth")
        let w = dir.appendingPathComponent("x3d.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", source, "-o", w]).status, 0)
        let pv = dir.appendingPathComponent("x3d_pv.pyth").path
        let e = try CLI.run(["export", w, "--to", "pytorchvideo", "-o", pv])
        XCTAssertEqual(e.status, 0, e.stdout + e.stderr)
        XCTAssertTrue(e.stdout.contains("branch1_bn left out: it is the identity") && e.stdout.contains("create_x3d("), e.stdout)
        let (exported, original) = (try CheckpointReader.read(path: pv), try CheckpointReader.read(path: source))
        XCTAssertEqual(exported.tensors.names, original.tensors.names)
        for (name, t) in original.tensors.ordered {
            XCTAssertEqual(exported.tensors[name]?.shape, t.shape, name)
            XCTAssertEqual(exported.tensors[name]?.data.array, t.data.array, name)
        }
        let back = dir.appendingPathComponent("back.safetensors").path
        let c = try CLI.run(["convert", pv, "-o", back])
        XCTAssertEqual(c.status, 0, c.stderr)
        let (a, b) = (try CheckpointReader.read(path: w), try CheckpointReader.read(path: back))
        XCTAssertEqual(a.tensors.names, b.tensors.names)
        for name in a.tensors.names {
            XCTAssertEqual(a.tensors[name]!.dtype, b.tensors[name]!.dtype, name)
            XCTAssertEqual(a.tensors[name]!.data.array, b.tensors[name]!.data.array, name)
        }
        XCTAssertEqual(a.metadataValue("sfnet.arch"), b.metadataValue("sfnet.arch"))
    }
}
