// ClipLoader: the same batches for any worker count, bounded prefetch, bad-video policies, test views.

import Foundation
import XCTest
@testable import Video

final class LoaderTests: XCTestCase {
    static let data: (dir: URL, dataset: VideoDataset) = {
        let dir = try! temporaryDirectory("loader")
        var samples: [VideoSample] = []
        for i in 0..<10 {
            let p = dir.appendingPathComponent("v\(i).mp4").path
            try! writeIndexedVideo(p, count: 40 + 5 * i, width: 48, height: 40, codec: .preferred)
            samples.append(VideoSample(path: p, labels: [i % 3]))
        }
        return (dir, VideoDataset(samples: samples, classes: try! ClassList(names: ["x", "y", "z"])))
    }()

    override class func tearDown() { try? FileManager.default.removeItem(at: data.dir) }

    private var config: ClipConfig {
        var c = ClipConfig.study(frames: 8)
        c.crop = 32; c.jitterMin = 40; c.jitterMax = 56; c.testTemporalViews = 2
        return c
    }

    private func all(_ loader: ClipLoader) throws -> [ClipBatch] {
        var out: [ClipBatch] = []
        while let b = try loader.next() { out.append(b) }
        return out
    }

    func testBatchesAreIdenticalWhateverTheWorkerCount() throws {
        var reference: [ClipBatch]?
        for workers in [1, 2, 4] {
            let loader = try ClipLoader(dataset: Self.data.dataset, config: config,
                                        options: LoaderOptions(batchSize: 4, workers: workers, prefetchBatches: 2, seed: 5), epoch: 1)
            let batches = try all(loader)
            XCTAssertEqual(batches.map(\.count), [4, 4, 2])
            XCTAssertEqual(batches[0].fastShape, [4, 3, 8, 32, 32])
            XCTAssertEqual(batches[0].slowShape, [4, 3, 2, 32, 32])
            XCTAssertEqual(batches[0].labels.count, 4 * 3)
            if let reference {
                XCTAssertEqual(batches.map(\.sampleIndices), reference.map(\.sampleIndices), "workers \(workers)")
                XCTAssertEqual(batches.map(\.fast), reference.map(\.fast), "workers \(workers)")
                XCTAssertEqual(batches.map(\.slow), reference.map(\.slow), "workers \(workers)")
            } else {
                reference = batches
                XCTAssertEqual(Set(batches.flatMap(\.sampleIndices)), Set(0..<10))
                for b in batches { for (k, s) in b.sampleIndices.enumerated() { XCTAssertEqual(b.labels[k * 3 + s % 3], 1) } }
            }
        }
        // Another epoch: another order and other augmentations.
        let other = try all(ClipLoader(dataset: Self.data.dataset, config: config,
                                       options: LoaderOptions(batchSize: 4, workers: 2, seed: 5), epoch: 2))
        XCTAssertNotEqual(other.map(\.sampleIndices), reference!.map(\.sampleIndices))
    }

    func testTestModeYieldsEveryViewOfEveryVideoInOrder() throws {
        let loader = try ClipLoader(dataset: Self.data.dataset, config: config,
                                    options: LoaderOptions(batchSize: 5, workers: 2, training: false))
        let batches = try all(loader)
        XCTAssertEqual(batches.flatMap(\.sampleIndices), (0..<10).flatMap { Array(repeating: $0, count: 6) })
        XCTAssertEqual(batches.flatMap(\.viewIndices), (0..<10).flatMap { _ in Array(0..<6) })
    }

    func testBadVideosAreSkippedOrFatalByPolicy() throws {
        var ds = Self.data.dataset
        let broken = Self.data.dir.appendingPathComponent("broken.mp4").path
        try Data("not a video".utf8).write(to: URL(fileURLWithPath: broken))
        ds.samples.insert(VideoSample(path: broken, labels: [0]), at: 3)
        let skipping = try all(ClipLoader(dataset: ds, config: config, options: LoaderOptions(batchSize: 4, workers: 2, training: false,
                                                                                              onBadVideo: .skip)))
        XCTAssertEqual(skipping.flatMap(\.skipped).map(\.path), Array(repeating: broken, count: 6))
        XCTAssertEqual(skipping.map(\.count).reduce(0, +), 60)
        let failing = try ClipLoader(dataset: ds, config: config, options: LoaderOptions(batchSize: 4, workers: 2, onBadVideo: .fail))
        XCTAssertThrowsError(try all(failing)) { error in
            XCTAssertEqual((error as? VideoError)?.path, broken)
        }
    }

    func testPrefetchStaysWithinItsWindow() throws {
        let loader = try ClipLoader(dataset: Self.data.dataset, config: config,
                                    options: LoaderOptions(batchSize: 2, workers: 3, prefetchBatches: 1, seed: 1))
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertEqual(loader.pendingClips, 2, "one batch of 2 clips made ahead, no more")
        _ = try loader.next()
        XCTAssertEqual(try all(loader).map(\.count), [2, 2, 2, 2])
    }

    func testAbandonedLoaderStopsItsWorkers() throws {
        for _ in 0..<5 {
            let loader = try ClipLoader(dataset: Self.data.dataset, config: config, options: LoaderOptions(batchSize: 2, workers: 2))
            _ = try loader.next()
        }
    }
}
