// Helpers for the Video tests: temporary folders and frames whose content encodes their index.

import Foundation
import XCTest
@testable import Video

func temporaryDirectory(_ name: String = #function) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("sfnet-video-\(name.filter { $0.isLetter || $0.isNumber })-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The grey levels frame `i` carries in its left half: top quarter `i mod 23`, bottom quarter `i / 23 mod 23`,
/// each level 9 apart so lossy coding cannot confuse neighbours (529 distinct frames).
func indexGrey(_ i: Int) -> (top: UInt8, bottom: UInt8) {
    (UInt8(24 + (i % 23) * 9), UInt8(24 + ((i / 23) % 23) * 9))
}

/// A frame whose left half carries `indexGrey(i)` and whose right half is a fixed orange.
func indexedFrame(_ i: Int, width: Int, height: Int) -> RGBFrame {
    var f = RGBFrame(width: width, height: height, fill: (230, 120, 20))
    let (top, bottom) = indexGrey(i)
    for y in 0..<height {
        let g = y < height / 2 ? top : bottom
        for x in 0..<(width / 2) { let o = (y * width + x) * 3; f.pixels[o] = g; f.pixels[o + 1] = g; f.pixels[o + 2] = g }
    }
    return f
}

/// Index of the frame a decoded picture shows, read back from its left half's greys (nil if none fits).
func decodedIndex(_ f: RGBFrame, candidates: Range<Int>) -> Int? {
    let top = Int(f.pixel(x: f.width / 4, y: f.height / 4).0)
    let bottom = Int(f.pixel(x: f.width / 4, y: 3 * f.height / 4).0)
    func distance(_ i: Int) -> Int { let g = indexGrey(i); return max(abs(Int(g.top) - top), abs(Int(g.bottom) - bottom)) }
    guard let best = candidates.min(by: { distance($0) < distance($1) }), distance(best) <= 4 else { return nil }
    return best
}

/// Writes an indexed video of `count` frames.
func writeIndexedVideo(_ path: String, count: Int, width: Int = 64, height: Int = 48, fps: Int = 30,
                       codec: VideoCodec, gop: Int = 30, fastStart: Bool = false) throws {
    try VideoEncoder.write((0..<count).map { indexedFrame($0, width: width, height: height) }, to: path, fps: fps,
                           codec: codec, gop: gop, quality: 10, fastStart: fastStart)
}

/// The built `sfnet-databench` executable (synthetic data and the data benchmark) beside the test
/// bundle; `SFNET_DATABENCH` overrides. Later CLI tests can make demo data with it.
enum DataBench {
    static var binary: String {
        if let env = ProcessInfo.processInfo.environment["SFNET_DATABENCH"] { return env }
        for b in Bundle.allBundles where b.bundlePath.hasSuffix(".xctest") {
            let candidate = b.bundleURL.deletingLastPathComponent().appendingPathComponent("sfnet-databench").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/sfnet-databench").path
    }

    /// Runs it; (exit status, stdout, stderr).
    static func run(_ args: [String]) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}
