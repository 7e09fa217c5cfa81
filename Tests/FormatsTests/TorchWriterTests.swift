// PickleWriter and TorchWriter: what they write reads back through sfnet's own
// strict readers (CRCs, allowlist, zip cross-checks) with every byte intact,
// laid out as torch.save lays it out. Interop with real torch: scripts/interop_torch.py.

import Foundation
import XCTest
@testable import Formats

final class TorchWriterTests: XCTestCase {
    func tensor(_ dtype: DType, _ shape: [Int], seed: Int) -> Tensor {
        let n = shape.reduce(1, *) * dtype.size
        return Tensor(dtype: dtype, shape: shape, data: Bytes.copying((0 ..< n).map { UInt8(truncatingIfNeeded: $0 * 31 + seed * 7 + 1) }))
    }

    func load(_ bytes: [UInt8]) throws -> PickleValue {
        let vm = PickleVM(Bytes.copying(bytes))
        return try vm.load()
    }

    func testIntegersUseTheSmallestOpcodeAndReadBackExactly() throws {
        let values: [Int64] = [0, 1, 255, 256, 65535, 65536, -1, -129, Int64(Int32.max), Int64(Int32.min), Int64(Int32.max) + 1,
                               Int64(Int32.min) - 1, 1 << 40, -(1 << 40), 0x80, 0x8000_0000_00, Int64.max, Int64.min]
        for v in values {
            let bytes = try PickleWriter.serialize(.int(v))
            guard case .int(let back) = try load(bytes) else { return XCTFail("\(v): not an int") }
            XCTAssertEqual(back, v)
        }
        XCTAssertEqual(try PickleWriter.serialize(.int(5)), [0x80, 2, 0x4B, 5, 0x2E])
        XCTAssertEqual(try PickleWriter.serialize(.int(300)), [0x80, 2, 0x4D, 0x2C, 0x01, 0x2E])
    }

    func testPlainDataRoundTripsThroughTheReader() throws {
        let value: PickleWriter.Value = .dict([
            (.string("s"), .string("héllo")), (.string("f"), .float(-1.5)), (.string("t"), .bool(true)),
            (.string("n"), .none), (.string("l"), .list((0 ..< 2500).map { .int(Int64($0)) })),
            (.string("tu"), .tuple([.int(1), .string("x"), .float(2), .bool(false)])),
            (.string("od"), .orderedDict((0 ..< 1500).map { ("k\($0)", .int(Int64($0))) })),
        ])
        guard case .dict(let d) = try load(try PickleWriter.serialize(value)) else { return XCTFail("not a dict") }
        XCTAssertEqual(d.value(forKey: "s")?.stringValue, "héllo")
        guard case .float(let f)? = d.value(forKey: "f") else { return XCTFail("f") }
        XCTAssertEqual(f, -1.5)
        guard case .bool(true)? = d.value(forKey: "t"), case .none? = d.value(forKey: "n") else { return XCTFail("t/n") }
        guard case .list(let l)? = d.value(forKey: "l") else { return XCTFail("l") }
        XCTAssertEqual(l.items.count, 2500)
        XCTAssertEqual(l.items.last?.intValue, 2499)
        guard case .tuple(let tu)? = d.value(forKey: "tu") else { return XCTFail("tu") }
        XCTAssertEqual(tu.count, 4)
        guard case .dict(let od)? = d.value(forKey: "od") else { return XCTFail("od") }
        XCTAssertTrue(od.isOrdered)
        XCTAssertEqual(od.entries.count, 1500)
        XCTAssertEqual(od.entries[1234].key.stringValue, "k1234")
    }

    func testCheckpointRoundTripKeepsBytesAliasingAndLayout() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("my_model.pyth").path
        let shared = tensor(.f32, [3, 5], seed: 1)
        let tensors: [(String, Tensor)] = [
            ("conv.weight", tensor(.f32, [4, 3, 1, 3, 3], seed: 2)), ("half", tensor(.f16, [7], seed: 3)),
            ("bf", tensor(.bf16, [2, 2], seed: 4)), ("counter", tensor(.i64, [], seed: 5)),
            ("mask", Tensor(dtype: .bool, shape: [3], data: Bytes.copying([1, 0, 1]))), ("a", shared), ("tied", shared),
            ("empty", Tensor(dtype: .f32, shape: [0, 4], data: Bytes.copying([]))), ("d", tensor(.f64, [3], seed: 6)),
        ]
        var storages = TorchWriter.Storages()
        var state: [(String, PickleWriter.Value)] = []
        for (n, t) in tensors { state.append((n, try storages.value(t))) }
        XCTAssertEqual(storages.items.count, tensors.count - 1, "the tied tensor shares its storage")
        let root: PickleWriter.Value = .dict([(.string("model_state"), .orderedDict(state)), (.string("epoch"), .int(-1))])
        try TorchWriter.write(root, storages: storages, to: path, overwrite: false)

        let ckpt = try CheckpointReader.read(path: path)
        XCTAssertEqual(ckpt.format, .torchZip)
        XCTAssertEqual(ckpt.containerKey, "model_state")
        XCTAssertEqual(ckpt.metadataValue("archive prefix"), "my_model")
        XCTAssertEqual(ckpt.metadataValue("version"), "3")
        XCTAssertEqual(ckpt.tensors.names, tensors.map(\.0))
        for (n, t) in tensors { assertSameTensor(ckpt.tensors[n]!, t, n) }
        XCTAssertEqual(ckpt.aliases, [["a", "tied"]])
        XCTAssertEqual(ckpt.otherEntries.map(\.key), ["epoch"])

