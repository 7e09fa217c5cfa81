// Issue 8, part 5: every VideoLimits field just within (accepted) and just past (refused with
// VideoError.tooLarge naming that limit): through the checking functions, then through a
// decoder on a real 64x48, 20-frame video.

import Foundation
import XCTest
@testable import Video

final class VideoLimitsTests: XCTestCase {
    func assertTooLarge(_ what: String, _ value: Int, _ limit: Int, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), file: file, line: line) { e in
            XCTAssertEqual(e as? VideoError, .tooLarge(path: "v", what: what, value: value, limit: limit), file: file, line: line)
        }
    }

    func testFrameSizeLimits() throws {
        let l = VideoLimits(maxDimension: 100, maxPixels: 70 * 72)
        XCTAssertNoThrow(try l.check(path: "v", width: 100, height: 50))                   // width at its limit
        XCTAssertNoThrow(try l.check(path: "v", width: 50, height: 100))                   // height at its limit
        XCTAssertNoThrow(try l.check(path: "v", width: 70, height: 72))                    // pixels at their limit
        assertTooLarge("frame width", 101, 100) { try l.check(path: "v", width: 101, height: 1) }
        assertTooLarge("frame height", 101, 100) { try l.check(path: "v", width: 1, height: 101) }
        assertTooLarge("frame pixels", 71 * 71, 70 * 72) { try l.check(path: "v", width: 71, height: 71) }
    }

    func testFrameSizeLimitsAtTheDefaults() throws {
        let l = VideoLimits.default
        XCTAssertEqual([l.maxDimension, l.maxPixels], [8192, 4096 * 4096])
        XCTAssertNoThrow(try l.check(path: "v", width: 8192, height: 2048))                // 8192 wide, 2^24 pixels
        assertTooLarge("frame width", 8193, 8192) { try l.check(path: "v", width: 8193, height: 1) }
        assertTooLarge("frame height", 8193, 8192) { try l.check(path: "v", width: 1, height: 8193) }
        assertTooLarge("frame pixels", 8192 * 2049, 4096 * 4096) { try l.check(path: "v", width: 8192, height: 2049) }
    }

    func testRequestLimits() throws {
        let l = VideoLimits(maxFramesPerRequest: 8, maxRequestBytes: 8 * 4 * 4 * 3)
        XCTAssertNoThrow(try l.checkRequest(path: "v", frames: 8, width: 4, height: 4))   // both at their limit
        assertTooLarge("frames requested", 9, 8) { try l.checkRequest(path: "v", frames: 9, width: 1, height: 1) }
        assertTooLarge("bytes of frames requested", 8 * 4 * 5 * 3, 8 * 4 * 4 * 3) { try l.checkRequest(path: "v", frames: 8, width: 4, height: 5) }
        let bytes = VideoLimits(maxRequestBytes: 95)
        XCTAssertNoThrow(try bytes.checkRequest(path: "v", frames: 1, width: 1, height: 31))  // 93 bytes
        assertTooLarge("bytes of frames requested", 96, 95) { try bytes.checkRequest(path: "v", frames: 1, width: 1, height: 32) }
        // Sizes whose product overflows are too large, not a crash.
        let lifted = VideoLimits(maxDimension: .max, maxPixels: .max, maxFramesPerRequest: .max, maxRequestBytes: .max - 1)
        assertTooLarge("bytes of frames requested", .max, .max - 1) { try lifted.checkRequest(path: "v", frames: 1 << 40, width: 1 << 20, height: 1 << 20) }
        assertTooLarge("frame pixels", .max, .max) { try VideoLimits(maxDimension: .max, maxPixels: .max).check(path: "v", width: 1 << 40, height: 1 << 40) }
    }

    func testRequestLimitsAtTheDefaults() throws {
        let l = VideoLimits.default
        XCTAssertEqual([l.maxFramesPerRequest, l.maxRequestBytes], [1024, 1 << 30])
        // 1024 frames of 349 525 pixels: 1 073 740 800 bytes, the largest such request within 2^30.
        XCTAssertNoThrow(try l.checkRequest(path: "v", frames: 1024, width: 349_525, height: 1))
        assertTooLarge("bytes of frames requested", 1024 * 349_526 * 3, 1 << 30) { try l.checkRequest(path: "v", frames: 1024, width: 349_526, height: 1) }
        assertTooLarge("frames requested", 1025, 1024) { try l.checkRequest(path: "v", frames: 1025, width: 1, height: 1) }
    }

    func testFrameCountLimitOfAFrameList() throws {
        // Checked on the list before any file is opened: at the limit the (missing) first image is what fails,
        // named with its clip and position.
        let files = (0 ..< 4).map { "/nonexistent-sfnet/\($0).png" }
        XCTAssertThrowsError(try FrameFolder(files: Array(files.prefix(3)), name: "v", limits: VideoLimits(maxFrames: 3))) { e in
            guard case .badFrame("v", 0, let p, let reason)? = e as? VideoError else { return XCTFail("\(e)") }
            XCTAssertEqual(p, files[0])
            XCTAssertTrue(reason.hasPrefix("missing"), reason)
        }
        assertTooLarge("frame count", 4, 3) { _ = try FrameFolder(files: files, name: "v", limits: VideoLimits(maxFrames: 3)) }
    }

    func testDecoderLimitsOnARealVideo() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("v.mkv").path
        try writeIndexedVideo(path, count: 20, width: 64, height: 48, codec: .preferred)
        func expect(_ what: String, _ value: Int, _ limit: Int, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
            XCTAssertThrowsError(try body(), file: file, line: line) { e in
                XCTAssertEqual(e as? VideoError, .tooLarge(path: path, what: what, value: value, limit: limit), file: file, line: line)
            }
        }
        let exact = VideoLimits(maxDimension: 64, maxPixels: 64 * 48, maxFrames: 20, maxFramesPerRequest: 5, maxRequestBytes: 5 * 64 * 48 * 3)
        let decoder = try VideoDecoder(path: path, limits: exact)
        XCTAssertEqual(decoder.info.frameCount, 20)
        XCTAssertEqual(try decoder.frames(at: Array(0 ..< 5)).count, 5)
        expect("frames requested", 6, 5) { _ = try decoder.frames(at: Array(0 ..< 6)) }
        expect("bytes of frames requested", 5 * 64 * 48 * 3, 5 * 64 * 48 * 3 - 1) {
            var l = exact; l.maxRequestBytes -= 1
            _ = try VideoDecoder(path: path, limits: l).frames(at: Array(0 ..< 5))
        }
        expect("frame width", 64, 63) { var l = exact; l.maxDimension = 63; _ = try VideoDecoder(path: path, limits: l) }
        expect("frame pixels", 64 * 48, 64 * 48 - 1) { var l = exact; l.maxPixels -= 1; _ = try VideoDecoder(path: path, limits: l) }
        expect("frame count", 20, 19) { var l = exact; l.maxFrames = 19; _ = try VideoDecoder(path: path, limits: l) }
    }
}
