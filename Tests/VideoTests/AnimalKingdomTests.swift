// Animal Kingdom data as it ships (fixtures/ak/generate_ak.py): frame lists told by their header,
// PySlowFast's Charades clip sampling (fixtures/video/generate_charades_sampling.py), splits written
// back as frame lists, and .xlsx class lists with their hostile cases (SECURITY.md 35, 38).

import Families
import Convert
import Foundation
import XCTest
@testable import Video

private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
private func ak(_ relative: String) -> String { repoRoot.appendingPathComponent("fixtures/ak/" + relative).path }

private struct CharadesReference: Decodable {
    struct Case: Decodable {
        let video_length: Int; let num_frames: Int; let sampling_rate: Int
        let temporal_index: Int; let views: Int; let uniform: Double; let indices: [Int]
    }
    let cases: [Case]
}

final class CharadesSamplingTests: XCTestCase {
    func testFrameListIndicesMatchPySlowFastsCharadesRule() throws {
        let url = repoRoot.appendingPathComponent("fixtures/video/charades_sampling_reference.json")
        let ref = try JSONDecoder().decode(CharadesReference.self, from: Data(contentsOf: url))
        XCTAssertGreaterThan(ref.cases.count, 500)
        for c in ref.cases {
            let got = ClipSampling.charadesIndices(videoLength: c.video_length, numFrames: c.num_frames, samplingRate: c.sampling_rate,
                                                   temporalIndex: c.temporal_index, views: c.views, uniform: c.uniform)
            XCTAssertEqual(got, c.indices, "L=\(c.video_length) \(c.num_frames)x\(c.sampling_rate) view \(c.temporal_index)/\(c.views) u=\(c.uniform)")
        }
    }

    func testHandComputedCharadesCases() {
        // 16 frames, 8 x 2: the clip spans 15 frames; 10 views spread the start over 0...1 (gap 1/9, round half to even).
        XCTAssertEqual(ClipSampling.charadesIndices(videoLength: 16, numFrames: 8, samplingRate: 2, temporalIndex: 9, views: 10),
                       [1, 3, 5, 7, 9, 11, 13, 15])
        XCTAssertEqual(ClipSampling.charadesIndices(videoLength: 16, numFrames: 8, samplingRate: 2, temporalIndex: 4, views: 10),
                       [0, 2, 4, 6, 8, 10, 12, 14])
        // Longer clip than video: a random start in L-clip...0, indices clamped at both ends.
        XCTAssertEqual(ClipSampling.charadesIndices(videoLength: 5, numFrames: 4, samplingRate: 2, temporalIndex: -1, views: 1, uniform: 0),
                       [0, 0, 2, 4])
        // One test view (PySlowFast divides by zero): the middle.
        XCTAssertEqual(ClipSampling.charadesIndices(videoLength: 20, numFrames: 4, samplingRate: 2, temporalIndex: 0, views: 1),
                       [6, 8, 10, 12])
    }

    func testFrameListClipsTakeTheCharadesIndicesOfTheListedFrames() throws {
        let ds = try Manifest.load(ak("annotation/val.csv"), frameRoot: ak("dataset/image"))
        var config = ClipConfig.study(frames: 8)
        config.crop = 32; config.jitterMin = 32; config.jitterMax = 40
        let maker = ClipMaker(config: config)
        let source = try ds.samples[0].open()
        var rng = SplitMix64(seed: 3)
        let test = try maker.make(from: source, view: .test(temporal: 9, temporalCount: 10, spatial: 1), rng: &rng, frameList: true)
        XCTAssertEqual(test.sourceIndices, [1, 3, 5, 7, 9, 11, 13, 15])
        var a = SplitMix64(seed: 5), b = SplitMix64(seed: 5)
        let train = try maker.make(from: source, view: .train, rng: &a, frameList: true)
        let start = Int(b.nextUnit() * 2)   // randint(0, 16 - 15)
        XCTAssertEqual(train.sourceIndices, (0..<8).map { start + 2 * $0 })
    }
}

