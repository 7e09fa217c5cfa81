// SECURITY.md 26: whatever the HDF5 worker meets — truncated or bit-flipped copies of the
// Keras fixtures, a crash, a resource limit, a hang — the parent ends in a successful
// conversion or in "malformed HDF5 file: PATH (reason)", within a bounded time, and
// leaves no output behind on failure. `scripts/hdf5_mutations.py` runs hundreds of cases
// through the CLI.

import XCTest
@testable import Convert
import Formats
@testable import Keras
import Verify

final class MalformedHDF5Tests: XCTestCase {
    enum Outcome { case converted(ConvertSummary), malformed(String) }

    /// Converts `input` with the sweep limits; fails the test on anything but success or the clear error.
    func run(_ input: String, dir: URL, limits: HDF5WorkerLimits = KerasFixtures.sweepLimits,
             file: StaticString = #filePath, line: UInt = #line) -> (Outcome?, Double) {
        let out = dir.appendingPathComponent("out.safetensors").path
        try? FileManager.default.removeItem(atPath: out)
        let start = Date()
        do {
            let s = try KerasImport.convert(ConvertRequest(input: input, output: out), executable: KerasFixtures.binary, limits: limits)
            return (.converted(s), Date().timeIntervalSince(start))
        } catch let e as FormatError where e.description.hasPrefix("malformed HDF5 file: \(input) (") || e.description.hasPrefix("\(input): ") {
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "output left behind: \(e)", file: file, line: line)
            return (.malformed(e.description), Date().timeIntervalSince(start))
        } catch let e as ConvertError {
            // The file parsed but its tensors do not make a ResNet (a flipped name or shape): strict refusal.
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), file: file, line: line)
            return (.malformed("\(e)"), Date().timeIntervalSince(start))
        } catch {
            XCTFail("unexpected error \(type(of: error)): \(error)", file: file, line: line)
            return (nil, Date().timeIntervalSince(start))
        }
    }

    func testNonHDF5InputIsAMalformedHDF5File() throws {
        let dir = try KerasFixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bogus = dir.appendingPathComponent("x.h5").path
        FileManager.default.createFile(atPath: bogus, contents: Data("not an hdf5 file at all".utf8))
        let (o, _) = run(bogus, dir: dir)
        guard case .malformed(let m)? = o else { return XCTFail("converted garbage") }
        XCTAssertTrue(m.hasPrefix("malformed HDF5 file: \(bogus) ("), m)
    }

    func testWorkerCrashUnderItsMemoryLimitBecomesTheClearError() throws {
        let dir = try KerasFixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var limits = KerasFixtures.sweepLimits
        limits.addressSpace = 40 << 20   // below what the runtime needs: the worker dies at start
        let (o, _) = run(KerasFixtures.keras3, dir: dir, limits: limits)
        guard case .malformed(let m)? = o else { return XCTFail("converted under a 40 MB address space") }
        XCTAssertTrue(m.contains("the reader was stopped by signal") || m.contains("exited"), m)
    }

    func testWallClockLimitKillsTheWorker() throws {
        let dir = try KerasFixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var limits = KerasFixtures.sweepLimits
        limits.wallSeconds = 0.001
        let (o, seconds) = run(KerasFixtures.keras3, dir: dir, limits: limits)
        guard case .malformed(let m)? = o else { return XCTFail("finished within 1 ms?") }
        XCTAssertTrue(m.contains("wall-clock limit and was killed"), m)
        XCTAssertLessThan(seconds, 5)
    }

    func testTensorBudgetRefusesBeforeReading() throws {
        let dir = try KerasFixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var limits = KerasFixtures.sweepLimits
        limits.keras.maxTotalBytes = 10_000
        let (o, _) = run(KerasFixtures.keras2, dir: dir, limits: limits)
        guard case .malformed(let m)? = o else { return XCTFail("read past the tensor budget") }
        XCTAssertTrue(m.contains("tensors exceed 10000 bytes"), m)
    }

    func testTruncatedCopiesEndInTheClearError() throws {
        let dir = try KerasFixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        for fixture in [KerasFixtures.keras3, KerasFixtures.keras2] {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: fixture))
            let cuts = [1, 7, 8, 64, 512, 2048] + (1 ... 14).map { bytes.count * $0 / 15 } + [bytes.count - 1]
            var worst = 0.0
            for cut in cuts {
                let path = dir.appendingPathComponent("cut\(cut).h5").path
                try bytes.prefix(cut).write(to: URL(fileURLWithPath: path))
                let (o, seconds) = run(path, dir: dir)
                worst = max(worst, seconds)
                if case .converted? = o { XCTFail("\(URL(fileURLWithPath: fixture).lastPathComponent) cut at \(cut) of \(bytes.count) converted") }
            }
            XCTAssertLessThan(worst, KerasFixtures.sweepLimits.wallSeconds + 5)
            print("truncation sweep \(URL(fileURLWithPath: fixture).lastPathComponent): \(cuts.count) cuts, all refused, slowest \(String(format: "%.2f", worst)) s")
        }
    }

    func testBitFlippedCopiesConvertOrEndInTheClearError() throws {
        let dir = try KerasFixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        for fixture in [KerasFixtures.keras3, KerasFixtures.keras2] {
            let name = URL(fileURLWithPath: fixture).lastPathComponent
            let original = try Data(contentsOf: URL(fileURLWithPath: fixture))
            guard case .converted(let baseline)? = run(fixture, dir: dir).0 else { return XCTFail("\(name) does not convert") }
            var rng = SplitMix(seed: 0x4844_4635)
            var converted = 0, refused = 0, unchanged = 0, worst = 0.0
            // Half the flips in the first 4 KB (superblock, root group, B-trees), half anywhere.
            for i in 0 ..< 24 {
                var bytes = original
                let at = Int(rng.next() % UInt64(i % 2 == 0 ? min(4096, bytes.count) : bytes.count))
                bytes[at] ^= UInt8(1 << (rng.next() % 8))
                let path = dir.appendingPathComponent("flip\(i).h5").path
                try bytes.write(to: URL(fileURLWithPath: path))
                let (o, seconds) = run(path, dir: dir)
                worst = max(worst, seconds)
                switch o {
                case .converted(let s)?:
                    converted += 1
                    // A flip that still parses changed at most the one stored value it hit.
                    XCTAssertEqual(s.result.tensors.names, baseline.result.tensors.names, "flip at \(at)")
                    var differing = 0
                    for n in s.result.tensors.names {
                        let a = s.result.tensors[n]!, b = baseline.result.tensors[n]!
                        XCTAssertEqual(a.shape, b.shape, "\(n), flip at \(at)")
                        if a.dtype == .f32 { differing += zip(a.floats(), b.floats()).filter { $0.0.bitPattern != $0.1.bitPattern }.count }
                    }
                    XCTAssertLessThanOrEqual(differing, 1, "flip at \(at) changed \(differing) values")
                    if differing == 0 {
                        unchanged += 1
                        let ref = fixture == KerasFixtures.keras3 ? KerasFixtures.keras3Ref : KerasFixtures.keras2Ref
                        XCTAssertTrue(try Verifier.run(weights: s.output, reference: ref).passed, "flip at \(at)")
                    }
                case .malformed?: refused += 1
                case nil: break
                }
            }
            XCTAssertLessThan(worst, KerasFixtures.sweepLimits.wallSeconds + 5)
            print("bit-flip sweep \(name): 24 flips, \(converted) converted (\(unchanged) with identical tensors, verified), \(refused) refused; slowest \(String(format: "%.2f", worst)) s")
        }
    }
}

/// A small deterministic generator for the sweeps.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
