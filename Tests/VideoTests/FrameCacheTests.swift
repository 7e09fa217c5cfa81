// FrameCache: clips made from kept frames are bit for bit the clips decoding afresh gives (training
// jitter, crops, flips and test views; videos of each codec, odd sizes, frame lists, both resize
// methods), each video is decoded once, and the budget is honoured by falling back to decoding.

import Families
import Foundation
import XCTest
@testable import Video

private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

final class FrameCacheTests: XCTestCase {
    /// Eight videos: H.264 and MPEG-4 part 2 (VP9 too where this FFmpeg encodes it), odd sizes, portrait and landscape.
    static let data: (dir: URL, dataset: VideoDataset) = {
        let dir = try! temporaryDirectory("framecache")
        var samples: [VideoSample] = []
        let sizes = [(48, 40), (50, 38), (36, 52), (64, 48)]
        let codecs: [VideoCodec] = [.h264, .mpeg4]
        for i in 0 ..< 8 {
            let (w, h) = sizes[i % sizes.count]
            let p = dir.appendingPathComponent("v\(i).mp4").path
            try! writeIndexedVideo(p, count: 36 + 7 * i, width: w, height: h, codec: codecs[i % 2], gop: 12)
            samples.append(VideoSample(path: p, labels: [i % 2]))
        }
        return (dir, VideoDataset(samples: samples, classes: try! ClassList(names: ["a", "b"])))
    }()

    override class func tearDown() { try? FileManager.default.removeItem(at: data.dir) }

    private func config(_ resize: ResizeMethod = .swscale) -> ClipConfig {
        var c = ClipConfig.study(frames: 8)
        c.crop = 32; c.jitterMin = 32; c.jitterMax = 60; c.testTemporalViews = 3; c.testSpatialCrops = 3; c.resize = resize
        return c
    }

    private func batches(_ dataset: VideoDataset, _ config: ClipConfig, training: Bool, epoch: Int, workers: Int = 2,
                         cache: FrameCache?) throws -> [ClipBatch] {
        let loader = try ClipLoader(dataset: dataset, config: config,
                                    options: LoaderOptions(batchSize: 3, workers: workers, training: training, seed: 11, onBadVideo: .fail,
                                                           frameCache: cache), epoch: epoch)
        var out: [ClipBatch] = []
        while let b = try loader.next() { out.append(b) }
        return out
    }

