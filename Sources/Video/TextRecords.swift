// The records of the text files people write by hand or with Python, pandas or Excel: CSV manifests,
// class lists, frame lists. Works on the bytes: LF, CRLF and lone-CR line ends (Swift's "\r\n" is one
// Character, so splitting a String on "\n" never splits a CRLF file), a UTF-8 BOM at the very start only,
// 1-based physical line numbers, blank and '#' lines skipped, and the TextLimits (SECURITY.md case 36)
// checked while scanning. In CSV mode a record runs to the first line end outside RFC 4180 quotes; the
// fields themselves are split by yaslab/CSV.swift (Manifest.swift). The scan here has to track quotes
// anyway to find where a record ends, and it is what refuses what that library accepts silently: a quote
// that never closes (the library ends the field at the end of the file), text after a closing quote (the
// library drops a character of it), NUL bytes and the limits.

import Foundation

/// One record: its text (line end excluded; in CSV mode quoted line ends kept) and the physical line it starts on.
public struct TextRecord: Sendable, Equatable {
    public var line: Int
    public var text: String
    /// Fields the scan counted (CSV mode: separators outside quotes + 1; otherwise 1).
    public var fieldCount: Int
}

public enum TextRecords {
    /// How quotes are read.
    public enum Mode: Sendable { case lines, csv }

    /// The records of `path`, without blank lines and lines whose first non-blank character is '#'.
    public static func read(_ path: String, mode: Mode, limits: TextLimits = .default) throws -> [TextRecord] {
        try parse(readBytes(path, limits: limits), path: path, mode: mode, limits: limits)
    }

    /// The file's bytes, refused above `limits.maxBytes` before reading.
    static func readBytes(_ path: String, limits: TextLimits) throws -> [UInt8] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else {
            throw DatasetError.unreadable(path: path, reason: isDir.boolValue ? "is a directory" : "no such file")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        if size > limits.maxBytes {
            throw DatasetError.unreadable(path: path, reason: "\(size) bytes exceeds the limit \(limits.maxBytes) (file size limit)")
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw DatasetError.unreadable(path: path, reason: error.localizedDescription)
        }
        if data.count > limits.maxBytes {   // grew after the stat
            throw DatasetError.unreadable(path: path, reason: "\(data.count) bytes exceeds the limit \(limits.maxBytes) (file size limit)")
        }
        return [UInt8](data)
    }

    private static let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n")
    private static let space = UInt8(ascii: " "), tab = UInt8(ascii: "\t"), hash = UInt8(ascii: "#")

    /// Where the scan is inside a CSV record.
    private enum State { case fieldStart, unquoted, quoted, afterQuote }

