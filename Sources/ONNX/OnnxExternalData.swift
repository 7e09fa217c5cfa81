// Before OnnxModel.parse: initializers whose bytes live in external files
// (SECURITY.md 23-24) or in typed fields the parser does not take (int32_data
// for f16/bf16, double_data for f64) are rewritten into raw_data, then the model
// is re-packed. Nothing else is changed.
//
// External data rules: keys only location/offset/length/checksum; location
// relative, without `..`, `.` or empty components or a backslash; the resolved
// file a regular file (not a symlink) whose real path is exactly the model
// directory's real path plus the location (so no component is a symlink);
// offset and length decimal, non-negative, offset + length within the file.

import CONNX
import Foundation
import Formats

enum OnnxExternalData {
    static func fail(_ msg: String, _ file: String) -> FormatError {
        FormatError(.malformed, msg, file: file)
    }

    /// The model bytes with every external/typed initializer turned into raw_data;
    /// nil when nothing needed rewriting.
    static func inline(_ bytes: UnsafeRawBufferPointer, modelPath: String) throws -> [UInt8]? {
        try OnnxNesting.check(bytes, file: modelPath)
        guard let base = bytes.baseAddress,
              let m = onnx__model_proto__unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self)) else {
            throw FormatError(.io, "not a valid ONNX ModelProto (protobuf-c could not unpack it)", file: modelPath)
        }
        defer { onnx__model_proto__free_unpacked(m, nil) }
        guard let g = m.pointee.graph, g.pointee.n_initializer > 0, let list = g.pointee.initializer else { return nil }
        var changed = false
        let dir = URL(fileURLWithPath: modelPath).deletingLastPathComponent().path
        for k in 0..<g.pointee.n_initializer {
            guard let t = list[k] else { continue }
            let name = t.pointee.name.map { String(cString: $0) } ?? ""
            let external = t.pointee.n_external_data > 0
                || (t.pointee.has_data_location != 0 && t.pointee.data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
            var data: [UInt8]?
            if external {
                if t.pointee.has_raw_data != 0 { throw fail("initializer '\(name)' has both raw_data and external data", modelPath) }
                var entries: [String: String] = [:]
                for i in 0..<t.pointee.n_external_data {
                    guard let e = t.pointee.external_data[i] else { continue }
                    let key = e.pointee.key.map { String(cString: $0) } ?? ""
                    let value = e.pointee.value.map { String(cString: $0) } ?? ""
                    guard ["location", "offset", "length", "checksum"].contains(key) else {
                        throw fail("initializer '\(name)': unknown external-data key '\(key)'", modelPath)
                    }
                    guard entries.updateValue(value, forKey: key) == nil else {
                        throw fail("initializer '\(name)': external-data key '\(key)' given twice", modelPath)
                    }
                }
                data = try read(entries, tensor: name, dir: dir, modelPath: modelPath)
            } else if t.pointee.has_raw_data == 0 {
                switch t.pointee.data_type {
                case 10 where t.pointee.n_int32_data > 0, 16 where t.pointee.n_int32_data > 0: // f16 / bf16: one element per int32
                    let n = t.pointee.n_int32_data
                    var out = [UInt8](repeating: 0, count: n * 2)
                    for i in 0..<n {
                        let v = UInt16(truncatingIfNeeded: t.pointee.int32_data[i])
                        out[2 * i] = UInt8(v & 0xff); out[2 * i + 1] = UInt8(v >> 8)
                    }
                    data = out
                case 11 where t.pointee.n_double_data > 0:
                    let n = t.pointee.n_double_data
                    data = Array(UnsafeRawBufferPointer(start: t.pointee.double_data, count: n * 8))
                default: break
                }
            }
            guard let d = data else { continue }
            // free_unpacked frees raw_data.data with the system allocator: give it malloc'd memory.
            let p = malloc(max(d.count, 1))!.assumingMemoryBound(to: UInt8.self)
            d.withUnsafeBufferPointer { if let b = $0.baseAddress { p.update(from: b, count: d.count) } }
            t.pointee.has_raw_data = 1
            t.pointee.raw_data = ProtobufCBinaryData(len: d.count, data: p)
            changed = true
        }
        guard changed else { return nil }
        let size = onnx__model_proto__get_packed_size(m)
        var out = [UInt8](repeating: 0, count: size)
        let written = out.withUnsafeMutableBufferPointer { onnx__model_proto__pack(m, $0.baseAddress!) }
        guard written == size else { throw FormatError(.io, "re-packing the model failed", file: modelPath) }
        return out
    }

    static func number(_ s: String?, _ what: String, tensor: String, _ modelPath: String) throws -> Int? {
        guard let s else { return nil }
        guard !s.isEmpty, s.count <= 18, s.allSatisfy({ $0.isASCII && $0.isNumber }), let v = Int(s) else {
            throw fail("initializer '\(tensor)': external-data \(what) '\(s.prefix(40))' is not a non-negative integer within range", modelPath)
        }
        return v
    }

    static func read(_ e: [String: String], tensor: String, dir: String, modelPath: String) throws -> [UInt8] {
        guard let location = e["location"], !location.isEmpty else {
            throw fail("initializer '\(tensor)': external data without a location", modelPath)
        }
        let parts = location.split(separator: "/", omittingEmptySubsequences: false)
        guard !location.hasPrefix("/"), !location.contains("\\"), !location.contains("\0"),
              !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            throw fail("initializer '\(tensor)': external-data location '\(location)' must be a plain relative path inside the model's directory (no absolute path, no '..')", modelPath)
        }
        let path = dir + "/" + location
        var st = stat()
        guard lstat(path, &st) == 0 else {
            throw FormatError(.io, "initializer '\(tensor)': external data file '\(location)' cannot be opened", file: modelPath)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw fail("initializer '\(tensor)': external data file '\(location)' is a symlink or not a regular file", modelPath)
        }
        guard let realDir = realpath(dir, nil), let realFile = realpath(path, nil) else {
            throw FormatError(.io, "initializer '\(tensor)': cannot resolve '\(location)'", file: modelPath)
        }
        let rd = String(cString: realDir), rf = String(cString: realFile)
        free(realDir); free(realFile)
        guard rf == (rd == "/" ? "" : rd) + "/" + location else {
            throw fail("initializer '\(tensor)': external data file '\(location)' resolves outside the model directory (through a symlink)", modelPath)
        }
        let size = Int(st.st_size)
        let offset = try number(e["offset"], "offset", tensor: tensor, modelPath) ?? 0
        guard offset <= size else { throw fail("initializer '\(tensor)': external-data offset \(offset) is past the end of '\(location)' (\(size) bytes)", modelPath) }
        let length = try number(e["length"], "length", tensor: tensor, modelPath) ?? (size - offset)
        guard length <= size - offset else {
            throw fail("initializer '\(tensor)': external data offset \(offset) + length \(length) is past the end of '\(location)' (\(size) bytes)", modelPath)
        }
        guard let h = FileHandle(forReadingAtPath: path) else {
            throw FormatError(.io, "initializer '\(tensor)': cannot open '\(location)'", file: modelPath)
        }
        defer { try? h.close() }
        try h.seek(toOffset: UInt64(offset))
        let d = try h.read(upToCount: length) ?? Data()
        guard d.count == length else { throw fail("initializer '\(tensor)': '\(location)' changed while being read", modelPath) }
        return Array(d)
    }
}
