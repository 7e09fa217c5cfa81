// The allowlist of pickle globals and what REDUCE / NEWOBJ / BUILD mean for
// each of them. Everything is interpreted as data; nothing is called.
// Anything not listed here is refused, naming the global (SECURITY.md 1-5, 7, 13).

import Foundation

enum PickleGlobals {
    static let storageClasses: [String: DType] = [
        "DoubleStorage": .f64, "FloatStorage": .f32, "HalfStorage": .f16, "BFloat16Storage": .bf16,
        "LongStorage": .i64, "IntStorage": .i32, "ShortStorage": .i16, "CharStorage": .i8,
        "ByteStorage": .u8, "BoolStorage": .bool,
    ]
    static let torchDTypes: [String: DType] = [
        "float64": .f64, "double": .f64, "float32": .f32, "float": .f32, "float16": .f16, "half": .f16,
        "bfloat16": .bf16, "int64": .i64, "long": .i64, "int32": .i32, "int": .i32, "int16": .i16,
        "short": .i16, "int8": .i8, "uint8": .u8, "bool": .bool, "uint16": .u16, "uint32": .u32, "uint64": .u64,
    ]

    static func resolve(module: String, name: String, at location: String) throws -> PickleGlobal {
        switch (module, name) {
        case ("collections", "OrderedDict"): return .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"): return .rebuildTensorV2
        case ("torch._utils", "_rebuild_tensor_v3"): return .rebuildTensorV3
        case ("torch._utils", "_rebuild_parameter"): return .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): return .rebuildParameterWithState
        case ("torch._tensor", "_rebuild_from_type_v2"): return .rebuildFromTypeV2
        case ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"): return .tensorClass("\(module).\(name)")
        case ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"): return .numpyReconstruct
        case ("numpy", "ndarray"): return .numpyNDArray
        case ("numpy", "dtype"): return .numpyDType
        case ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"): return .numpyScalar
        case ("_codecs", "encode"): return .codecsEncode
        default: break
        }
        if module == "torch", let d = storageClasses[name] { return .storageClass(d) }
        if module == "torch", let d = torchDTypes[name] { return .torchDType(d) }
        throw FormatError(.disallowed, "global '\(module).\(name)' is not allowed (sfnet only rebuilds tensors and plain containers)",
                          at: location, hint: "nothing in the file was executed")
    }

    // MARK: REDUCE

    static func reduce(_ f: PickleValue, _ args: PickleValue, vm: PickleVM) throws -> PickleValue {
        guard case .global(let g) = f else {
            throw FormatError(.disallowed, "REDUCE on a \(f.typeName) is not allowed", at: "pickle offset \(vm.base + vm.opStart)")
        }
        guard case .tuple(let a) = args else {
            throw vm.fail("REDUCE arguments for \(g.name) must be a tuple, found \(args.typeName)")
        }
        return try call(g, a, vm: vm)
    }

    static func call(_ g: PickleGlobal, _ a: [PickleValue], vm: PickleVM) throws -> PickleValue {
        let at = "pickle offset \(vm.base + vm.opStart)"
        func bad(_ what: String) -> FormatError { vm.fail("\(g.name): \(what)") }
        switch g {
        case .orderedDict:
            let d = vm.makeDict()
            d.isOrdered = true
            if let first = a.first {
                guard case .list(let pairs) = first else { throw bad("expected a list of pairs") }
                for p in pairs.items {
                    guard case .tuple(let kv) = p, kv.count == 2 else { throw bad("expected (key, value) pairs") }
                    d.set(kv[0], kv[1])
                }
            }
            return .dict(d)
        case .rebuildTensorV2, .rebuildTensorV3:
            let minArgs = g == .rebuildTensorV3 ? 7 : 6
            guard a.count >= minArgs, a.count <= minArgs + 1 else { throw bad("expected \(minArgs) arguments, found \(a.count)") }
            guard case .storage(let storage) = a[0] else { throw bad("first argument must be a storage, found \(a[0].typeName)") }
            guard let offset = a[1].intValue else { throw bad("storage offset must be an int") }
            let shape = try intTuple(a[2], "size", bad)
            let stride = try intTuple(a[3], "stride", bad)
            if g == .rebuildTensorV3 {
                guard case .global(.torchDType(let d)) = a[6], d == storage.dtype else {
                    throw bad("dtype argument does not match the storage's dtype \(storage.dtype.shortName)")
                }
            }
            return .tensor(try makeTensor(storage, offset, shape, stride, at: at))
        case .rebuildParameter, .rebuildParameterWithState:
            guard a.count >= 3, case .tensor(let t) = a[0] else { throw bad("expected (tensor, requires_grad, hooks)") }
            t.isParameter = true
            return .tensor(t)
        case .rebuildFromTypeV2:
            guard a.count == 4, case .global(let fn) = a[0], case .tuple(let inner) = a[2] else {
                throw bad("expected (function, type, args, state)")
            }
            guard case .global(.tensorClass) = a[1] else {
                throw FormatError(.disallowed, "_rebuild_from_type_v2 with type \(a[1].typeName) is not allowed", at: at)
            }
            switch fn {
            case .rebuildTensorV2, .rebuildTensorV3, .rebuildParameter: return try call(fn, inner, vm: vm)
            default: throw FormatError(.disallowed, "_rebuild_from_type_v2 calling \(fn.name) is not allowed", at: at)
            }
        case .numpyReconstruct:
            guard a.count == 3, case .global(.numpyNDArray) = a[0] else { throw bad("only numpy.ndarray can be reconstructed") }
            return .ndarray(NDArrayRef())
        case .numpyDType:
            guard let code = a.first?.stringValue else { throw bad("expected a dtype code string") }
            return .dtype(try makeDType(code, at: at))
        case .numpyScalar:
            guard a.count == 2, case .dtype(let dt) = a[0] else { throw bad("expected (dtype, bytes)") }
            guard let raw = bytesValue(a[1]) else { throw bad("expected the scalar's bytes") }
            let (dtype, big) = try NumpyDTypes.parse(dt.code, byteOrder: dt.byteOrder, at: at)
            guard raw.count == dtype.size else { throw bad("scalar has \(raw.count) bytes, dtype \(dt.code) needs \(dtype.size)") }
            let le = big ? Bytes.copying(raw.array.reversed()) : raw
            let v = DTypeCast.loadFloat(le.raw, index: 0, dtype: dtype)
            if dtype.isFloatingPoint { return .float(Double(v)) }
            if dtype == .i64 { return .int(Int64(littleEndian: le.raw.loadUnaligned(as: Int64.self))) }
            return .int(Int64(v))
        case .codecsEncode:
            guard a.count == 2, let s = a[0].stringValue, let enc = a[1].stringValue else { throw bad("expected (str, encoding)") }
            guard ["latin1", "latin-1", "iso-8859-1"].contains(enc.lowercased()) else { throw bad("encoding '\(enc)' is not allowed (latin1 only)") }
            var out: [UInt8] = []
            out.reserveCapacity(s.unicodeScalars.count)
            for u in s.unicodeScalars {
                guard u.value <= 0xFF else { throw bad("character U+\(String(u.value, radix: 16)) is not latin-1") }
                out.append(UInt8(u.value))
            }
            return .bytes(Bytes.copying(out))
        case .tensorClass, .storageClass, .torchDType, .numpyNDArray:
            throw FormatError(.disallowed, "REDUCE on \(g.name) is not allowed", at: at)
        }
    }

    static func intTuple(_ v: PickleValue, _ what: String, _ bad: (String) -> FormatError) throws -> [Int] {
        guard case .tuple(let xs) = v else { throw bad("\(what) must be a tuple of ints, found \(v.typeName)") }
        return try xs.map { x in
            guard let i = x.intValue else { throw bad("\(what) must be a tuple of ints, found \(x.typeName) inside") }
            return i
        }
    }

    static func bytesValue(_ v: PickleValue) -> Bytes? {
        switch v {
        case .bytes(let b), .py2String(let b): return b
        default: return nil
        }
    }

    /// A view on a storage after checking that every element it can address lies inside it.
    static func makeTensor(_ storage: StorageRef, _ offset: Int, _ shape: [Int], _ stride: [Int], at: String) throws -> TensorRef {
        func outside(_ why: String) -> FormatError {
            FormatError.malformed("tensor view (offset \(offset), size \(Tensor.shapeString(shape)), stride \(Tensor.shapeString(stride))) reaches outside its storage '\(storage.key)' of \(storage.numel) elements: \(why)", at: at)
        }
        guard shape.count == stride.count else { throw outside("size and stride have different lengths") }
        guard shape.count <= 64 else { throw outside("more than 64 dimensions") }
        guard offset >= 0 else { throw outside("negative offset") }
        if shape.contains(where: { $0 < 0 }) { throw outside("negative size") }
        if stride.contains(where: { $0 < 0 }) { throw outside("negative stride") }
        let numel: Int
        do { numel = try Checked.product(shape, "tensor size") } catch { throw outside("element count overflows") }
        if numel > 0 {
            var last = offset
            for (n, s) in zip(shape, stride) {
                let (m, o1) = (n - 1).multipliedReportingOverflow(by: s)
                let (r, o2) = last.addingReportingOverflow(m)
                if o1 || o2 { throw outside("stride arithmetic overflows") }
                last = r
            }
            if last >= storage.numel { throw outside("last element \(last)") }
        } else if offset > storage.numel {
            throw outside("offset past the end")
        }
        return TensorRef(storage: storage, offset: offset, shape: shape, stride: stride)
    }

    static func makeDType(_ code: String, at: String) throws -> NumpyDType {
        var c = code
        var order: Character = "<"
        if let f = c.first, "<>|=".contains(f) { order = f; c.removeFirst() }
        if c.hasPrefix("O") || c == "object" {
            throw FormatError(.disallowed, "numpy object arrays (dtype '\(code)') are not allowed: they hold pickled Python objects", at: at)
        }
        let d = NumpyDType(code: c)
        d.byteOrder = order == "=" ? "<" : order
        return d
    }

    // MARK: NEWOBJ and BUILD

    static func newObject(_ cls: PickleValue, _ args: PickleValue, vm: PickleVM) throws -> PickleValue {
        if case .global(.orderedDict) = cls, case .tuple(let a) = args, a.isEmpty {
            let d = vm.makeDict(); d.isOrdered = true
            return .dict(d)
        }
        throw FormatError(.disallowed, "NEWOBJ on \(cls.typeName) is not allowed", at: "pickle offset \(vm.base + vm.opStart)")
    }

    static func build(_ target: PickleValue, state: PickleValue, vm: PickleVM) throws {
        let at = "pickle offset \(vm.base + vm.opStart)"
        switch target {
        case .dict(let d) where d.isOrdered:
            // An OrderedDict's instance attributes (a state_dict's `_metadata`): kept as data.
            d.attributes = state
        case .dtype(let dt):
            guard case .tuple(let s) = state, s.count >= 2, let order = s[1].stringValue, let ch = order.first else {
                throw vm.fail("BUILD state of numpy.dtype must be a tuple (version, byteorder, ...)")
            }
            if s.count >= 4, case .tuple = s[3] {
                throw FormatError(.disallowed, "structured numpy dtypes are not supported", at: at)
            }
            dt.byteOrder = ch == "=" ? "<" : ch
        case .ndarray(let arr):
            guard case .tuple(let s) = state, s.count == 5 else { throw vm.fail("BUILD state of numpy.ndarray must be (version, shape, dtype, fortran, data)") }
            guard case .tuple(let dims) = s[1] else { throw vm.fail("ndarray shape must be a tuple") }
            let shape = try dims.map { v -> Int in
                guard let i = v.intValue, i >= 0 else { throw vm.fail("ndarray shape must hold non-negative ints") }
                return i
            }
            guard case .dtype(let dt) = s[2] else { throw vm.fail("ndarray dtype must be a numpy.dtype") }
            if case .list = s[4] {
                throw FormatError(.disallowed, "numpy object arrays are not allowed: array data is a list of Python objects", at: at)
            }
            guard let raw = bytesValue(s[4]) else { throw vm.fail("ndarray data must be bytes, found \(s[4].typeName)") }
            let (dtype, _) = try NumpyDTypes.parse(dt.code, byteOrder: dt.byteOrder, at: at)
            let need = try Checked.product(shape, elementSize: dtype.size, "ndarray bytes")
            guard raw.count == need else {
                throw vm.fail("ndarray data has \(raw.count) bytes but shape \(Tensor.shapeString(shape)) x \(dtype.shortName) needs \(need)")
            }
            arr.shape = shape
            arr.dtype = dt
            arr.fortranOrder = s[3].intValue == 1
            arr.data = raw
        default:
            throw FormatError(.disallowed, "BUILD on \(target.typeName) is not allowed", at: at)
        }
    }
}

/// numpy dtype codes (`f4`, `<f8`, `|b1`, `u1`) to sfnet dtypes.
public enum NumpyDTypes {
    public static func parse(_ code: String, byteOrder: Character, at: String) throws -> (DType, bigEndian: Bool) {
        let map: [String: DType] = [
            "f8": .f64, "f4": .f32, "f2": .f16, "i8": .i64, "i4": .i32, "i2": .i16, "i1": .i8, "u1": .u8, "b1": .bool,
            "u2": .u16, "u4": .u32, "u8": .u64,
            "float64": .f64, "float32": .f32, "float16": .f16, "int64": .i64, "int32": .i32, "int16": .i16,
            "int8": .i8, "uint8": .u8, "bool": .bool,
        ]
        guard let d = map[code] else {
            throw FormatError(.unsupported, "numpy dtype '\(code)' is not supported", at: at)
        }
        return (d, byteOrder == ">" && d.size > 1)
    }
}