    static func parse(_ bytes: [UInt8], path: String, mode: Mode, limits: TextLimits = .default) throws -> [TextRecord] {
        func bad(_ line: Int, _ reason: String) -> DatasetError { .badLine(path: path, line: line, reason: reason) }
        return try bytes.withUnsafeBufferPointer { b -> [TextRecord] in
            let n = b.count
            var i = 0
            if n >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF { i = 3 }   // UTF-8 BOM (Excel's "CSV UTF-8")
            var records: [TextRecord] = []
            var line = 1
            while i < n {
                // One record from i; `line` is the physical line it starts on.
                let start = i, startLine = line
                var state = State.fieldStart
                var fields = 1
                var quoteLine = 0   // line where the open quoted field started
                var blank = true, comment = false
                var end = n, next = n   // record end (exclusive) and where the next one starts
                scan: while i < n {
                    let c = b[i]
                    if c == 0 { throw bad(line, "NUL byte at column \(column(b, i, from: lineStart(b, i)))") }
                    if c == 0xEF && i + 2 < n && b[i + 1] == 0xBB && b[i + 2] == 0xBF {
                        throw bad(line, "byte order mark (U+FEFF) at column \(column(b, i, from: lineStart(b, i))); only the first bytes of the file may hold one")
                    }
                    if c == cr || c == lf {
                        let after = c == cr && i + 1 < n && b[i + 1] == lf ? i + 2 : i + 1
                        if state == .quoted && !comment {   // a line end inside quotes belongs to the field
                            line += 1; i = after; continue
                        }
                        end = i; next = after
                        break scan
                    }
                    if i - start >= limits.maxLineBytes {
                        throw bad(startLine, "line longer than \(limits.maxLineBytes) bytes (line length limit)")
                    }
                    if blank && c != space && c != tab {
                        blank = false
                        if c == hash { comment = true }
                    }
                    if mode == .csv && !comment {
                        switch state {
                        case .fieldStart:
                            if c == quote { state = .quoted; quoteLine = line } else if c == comma { fields += 1 } else if c != space && c != tab { state = .unquoted }
                        case .unquoted:
                            if c == comma { fields += 1; state = .fieldStart }
                        case .quoted:
                            if c == quote {
                                if i + 1 < n && b[i + 1] == quote { i += 1 } else { state = .afterQuote }
                            }
                        case .afterQuote:
                            if c == comma { fields += 1; state = .fieldStart } else if c != space && c != tab {
                                throw bad(line, "'\(printable(c))' after the closing quote of a field: expected ',' or the end of the line (write a quote inside a quoted field as \"\")")
                            }
                        }
                        if fields > limits.maxFields {
                            throw bad(startLine, "more than \(limits.maxFields) fields (field limit)")
                        }
                    }
                    i += 1
                }
                if state == .quoted && !comment {
                    throw bad(quoteLine, "unterminated quote: the quoted field that starts on this line never closes")
                }
                i = next
                if next > end { line += 1 }
                if blank || comment { continue }
                let slice = UnsafeBufferPointer(rebasing: b[start ..< end])
                guard let text = String(validating: slice, as: UTF8.self) else {
                    throw invalidUTF8(b, from: start, to: end, line: startLine, path: path)
                }
                records.append(TextRecord(line: startLine, text: text, fieldCount: fields))
                if records.count > limits.maxRows {
                    throw bad(startLine, "more than \(limits.maxRows) rows (row limit)")
                }
            }
            return records
        }
    }

    /// The error for the first invalid UTF-8 byte in b[from..<to], with its physical line and column (a record
    /// may span lines; CR and LF never sit inside a multi-byte sequence).
    private static func invalidUTF8(_ b: UnsafeBufferPointer<UInt8>, from: Int, to: Int, line: Int, path: String) -> DatasetError {
        var parser = Unicode.UTF8.ForwardParser()
        var it = UnsafeBufferPointer(rebasing: b[from ..< to]).makeIterator()
        var offset = from, l = line, chars = 0
        while true {
            switch parser.parseScalar(from: &it) {
            case .valid(let e):
                let c = e.first!
                if c == lf || (c == cr && !(offset + 1 < to && b[offset + 1] == lf)) { l += 1; chars = 0 } else if c != cr { chars += 1 }
                offset += e.count
            case .error:
                return .badLine(path: path, line: l, reason: String(format: "not UTF-8 text (byte 0x%02X at column %d); save the file as UTF-8", b[offset], chars + 1))
            case .emptyInput:
                return .badLine(path: path, line: line, reason: "not UTF-8 text; save the file as UTF-8")
            }
        }
    }

    private static func lineStart(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
        var s = i
        while s > 0 && b[s - 1] != cr && b[s - 1] != lf { s -= 1 }
        if s == 0 && b.count >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF { return 3 }   // the BOM is no column
        return s
    }

    /// 1-based column in characters (bytes where the line is not valid UTF-8 up to there).
    private static func column(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, from s: Int) -> Int {
        if let prefix = String(validating: UnsafeBufferPointer(rebasing: b[s ..< i]), as: UTF8.self) { return prefix.count + 1 }
        return i - s + 1
    }

    private static func printable(_ c: UInt8) -> String {
        c >= 0x20 && c < 0x7F ? String(UnicodeScalar(c)) : String(format: "byte 0x%02X", c)
    }
}
