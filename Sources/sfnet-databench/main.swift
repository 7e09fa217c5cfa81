// sfnet-databench: the data pipeline's benchmark entry point and the synthetic-data generator,
// driven by Benchmarks/data_bench.py (and tests). Thin: every step is a Video library call.
//
//   sfnet-databench synth --out DIR [--per-class 8,2,2] [--size 64x64] [--seconds 2] [--fps 30] [--seed 0]
//                         [--codec h264|mpeg4|vp9] [--classes moving_across,bouncing,spinning,resting]
//   sfnet-databench bench --manifest train.csv [--frames 32] [--sampling-rate 2] [--crop 256] [--jitter 256,340]
//                         [--clips 32] [--workers 1] [--repeats 3] [--seed 0] [--resize swscale|exact]
//   sfnet-databench manifest [--rows 100000] [--repeats 5]   (parsing speed of an Excel-style CSV manifest)

import Foundation
import Video

struct UsageError: Error, CustomStringConvertible { let description: String }

func options(_ args: ArraySlice<String>) throws -> [String: String] {
    var out: [String: String] = [:]
    var i = args.startIndex
    while i < args.endIndex {
        let key = args[i]
        guard key.hasPrefix("--"), i + 1 < args.endIndex else { throw UsageError(description: "expected --option VALUE, found '\(key)'") }
        out[String(key.dropFirst(2))] = args[i + 1]
        i += 2
    }
    return out
}

func int(_ o: [String: String], _ key: String, _ fallback: Int) throws -> Int {
    guard let v = o[key] else { return fallback }
    guard let n = Int(v) else { throw UsageError(description: "--\(key) \(v): expected an integer") }
    return n
}

func ints(_ s: String, separator: Character) throws -> [Int] {
    let parts = s.split(separator: separator).map { Int($0) }
    guard !parts.contains(where: { $0 == nil }) else { throw UsageError(description: "'\(s)': expected integers separated by '\(separator)'") }
    return parts.map { $0! }
}

