// ClipMaker: shapes, normalisation statistics, crops, flips, lighting, determinism, and the
// swscale-vs-torch resize difference.

import Families
import Convert
import Foundation
import XCTest
@testable import Video

final class AugmentTests: XCTestCase {
    /// A flat grey 80x60 MP4 and an indexed 80x60 MKV, made once for the class.
    static let videos: (dir: URL, grey: String, indexed: String) = {
        let dir = try! temporaryDirectory("augment")
        let grey = dir.appendingPathComponent("grey.mp4").path
        try! VideoEncoder.write(Array(repeating: RGBFrame(width: 80, height: 60, fill: (128, 128, 128)), count: 40), to: grey, quality: 5)
        let indexed = dir.appendingPathComponent("indexed.mkv").path
        try! writeIndexedVideo(indexed, count: 90, width: 80, height: 60, codec: .preferred)
        return (dir, grey, indexed)
    }()
    static var greyVideo: String { videos.grey }
    static var indexedVideo: String { videos.indexed }

    override class func tearDown() { try? FileManager.default.removeItem(at: videos.dir) }

    private func config(frames: Int = 8, crop: Int = 32, jitter: (Int, Int) = (40, 60)) -> ClipConfig {
        var c = ClipConfig.study(frames: frames)
        c.crop = crop; c.jitterMin = jitter.0; c.jitterMax = jitter.1
        return c
    }

    func testTrainClipShapesFollowFramesAndAlpha() throws {
        for frames in [8, 32] {
            var rng = SplitMix64(seed: 1)
            let clip = try ClipMaker(config: config(frames: frames)).make(from: try VideoDecoder(path: Self.indexedVideo), view: .train, rng: &rng)
            XCTAssertEqual(clip.frames, frames)
            XCTAssertEqual(clip.slowFrames, frames / 4)
            XCTAssertEqual(clip.fast.count, 3 * frames * 32 * 32)
            XCTAssertEqual(clip.slow.count, 3 * frames / 4 * 32 * 32)
            XCTAssertEqual(clip.sourceIndices.count, frames)
            // The slow pathway is the fast one's frames at PySlowFast's positions.
            let plane = 32 * 32
            for (k, p) in ClipSampling.slowPositions(fastFrames: frames, alpha: 4, rule: .pyslowfast).enumerated() {
                for ch in 0..<3 {
                    XCTAssertEqual(Array(clip.slow[((ch * clip.slowFrames + k) * plane)..<((ch * clip.slowFrames + k + 1) * plane)]),
                                   Array(clip.fast[((ch * frames + p) * plane)..<((ch * frames + p + 1) * plane)]))
                }
            }
        }
    }

    func testNormalisationOfAGreyVideoIsMeanStd() throws {
        var c = config()
        c.lightingStd = 0
        var rng = SplitMix64(seed: 2)
        let clip = try ClipMaker(config: c).make(from: try VideoDecoder(path: Self.greyVideo), view: .train, rng: &rng)
        let expected = Float((128.0 / 255 - 0.45) / 0.225)
        let worst = clip.fast.map { abs($0 - expected) }.max()!
        XCTAssertLessThan(worst, Float(3.0 / 255 / 0.225), "max deviation \(worst) from \(expected)")
    }

