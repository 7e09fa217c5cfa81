// The values the safe pickle VM builds. Only data: no object in here can run code.
// Mutable containers are classes so that memo references alias as in Python.

import Foundation

public final class PickleList: @unchecked Sendable {
    public enum Kind: Sendable { case list, set }
    public let kind: Kind
    public var items: [PickleValue] = []
    init(kind: Kind) { self.kind = kind }
}

public final class PickleDict: @unchecked Sendable {
    /// Entries in insertion order; a repeated key replaces the earlier value in place.
    public var entries: [(key: PickleValue, value: PickleValue)] = []
    /// Attribute state set by BUILD (e.g. an OrderedDict's `_metadata`); kept, never interpreted.
    public var attributes: PickleValue?
    public var isOrdered = false
    /// Position of each string/int key in `entries`, so SETITEMS stays linear.
    private var index: [String: Int] = [:]

    func set(_ key: PickleValue, _ value: PickleValue) {
        if let k = key.hashKey {
            if let i = index[k] { entries[i].value = value; return }
            index[k] = entries.count
        }
        entries.append((key, value))
    }

    func removeAll() {
        entries = []
        index = [:]
        attributes = nil
    }

    public func value(forKey key: String) -> PickleValue? {
        index["s:" + key].map { entries[$0].value }
    }
}

/// A storage named by a persistent id: `('storage', torch.FloatStorage, key, location, numel)`.
public final class StorageRef: @unchecked Sendable {
    public let key: String
    public let dtype: DType
    public let numel: Int
    public let location: String
    /// Filled by the container reader once the bytes are located (zip entry or legacy record).
    public var data: Bytes?

    init(key: String, dtype: DType, numel: Int, location: String) {
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.location = location
    }
}

/// A tensor view on a storage, as `_rebuild_tensor_v2` describes it. Bounds are checked on creation.
public final class TensorRef: @unchecked Sendable {
    public let storage: StorageRef
    public let offset: Int
    public let shape: [Int]
    public let stride: [Int]
    public var isParameter = false

    init(storage: StorageRef, offset: Int, shape: [Int], stride: [Int]) {
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.stride = stride
    }

    public var isContiguous: Bool {
        var expected = 1
        for i in stride.indices.reversed() {
            if shape[i] != 1 && stride[i] != expected { return false }
            expected *= shape[i]
        }
        return true
    }
}

/// A numpy array rebuilt through `_reconstruct` + BUILD.
public final class NDArrayRef: @unchecked Sendable {
    public var shape: [Int] = []
    public var dtype: NumpyDType?
    public var fortranOrder = false
    public var data: Bytes?
}

/// A numpy dtype (`numpy.dtype('f4', False, True)` + BUILD state with the byte order).
public final class NumpyDType: @unchecked Sendable {
    public let code: String
    public var byteOrder: Character = "<"
    init(code: String) { self.code = code }
}

/// Allowlisted globals: the only names a pickle may refer to.
public enum PickleGlobal: Equatable, Sendable {
    case orderedDict
    case rebuildTensorV2, rebuildTensorV3, rebuildParameter, rebuildParameterWithState, rebuildFromTypeV2
    case tensorClass(String)        // torch.Tensor, torch.nn.parameter.Parameter (type markers only)
    case storageClass(DType)        // torch.FloatStorage ...
    case torchDType(DType)          // torch.float32 ... (for _rebuild_tensor_v3)
    case numpyReconstruct, numpyNDArray, numpyDType, numpyScalar
    case codecsEncode

    public var name: String {
        switch self {
        case .orderedDict: return "collections.OrderedDict"
        case .rebuildTensorV2: return "torch._utils._rebuild_tensor_v2"
        case .rebuildTensorV3: return "torch._utils._rebuild_tensor_v3"
        case .rebuildParameter: return "torch._utils._rebuild_parameter"
        case .rebuildParameterWithState: return "torch._utils._rebuild_parameter_with_state"
        case .rebuildFromTypeV2: return "torch._tensor._rebuild_from_type_v2"
        case .tensorClass(let n): return n
        case .storageClass(let d): return "torch storage class (\(d.shortName))"
        case .torchDType(let d): return "torch dtype \(d.shortName)"
        case .numpyReconstruct: return "numpy.core.multiarray._reconstruct"
        case .numpyNDArray: return "numpy.ndarray"
        case .numpyDType: return "numpy.dtype"
        case .numpyScalar: return "numpy.core.multiarray.scalar"
        case .codecsEncode: return "_codecs.encode"
        }
    }
}

public indirect enum PickleValue: @unchecked Sendable {
    case none
    case bool(Bool)
    case int(Int64)
    /// An integer beyond 64 bits, little-endian two's complement bytes.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    /// A Python 2 `str` (SHORT_BINSTRING / BINSTRING / STRING): raw bytes, read as latin-1 where text is needed.
    case py2String(Bytes)
    case bytes(Bytes)
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    case global(PickleGlobal)
    case storage(StorageRef)
    case tensor(TensorRef)
    case ndarray(NDArrayRef)
    case dtype(NumpyDType)

    public var typeName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string, .py2String: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list(let l): return l.kind == .set ? "set" : "list"
        case .dict(let d): return d.isOrdered ? "OrderedDict" : "dict"
        case .global(let g): return g.name
        case .storage: return "storage"
        case .tensor: return "tensor"
        case .ndarray: return "ndarray"
        case .dtype: return "numpy.dtype"
        }
    }

    public var stringValue: String? {
        switch self {
        case .string(let s): return s
        case .py2String(let b): return String(b.raw.map { Character(Unicode.Scalar($0)) })
        default: return nil
        }
    }

    public var intValue: Int? {
        switch self {
        case .int(let v): return Int(exactly: v)
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// A key usable for dict de-duplication (strings and ints only; others never collide).
    var hashKey: String? {
        switch self {
        case .string, .py2String: return "s:" + stringValue!
        case .int(let v): return "i:\(v)"
        case .bool(let b): return "i:\(b ? 1 : 0)"
        case .none: return "n"
        default: return nil
        }
    }
}