        // Layout: torch.save's entries, all stored, data 64-byte aligned, zip64 end records.
        let file = try MappedFile(path: path)
        let zip = try ZipArchive(file.bytes)
        let names = zip.entries.map(\.name)
        XCTAssertEqual(Array(names.prefix(4)), ["my_model/data.pkl", "my_model/.format_version", "my_model/.storage_alignment", "my_model/byteorder"])
        XCTAssertEqual(Array(names.suffix(2)), ["my_model/version", "my_model/.data/serialization_id"])
        XCTAssertEqual(names.filter { $0.hasPrefix("my_model/data/") }.count, storages.items.count)
        for e in zip.entries {
            XCTAssertEqual(e.method, 0, e.name)
            XCTAssertEqual(e.dataOffset % 64, 0, "\(e.name) data at \(e.dataOffset)")
            XCTAssertNoThrow(try zip.read(e, verifyCRC: true), e.name)
        }
        XCTAssertEqual(try zip.read(zip.entry(named: "my_model/byteorder")!).text, "little")
        XCTAssertEqual(try zip.read(zip.entry(named: "my_model/.storage_alignment")!).text, "64")
        let raw = file.bytes.array
        XCTAssertTrue(contains(raw, [0x50, 0x4b, 0x06, 0x06]) && contains(raw, [0x50, 0x4b, 0x06, 0x07]), "zip64 end record and locator")

        // Only allowlisted globals.
        let pkl = try zip.read(zip.entry(named: "my_model/data.pkl")!).array
        XCTAssertEqual(pkl.prefix(2), [0x80, 2], "protocol 2")
        let globals = Set(Self.globals(in: pkl))
        let allowed: Set<String> = ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage", "torch.HalfStorage",
                                    "torch.BFloat16Storage", "torch.LongStorage", "torch.BoolStorage", "torch.DoubleStorage"]
        XCTAssertTrue(globals.isSubset(of: allowed), "globals: \(globals.subtracting(allowed))")
        XCTAssertTrue(globals.contains("torch._utils._rebuild_tensor_v2"))
    }

    func testZip64FieldsReadBackWhenEveryEntryNeedsThem() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("z64.pth").path
        var storages = TorchWriter.Storages()
        let w = tensor(.f32, [3, 7], seed: 9), b = tensor(.i64, [2], seed: 8)
        let root: PickleWriter.Value = .orderedDict([("w", try storages.value(w)), ("b", try storages.value(b))])
        // Threshold 1: every size and offset (except the first entry's offset 0) goes into zip64 extra fields.
        try TorchWriter.write(root, storages: storages, to: path, overwrite: false, prefix: nil, zip64Threshold: 1)
        let ckpt = try CheckpointReader.read(path: path)
        assertSameTensor(ckpt.tensors["w"]!, w, "w")
        assertSameTensor(ckpt.tensors["b"]!, b, "b")
        let zip = try ZipArchive(try MappedFile(path: path).bytes)
        for e in zip.entries { XCTAssertEqual(e.dataOffset % 64, 0, e.name) }
        // scripts/interop_torch.py loads this one with torch too.
        if let keep = ProcessInfo.processInfo.environment["SFNET_EXPORT_KEEP"], !keep.isEmpty {
            try FileManager.default.createDirectory(atPath: keep, withIntermediateDirectories: true)
            let dest = keep + "/zip64_everywhere.pth"
            try? FileManager.default.removeItem(atPath: dest)
            try FileManager.default.copyItem(atPath: path, toPath: dest)
        }
    }

    func testExistingOutputIsRefusedWithoutOverwriteAndKeptIntact() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("x.pth").path
        try Data("old".utf8).write(to: URL(fileURLWithPath: path))
        var storages = TorchWriter.Storages()
        let root: PickleWriter.Value = .orderedDict([("w", try storages.value(tensor(.f32, [2], seed: 0)))])
        XCTAssertThrowsError(try TorchWriter.write(root, storages: storages, to: path, overwrite: false)) { error in
            XCTAssertTrue("\(error)".contains("--force"), "\(error)")
        }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "old")
        try TorchWriter.write(root, storages: storages, to: path, overwrite: true)
        XCTAssertEqual(try CheckpointReader.read(path: path).tensors.names, ["w"])
    }

    func testUnsignedDTypesHaveNoStorageClassAndAreRefused() {
        var storages = TorchWriter.Storages()
        XCTAssertThrowsError(try storages.value(tensor(.u16, [2], seed: 0)))
    }

    func testPrefixIsTheFileStem() {
        XCTAssertEqual(TorchWriter.prefix(for: "/a/b/SLOWFAST_8x8_R50.pyth"), "SLOWFAST_8x8_R50")
        XCTAssertEqual(TorchWriter.prefix(for: "/a/b/model"), "model")
        XCTAssertEqual(TorchWriter.prefix(for: "/a/.pth"), "archive")
    }

    static func globals(in pkl: [UInt8]) -> [String] {
        // GLOBAL is 'c' module '\n' name '\n'; the writer emits no other text lines.
        let text = String(decoding: pkl, as: Unicode.ASCII.self)
        let regex = try! NSRegularExpression(pattern: #"c([A-Za-z_][A-Za-z0-9_.]*)\n([A-Za-z_][A-Za-z0-9_]*)\n"#)
        return regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).map {
            (text as NSString).substring(with: $0.range(at: 1)) + "." + (text as NSString).substring(with: $0.range(at: 2))
        }
    }

    func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard hay.count >= needle.count else { return false }
        return (0 ... hay.count - needle.count).contains { hay[$0 ..< $0 + needle.count].elementsEqual(needle) }
    }
}
