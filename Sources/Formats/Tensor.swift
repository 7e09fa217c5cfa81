// Tensors as the readers hand them out: a dtype, a shape and contiguous
// little-endian row-major bytes that are either mapped from the file or owned.

import Foundation

/// Element types sfnet reads and writes. Raw values are safetensors' dtype names.
public enum DType: String, CaseIterable, Sendable, Codable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"
    case u64 = "U64", u32 = "U32", u16 = "U16"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool: return 1
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16: return true
        default: return false
        }
    }

    /// Lower-case short name used in reports and on the command line (`f32`, `bf16`, `i64`).
    public var shortName: String { rawValue.lowercased() }

    public init?(shortName: String) {
        self.init(rawValue: shortName.uppercased())
    }
}

/// Keeps the memory behind a `Bytes` alive (a mapped file or an owned allocation).
public protocol ByteOwner: AnyObject, Sendable {}

/// Owned, aligned heap memory.
public final class OwnedBuffer: ByteOwner, @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let count: Int

    public init(count: Int) {
        self.count = count
        self.pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
    }

    public convenience init(copying source: UnsafeRawBufferPointer) {
        self.init(count: source.count)
        if let base = source.baseAddress, source.count > 0 {
            pointer.copyMemory(from: base, byteCount: source.count)
        }
    }

    deinit { pointer.deallocate() }

    public var bytes: Bytes { Bytes(UnsafeRawBufferPointer(start: pointer, count: count), owner: self) }
}

/// A read-only view of bytes plus the object that keeps them alive.
/// Slicing never copies.
public struct Bytes: @unchecked Sendable {
    public let raw: UnsafeRawBufferPointer
    public let owner: ByteOwner?

    public init(_ raw: UnsafeRawBufferPointer, owner: ByteOwner?) {
        self.raw = raw
        self.owner = owner
    }

    public static func copying(_ array: [UInt8]) -> Bytes {
        array.withUnsafeBytes { OwnedBuffer(copying: $0).bytes }
    }

    public var count: Int { raw.count }

    /// A sub-range; callers have checked the bounds.
    public func slice(_ offset: Int, _ length: Int) -> Bytes {
        precondition(offset >= 0 && length >= 0 && offset <= raw.count && length <= raw.count - offset)
        return Bytes(UnsafeRawBufferPointer(rebasing: raw[offset ..< offset + length]), owner: owner)
    }

    public var array: [UInt8] { withExtendedLifetime(owner) { Array(raw) } }

    /// The bytes decoded as UTF-8 (invalid sequences repaired), keeping the owner alive while reading.
    public var text: String { withExtendedLifetime(owner) { String(decoding: raw, as: UTF8.self) } }
}

/// A tensor: dtype, shape and `numel * dtype.size` contiguous little-endian bytes.
public struct Tensor: @unchecked Sendable {
    public var dtype: DType
    public var shape: [Int]
    public var data: Bytes

    public init(dtype: DType, shape: [Int], data: Bytes) {
        self.dtype = dtype
        self.shape = shape
        self.data = data
    }

    public var numel: Int { shape.reduce(1, *) }
    public var byteCount: Int { data.count }

    public static func shapeString(_ shape: [Int]) -> String {
        "[" + shape.map(String.init).joined(separator: ",") + "]"
    }

    /// Values as Float (for tests and small tensors; any dtype).
    public func floats() -> [Float] {
        let n = numel
        var out = [Float](repeating: 0, count: n)
        let raw = data.raw
        for i in 0 ..< n {
            out[i] = DTypeCast.loadFloat(raw, index: i, dtype: dtype)
        }
        return out
    }
}

/// A named, ordered collection of tensors.
public struct TensorMap: Sendable {
    public private(set) var names: [String] = []
    public private(set) var tensors: [String: Tensor] = [:]

    public init() {}

    public var count: Int { names.count }

    public subscript(name: String) -> Tensor? { tensors[name] }

    /// Inserts or replaces; the first insertion fixes the order.
    public mutating func set(_ name: String, _ tensor: Tensor) {
        if tensors[name] == nil { names.append(name) }
        tensors[name] = tensor
    }

    public mutating func remove(_ name: String) {
        guard tensors.removeValue(forKey: name) != nil else { return }
        names.removeAll { $0 == name }
    }

    public var ordered: [(name: String, tensor: Tensor)] { names.map { ($0, tensors[$0]!) } }
}
