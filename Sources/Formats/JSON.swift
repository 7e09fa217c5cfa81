// A strict JSON parser (RFC 8259) that keeps object key order and refuses
// duplicate keys, for safetensors headers; and a small writer used by the
// native format. Foundation's JSONSerialization silently merges duplicates.

import Foundation

public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double, isInteger: Bool, integer: Int64?)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.number(let x, _, _), .number(let y, _, _)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let kv) = self { return kv.first { $0.0 == key }?.1 }
        return nil
    }

    public var intValue: Int? {
        if case .number(_, true, let i?) = self { return Int(exactly: i) }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    // MARK: writing

    public var serialized: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let d, let isInt, let i):
            if isInt, let i { return String(i) }
            return d.isFinite ? "\(d)" : "null"
        case .string(let s): return JSONValue.quote(s)
        case .array(let xs): return "[" + xs.map(\.serialized).joined(separator: ",") + "]"
        case .object(let kv): return "{" + kv.map { JSONValue.quote($0.0) + ":" + $0.1.serialized }.joined(separator: ",") + "}"
        }
    }

    public static func int(_ i: Int) -> JSONValue { .number(Double(i), isInteger: true, integer: Int64(i)) }
    public static func double(_ d: Double) -> JSONValue { .number(d, isInteger: false, integer: nil) }

    public static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}

public struct JSONParser {
    public struct Failure: Error, CustomStringConvertible {
        public let offset: Int
        public let message: String
        public var description: String { "\(message) at byte \(offset)" }
    }

    let s: UnsafeRawBufferPointer
    var i = 0
    let maxDepth: Int

