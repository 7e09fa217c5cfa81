// Decoding generated MP4/MKV/AVI/WebM files in each codec this FFmpeg can encode: frame counts,
// dimensions, pixel values near the rendered ones, timestamp-addressed frames, and seeking.

import Foundation
import XCTest
@testable import Video

final class DecoderTests: XCTestCase {
    /// (container extension, codec) pairs a camera or a data set commonly holds.
    static let combinations: [(String, VideoCodec)] = [
        ("mp4", .h264), ("mkv", .h264), ("avi", .h264),
        ("mp4", .mpeg4), ("mkv", .mpeg4), ("avi", .mpeg4),
        ("mkv", .vp9), ("webm", .vp9), ("mp4", .vp9),
    ]

    func testEveryContainerAndCodecDecodesCountSizeAndPixels() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var tested: [String] = []
        for (ext, codec) in Self.combinations {
            guard codec.isEncodable, codec.isDecodable else {
                print("DecoderTests: \(codec.rawValue) not available in this FFmpeg build; skipped")
                continue
            }
            let path = dir.appendingPathComponent("v-\(codec.rawValue).\(ext)").path
            try writeIndexedVideo(path, count: 45, width: 64, height: 48, codec: codec, gop: 10)
            let decoder = try VideoDecoder(path: path)
            XCTAssertEqual(decoder.info.frameCount, 45, "\(ext)/\(codec)")
            XCTAssertEqual(decoder.info.width, 64, "\(ext)/\(codec)")
            XCTAssertEqual(decoder.info.height, 48, "\(ext)/\(codec)")
            XCTAssertEqual(decoder.info.fps, 30, accuracy: 1e-6, "\(ext)/\(codec)")
            let frames = try decoder.frames(at: Array(0..<45))
            XCTAssertEqual(frames.count, 45)
            var worst = 0
            for (i, f) in frames.enumerated() {
                XCTAssertEqual(decodedIndex(f, candidates: 0..<45), i, "\(ext)/\(codec) frame \(i)")
                let expected = indexedFrame(i, width: 64, height: 48)
                // Interior pixels (away from the half boundary where chroma subsampling blurs).
                for (x, y) in [(8, 8), (20, 30), (44, 10), (56, 40)] {
                    let a = f.pixel(x: x, y: y), b = expected.pixel(x: x, y: y)
                    worst = max(worst, abs(Int(a.0) - Int(b.0)), abs(Int(a.1) - Int(b.1)), abs(Int(a.2) - Int(b.2)))
                }
            }
            XCTAssertLessThanOrEqual(worst, 8, "\(ext)/\(codec): max pixel difference \(worst)")
            tested.append("\(ext)/\(codec.rawValue) (max diff \(worst))")
        }
        print("DecoderTests decoded: \(tested.joined(separator: ", "))")
        XCTAssertTrue(tested.contains { $0.hasPrefix("mp4/") }, "no MP4 codec available")
    }

    func testFramesAreScaledToTheRequestedSize() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("s.mp4").path
        try writeIndexedVideo(path, count: 10, width: 64, height: 48, codec: .preferred)
        let frames = try VideoDecoder(path: path).frames(at: [3, 3, 7], width: 128, height: 96)
        XCTAssertEqual(frames.map(\.width), [128, 128, 128])
        XCTAssertEqual(frames.map(\.height), [96, 96, 96])
        XCTAssertEqual(frames.map { decodedIndex($0, candidates: 0..<10) }, [3, 3, 7])
    }

    func testLateClipOfALongVideoSeeksInsteadOfDecodingEverything() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for ext in ["mp4", "mkv", "avi"] {
            let path = dir.appendingPathComponent("long.\(ext)").path
            try writeIndexedVideo(path, count: 600, width: 32, height: 32, codec: .preferred, gop: 30)
            let decoder = try VideoDecoder(path: path)
            XCTAssertEqual(decoder.info.frameCount, 600, ext)
            let wanted = [500, 502, 504, 510, 515]
            let frames = try decoder.frames(at: wanted)
            XCTAssertEqual(frames.map { decodedIndex($0, candidates: 480..<530) }, wanted, ext)
            XCTAssertLessThan(decoder.framesDecoded, 60, "\(ext): decoded \(decoder.framesDecoded) frames for a clip at 500")
            // A second, earlier request on the same decoder goes back.
            let early = try decoder.frames(at: [5, 6])
            XCTAssertEqual(early.map { decodedIndex($0, candidates: 0..<30) }, [5, 6], ext)
        }
    }

    func testFramesAreAddressedByTimestampAtTheSourceRate() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("r15.mkv").path
        try writeIndexedVideo(path, count: 30, width: 32, height: 32, fps: 15, codec: .preferred)
        let decoder = try VideoDecoder(path: path)
        XCTAssertEqual(decoder.info.fps, 15, accuracy: 1e-9)
        XCTAssertEqual(decoder.info.frameCount, 30)
        XCTAssertEqual(decoder.info.durationSeconds, 2, accuracy: 1e-9)
        let frames = try decoder.frames(at: [0, 14, 29, 40])
        XCTAssertEqual(frames.map { decodedIndex($0, candidates: 0..<30) }, [0, 14, 29, 29])
    }
}
