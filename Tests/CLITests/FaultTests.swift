// SECURITY.md 29-30 through the real binary: a full disk and kill -9 in the
// middle of a conversion never leave a partial file at the output path.

import Convert
import Foundation
import XCTest
@testable import Formats

final class FaultTests: XCTestCase {
    func testDiskFullFailsCleanlyAndKeepsTheOldOutput() throws {
        let mountPoint = try CLI.tempDir().path
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mountPoint]
        mount.standardError = Pipe()
        try? mount.run()
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else {
            print("SKIPPED disk-full test: cannot mount a small tmpfs here (needs root)")
            return
        }
        defer {
            let u = Process()
            u.executableURL = URL(fileURLWithPath: "/bin/umount")
            u.arguments = [mountPoint]
            try? u.run()
            u.waitUntilExit()
        }
        let out = mountPoint + "/model.safetensors"
        try Data("previous version".utf8).write(to: URL(fileURLWithPath: out))
        // The tiny checkpoint converts to about 750 KB: more than the 256 KB file system holds.
        let r = try CLI.run(["convert", CLI.fixture("torch/tiny_pyslowfast.pyth"), "-o", out, "--force"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("disk full"), r.stderr)
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "previous version", "old output intact")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mountPoint), ["model.safetensors"], "temporary removed")
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
