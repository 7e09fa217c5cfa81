// Clip sampling against PySlowFast's rules as real torch computed them (fixtures/video/generate_sampling.py),
// plus hand-computed cases.

import Foundation
import XCTest
@testable import Video

struct SamplingReference: Decodable {
    struct ClipCase: Decodable {
        let frame_count: Int; let fps: Double; let num_frames: Int; let sampling_rate: Int
        let clip_index: Int; let num_clips: Int; let uniform: Double; let indices: [Int]
    }
    struct SlowCase: Decodable { let fast_frames: Int; let alpha: Int; let positions: [Int] }
    struct Linspace: Decodable { let start: Double; let end: Double; let steps: Int; let values: [Float] }
    struct Image: Decodable { let height: Int; let width: Int; let hwc: [Float] }
    let clips: [ClipCase]
    let slow: [SlowCase]
    let linspace: [Linspace]
    let resize_input: Image
    let resize: [Image]

    static func load() throws -> SamplingReference {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/video/sampling_reference.json")
        return try JSONDecoder().decode(SamplingReference.self, from: Data(contentsOf: url))
    }
}

final class SamplingTests: XCTestCase {
    func testClipIndicesMatchPySlowFastComputedByTorch() throws {
        let ref = try SamplingReference.load()
        XCTAssertGreaterThan(ref.clips.count, 100)
        for c in ref.clips {
            let got = ClipSampling.clipIndices(frameCount: c.frame_count, fps: c.fps, numFrames: c.num_frames,
                                               samplingRate: c.sampling_rate, targetFPS: 30, clipIndex: c.clip_index,
                                               numClips: c.num_clips, uniform: c.uniform)
            XCTAssertEqual(got, c.indices, "\(c.frame_count) frames at \(c.fps) fps, \(c.num_frames)x\(c.sampling_rate), view \(c.clip_index)/\(c.num_clips) u=\(c.uniform)")
        }
    }

    func testLinspaceIsTorchsFloat32Linspace() throws {
        for l in try SamplingReference.load().linspace {
            XCTAssertEqual(ClipSampling.torchLinspace(l.start, l.end, l.steps), l.values, "linspace(\(l.start), \(l.end), \(l.steps))")
        }
    }

    func testSlowPathwayPositionsArePySlowFasts() throws {
        for s in try SamplingReference.load().slow {
            XCTAssertEqual(ClipSampling.slowPositions(fastFrames: s.fast_frames, alpha: s.alpha, rule: .pyslowfast), s.positions,
                           "T=\(s.fast_frames) alpha=\(s.alpha)")
        }
    }

    func testHandComputedCases() {
        // SLOWFAST.md: T=32, alpha 4 -> 0,4,8,13,17,22,26,31 (not an exact stride); T=8 -> 0,7.
        XCTAssertEqual(ClipSampling.slowPositions(fastFrames: 32, alpha: 4, rule: .pyslowfast), [0, 4, 8, 13, 17, 22, 26, 31])
        XCTAssertEqual(ClipSampling.slowPositions(fastFrames: 8, alpha: 4, rule: .pyslowfast), [0, 7])
        XCTAssertEqual(ClipSampling.slowPositions(fastFrames: 32, alpha: 4, rule: .stride), [0, 4, 8, 12, 16, 20, 24, 28])
        // 100 frames at 30 fps, 8 frames at rate 2: window 16, delta 84. View 0 of 1: linspace(0, 15, 8) truncated.
        XCTAssertEqual(ClipSampling.clipIndices(frameCount: 100, fps: 30, numFrames: 8, samplingRate: 2, targetFPS: 30,
                                                clipIndex: 0, numClips: 1), [0, 2, 4, 6, 8, 10, 12, 15])
        // View 5 of 10: start 84 * 5 / 10 = 42 -> linspace(42, 57, 8).
        XCTAssertEqual(ClipSampling.clipIndices(frameCount: 100, fps: 30, numFrames: 8, samplingRate: 2, targetFPS: 30,
                                                clipIndex: 5, numClips: 10), [42, 44, 46, 48, 50, 52, 54, 57])
        // A 60 fps source: the window is 32 source frames for the same 16 timeline frames.
        XCTAssertEqual(ClipSampling.clipIndices(frameCount: 100, fps: 60, numFrames: 8, samplingRate: 2, targetFPS: 30,
                                                clipIndex: 0, numClips: 1), [0, 4, 8, 13, 17, 22, 26, 31])
        // Shorter than the window: delta 0, indices clamped to the last frame.
        XCTAssertEqual(ClipSampling.clipIndices(frameCount: 10, fps: 30, numFrames: 8, samplingRate: 2, targetFPS: 30,
                                                clipIndex: -1, numClips: 1, uniform: 0.7), [0, 2, 4, 6, 8, 9, 9, 9])
    }

    func testExactResizeMatchesTorchInterpolate() throws {
        let ref = try SamplingReference.load()
        let input = RGBFrame(width: ref.resize_input.width, height: ref.resize_input.height, pixels: ref.resize_input.hwc.map { UInt8($0) })
        for r in ref.resize {
            let got = bilinearResizeTorch(input, width: r.width, height: r.height)
            let worst = zip(got, r.hwc).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-3, "\(r.width)x\(r.height): max diff \(worst)")
        }
    }

    func testShortSideScalingKeepsAspectLikePySlowFast() {
        XCTAssertEqual(shortSideScaledSize(width: 320, height: 240, shortSide: 256).width, 341)
        XCTAssertEqual(shortSideScaledSize(width: 320, height: 240, shortSide: 256).height, 256)
        XCTAssertEqual(shortSideScaledSize(width: 240, height: 320, shortSide: 300).height, 400)
        XCTAssertEqual(shortSideScaledSize(width: 64, height: 64, shortSide: 256).width, 256)
    }
}
