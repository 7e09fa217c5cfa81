// Manifests (CSV and Charades / Animal Kingdom frame lists), class lists, and reproducible splits.

import Foundation
import XCTest
@testable import Video

final class DatasetTests: XCTestCase {
    private func write(_ text: String, _ name: String, in dir: URL) throws -> String {
        let p = dir.appendingPathComponent(name).path
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    func testCSVManifestWithNamesIdsMultiLabelAndRelativePaths() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let classes = try write("# animals\nrunning\neating\n\nsleeping\n", "classes.txt", in: dir)
        let csv = try write("path,labels\nclips/a.mp4,running\n/abs/b.mkv,eating;sleeping\n\"odd, name.avi\",2\nc.mp4, 0 ; eating \n", "m.csv", in: dir)
        let ds = try Manifest.loadCSV(csv, classes: ClassList.load(classes))
        XCTAssertEqual(ds.classes.names, ["running", "eating", "sleeping"])
        XCTAssertEqual(ds.samples.map(\.path), [dir.appendingPathComponent("clips/a.mp4").path, "/abs/b.mkv",
                                                dir.appendingPathComponent("odd, name.avi").path, dir.appendingPathComponent("c.mp4").path])
        XCTAssertEqual(ds.samples.map(\.labels), [[0], [1, 2], [2], [0, 1]])
        XCTAssertEqual(ds.labelMatrix(), [1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0])
    }

