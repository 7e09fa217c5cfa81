// The structure-aware mutators (CFuzzMutators, issue 18 item 2) keep what they claim: checked here
// by walkers written independently of the C code, over hundreds of chained mutations per seed.
// - pickle: opcode by opcode to a STOP that is the last opcode, the input's tail kept, FRAME lengths
//   exact, every memo GET after a PUT of its slot;
// - protobuf: every key valid, every length prefix exact, and most outputs still unpack as ONNX;
// - zip: EOCD at the end, each central entry agreeing with its local header (name, method, sizes,
//   CRC), entries in order without overlap, and most outputs still open and read as zip archives;
// - all: deterministic for a seed, never past max_size.

import CFuzzMutators
import Foundation
import Formats
import ONNX
import XCTest

final class MutatorTests: XCTestCase {
    static let root = FuzzReplayTests.root

    func load(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: Self.root.appendingPathComponent(path))) }

    /// Structured mutation of `input` (nil when the mutator declined it), into at most `max` bytes.
    func structured(_ f: sfnet_format, _ input: [UInt8], max: Int, seed: UInt32) -> [UInt8]? {
        var buf = input + [UInt8](repeating: 0, count: Swift.max(0, max - input.count))
        let n = buf.withUnsafeMutableBufferPointer { sfnet_mutate_structured(f, $0.baseAddress, input.count, max, seed) }
        XCTAssertLessThanOrEqual(n, max, "wrote past max_size")
        if n == 0 { XCTAssertEqual(Array(buf.prefix(input.count)), input, "a declined mutation must leave the input as it was"); return nil }
        return Array(buf.prefix(n))
    }

    /// Chains `steps` mutations from each seed file (restarting from the file every 20), calling `check` on every output.
    func chain(_ f: sfnet_format, _ files: [String], steps: Int, max: Int = 65536,
               _ check: (_ original: [UInt8], _ output: [UInt8], _ label: String) throws -> Void) throws -> (produced: Int, tried: Int) {
        var produced = 0, tried = 0
        for file in files {
            let original = try load(file)
            var cur = original
            for step in 0 ..< steps {
                if step % 20 == 0 { cur = original }
                tried += 1
                guard let out = structured(f, cur, max: max, seed: UInt32(step * 7919 + 13)) else { continue }
                produced += 1
                try check(original, out, "\(file) step \(step)")
                cur = out
            }
        }
        return (produced, tried)
    }

    // MARK: pickle

    enum Arg { case none, fixed(Int), len(Int), line, twoLines }
    static let pickleArgs: [UInt8: Arg] = {
        var t: [UInt8: Arg] = [:]
        for op: UInt8 in [0x28, 0x2E, 0x30, 0x31, 0x32, 0x4E, 0x88, 0x89, 0x29, 0x74, 0x85, 0x86, 0x87, 0x5D, 0x6C, 0x7D, 0x64,
                          0x8F, 0x91, 0x61, 0x65, 0x90, 0x73, 0x75, 0x94, 0x93, 0x6F, 0x52, 0x81, 0x92, 0x62, 0x51, 0x97, 0x98] { t[op] = Arg.none }
        for op: UInt8 in [0x80, 0x4B, 0x68, 0x71, 0x82] { t[op] = .fixed(1) }
        for op: UInt8 in [0x4D, 0x83] { t[op] = .fixed(2) }
        for op: UInt8 in [0x4A, 0x6A, 0x72, 0x84] { t[op] = .fixed(4) }
        t[0x47] = .fixed(8); t[0x95] = .fixed(8)
        for op: UInt8 in [0x55, 0x8C, 0x43, 0x8A] { t[op] = .len(1) }
        for op: UInt8 in [0x54, 0x58, 0x42, 0x8B] { t[op] = .len(4) }
        for op: UInt8 in [0x8D, 0x8E, 0x96] { t[op] = .len(8) }
        for op: UInt8 in [0x49, 0x4C, 0x46, 0x53, 0x56, 0x67, 0x70, 0x50] { t[op] = .line }
        t[0x63] = .twoLines; t[0x69] = .twoLines
        return t
    }()

    struct Op { let op: UInt8; let start: Int; let argStart: Int; let end: Int }

    /// Opcodes up to and including the first STOP, or a failure message.
    static func walkPickle(_ b: [UInt8]) -> Result<[Op], PickleWalkError> {
        var ops: [Op] = [], i = 0
        func le(_ at: Int, _ w: Int) -> Int { (0 ..< w).reduce(0) { $0 | Int(b[at + $1]) << (8 * $1) } }
        while i < b.count {
            let op = b[i]
            guard let arg = pickleArgs[op] else { return .failure(.init("unknown opcode \(op) at \(i)")) }
            var j = i + 1
            switch arg {
            case .none: break
            case .fixed(let w): j += w
            case .len(let w):
                guard j + w <= b.count else { return .failure(.init("truncated length at \(i)")) }
                let n = w == 8 ? Int(clamping: UInt64(le(j, 4)) | UInt64(le(j + 4, 4)) << 32) : le(j, w)
                guard n <= b.count - j - w else { return .failure(.init("length \(n) past the end at \(i)")) }
                j += w + n
            case .line, .twoLines:
                var lines = 0
                if case .twoLines = arg { lines = 2 } else { lines = 1 }
                while j < b.count && lines > 0 { if b[j] == 0x0A { lines -= 1 }; j += 1 }
                if lines > 0 { return .failure(.init("unterminated text argument at \(i)")) }
            }
            guard j <= b.count else { return .failure(.init("truncated argument at \(i)")) }
            ops.append(Op(op: op, start: i, argStart: i + 1, end: j))
            i = j
            if op == 0x2E { return .success(ops) }
        }
        return .failure(.init("no STOP"))
    }
    struct PickleWalkError: Error, CustomStringConvertible { let description: String; init(_ d: String) { description = d } }

    func checkPickle(_ original: [UInt8], _ out: [UInt8], _ label: String) throws {
        let ops: [Op]
        switch Self.walkPickle(out) {
        case .failure(let e): XCTFail("\(label): \(e)"); return
        case .success(let o): ops = o
        }
        // The input's tail (after its first STOP) is kept after the output's STOP.
        if case .success(let inOps) = Self.walkPickle(original) {
            XCTAssertEqual(Array(out[ops.last!.end...]), Array(original[inOps.last!.end...]), "\(label): tail after STOP changed")
        }
        func le(_ at: Int, _ w: Int) -> Int { (0 ..< w).reduce(0) { $0 | Int(out[at + $1]) << (8 * $1) } }
        func text(_ o: Op) -> Int? {
            let s = String(decoding: out[o.argStart ..< o.end - 1], as: UTF8.self)
            return s.count <= 18 && !s.isEmpty && s.allSatisfy(\.isASCII) && s.allSatisfy(\.isNumber) ? Int(s) : nil
        }
        var stored = Set<Int>()
        for (k, o) in ops.enumerated() {
            switch o.op {
            case 0x71: stored.insert(le(o.argStart, 1))
            case 0x72: stored.insert(le(o.argStart, 4))
            case 0x70: if let v = text(o) { stored.insert(v) }
            case 0x94: stored.insert(stored.count)
            case 0x68: XCTAssertTrue(stored.contains(le(o.argStart, 1)), "\(label): BINGET \(le(o.argStart, 1)) of a slot never stored")
            case 0x6A: XCTAssertTrue(stored.contains(le(o.argStart, 4)), "\(label): LONG_BINGET \(le(o.argStart, 4)) of a slot never stored")
            case 0x67: XCTAssertTrue(text(o).map(stored.contains) ?? false, "\(label): GET of a slot never stored")
            case 0x95:
                let covered = (ops[(k + 1)...].firstIndex { $0.op == 0x95 }.map { ops[$0].start } ?? ops.last!.end) - o.end
                XCTAssertEqual(le(o.argStart, 4) | le(o.argStart + 4, 4) << 32, covered, "\(label): FRAME length")
            default: break
            }
        }
    }

    func testMutatedPicklesWalkOpcodeByOpcodeToAFinalStop() throws {
        let files = ["Fuzz/seeds/caffe2/first_12_blobs_1x1.pkl", "Fuzz/seeds/caffe2/small_blobs_full_shape.pkl",
                     "fixtures/hostile/files/c09_p4_nested.pkl", "fixtures/hostile/files/c03_new_od_junk.pkl",
                     "fixtures/hostile/files/c08_get_unset_slot.pkl", "fixtures/hostile/files/c01_torch_load.pkl"]
        let (produced, tried) = try chain(SFNET_FORMAT_PICKLE, files, steps: 400, checkPickle)
        // Every seed is an opcode stream: the mutator declines only when the output would not fit.
        XCTAssertEqual(produced, tried, "declined \(tried - produced) of \(tried)")
    }

    func testAPickleCutShortIsRepairedWithAStop() throws {
        let full = try load("Fuzz/seeds/caffe2/first_12_blobs_1x1.pkl")
        let cut = Array(full.prefix(full.count / 2))
        XCTAssertThrowsError(try Self.walkPickle(cut).get())
        for seed in UInt32(0) ..< 50 {
            let out = try XCTUnwrap(structured(SFNET_FORMAT_PICKLE, cut, max: 65536, seed: seed))
            try checkPickle(out, out, "cut, seed \(seed)")
        }
    }

    // MARK: protobuf

    /// Every field of a message: valid key and wire type, varints of at most 10 bytes, exact lengths.
    static func walkMessage(_ b: ArraySlice<UInt8>) -> String? {
        var i = b.startIndex
        func varint() -> UInt64? {
            var v: UInt64 = 0
            for shift in stride(from: 0, to: 70, by: 7) {
                guard i < b.endIndex, shift < 64 else { return nil }
                let x = b[i]; i += 1
                v |= UInt64(x & 0x7F) << UInt64(shift)
                if x & 0x80 == 0 { return v }
            }
            return nil
        }
        while i < b.endIndex {
            let at = i
            guard let key = varint(), key >> 3 != 0 else { return "bad key at \(at)" }
            switch key & 7 {
            case 0: guard varint() != nil else { return "bad varint at \(at)" }
            case 1: guard b.endIndex - i >= 8 else { return "truncated fixed64 at \(at)" }; i += 8
            case 5: guard b.endIndex - i >= 4 else { return "truncated fixed32 at \(at)" }; i += 4
            case 2: guard let n = varint(), n <= UInt64(b.endIndex - i) else { return "length past the end at \(at)" }; i += Int(n)
            default: return "wire type \(key & 7) at \(at)"
            }
        }
        return nil
    }

    func testMutatedProtobufKeepsEveryLengthPrefixExact() throws {
        let model = "fixtures/onnx/tiny_resnet2d_external.onnx"
        let (produced, tried) = try chain(SFNET_FORMAT_PROTOBUF, [model, "fixtures/onnx/hostile/ext_ok.onnx"], steps: 300) { _, out, label in
            if let e = Self.walkMessage(out[...]) { XCTFail("\(label): \(e)") }
        }
        XCTAssertGreaterThan(produced, tried * 9 / 10, "declined \(tried - produced) of \(tried)")
        // One mutation of a valid model: how often it still unpacks as an ONNX ModelProto (protobuf-c + the
        // nesting check), against one byte-level mutation (sfnet_mutate's byte path is 1 call in 4; the
        // internal byte mutator stands in for libFuzzer's here).
        let input = try load(model)
        var unpacked = 0, single = 0
        for seed in UInt32(0) ..< 200 {
            guard let out = structured(SFNET_FORMAT_PROTOBUF, input, max: 65536, seed: seed) else { continue }
            single += 1
            if out.withUnsafeBytes({ (try? OnnxModel.parse($0, file: "m.onnx")) != nil }) { unpacked += 1 }
        }
        print("protobuf: \(unpacked) of \(single) single structured mutations of \(model) unpack")
        XCTAssertGreaterThan(unpacked, single / 2, "only \(unpacked) of \(single) mutated models unpack")
    }

    // MARK: zip

    struct ZipEntryView { let name: [UInt8]; let method: Int; let crc: UInt32; let csize: Int; let usize: Int; let header: Int; let data: Int }

    /// The archive's entries, checked for the mutator's claims, or a failure message.
    static func walkZip(_ b: [UInt8]) -> Result<[ZipEntryView], PickleWalkError> {
        func le(_ at: Int, _ w: Int) -> Int { (0 ..< w).reduce(0) { $0 | Int(b[at + $1]) << (8 * $1) } }
        func fail(_ s: String) -> Result<[ZipEntryView], PickleWalkError> { .failure(.init(s)) }
        let eocd = b.count - 22
        guard eocd >= 0, le(eocd, 4) == 0x06054b50 else { return fail("no EOCD at the end") }
        var count = le(eocd + 10, 2), cdSize = le(eocd + 12, 4), cdOffset = le(eocd + 16, 4), cdLimit = eocd
        guard le(eocd + 8, 2) == count else { return fail("EOCD counts disagree") }
        if count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
            guard eocd >= 20, le(eocd - 20, 4) == 0x07064b50 else { return fail("zip64 values without a locator") }
            let rec = le(eocd - 12, 8)
            guard rec + 56 <= eocd - 20, le(rec, 4) == 0x06064b50 else { return fail("locator does not point at a zip64 record") }
            guard le(rec + 24, 8) == le(rec + 32, 8) else { return fail("zip64 counts disagree") }
            count = le(rec + 32, 8); cdSize = le(rec + 40, 8); cdOffset = le(rec + 48, 8); cdLimit = rec
        }
        guard cdOffset + cdSize == cdLimit else { return fail("central directory does not end at the end records") }
        var entries: [ZipEntryView] = [], p = cdOffset
        for k in 0 ..< count {
            guard p + 46 <= cdLimit, le(p, 4) == 0x02014b50 else { return fail("central entry \(k) corrupt") }
            let nl = le(p + 28, 2), xl = le(p + 30, 2), cl = le(p + 32, 2)
            guard p + 46 + nl + xl + cl <= cdLimit else { return fail("central entry \(k) runs past the directory") }
            var csize = le(p + 20, 4), usize = le(p + 24, 4), header = le(p + 42, 4)
            if usize == 0xFFFF_FFFF || csize == 0xFFFF_FFFF || header == 0xFFFF_FFFF {
                guard xl >= 28, le(p + 46 + nl, 2) == 1 else { return fail("central entry \(k): saturated field without zip64 extra") }
                usize = le(p + 46 + nl + 4, 8); csize = le(p + 46 + nl + 12, 8); header = le(p + 46 + nl + 20, 8)
            }
            let name = Array(b[(p + 46) ..< (p + 46 + nl)])
            guard header + 30 <= cdOffset, le(header, 4) == 0x04034b50 else { return fail("entry \(k): no local header at \(header)") }
            let lnl = le(header + 26, 2), lxl = le(header + 28, 2)
            guard lnl == nl, Array(b[(header + 30) ..< (header + 30 + nl)]) == name else { return fail("entry \(k): local name differs") }
            guard le(header + 8, 2) == le(p + 10, 2) else { return fail("entry \(k): local method differs") }
            guard le(header + 14, 4) == le(p + 16, 4) else { return fail("entry \(k): local CRC differs") }
            var lc = le(header + 18, 4), lu = le(header + 22, 4)
            if lc == 0xFFFF_FFFF || lu == 0xFFFF_FFFF {
                guard lxl >= 20, le(header + 30 + nl, 2) == 1 else { return fail("entry \(k): local zip64 sizes without extra") }
                lu = le(header + 30 + nl + 4, 8); lc = le(header + 30 + nl + 12, 8)
            }
            guard lc == csize, lu == usize else { return fail("entry \(k): local sizes (\(lc), \(lu)) vs central (\(csize), \(usize))") }
            let data = header + 30 + lnl + lxl
            guard data + csize <= cdOffset else { return fail("entry \(k): data runs into the central directory") }
            entries.append(ZipEntryView(name: name, method: le(p + 10, 2), crc: UInt32(le(p + 16, 4)), csize: csize, usize: usize, header: header, data: data))
            p += 46 + nl + xl + cl
        }
        guard p == cdLimit else { return fail("central directory has bytes after its \(count) entries") }
        let sorted = entries.sorted { $0.header < $1.header }
        for (a, c) in zip(sorted, sorted.dropFirst()) where a.data + a.csize > c.header { return fail("entries overlap") }
        for e in entries where e.method != 8 {
            let crc = b.withUnsafeBytes { ZipArchive.crc32(UnsafeRawBufferPointer(rebasing: $0[e.data ..< (e.data + e.csize)])) }
            guard crc == e.crc, e.csize == e.usize else { return fail("stored entry: CRC or size does not match its data") }
        }
        return .success(entries)
    }

    func testMutatedZipsKeepDirectoryAndLocalHeadersInAgreement() throws {
        let files = ["fixtures/torch/views.pt", "fixtures/torch/views_zip64.pt", "fixtures/torch/tiny_deflated.pth",
                     "fixtures/numpy/compressed.npz", "fixtures/hostile/files/c06_numel_smaller.pth"].filter {
            (try? Data(contentsOf: Self.root.appendingPathComponent($0)).count <= 65536) ?? false
        }
        XCTAssertGreaterThanOrEqual(files.count, 3, "zip seeds under 64 KiB: \(files)")
        var readable = 0, picklesMutated = 0
        let (produced, tried) = try chain(SFNET_FORMAT_ZIP, files, steps: 200) { original, out, label in
            switch Self.walkZip(out) {
            case .failure(let e): XCTFail("\(label): \(e)")
            case .success(let entries):
                // Deflated entries: the archive reader inflates them and checks the CRC.
                if let z = try? ZipArchive(Bytes.copying(out)), (try? z.entries.map { try z.read($0) }) != nil {
                    readable += 1
                    // data.pkl changed and still an opcode stream: the pickle mutator ran inside the zip one.
                    if let pkl = z.entries.first(where: { $0.name.hasSuffix("data.pkl") }), let orig = try? ZipArchive(Bytes.copying(original)),
                       let o = orig.entry(named: pkl.name), let a = try? z.read(pkl), let b = try? orig.read(o), Array(a.raw) != Array(b.raw),
                       case .success = Self.walkPickle(Array(a.raw)) {
                        picklesMutated += 1
                    }
                }
                XCTAssertEqual(entries.count, (try? ZipArchive(Bytes.copying(out)))?.entries.count ?? entries.count)
            }
        }
        XCTAssertGreaterThan(produced, tried * 9 / 10, "declined \(tried - produced) of \(tried)")
        print("zip: \(readable) of \(produced) chained structured mutations read back, \(picklesMutated) with data.pkl mutated as a pickle")
        XCTAssertGreaterThan(picklesMutated, 0, "data.pkl was never mutated as a pickle")
        // One mutation of a valid checkpoint: how often the strict reader still opens it and reads every entry
        // (names, methods, overlap, CRC after inflating).
        let input = try load("fixtures/torch/views.pt")
        var ok = 0, single = 0
        for seed in UInt32(0) ..< 200 {
            guard let out = structured(SFNET_FORMAT_ZIP, input, max: 65536, seed: seed) else { continue }
            single += 1
            if let z = try? ZipArchive(Bytes.copying(out)), (try? z.entries.map { try z.read($0) }) != nil { ok += 1 }
        }
        print("zip: \(ok) of \(single) single structured mutations of views.pt read back")
        XCTAssertGreaterThan(ok, single / 2, "only \(ok) of \(single) mutated archives read back")
    }

    // MARK: all formats

    func testMutatorsAreDeterministicAndStayWithinMaxSize() throws {
        let inputs: [(sfnet_format, [UInt8])] = [
            (SFNET_FORMAT_PICKLE, try load("Fuzz/seeds/caffe2/small_blobs_full_shape.pkl")),
            (SFNET_FORMAT_PROTOBUF, try load("fixtures/onnx/tiny_resnet2d_external.onnx")),
            (SFNET_FORMAT_ZIP, try load("fixtures/torch/views.pt")),
        ]
        for (f, input) in inputs {
            for seed in UInt32(0) ..< 100 {
                // max_size from a little below the input to well above it.
                let max = input.count - 64 + Int(seed % 5) * 64
                func run() -> [UInt8] {
                    var buf = Array(input.prefix(max)) + [UInt8](repeating: 0, count: Swift.max(0, max - input.count))
                    let size = Swift.min(input.count, max)
                    let n = buf.withUnsafeMutableBufferPointer { sfnet_mutate(f, $0.baseAddress, size, max, seed) }
                    XCTAssertLessThanOrEqual(n, max, "format \(f.rawValue) seed \(seed): wrote past max_size")
                    return Array(buf.prefix(n))
                }
                XCTAssertEqual(run(), run(), "format \(f.rawValue) seed \(seed): not deterministic")
            }
        }
        XCTAssertEqual(sfnet_have_libfuzzer(), 0, "the tests link no libFuzzer: byte mutation must be the internal one")
    }

    func testInputsThatAreNotTheFormatAreDeclined() throws {
        let junk = [UInt8](repeating: 0xFF, count: 100)
        XCTAssertNil(structured(SFNET_FORMAT_PICKLE, junk, max: 4096, seed: 1))
        XCTAssertNil(structured(SFNET_FORMAT_PROTOBUF, junk, max: 4096, seed: 1))
        XCTAssertNil(structured(SFNET_FORMAT_ZIP, junk, max: 4096, seed: 1))
    }
}
