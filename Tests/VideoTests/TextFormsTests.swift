// Manifests, class lists and frame lists as people write them: Python's csv module (CRLF), pandas (LF),
// Excel (BOM + CRLF), old Mac (lone CR); fixtures/text/ holds the files those tools wrote
// (fixtures/text/generate_text.py), and the other variants are derived here.

import Foundation
import XCTest
@testable import Video

final class TextFormsTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/text")

    private func fixture(_ name: String) -> String { Self.fixtures.appendingPathComponent(name).path }

    private func bytes(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent(name))) }

    private func write(_ bytes: [UInt8], _ name: String, in dir: URL) throws -> String {
        let p = dir.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    private func write(_ text: String, _ name: String, in dir: URL) throws -> String { try write(Array(text.utf8), name, in: dir) }

    /// `text` with every line end (LF, CRLF or CR) replaced by `end`.
    private func withLineEnds(_ b: [UInt8], _ end: String) -> [UInt8] {
        var out: [UInt8] = [], i = 0
        while i < b.count {
            if b[i] == 13 || b[i] == 10 {
                out += Array(end.utf8)
                i += b[i] == 13 && i + 1 < b.count && b[i + 1] == 10 ? 2 : 1
            } else { out.append(b[i]); i += 1 }
        }
        return out
    }

    private static let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
    private let lineEnds = ["\n", "\r\n", "\r"]

    private func classes() throws -> ClassList { try ClassList.load(fixture("classes_windows.txt")) }

    private func expectedPaths(in folder: URL) -> [String] {
        ["clips/walk_01.mp4", "clips/odd, name.mp4", "clips/say \"hi\".mp4", "clips/rest.mp4"].map { folder.appendingPathComponent($0).path }
    }

    // MARK: the files the tools wrote

    func testPythonCsvWriterManifestWithCRLFLoads() throws {
        let raw = try bytes("python_csv.csv")
        XCTAssertTrue(String(decoding: raw, as: UTF8.self).hasPrefix("path,labels,animals\r\n"), "csv.writer's default line end is CRLF")
        let ds = try Manifest.loadCSV(fixture("python_csv.csv"), classes: classes())
        XCTAssertEqual(ds.samples.map(\.path), expectedPaths(in: Self.fixtures))
        XCTAssertEqual(ds.samples.map(\.labels), [[0], [0, 1], [2], [0]])
        XCTAssertEqual(ds.samples.map(\.animals), [1, 2, 1, nil])
    }

    func testPandasToCsvManifestWithLFLoads() throws {
        XCTAssertFalse(try bytes("pandas.csv").contains(13))
        let ds = try Manifest.loadCSV(fixture("pandas.csv"), classes: classes())
        XCTAssertEqual(ds.samples.map(\.path), expectedPaths(in: Self.fixtures))
        XCTAssertEqual(ds.samples.map(\.labels), [[0], [0, 1], [2], [0]])
    }

    func testExcelStyleManifestWithBOMCRLFQuotesAndCapitalisedHeaderLoads() throws {
        let raw = try bytes("excel.csv")
        XCTAssertEqual(Array(raw.prefix(3)), Self.bom)
        let ds = try Manifest.loadCSV(fixture("excel.csv"), classes: classes())
        XCTAssertEqual(ds.samples.map(\.path), expectedPaths(in: Self.fixtures))
        XCTAssertEqual(ds.samples.map(\.labels), [[0], [0, 1], [2], [0]])
    }

    func testEveryLineEndAndBOMVariantOfTheManifestsReadsTheSame() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let list = try classes()
        for name in ["python_csv.csv", "pandas.csv", "excel.csv"] {
            let reference = try Manifest.loadCSV(fixture(name), classes: list)
            var raw = try bytes(name)
            if raw.starts(with: Self.bom) { raw.removeFirst(3) }
            for end in lineEnds {
                for bom in [false, true] {
                    for trailing in [true, false] {
                        var variant = withLineEnds(raw, end)
                        if !trailing { variant.removeLast(end.utf8.count) }
                        if bom { variant = Self.bom + variant }
                        let p = try write(variant, "m.csv", in: dir)
                        let ds = try Manifest.loadCSV(p, classes: list)
                        XCTAssertEqual(ds.samples.map(\.labels), reference.samples.map(\.labels), "\(name) \(end.debugDescription) bom \(bom)")
                        XCTAssertEqual(ds.samples.map(\.path), expectedPaths(in: dir), "\(name) \(end.debugDescription) bom \(bom)")
                    }
                }
            }
        }
    }

    func testWindowsClassListWithBOMCRLFCommentAndBlankLineLoadsInEveryLineEnd() throws {
        XCTAssertEqual(try classes().names, ["walking", "eating", "sleeping"])
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let raw = Array(try bytes("classes_windows.txt").dropFirst(3))
        for end in lineEnds {
            XCTAssertEqual(try ClassList.load(try write(withLineEnds(raw, end), "c.txt", in: dir)).names, ["walking", "eating", "sleeping"])
        }
        let dup = try write(withLineEnds(Array("# x\r\na\r\n\r\nb\r\na\r\n".utf8), "\r"), "dup.txt", in: dir)
        XCTAssertThrowsError(try ClassList.load(dup)) { XCTAssertTrue("\($0)".hasSuffix("dup.txt:5: class 'a' already on line 2"), "\($0)") }
    }

    func testAnimalKingdomFrameListReadsTheSameWithEveryLineEndBOMAndComments() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let reference = try Manifest.loadFrameList(fixture("ak_frames.csv"), frameRoot: "/data/frames")
        XCTAssertEqual(reference.samples.map(\.path), ["AAA", "BBB"])
        XCTAssertEqual(reference.samples.map(\.labels), [[3, 5], [1]])
        XCTAssertEqual(reference.samples[0].frames!, ["/data/frames/AAA/AAA_000001.jpg", "/data/frames/AAA/AAA_000002.jpg"])
        let raw = try bytes("ak_frames.csv")
        for end in lineEnds {
            for bom in [false, true] {
                var variant = withLineEnds(Array("# exported from the AK annotations\n\n".utf8) + raw + Array("\n  \n".utf8), end)
                if bom { variant = Self.bom + variant }
                let ds = try Manifest.loadFrameList(try write(variant, "f.csv", in: dir), frameRoot: "/data/frames")
                XCTAssertEqual(ds, reference, "\(end.debugDescription) bom \(bom)")
                // Tabs separate as well as spaces.
                let tabbed = variant.map { $0 == 0x20 ? 0x09 : $0 }
                XCTAssertEqual(try Manifest.loadFrameList(try write(tabbed, "t.csv", in: dir), frameRoot: "/data/frames"), reference)
            }
        }
    }

    // MARK: RFC 4180

    func testQuotedFieldsFollowRFC4180AndErrorsKeepPhysicalLineNumbers() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for end in lineEnds {
            let text = [
                " PATH , Labels , animals ",
                "  a.mp4  ,  0 ; 1  , 2 ",                 // spaces around unquoted fields trimmed
                "\"  b.mp4\" , \"1\",",                     // spaces inside quotes kept, around them dropped; empty animals
                "\"two\(end)lines.mp4\",\"0\"",            // a line end inside quotes is part of the field
                "\"say \"\"hi\"\".mp4\",1",                 // doubled quotes
                "# a comment with an odd quote \"",
                "",
                "c.mp4,\"0;1\",\"3\"",
            ].joined(separator: end) + end
            let ds = try Manifest.loadCSV(try write(text, "q.csv", in: dir))
            XCTAssertEqual(ds.samples.map { URL(fileURLWithPath: $0.path).lastPathComponent },
                           ["a.mp4", "  b.mp4", "two\(end)lines.mp4", "say \"hi\".mp4", "c.mp4"], end.debugDescription)
            XCTAssertEqual(ds.samples.map(\.labels), [[0, 1], [1], [0], [1], [0, 1]])
            XCTAssertEqual(ds.samples.map(\.animals), [2, nil, nil, nil, 3])
            // The record after a two-line field starts on physical line 6, so its error says 6.
            let bad = text.replacingOccurrences(of: "\"say \"\"hi\"\".mp4\",1", with: "\"say \"\"hi\"\".mp4\",1,many")
            XCTAssertThrowsError(try Manifest.loadCSV(try write(bad, "q6.csv", in: dir))) {
                XCTAssertTrue("\($0)".hasSuffix("q6.csv:6: animals 'many': expected a count >= 0"), "\(end.debugDescription): \($0)")
            }
        }
    }

    // MARK: malformed input

    /// Every case, in LF, CRLF and CR form: (file text, line, fragment of what was expected).
    func testMalformedManifestsNameTheFileLineAndWhatWasExpected() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let list = try ClassList(names: ["run", "eat"])
        let cases: [(String, Int, String)] = [
            ("path,labels\na.mp4,run\n\"b.mp4,run\nc.mp4,eat\n", 3, "unterminated quote: the quoted field that starts on this line never closes"),
            ("a.mp4,run\nb.mp4,\"run\"x\n", 2, "'x' after the closing quote of a field: expected ',' or the end of the line"),
            ("a.mp4,run\nb.mp4,run\u{0}\n", 2, "NUL byte at column 10"),
            ("a.mp4,run\n\u{FEFF}b.mp4,run\n", 2, "byte order mark (U+FEFF) at column 1; only the first bytes of the file may hold one"),
            ("a.mp4,run\nb.mp4,run,1,2\n", 2, "expected 'path,labels' or 'path,labels,animals', found 4 fields"),
            ("path,label\na.mp4,run\n", 1, "header 'path,label': expected 'path,labels' or 'path,labels,animals'"),
            (",path,labels\n0,a.mp4,run\n", 1, "looks like pandas' index; write it with to_csv(..., index=False)"),
            ("# c\n\na.mp4,run\nb.mp4\n", 4, "found 1 fields"),
        ]
        for (i, (text, line, fragment)) in cases.enumerated() {
            for end in lineEnds {
                let p = try write(withLineEnds(Array(text.utf8), end), "bad\(i).csv", in: dir)
                XCTAssertThrowsError(try Manifest.loadCSV(p, classes: list)) { error in
                    XCTAssertTrue("\(error)".hasPrefix("\(p):\(line): "), "case \(i) \(end.debugDescription): \(error)")
                    XCTAssertTrue("\(error)".contains(fragment), "case \(i) \(end.debugDescription): \(error)")
                }
            }
        }
        // Invalid UTF-8 (a Latin-1 'é' from an old spreadsheet): the line and column of the first bad byte.
        let latin1 = try write(Array("a.mp4,run\r\ncaf".utf8) + [0xE9] + Array(".mp4,run\r\n".utf8), "latin1.csv", in: dir)
        XCTAssertThrowsError(try Manifest.loadCSV(latin1, classes: list)) {
            XCTAssertEqual("\($0)", "\(latin1):2: not UTF-8 text (byte 0xE9 at column 4); save the file as UTF-8")
        }
        // A BOM and CRLF alone are not samples.
        XCTAssertThrowsError(try Manifest.loadCSV(try write(Self.bom + Array("path,labels\r\n\r\n".utf8), "e.csv", in: dir))) {
            XCTAssertTrue("\($0)".hasSuffix("e.csv: no samples"), "\($0)")
        }
    }

    func testMalformedClassListsAndFrameListsNameTheFileAndLine() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for end in lineEnds {
            let nul = try write(withLineEnds(Array("run\neat\u{0}\n".utf8), end), "n.txt", in: dir)
            XCTAssertThrowsError(try ClassList.load(nul)) { XCTAssertTrue("\($0)".hasSuffix("n.txt:2: NUL byte at column 4"), "\($0)") }
            let first = try write(Self.bom + withLineEnds(Array("ru\u{0}n\neat\n".utf8), end), "n1.txt", in: dir)
            XCTAssertThrowsError(try ClassList.load(first)) { XCTAssertTrue("\($0)".hasSuffix("n1.txt:1: NUL byte at column 3"), "\($0)") }
            let bom = try write(withLineEnds(Self.bom + Array("run\n".utf8) + Self.bom + Array("eat\n".utf8), end), "b.txt", in: dir)
            XCTAssertThrowsError(try ClassList.load(bom)) { XCTAssertTrue("\($0)".contains("b.txt:2: byte order mark (U+FEFF) at column 1"), "\($0)") }
            let frames = try write(withLineEnds(Array("original_vido_id video_id frame_id path labels\nA 0 0 A/1.jpg 1\n\nA 0 1 A/2.jpg\u{0} 1\n".utf8), end),
                                   "f.csv", in: dir)
            XCTAssertThrowsError(try Manifest.loadFrameList(frames)) { XCTAssertTrue("\($0)".hasSuffix("f.csv:4: NUL byte at column 14"), "\($0)") }
            let short = try write(withLineEnds(Array("original_vido_id video_id frame_id path labels\n# x\nA 0 0\n".utf8), end), "s.csv", in: dir)
            XCTAssertThrowsError(try Manifest.loadFrameList(short)) {
                XCTAssertTrue("\($0)".hasSuffix("s.csv:3: expected 'original_vido_id video_id frame_id path labels', found 3 fields"), "\($0)")
            }
            let latin1 = try write(withLineEnds(Array("run\n".utf8) + [0x63, 0x61, 0x66, 0xE9, 10], end), "l.txt", in: dir)
            XCTAssertThrowsError(try ClassList.load(latin1)) { XCTAssertTrue("\($0)".hasSuffix("l.txt:2: not UTF-8 text (byte 0xE9 at column 4); save the file as UTF-8"), "\($0)") }
        }
    }

    // MARK: limits (LIMITS.md): accepted at the limit, refused just above it with the limit's phrase

    func testTextLimitsAreEnforcedAtTheLimit() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func refuses(_ p: String, _ limits: TextLimits, _ phrase: String, line: Int? = nil, file: StaticString = #filePath, l: UInt = #line) {
            XCTAssertThrowsError(try Manifest.loadCSV(p, limits: limits), file: file, line: l) { error in
                XCTAssertTrue("\(error)".contains(phrase), "\(error)", file: file, line: l)
                if let line { XCTAssertTrue("\(error)".hasPrefix("\(p):\(line): "), "\(error)", file: file, line: l) }
            }
        }
        // Line length: "aaa…,0" of exactly maxLineBytes bytes passes; one more byte does not.
        var limits = TextLimits()
        limits.maxLineBytes = 32
        let exact = try write("x.mp4,0\r\n" + String(repeating: "a", count: 30) + ",0\r\n", "len.csv", in: dir)
        XCTAssertEqual(try Manifest.loadCSV(exact, limits: limits).samples.count, 2)
        refuses(try write("x.mp4,0\r\n" + String(repeating: "a", count: 31) + ",0\r\n", "len2.csv", in: dir), limits,
                "line longer than 32 bytes (line length limit)", line: 2)
        // A quoted field spanning lines counts as one line for the limit, reported where it starts.
        refuses(try write("x.mp4,0\n\"" + String(repeating: "a\n", count: 20) + "\",0\n", "len3.csv", in: dir), limits,
                "line longer than 32 bytes (line length limit)", line: 2)
        // Rows (a header counts).
        limits = TextLimits()
        limits.maxRows = 3
        XCTAssertEqual(try Manifest.loadCSV(try write("path,labels\r\na,0\r\n\r\n# c\r\nb,0\r\n", "rows.csv", in: dir), limits: limits).samples.count, 2)
        refuses(try write("path,labels\ra,0\rb,0\rc,0\r", "rows2.csv", in: dir), limits, "more than 3 rows (row limit)", line: 4)
        // Fields: counted outside quotes while scanning, before anything is split.
        limits = TextLimits()
        limits.maxFields = 3
        XCTAssertEqual(try Manifest.loadCSV(try write("a.mp4,\"0,\",1\n", "f.csv", in: dir), limits: limits).samples.count, 1)
        refuses(try write("a.mp4,0,1,\n", "f2.csv", in: dir), limits, "more than 3 fields (field limit)", line: 1)
        let frames = try write("A 0 0 A/1.jpg 1\n", "fl.csv", in: dir)
        limits.maxFields = 5
        XCTAssertEqual(try Manifest.loadFrameList(frames, limits: limits).samples.count, 1)
        limits.maxFields = 4
        XCTAssertThrowsError(try Manifest.loadFrameList(frames, limits: limits)) {
            XCTAssertTrue("\($0)".hasSuffix("fl.csv:1: more than 4 fields (field limit)"), "\($0)")
        }
        // File size, checked before reading.
        let small = try write("a.mp4,0\n", "s.csv", in: dir)
        limits = TextLimits()
        limits.maxBytes = 8
        XCTAssertEqual(try Manifest.loadCSV(small, limits: limits).samples.count, 1)
        limits.maxBytes = 7
        XCTAssertThrowsError(try ClassList.load(small, limits: limits)) {
            XCTAssertEqual("\($0)", "\(small): cannot read: 8 bytes exceeds the limit 7 (file size limit)")
        }
        XCTAssertEqual(TextLimits.default.maxLineBytes, 65_536)
        XCTAssertEqual(TextLimits.default.maxRows, 10_000_000)
        XCTAssertEqual(TextLimits.default.maxFields, 64)
        XCTAssertEqual(TextLimits.default.maxBytes, 512 << 20)
    }
}