    func testLightingShiftsEachChannelByPySlowFastsPCAOffset() throws {
        // The same draws with and without lighting (lighting is drawn last): the difference is the offset.
        var rng = SplitMix64(seed: 3), rng0 = SplitMix64(seed: 3)
        var off = config()
        off.lightingStd = 0
        let clip = try ClipMaker(config: config()).make(from: try VideoDecoder(path: Self.greyVideo), view: .train, rng: &rng)
        let plain = try ClipMaker(config: off).make(from: try VideoDecoder(path: Self.greyVideo), view: .train, rng: &rng0)
        let plane = 32 * 32 * 8
        let light = clip.augmentation.lighting
        XCTAssertTrue(light.contains { $0 != 0 })
        for ch in 0..<3 {
            let worst = (ch * plane..<(ch + 1) * plane).map { abs(clip.fast[$0] - plain.fast[$0] - light[ch] / 0.225) }.max()!
            XCTAssertLessThan(worst, 1e-5, "channel \(ch)")
        }
        // Over many clips the offsets have the size alpha ~ N(0, 0.1) times the eigen-structure implies.
        var sumSq: Double = 0
        for i in 0..<400 {
            var r = ClipRandom.generator(seed: 9, epoch: 0, sample: i)
            let a = try ClipMaker(config: config()).make(from: try VideoDecoder(path: Self.greyVideo), view: .train, rng: &r)
            sumSq += Double(a.augmentation.lighting[0] * a.augmentation.lighting[0])
        }
        // Channel R gets rgb[2] = sum_j v[2][j] alpha_j lambda_j: variance 0.01 * sum_j (v[2][j] lambda_j)^2.
        let c = ClipConfig()
        let variance = 0.01 * (0..<3).reduce(0.0) { $0 + pow(c.lightingEigenvectors[2][$1] * c.lightingEigenvalues[$1], 2) }
        XCTAssertEqual(sumSq / 400, variance, accuracy: variance * 0.25)
    }

    func testTrainDrawsStayInPySlowFastsRanges() throws {
        let maker = ClipMaker(config: config(frames: 4))
        let source = try VideoDecoder(path: Self.indexedVideo)
        var flips = 0, scales = Set<Int>()
        for i in 0..<200 {
            var rng = ClipRandom.generator(seed: 5, epoch: 1, sample: i)
            let a = try maker.make(from: source, view: .train, rng: &rng).augmentation
            XCTAssertTrue((40...60).contains(a.scaledHeight), "short side \(a.scaledHeight)")
            XCTAssertEqual(a.scaledWidth, Int((80.0 / 60 * Double(a.scaledHeight)).rounded(.down)))
            XCTAssertTrue((0..<max(a.scaledHeight - 32, 1)).contains(a.cropY))
            XCTAssertTrue((0..<max(a.scaledWidth - 32, 1)).contains(a.cropX))
            flips += a.flipped ? 1 : 0
            scales.insert(a.scaledHeight)
        }
        XCTAssertTrue((70...130).contains(flips), "\(flips) flips in 200")
        XCTAssertGreaterThan(scales.count, 15)
    }

    func testTestViewsAreThreeCropsAtEvenlySpacedTimes() throws {
        var c = config(frames: 8)
        c.testTemporalViews = 4
        let views = ClipView.testViews(c)
        XCTAssertEqual(views.count, 12)
        let source = try VideoDecoder(path: Self.indexedVideo)
        var rng = SplitMix64(seed: 0)
        var crops: [Int] = []
        var starts: [Int] = []
        for v in views {
            let clip = try ClipMaker(config: c).make(from: source, view: v, rng: &rng)
            XCTAssertEqual(clip.augmentation.scaledHeight, 32)      // short side = crop
            XCTAssertEqual(clip.augmentation.scaledWidth, 42)       // floor(80 / 60 * 32)
            XCTAssertFalse(clip.augmentation.flipped)
            crops.append(clip.augmentation.cropX)
            starts.append(clip.sourceIndices[0])
            // Frame content follows the sampled indices.
            let first = RGBFrame(width: 42, height: 32, pixels: try source.frames(at: [clip.sourceIndices[0]], width: 42, height: 32)[0].pixels)
            XCTAssertEqual(decodedIndex(first, candidates: 0..<90), clip.sourceIndices[0])
        }
        XCTAssertEqual(Array(crops.prefix(3)), [0, 5, 10])       // left, ceil((42-32)/2), right
        // 90 frames, window 16: delta 74, starts 74 * t / 4 truncated by linspace.
        XCTAssertEqual(stride(from: 0, to: 12, by: 3).map { starts[$0] }, [0, 18, 37, 55])
    }

