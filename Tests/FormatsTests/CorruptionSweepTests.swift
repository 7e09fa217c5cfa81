// Truncation and bit-flip sweeps over every kind of fixture: each damaged file is
// either read or refused with a FormatError, never a crash or a hang.

import Foundation
import XCTest
@testable import Formats

final class CorruptionSweepTests: XCTestCase {
    static let files = [
        "torch/tiny_pyslowfast.pyth", "torch/tiny_legacy.pth", "torch/tiny_deflated.pth", "torch/views_zip64.pt",
        "torch/views.pt", "torch/views_legacy.pt", "torch/views_expected.safetensors",
        "numpy/fortran.npy", "numpy/compressed.npz", "hostile/files/valid_caffe2.pkl",
    ]

    /// Deterministic xorshift so a failure can be replayed.
    struct Rng { var s: UInt64; mutating func next() -> UInt64 { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s } }

    func check(_ bytes: [UInt8], _ label: String, dir: URL) {
        let path = dir.appendingPathComponent("damaged").path
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        do {
            _ = try CheckpointReader.read(path: path)
        } catch is FormatError {
        } catch {
            XCTFail("\(label): unexpected error type \(type(of: error)): \(error)")
        }
    }

    func testTruncatedFilesAreRefusedCleanly() throws {
        let dir = try Fixtures.tempDir()
        var runs = 0
        for f in Self.files {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.path(f))))
            // Every offset in the first 160 bytes and the last 160 (headers, zip end records),
            // then 48 spread through the middle.
            var cuts = Set((0 ..< min(160, bytes.count)).map { $0 })
            cuts.formUnion((max(0, bytes.count - 160) ..< bytes.count).map { $0 })
            for k in 0 ..< 48 { cuts.insert(bytes.count * k / 48) }
            for cut in cuts.sorted() {
                check(Array(bytes[..<cut]), "\(f) cut at \(cut)", dir: dir)
                runs += 1
            }
        }
        print("truncation sweep: \(runs) files read or refused")
    }

    func testBitFlippedFilesAreReadOrRefusedCleanly() throws {
        let dir = try Fixtures.tempDir()
        var rng = Rng(s: 0x9E3779B97F4A7C15)
        var runs = 0
        for f in Self.files {
            let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.path(f))))
            // Large model files read slowly in debug builds: fewer trials there.
            for trial in 0 ..< (original.count > 100_000 ? 60 : 150) {
                var bytes = original
                // Flips concentrate on headers and metadata, where parsers live: half in the first 4 KB.
                let flips = 1 + Int(rng.next() % 4)
                for _ in 0 ..< flips {
                    let span = trial % 2 == 0 ? min(4096, bytes.count) : bytes.count
                    let i = Int(rng.next() % UInt64(span))
                    bytes[i] ^= UInt8(1 << (rng.next() % 8))
                }
                // Also hit the zip end records, which sit at the end of the file.
                if trial % 5 == 0, bytes.count > 100 { bytes[bytes.count - 1 - Int(rng.next() % 100)] ^= 0xFF }
                check(bytes, "\(f) trial \(trial)", dir: dir)
                runs += 1
            }
        }
        print("bit-flip sweep: \(runs) files read or refused")
    }
}
