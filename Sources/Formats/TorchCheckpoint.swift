// PyTorch checkpoints: the zip format (torch >= 1.6) and the legacy stream
// format (torch < 1.6, or _use_new_zipfile_serialization=False), read through
// the safe pickle VM. Mirrors torch/serialization.py's _load and _legacy_load.

import Foundation

public enum TorchCheckpoint {
    /// The legacy format's magic number 0x1950a86a20f9469cfc6c as pickle LONG1 bytes (little-endian).
    static let legacyMagic: [UInt8] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]

    /// True when the bytes start like a legacy file: PROTO 2, LONG1 of 10 bytes.
    public static func looksLikeLegacy(_ b: Bytes) -> Bool {
        b.count > 4 && b.raw[0] == 0x80 && b.raw[2] == 0x8a && b.raw[3] == 0x0a
    }

    // MARK: zip

    /// The archive prefix (`archive` for files saved by torch, but any name is valid).
    static func prefix(of zip: ZipArchive) throws -> String {
        let candidates = zip.entries.map(\.name).filter { $0.hasSuffix("/data.pkl") && $0.split(separator: "/").count == 2 }
        guard let first = candidates.first else {
            throw FormatError.malformed("zip archive has no '<prefix>/data.pkl' entry: not a PyTorch checkpoint")
        }
        if candidates.count > 1 { throw FormatError.malformed("zip archive has several data.pkl entries (\(candidates.prefix(3).joined(separator: ", ")))") }
        return String(first.dropLast("/data.pkl".count))
    }

    public static func isTorchScript(_ zip: ZipArchive) -> Bool {
        zip.entries.contains { e in
            let parts = e.name.split(separator: "/")
            return parts.count >= 2 && (parts[1] == "code" || parts[1] == "constants.pkl" || parts[1] == "bytecode.pkl")
        }
    }

    /// With `deferIntegrity`, stored storages' CRCs are left in `pendingChecks` for the caller
    /// (copied storages — deflated or byte-swapped — are always checked here).
    public static func readZip(_ zip: ZipArchive, limits: PickleLimits = PickleLimits(), deferIntegrity: Bool = false) throws -> Checkpoint {
        if isTorchScript(zip) {
            throw FormatError(.unsupported, "TorchScript archives are not supported: they contain code, and sfnet never runs code from a file",
                              hint: "save the model's state_dict with torch.save(model.state_dict(), path) instead")
        }
        let prefix = try prefix(of: zip)
        var bigEndian = false
        if let bo = zip.entry(named: prefix + "/byteorder") {
            let text = try zip.read(bo).text.trimmingCharacters(in: .whitespacesAndNewlines)
            switch text {
            case "little": bigEndian = false
            case "big": bigEndian = true
            default: throw FormatError.malformed("byteorder is '\(text.prefix(20))', expected 'little' or 'big'", at: "entry '\(prefix)/byteorder'")
            }
        }
        guard let pklEntry = zip.entry(named: prefix + "/data.pkl") else { throw FormatError.malformed("missing data.pkl") }
        let pkl = try zip.read(pklEntry)

        var storages: [String: StorageRef] = [:]
        let vm = PickleVM(pkl, limits: limits) { pid in
            guard case .tuple(let t) = pid, t.count == 5, t[0].stringValue == "storage",
                  case .global(.storageClass(let dtype)) = t[1], let key = t[2].stringValue,
                  let location = t[3].stringValue, let numel = t[4].intValue, numel >= 0 else {
                throw FormatError.malformed("malformed persistent id: expected ('storage', <storage type>, key, location, numel)", at: "entry '\(prefix)/data.pkl'")
            }
            if let s = storages[key] {
                guard s.dtype == dtype, s.numel == numel else {
                    throw FormatError.malformed("persistent id for storage '\(key)' disagrees with an earlier one (\(s.dtype.shortName) x \(s.numel) vs \(dtype.shortName) x \(numel))")
                }
                return .storage(s)
            }
            try ZipArchive.checkName(key, at: "persistent id")
            let s = StorageRef(key: key, dtype: dtype, numel: numel, location: location)
            storages[key] = s
            return .storage(s)
        }
        defer { vm.dispose() }
        let root: PickleValue
        do { root = try vm.load(); try vm.checkStructure(root) } catch let e as FormatError {
            var e = e
            if e.location?.hasPrefix("pickle") == true { e.location = "entry '\(prefix)/data.pkl' " + e.location! }
            throw e
        }

        let pending = PendingChecks()
        for (key, s) in storages.sorted(by: { $0.key < $1.key }) {
            let name = prefix + "/data/" + key
            guard let entry = zip.entry(named: name) else { throw FormatError.malformed("storage '\(key)' has no entry '\(name)'") }
            let declared = try Checked.mul(s.numel, s.dtype.size, "storage size")
            guard entry.uncompressedSize == declared else {
                throw FormatError.malformed("storage '\(key)' declares \(s.numel) elements x \(s.dtype.size) bytes = \(declared) bytes but its entry holds \(entry.uncompressedSize)", at: "entry '\(name)'")
            }
            let deferThis = deferIntegrity && entry.method == 0 && !(bigEndian && s.dtype.size > 1)
            var data = try zip.read(entry, verifyCRC: !deferThis)
            if deferThis {
                pending.add(data) { try zip.checkCRC(data, entry); data.releasePages() }
            } else {
                data.releasePages()
            }
            if bigEndian { data = byteSwapped(data, elementSize: s.dtype.size) }
            s.data = data
        }
        var ckpt = try containerize(root, format: .torchZip)
        if pending.count > 0 { ckpt.pendingChecks = pending }
        ckpt.metadata.insert(contentsOf: [("archive prefix", prefix), ("byteorder", bigEndian ? "big" : "little"),
                                          ("pickle protocol", String(vm.proto))], at: 0)
        if let v = zip.entry(named: prefix + "/version") {
            ckpt.metadata.append(("version", String(try zip.read(v).text.prefix(16)).trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        if bigEndian { for n in ckpt.tensors.names where ckpt.tensors[n]!.dtype.size > 1 { ckpt.notes[n, default: ""] += "byte-swapped from big-endian" } }
        return ckpt
    }

    // MARK: legacy

    public static func readLegacy(_ bytes: Bytes, limits: PickleLimits = PickleLimits()) throws -> Checkpoint {
        var pos = 0
        func next(_ persistent: PickleVM.PersistentLoad? = nil) throws -> (PickleValue, PickleVM) {
            let vm = PickleVM(bytes, offset: pos, limits: limits, persistentLoad: persistent)
            let v = try vm.load()
            pos = vm.position
            return (v, vm)
        }
        let (magic, _) = try next()
        guard case .bigInt(let m) = magic, Array(m.prefix(10)) == legacyMagic, m.dropFirst(10).allSatisfy({ $0 == 0 }) else {
            throw FormatError.malformed("magic number is not PyTorch's legacy 0x1950a86a20f9469cfc6c", at: "offset 0")
        }
        let (proto, _) = try next()
        guard proto.intValue == 1001 else { throw FormatError.malformed("legacy protocol version is \(proto.intValue.map(String.init) ?? proto.typeName), expected 1001") }
        let (sysInfo, sysVM) = try next()
        var bigEndian = false
        if case .dict(let d) = sysInfo, case .bool(let little)? = d.value(forKey: "little_endian") { bigEndian = !little }
        sysVM.dispose()

        var storages: [String: StorageRef] = [:]
        let (root, vm) = try next { pid in
            guard case .tuple(let t) = pid, t.count == 6, t[0].stringValue == "storage",
                  case .global(.storageClass(let dtype)) = t[1], let key = t[2].stringValue,
                  let location = t[3].stringValue, let numel = t[4].intValue, numel >= 0 else {
                throw FormatError.malformed("malformed persistent id: expected ('storage', <storage type>, key, location, numel, view)")
            }
            if case .none = t[5] {} else { throw FormatError(.unsupported, "legacy storage views (torch < 0.4) are not supported") }
            if let s = storages[key] {
                guard s.dtype == dtype, s.numel == numel else { throw FormatError.malformed("persistent id for storage '\(key)' disagrees with an earlier one") }
                return .storage(s)
            }
            let s = StorageRef(key: key, dtype: dtype, numel: numel, location: location)
            storages[key] = s
            return .storage(s)
        }
        defer { vm.dispose() }
        try vm.checkStructure(root)
        let (keysValue, keysVM) = try next()
        defer { keysVM.dispose() }
        guard case .list(let keyList) = keysValue else { throw FormatError.malformed("legacy storage key list is a \(keysValue.typeName), expected a list") }
        for k in keyList.items {
            guard let key = k.stringValue, let s = storages[key] else {
                throw FormatError.malformed("legacy storage key list names '\(k.stringValue ?? k.typeName)', which the pickle never used")
            }
            guard pos + 8 <= bytes.count else { throw FormatError.malformed("truncated: storage '\(key)' record header lies beyond the end of the file", at: "offset \(pos)") }
            var n = UInt64(littleEndian: bytes.raw.loadUnaligned(fromByteOffset: pos, as: UInt64.self))
            if bigEndian { n = n.byteSwapped }
            guard n == UInt64(s.numel) else {
                throw FormatError.malformed("storage '\(key)' declares \(s.numel) elements but its record holds \(n)", at: "offset \(pos)")
            }
            pos += 8
            let size = try Checked.mul(s.numel, s.dtype.size, "storage size")
            guard size <= bytes.count - pos else { throw FormatError.malformed("truncated: storage '\(key)' needs \(size) bytes beyond the end of the file", at: "offset \(pos)") }
            var data = bytes.slice(pos, size)
            data.releasePages()
            if bigEndian { data = byteSwapped(data, elementSize: s.dtype.size) }
            s.data = data
            pos += size
        }
        if let missing = storages.values.first(where: { $0.data == nil }) {
            throw FormatError.malformed("storage '\(missing.key)' has no record in the file")
        }
        var ckpt = try containerize(root, format: .torchLegacy)
        ckpt.metadata.insert(("byteorder", bigEndian ? "big" : "little"), at: 0)
        return ckpt
    }

    static func byteSwapped(_ b: Bytes, elementSize: Int) -> Bytes {
        guard elementSize > 1 else { return b }
        let out = OwnedBuffer(copying: b.raw)
        let p = out.pointer.assumingMemoryBound(to: UInt8.self)
        var i = 0
        while i + elementSize <= out.count {
            var lo = i, hi = i + elementSize - 1
            while lo < hi { let t = p[lo]; p[lo] = p[hi]; p[hi] = t; lo += 1; hi -= 1 }
            i += elementSize
        }
        return out.bytes
    }

    // MARK: containers

    /// Finds the tensors in a checkpoint's root object and summarises everything else.
    static func containerize(_ root: PickleValue, format: SourceFormat) throws -> Checkpoint {
        var ckpt = Checkpoint(format: format)
        guard case .dict(let top) = root else {
            if let t = try tensorValue(root) {
                ckpt.tensors.set("tensor", t.0)
                return ckpt
            }
            throw FormatError.malformed("the checkpoint holds a \(root.typeName), expected a dict of tensors")
        }
        var source = top
        for key in ["model_state", "state_dict", "model", "module", "blobs"] {
            if case .dict(let inner)? = top.value(forKey: key), inner.entries.contains(where: { isTensorLike($0.value) }) {
                ckpt.containerKey = key
                source = inner
                for (k, v) in top.entries where k.stringValue != key {
                    ckpt.otherEntries.append((k.stringValue ?? "\(k.typeName) key", summarize(v)))
                }
                break
            }
        }
        var storageNames: [ObjectIdentifier: [String]] = [:]
        var storageOrder: [ObjectIdentifier] = []
        for (k, v) in source.entries {
            guard let name = k.stringValue else {
                ckpt.otherEntries.append(("\(k.typeName) key", summarize(v)))
                continue
            }
            if let (t, info) = try tensorValue(v) {
                if ckpt.tensors[name] != nil { throw FormatError.malformed("duplicate tensor name '\(name)'") }
                ckpt.tensors.set(name, t)
                if let info { ckpt.notes[name] = info }
                if case .tensor(let ref) = v {
                    let id = ObjectIdentifier(ref.storage)
                    if storageNames[id] == nil { storageOrder.append(id) }
                    storageNames[id, default: []].append(name)
                }
            } else {
                ckpt.otherEntries.append((name, summarize(v)))
            }
        }
        ckpt.aliases = storageOrder.compactMap { storageNames[$0]!.count > 1 ? storageNames[$0] : nil }
        // DataParallel prefix.
        let names = ckpt.tensors.names
        if !names.isEmpty, names.allSatisfy({ $0.hasPrefix("module.") }) {
            var stripped = TensorMap()
            for (n, t) in ckpt.tensors.ordered { stripped.set(String(n.dropFirst(7)), t) }
            ckpt.tensors = stripped
            ckpt.strippedPrefix = "module."
            ckpt.notes = Dictionary(uniqueKeysWithValues: ckpt.notes.map { (String($0.key.dropFirst(7)), $0.value) })
            ckpt.aliases = ckpt.aliases.map { $0.map { String($0.dropFirst(7)) } }
        }
        return ckpt
    }

    static func isTensorLike(_ v: PickleValue) -> Bool {
        switch v {
        case .tensor, .ndarray: return true
        default: return false
        }
    }

    /// A contiguous tensor for a tensor or ndarray value, with a note on what was done.
    static func tensorValue(_ v: PickleValue) throws -> (Tensor, String?)? {
        switch v {
        case .tensor(let ref):
            guard let data = ref.storage.data else { throw FormatError.malformed("storage '\(ref.storage.key)' has no data") }
            let size = ref.storage.dtype.size
            if ref.isContiguous {
                let n = ref.shape.reduce(1, *)
                return (Tensor(dtype: ref.storage.dtype, shape: ref.shape, data: data.slice(ref.offset * size, n * size)), nil)
            }
            let t = StridedGather.gather(data, elementSize: size, offset: ref.offset, shape: ref.shape, stride: ref.stride)
            return (Tensor(dtype: ref.storage.dtype, shape: ref.shape, data: t),
                    "gathered from strides \(Tensor.shapeString(ref.stride)) at offset \(ref.offset)")
        case .ndarray(let arr):
            guard let dt = arr.dtype, let data = arr.data else { throw FormatError.malformed("numpy array without BUILD state") }
            let (dtype, big) = try NumpyDTypes.parse(dt.code, byteOrder: dt.byteOrder, at: "ndarray")
            var bytes = big ? byteSwapped(data, elementSize: dtype.size) : data
            var note: String? = big ? "byte-swapped from big-endian" : nil
            if arr.fortranOrder && arr.shape.count > 1 {
                bytes = StridedGather.gather(bytes, elementSize: dtype.size, offset: 0, shape: arr.shape,
                                             stride: StridedGather.fortranStrides(arr.shape))
                note = (note.map { $0 + "; " } ?? "") + "transposed from Fortran order"
            }
            return (Tensor(dtype: dtype, shape: arr.shape, data: bytes), note)
        default:
            return nil
        }
    }

    /// A one-line description of a non-tensor container entry, for `inspect`.
    static func summarize(_ v: PickleValue) -> String {
        switch v {
        case .none: return "None"
        case .bool(let b): return "bool \(b ? "True" : "False")"
        case .int(let i): return "int \(i)"
        case .bigInt: return "int (big)"
        case .float(let d): return "float \(d)"
        case .string, .py2String:
            let s = v.stringValue ?? ""
            // isNewline, not "\n": a config saved on Windows has "\r\n", a single Character that "\n" never matches.
            let firstLine = s.split(maxSplits: 1, whereSeparator: \.isNewline).first.map(String.init) ?? ""
            return "str (\(s.count) chars): \"\(firstLine.prefix(60))\(firstLine.count > 60 || s.contains(where: \.isNewline) ? "..." : "")\""
        case .bytes(let b): return "bytes (\(b.count))"
        case .tensor(let t): return "tensor \(t.storage.dtype.shortName) \(Tensor.shapeString(t.shape))"
        case .ndarray(let a): return "ndarray \(Tensor.shapeString(a.shape))"
        default:
            let tensors = countTensors(v)
            let what: String
            switch v {
            case .dict(let d): what = "\(d.isOrdered ? "OrderedDict" : "dict") with \(d.entries.count) entries"
            case .list(let l): what = "\(l.kind == .set ? "set" : "list") of \(l.items.count)"
            case .tuple(let t): what = "tuple of \(t.count)"
            default: what = v.typeName
            }
            return tensors > 0 ? "\(what) (\(tensors) tensors inside)" : what
        }
    }

    /// Counts the tensors below `v`, iteratively and with a budget (cycles and bombs stop early).
    static func countTensors(_ v: PickleValue) -> Int {
        var work = [v]
        var seen = Set<ObjectIdentifier>()
        var visited = 0, tensors = 0
        while let x = work.popLast(), visited < 1_000_000 {
            visited += 1
            switch x {
            case .tensor, .ndarray: tensors += 1
            case .tuple(let xs): work.append(contentsOf: xs)
            case .list(let l): if seen.insert(ObjectIdentifier(l)).inserted { work.append(contentsOf: l.items) }
            case .dict(let d): if seen.insert(ObjectIdentifier(d)).inserted { for (k, v) in d.entries { work.append(k); work.append(v) } }
            default: break
            }
        }
        return tensors
    }
}

/// Copies an arbitrarily strided view into contiguous row-major memory.
public enum StridedGather {
    public static func fortranStrides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        for i in 1 ..< max(shape.count, 1) { s[i] = s[i - 1] * shape[i - 1] }
        return s
    }

    /// `src` holds whole elements; every addressed element was bounds-checked by the caller.
    public static func gather(_ src: Bytes, elementSize size: Int, offset: Int, shape: [Int], stride: [Int]) -> Bytes {
        let n = shape.reduce(1, *)
        let out = OwnedBuffer(count: n * size)
        guard n > 0, let sbase = src.raw.baseAddress else { return out.bytes }
        let dims = shape.count
        var index = [Int](repeating: 0, count: dims)
        var srcElem = offset
        let dst = out.pointer
        for i in 0 ..< n {
            (dst + i * size).copyMemory(from: sbase + srcElem * size, byteCount: size)
            // Advance the multi-index (last dimension fastest).
            // srcElem only ever takes addressed values (all checked): a size-1 dimension may carry any
            // stride (PyTorch allows it), so stepping past the last index first could overflow.
            var d = dims - 1
            while d >= 0 {
                if index[d] + 1 < shape[d] {
                    index[d] += 1
                    srcElem += stride[d]
                    break
                }
                srcElem -= stride[d] * (shape[d] - 1)
                index[d] = 0
                d -= 1
            }
        }
        return out.bytes
    }
}
