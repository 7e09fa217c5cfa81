// The whole hostile corpus (fixtures/hostile: cases.json and cases_hdf5.json, every
// case of SECURITY.md) through the real binary: the expected exit status, the case's
// own error phrase, no crash, no output file, no temporaries, no payload run.

import Foundation
import XCTest
@testable import Formats

struct HostileCase {
    let file: String, caseNumber: Int?, container: String, command: String, args: [String]
    let expect: String?, exit: Int32, canary: String?, valid: Bool, make: String?, what: String

    static func all() throws -> [HostileCase] {
        var out: [HostileCase] = []
        for name in ["cases.json", "cases_hdf5.json"] {
            let data = try Data(contentsOf: CLI.root.appendingPathComponent("fixtures/hostile/" + name))
            guard case .array(let xs) = try data.withUnsafeBytes({ try JSONParser.parse($0) }) else { throw XCTSkip("\(name) is not a list") }
            for x in xs {
                var args: [String] = []
                if case .array(let a)? = x["args"] { args = a.compactMap(\.stringValue) }
                out.append(HostileCase(file: x["file"]!.stringValue!, caseNumber: x["case"]?.intValue,
                                       container: x["container"]?.stringValue ?? "any", command: x["command"]?.stringValue ?? "convert",
                                       args: args, expect: x["expect"]?.stringValue, exit: Int32(x["exit"]?.intValue ?? 1),
                                       canary: x["canary"]?.stringValue, valid: x["valid"] == .bool(true), make: x["make"]?.stringValue,
                                       what: x["what"]?.stringValue ?? ""))
            }
        }
        return out
    }

    var name: String { URL(fileURLWithPath: file).lastPathComponent }
}

final class HostileCLITests: XCTestCase {
    /// Test-made cases that need a training run or a special file system, and the test that makes each.
    static let madeElsewhere: [String: String] = [
        "keras-model-config": "KerasCLITests.testHostileModelConfigsAreNeverRead",
        "tmpfs-full": "FaultTests.testDiskFullFailsCleanlyAndKeepsTheOldOutput",
        "kill-9": "FinetuneCLITests.testKilledRunResumesToTheEnd",
        "newest-damaged": "FinetuneCLITests.testResumeSkipsADamagedNewestCheckpoint",
        "nan-weights-verify": "FinetuneCLITests.testPoisonedWeightsFailVerifyAndFinetune",
        "nan-weights-finetune": "FinetuneCLITests.testPoisonedWeightsFailVerifyAndFinetune",
        "diverge": "FinetuneCLITests.testDivergingRunStopsBeforeAPoisonedCheckpoint",
        "damaged-frames": "AnimalKingdomCLITests.testMissingTruncatedAndNonImageFramesAreSkippedOrFatalWithClipAndFrame",
    ]
    /// Test-made cases this test builds itself.
    static let madeHere: Set<String> = ["directory", "unreadable", "onnx-symlink", "onnx-directory", "onnx-fifo", "existing-output",
                                        "hf-config-huge", "hf-shard-symlink"]

