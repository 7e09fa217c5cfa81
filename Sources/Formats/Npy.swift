// NumPy .npy (format versions 1-3) and .npz (a zip of .npy entries), per
// numpy/lib/format.py. The header is a Python dict literal, parsed here as
// data with a tiny grammar; object arrays are refused.

import Foundation

public enum Npy {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59] // \x93NUMPY
    /// Longest header accepted (numpy writes ~128 bytes; its own reader stops at 10 000 unless told otherwise).
    public static let maxHeaderBytes = 1 << 20

    public static func looksLikeNpy(_ b: Bytes) -> Bool { b.count >= 6 && b.raw.prefix(6).elementsEqual(magic) }

    /// One array from .npy bytes.
    public static func readArray(_ b: Bytes, at loc: String = "offset 0") throws -> (Tensor, String?) {
        guard looksLikeNpy(b) else { throw FormatError.malformed("not an npy array: bad magic", at: loc) }
        guard b.count >= 10 else { throw FormatError.malformed("npy header truncated", at: loc) }
        let major = b.raw[6]
        var headerLen: Int, start: Int
        switch major {
        case 1: headerLen = Int(UInt16(littleEndian: b.raw.loadUnaligned(fromByteOffset: 8, as: UInt16.self))); start = 10
        case 2, 3:
            guard b.count >= 12 else { throw FormatError.malformed("npy header truncated", at: loc) }
            headerLen = Int(UInt32(littleEndian: b.raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self))); start = 12
        default: throw FormatError(.unsupported, "npy format version \(major) is not supported", at: loc)
        }
        guard headerLen <= maxHeaderBytes else { throw FormatError.limit("npy header length \(headerLen) exceeds the 1 MiB limit", at: loc) }
        guard headerLen <= b.count - start else { throw FormatError.malformed("npy header length \(headerLen) reaches beyond the data", at: loc) }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: b.raw[start ..< start + headerLen]), as: UTF8.self)
        let (descr, fortran, shape) = try parseHeader(text, at: loc)
        var code = descr
        var order: Character = "<"
        if let f = code.first, "<>|=".contains(f) { order = f; code.removeFirst() }
        if code.hasPrefix("O") { throw FormatError(.disallowed, "npy object arrays (dtype '\(descr)') are not allowed", at: loc) }
        let (dtype, big) = try NumpyDTypes.parse(code, byteOrder: order, at: loc)
        let nbytes: Int
        do {
            nbytes = try Checked.product(shape, elementSize: dtype.size, "npy bytes")
        } catch { throw FormatError.malformed("npy shape \(Tensor.shapeString(shape)) overflows", at: loc) }
        let dataStart = start + headerLen
        guard nbytes <= b.count - dataStart else {
            throw FormatError.malformed("npy header claims \(nbytes) bytes of data but only \(b.count - dataStart) remain", at: loc)
        }
        var data = b.slice(dataStart, nbytes)
        var notes: [String] = []
        if big { data = TorchCheckpoint.byteSwapped(data, elementSize: dtype.size); notes.append("byte-swapped from big-endian") }
        if fortran && shape.count > 1 {
            data = StridedGather.gather(data, elementSize: dtype.size, offset: 0, shape: shape, stride: StridedGather.fortranStrides(shape))
            notes.append("transposed from Fortran order")
        }
        return (Tensor(dtype: dtype, shape: shape, data: data), notes.isEmpty ? nil : notes.joined(separator: "; "))
    }

    /// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`
    static func parseHeader(_ text: String, at loc: String) throws -> (String, Bool, [Int]) {
        func bad(_ why: String) -> FormatError { FormatError.malformed("npy header is malformed: \(why)", at: loc) }
        func value(after key: String) throws -> Substring {
            guard let r = text.range(of: "'\(key)':") else { throw bad("no '\(key)'") }
            return text[r.upperBound...].drop(while: { $0 == " " })
        }
        let d = try value(after: "descr")
        guard let q = d.first, q == "'" || q == "\"", let close = d.dropFirst().firstIndex(of: q) else { throw bad("descr is not a string") }
        let descr = String(d[d.index(after: d.startIndex) ..< close])
        let f = try value(after: "fortran_order")
        let fortran: Bool
        if f.hasPrefix("True") { fortran = true } else if f.hasPrefix("False") { fortran = false } else { throw bad("fortran_order is not a bool") }
        let s = try value(after: "shape")
        guard s.first == "(", let end = s.firstIndex(of: ")") else { throw bad("shape is not a tuple") }
        let inner = s[s.index(after: s.startIndex) ..< end]
        let shape = try inner.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map { t -> Int in
            guard let v = Int(t.hasSuffix("L") ? String(t.dropLast()) : t), v >= 0 else { throw bad("shape holds '\(t.prefix(20))'") }
            return v
        }
        return (descr, fortran, shape)
    }

    public static func readNpy(_ b: Bytes, name: String) throws -> Checkpoint {
        var c = Checkpoint(format: .npy)
        let (t, note) = try readArray(b)
        c.tensors.set(name, t)
        if let note { c.notes[name] = note }
        return c
    }

    public static func readNpz(_ zip: ZipArchive) throws -> Checkpoint {
        var c = Checkpoint(format: .npz)
        for e in zip.entries {
            guard e.name.hasSuffix(".npy") else {
                c.otherEntries.append((e.name, "non-array entry (\(e.uncompressedSize) bytes)"))
                continue
            }
            let name = String(e.name.dropLast(4))
            let (t, note) = try readArray(try zip.read(e), at: "entry '\(e.name)'")
            c.tensors.set(name, t)
            if let note { c.notes[name] = note }
        }
        return c
    }
}
