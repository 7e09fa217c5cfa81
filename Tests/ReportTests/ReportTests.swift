// metrics.json / metrics.csv / report.html of a run: content, escaping of names that
// come from users' files, and the experiment table.

import Foundation
@testable import Report
import XCTest

final class ReportTests: XCTestCase {
    static func sampleRun() -> RunRecord {
        var r = RunRecord(name: "wildlife <test>", classes: ["walking", "running", "<script>alert(1)</script>", "eating & drinking"],
                          settings: [.init("recipe", "study"), .init("weights", "k400.safetensors")])
        for i in 0 ..< 40 {
            r.iterations.append(IterationRecord(iteration: i + 1, epoch: Double(i + 1) / 10, loss: 0.7 * exp(-Double(i) / 15),
                                                lr: 0.00085 + (0.0375 - 0.00085) * min(1, Double(i) / 20)))
        }
        for e in 1 ... 4 {
            r.epochs.append(EpochRecord(epoch: e, trainLoss: 0.7 / Double(e), valMAP: [0.4, 0.62, 0.81, 0.78][e - 1],
                                        valTop1: [0.3, 0.5, 0.75, 0.7][e - 1], lr: 0.0375, seconds: 12.5, clipsPerSecond: 3.2))
        }
        r.evaluation = EvaluationRecord(split: "test", clips: 40, mAP: 0.8, perClassAP: [0.9, 0.7, nil, 0.8], top1: 0.75, top5: 1,
                                        confusion: [[9, 1, 0, 0], [2, 8, 0, 0], [0, 0, 0, 0], [0, 1, 0, 9]])
        r.examples = [ExampleClip(path: "clips/a<b>.mp4", truth: ["walking"], predictions: [.init(label: "walking", score: 0.91), .init(label: "running", score: 0.05)]),
                      ExampleClip(path: "clips/c.mp4", truth: ["running"], predictions: [.init(label: "walking", score: 0.6)])]
        r.notes = ["head replaced: 400 -> 4 classes"]
        return r
    }

    func testBestEpochAndCSV() {
        let r = Self.sampleRun()
        XCTAssertEqual(r.best?.epoch, 3)
        XCTAssertEqual(r.best?.mAP, 0.81)
        let lines = r.csv().split(separator: "\n")
        XCTAssertEqual(lines.first, "epoch,train_loss,val_map,val_top1,lr,seconds,clips_per_second,data_seconds,step_seconds,validation_seconds,checkpoint_seconds")
        XCTAssertEqual(lines.count, 5)
        XCTAssertEqual(lines[3], "3,0.233333,0.81,0.75,0.0375,12.5,3.2,,,,", "no phases recorded: empty cells")
        var timed = r
        timed.epochs[2].phases = PhaseSeconds(data: 0.25, step: 9.5, validation: 2, checkpoint: 0.75)
        XCTAssertEqual(timed.csv().split(separator: "\n")[3], "3,0.233333,0.81,0.75,0.0375,12.5,3.2,0.25,9.5,2,0.75")
        XCTAssertEqual(timed.epochs[2].phases?.total, 12.5)
        XCTAssertEqual(try RunRecord.decode(try timed.json()), timed, "phases survive metrics.json")
        var noVal = r
        noVal.epochs[0].valMAP = nil
        XCTAssertTrue(noVal.csv().split(separator: "\n")[1].hasPrefix("1,0.7,,"))
    }

    func testJSONRoundTripKeepsEverythingIncludingNonFiniteLoss() throws {
        var r = Self.sampleRun()
        r.iterations[3].loss = .nan
        let back = try RunRecord.decode(try r.json())
        XCTAssertTrue(back.iterations[3].loss.isNaN)
        back.iterations.indices.filter { $0 != 3 }.forEach { XCTAssertEqual(back.iterations[$0], r.iterations[$0]) }
        XCTAssertEqual(back.epochs, r.epochs)
        XCTAssertEqual(back.evaluation, r.evaluation)
        XCTAssertEqual(back.examples, r.examples)
        XCTAssertEqual(back.settings, r.settings)
    }

