// `sfnet eval` and `sfnet predict`: thin wrappers over Finetune.Evaluation / Predictor.

import ArgumentParser
import Finetune
import Formats
import Foundation
import Networks
import Train
import Video

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "mAP, per-class AP, top-1/top-5 and the confusion matrix of weights on a labelled data set.",
        discussion: """
        mAP is the unweighted mean over classes with at least one positive of scikit-learn's
        average_precision_score. Each video is scored over SxT views (spatial crops x temporal clips), each
        view through the head's activation, combined by --ensemble: max (default for sigmoid heads), mean
        (default for softmax heads) or sum (PySlowFast's ENSEMBLE_METHOD sum: the --scores file then holds the
        views' sums; sum and mean rank alike, so mAP and top-k agree).
        With a PySlowFast --config: views TEST.NUM_SPATIAL_CROPS x TEST.NUM_ENSEMBLE_VIEWS, DATA.ENSEMBLE_METHOD,
        DATA.NUM_FRAMES, SAMPLING_RATE, TEST_CROP_SIZE, MEAN/STD, REVERSE_INPUT_CHANNEL and, without --data,
        DATA.PATH_TO_DATA_DIR/val.csv (PySlowFast's Charades test list); options given here override it.
        Examples:
          sfnet eval --weights runs/k400/best.safetensors --data data/test.csv
          sfnet eval --weights runs/k400/best.safetensors --data data/test.csv --views 3x10 --ensemble sum --json
          sfnet eval --weights runs/ak/best.safetensors --data AK/annotation/val.csv --frame-root AK/dataset/image --views 3x10
          sfnet eval --weights runs/ak/best.safetensors --config configs/AK/SLOWFAST_8x8_R50.yaml
        """)

    @Option(help: "Native weights (e.g. a run's best.safetensors).") var weights: String
    @Option(help: "Labelled data: CSV manifest or Charades / Animal Kingdom frame list (default with --config: DATA.PATH_TO_DATA_DIR/val.csv).") var data: String?
    @Option(name: .customLong("frame-root"), help: "Folder a frame list's frame paths are relative to (default: the --config's DATA.PATH_PREFIX, else the list's folder).") var frameRoot: String?
    @Option(help: "PySlowFast YAML config: test views, ensemble, frames, crop, normalisation; options given here override it.") var config: String?
    @Option(help: "How a video's views combine: sum, max or mean (default: max for sigmoid heads, mean for softmax).") var ensemble: EnsembleMethod?
    @Option(help: "Class list, one name per line or an .xlsx (default: classes.txt beside the data, else the weights' class names).") var classes: String?
    @Option(name: .customLong("class-column"), help: "The .xlsx class list's column, by its header.") var classColumn: String?
    @OptionGroup var scoring: ScoringOptions
    @Option(help: "Clips per forward pass.") var batch = 8
    @Flag(help: "Print JSON.") var json = false
    @Option(help: "Also write each video's ensembled scores and labels as CSV here (path, score per class, label per class).")
    var scores: String?
    @Flag(help: "Replace an existing --scores file.") var force = false

    func run() throws {
        if let scores { try AtomicFile.refuseExisting(scores, overwrite: force) }
        Threading.setThreads(scoring.threads)
        // The config's test settings (if any), then the options given here.
        var c = FinetuneOptions(train: "", out: "")
        var fromConfig = Set<String>()
        if let config {
            var src = SettingSources()
            try PySlowFastConfig.load(config).apply(to: &c, sources: &src)
            fromConfig = Set(src.origin.filter { $0.value.hasPrefix("file ") }.map(\.key))
        }
        guard let data = data ?? (config != nil && !c.train.isEmpty ? c.val : nil) else {
            throw ValidationError("--data is required (or a --config with DATA.PATH_TO_DATA_DIR)")
        }
        try Manifest.checkFrameRoot(frameRoot, for: [data])
        let views = scoring.views ?? (config != nil ? Views(spatial: c.testSpatialCrops ?? 3, temporal: c.testTemporalViews ?? 10) : Views(spatial: 1, temporal: 1))
        let w = try NativeWeights.load(weights)
        var arch = w.arch
        if let frames = scoring.frames ?? (fromConfig.contains("frames") ? c.frames : nil) { arch.numFrames = frames }
        let testCrop = scoring.crop ?? (fromConfig.contains("test-crop") ? c.testCrop : nil)
        let samplingRate = scoring.samplingRate ?? (config != nil ? c.samplingRate : 2)
        let list: ClassList
        let beside = URL(fileURLWithPath: data).deletingLastPathComponent().appendingPathComponent("classes.txt").path
        if let classes { list = try ClassList.load(classes, column: classColumn) }
        else if FileManager.default.fileExists(atPath: beside) { list = try ClassList.load(beside) }
        else if let names = w.classes { list = try ClassList(names: names) }
        else { throw InputError(description: "\(data): no class list (pass --classes, or put classes.txt beside the manifest)") }
        if let names = w.classes, names != list.names {
            throw InputError(description: "the weights' classes (\(names.joined(separator: ", "))) differ from the data set's (\(list.names.joined(separator: ", ")))")
        }
        let ds = try Manifest.load(data, frameRoot: frameRoot ?? (config != nil ? c.frameRoot : nil), classes: list)
        var clip = Scoring.clipConfig(arch: arch, frames: arch.numFrames, samplingRate: samplingRate, crop: testCrop ?? arch.trainCrop,
                                      temporalViews: views.temporal, spatialCrops: views.spatial)
        if config != nil { clip.mean = c.mean; clip.std = c.std; clip.reverseChannels = c.reverseChannels }
        let bar = Terminal.Progress("scoring")
        let e = try Evaluation.run(model: try makeEvalNetwork(config: arch, weights: w.tensors), dataset: ds, clip: clip, batch: batch,
                                   workers: scoring.workers, onBadVideo: .skip, multiLabel: arch.headActivation == .sigmoid,
                                   ensemble: ensemble ?? (fromConfig.contains("ensemble") ? c.ensemble : nil), progress: bar.update)
        bar.finish()
        let ev = e.evaluation
        if let scores {
            func q(_ s: String) -> String { s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }
            var rows = ["path," + list.names.map { q("score:" + $0) }.joined(separator: ",") + "," + list.names.map { q("label:" + $0) }.joined(separator: ",")]
            for (k, s) in e.scores.samples.enumerated() {
                let row = e.scores.row(k).map { String(format: "%.9g", $0) }
                let labels = (0 ..< list.count).map { e.labels[k].contains($0) ? "1" : "0" }
                rows.append(([q(ds.samples[s].path)] + row + labels).joined(separator: ","))
            }
            let bytes = Array((rows.joined(separator: "\n") + "\n").utf8)
            try AtomicFile.write(to: scores, overwrite: force) { o in try bytes.withUnsafeBytes { try o.write($0) } }
        }
        if json {
            func num(_ d: Double?) -> JSONValue { d.map { $0.isFinite ? .double($0) : .null } ?? .null }
            let j: JSONValue = .object([
                ("weights", .string(weights)), ("data", .string(data)), ("clips", .int(ev.clips)),
                ("skipped", .array(e.scores.skipped.map { .string("\($0)") })), ("views", .string("\(views.spatial)x\(views.temporal)")),
                ("ensemble", .string(e.scores.ensemble.rawValue)),
                ("map", num(ev.meanAP.mAP)), ("top1", .double(ev.top1)), ("top5", .double(ev.top5)),
                ("per_class_ap", .object(zip(list.names, ev.meanAP.perClass).map { ($0, num($1)) })),
                ("confusion", ev.confusion.map { .array($0.map { .array($0.map { .int($0) }) }) } ?? .null),
                ("seconds", .double(e.scores.seconds)),
            ])
            Terminal.write(j.serialized + "\n")
            return
        }
        var out = "eval \(weights) on \(data): \(ev.clips) clips, \(views.spatial)x\(views.temporal) views (\(e.scores.ensemble.rawValue)), \(String(format: "%.1f", e.scores.seconds)) s\n"
        // One line per distinct problem (each of a clip's views that failed is recorded).
        var counts: [String: Int] = [:], order: [String] = []
        for s in e.scores.skipped { if counts[s.description] == nil { order.append(s.description) }; counts[s.description, default: 0] += 1 }
        for s in order { out += "  skipped: \(s)" + (counts[s]! > 1 ? " (\(counts[s]!) views)" : "") + "\n" }
        out += "  mAP    \(ev.meanAP.mAP.map { String(format: "%.2f%%", $0 * 100) } ?? "n/a (no class has a positive clip)")\n"
        out += String(format: "  top-1  %.2f%%\n  top-5  %.2f%%\n  per-class AP:\n", ev.top1 * 100, ev.top5 * 100)
        let w0 = max(12, list.names.map(\.count).max() ?? 0)
        for (name, ap) in zip(list.names, ev.meanAP.perClass) {
            out += "    \(name.padding(toLength: w0, withPad: " ", startingAt: 0))  \(ap.map { String(format: "%.3f", $0) } ?? "n/a (no positives)")\n"
        }
        if let c = ev.confusion {
            out += "  confusion (rows: truth, columns: predicted):\n"
            for (name, row) in zip(list.names, c) {
                out += "    \(name.padding(toLength: w0, withPad: " ", startingAt: 0))  " + row.map { String(format: "%4d", $0) }.joined(separator: " ") + "\n"
            }
        }
        Terminal.write(out)
    }
}

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "The top classes of each video, with their confidence.",
        discussion: """
        Class names come from the weights (fine-tuned weights carry them) or from --classes (one name per line, \
        in class id order; converted K400 weights carry none and print class ids without it).
        Examples:
          sfnet predict --weights runs/k400/best.safetensors clip1.mp4 clip2.mkv
          sfnet predict --weights runs/k400/best.safetensors videos/*.mp4 --top-k 3 --csv predictions.csv
          sfnet predict --weights k400.safetensors --classes kinetics400.txt clip.mp4
        """)

    @Option(help: "Native weights (e.g. a run's best.safetensors).") var weights: String
    @Argument(help: "Videos (MP4, MKV, AVI, WebM) or folders of frames.") var videos: [String]
    @Option(name: .customLong("top-k"), help: "Classes per video.") var topK = 3
    @Option(help: "Also write the predictions as CSV here.") var csv: String?
    @Option(help: "Class names, one per line in class id order, or an .xlsx (overrides names the weights carry).") var classes: String?
    @Option(name: .customLong("class-column"), help: "The .xlsx class list's column, by its header.") var classColumn: String?
    @Flag(help: "Replace an existing --csv file.") var force = false
    @OptionGroup var scoring: ScoringOptions

    func validate() throws {
        if videos.isEmpty { throw ValidationError("give at least one video") }
        if topK < 1 { throw ValidationError("--top-k must be >= 1") }
    }

    func run() throws {
        if let csv { try AtomicFile.refuseExisting(csv, overwrite: force) }
        let preds = try Predictor.run(weights: weights, videos: videos, topK: topK, frames: scoring.frames, samplingRate: scoring.samplingRate ?? 2,
                                      crop: scoring.crop, temporalViews: scoring.views?.temporal ?? 1, spatialCrops: scoring.views?.spatial ?? 1,
                                      threads: scoring.threads, workers: scoring.workers,
                                      classNames: try classes.map { try ClassList.load($0, column: classColumn).names })
        var out = ""
        var rows = ["video,rank,label,score"]
        for p in preds {
            if let e = p.error { out += "\(p.path): ERROR \(e)\n"; continue }
            out += "\(p.path): " + p.top.map { "\($0.label) \(String(format: "%.3f", $0.score))" }.joined(separator: ", ") + "\n"
            func q(_ s: String) -> String { s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }
            for (r, t) in p.top.enumerated() { rows.append("\(q(p.path)),\(r + 1),\(q(t.label)),\(String(format: "%.6f", t.score))") }
        }
        Terminal.write(out)
        if let csv {
            let bytes = Array((rows.joined(separator: "\n") + "\n").utf8)
            try AtomicFile.write(to: csv, overwrite: force) { o in try bytes.withUnsafeBytes { try o.write($0) } }
        }
        if preds.contains(where: { $0.error != nil }) { throw ExitCode(1) }
    }
}

/// How `eval` and `predict` score a video: the views, the clip and the threads.
struct ScoringOptions: ParsableArguments {
    @Option(help: "Views SxT: spatial crops x temporal clips (default 1x1, or the --config's test views).") var views: Views?
    @Option(help: "Frames per clip (default: the weights' num_frames).") var frames: Int?
    @Option(name: .customLong("sampling-rate"), help: "Frame stride on the 30 fps timeline (default 2).") var samplingRate: Int?
    @Option(help: "Crop (default: the weights' train_crop).") var crop: Int?
    @Option(help: "Compute threads.") var threads = 2
    @Option(help: "Video loading threads.") var workers = 1
}
