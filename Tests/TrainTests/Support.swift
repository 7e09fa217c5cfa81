// Shared helpers for the Train tests: fixture loading and comparisons that
// print the worst difference and where it is.

import Foundation
import XCTest
import Formats

enum TrainFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static func path(_ relative: String) -> String { root.appendingPathComponent("fixtures/" + relative).path }

    static func load(_ relative: String) throws -> Checkpoint {
        try CheckpointReader.read(path: path(relative))
    }

    static func metadataJSON(_ c: Checkpoint, _ key: String) throws -> JSONValue {
        guard let text = c.metadata.first(where: { $0.key == key })?.value else {
            throw XCTSkip("fixture has no metadata '\(key)'")
        }
        return try JSONParser.parse(text)
    }
}

extension Checkpoint {
    func doubles(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> [Double] {
        let t = try XCTUnwrap(tensors[name], "fixture has no tensor '\(name)'", file: file, line: line)
        guard t.dtype == .f64 else { return t.floats().map(Double.init) }
        return (0 ..< t.numel).map { t.data.raw.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) }
    }

    func floats(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> [Float] {
        try XCTUnwrap(tensors[name], "fixture has no tensor '\(name)'", file: file, line: line).floats()
    }

    func ints(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> [Int] {
        let t = try XCTUnwrap(tensors[name], "fixture has no tensor '\(name)'", file: file, line: line)
        XCTAssertEqual(t.dtype, .i64, file: file, line: line)
        return (0 ..< t.numel).map { Int(t.data.raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
    }
}

/// Relative L2 error ||got - want|| / ||want|| (absolute when want is all zero).
func relL2<A: BinaryFloatingPoint, B: BinaryFloatingPoint>(_ got: [A], _ want: [B]) -> Double {
    precondition(got.count == want.count)
    var num = 0.0, den = 0.0
    for i in got.indices {
        let d = Double(got[i]) - Double(want[i])
        num += d * d
        den += Double(want[i]) * Double(want[i])
    }
    return den == 0 ? num.squareRoot() : (num / den).squareRoot()
}

func assertClose<A: BinaryFloatingPoint, B: BinaryFloatingPoint>(_ got: [A], _ want: [B], relL2 tol: Double, _ what: String,
                                                                   file: StaticString = #filePath, line: UInt = #line) {
    guard got.count == want.count else {
        XCTFail("\(what): \(got.count) values, expected \(want.count)", file: file, line: line)
        return
    }
    let r = relL2(got, want)
    if !(r <= tol) {
        var worst = 0, worstDiff = -1.0
        for i in got.indices where abs(Double(got[i]) - Double(want[i])) > worstDiff {
            worstDiff = abs(Double(got[i]) - Double(want[i])); worst = i
        }
        XCTFail("\(what): relative L2 \(r) > \(tol); max |diff| \(worstDiff) at index \(worst) (got \(got[worst]), want \(want[worst]))",
                file: file, line: line)
    }
}
