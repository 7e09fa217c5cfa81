// Corrupt, truncated, empty and oversized inputs end in a typed VideoError naming the path; never a crash.

import Foundation
import XCTest
@testable import Video

final class BadVideoTests: XCTestCase {
    private func expectVideoError(_ path: String, _ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line,
                                  check: (VideoError) -> Bool = { _ in true }) {
        do {
            try body()
            XCTFail("\(path): no error", file: file, line: line)
        } catch let error as VideoError {
            XCTAssertEqual(error.path, path, file: file, line: line)
            XCTAssertTrue(error.description.contains(path), file: file, line: line)
            XCTAssertTrue(check(error), "unexpected error \(error)", file: file, line: line)
        } catch {
            XCTFail("\(path): untyped error \(error)", file: file, line: line)
        }
    }

    func testMissingEmptyGarbageAndDirectoryInputsCannotOpen() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let missing = dir.appendingPathComponent("missing.mp4").path
        let empty = dir.appendingPathComponent("empty.mp4").path
        let garbage = dir.appendingPathComponent("garbage.avi").path
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        _ = FileManager.default.createFile(atPath: garbage, contents: Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }))
        for path in [missing, empty, garbage] {
            expectVideoError(path, { _ = try VideoDecoder(path: path) }) { if case .cannotOpen = $0 { return true }; return false }
        }
        expectVideoError(dir.path, { _ = try VideoDecoder(path: dir.path) }) { if case .cannotOpen = $0 { return true }; return false }
    }

    func testTruncatedMP4WithIndexAtTheEndCannotOpen() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("cut.mp4").path
        try writeIndexedVideo(path, count: 60, codec: .preferred)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
        expectVideoError(path, { _ = try VideoDecoder(path: path).frames(at: [0]) })
    }

    func testTruncatedStreamsFailWhenTheClipIsPastTheCut() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for (ext, fastStart) in [("mp4", true), ("avi", false)] {
            let path = dir.appendingPathComponent("cut.\(ext)").path
            try writeIndexedVideo(path, count: 90, codec: .preferred, gop: 15, fastStart: fastStart)
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            try data.prefix(data.count * 4 / 10).write(to: URL(fileURLWithPath: path))
            expectVideoError(path, {
                let decoder = try VideoDecoder(path: path)
                _ = try decoder.frames(at: [decoder.info.frameCount - 2, decoder.info.frameCount - 1])
            })
        }
    }

    func testBitFlippedVideosGiveFramesOrATypedError() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let clean = dir.appendingPathComponent("clean.mkv").path
        try writeIndexedVideo(clean, count: 40, codec: .preferred, gop: 10)
        let original = try Data(contentsOf: URL(fileURLWithPath: clean))
        var typed = 0, decoded = 0
        for trial in 0..<24 {
            var bytes = [UInt8](original)
            var state = UInt64(trial + 1)
            for _ in 0..<16 {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                let at = Int(state >> 33) % bytes.count
                bytes[at] ^= UInt8(truncatingIfNeeded: state >> 17) | 1
            }
            let path = dir.appendingPathComponent("flip\(trial).mkv").path
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                let decoder = try VideoDecoder(path: path)
                let frames = try decoder.frames(at: Array(stride(from: 0, to: decoder.info.frameCount, by: 3)))
                XCTAssertTrue(frames.allSatisfy { $0.width == decoder.info.width && $0.height == decoder.info.height })
                decoded += 1
            } catch let error as VideoError {
                XCTAssertEqual(error.path, path)
                typed += 1
            }
        }
        print("BadVideoTests: 24 bit-flipped MKVs: \(decoded) decoded (errors concealed), \(typed) typed errors")
    }

    func testDimensionAndFrameLimitsAreEnforcedBeforeDecoding() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("v.mkv").path
        try writeIndexedVideo(path, count: 20, width: 64, height: 48, codec: .preferred)
        expectVideoError(path, { _ = try VideoDecoder(path: path, limits: VideoLimits(maxDimension: 32)) }) {
            if case .tooLarge(_, "frame width", 64, 32) = $0 { return true }; return false
        }
        expectVideoError(path, { _ = try VideoDecoder(path: path, limits: VideoLimits(maxFrames: 10)) }) {
            if case .tooLarge(_, "frame count", _, 10) = $0 { return true }; return false
        }
        expectVideoError(path, { _ = try VideoDecoder(path: path).frames(at: [0], width: 100_000, height: 10) }) {
            if case .tooLarge = $0 { return true }; return false
        }
        expectVideoError(path, { _ = try VideoDecoder(path: path, limits: VideoLimits(maxRequestBytes: 64 * 48 * 3 * 4)).frames(at: Array(0..<5)) }) {
            if case .tooLarge(_, "bytes of frames requested", _, _) = $0 { return true }; return false
        }
    }

    func testFrameFolderWithACorruptImageNamesTheImage() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for i in 0..<3 { try ImageWriter.write(indexedFrame(i, width: 32, height: 32), to: dir.appendingPathComponent("\(i).png").path) }
        let bad = dir.appendingPathComponent("1.png").path
        try Data([0x89, 0x50, 0x4E, 0x47, 0, 1, 2, 3]).write(to: URL(fileURLWithPath: bad))
        let folder = try FrameFolder(folder: dir.path)
        expectVideoError(bad, { _ = try folder.frames(at: [0, 1, 2]) })
    }
}

final class FrameFolderTests: XCTestCase {
    func testPNGAndJPEGFoldersDecodeInNaturalOrder() throws {
        for ext in ["png", "jpg"] {
            let dir = try temporaryDirectory("folder\(ext)")
            defer { try? FileManager.default.removeItem(at: dir) }
            for i in 0..<12 {
                try ImageWriter.write(indexedFrame(i, width: 40, height: 30), to: dir.appendingPathComponent("img_\(i + 1).\(ext)").path)
            }
            let source = try VideoSource.open(dir.path)
            XCTAssertEqual(source.info.frameCount, 12)
            XCTAssertEqual(source.info.width, 40)
            XCTAssertEqual(source.info.height, 30)
            XCTAssertEqual(source.info.fps, 30)
            let frames = try source.frames(at: [0, 1, 9, 10, 11, 11], width: nil, height: nil)
            XCTAssertEqual(frames.map { decodedIndex($0, candidates: 0..<12) }, [0, 1, 9, 10, 11, 11], ext)
            let orange = frames[2].pixel(x: 30, y: 15)
            XCTAssertEqual(Int(orange.0), 230, accuracy: 6, ext)
            XCTAssertEqual(Int(orange.1), 120, accuracy: 6, ext)
            XCTAssertEqual(Int(orange.2), 20, accuracy: 6, ext)
        }
    }
}
