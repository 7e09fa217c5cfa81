// Numbers from manifests at the overflow boundary (issue 18 item 0): numeric class ids imply
// classes 0...max, so the largest id is bounded before `0...Int.max` could trap.

import Foundation
import XCTest
@testable import Video

final class ManifestSizeTests: XCTestCase {
    func csv(_ text: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-manifest-size-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.csv").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testNumericClassIdsAtTheBoundary() throws {
        let last = Manifest.maxNumericClasses - 1
        let ok = try Manifest.loadCSV(try csv("a.mp4,0\nb.mp4,\(last)\n"))
        XCTAssertEqual(ok.classes.count, Manifest.maxNumericClasses)
        for id in [String(Manifest.maxNumericClasses), String(Int.max)] {
            XCTAssertThrowsError(try Manifest.loadCSV(try csv("a.mp4,0\nb.mp4,1;\(id)\n")), id) { e in
                XCTAssertTrue("\(e)".contains("m.csv:2") && "\(e)".contains("class id \(id)") && "\(e)".contains("limit"), "\(e)")
            }
        }
        // Past Int: not an id but a class name (names form the class list).
        XCTAssertNoThrow(try Manifest.loadCSV(try csv("a.mp4,99999999999999999999\n")))
    }
}
