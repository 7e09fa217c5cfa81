// `sfnet experiment`: the study's grid — every start (scratch, K400 weights, ImageNet
// weights, ...) fine-tuned on every training-set size (N clips per class, subsets drawn
// with a seed), each run evaluated on the same test set — and its Table 1 (test mAP per
// start and size) with a combined report linking every run's own.

import Foundation
import Formats
import Report
import Video

public struct ExperimentStart: Equatable, Sendable {
    public var name: String
    /// nil: from scratch.
    public var weights: String?

    /// `scratch` or `name=weights.safetensors`.
    public init(parsing s: String) throws {
        if s == "scratch" { (name, weights) = ("scratch", nil); return }
        let parts = s.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw FinetuneError("--starts entry '\(s)' is neither 'scratch' nor NAME=WEIGHTS")
        }
        (name, weights) = (parts[0], parts[1])
    }
}

public struct ExperimentResult {
    public var cells: [ReportHTML.GridCell]
    public var table: String
    public var report: String
}

public enum Experiment {
    /// Runs the grid. `base` carries every fine-tuning setting (train/val/test manifests, recipe);
    /// each cell gets its own run directory under `base.out`.
    public static func run(base: FinetuneOptions, starts: [ExperimentStart], perClass: [Int],
                           onEvent: @escaping (String, FinetuneEvent) -> Void = { _, _ in }) throws -> ExperimentResult {
        guard !starts.isEmpty, !perClass.isEmpty, perClass.allSatisfy({ $0 > 0 }) else {
            throw FinetuneError("--starts and --per-class need at least one entry each (sizes > 0)")
        }
        guard base.test != nil else { throw FinetuneError("an experiment needs --test: its table is test mAP") }
        let root = URL(fileURLWithPath: base.out)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let classes = try FinetuneRun.classList(base)
        try Manifest.checkFrameRoot(base.frameRoot, for: [base.train] + [base.val, base.test].compactMap { $0 })
        let full = try Manifest.load(base.train, frameRoot: base.frameRoot, classes: classes)
        // A frame list's subsets keep its rows' paths: they resolve against the pool's frame root.
        let isFrameList = full.samples.contains { $0.listRows != nil }
        let frameRoot = base.frameRoot ?? (isFrameList ? URL(fileURLWithPath: base.train).deletingLastPathComponent().path : nil)
        var cells: [ReportHTML.GridCell] = []
        for n in perClass.sorted() {
            // The same subset for every start: drawn once per size with the run's seed.
            let subset = try DataSplit.split(full, SplitRequest(train: n, val: 0, test: 0, seed: base.seed, singleLabel: false, singleAnimal: false))
            let dir = root.appendingPathComponent("data-\(n)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let csv = dir + "/train.csv"
            try Manifest.write(subset.train, to: csv)
            try classes.write(to: dir + "/classes.txt")
            for s in starts {
                var o = base
                o.train = csv
                o.classes = dir + "/classes.txt"
                o.frameRoot = frameRoot
                o.weights = s.weights
                o.initKind = s.weights == nil ? .scratch : .weights
                let name = "\(s.name)-\(n)"
                o.out = root.appendingPathComponent(name).path
                let summary = try FinetuneRun(o) { onEvent(name, $0) }.run()
                cells.append(ReportHTML.GridCell(start: s.name, perClass: n, mAP: summary.record.evaluation?.mAP ?? nil, run: name))
            }
        }
        let table = ReportHTML.table(cells)
        let page = ReportHTML.renderGrid(name: root.lastPathComponent, cells: cells)
        let reportPath = root.appendingPathComponent("experiment.html").path
        try AtomicFile.write(to: reportPath, overwrite: true) { out in try Array(page.utf8).withUnsafeBytes { try out.write($0) } }
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = try e.encode(cells)
        try AtomicFile.write(to: root.appendingPathComponent("experiment.json").path, overwrite: true) { out in try json.withUnsafeBytes { try out.write($0) } }
        return ExperimentResult(cells: cells, table: table, report: reportPath)
    }
}
