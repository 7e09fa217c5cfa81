// `sfnet finetune`, `eval` and `predict` through the real binary on manifests and class lists as people
// write them: CRLF from Python's csv module and Excel's "CSV UTF-8" (BOM + CRLF, quoted commas and quotes).

import Foundation
import XCTest

final class ManifestFormsCLITests: XCTestCase {
    /// One row as Python's `csv.writer` (dialect 'excel') writes it: quotes only around fields holding a
    /// comma, a quote or a line end, quotes doubled, CRLF.
    static func csvWriterRow(_ fields: [String]) -> String {
        fields.map { f in
            f.contains(where: { $0 == "," || $0 == "\"" || $0 == "\r" || $0 == "\n" || $0 == "\r\n" })
                ? "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : f
        }.joined(separator: ",") + "\r\n"
    }

    /// The same rows through the real `csv.writer` when a python3 is on the PATH (nil otherwise).
    static func pythonCSVWriter(_ rows: [[String]]) throws -> [UInt8]? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let json = String(decoding: try JSONSerialization.data(withJSONObject: rows), as: UTF8.self)
        p.arguments = ["python3", "-c", "import csv, io, json, sys\nout = io.TextIOWrapper(sys.stdout.buffer, encoding='utf-8', newline='')\n"
                       + "csv.writer(out).writerows(json.loads(sys.argv[1])); out.flush()", json]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return p.terminationStatus == 0 ? [UInt8](data) : nil
    }

    /// The rows of a manifest `sfnet data synth` wrote (LF, no quotes: plain names).
    static func rows(_ path: URL) throws -> [[String]] {
        try String(contentsOf: path, encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    }

    func testCRLFAndExcelStyleManifestsAndClassListsWorkForFinetuneEvalAndPredict() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data")
        let synth = try CLI.run(["data", "synth", "-o", data.path, "--classes", "moving_across,resting", "--train-per-class", "2",
                                 "--val-per-class", "1", "--test-per-class", "1", "--size", "64", "--object-scale", "3", "--noise", "0", "--seed", "7"])
        XCTAssertEqual(synth.status, 0, synth.stderr)
        // A clip whose name holds a comma and quotes, so the manifests need RFC 4180 quoting.
        var test = try Self.rows(data.appendingPathComponent("test.csv"))
        let odd = "videos/clip, \"odd\" one.mp4"
        try FileManager.default.moveItem(at: data.appendingPathComponent(test[1][0]), to: data.appendingPathComponent(odd))
        test[1][0] = odd

        // Python's csv module: CRLF (checked byte for byte against the real csv.writer when python3 is there).
        func pythonForm(_ rows: [[String]], _ name: String) throws -> String {
            let bytes = Array(rows.map(Self.csvWriterRow).joined().utf8)
            if let python = try Self.pythonCSVWriter(rows) { XCTAssertEqual(python, bytes, "csv.writer's bytes for \(name)") }
            let p = data.appendingPathComponent(name).path
            try Data(bytes).write(to: URL(fileURLWithPath: p))
            return p
        }
        // Excel's "CSV UTF-8": a BOM, CRLF, a capitalised header, quotes where needed.
        func excelForm(_ rows: [[String]], _ name: String) throws -> String {
            var rows = rows
            rows[0] = rows[0].map { $0.prefix(1).uppercased() + $0.dropFirst() }
            let p = data.appendingPathComponent(name).path
            try Data([0xEF, 0xBB, 0xBF] + Array(rows.map(Self.csvWriterRow).joined().utf8)).write(to: URL(fileURLWithPath: p))
            return p
        }
        let train = try pythonForm(try Self.rows(data.appendingPathComponent("train.csv")), "train_python.csv")
        let val = try excelForm(try Self.rows(data.appendingPathComponent("val.csv")), "val_excel.csv")
        let testPython = try pythonForm(test, "test_python.csv")
        let testExcel = try excelForm(test, "test_excel.csv")
        XCTAssertTrue(try String(contentsOfFile: testPython, encoding: .utf8).contains("\"videos/clip, \"\"odd\"\" one.mp4\""))
        // classes.txt as Notepad saves it (BOM + CRLF); eval reads the one beside the manifest.
        let classesPath = data.appendingPathComponent("classes.txt")
        let names = try String(contentsOf: classesPath, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(names, ["moving_across", "resting"])
        try Data([0xEF, 0xBB, 0xBF] + Array(names.map { $0 + "\r\n" }.joined().utf8)).write(to: classesPath)

        let run = dir.appendingPathComponent("run")
        let r = try CLI.run(["finetune", "--init", "scratch", "--arch", FinetuneCLITests.arch, "--train", train, "--val", val,
                             "--test", testPython, "--out", run.path, "--epochs", "1"] + FinetuneCLITests.recipe)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("test: mAP"), r.stdout)
        let best = run.appendingPathComponent("best.safetensors").path
        for manifest in [testPython, testExcel] {
            let ev = try CLI.run(["eval", "--weights", best, "--data", manifest, "--sampling-rate", "4", "--json"])
            XCTAssertEqual(ev.status, 0, ev.stderr)
            XCTAssertTrue(ev.stdout.contains("\"clips\""), ev.stdout)
        }
        let p = try CLI.run(["predict", "--weights", best, "--classes", classesPath.path, "--top-k", "2", "--sampling-rate", "4",
                             data.appendingPathComponent(odd).path])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertTrue(p.stdout.contains("moving_across") && p.stdout.contains("resting"), p.stdout)
        // A quote that never closes stops eval before any work, naming the file and the line it opened on.
        let broken = data.appendingPathComponent("broken.csv").path
        try Data("path,labels\r\n\"videos/a.mp4,resting\r\n".utf8).write(to: URL(fileURLWithPath: broken))
        let bad = try CLI.run(["eval", "--weights", best, "--data", broken])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("broken.csv:2: unterminated quote"), bad.stderr)
    }
}