    func testFlipMirrorsTheCrop() throws {
        var c = config(frames: 2, crop: 48, jitter: (60, 60))
        c.lightingStd = 0
        let source = try VideoDecoder(path: Self.indexedVideo)
        var flipped: Clip?, plain: Clip?
        for i in 0..<40 where flipped == nil || plain == nil {
            var rng = ClipRandom.generator(seed: 11, epoch: 0, sample: i)
            c.flipProbability = i % 2 == 0 ? 1 : 0
            let clip = try ClipMaker(config: c).make(from: source, view: .train, rng: &rng)
            if clip.augmentation.cropX == 16, clip.augmentation.cropY == 6 {
                if clip.augmentation.flipped { flipped = clip } else { plain = clip }
            }
            if i % 2 == 0 { XCTAssertTrue(clip.augmentation.flipped) } else { XCTAssertFalse(clip.augmentation.flipped) }
        }
        // Left grey half / right orange half: the flipped clip has orange on its left.
        for clip in [flipped, plain].compactMap({ $0 }) {
            let red0 = clip.fast[10 * 48 + 2], red47 = clip.fast[10 * 48 + 45]   // channel R, frame 0, row 10
            let orange = Float((230.0 / 255 - 0.45) / 0.225)
            if clip.augmentation.flipped { XCTAssertEqual(red0, orange, accuracy: 0.1) } else { XCTAssertEqual(red47, orange, accuracy: 0.1) }
        }
    }

    func testSameSeedSameClipDifferentSampleDifferentClip() throws {
        let maker = ClipMaker(config: config())
        let source = try VideoDecoder(path: Self.indexedVideo)
        var a = ClipRandom.generator(seed: 42, epoch: 3, sample: 7)
        var b = ClipRandom.generator(seed: 42, epoch: 3, sample: 7)
        var d = ClipRandom.generator(seed: 42, epoch: 3, sample: 8)
        let x = try maker.make(from: source, view: .train, rng: &a)
        let y = try maker.make(from: source, view: .train, rng: &b)
        let z = try maker.make(from: source, view: .train, rng: &d)
        XCTAssertEqual(x.fast, y.fast)
        XCTAssertEqual(x.augmentation, y.augmentation)
        XCTAssertNotEqual(x.augmentation, z.augmentation)
    }

    /// The swscale path against PySlowFast's float bilinear on the same decoded frames: what it costs.
    func testSwscaleResizeIsCloseToTorchBilinearWhenUpscaling() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // A smooth but non-trivial picture (gradients and a disc), as natural video mostly is.
        var f = RGBFrame(width: 80, height: 60)
        for y in 0..<60 { for x in 0..<80 {
            let o = (y * 80 + x) * 3
            let inDisc = (x - 50) * (x - 50) + (y - 25) * (y - 25) < 225
            f.pixels[o] = UInt8(x * 3); f.pixels[o + 1] = inDisc ? 220 : UInt8(y * 4); f.pixels[o + 2] = UInt8((x + y) * 3 / 2)
        } }
        let path = dir.appendingPathComponent("g.mkv").path
        try VideoEncoder.write(Array(repeating: f, count: 4), to: path, quality: 0)
        var report: [String] = []
        for (w, h) in [(341, 256), (453, 340), (106, 80)] {
            let decoder = try VideoDecoder(path: path)
            let native = try decoder.frames(at: [1])[0]
            let exact = bilinearResizeTorch(native, width: w, height: h)
            let fast = try decoder.frames(at: [1], width: w, height: h)[0]
            var maxDiff: Float = 0, sum: Float = 0
            for i in 0..<exact.count { let d = abs(exact[i] - Float(fast.pixels[i])); maxDiff = max(maxDiff, d); sum += d }
            let mean = sum / Float(exact.count)
            report.append("\(w)x\(h): mean \(String(format: "%.2f", mean)), max \(Int(maxDiff)) (0-255 units)")
            XCTAssertLessThan(mean, 2.5, "\(w)x\(h)")
        }
        print("swscale SWS_BILINEAR vs torch bilinear (upscaling 80x60): " + report.joined(separator: "; "))
    }
}
