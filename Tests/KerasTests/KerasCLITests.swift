// `sfnet convert` on Keras files through the built binary: HDF5 detected by content,
// the worker re-executed from the binary itself, exit 1 and no output on a malformed file.

import CHDF5
import Foundation
import XCTest
@testable import Formats
@testable import Keras

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

    // MARK: hostile corpus, SECURITY 26-27 (fixtures/hostile/generate_hdf5.py)

    /// Writes `text` as the scalar string attribute `name` on the root group of the HDF5 file at `path`.
    func setRootAttribute(_ path: String, _ name: String, _ text: String) throws {
        let file = H5Fopen(path, 1 /* H5F_ACC_RDWR */, sfnet_h5p_default())
        guard file >= 0 else { throw XCTSkip("libhdf5 cannot open \(path) for writing") }
        defer { H5Fclose(file) }
        if H5Aexists(file, name) > 0 { XCTAssertGreaterThanOrEqual(H5Adelete(file, name), 0) }
        let type = H5Tcopy(sfnet_h5t_c_s1())
        defer { H5Tclose(type) }
        H5Tset_size(type, text.utf8.count)
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let attr = H5Acreate2(file, name, type, space, sfnet_h5p_default(), sfnet_h5p_default())
        XCTAssertGreaterThanOrEqual(attr, 0)
        defer { H5Aclose(attr) }
        XCTAssertGreaterThanOrEqual(text.withCString { H5Awrite(attr, type, $0) }, 0)
    }

    /// SECURITY 27: Keras configs with Lambda bytecode (Keras 2's marshalled lambda, Keras 3's __lambda__)
    /// and a builtins.exec call, written as `model_config` beside the tiny ResNet-50's weights: the
    /// weights convert and verify, the config is never read, the canary never appears.
    func testHostileModelConfigsAreNeverRead() throws {
        let json = try Data(contentsOf: URL(fileURLWithPath: KerasFixtures.path("hostile/cases_hdf5.json"))).withUnsafeBytes { try JSONParser.parse($0) }
        guard case .array(let all) = json else { return XCTFail("cases_hdf5.json is not a list") }
        let cases = all.filter { $0["make"]?.stringValue == "keras-model-config" }
        XCTAssertEqual(cases.count, 2)
        let dir = try KerasFixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        for c in cases {
            let file = try XCTUnwrap(c["file"]?.stringValue), name = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
            XCTAssertEqual(c["case"]?.intValue, 27)
            XCTAssertEqual(c["exit"]?.intValue, 0, "\(name): SECURITY 27's weights must convert")
            let config = try String(contentsOfFile: KerasFixtures.path("hostile/" + file), encoding: .utf8)
            XCTAssertTrue(config.contains("Lambda"), file)
            let input = dir.appendingPathComponent(name + ".h5").path
            try FileManager.default.copyItem(atPath: KerasFixtures.keras2, toPath: input)
            try setRootAttribute(input, "model_config", config)
            let canary = try XCTUnwrap(c["canary"]?.stringValue)
            try? FileManager.default.removeItem(atPath: canary)
            let out = dir.appendingPathComponent(name + ".safetensors").path
            let r = try sfnet(["convert", input, "-o", out])
            XCTAssertEqual(r.status, 0, "\(name): \(r.err)")
            let v = try sfnet(["verify", out, "--reference", KerasFixtures.keras2Ref])
            XCTAssertEqual(v.status, 0, "\(name): " + v.out + v.err)
            XCTAssertFalse(FileManager.default.fileExists(atPath: canary), "\(name): the payload ran")
        }
    }

    /// Keras 2 wrote `layer_names`/`weight_names` as fixed-length, null-padded strings; the longest name
    /// fills its field with no terminator and must keep its last byte.
    func testFixedLengthNullPaddedNamesKeepTheirLastByte() throws {
        let w = try HDF5Worker.read(path: KerasFixtures.path("hostile/files/valid_keras2_fixed_length_names.h5"), executable: KerasFixtures.binary)
        XCTAssertEqual(w.layers.map(\.name), ["conv1_conv", "conv2_block1_0_conv"])
        XCTAssertEqual(w.layers.map { $0.weights.map(\.name) }, [["conv1_conv/kernel:0"], ["conv2_block1_0_conv/bias:0"]])
        XCTAssertEqual(w.layers.first?.weights.first?.tensor.floats(), (0 ..< 12).map(Float.init))
    }
}
