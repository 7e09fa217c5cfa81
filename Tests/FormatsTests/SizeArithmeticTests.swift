// Size arithmetic at the overflow boundary (issue 18 item 0): every size, offset and
// stride taken from a file either fits or ends in a typed error, never a trap.

import Foundation
import XCTest
@testable import Formats

final class SizeArithmeticTests: XCTestCase {
    // MARK: Checked.product

    func testProductRefusesOverflowOfTheNonZeroDimensions() throws {
        XCTAssertEqual(try Checked.product([1 << 31, 1 << 31], "t"), 1 << 62)
        XCTAssertThrowsError(try Checked.product([1 << 32, 1 << 31], "t"))           // 2^63: first to overflow
        XCTAssertThrowsError(try Checked.product([1 << 32, 1 << 32], "t"))           // wraps to 0 unchecked
        // A zero dimension makes 0 elements, but the other dims' product must still fit:
        // row-major strides of [0, 2^32, 2^32] are suffix products that overflow.
        XCTAssertEqual(try Checked.product([0, 1 << 31, 1 << 31], "t"), 0)
        XCTAssertThrowsError(try Checked.product([0, 1 << 32, 1 << 31], "t"))
        XCTAssertThrowsError(try Checked.product([1 << 32, 1 << 32, 0], "t"))
        XCTAssertThrowsError(try Checked.product([2, -1], "t"))
        XCTAssertEqual(try Checked.product([1 << 30, 1 << 30], elementSize: 4, "t"), 1 << 62)
        XCTAssertThrowsError(try Checked.product([1 << 31, 1 << 30], elementSize: 4, "t"))
        XCTAssertThrowsError(try Checked.product([0, 1 << 31, 1 << 30], elementSize: 4, "t"))
    }

    // MARK: safetensors