    public static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 64) throws -> JSONValue {
        var p = JSONParser(s: bytes, maxDepth: maxDepth)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        if p.i != bytes.count { throw Failure(offset: p.i, message: "unexpected trailing characters") }
        return v
    }

    public static func parse(_ text: String) throws -> JSONValue {
        var t = text
        return try t.withUTF8 { try parse(UnsafeRawBufferPointer($0)) }
    }

    mutating func skipSpace() {
        while i < s.count, s[i] == 0x20 || s[i] == 0x0A || s[i] == 0x0D || s[i] == 0x09 { i += 1 }
    }

    /// `depth`: the arrays and objects around this value; at most `maxDepth` may nest (a scalar adds no level).
    mutating func value(depth: Int) throws -> JSONValue {
        guard i < s.count else { throw Failure(offset: i, message: "unexpected end") }
        if depth >= maxDepth, s[i] == UInt8(ascii: "{") || s[i] == UInt8(ascii: "[") {
            throw Failure(offset: i, message: "nesting deeper than \(maxDepth)")
        }
        switch s[i] {
        case UInt8(ascii: "{"):
            i += 1
            var kv: [(String, JSONValue)] = []
            var seen = Set<String>()
            skipSpace()
            if i < s.count, s[i] == UInt8(ascii: "}") { i += 1; return .object(kv) }
            while true {
                skipSpace()
                guard i < s.count, s[i] == UInt8(ascii: "\"") else { throw Failure(offset: i, message: "expected a string key") }
                let keyOffset = i
                let k = try string()
                if !seen.insert(k).inserted { throw Failure(offset: keyOffset, message: "duplicate key '\(k.prefix(80))'") }
                skipSpace()
                guard i < s.count, s[i] == UInt8(ascii: ":") else { throw Failure(offset: i, message: "expected ':'") }
                i += 1
                skipSpace()
                kv.append((k, try value(depth: depth + 1)))
                skipSpace()
                guard i < s.count else { throw Failure(offset: i, message: "unexpected end in object") }
                if s[i] == UInt8(ascii: ",") { i += 1; continue }
                if s[i] == UInt8(ascii: "}") { i += 1; return .object(kv) }
                throw Failure(offset: i, message: "expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            i += 1
            var xs: [JSONValue] = []
            skipSpace()
            if i < s.count, s[i] == UInt8(ascii: "]") { i += 1; return .array(xs) }
            while true {
                skipSpace()
                xs.append(try value(depth: depth + 1))
                skipSpace()
                guard i < s.count else { throw Failure(offset: i, message: "unexpected end in array") }
                if s[i] == UInt8(ascii: ",") { i += 1; continue }
                if s[i] == UInt8(ascii: "]") { i += 1; return .array(xs) }
                throw Failure(offset: i, message: "expected ',' or ']'")
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default: return try number()
        }
    }

    mutating func literal(_ word: String) throws {
        let w = Array(word.utf8)
        guard i + w.count <= s.count, s[i ..< i + w.count].elementsEqual(w) else { throw Failure(offset: i, message: "invalid literal") }
        i += w.count
    }

    mutating func number() throws -> JSONValue {
        let start = i
        if i < s.count, s[i] == UInt8(ascii: "-") { i += 1 }
        var isInt = true
        guard i < s.count, s[i] >= 48, s[i] <= 57 else { throw Failure(offset: start, message: "invalid value") }
        if s[i] == 48, i + 1 < s.count, s[i + 1] >= 48, s[i + 1] <= 57 { throw Failure(offset: start, message: "leading zero") }
        while i < s.count, s[i] >= 48, s[i] <= 57 { i += 1 }
        if i < s.count, s[i] == UInt8(ascii: ".") {
            isInt = false; i += 1
            guard i < s.count, s[i] >= 48, s[i] <= 57 else { throw Failure(offset: i, message: "invalid fraction") }
            while i < s.count, s[i] >= 48, s[i] <= 57 { i += 1 }
        }
        if i < s.count, s[i] == UInt8(ascii: "e") || s[i] == UInt8(ascii: "E") {
            isInt = false; i += 1
            if i < s.count, s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "-") { i += 1 }
            guard i < s.count, s[i] >= 48, s[i] <= 57 else { throw Failure(offset: i, message: "invalid exponent") }
            while i < s.count, s[i] >= 48, s[i] <= 57 { i += 1 }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: s[start ..< i]), as: UTF8.self)
        let d = Double(text) ?? .nan
        return .number(d, isInteger: isInt, integer: isInt ? Int64(text) : nil)
    }

    mutating func hex4() throws -> UInt32 {
        guard i + 4 <= s.count, let v = UInt32(String(decoding: UnsafeRawBufferPointer(rebasing: s[i ..< i + 4]), as: UTF8.self), radix: 16) else {
            throw Failure(offset: i, message: "invalid \\u escape")
        }
        i += 4
        return v
    }

    mutating func string() throws -> String {
        i += 1 // opening quote
        var out = [UInt8]()
        while true {
            guard i < s.count else { throw Failure(offset: i, message: "unterminated string") }
            let c = s[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c < 0x20 { throw Failure(offset: i, message: "control character in string") }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < s.count else { throw Failure(offset: i, message: "unterminated escape") }
            let e = s[i]; i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var v = try hex4()
                if v >= 0xD800 && v < 0xDC00 {
                    guard i + 2 <= s.count, s[i] == UInt8(ascii: "\\"), s[i + 1] == UInt8(ascii: "u") else { throw Failure(offset: i, message: "unpaired surrogate") }
                    i += 2
                    let lo = try hex4()
                    guard lo >= 0xDC00 && lo < 0xE000 else { throw Failure(offset: i, message: "unpaired surrogate") }
                    v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00)
                } else if v >= 0xDC00 && v < 0xE000 {
                    throw Failure(offset: i, message: "unpaired surrogate")
                }
                guard let u = Unicode.Scalar(v) else { throw Failure(offset: i, message: "invalid code point") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default: throw Failure(offset: i - 1, message: "invalid escape")
            }
        }
        guard let str = String(validating: out, as: UTF8.self) else { throw Failure(offset: i, message: "string is not valid UTF-8") }
        return str
    }
}
