// The native format's container: the writer's layout rules, round trips, and atomic replacement.

import XCTest
@testable import Formats

final class SafetensorsTests: XCTestCase {
    func tensor(_ dtype: DType, _ shape: [Int], seed: UInt8) -> Tensor {
        let n = shape.reduce(1, *) * dtype.size
        return Tensor(dtype: dtype, shape: shape, data: Bytes.copying((0 ..< n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }))
    }

    func testWriterAlignsDataAndLeavesNoHoles() throws {
        let dir = try Fixtures.tempDir()
        let path = dir.appendingPathComponent("w.safetensors").path
        let items = [
            SafetensorsWriter.Item(name: "b.u8", tensor: tensor(.u8, [3], seed: 1)),
            SafetensorsWriter.Item(name: "a.f32", tensor: tensor(.f32, [2, 3], seed: 2)),
            SafetensorsWriter.Item(name: "c.i64", tensor: tensor(.i64, [], seed: 3)),
            SafetensorsWriter.Item(name: "d.f16", tensor: tensor(.f16, [5], seed: 4)),
        ]
        try SafetensorsWriter.write(items, metadata: [("sfnet.format", "1")], to: path, overwrite: false)
        let file = try MappedFile(path: path)
        let headerLen = Int(file.bytes.raw.loadUnaligned(as: UInt64.self))
        XCTAssertEqual((8 + headerLen) % 64, 0, "data starts on a 64-byte boundary")
        let ck = try Safetensors.read(file.bytes)
        XCTAssertEqual(ck.tensors.names, ["b.u8", "a.f32", "c.i64", "d.f16"], "header keeps the given order")
        XCTAssertEqual(ck.metadataValue("sfnet.format"), "1")
        for it in items { assertSameTensor(ck.tensors[it.name]!, it.tensor, it.name) }
        // Every tensor starts at a multiple of its element size.
        let base = 8 + headerLen
        for (n, t) in ck.tensors.ordered {
            let off = t.data.raw.baseAddress! - file.bytes.raw.baseAddress! - base
            XCTAssertEqual(off % t.dtype.size, 0, n)
        }
    }

    func testWriterCastsWhileStreaming() throws {
        let dir = try Fixtures.tempDir()
        let path = dir.appendingPathComponent("cast.safetensors").path
        // Hand-computed bf16 rounding: 65504 rounds up to 65536; 1 + 2^-8 is a tie and rounds to even (1).
        let values: [Float] = [1, -2.5, 3.140625, 65504, 1.00390625]
        let src = values.withUnsafeBytes { Tensor(dtype: .f32, shape: [5], data: OwnedBuffer(copying: $0).bytes) }
        try SafetensorsWriter.write([.init(name: "x", tensor: src, dtype: .bf16)], metadata: [], to: path, overwrite: false)
        let back = try CheckpointReader.read(path: path)
        let t = back.tensors["x"]!
        XCTAssertEqual(t.dtype, .bf16)
        XCTAssertEqual(t.floats(), [1, -2.5, 3.140625, 65536, 1])
    }

    func testExistingOutputIsRefusedAndForceReplacesAtomically() throws {
        let dir = try Fixtures.tempDir()
        let path = dir.appendingPathComponent("out.safetensors").path
        try Data("old".utf8).write(to: URL(fileURLWithPath: path))
        let item = SafetensorsWriter.Item(name: "x", tensor: tensor(.f32, [4], seed: 0))
        XCTAssertThrowsError(try SafetensorsWriter.write([item], metadata: [], to: path, overwrite: false)) {
            XCTAssertTrue("\($0)".contains("already exists"))
        }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "old")
        // A failure in the middle of writing leaves the old file and no temporary.
        struct Boom: Error {}
        XCTAssertThrowsError(try AtomicFile.write(to: path, overwrite: true) { out in
            try [UInt8](repeating: 1, count: 100).withUnsafeBytes { try out.write($0) }
            throw Boom()
        })
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "old")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.safetensors"])
        try SafetensorsWriter.write([item], metadata: [], to: path, overwrite: true)
        XCTAssertEqual(try CheckpointReader.read(path: path).tensors.count, 1)
    }

    func testStaleTemporaryOfADeadProcessIsRemoved() throws {
        let dir = try Fixtures.tempDir()
        let path = dir.appendingPathComponent("model.safetensors").path
        // pid 2^22+1 is above the default pid_max, so no such process exists.
        let stale = dir.appendingPathComponent(".model.safetensors.sfnet-tmp-4194305-1").path
        FileManager.default.createFile(atPath: stale, contents: Data([1, 2, 3]))
        try SafetensorsWriter.write([.init(name: "x", tensor: tensor(.u8, [1], seed: 0))], metadata: [], to: path, overwrite: false)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale))
    }

    func testHeaderChecks() throws {
        func file(_ header: String, data: Int) -> Bytes {
            var b = [UInt8](repeating: 0, count: 8)
            let h = Array(header.utf8)
            for i in 0 ..< 8 { b[i] = UInt8((h.count >> (8 * i)) & 0xFF) }
            return Bytes.copying(b + h + [UInt8](repeating: 0, count: data))
        }
        func err(_ header: String, data: Int) -> String {
            do { _ = try Safetensors.read(file(header, data: data)); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(err(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, data: 16).contains("duplicate key"))
        XCTAssertTrue(err(#"{"__metadata__":{"k":1}}"#, data: 0).contains("__metadata__"))
        XCTAssertTrue(err(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: 8).contains("does not match"))
        XCTAssertTrue(err(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: 12).contains("hole"))
        XCTAssertTrue(err(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: 4).contains("beyond"))
        XCTAssertTrue(err(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: 8).contains("overlap"))
        XCTAssertTrue(err(#"{"a":{"dtype":"X9","shape":[2],"data_offsets":[0,8]}}"#, data: 8).contains("dtype"))
        XCTAssertTrue(err(#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#, data: 8).contains("overflow"))
        XCTAssertTrue(err(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#, data: 8).contains("JSON"))
        XCTAssertTrue(err(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: 12).contains("unused"))
    }
}
