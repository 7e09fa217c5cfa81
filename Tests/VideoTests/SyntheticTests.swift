// The synthetic demo data: real MP4s that decode, manifests that load, distinct motions, reproducible.

import Families
import Convert
import Formats
import Foundation
import XCTest
@testable import Video

final class SyntheticTests: XCTestCase {
    func testGeneratesDecodableMP4sAndManifestsQuickly() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = SyntheticOptions()
        options.trainPerClass = 6; options.valPerClass = 2; options.testPerClass = 2
        let start = Date()
        let summary = try SyntheticData.generate(to: dir.path, options: options)
        let elapsed = Date().timeIntervalSince(start)
        print("SyntheticTests: \(summary.videos) clips of 64x64, 2 s at 30 fps (\(summary.codec.rawValue)) in \(String(format: "%.2f", elapsed)) s (debug build)")
        XCTAssertEqual(summary.videos, 40)
        let classes = try ClassList.load(summary.classes)
        XCTAssertEqual(classes.names, ["moving_across", "bouncing", "spinning", "resting"])
        let train = try Manifest.loadCSV(summary.train, classes: classes)
        let val = try Manifest.loadCSV(summary.val, classes: classes)
        let test = try Manifest.loadCSV(summary.test, classes: classes)
        XCTAssertEqual([train.samples.count, val.samples.count, test.samples.count], [24, 8, 8])
        XCTAssertEqual(train.samples.filter { $0.labels == [2] }.count, 6)
        for s in val.samples + test.samples {
            let d = try VideoDecoder(path: s.path)
            XCTAssertEqual(d.info.frameCount, 60)
            XCTAssertEqual([d.info.width, d.info.height], [64, 64])
            XCTAssertEqual(d.info.codec, VideoCodec.preferred == .h264 ? "h264" : "mpeg4")
        }
    }

    /// Frame-to-frame change tells resting (only noise) from the moving classes, and the object's
    /// centroid travels far only when moving across.
    func testMotionsAreDistinct() throws {
        func stats(_ motion: SyntheticMotion, seed: UInt64) -> (change: Double, travel: Double) {
            var rng = SplitMix64(seed: seed)
            let frames = SyntheticData.render(motion, width: 64, height: 64, frames: 40, fps: 30, maxNoise: 0, rng: &rng)
            var change = 0.0
            for i in 1..<frames.count { change += zip(frames[i].pixels, frames[i - 1].pixels).reduce(0.0) { $0 + abs(Double($1.0) - Double($1.1)) } }
            // Centroid of pixels that differ from frame 0's corner colour is not robust; use the changed-pixel mask instead.
            func centroid(_ a: RGBFrame, _ b: RGBFrame) -> (Double, Double)? {
                var sx = 0.0, sy = 0.0, n = 0.0
                for y in 0..<64 { for x in 0..<64 { let o = (y * 64 + x) * 3
                    if abs(Int(a.pixels[o]) - Int(b.pixels[o])) + abs(Int(a.pixels[o + 1]) - Int(b.pixels[o + 1])) > 30 { sx += Double(x); sy += Double(y); n += 1 } } }
                return n > 0 ? (sx / n, sy / n) : nil
            }
            let early = centroid(frames[5], frames[0]) ?? (0, 0), late = centroid(frames[35], frames[30]) ?? (0, 0)
            return (change / 39, hypot(early.0 - late.0, early.1 - late.1))
        }
        for seed in [1, 2] as [UInt64] {
            let resting = stats(.resting, seed: seed), moving = stats(.movingAcross, seed: seed)
            let spinning = stats(.spinning, seed: seed), bouncing = stats(.bouncing, seed: seed)
            XCTAssertEqual(resting.change, 0, "resting without noise does not change")
            XCTAssertGreaterThan(moving.change, 100)
            XCTAssertGreaterThan(spinning.change, 100)
            XCTAssertGreaterThan(bouncing.change, 100)
            XCTAssertGreaterThan(moving.travel, 15, "seed \(seed)")
            XCTAssertLessThan(spinning.travel, 12, "seed \(seed)")
        }
    }

    func testSameSeedSameVideos() throws {
        let a = try temporaryDirectory("synthA"), b = try temporaryDirectory("synthB")
        defer { try? FileManager.default.removeItem(at: a); try? FileManager.default.removeItem(at: b) }
        var options = SyntheticOptions()
        options.trainPerClass = 1; options.valPerClass = 0; options.testPerClass = 1; options.seconds = 0.5; options.seed = 9
        try SyntheticData.generate(to: a.path, options: options)
        try SyntheticData.generate(to: b.path, options: options)
        for motion in options.classes {
            let name = "videos/\(motion.rawValue)/\(motion.rawValue)_001.mp4"
            let x = try VideoDecoder(path: a.appendingPathComponent(name).path).frames(at: [7])[0]
            let y = try VideoDecoder(path: b.appendingPathComponent(name).path).frames(at: [7])[0]
            XCTAssertEqual(x, y, motion.rawValue)
        }
    }
}

