// Element conversions between the dtypes sfnet handles: exact widening
// (f16/bf16 -> f32 -> f64) and round-to-nearest-even narrowing, as PyTorch does.

import Foundation

public enum DTypeCast {
    /// Reads element `index` of little-endian data as Float.
    @inline(__always)
    public static func loadFloat(_ raw: UnsafeRawBufferPointer, index i: Int, dtype: DType) -> Float {
        switch dtype {
        case .f32: return Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
        case .f64: return Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))))
        case .f16: return halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
        case .bf16: return Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) << 16)
        case .i64: return Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)))
        case .i32: return Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
        case .i16: return Float(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: Int16.self)))
        case .i8: return Float(raw.load(fromByteOffset: i, as: Int8.self))
        case .u8, .bool: return Float(raw[i])
        case .u16: return Float(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
        case .u32: return Float(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
        case .u64: return Float(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)))
        }
    }

    @inline(__always)
    public static func halfToFloat(_ h: UInt16) -> Float {
        #if arch(arm64) || arch(x86_64)
        return Float(Float16(bitPattern: h))
        #else
        return Float(Float16(bitPattern: h))
        #endif
    }

    @inline(__always)
    public static func floatToBF16(_ f: Float) -> UInt16 {
        let bits = f.bitPattern
        if f.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        let rounding = UInt32(0x7FFF) + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    /// Converts `count` floating-point elements from `src` (dtype `from`) to `dst` (dtype `to`).
    /// Both dtypes must be floating point.
    public static func convert(_ src: UnsafeRawPointer, from: DType, _ dst: UnsafeMutableRawPointer, to: DType, count: Int) {
        precondition(from.isFloatingPoint && to.isFloatingPoint)
        if from == to {
            dst.copyMemory(from: src, byteCount: count * from.size)
            return
        }
        let s = UnsafeRawBufferPointer(start: src, count: count * from.size)
        switch to {
        case .f32:
            let d = dst.assumingMemoryBound(to: UInt32.self)
            for i in 0 ..< count { d[i] = loadFloat(s, index: i, dtype: from).bitPattern.littleEndian }
        case .f64:
            let d = dst.assumingMemoryBound(to: UInt64.self)
            if from == .f64 { fatalError("unreachable") }
            for i in 0 ..< count { d[i] = Double(loadFloat(s, index: i, dtype: from)).bitPattern.littleEndian }
        case .f16:
            let d = dst.assumingMemoryBound(to: UInt16.self)
            if from == .f64 {
                for i in 0 ..< count {
                    let v = Double(bitPattern: UInt64(littleEndian: s.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)))
                    d[i] = Float16(v).bitPattern.littleEndian
                }
            } else {
                for i in 0 ..< count { d[i] = Float16(loadFloat(s, index: i, dtype: from)).bitPattern.littleEndian }
            }
        case .bf16:
            let d = dst.assumingMemoryBound(to: UInt16.self)
            if from == .f64 {
                // PyTorch rounds f64 -> bf16 through f32 as well (c10::BFloat16(float(x))).
                for i in 0 ..< count {
                    let v = Double(bitPattern: UInt64(littleEndian: s.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)))
                    d[i] = floatToBF16(Float(v)).littleEndian
                }
            } else {
                for i in 0 ..< count { d[i] = floatToBF16(loadFloat(s, index: i, dtype: from)).littleEndian }
            }
        default:
            preconditionFailure("not a floating-point dtype")
        }
    }

    /// A tensor cast to `to`; returns the input unchanged when no cast is needed
    /// or when the tensor is not floating point.
    public static func cast(_ t: Tensor, to: DType) -> Tensor {
        guard t.dtype != to, t.dtype.isFloatingPoint, to.isFloatingPoint else { return t }
        let out = OwnedBuffer(count: t.numel * to.size)
        if let base = t.data.raw.baseAddress {
            convert(base, from: t.dtype, out.pointer, to: to, count: t.numel)
        }
        return Tensor(dtype: to, shape: t.shape, data: out.bytes)
    }
}

extension Tensor {
    /// True when every element is finite (false for any NaN or infinity; true for integer dtypes).
    public var isAllFinite: Bool {
        guard dtype.isFloatingPoint else { return true }
        return withExtendedLifetime(data.owner) {
            let raw = data.raw
            for i in 0 ..< numel where !DTypeCast.loadFloat(raw, index: i, dtype: dtype).isFinite { return false }
            return true
        }
    }
}

extension TensorMap {
    /// Names of the tensors holding NaN or infinity, in order (`verify` and `finetune` name the poison).
    public var nonFiniteNames: [String] { ordered.filter { !$0.tensor.isAllFinite }.map(\.name) }
}