    func testHTMLIsSelfContainedAndEscapesUserText() {
        let html = ReportHTML.render(Self.sampleRun())
        XCTAssertTrue(html.hasPrefix("<!DOCTYPE html>"))
        XCTAssertFalse(html.lowercased().contains("<script"), "a class name must never become markup")
        XCTAssertTrue(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        XCTAssertTrue(html.contains("eating &amp; drinking"))
        XCTAssertTrue(html.contains("clips/a&lt;b&gt;.mp4"))
        XCTAssertFalse(html.contains("http://") && html.contains("src="), "no external resources")
        // Charts: loss/LR, validation, AP bars, confusion heat map.
        XCTAssertEqual(html.components(separatedBy: "<svg ").count - 1, 4)
        XCTAssertTrue(html.contains("81.0%"))                     // best val mAP
        XCTAssertTrue(html.contains("class=\"bad\">walking (0.60)")) // a wrong top prediction is marked
        XCTAssertTrue(html.contains(">n/a<"))                      // class without positives
        XCTAssertTrue(html.contains("head replaced"))
        // The confusion matrix prints its counts.
        XCTAssertTrue(html.contains(">9</text>") && html.contains(">8</text>"))
    }

    func testEmptyRunStillRenders() {
        let html = ReportHTML.render(RunRecord(name: "empty", classes: ["a"]))
        XCTAssertTrue(html.contains("no data"))
        XCTAssertTrue(html.hasSuffix("</html>\n"))
    }

    func testTicksAreNiceAndCoverTheRange() {
        XCTAssertEqual(SVG.ticks(0, 1), [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1])
        let t = SVG.ticks(0.00085, 0.0375)
        XCTAssertLessThanOrEqual(t.first!, 0.0375)
        XCTAssertGreaterThanOrEqual(t.last!, 0.03)
        XCTAssertEqual(SVG.ticks(3, 3), [3])
    }

    func testExperimentTableAndPage() {
        let cells = [ReportHTML.GridCell(start: "scratch", perClass: 10, mAP: 0.21, run: "scratch-10"),
                     ReportHTML.GridCell(start: "scratch", perClass: 100, mAP: 0.35, run: "scratch-100"),
                     ReportHTML.GridCell(start: "k400", perClass: 10, mAP: 0.52, run: "k400-10"),
                     ReportHTML.GridCell(start: "k400", perClass: 100, mAP: nil, run: "k400-100")]
        let text = ReportHTML.table(cells)
        XCTAssertEqual(text, """
        start           10/class   100/class
        scratch            21.0%       35.0%
        k400               52.0%           —

        """)
        let html = ReportHTML.renderGrid(name: "study", cells: cells)
        XCTAssertTrue(html.contains("<a href=\"k400-10/report.html\">52.0%</a>"))
        XCTAssertEqual(html.components(separatedBy: "<svg ").count - 1, 1)
    }
}

/// The report rendered by a real browser engine (headless Chromium, when installed): the page
/// loads without external resources and paints charts. SFNET_REPORT_SCREENSHOT=DIR keeps the
/// HTML and the PNG for a person to look at.
final class ReportRenderTests: XCTestCase {
    func chromium() -> String? {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    func testChromiumRendersTheReport() throws {
        guard let browser = chromium() else { throw XCTSkip("SKIPPED: chromium not installed (apt-get install chromium)") }
        let keep = ProcessInfo.processInfo.environment["SFNET_REPORT_SCREENSHOT"]
        let dir = keep.map { URL(fileURLWithPath: $0) } ?? FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-report-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        if keep == nil { addTeardownBlock { try? FileManager.default.removeItem(at: dir) } }
        let html = dir.appendingPathComponent("report.html"), png = dir.appendingPathComponent("report.png")
        try ReportHTML.render(ReportTests.sampleRun()).write(to: html, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: browser)
        p.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,1500",
                       "--screenshot=\(png.path)", html.absoluteString]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let bytes = try [UInt8](Data(contentsOf: png))
        XCTAssertEqual(Array(bytes.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "a PNG")
        // A blank page compresses to a few KB; charts, tables and text make it far larger.
        XCTAssertGreaterThan(bytes.count, 40_000, "the screenshot looks empty")
    }
}
