// Format detection by content (never by extension) and the one entry point
// that opens any supported file.

import Foundation

public enum CheckpointReader {
    /// What the first bytes say the file is; nil when unrecognised.
    public static func detect(_ b: Bytes) -> SourceFormat? {
        detect(b, zip: ZipArchive.looksLikeZip(b) ? try? ZipArchive(b) : nil)
    }

    /// `detect` with the zip directory already parsed (nil when it is not a zip or did not parse).
    static func detect(_ b: Bytes, zip: ZipArchive?) -> SourceFormat? {
        if Safetensors.looksLikeSafetensors(b) { return .safetensors }
        if looksLikeHDF5(b) { return .hdf5 }
        if Npy.looksLikeNpy(b) { return .npy }
        if ZipArchive.looksLikeZip(b) {
            guard let zip else { return .torchZip }
            if TorchCheckpoint.isTorchScript(zip) { return .torchScript }
            if zip.entries.contains(where: { $0.name.hasSuffix("/data.pkl") }) { return .torchZip }
            if !zip.entries.isEmpty && zip.entries.allSatisfy({ $0.name.hasSuffix(".npy") }) { return .npz }
            return .torchZip
        }
        if TorchCheckpoint.looksLikeLegacy(b) { return .torchLegacy }
        if looksLikeOnnx(b) { return .onnx }
        if b.count >= 2, b.raw[0] == 0x80 { return .pickle }
        if b.count >= 1, [UInt8(ascii: "("), UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: "c")].contains(b.raw[0]) { return .pickle }
        // No magic matched: a small header length in the first 8 bytes means a (possibly broken) safetensors file.
        if b.count < 8 || isLikelySafetensorsLength(b) { return .safetensors }
        return nil
    }

    /// An ONNX ModelProto: protobuf fields in field order, starting with `ir_version` (field 1,
    /// varint 1...64), then only ModelProto's own field numbers with consistent wire types and
    /// lengths inside the file, for up to 6 fields. Cheap; the importer does the real parse.
    public static func looksLikeOnnx(_ b: Bytes) -> Bool {
        let raw = b.raw
        guard raw.count >= 4, raw[0] == 0x08 else { return false }
        var i = 0
        func varint() -> UInt64? {
            var v: UInt64 = 0
            for shift in stride(from: 0, to: 64, by: 7) {
                guard i < raw.count else { return nil }
                let byte = raw[i]; i += 1
                v |= UInt64(byte & 0x7f) << UInt64(shift)
                if byte & 0x80 == 0 { return v }
            }
            return nil
        }
        // ModelProto field numbers: varint fields and length-delimited fields.
        let varints: Set<UInt64> = [1, 5]
        let lengths: Set<UInt64> = [2, 3, 4, 6, 7, 8, 14, 20, 25, 26]
        var fields = 0
        while i < raw.count, fields < 6 {
            guard let key = varint() else { return false }
            let (field, wire) = (key >> 3, key & 7)
            if fields == 0 {
                guard field == 1, wire == 0, let v = varint(), (1...64).contains(v) else { return false }
            } else if varints.contains(field), wire == 0 {
                guard varint() != nil else { return false }
            } else if lengths.contains(field), wire == 2 {
                guard let n = varint(), n <= UInt64(raw.count - i) else { return false }
                i += Int(n)
            } else {
                return false
            }
            fields += 1
        }
        return fields >= 2
    }

    /// The first 8 bytes read as a little-endian length below 2^40 (its top three bytes zero).
    static func isLikelySafetensorsLength(_ b: Bytes) -> Bool {
        b.count >= 8 && b.raw[5] == 0 && b.raw[6] == 0 && b.raw[7] == 0 && !ZipArchive.looksLikeZip(b)
    }

    /// The HDF5 signature `\x89HDF\r\n\x1a\n` at offset 0 (Keras writes no user block).
    public static func looksLikeHDF5(_ b: Bytes) -> Bool {
        b.count >= 8 && b.raw.prefix(8).elementsEqual([0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A])
    }

    /// A hint for files sfnet recognises but cannot read (yet).
    static func unsupportedHint(_ b: Bytes) -> String? {
        if b.count > 262, b.raw[257 ..< 262].elementsEqual(Array("ustar".utf8)) {
            return "this is a tar archive: the pre-0.4 tar format of PyTorch checkpoints is not supported; re-save it with a current torch"
        }
        return nil
    }

    /// The format of the file at `path` by content (nil: not recognised, or unreadable).
    public static func detect(path: String) -> SourceFormat? {
        guard let file = try? MappedFile(path: path) else { return nil }
        return detect(file.bytes)
    }

    /// Reads `path` as `format` (detected from content when nil). With `deferIntegrity`,
    /// checks that can run while the bytes are consumed are left in `pendingChecks`.
    public static func read(path: String, as format: SourceFormat? = nil, limits: PickleLimits = PickleLimits(),
                            deferIntegrity: Bool = false) throws -> Checkpoint {
        do {
            let file = try MappedFile(path: path)
            let ckpt = try read(bytes: file.bytes, name: URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent,
                                as: format, limits: limits, deferIntegrity: deferIntegrity)
            try file.checkUnchanged()
            return ckpt
        } catch let e as FormatError {
            throw e.inFile(path)
        }
    }

    /// Reads bytes already in memory (the fuzz targets' entry); `name` names a lone .npy array.
    public static func read(bytes b: Bytes, name: String = "array", as format: SourceFormat? = nil,
                            limits: PickleLimits = PickleLimits(), deferIntegrity: Bool = false) throws -> Checkpoint {
        // The zip directory is parsed once, for detection and for reading.
        var zip: Result<ZipArchive, Error>?
        if ZipArchive.looksLikeZip(b) { zip = Result { try ZipArchive(b) } }
        guard let fmt = format ?? detect(b, zip: try? zip?.get()) else {
            throw FormatError(.unsupported, "unrecognised file format", hint: unsupportedHint(b) ?? "expected a PyTorch checkpoint, safetensors, .npy/.npz, a Caffe2 pickle, an ONNX model or a Keras HDF5 file; for a damaged one of these, name its kind with --from to see what is wrong")
        }
        switch fmt {
        case .safetensors: return try Safetensors.read(b)
        case .npy: return try Npy.readNpy(b, name: name)
        case .npz: return try Npy.readNpz(try (zip ?? Result { try ZipArchive(b) }).get())
        case .torchZip, .torchScript:
            guard ZipArchive.looksLikeZip(b) else { throw FormatError.malformed("not a zip archive (a PyTorch >= 1.6 checkpoint is one)", hint: detect(b).map { "this looks like \($0.rawValue); try --from auto" }) }
            return try TorchCheckpoint.readZip(try zip!.get(), limits: limits, deferIntegrity: deferIntegrity)
        case .torchLegacy:
            return try TorchCheckpoint.readLegacy(b, limits: limits)
        case .onnx:
            throw FormatError(.unsupported, "ONNX models are read by the ONNX importer, not as a checkpoint", hint: "sfnet convert reads them (--from onnx or auto)")
        case .hdf5:
            throw FormatError(.unsupported, "HDF5 (Keras) files are read by the Keras importer in a worker process", hint: "use sfnet convert --from keras")
        case .pickle:
            let vm = PickleVM(b, limits: limits)
            defer { vm.dispose() }
            let root = try vm.load()
            try vm.checkStructure(root)
            return try TorchCheckpoint.containerize(root, format: .pickle)
        }
    }
}
