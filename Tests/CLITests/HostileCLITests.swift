// The whole hostile corpus through the real binary: exit 1 with a message, no
// crash, no output file, no payload run.

import Foundation
import XCTest
@testable import Formats

final class HostileCLITests: XCTestCase {
    func testEveryHostileFileExits1WithoutOutputOrCrash() throws {
        let data = try Data(contentsOf: CLI.root.appendingPathComponent("fixtures/hostile/cases.json"))
        guard case .array(let cases) = try data.withUnsafeBytes({ try JSONParser.parse($0) }) else { return XCTFail("cases") }
        let dir = try CLI.tempDir()
        var count = 0
        for c in cases where c["make"] == nil && c["valid"] != .bool(true) {
            let file = c["file"]!.stringValue!
            let out = dir.appendingPathComponent("out.safetensors").path
            if let canary = c["canary"]?.stringValue { try? FileManager.default.removeItem(atPath: canary) }
            let r = try CLI.run(["convert", CLI.fixture("hostile/" + file), "-o", out])
            XCTAssertFalse(r.signaled, "\(file): crashed")
            XCTAssertEqual(r.status, 1, "\(file): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("error: "), "\(file): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(file): output written")
            if let canary = c["canary"]?.stringValue {
                XCTAssertFalse(FileManager.default.fileExists(atPath: canary), "\(file): payload ran")
            }
            count += 1
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], "no temporaries left")
        print("hostile corpus through the CLI: \(count) files, all refused with exit 1")
    }
}