func synth(_ o: [String: String]) throws {
    guard let out = o["out"] else { throw UsageError(description: "synth needs --out DIR") }
    var s = SyntheticOptions()
    if let p = o["per-class"] {
        let n = try ints(p, separator: ",")
        guard n.count == 3 else { throw UsageError(description: "--per-class TRAIN,VAL,TEST") }
        (s.trainPerClass, s.valPerClass, s.testPerClass) = (n[0], n[1], n[2])
    }
    if let size = o["size"] {
        let n = try ints(size, separator: "x")
        guard n.count == 2 else { throw UsageError(description: "--size WIDTHxHEIGHT") }
        (s.width, s.height) = (n[0], n[1])
    }
    if let c = o["classes"] {
        s.classes = try c.split(separator: ",").map { name in
            guard let m = SyntheticMotion(rawValue: String(name)) else {
                throw UsageError(description: "unknown motion '\(name)'; choose from \(SyntheticMotion.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return m
        }
    }
    if let v = o["seconds"] { guard let d = Double(v) else { throw UsageError(description: "--seconds \(v)") }; s.seconds = d }
    s.fps = try int(o, "fps", s.fps)
    s.seed = UInt64(try int(o, "seed", 0))
    if let c = o["codec"] { guard let k = VideoCodec(rawValue: c) else { throw UsageError(description: "--codec \(c)") }; s.codec = k }
    let start = Date()
    let summary = try SyntheticData.generate(to: out, options: s)
    let seconds = Date().timeIntervalSince(start)
    print("{\"videos\": \(summary.videos), \"codec\": \"\(summary.codec.rawValue)\", \"seconds\": \(String(format: "%.3f", seconds)), \"train\": \"\(summary.train)\", \"val\": \"\(summary.val)\", \"test\": \"\(summary.test)\", \"classes\": \"\(summary.classes)\"}")
}

func bench(_ o: [String: String]) throws {
    guard let manifest = o["manifest"] else { throw UsageError(description: "bench needs --manifest CSV") }
    let dataset = try Manifest.loadCSV(manifest)
    var config = ClipConfig.study(frames: try int(o, "frames", 32))
    config.samplingRate = try int(o, "sampling-rate", 2)
    config.crop = try int(o, "crop", 256)
    if let j = o["jitter"] {
        let n = try ints(j, separator: ",")
        guard n.count == 2 else { throw UsageError(description: "--jitter MIN,MAX") }
        (config.jitterMin, config.jitterMax) = (n[0], n[1])
    }
    if let r = o["resize"] { guard let m = ResizeMethod(rawValue: r) else { throw UsageError(description: "--resize \(r)") }; config.resize = m }
    let clips = try int(o, "clips", 32), workers = try int(o, "workers", 1), repeats = try int(o, "repeats", 3)
    let seed = UInt64(try int(o, "seed", 0))
    var rates: [Double] = []
    var checksum = 0.0
    for r in 0..<repeats {
        let start = Date()
        var made = 0, epoch = r * 1000
        while made < clips {
            let loader = try ClipLoader(dataset: dataset, config: config,
                                        options: LoaderOptions(batchSize: 1, workers: workers, prefetchBatches: max(2, workers * 2),
                                                               seed: seed, onBadVideo: .fail), epoch: epoch)
            while made < clips, let batch = try loader.next() {
                made += batch.count
                checksum += Double(batch.fast[batch.fast.count / 2])
            }
            epoch += 1
        }
        rates.append(Double(clips) / Date().timeIntervalSince(start))
    }
    let sorted = rates.sorted()
    let median = sorted[sorted.count / 2]
    print("{\"impl\": \"sfnet\", \"workers\": \(workers), \"clips\": \(clips), \"clips_per_s\": [\(rates.map { String(format: "%.3f", $0) }.joined(separator: ", "))], \"median\": \(String(format: "%.3f", median)), \"checksum\": \(checksum)}")
}

/// Parsing speed of a manifest as Excel writes it (BOM, CRLF, every fifth path quoted with a comma and
/// quotes, multi-label rows): the line scan alone (TextRecords), the whole load (scan + yaslab/CSV.swift
/// fields + labels), and a frame list of as many rows.
func manifestBench(_ o: [String: String]) throws {
    let rows = try int(o, "rows", 100_000), repeats = try int(o, "repeats", 5)
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-manifest-bench-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    var csv = "\u{FEFF}Path,Labels,Animals\r\n", frames = "original_vido_id video_id frame_id path labels\n"
    for i in 0..<rows {
        let path = i % 5 == 0 ? "\"videos/clip \(i), \"\"take 2\"\".mp4\"" : "videos/clip_\(i).mp4"
        csv += "\(path),\(i % 7 == 0 ? "\(i % 9);\((i + 1) % 9)" : "\(i % 9)"),\(i % 3)\r\n"
        frames += "V\(i / 30) \(i / 30) \(i % 30) V\(i / 30)/\(i % 30).jpg \(i % 9),\((i + 1) % 9)\n"
    }
    let csvPath = dir.appendingPathComponent("m.csv").path, framePath = dir.appendingPathComponent("f.txt").path
    try Data(csv.utf8).write(to: URL(fileURLWithPath: csvPath))
    try Data(frames.utf8).write(to: URL(fileURLWithPath: framePath))
    func best(_ body: () throws -> Int) rethrows -> (seconds: Double, count: Int) {
        var times: [Double] = [], count = 0
        for _ in 0..<repeats { let t = Date(); count = try body(); times.append(Date().timeIntervalSince(t)) }
        return (times.min()!, count)
    }
    let scan = try best { try TextRecords.read(csvPath, mode: .csv).count }
    let load = try best { try Manifest.loadCSV(csvPath).samples.count }
    let frameList = try best { try Manifest.loadFrameList(framePath).samples.count }
    func f(_ x: Double) -> String { String(format: "%.4f", x) }
    print("{\"rows\": \(rows), \"csv_bytes\": \(csv.utf8.count), \"scan_s\": \(f(scan.seconds)), \"load_csv_s\": \(f(load.seconds)), "
          + "\"fields_and_labels_s\": \(f(load.seconds - scan.seconds)), \"rows_per_s\": \(Int(Double(load.count) / load.seconds)), "
          + "\"frame_list_s\": \(f(frameList.seconds)), \"frame_list_videos\": \(frameList.count)}")
}

let args = CommandLine.arguments
do {
    guard args.count >= 2 else { throw UsageError(description: "usage: sfnet-databench synth|bench|manifest --option VALUE ...") }
    let o = try options(args[2...])
    switch args[1] {
    case "synth": try synth(o)
    case "bench": try bench(o)
    case "manifest": try manifestBench(o)
    default: throw UsageError(description: "unknown command '\(args[1])': synth, bench or manifest")
    }
} catch let error as UsageError {
    FileHandle.standardError.write(Data("sfnet-databench: \(error)\n".utf8))
    exit(2)
} catch {
    FileHandle.standardError.write(Data("sfnet-databench: \(error.localizedDescription)\n".utf8))
    exit(1)
}