final class DataBenchToolTests: XCTestCase {
    func testSynthCommandWritesTheDataSetAndBadArgumentsExitTwo() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (status, out, err) = try DataBench.run(["synth", "--out", dir.path, "--per-class", "2,1,1", "--size", "48x32", "--seconds", "1",
                                                   "--classes", "resting,spinning,pulsing"])
        XCTAssertEqual(status, 0, err)
        XCTAssertTrue(out.contains("\"videos\": 12"), out)
        let classes = try ClassList.load(dir.appendingPathComponent("classes.txt").path)
        XCTAssertEqual(classes.names, ["resting", "spinning", "pulsing"])
        let test = try Manifest.loadCSV(dir.appendingPathComponent("test.csv").path, classes: classes)
        XCTAssertEqual(test.samples.count, 3)
        XCTAssertEqual(try VideoDecoder(path: test.samples[0].path).info.frameCount, 30)
        let bad = try DataBench.run(["synth", "--out", dir.path, "--classes", "flying"])
        XCTAssertEqual(bad.0, 2)
        XCTAssertTrue(bad.2.contains("unknown motion 'flying'"), bad.2)
        let missing = try DataBench.run(["bench", "--manifest", dir.appendingPathComponent("none.csv").path])
        XCTAssertEqual(missing.0, 1)
        XCTAssertTrue(missing.2.contains("none.csv: cannot read"), missing.2)
    }
}

/// Issue 14 item 4: the demo's source task (the stand-in for K400 pretraining) has its own classes, made
/// deterministically from a seed, and shares neither classes nor clips with the target task.
final class SyntheticSourceTaskTests: XCTestCase {
    func testSourceTaskHasItsOwnClassesDeterministicallyFromASeedAndDiffersFromTheTarget() throws {
        let a = try temporaryDirectory("sourceA"), b = try temporaryDirectory("sourceB"), t = try temporaryDirectory("target")
        defer { for d in [a, b, t] { try? FileManager.default.removeItem(at: d) } }
        var source = SyntheticOptions(task: .source)
        source.trainPerClass = 1; source.valPerClass = 1; source.testPerClass = 0; source.seconds = 0.5; source.seed = 5
        source.width = 32; source.height = 32
        var target = SyntheticOptions(task: .target)
        target.trainPerClass = 1; target.valPerClass = 1; target.testPerClass = 0; target.seconds = 0.5; target.seed = 5
        target.width = 32; target.height = 32
        let s = try SyntheticData.generate(to: a.path, options: source)
        try SyntheticData.generate(to: b.path, options: source)
        try SyntheticData.generate(to: t.path, options: target)

        let names = ["drifting", "creeping", "darting", "orbiting", "swinging", "shaking", "flashing", "growing"]
        XCTAssertEqual(try ClassList.load(s.classes).names, names)
        let targetNames = try ClassList.load(t.appendingPathComponent("classes.txt").path).names
        XCTAssertEqual(targetNames, ["moving_across", "bouncing", "spinning", "resting"])
        XCTAssertTrue(Set(names).isDisjoint(with: targetNames), "the source task shares no class with the target")
        XCTAssertEqual(s.videos, 16)
        XCTAssertEqual(try Manifest.loadCSV(s.train, classes: ClassList.load(s.classes)).samples.count, 8)
        // synthetic.json records what made the set.
        let json = try Data(contentsOf: URL(fileURLWithPath: s.description)).withUnsafeBytes { try JSONParser.parse($0) }
        XCTAssertEqual(json["task"]?.stringValue, "source")
        XCTAssertEqual(json["appearance"]?.stringValue, "textured")
        XCTAssertEqual(json["seed"]?.stringValue, "5")
        XCTAssertEqual(json["train_per_class"]?.intValue, 1)

        // Same seed, same clips; the target's clips under the same seed are other pictures.
        for (i, name) in names.enumerated() {
            let path = "videos/\(name)/\(name)_001.mp4"
            let x = try VideoDecoder(path: a.appendingPathComponent(path).path).frames(at: [3])[0]
            let y = try VideoDecoder(path: b.appendingPathComponent(path).path).frames(at: [3])[0]
            XCTAssertEqual(x, y, name)
            let other = targetNames[i % targetNames.count]
            let z = try VideoDecoder(path: t.appendingPathComponent("videos/\(other)/\(other)_001.mp4").path).frames(at: [3])[0]
            XCTAssertNotEqual(x, z, "\(name) vs target \(other)")
        }
        // Another seed, other clips.
        var reseeded = source
        reseeded.seed = 6
        let c = try temporaryDirectory("sourceC")
        defer { try? FileManager.default.removeItem(at: c) }
        try SyntheticData.generate(to: c.path, options: reseeded)
        let path = "videos/orbiting/orbiting_000.mp4"
        XCTAssertNotEqual(try VideoDecoder(path: a.appendingPathComponent(path).path).frames(at: [3])[0],
                          try VideoDecoder(path: c.appendingPathComponent(path).path).frames(at: [3])[0])
    }

