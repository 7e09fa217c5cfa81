// SECURITY.md 29-30 through the real binary: a full disk and kill -9 in the
// middle of a conversion never leave a partial file at the output path.

import Families
import Convert
import Foundation
import XCTest
@testable import Formats

final class FaultTests: XCTestCase {
    /// Mounts a tmpfs of `size` on a fresh folder for `body`; false (and a SKIPPED line) where mounting is not allowed.
    func withSmallTmpfs(_ size: String, _ what: String, _ body: (String) throws -> Void) throws -> Bool {
        let mountPoint = try CLI.tempDir().path
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", mountPoint]
        mount.standardError = Pipe()
        try? mount.run()
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else {
            print("SKIPPED \(what): cannot mount a small tmpfs here (needs root)")
            return false
        }
        defer {
            let u = Process()
            u.executableURL = URL(fileURLWithPath: "/bin/umount")
            u.arguments = [mountPoint]
            try? u.run()
            u.waitUntilExit()
        }
        try body(mountPoint)
        return true
    }

    func testDiskFullFailsCleanlyAndKeepsTheOldOutput() throws {
        _ = try withSmallTmpfs("256k", "disk-full test") { mountPoint in
            let out = mountPoint + "/model.safetensors"
            try Data("previous version".utf8).write(to: URL(fileURLWithPath: out))
            // The tiny checkpoint converts to about 750 KB: more than the 256 KB file system holds.
            let r = try CLI.run(["convert", CLI.fixture("torch/tiny_pyslowfast.pyth"), "-o", out, "--force"])
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains("disk full"), r.stderr)
            XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "previous version", "old output intact")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mountPoint), ["model.safetensors"], "temporary removed")
        }
    }

    /// The same for both exports and for a fine-tuning run whose folder is on the full disk: a clear
    /// "disk full" error, exit 1, old files intact, no temporary, no partial checkpoint.
    func testDiskFullDuringExportAndFinetune() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let w = dir.appendingPathComponent("w.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", CLI.fixture("torch/tiny_pyslowfast.pyth"), "-o", w]).status, 0)
        let data = dir.appendingPathComponent("data")
        XCTAssertEqual(try CLI.run(["data", "synth", "-o", data.path, "--classes", "moving_across,resting", "--train-per-class", "2",
                                    "--val-per-class", "1", "--test-per-class", "1", "--size", "32"]).status, 0)
        _ = try withSmallTmpfs("256k", "disk-full export/finetune test") { mountPoint in
            for (to, name) in [("pyslowfast", "model.pyth"), ("onnx", "model.onnx")] {
                let out = mountPoint + "/" + name
                try Data("previous version".utf8).write(to: URL(fileURLWithPath: out))
                let r = try CLI.run(["export", w, "--to", to, "-o", out, "--force"])
                XCTAssertEqual(r.status, 1, "\(to): " + r.stderr)
                XCTAssertTrue(r.stderr.contains("disk full"), "\(to): " + r.stderr)
                XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "previous version", "\(to): old output intact")
            }
            let run = mountPoint + "/run"
            let f = try CLI.run(["finetune", "--init", "scratch", "--arch", FinetuneCLITests.arch, "--train", data.appendingPathComponent("train.csv").path,
                                 "--out", run, "--epochs", "1", "--crop", "32", "--jitter", "32", "40", "--batch", "4"])
            XCTAssertEqual(f.status, 1, f.stdout + f.stderr)
            XCTAssertTrue(f.stderr.contains("disk full"), f.stderr)
            let left = (try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []
            XCTAssertEqual(left.filter { $0.contains(".sfnet-tmp-") || $0.hasSuffix(".safetensors") }, [], "\(left)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mountPoint).sorted(), ["model.onnx", "model.pyth", "run"])
        }
    }

    func testKill9DuringConvertNeverLeavesAPartialOutput() throws {
        // A full-size R50 8x8 state_dict (zeros, 132 MB) so the conversion takes long enough to be killed midway.
        let dir = try CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let big = dir.appendingPathComponent("r50.safetensors").path
        let config = ArchConfig.preset(named: "slowfast-r50-8x8")!
        let zeros = OwnedBuffer(count: config.expectedParameters().map { $0.shape.reduce(1, *) * $0.dtype.size }.max()!)
        memset(zeros.pointer, 0, zeros.count)
        let items = config.expectedParameters().map { p in
            SafetensorsWriter.Item(name: p.name, tensor: Tensor(dtype: p.dtype, shape: p.shape, data: zeros.bytes.slice(0, p.shape.reduce(1, *) * p.dtype.size)))
        }
        try SafetensorsWriter.write(items, metadata: [], to: big, overwrite: false)
        let out = dir.appendingPathComponent("out.safetensors").path
        var killed = 0, completed = 0
        for trial in 0 ..< 10 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: CLI.binary)
            p.arguments = ["convert", big, "-o", out, "--force"]
            p.standardOutput = Pipe(); p.standardError = Pipe()
            try p.run()
            usleep(useconds_t(20_000 + trial * 25_000)) // 20 ms .. 245 ms into the run
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            if p.terminationReason == .uncaughtSignal { killed += 1 } else { completed += 1 }
            // Whatever happened, the output path holds nothing or a complete, valid file.
            if FileManager.default.fileExists(atPath: out) {
                let ck = try CheckpointReader.read(path: out)
                XCTAssertEqual(ck.tensors.count, 662, "trial \(trial): complete output")
                XCTAssertEqual(ck.metadataValue("sfnet.format"), "1")
            }
            let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            for n in names where n != "r50.safetensors" && n != "out.safetensors" {
                XCTAssertTrue(n.hasPrefix(".out.safetensors.sfnet-tmp-"), "trial \(trial): unexpected file \(n)")
            }
        }
        XCTAssertGreaterThan(killed, 0, "no run was killed midway")
        // The next run completes and removes the temporaries the killed runs left.
        let r = try CLI.run(["convert", big, "-o", out, "--force"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["out.safetensors", "r50.safetensors"])
        print("kill -9 test: \(killed) runs killed midway, \(completed) completed; no partial output")
    }
}