    func testCSVWithoutAClassListDerivesClasses() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ids = try Manifest.loadCSV(try write("a.mp4,3\nb.mp4,0;1\n", "ids.csv", in: dir))
        XCTAssertEqual(ids.classes.names, ["0", "1", "2", "3"])
        let names = try Manifest.loadCSV(try write("a.mp4,walk\nb.mp4,fly;eat\n", "names.csv", in: dir))
        XCTAssertEqual(names.classes.names, ["eat", "fly", "walk"])
        XCTAssertEqual(names.samples.map(\.labels), [[2], [0, 1]])
    }

    func testBadManifestLinesNameTheFileAndLine() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let classes = try ClassList(names: ["run", "eat"])
        let cases: [(String, Int, String)] = [
            ("path,labels\na.mp4,run\nb.mp4\n", 3, "found 1 fields"),
            ("a.mp4,run\n,eat\n", 2, "empty path"),
            ("a.mp4,run\nb.mp4,\n", 2, "no labels"),
            ("a.mp4,run\nb.mp4,swim\n", 2, "unknown class 'swim'"),
            ("a.mp4,run\n\nb.mp4,7\n", 3, "class id 7 outside 0..<2"),
            ("a.mp4,run,two\n", 1, "animals 'two'"),
            ("\"a.mp4,run\n", 1, "unterminated quote"),
        ]
        for (i, (text, line, fragment)) in cases.enumerated() {
            let p = try write(text, "bad\(i).csv", in: dir)
            XCTAssertThrowsError(try Manifest.loadCSV(p, classes: classes)) { error in
                let message = "\(error)"
                XCTAssertTrue(message.hasPrefix("\(p):\(line):"), "case \(i): \(message)")
                XCTAssertTrue(message.contains(fragment), "case \(i): \(message)")
            }
        }
        XCTAssertThrowsError(try Manifest.loadCSV(try write("path,labels\n", "header.csv", in: dir))) {
            XCTAssertTrue("\($0)".contains("no samples"))
        }
        XCTAssertThrowsError(try Manifest.loadCSV(dir.appendingPathComponent("none.csv").path)) {
            XCTAssertTrue("\($0)".contains("none.csv: cannot read"))
        }
        XCTAssertThrowsError(try ClassList.load(try write("a\nb\na\n", "dup.txt", in: dir))) {
            XCTAssertTrue("\($0)".contains("dup.txt:3: class 'a' already on line 1"), "\($0)")
        }
    }

    func testFrameListGroupsFramesPerVideoInListedOrderWithUnionLabels() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = """
        original_vido_id video_id frame_id path labels
        AAA 0 1 AAA/AAA_000002.jpg 3,5
        AAA 0 0 AAA/AAA_000001.jpg 3
        BBB 1 0 BBB/BBB_000001.jpg ""
        BBB 1 1 BBB/BBB_000002.jpg 1
        """
        let ds = try Manifest.loadFrameList(try write(text, "train.csv", in: dir), frameRoot: "/data/frames")
        XCTAssertEqual(ds.samples.map(\.path), ["AAA", "BBB"])
        // PySlowFast's load_image_lists keeps the list's order (AK lists frames in frame_id order).
        XCTAssertEqual(ds.samples[0].frames!, ["/data/frames/AAA/AAA_000002.jpg", "/data/frames/AAA/AAA_000001.jpg"])
        XCTAssertEqual(ds.samples.map(\.labels), [[3, 5], [1]])
        XCTAssertEqual(ds.classes.count, 6)
        let bad = try write("original_vido_id video_id frame_id path labels\nAAA 0 x AAA/1.jpg 3\n", "bad.csv", in: dir)
        XCTAssertThrowsError(try Manifest.loadFrameList(bad)) { XCTAssertTrue("\($0)".contains("bad.csv:2: frame_id 'x'"), "\($0)") }
    }

    func testFrameListVideosDecodeThroughFrameFolder() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("V1"), withIntermediateDirectories: true)
        var rows = ["original_vido_id video_id frame_id path labels"]
        for i in 0..<6 {
            try ImageWriter.write(indexedFrame(i, width: 32, height: 24), to: dir.appendingPathComponent("V1/f\(i).jpg").path)
            rows.append("V1 0 \(i) V1/f\(i).jpg 0")
        }
        let ds = try Manifest.loadFrameList(try write(rows.joined(separator: "\n"), "list.csv", in: dir))
        let source = try ds.samples[0].open()
        XCTAssertEqual(source.info.frameCount, 6)
        XCTAssertEqual(try source.frames(at: [5, 0], width: nil, height: nil).map { decodedIndex($0, candidates: 0..<6) }, [5, 0])
    }

    private func syntheticAnnotations() throws -> VideoDataset {
        let classes = try ClassList(names: ["a", "b", "c", "d"])
        var samples: [VideoSample] = []
        for i in 0..<200 {
            let labels = i % 10 == 9 ? [i % 4, (i + 1) % 4].sorted() : [i % 4]
            samples.append(VideoSample(path: "/v/\(i).mp4", labels: labels, animals: i % 7 == 0 ? 2 : 1))
        }
        return VideoDataset(samples: samples, classes: classes)
    }

    func testSplitIsReproducibleFiltersAndCountsPerClass() throws {
        let ds = try syntheticAnnotations()
        let request = SplitRequest(classes: ["c", "a"], train: 10, val: 3, test: 3, seed: 7)
        let one = try DataSplit.split(ds, request)
        let two = try DataSplit.split(VideoDataset(samples: ds.samples.reversed(), classes: ds.classes), request)
        XCTAssertEqual(one, two, "same seed, same split whatever the input order")
        XCTAssertEqual(one.train.classes.names, ["c", "a"])
        for part in [one.train, one.val, one.test] {
            for s in part.samples {
                let i = Int(s.path.dropFirst(3).dropLast(4))!
                XCTAssertEqual(s.labels.count, 1)
                XCTAssertNotEqual(i % 10, 9, "multi-label clip kept")
                XCTAssertNotEqual(i % 7, 0, "two-animal clip kept")
                XCTAssertEqual(s.labels[0], i % 4 == 2 ? 0 : 1)
            }
        }
        XCTAssertEqual(one.train.samples.count, 20)
        XCTAssertEqual(one.val.samples.count, 6)
        XCTAssertEqual(one.test.samples.count, 6)
        XCTAssertTrue(Set(one.train.samples.map(\.path)).isDisjoint(with: one.val.samples.map(\.path) + one.test.samples.map(\.path)))
        let other = try DataSplit.split(ds, SplitRequest(classes: ["c", "a"], train: 10, val: 3, test: 3, seed: 8))
        XCTAssertNotEqual(one.train.samples.map(\.path), other.train.samples.map(\.path))
        let short = try DataSplit.split(ds, SplitRequest(classes: ["b"], train: 40, val: 10, test: 10, seed: 1))
        XCTAssertEqual(short.shortfalls.count, 1)
        XCTAssertTrue(short.shortfalls[0].hasPrefix("b: had "), short.shortfalls[0])
        XCTAssertThrowsError(try DataSplit.split(ds, SplitRequest(classes: ["zebra"], train: 1, val: 1, test: 1)))
    }

    func testWrittenSplitReadsBackIdentically() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var ds = try syntheticAnnotations()
        ds.samples = ds.samples.map { var s = $0; s.path = dir.appendingPathComponent("videos/\(URL(fileURLWithPath: s.path).lastPathComponent)").path; return s }
        let result = try DataSplit.split(ds, SplitRequest(train: 5, val: 2, test: 2, seed: 3, singleAnimal: false))
        let paths = try DataSplit.write(result, to: dir.appendingPathComponent("split").path)
        let classes = try ClassList.load(paths.classes)
        XCTAssertEqual(classes.names, ["a", "b", "c", "d"])
        let train = try Manifest.loadCSV(paths.train, classes: classes)
        XCTAssertEqual(train.samples.map(\.labels), result.train.samples.map(\.labels))
        XCTAssertEqual(train.samples.map(\.path), result.train.samples.map(\.path))
        XCTAssertTrue(try String(contentsOfFile: paths.train, encoding: .utf8).contains("../videos/"))
    }
}
