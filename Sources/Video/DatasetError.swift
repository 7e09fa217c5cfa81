// Errors of manifests, class lists, frame lists and splits: file, line and what was expected.

import Foundation

public enum DatasetError: Error, LocalizedError, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    /// A malformed line: `line` is 1-based.
    case badLine(path: String, line: Int, reason: String)
    case empty(path: String, what: String)
    case unknownClass(path: String, line: Int, name: String, known: Int)
    case invalidRequest(String)
    case writeFailed(path: String, reason: String)
    /// An .xlsx class list: the zip entry (or "first sheet") and the cell where known.
    case badSpreadsheet(path: String, entry: String?, cell: String?, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "\(path): cannot read: \(reason)"
        case let .badLine(path, line, reason): return "\(path):\(line): \(reason)"
        case let .empty(path, what): return "\(path): no \(what)"
        case let .unknownClass(path, line, name, known):
            return "\(path):\(line): unknown class '\(name)' (the class list has \(known) classes; names are case-sensitive, or give 0-based ids)"
        case let .invalidRequest(reason): return "invalid request: \(reason)"
        case let .writeFailed(path, reason): return "\(path): cannot write: \(reason)"
        case let .badSpreadsheet(path, entry, cell, reason):
            return "\(path)" + (entry.map { ": \($0)" } ?? "") + (cell.map { ": cell \($0)" } ?? "") + ": \(reason)"
        }
    }

    public var errorDescription: String? { description }
}

/// Budgets on manifests, class lists and frame lists (SECURITY.md case 36; LIMITS.md), checked while
/// TextRecords scans the bytes, before anything per row is allocated.
public struct TextLimits: Sendable, Equatable {
    /// Bytes of the file, checked before it is read (memory stays a small multiple of it).
    public var maxBytes: Int = 512 << 20
    /// Bytes of one line (of one record, for a CSV record whose quoted field spans lines); paths are at most 4096.
    public var maxLineBytes: Int = 65_536
    /// Rows (records that are not blank or comments, a header included).
    public var maxRows: Int = 10_000_000
    /// Fields of one CSV record (manifests have 2 or 3); frame-list rows are split at most this many times.
    public var maxFields: Int = 64

    public init() {}
    public static let `default` = TextLimits()
}

/// Writes text atomically (temporary file in the same folder, then rename).
func writeText(_ text: String, to path: String) throws {
    do { try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
        throw DatasetError.writeFailed(path: path, reason: error.localizedDescription)
    }
}
