// The demo's data sets, made by our own code, encoded as real MP4 files (H.264 when this FFmpeg has
// it, else MPEG-4) with train/val/test manifests, a class list and synthetic.json (what made them).
// The target task: a flat rectangle of random colour, size and aspect on a random gradient with
// noise, moving in one of a few distinct ways per class. The source task (the demo's stand-in for
// K400 pretraining): other motions of striped ellipses and diamonds on textured backgrounds — the
// same low-level structure (edges, textures, motion directions and speeds), other classes.

import Families
import Convert
import Formats
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

    // The source task's motions (SyntheticTask.source): none of them is a target class. Training flips
    // clips left-right, so no class depends on the horizontal direction.
    /// Drifts across part of the frame, sideways or vertically, staying in view.
    case drifting
    /// Creeps a few pixels a second, sideways or vertically: almost, but not quite, still.
    case creeping
    /// Circles around a centre.
    case orbiting
    /// Swings like a pendulum from a pivot above it, turning with the swing.
    case swinging
    /// Jitters a few pixels at random every frame around a fixed place.
    case shaking
    /// Stays still while its colour blinks on and off.
    case flashing
    /// Grows steadily in place, from about half its size.
    case growing
    /// Darts quickly back and forth sideways (a fast zigzag).
    case darting
}

/// How objects and backgrounds look.
public enum SyntheticAppearance: String, CaseIterable, Sendable, Codable {
    /// A flat-coloured rectangle on a two-colour gradient (the target task).
    case plain
    /// A striped ellipse or diamond on a background of overlaid colour gratings (the source task).
    case textured
}

/// The two tasks the demo uses: the target (what is fine-tuned and tested) and a larger, different
/// source task to pretrain on, standing in for K400.
public enum SyntheticTask: String, CaseIterable, Sendable, Codable {
    case target
    case source

    /// The task's classes, in class-id order.
    public var classes: [SyntheticMotion] {
        switch self {
        case .target: return [.movingAcross, .bouncing, .spinning, .resting]
        case .source: return [.drifting, .creeping, .darting, .orbiting, .swinging, .shaking, .flashing, .growing]
        }
    }

    public var appearance: SyntheticAppearance { self == .target ? .plain : .textured }
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
    /// Flat rectangles on gradients (the target task) or textured shapes on textured backgrounds.
    public var appearance = SyntheticAppearance.plain
    /// The task these options were made from (nil: classes chosen one by one); recorded in synthetic.json.
    public var task: SyntheticTask? = .target

    public init() {}

    /// The options of `task`: its classes and appearance, the other settings at their defaults.
    public init(task: SyntheticTask) {
        classes = task.classes
        appearance = task.appearance
        self.task = task
    }

    /// What synthetic.json records: every setting that decides the clips.
    public var description: JSONValue {
        .object([
            ("generator", .string("sfnet \(sfnetVersion) SyntheticData")),
            ("task", task.map { .string($0.rawValue) } ?? .null),
            ("classes", .array(classes.map { .string($0.rawValue) })),
            ("appearance", .string(appearance.rawValue)),
            ("train_per_class", .int(trainPerClass)), ("val_per_class", .int(valPerClass)), ("test_per_class", .int(testPerClass)),
            ("width", .int(width)), ("height", .int(height)), ("seconds", .double(seconds)), ("fps", .int(fps)),
            ("max_noise", .double(maxNoise)), ("object_scale", .double(objectScale)),
            ("seed", .string(String(seed))), ("codec", .string(codec.rawValue)),
        ])
    }
}

public struct SyntheticSummary: Sendable {
    public let train: String
    public let val: String
    public let test: String
    public let classes: String
    public let videos: Int
    public let codec: VideoCodec
    /// synthetic.json: the options that made the set.
    public let description: String
}

