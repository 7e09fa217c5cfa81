// The demo's data set, made by our own code: an object (a rectangle of random colour, size and aspect)
// on a random gradient background with noise, moving in one of a few distinct ways per class,
// encoded as real MP4 files (H.264 when this FFmpeg has it, else MPEG-4) with train/val/test
// manifests and a class list.

import Families
import Convert
import Foundation

public enum SyntheticMotion: String, CaseIterable, Sendable, Codable {
    /// Crosses the frame at constant speed in a random direction.
    case movingAcross = "moving_across"
    /// Bounces on a floor (|sin| height), a little horizontal drift.
    case bouncing
    /// Rotates in place.
    case spinning
    /// Stays still.
    case resting
    /// Grows and shrinks in place.
    case pulsing
}

public struct SyntheticOptions: Sendable {
    public var classes: [SyntheticMotion] = [.movingAcross, .bouncing, .spinning, .resting]
    public var trainPerClass = 8
    public var valPerClass = 2
    public var testPerClass = 2
    public var width = 64
    public var height = 64
    public var seconds = 2.0
    public var fps = 30
    public var seed: UInt64 = 0
    public var codec = VideoCodec.preferred
    /// Per-pixel noise amplitude is drawn in 0...maxNoise (0-255 units).
    public var maxNoise = 12.0
    /// Object size relative to the default (half-length 7-12 px at 64x64); larger objects make
    /// motion a larger share of the frame, i.e. an easier task.
    public var objectScale = 1.0

    public init() {}
}

public struct SyntheticSummary: Sendable {
    public let train: String
    public let val: String
    public let test: String
    public let classes: String
    public let videos: Int
    public let codec: VideoCodec
}

public enum SyntheticData {
    /// The frames of one clip of `motion`, all random choices from `rng`.
    public static func render(_ motion: SyntheticMotion, width: Int, height: Int, frames: Int, fps: Int,
                              maxNoise: Double, objectScale: Double = 1, rng: inout SplitMix64) -> [RGBFrame] {
        let scale = Double(min(width, height)) / 64
        // Background: a gradient between two random colours along a random direction.
        let c0 = (0..<3).map { _ in rng.uniform(20, 235) }, c1 = (0..<3).map { _ in rng.uniform(20, 235) }
        let gAngle = rng.uniform(0, 2 * .pi)
        // Object: a rectangle far enough from the background colours to be seen.
        var colour = (0..<3).map { _ in rng.uniform(0, 255) }
        let meanBG = (0..<3).map { (c0[$0] + c1[$0]) / 2 }
        if zip(colour, meanBG).map({ abs($0 - $1) }).reduce(0, +) < 180 { colour = meanBG.map { $0 > 127 ? $0 - 120 : $0 + 120 } }
        let halfLong = rng.uniform(7, 12) * scale * objectScale, halfShort = halfLong / rng.uniform(1.6, 3)
        let angle0 = rng.uniform(0, .pi)
        let noise = rng.uniform(0, maxNoise)
        let seconds = Double(frames) / Double(fps)
        let margin = halfLong + 2
        let cx0 = rng.uniform(margin, Double(width) - margin), cy0 = rng.uniform(margin, Double(height) - margin)
        // Motion parameters.
        let speedSign = rng.nextUnit() < 0.5 ? -1.0 : 1.0
        let travelAngle = rng.uniform(-0.5, 0.5) + (rng.nextUnit() < 0.5 ? 0 : .pi / 2)
        let speedFactor = rng.uniform(0.8, 1.25)
        let bounceHz = rng.uniform(1.0, 2.0), bounceHeight = rng.uniform(0.35, 0.6) * Double(height)
        let drift = rng.uniform(-6, 6) * scale
        let spin = (rng.nextUnit() < 0.5 ? -1.0 : 1.0) * rng.uniform(1.0, 2.0) * 2 * .pi / 2   // 0.5-1 turns per second
        let pulseHz = rng.uniform(0.8, 1.6)
        var noiseRNG = SplitMix64(seed: rng.next())

        var out: [RGBFrame] = []
        out.reserveCapacity(frames)
        let gx = cos(gAngle), gy = sin(gAngle)
        let diag = Double(width) * abs(gx) + Double(height) * abs(gy)
        for f in 0..<frames {
            let t = Double(f) / Double(fps)
            var cx = cx0, cy = cy0, angle = angle0, size = 1.0
            switch motion {
            case .movingAcross:
                // From outside one edge to outside the other over the clip.
                let span = (travelAngle.magnitude < 1 ? Double(width) : Double(height)) + 2 * margin
                let progress = (t / seconds) * span * speedFactor - span * (speedFactor - 1) / 2
                let d = speedSign > 0 ? progress - margin : span - margin - progress
                if travelAngle.magnitude < 1 { cx = d; cy = cy0 + tan(travelAngle) * (d - Double(width) / 2) * 0.5 }
                else { cy = d; cx = cx0 + tan(travelAngle - .pi / 2) * (d - Double(height) / 2) * 0.5 }
            case .bouncing:
                let floor = Double(height) - halfShort - 2
                cy = floor - abs(sin(.pi * bounceHz * t)) * bounceHeight
                cx = cx0 + drift * t / seconds
            case .spinning:
                angle = angle0 + spin * t
            case .resting:
                break
            case .pulsing:
                size = 1 + 0.45 * sin(2 * .pi * pulseHz * t)
            }
            let a = halfLong * size, b = halfShort * size
            let ca = cos(angle), sa = sin(angle)
            var pixels = [UInt8](repeating: 0, count: width * height * 3)
            let noiseAmp = Int(noise)
            for y in 0..<height {
                for x in 0..<width {
                    let o = (y * width + x) * 3
                    let dx = Double(x) + 0.5 - cx, dy = Double(y) + 0.5 - cy
                    let u = dx * ca + dy * sa, v = -dx * sa + dy * ca
                    let inside = abs(u) <= a && abs(v) <= b
                    let g = min(max(((Double(x) * gx + Double(y) * gy) / max(diag, 1)).magnitude, 0), 1)
                    for c in 0..<3 {
                        var value = inside ? colour[c] : c0[c] + (c1[c] - c0[c]) * g
                        if noiseAmp > 0 { value += Double(Int(noiseRNG.next() % UInt64(2 * noiseAmp + 1)) - noiseAmp) }
                        pixels[o + c] = UInt8(min(max(value, 0), 255))
                    }
                }
            }
            out.append(RGBFrame(width: width, height: height, pixels: pixels))
        }
        return out
    }

