// A protocol-2 pickler for plain data and torch tensors, emitting the opcodes
// torch.save (Python's _Pickler) emits for a state_dict, and naming only the
// globals sfnet's reader and torch's weights_only unpickler allow:
// collections.OrderedDict, torch._utils._rebuild_tensor_v2 and storage classes.

import Foundation

public enum PickleWriter {
    /// A storage as torch's persistent id names it: `('storage', torch.<Type>Storage, key, 'cpu', numel)`.
    public struct Storage: Sendable, Hashable {
        public let key: String
        public let dtype: DType
        public let numel: Int
        public init(key: String, dtype: DType, numel: Int) {
            self.key = key
            self.dtype = dtype
            self.numel = numel
        }
    }

    /// The data a checkpoint holds. Tensors are views on storages; two tensors naming the
    /// same storage key alias one storage after loading.
    public indirect enum Value: Sendable {
        case none
        case bool(Bool)
        case int(Int64)
        case float(Double)
        case string(String)
        case list([Value])
        case tuple([Value])
        /// A plain `dict` in insertion order.
        case dict([(Value, Value)])
        /// `collections.OrderedDict` (a state_dict).
        case orderedDict([(String, Value)])
        case tensor(storage: Storage, offset: Int, shape: [Int], stride: [Int])

        /// A contiguous tensor over a whole storage.
        public static func tensor(_ storage: Storage, shape: [Int]) -> Value {
            .tensor(storage: storage, offset: 0, shape: shape, stride: contiguousStrides(shape))
        }
    }