public enum SyntheticData {
    /// The frames of one clip of `motion`, all random choices from `rng`.
    public static func render(_ motion: SyntheticMotion, width: Int, height: Int, frames: Int, fps: Int,
                              maxNoise: Double, objectScale: Double = 1, appearance: SyntheticAppearance = .plain,
                              rng: inout SplitMix64) -> [RGBFrame] {
        if appearance == .textured {
            return renderTextured(motion, width: width, height: height, frames: frames, fps: fps, maxNoise: maxNoise,
                                  objectScale: objectScale, rng: &rng)
        }
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
        // Drawn after everything the target's motions use, so their clips are what they always were.
        let sourceParams = SyntheticTask.source.classes.contains(motion) ? SourceParams(rng: &rng, scale: scale) : nil

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
            default:
                // The source task's motions, drawn flat: the same paths as the textured renderer's.
                let p = sourcePath(motion, t: t, seconds: seconds, frame: f, width: width, height: height, start: (cx0, cy0),
                                   angle: angle0, halfLong: halfLong, params: sourceParams!)
                (cx, cy, angle) = (p.x, p.y, p.angle)
                size = sourceSize(motion, t: t, seconds: seconds, params: sourceParams!)
                if motion == .flashing && sin(2 * .pi * sourceParams!.flashHz * t + sourceParams!.phase) < 0 { size = 0 }
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

    /// Random choices of the source task's motions, drawn once per clip.
    struct SourceParams {
        var direction: Double, speed: Double, wobble: Double
        var orbitRadius: Double, orbitTurns: Double, phase: Double
        var swingAmplitude: Double, swingHz: Double, swingLength: Double
        var shake: Double, shakeSeed: UInt64, flashHz: Double
        var dartHz: Double, dartAmplitude: Double, growth: Double
        var vertical: Bool, creep: Double

        init(rng: inout SplitMix64, scale: Double) {
            direction = rng.nextUnit() < 0.5 ? -1 : 1
            speed = rng.uniform(0.5, 0.75)                       // frame widths per clip
            wobble = rng.uniform(-0.25, 0.25)                    // radians off the axis
            orbitRadius = rng.uniform(0.14, 0.24)                // of the frame
            orbitTurns = direction * rng.uniform(0.8, 1.3)       // turns per second
            phase = rng.uniform(0, 2 * .pi)
            swingAmplitude = rng.uniform(0.5, 0.9)               // radians
            swingHz = rng.uniform(0.9, 1.4)
            swingLength = rng.uniform(0.3, 0.45)                 // of the frame
            shake = rng.uniform(2, 4) * scale                    // pixels
            shakeSeed = rng.next()
            flashHz = rng.uniform(1.2, 2.4)
            dartHz = rng.uniform(1.5, 2.5)                       // round trips per second
            dartAmplitude = rng.uniform(0.25, 0.35)              // of the frame, each side of the middle
            growth = rng.uniform(0.4, 0.55)                      // size at the start; 1 at the end
            vertical = rng.nextUnit() < 0.5
            creep = rng.uniform(0.12, 0.2)                       // creeping's travel, relative to drifting's
        }
    }

    /// Where a source-task object is at time `t` (centre and orientation); flashing's blink is the renderer's.
    static func sourcePath(_ motion: SyntheticMotion, t: Double, seconds: Double, frame: Int, width: Int, height: Int,
                           start: (Double, Double), angle: Double, halfLong: Double, params p: SourceParams) -> (x: Double, y: Double, angle: Double) {
        let w = Double(width), h = Double(height), side = min(w, h)
        let progress = t / seconds - 0.5                         // -0.5 ... 0.5 over the clip
        func drift(_ axis: (Double, Double)) -> (Double, Double, Double) {
            let dx = axis.0 * cos(p.wobble) - axis.1 * sin(p.wobble), dy = axis.0 * sin(p.wobble) + axis.1 * cos(p.wobble)
            let travel = p.speed * side
            // Centred on the middle third of the frame so the whole path stays in view.
            let cx = w / 2 + (start.0 - w / 2) / 3 + dx * travel * progress, cy = h / 2 + (start.1 - h / 2) / 3 + dy * travel * progress
            return (cx, cy, angle)
        }
        switch motion {
        case .drifting: return drift(p.vertical ? (0, p.direction) : (p.direction, 0))
        case .creeping:
            let d = drift(p.vertical ? (0, p.direction) : (p.direction, 0)), c = drift((0, 0))
            return (c.0 + (d.0 - c.0) * p.creep, c.1 + (d.1 - c.1) * p.creep, angle)
        case .darting:
            // A triangle wave across the middle of the frame.
            let phase = (p.dartHz * t + p.phase / (2 * .pi)).truncatingRemainder(dividingBy: 1)
            let x = w / 2 + p.dartAmplitude * side * (phase < 0.5 ? 4 * phase - 1 : 3 - 4 * phase)
            return (x, h / 2 + (start.1 - h / 2) / 3, angle)
        case .orbiting:
            let a = p.phase + 2 * .pi * p.orbitTurns * t, r = p.orbitRadius * side
            return (w / 2 + r * cos(a), h / 2 + r * sin(a), angle)
        case .swinging:
            let theta = p.swingAmplitude * sin(2 * .pi * p.swingHz * t + p.phase)
            let length = p.swingLength * side, pivotY = h / 2 - length * 0.6
            return (w / 2 + length * sin(theta), pivotY + length * cos(theta), .pi / 2 + theta)
        case .shaking:
            var g = SplitMix64(seed: p.shakeSeed &+ UInt64(frame) &* 0x9E37_79B9_7F4A_7C15)
            return (w / 2 + (start.0 - w / 2) / 3 + g.uniform(-p.shake, p.shake), h / 2 + (start.1 - h / 2) / 3 + g.uniform(-p.shake, p.shake), angle)
        default:
            // flashing, and the target's motions (not drawn here): stay put.
            return (w / 2 + (start.0 - w / 2) / 3, h / 2 + (start.1 - h / 2) / 3, angle)
        }
    }

    /// A source-task object's size relative to its drawn size at time `t` (only growing changes it).
    static func sourceSize(_ motion: SyntheticMotion, t: Double, seconds: Double, params p: SourceParams) -> Double {
        motion == .growing ? p.growth + (1 - p.growth) * min(t / seconds, 1) : 1
    }

    /// The source task's look: a striped ellipse or diamond (stripes turn with it) on overlaid colour gratings.
    static func renderTextured(_ motion: SyntheticMotion, width: Int, height: Int, frames: Int, fps: Int,
                               maxNoise: Double, objectScale: Double, rng: inout SplitMix64) -> [RGBFrame] {
        let scale = Double(min(width, height)) / 64
        let seconds = Double(frames) / Double(fps)
        // Background: three gratings of random orientation and frequency, mapped between two colours.
        // Low contrast (a third of the colour difference), so that the texture does not drown the object's motion.
        let c0 = (0..<3).map { _ in rng.uniform(40, 215) }
        let c1 = c0.map { $0 + rng.uniform(-1, 1) * 40 }
        let gratings = (0..<3).map { _ in (angle: rng.uniform(0, .pi), cycles: rng.uniform(1.5, 5), phase: rng.uniform(0, 2 * .pi)) }
        var background = [Double](repeating: 0, count: width * height)
        for y in 0..<height {
            for x in 0..<width {
                var v = 0.0
                for g in gratings {
                    let u = (Double(x) * cos(g.angle) + Double(y) * sin(g.angle)) / Double(min(width, height))
                    v += sin(2 * .pi * g.cycles * u + g.phase)
                }
                background[y * width + x] = (v / 3 + 1) / 2
            }
        }
        // Object: two colours far from the background's mean, striped along its long axis.
        let meanBG = (0..<3).map { (c0[$0] + c1[$0]) / 2 }
        var colourA = (0..<3).map { _ in rng.uniform(0, 255) }
        if zip(colourA, meanBG).map({ abs($0 - $1) }).reduce(0, +) < 180 { colourA = meanBG.map { $0 > 127 ? $0 - 120 : $0 + 120 } }
        let colourB = colourA.map { $0 > 127 ? $0 - 90 : $0 + 90 }
        let diamond = rng.nextUnit() < 0.5
        let stripe = rng.uniform(3, 6) * scale
        let halfLong = rng.uniform(7, 11) * scale * objectScale, halfShort = halfLong / rng.uniform(1.3, 2.2)
        let angle0 = rng.uniform(0, .pi)
        let noise = rng.uniform(0, maxNoise)
        let margin = halfLong + 2
        let start = (rng.uniform(margin, Double(width) - margin), rng.uniform(margin, Double(height) - margin))
        let params = SourceParams(rng: &rng, scale: scale)
        var noiseRNG = SplitMix64(seed: rng.next())
        let noiseAmp = Int(noise)

        var out: [RGBFrame] = []
        out.reserveCapacity(frames)
        for f in 0..<frames {
            let t = Double(f) / Double(fps)
            let p = sourcePath(motion, t: t, seconds: seconds, frame: f, width: width, height: height, start: start,
                               angle: angle0, halfLong: halfLong, params: params)
            // Flashing: the object disappears into a faint outline half of each period.
            let visible = motion != .flashing || sin(2 * .pi * params.flashHz * t + params.phase) >= 0
            let ca = cos(p.angle), sa = sin(p.angle)
            let size = sourceSize(motion, t: t, seconds: seconds, params: params)
            let a = halfLong * size, b = halfShort * size
            var pixels = [UInt8](repeating: 0, count: width * height * 3)
            for y in 0..<height {
                for x in 0..<width {
                    let o = (y * width + x) * 3
                    let dx = Double(x) + 0.5 - p.x, dy = Double(y) + 0.5 - p.y
                    let u = dx * ca + dy * sa, v = -dx * sa + dy * ca
                    let r = diamond ? abs(u) / a + abs(v) / b : (u * u) / (a * a) + (v * v) / (b * b)
                    let inside = r <= 1
                    let g = background[y * width + x]
                    let striped = Int((u / stripe + 1000).rounded(.down)) % 2 == 0
                    for c in 0..<3 {
                        let bg = c0[c] + (c1[c] - c0[c]) * g
                        var value = inside ? (visible ? (striped ? colourA[c] : colourB[c]) : bg * 0.85 + meanBG[c] * 0.15) : bg
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
            // Each appearance draws from its own streams: a source clip shares no random choices with a target clip.
            var rng = ClipRandom.generator(seed: options.seed, epoch: options.appearance == .plain ? -2 : -3, sample: job.cls, view: job.index)
            let clip = render(job.motion, width: options.width, height: options.height, frames: frames, fps: options.fps,
                              maxNoise: options.maxNoise, objectScale: options.objectScale, appearance: options.appearance, rng: &rng)
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
                                       videos: jobs.count, codec: options.codec,
                                       description: root.appendingPathComponent("synthetic.json").path)
        let t = options.trainPerClass, v = options.valPerClass
        try Manifest.writeCSV(part(0..<t), to: summary.train)
        try Manifest.writeCSV(part(t..<(t + v)), to: summary.val)
        try Manifest.writeCSV(part((t + v)..<perClass), to: summary.test)
        try classes.write(to: summary.classes)
        let json = Array((options.description.serialized + "\n").utf8)
        try AtomicFile.write(to: summary.description, overwrite: true) { out in try json.withUnsafeBytes { try out.write($0) } }
        return summary
    }
}

private final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var first: Error?
    func record(_ e: Error) { lock.lock(); if first == nil { first = e }; lock.unlock() }
}