    static func safetensors(shape: String, offsets: String = "[0,0]", data: [UInt8] = []) -> [UInt8] {
        let header = Array("{\"x\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":\(offsets)}}".utf8)
        return (0 ..< 8).map { UInt8((header.count >> (8 * $0)) & 0xFF) } + header + data
    }

    func testSafetensorsZeroDimensionShapesAtTheBoundary() throws {
        // Largest accepted: 4 x 2^30 x 2^31 = 2^63 would not fit, 4 x 2^30 x 2^30 does.
        let ok = try Safetensors.read(Bytes.copying(Self.safetensors(shape: "[0,1073741824,1073741824]")))
        XCTAssertEqual(ok.tensors["x"]?.shape, [0, 1 << 30, 1 << 30])
        XCTAssertEqual(ok.tensors["x"]?.numel, 0)
        for shape in ["[0,2147483648,1073741824]", "[0,4294967296,4294967296]", "[4294967296,4294967296]"] {
            XCTAssertThrowsError(try Safetensors.read(Bytes.copying(Self.safetensors(shape: shape))), shape) { e in
                XCTAssertTrue("\(e)".contains("overflows") && "\(e)".contains("key 'x'"), "\(e)")
            }
        }
        // Offsets near Int.max: refused as not matching the shape, no arithmetic on them traps.
        XCTAssertThrowsError(try Safetensors.read(Bytes.copying(Self.safetensors(shape: "[1]", offsets: "[9223372036854775800,9223372036854775807]"))))
    }

    // MARK: npy

    static func npy(shape: String, fortran: Bool = false, data: [UInt8] = []) -> [UInt8] {
        var header = Array("{'descr': '<f4', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shape), }".utf8)
        while (10 + header.count + 1) % 64 != 0 { header.append(0x20) }
        header.append(0x0A)
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count & 0xFF), UInt8(header.count >> 8)] + header + data
    }

    func testNpyZeroDimensionShapesAtTheBoundary() throws {
        let (t, _) = try Npy.readArray(Bytes.copying(Self.npy(shape: "(0, 1073741824, 1073741824)", fortran: true)))
        XCTAssertEqual(t.numel, 0)
        for shape in ["(0, 2147483648, 1073741824)", "(0, 4294967296, 4294967296)", "(4294967296, 4294967296)"] {
            XCTAssertThrowsError(try Npy.readArray(Bytes.copying(Self.npy(shape: shape, fortran: true))), shape) { e in
                XCTAssertTrue("\(e)".contains("overflows"), "\(e)")
            }
        }
    }

    // MARK: tensor views on storages (pickle _rebuild_tensor_v2)

    func testTensorViewWithZeroDimensionAndHugeOthersIsRefused() throws {
        let s = StorageRef(key: "0", dtype: .f32, numel: 0, location: "cpu")
        s.data = Bytes.copying([])
        // [0, 2^31, 2^31]: 0 elements, contiguous strides fit: accepted, and isContiguous does not trap.
        let ok = try PickleGlobals.makeTensor(s, 0, [0, 1 << 31, 1 << 31], [1 << 62, 1 << 31, 1], at: "t")
        XCTAssertTrue(ok.isContiguous)
        XCTAssertEqual(try TorchCheckpoint.tensorValue(.tensor(ok))?.0.numel, 0)
        // [0, 2^32, 2^32]: isContiguous's suffix product 2^64 used to trap.
        XCTAssertThrowsError(try PickleGlobals.makeTensor(s, 0, [0, 1 << 32, 1 << 32], [0, 1 << 32, 1], at: "t")) { e in
            XCTAssertTrue("\(e)".contains("element count overflows"), "\(e)")
        }
    }

    func testSizeOneDimensionWithHugeStrideGathersWithoutOverflow() throws {
        // Storage [0, 1, 2, 3] as f32; a view at offset 1 of shape [1, 3] whose size-1 dim has stride
        // Int.max (PyTorch accepts any stride on a size-1 dim). The gather used to step past the
        // last index first: 1 + Int.max trapped.
        let s = StorageRef(key: "0", dtype: .f32, numel: 4, location: "cpu")
        s.data = [Float(0), 1, 2, 3].withUnsafeBytes { OwnedBuffer(copying: $0).bytes }
        for (shape, stride) in [([1, 3], [Int.max, 1]), ([3, 1], [1, Int.max]), ([1, 1, 3], [Int.max, Int.max - 1, 1])] {
            let ref = try PickleGlobals.makeTensor(s, 1, shape, stride, at: "t")
            XCTAssertTrue(ref.isContiguous)
            XCTAssertEqual(try XCTUnwrap(try TorchCheckpoint.tensorValue(.tensor(ref))).0.floats(), [1, 2, 3])
            // The strided path on the same view.
            let t = StridedGather.gather(s.data!, elementSize: 4, offset: ref.offset, shape: shape, stride: stride)
            XCTAssertEqual(Tensor(dtype: .f32, shape: shape, data: t).floats(), [1, 2, 3], "\(shape) \(stride)")
        }
        // A size-1 dim of huge stride between others, contiguous and not.
        let v = try PickleGlobals.makeTensor(s, 0, [2, 1, 2], [2, Int.max, 1], at: "t")
        XCTAssertEqual(try XCTUnwrap(try TorchCheckpoint.tensorValue(.tensor(v))).0.floats(), [0, 1, 2, 3])
        let w = try PickleGlobals.makeTensor(s, 0, [2, 1, 2], [1, Int.max, 2], at: "t")
        XCTAssertFalse(w.isContiguous)
        XCTAssertEqual(try XCTUnwrap(try TorchCheckpoint.tensorValue(.tensor(w))).0.floats(), [0, 2, 1, 3])
        // The last addressed element is still bounds-checked with overflow-checked arithmetic.
        XCTAssertThrowsError(try PickleGlobals.makeTensor(s, 1, [2, 3], [Int.max, 1], at: "t"))
        XCTAssertThrowsError(try PickleGlobals.makeTensor(s, Int.max, [1], [1], at: "t"))
    }

    // MARK: zip: zlib's 32-bit counters

    /// A zip with one deflated entry made of a single stored deflate block (no zlib needed).
    static func deflatedZip(_ payload: [UInt8], name: String = "a.bin") -> [UInt8] {
        func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
        func le32(_ v: Int) -> [UInt8] { (0 ..< 4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
        let block = [0x01] + le16(payload.count) + le16(~payload.count & 0xFFFF) + payload
        let crc = payload.withUnsafeBytes { Int(ZipArchive.crc32($0)) }
        let n = Array(name.utf8)
        let local = le32(0x04034b50) + le16(20) + le16(0) + le16(8) + le16(0) + le16(0) + le32(crc)
            + le32(block.count) + le32(payload.count) + le16(n.count) + le16(0) + n
        let cd = le32(0x02014b50) + le16(20) + le16(20) + le16(0) + le16(8) + le16(0) + le16(0) + le32(crc)
            + le32(block.count) + le32(payload.count) + le16(n.count) + le16(0) + le16(0) + le16(0) + le16(0) + le32(0) + le32(0) + n
        let cdOffset = local.count + block.count
        let eocd = le32(0x06054b50) + le16(0) + le16(0) + le16(1) + le16(1) + le32(cd.count) + le32(cdOffset) + le16(0)
        return local + block + cd + eocd
    }

    func testInflateFeedsZlibInWindows() throws {
        let payload = (0 ..< 100).map { UInt8($0 * 7 & 0xFF) }
        let zip = try ZipArchive(Bytes.copying(Self.deflatedZip(payload)))
        XCTAssertEqual(try zip.read(zip.entries[0]).array, payload)
        // Windows much smaller than the entry: the path taken by entries of 4 GiB and more.
        for w in [1, 7, 64, 104, 105] {
            zip.inflateWindow = w
            XCTAssertEqual(try zip.read(zip.entries[0]).array, payload, "window \(w)")
        }
        // A declared size one byte too small or too large is still caught across windows.
        var bytes = Self.deflatedZip(payload)
        for (i, v) in [(22, 99), (22, 101)] {
            for off in [i, bytes.count - 22 - (46 + 5) + 24] { bytes[off] = UInt8(v) }
            let z = try ZipArchive(Bytes.copying(bytes))
            z.inflateWindow = 7
            XCTAssertThrowsError(try z.read(z.entries[0])) { e in XCTAssertTrue("\(e)".contains("declared"), "\(e)") }
        }
    }
}
