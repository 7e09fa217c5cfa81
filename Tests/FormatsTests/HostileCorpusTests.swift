// Every file of the hostile corpus (fixtures/hostile/generate.py, one or more per
// SECURITY.md case) is refused with its specific error, and no payload ran.

import Foundation
import XCTest
@testable import Formats

final class HostileCorpusTests: XCTestCase {
    struct Case {
        let file: String, caseNumber: Int?, container: String, expect: String?, canary: String?, valid: Bool, make: String?, what: String
    }

    func cases() throws -> [Case] {
        guard case .array(let xs) = try Fixtures.json("hostile/cases.json") else { throw XCTSkip("no cases.json") }
        return xs.map {
            Case(file: $0["file"]!.stringValue!, caseNumber: $0["case"]?.intValue, container: $0["container"]?.stringValue ?? "any",
                 expect: $0["expect"]?.stringValue,
                 canary: $0["canary"]?.stringValue, valid: $0["valid"] == .bool(true), make: $0["make"]?.stringValue,
                 what: $0["what"]?.stringValue ?? "")
        }
    }

    func testEveryHostileFileIsRefusedWithItsSpecificError() throws {
        let all = try cases()
        XCTAssertGreaterThan(all.count, 100)
        var refused = 0, accepted = 0
        // The containers Formats reads; ONNX, HDF5, checkpoints and runs go through the CLI (HostileCLITests).
        let formats: Set<String> = ["pickle", "torch", "legacy", "safetensors", "npy", "npz", "any"]
        for c in all where c.make == nil && formats.contains(c.container) {
            let path = Fixtures.path("hostile/" + c.file)
            if let canary = c.canary { try? FileManager.default.removeItem(atPath: canary) }
            do {
                let ck = try CheckpointReader.read(path: path)
                if c.valid {
                    XCTAssertGreaterThan(ck.tensors.count, 0, "\(c.file): valid baseline has tensors")
                    accepted += 1
                } else {
                    XCTFail("\(c.file) (case \(c.caseNumber.map(String.init) ?? "-"), \(c.what)) was accepted")
                }
            } catch let e as FormatError {
                XCTAssertFalse(c.valid, "\(c.file): valid file refused: \(e)")
                // Match against the message without the file path (file names could contain the phrase).
                var bare = e
                bare.file = nil
                let text = bare.description.lowercased()
                if let expect = c.expect {
                    XCTAssertTrue(text.contains(expect.lowercased()), "\(c.file): expected '\(expect)' in: \(bare.description)")
                }
                refused += 1
            }
            if let canary = c.canary {
                XCTAssertFalse(FileManager.default.fileExists(atPath: canary), "\(c.file): payload ran (canary \(canary) exists)")
            }
        }
        print("hostile corpus: \(refused) refused, \(accepted) valid baselines accepted")
    }

    func testDirectoryAndUnreadableInputsAreRefused() throws {
        let dir = try Fixtures.tempDir()
        let folder = dir.appendingPathComponent("model.pth").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        XCTAssertThrowsError(try CheckpointReader.read(path: folder)) { XCTAssertTrue("\($0)".contains("directory"), "\($0)") }
        XCTAssertThrowsError(try CheckpointReader.read(path: dir.appendingPathComponent("missing.pth").path)) {
            XCTAssertTrue("\($0)".contains("no such file"), "\($0)")
        }
        let locked = dir.appendingPathComponent("locked.pth").path
        try FileManager.default.copyItem(atPath: Fixtures.path("hostile/files/valid_baseline.pth"), toPath: locked)
        chmod(locked, 0)
        if getuid() == 0 {
            print("SKIPPED unreadable-file check: running as root, which can read a mode-000 file")
        } else {
            XCTAssertThrowsError(try CheckpointReader.read(path: locked)) { XCTAssertTrue("\($0)".contains("permission"), "\($0)") }
        }
    }
}