    /// Renders and encodes the data set into `folder`: videos/<class>/<class>_NNN.mp4, train.csv,
    /// val.csv, test.csv, classes.txt. Clips are made in parallel; the result depends only on the seed.
    @discardableResult
    public static func generate(to folder: String, options: SyntheticOptions = SyntheticOptions()) throws -> SyntheticSummary {
        guard !options.classes.isEmpty, Set(options.classes).count == options.classes.count else {
            throw DatasetError.invalidRequest("synthetic classes must be distinct and at least one")
        }
        guard options.width >= 16, options.height >= 16, options.width <= 1920, options.height <= 1080,
              options.width % 2 == 0, options.height % 2 == 0 else {
            throw DatasetError.invalidRequest("synthetic frame size \(options.width)x\(options.height): even, 16x16 ... 1920x1080")
        }
        guard options.seconds > 0, options.seconds <= 60, options.fps >= 1, options.fps <= 120 else {
            throw DatasetError.invalidRequest("synthetic clips: 0 < seconds <= 60, 1 <= fps <= 120")
        }
        let root = URL(fileURLWithPath: folder)
        let perClass = options.trainPerClass + options.valPerClass + options.testPerClass
        var jobs: [(motion: SyntheticMotion, cls: Int, index: Int, path: String)] = []
        for (c, motion) in options.classes.enumerated() {
            let dir = root.appendingPathComponent("videos/\(motion.rawValue)")
            do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
                throw DatasetError.writeFailed(path: dir.path, reason: error.localizedDescription)
            }
            for i in 0..<perClass {
                jobs.append((motion, c, i, dir.appendingPathComponent(String(format: "%@_%03d.mp4", motion.rawValue, i)).path))
            }
        }
        let frames = max(1, Int((options.seconds * Double(options.fps)).rounded()))
        let errors = ErrorBox()
        let allJobs = jobs
        DispatchQueue.concurrentPerform(iterations: allJobs.count) { j in
            let job = allJobs[j]
            var rng = ClipRandom.generator(seed: options.seed, epoch: -2, sample: job.cls, view: job.index)
            let clip = render(job.motion, width: options.width, height: options.height, frames: frames, fps: options.fps,
                              maxNoise: options.maxNoise, objectScale: options.objectScale, rng: &rng)
            do { try VideoEncoder.write(clip, to: job.path, fps: options.fps, codec: options.codec, gop: options.fps, quality: 20) }
            catch { errors.record(error) }
        }
        if let error = errors.first { throw error }
        let classes = try ClassList(names: options.classes.map(\.rawValue))
        func part(_ range: Range<Int>) -> VideoDataset {
            VideoDataset(samples: jobs.filter { range.contains($0.index) }.map { VideoSample(path: $0.path, labels: [$0.cls]) }, classes: classes)
        }
        let summary = SyntheticSummary(train: root.appendingPathComponent("train.csv").path, val: root.appendingPathComponent("val.csv").path,
                                       test: root.appendingPathComponent("test.csv").path, classes: root.appendingPathComponent("classes.txt").path,
                                       videos: jobs.count, codec: options.codec)
        let t = options.trainPerClass, v = options.valPerClass
        try Manifest.writeCSV(part(0..<t), to: summary.train)
        try Manifest.writeCSV(part(t..<(t + v)), to: summary.val)
        try Manifest.writeCSV(part((t + v)..<perClass), to: summary.test)
        try classes.write(to: summary.classes)
        return summary
    }
}

private final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var first: Error?
    func record(_ e: Error) { lock.lock(); if first == nil { first = e }; lock.unlock() }
}