    func testEveryHostileCaseThroughTheCLI() throws {
        let cases = try HostileCase.all()
        XCTAssertGreaterThan(cases.count, 200)
        let fm = FileManager.default
        let dir = try CLI.tempDir()
        addTeardownBlock { try? fm.removeItem(at: dir) }
        let files = CLI.root.appendingPathComponent("fixtures/hostile/files")
        // A manifest for the resume cases (they fail before any clip is read).
        let manifest = dir.appendingPathComponent("train.csv"), classes = dir.appendingPathComponent("classes.txt")
        try "path,labels\nvideos/none.mp4,a\n".write(to: manifest, atomically: true, encoding: .utf8)
        try "a\nb\n".write(to: classes, atomically: true, encoding: .utf8)

        var ran: [Int: Int] = [:]
        var covered = Set<Int>()
        for (k, c) in cases.enumerated() where !c.valid {
            if let n = c.caseNumber { covered.insert(n) }
            if let make = c.make {
                XCTAssertTrue(Self.madeHere.contains(make) || Self.madeElsewhere[make] != nil, "\(c.name): no test makes '\(make)'")
                if !Self.madeHere.contains(make) { continue }
            }
            let work = dir.appendingPathComponent("case\(k)")
            try fm.createDirectory(at: work, withIntermediateDirectories: true)
            let out = work.appendingPathComponent("out.safetensors").path
            let split = work.appendingPathComponent("split").path
            var input = files.appendingPathComponent(c.name).path
            var args: [String]
            var keep: (path: String, bytes: Data)?
            switch c.make {
            case "directory"?:
                input = work.appendingPathComponent(c.name).path
                try fm.createDirectory(atPath: input, withIntermediateDirectories: true)
            case "unreadable"?:
                if getuid() == 0 { continue }    // root reads it anyway (the Formats test says so too)
                input = work.appendingPathComponent(c.name).path
                try fm.copyItem(atPath: files.appendingPathComponent("valid_baseline.pth").path, toPath: input)
                chmod(input, 0)
            case let m? where m.hasPrefix("onnx-"):
                input = work.appendingPathComponent(c.name).path
                try fm.copyItem(atPath: files.appendingPathComponent("onnx_data_bin_beside.onnx").path, toPath: input)
                let data = work.appendingPathComponent("data.bin").path
                switch m {
                case "onnx-symlink": try fm.createSymbolicLink(atPath: data, withDestinationPath: files.appendingPathComponent("c24_onnx_data.bin").path)
                case "onnx-directory": try fm.createDirectory(atPath: data, withIntermediateDirectories: false)
                default: XCTAssertEqual(mkfifo(data, 0o600), 0, "mkfifo")
                }
            case "hf-config-huge"?:
                // valid_hf_folder with config.json padded by spaces to one byte over the 1 MiB limit.
                input = work.appendingPathComponent(c.name).path
                try fm.copyItem(atPath: files.appendingPathComponent("valid_hf_folder").path, toPath: input)
                let config = URL(fileURLWithPath: input + "/config.json")
                var bytes = try Data(contentsOf: config)
                bytes.append(Data(repeating: 0x20, count: HuggingFaceFolder.maxConfigBytes + 1 - bytes.count))
                try bytes.write(to: config)
            case "hf-shard-symlink"?:
                // valid_hf_sharded with its second shard a symlink to the original, valid shard.
                input = work.appendingPathComponent(c.name).path
                let original = files.appendingPathComponent("valid_hf_sharded")
                try fm.copyItem(atPath: original.path, toPath: input)
                let shard = "model-00002-of-00002.safetensors"
                try fm.removeItem(atPath: input + "/" + shard)
                try fm.createSymbolicLink(atPath: input + "/" + shard, withDestinationPath: original.appendingPathComponent(shard).path)
            case "existing-output"?:
                input = files.appendingPathComponent("valid_baseline.pth").path
                let old = Data("an older output, to be kept".utf8)
                try old.write(to: URL(fileURLWithPath: out))
                keep = (out, old)
            default:
                break
            }
            switch c.command {
            case "convert":
                args = ["convert", input, "-o", out] + c.args
            case "resume":
                let run = work.appendingPathComponent("run")
                try fm.createDirectory(at: run, withIntermediateDirectories: true)
                try fm.copyItem(atPath: input, toPath: run.appendingPathComponent("checkpoint-epoch001.safetensors").path)
                args = ["finetune", "--resume", "--init", "scratch", "--train", manifest.path, "--classes", classes.path, "--out", run.path] + c.args
            case "finetune-config":
                args = ["finetune", "--config", input, "--init", "scratch", "--print-config"] + c.args
            case "class-list":
                args = ["data", "split", "--manifest", manifest.path, "--class-list", input, "--train", "1", "--val", "0", "--test", "0", "-o", split] + c.args
            case "manifest":
                args = ["data", "split", "--manifest", input, "--train", "1", "--val", "0", "--test", "0", "-o", split] + c.args
            default:
                XCTFail("\(c.name): command '\(c.command)' is not run by this test"); continue
            }
            if let canary = c.canary { try? fm.removeItem(atPath: canary) }
            let r = try CLI.run(args)
            let label = "\(c.name) (case \(c.caseNumber.map(String.init) ?? "-"))"
            XCTAssertFalse(r.signaled, "\(label): crashed: \(r.stderr.suffix(400))")
            XCTAssertEqual(r.status, c.exit, "\(label): \(r.stderr)")
            if c.exit == 1 { XCTAssertTrue(r.stderr.hasPrefix("error: "), "\(label): \(r.stderr)") }
            if let expect = c.expect {
                // The phrase must come from the message, not from a path that happens to contain it. A case that must
                // succeed (exit 0) says it in its report (stdout).
                let bare = (c.exit == 0 ? r.stdout + r.stderr : r.stderr).replacingOccurrences(of: input, with: "<input>").replacingOccurrences(of: work.path, with: "<dir>").lowercased()
                XCTAssertTrue(bare.contains(expect.lowercased()), "\(label): expected '\(expect)' in: \(r.stderr)")
            }
            if let keep {
                XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: keep.path)), keep.bytes, "\(label): the existing output changed")
            } else if c.command == "convert" && c.exit == 0 {
                XCTAssertTrue(fm.fileExists(atPath: out), "\(label): no output written")
            } else if c.command == "convert" {
                XCTAssertFalse(fm.fileExists(atPath: out), "\(label): output written")
            }
            XCTAssertFalse(fm.fileExists(atPath: split), "\(label): split written")
            if let canary = c.canary { XCTAssertFalse(fm.fileExists(atPath: canary), "\(label): payload ran (\(canary) exists)") }
            let left = try fm.contentsOfDirectory(atPath: work.path).filter { $0.contains(".sfnet-tmp-") }
            XCTAssertEqual(left, [], "\(label): temporaries left")
            if let n = c.caseNumber { ran[n, default: 0] += 1 }
        }
        // Every SECURITY.md case has at least one entry in the corpus.
        XCTAssertEqual(Set(1 ... 38).subtracting(covered), [], "SECURITY.md cases without a hostile case")
        let total = ran.values.reduce(0, +)
        let elsewhere = cases.filter { $0.make.map { Self.madeElsewhere[$0] != nil } ?? false }
        print("hostile corpus through the CLI: \(total) cases run, each with its expected exit status and phrase, no crash, "
              + "no output, no temporaries, no canary; per SECURITY case: "
              + ran.keys.sorted().map { "\($0):\(ran[$0]!)" }.joined(separator: " ")
              + "; test-made in other tests: " + elsewhere.map { "\($0.caseNumber ?? 0):\($0.make!)" }.joined(separator: " "))
    }

    /// The corpus's valid Hugging Face folders convert: each c33_hf_* / c37_hf_* folder is one of them with one defect,
    /// so its refusal is that defect's.
    func testValidHuggingFaceFoldersConvert() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let valid = try HostileCase.all().filter { $0.valid && $0.container == "hf-folder" }
        XCTAssertEqual(valid.map(\.name).sorted(), ["valid_hf_folder", "valid_hf_sharded"])
        for c in valid {
            let out = dir.appendingPathComponent(c.name + ".safetensors").path
            let r = try CLI.run(["convert", CLI.root.appendingPathComponent("fixtures/hostile/" + c.file).path, "-o", out])
            XCTAssertEqual(r.status, 0, "\(c.name): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("(videomae, 2 classes)"), r.stdout)
            XCTAssertEqual(try CheckpointReader.read(path: out).tensors.count, 21, c.name)
        }
    }
}