    /// Each source motion does what its name says: drifts go their way and stay in view, orbiting comes
    /// back round, swinging turns, shaking stays near its place, flashing does not move but blinks.
    func testSourceMotionsDoWhatTheirNamesSay() throws {
        for seed in [1, 2, 3] as [UInt64] {
            var rng = SplitMix64(seed: seed)
            let params = SyntheticData.SourceParams(rng: &rng, scale: 1)
            func path(_ m: SyntheticMotion, _ f: Int) -> (x: Double, y: Double, angle: Double) {
                SyntheticData.sourcePath(m, t: Double(f) / 30, seconds: 2, frame: f, width: 64, height: 64, start: (20, 40), angle: 0.3,
                                         halfLong: 14, params: params)
            }
            // Drifting goes one way along one axis and stays in view; creeping goes the same way a fifth as far.
            let a = path(.drifting, 0), b = path(.drifting, 60)
            let travel = hypot(b.x - a.x, b.y - a.y)
            XCTAssertGreaterThan(travel, 30, "seed \(seed)")
            XCTAssertLessThan(min(abs(b.x - a.x), abs(b.y - a.y)), travel * 0.3, "mostly along one axis, seed \(seed)")
            for f in stride(from: 0, through: 60, by: 10) {
                let p = path(.drifting, f)
                XCTAssertTrue((2...62).contains(p.x) && (2...62).contains(p.y), "drifting leaves the frame: \(p)")
            }
            let c = path(.creeping, 0), d = path(.creeping, 60)
            let creep = hypot(d.x - c.x, d.y - c.y)
            XCTAssertGreaterThan(creep, 0.5, "creeping moves, seed \(seed)")
            XCTAssertLessThan(creep, travel * 0.25, "creeping is slow, seed \(seed)")
            let dart = (0...60).map { path(.darting, $0).x }
            XCTAssertGreaterThan(dart.max()! - dart.min()!, 25, "darting crosses the middle")
            XCTAssertGreaterThan(zip(dart.dropFirst(), dart).map { abs($0 - $1) }.reduce(0, +), 4 * (dart.max()! - dart.min()!), "darting goes back and forth")
            XCTAssertEqual(SyntheticData.sourceSize(.growing, t: 2, seconds: 2, params: params), 1)
            XCTAssertLessThan(SyntheticData.sourceSize(.growing, t: 0, seconds: 2, params: params), 0.6)
            XCTAssertEqual(SyntheticData.sourceSize(.orbiting, t: 0, seconds: 2, params: params), 1)
            let orbit = (0...60).map { path(.orbiting, $0) }
            let radii = orbit.map { hypot($0.x - 32, $0.y - 32) }
            XCTAssertLessThan(radii.max()! - radii.min()!, 0.01, "orbiting keeps its radius")
            XCTAssertGreaterThan(orbit.map(\.x).max()! - orbit.map(\.x).min()!, 10)
            let swing = (0...60).map { path(.swinging, $0).angle }
            XCTAssertGreaterThan(swing.max()! - swing.min()!, 0.8, "swinging turns")
            let shake = (0...60).map { path(.shaking, $0) }
            XCTAssertLessThanOrEqual(shake.map { hypot($0.x - shake[0].x, $0.y - shake[0].y) }.max()!, 2 * 4 * 2.0.squareRoot() + 0.01)
            XCTAssertGreaterThan(Set(shake.map(\.x)).count, 30, "shaking moves every frame")
            XCTAssertEqual(Set((0...60).map { path(.flashing, $0).x }).count, 1, "flashing stays put")
        }
        // Flashing blinks: some frames show the object, others not, with no noise.
        var rng = SplitMix64(seed: 4)
        let frames = SyntheticData.render(.flashing, width: 32, height: 32, frames: 60, fps: 30, maxNoise: 0, appearance: .textured, rng: &rng)
        let changes = (1..<60).map { i in zip(frames[i].pixels, frames[i - 1].pixels).contains { $0 != $1 } }
        XCTAssertTrue(changes.contains(true) && changes.contains(false), "flashing blinks between still stretches")
    }
}