final class FrameListDataTests: XCTestCase {
    func testAFrameListIsToldByItsHeaderWhateverItsName() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let list = "\u{FEFF}\r\n\n" + (try String(contentsOfFile: ak("annotation/val.csv"), encoding: .utf8)).replacingOccurrences(of: "\n", with: "\r\n")
        let path = dir.appendingPathComponent("anything.txt").path
        try list.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertTrue(try Manifest.isFrameList(path))
        let ds = try Manifest.load(path, frameRoot: ak("dataset/image"))
        XCTAssertEqual(ds.samples.count, 3)
        XCTAssertEqual(ds.samples[0].frames?.count, 16)
        XCTAssertEqual(ds.samples.map(\.labels), [[0], [1], [2]])
        XCTAssertFalse(try Manifest.isFrameList(repoRoot.appendingPathComponent("fixtures/text/pandas.csv").path))
        XCTAssertThrowsError(try Manifest.checkFrameRoot("/frames", for: [dir.appendingPathComponent("none.csv").path])) {
            XCTAssertTrue("\($0)".contains("none.csv: cannot read: no such file"), "\($0)")
        }
    }

    func testFramesAreTakenInTheListedOrder() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = "original_vido_id video_id frame_id path labels\nA 0 1 A/2.jpg 1\nA 0 0 A/1.jpg 1\nA 0 2 A/3.jpg 1\n"
        let path = dir.appendingPathComponent("l.csv").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let ds = try Manifest.load(path, frameRoot: "/f")
        XCTAssertEqual(ds.samples[0].frames!, ["/f/A/2.jpg", "/f/A/1.jpg", "/f/A/3.jpg"])
    }

    func testASplitOfAFrameListIsAFrameListThatReadsBack() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let root = ak("dataset/image")
        let ds = try Manifest.load(ak("annotation/train.csv"), frameRoot: root, classes: ClassList.load(ak("annotation/df_action.xlsx")))
        XCTAssertEqual(ds.samples.count, 10)
        let r = try DataSplit.split(ds, SplitRequest(classes: ["Keeping still", "Moving"], train: 2, val: 1, test: 0, seed: 4))
        let paths = try DataSplit.write(r, to: dir.path)
        let train = try Manifest.load(paths.train, frameRoot: root, classes: ClassList.load(paths.classes))
        XCTAssertEqual(train.classes.names, ["Keeping still", "Moving"])
        XCTAssertEqual(train.samples.count, 4)
        let original = Dictionary(uniqueKeysWithValues: ds.samples.map { ($0.path, $0) })
        for s in train.samples {
            XCTAssertEqual(s.frames, original[s.path]!.frames, s.path)            // same files, same order
            XCTAssertEqual(s.listRows, original[s.path]!.listRows, s.path)        // rows as written
            XCTAssertEqual(train.classes.names[s.labels[0]], ds.classes.names[original[s.path]!.labels[0]])
        }
        // Videos keep the input's order; the two-label clip is left out.
        let order = ds.samples.map(\.path)
        XCTAssertEqual(train.samples.map(\.path), order.filter { p in train.samples.contains { $0.path == p } })
        XCTAssertFalse(train.samples.contains { original[$0.path]!.labels.count > 1 })
        let test = try String(contentsOfFile: paths.test, encoding: .utf8)
        XCTAssertEqual(test, FrameList.header + "\n")
    }
}

final class SpreadsheetTests: XCTestCase {
    func testAnimalKingdomsActionSheetGivesTheNamesInRowOrder() throws {
        XCTAssertTrue(Spreadsheet.looksLikeXLSX(ak("annotation/df_action.xlsx")))
        XCTAssertEqual(try ClassList.load(ak("annotation/df_action.xlsx")).names, ["Moving", "Jumping", "Keeping still"])
    }

    func testColumnChoiceAndSharedStrings() throws {
        XCTAssertThrowsError(try ClassList.load(ak("annotation/df_action.xlsx"), column: "segment")) {
            XCTAssertTrue("\($0)".hasSuffix("df_action.xlsx: first sheet: cell B3: class 'locomotion' already in B2"), "\($0)")
        }
        XCTAssertThrowsError(try ClassList.load(ak("annotation/df_action.xlsx"), column: "label")) {
            XCTAssertTrue("\($0)".contains("no column headed 'label' (headers: 'action', 'segment')"), "\($0)")
        }
        // A sheet of shared strings (as Excel and xlsxwriter write them): header "s0", then "s1".
        XCTAssertEqual(try Spreadsheet.classNames(ak("hostile/many_strings.xlsx")), ["s1"])
    }

    func testHostileSpreadsheetsFailWithTheirOwnErrors() throws {
        func expect(_ file: String, limits: SpreadsheetLimits = .default, _ text: String, line: UInt = #line) {
            XCTAssertThrowsError(try Spreadsheet.classNames(ak("hostile/" + file), limits: limits), line: line) {
                XCTAssertTrue("\($0)".contains(text), "\($0)", line: line)
                XCTAssertTrue("\($0)".hasPrefix(ak("hostile/" + file)), "\($0)", line: line)
            }
        }
        expect("entities.xlsx", "xl/sharedStrings.xml: has a DTD (<!DOCTYPE / <!ENTITY); DTDs and entity declarations are refused")
        expect("bomb.xlsx", "entry 'xl/sharedStrings.xml': absurd compression ratio")
        var few = SpreadsheetLimits(); few.maxSharedStrings = 1000
        expect("many_strings.xlsx", limits: few, "xl/sharedStrings.xml: more than 1000 shared strings (shared-string limit)")
        var small = SpreadsheetLimits(); small.maxEntryBytes = 1000
        expect("many_strings.xlsx", limits: small, "xl/sharedStrings.xml: ")
        expect("long_cell.xlsx", "xl/sharedStrings.xml: shared string 1 is longer than 32767 characters (cell size limit)")
        expect("bad_index.xlsx", "xl/worksheets/sheet1.xml: cell A2: shared string index '7' outside 0..<1")
        var rows = SpreadsheetLimits(); rows.maxRows = 1
        expect("many_strings.xlsx", limits: rows, "xl/worksheets/sheet1.xml: more than 1 rows (row limit)")
    }
}