    /// Row-major strides in elements.
    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i] = acc
            acc *= max(shape[i], 1)
        }
        return strides
    }

    /// torch's storage class for a dtype (nil for dtypes torch has no legacy storage class for).
    public static func storageClass(_ dtype: DType) -> String? {
        switch dtype {
        case .f64: return "DoubleStorage"
        case .f32: return "FloatStorage"
        case .f16: return "HalfStorage"
        case .bf16: return "BFloat16Storage"
        case .i64: return "LongStorage"
        case .i32: return "IntStorage"
        case .i16: return "ShortStorage"
        case .i8: return "CharStorage"
        case .u8: return "ByteStorage"
        case .bool: return "BoolStorage"
        case .u16, .u32, .u64: return nil
        }
    }

    /// The pickle bytes of `value` (protocol 2, ending in STOP).
    public static func serialize(_ value: Value) throws -> [UInt8] {
        var e = Encoder()
        e.out = [0x80, 2]
        try e.write(value)
        e.out.append(0x2E)
        return e.out
    }

    struct Encoder {
        var out: [UInt8] = []
        var memo: [String: Int] = [:]   // "g:module.name", "s:text", "p:storage key"
        static let batch = 1000         // pickle's _BATCHSIZE for APPENDS / SETITEMS

        mutating func put(_ key: String) {
            let index = memo.count
            memo[key] = index
            if index < 256 { out += [0x71, UInt8(index)] } else { out.append(0x72); u32(UInt32(index)) }  // BINPUT / LONG_BINPUT
        }

        /// Emits BINGET for a memoized object; false when it is not memoized yet.
        mutating func get(_ key: String) -> Bool {
            guard let index = memo[key] else { return false }
            if index < 256 { out += [0x68, UInt8(index)] } else { out.append(0x6A); u32(UInt32(index)) }  // BINGET / LONG_BINGET
            return true
        }

        mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }

        mutating func global(_ module: String, _ name: String) {
            if get("g:\(module).\(name)") { return }
            out.append(0x63)  // GLOBAL
            out += Array("\(module)\n\(name)\n".utf8)
            put("g:\(module).\(name)")
        }

        mutating func string(_ s: String) {
            if get("s:" + s) { return }
            let u = Array(s.utf8)
            out.append(0x58)  // BINUNICODE
            u32(UInt32(u.count))
            out += u
            put("s:" + s)
        }

        mutating func int(_ v: Int64) {
            if v >= 0 && v < 256 { out += [0x4B, UInt8(v)]; return }                                    // BININT1
            if v >= 0 && v < 65536 { out.append(0x4D); withUnsafeBytes(of: UInt16(v).littleEndian) { out += $0 }; return } // BININT2
            if v >= Int64(Int32.min) && v <= Int64(Int32.max) {                                           // BININT
                out.append(0x4A); withUnsafeBytes(of: Int32(v).littleEndian) { out += $0 }; return
            }
            // LONG1: minimal little-endian two's complement.
            var bytes = withUnsafeBytes(of: v.littleEndian) { Array($0) }
            while bytes.count > 1 {
                let last = bytes[bytes.count - 1], prev = bytes[bytes.count - 2]
                if (last == 0 && prev & 0x80 == 0) || (last == 0xFF && prev & 0x80 != 0) { bytes.removeLast() } else { break }
            }
            out += [0x8A, UInt8(bytes.count)] + bytes
        }

        mutating func tuple(_ items: [Value]) throws {
            switch items.count {
            case 0: out.append(0x29)                                                    // EMPTY_TUPLE
            case 1...3:
                for x in items { try write(x) }
                out.append([0x85, 0x86, 0x87][items.count - 1])                         // TUPLE1/2/3
            default:
                out.append(0x28)                                                        // MARK
                for x in items { try write(x) }
                out.append(0x74)                                                        // TUPLE
            }
        }

        mutating func setItems(_ pairs: [(Value, Value)]) throws {
            var start = 0
            while start < pairs.count {
                let end = min(start + Self.batch, pairs.count)
                out.append(0x28)                                                        // MARK
                for (k, v) in pairs[start ..< end] { try write(k); try write(v) }
                out.append(0x75)                                                        // SETITEMS
                start = end
            }
        }

        mutating func write(_ value: Value) throws {
            switch value {
            case .none: out.append(0x4E)
            case .bool(let b): out.append(b ? 0x88 : 0x89)
            case .int(let v): int(v)
            case .float(let d):
                out.append(0x47)                                                        // BINFLOAT, big-endian
                withUnsafeBytes(of: d.bitPattern.bigEndian) { out += $0 }
            case .string(let s): string(s)
            case .tuple(let xs): try tuple(xs)
            case .list(let xs):
                out.append(0x5D)                                                        // EMPTY_LIST
                var start = 0
                while start < xs.count {
                    let end = min(start + Self.batch, xs.count)
                    out.append(0x28)
                    for x in xs[start ..< end] { try write(x) }
                    out.append(0x65)                                                    // APPENDS
                    start = end
                }
            case .dict(let pairs):
                out.append(0x7D)                                                        // EMPTY_DICT
                try setItems(pairs)
            case .orderedDict(let pairs):
                global("collections", "OrderedDict")
                out += [0x29, 0x52]                                                     // EMPTY_TUPLE, REDUCE
                try setItems(pairs.map { (.string($0.0), $0.1) })
            case let .tensor(storage, offset, shape, stride):
                guard let cls = storageClass(storage.dtype) else {
                    throw FormatError(.unsupported, "torch has no storage class for dtype \(storage.dtype.shortName)", at: "storage '\(storage.key)'")
                }
                guard shape.count == stride.count else { throw FormatError.malformed("tensor size and stride differ in length", at: "storage '\(storage.key)'") }
                global("torch._utils", "_rebuild_tensor_v2")
                out.append(0x28)                                                        // MARK (arguments)
                if !get("p:" + storage.key) {
                    out.append(0x28)                                                    // MARK (persistent id)
                    string("storage")
                    global("torch", cls)
                    string(storage.key)
                    string("cpu")
                    int(Int64(storage.numel))
                    out.append(0x74)                                                    // TUPLE
                    out.append(0x51)                                                    // BINPERSID
                    put("p:" + storage.key)
                }
                int(Int64(offset))
                try tuple(shape.map { .int(Int64($0)) })
                try tuple(stride.map { .int(Int64($0)) })
                out.append(0x89)                                                        // requires_grad False
                global("collections", "OrderedDict")                                    // backward hooks: OrderedDict()
                out += [0x29, 0x52]
                out.append(0x74)                                                        // TUPLE
                out.append(0x52)                                                        // REDUCE
            }
        }
    }
}
