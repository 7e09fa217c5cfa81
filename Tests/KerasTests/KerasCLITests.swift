// `sfnet convert` on Keras files through the built binary: HDF5 detected by content,
// the worker re-executed from the binary itself, exit 1 and no output on a malformed file.

import Foundation
import XCTest

final class KerasCLITests: XCTestCase {
    func sfnet(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: KerasFixtures.binary)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit, "sfnet died of a signal")
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func testHDF5IsDetectedByContentAndTheResultVerifies() throws {
        let dir = try KerasFixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        // No .h5 extension and no --from: the signature decides.
        let input = dir.appendingPathComponent("weights.bin").path
        try FileManager.default.copyItem(atPath: KerasFixtures.keras2, toPath: input)
        let out = dir.appendingPathComponent("w.safetensors").path
        let c = try sfnet(["convert", input, "-o", out])
        XCTAssertEqual(c.status, 0, c.err)
        XCTAssertTrue(c.out.contains("(keras hdf5, keras naming)"), c.out)
        XCTAssertTrue(c.out.contains("note: stride_1x1 true"), c.out)
        let v = try sfnet(["verify", out, "--reference", KerasFixtures.keras2Ref])
        XCTAssertEqual(v.status, 0, v.out + v.err)
    }

    func testMalformedHDF5ExitsOneWithTheClearErrorAndWritesNothing() throws {
        let dir = try KerasFixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("cut.h5").path
        try Data(contentsOf: URL(fileURLWithPath: KerasFixtures.keras3)).prefix(50_000).write(to: URL(fileURLWithPath: input))
        let out = dir.appendingPathComponent("w.safetensors").path
        let c = try sfnet(["convert", "--from", "keras", input, "-o", out])
        XCTAssertEqual(c.status, 1)
        XCTAssertTrue(c.err.hasPrefix("error: malformed HDF5 file: \(input) ("), c.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["cut.h5"], "temporary files left behind")
    }

    func testInspectPointsHDF5FilesToConvertFromKeras() throws {
        let c = try sfnet(["inspect", KerasFixtures.keras3])
        XCTAssertEqual(c.status, 1)
        XCTAssertTrue(c.err.contains("use sfnet convert --from keras"), c.err)
    }
}