    private func assertSame(_ a: [ClipBatch], _ b: [ClipBatch], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.map(\.sampleIndices), b.map(\.sampleIndices), what, file: file, line: line)
        XCTAssertEqual(a.map(\.viewIndices), b.map(\.viewIndices), what, file: file, line: line)
        for (x, y) in zip(a, b) {
            // Bit for bit: compare the float bit patterns, not values within a tolerance.
            XCTAssertEqual(x.fast.map(\.bitPattern), y.fast.map(\.bitPattern), "\(what): fast pathway", file: file, line: line)
            XCTAssertEqual(x.slow.map(\.bitPattern), y.slow.map(\.bitPattern), "\(what): slow pathway", file: file, line: line)
        }
    }

    func testCachedClipsAreBitIdenticalToDecodingAfresh() throws {
        let ds = Self.data.dataset
        for resize in [ResizeMethod.swscale, .exact] {
            let cache = FrameCache(budgetMB: 64)
            for epoch in 0 ..< 3 {
                let fresh = try batches(ds, config(resize), training: true, epoch: epoch, cache: nil)
                let cached = try batches(ds, config(resize), training: true, epoch: epoch, cache: cache)
                assertSame(cached, fresh, "\(resize) training epoch \(epoch)")
                let s = cache.statistics
                XCTAssertEqual(s.videos, ds.samples.count, "every video kept after the first epoch")
                XCTAssertEqual(s.misses, ds.samples.count, "each video decoded once, in the first epoch only")
                XCTAssertEqual(s.hits, epoch * ds.samples.count)
                XCTAssertEqual(s.overBudget, 0)
                XCTAssertGreaterThan(s.bytes, 0)
                XCTAssertLessThanOrEqual(s.bytes, cache.budgetBytes)
            }
            // Epochs draw other frames, scales and crops: the cache serves them all.
            XCTAssertNotEqual(try batches(ds, config(resize), training: true, epoch: 0, cache: cache).map(\.fast),
                              try batches(ds, config(resize), training: true, epoch: 1, cache: cache).map(\.fast))
            // Test views (short side scaled to the crop, 3 crops x 3 positions) from the same kept frames.
            assertSame(try batches(ds, config(resize), training: false, epoch: 0, cache: cache),
                       try batches(ds, config(resize), training: false, epoch: 0, cache: nil), "\(resize) test views")
        }
    }

    /// The frames kept are what the decoder produced: 4:2:0 pictures at the source size (1.5 bytes a pixel, plus row padding).
    func testKeptFramesAreTheDecodersPicturesAtTheSourceSize() throws {
        let cache = FrameCache(budgetMB: 64)
        let sample = Self.data.dataset.samples[3]   // 64x48, 57 frames
        let source = try cache.source(for: sample)
        XCTAssertEqual(source.info.frameCount, 57)
        let s = cache.statistics
        XCTAssertEqual(s.frames, 57)
        XCTAssertGreaterThanOrEqual(s.bytes, 57 * 64 * 48 * 3 / 2)
        XCTAssertLessThan(s.bytes, 57 * 64 * 48 * 3, "kept as decoded (YUV 4:2:0), not as RGB")
        let fresh = try sample.open()
        XCTAssertEqual(try source.frames(at: [0, 35, 17, 17, 99], width: 61, height: 47), try fresh.frames(at: [0, 35, 17, 17, 99], width: 61, height: 47))
    }

    func testATinyBudgetFallsBackToDecodingAndGivesTheSameClips() throws {
        let ds = Self.data.dataset
        // Each video's pictures take 0.1-0.2 MiB: 1 MiB holds some of them, 0 none.
        for mb in [0, 1] {
            let cache = FrameCache(budgetMB: mb)
            for epoch in 0 ..< 2 {
                assertSame(try batches(ds, config(), training: true, epoch: epoch, cache: cache),
                           try batches(ds, config(), training: true, epoch: epoch, cache: nil), "budget \(mb) MiB, epoch \(epoch)")
            }
            let s = cache.statistics
            XCTAssertLessThanOrEqual(s.bytes, cache.budgetBytes, "budget \(mb) MiB")
            XCTAssertGreaterThan(s.overBudget, 0, "budget \(mb) MiB: some videos must have been left to decoding")
            XCTAssertEqual(s.videos + s.overBudget, ds.samples.count, "budget \(mb) MiB: each video either kept or refused once")
            XCTAssertEqual(s.hits + s.misses, 2 * ds.samples.count)
            if mb == 0 { XCTAssertEqual(s.videos, 0); XCTAssertEqual(s.hits, 0) } else { XCTAssertGreaterThan(s.videos, 0) }
        }
    }

    func testManyWorkersShareOneCache() throws {
        let ds = Self.data.dataset
        let cache = FrameCache(budgetMB: 64)
        assertSame(try batches(ds, config(), training: true, epoch: 4, workers: 4, cache: cache),
                   try batches(ds, config(), training: true, epoch: 4, workers: 1, cache: nil), "4 workers")
        XCTAssertEqual(cache.statistics.misses, ds.samples.count)
    }

    /// Animal Kingdom frame lists: each JPEG decoded once, clips identical to decoding the files.
    func testFrameListFramesAreDecodedOnceAndGiveTheSameClips() throws {
        let ak = repoRoot.appendingPathComponent("fixtures/ak")
        let ds = try Manifest.load(ak.appendingPathComponent("annotation/val.csv").path, frameRoot: ak.appendingPathComponent("dataset/image").path)
        let cache = FrameCache(budgetMB: 64)
        for epoch in 0 ..< 3 {
            assertSame(try batches(ds, config(), training: true, epoch: epoch, cache: cache),
                       try batches(ds, config(), training: true, epoch: epoch, cache: nil), "frame list, epoch \(epoch)")
        }
        let s = cache.statistics
        let listed = Set(ds.samples.flatMap { $0.frames ?? [] }).count
        XCTAssertGreaterThan(s.frames, 0)
        XCTAssertLessThanOrEqual(s.frames, listed)
        XCTAssertGreaterThan(s.hits, 0, "later epochs reuse the decoded frame images")
        assertSame(try batches(ds, config(), training: false, epoch: 0, cache: cache),
                   try batches(ds, config(), training: false, epoch: 0, cache: nil), "frame list test views")
    }

    func testABadVideoFailsAsWithoutTheCache() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("bad.mp4").path
        try Data("not a video".utf8).write(to: URL(fileURLWithPath: bad))
        let cache = FrameCache(budgetMB: 64)
        for _ in 0 ..< 2 {
            var cached = "", fresh = ""
            XCTAssertThrowsError(try cache.source(for: VideoSample(path: bad, labels: [0]))) { cached = "\($0)" }
            XCTAssertThrowsError(try VideoSample(path: bad, labels: [0]).open()) { fresh = "\($0)" }
            XCTAssertEqual(cached, fresh)
            XCTAssertTrue(cached.contains(bad), cached)
        }
        XCTAssertEqual(cache.statistics.videos, 0)
    }

    func testDefaultBudgetIsAQuarterOfMemoryCappedAt4GiB() {
        XCTAssertEqual(FrameCache.defaultBudgetMB(physicalMemory: 8 << 30), 2048)
        XCTAssertEqual(FrameCache.defaultBudgetMB(physicalMemory: 64 << 30), 4096)
        XCTAssertEqual(FrameCache(budgetMB: 3).budgetBytes, 3 << 20)
    }
}
