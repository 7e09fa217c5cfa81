// The synthetic demo data: real MP4s that decode, manifests that load, distinct motions, reproducible.

import Families
import Convert
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
