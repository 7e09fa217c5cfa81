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

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "\(path): cannot read: \(reason)"
        case let .badLine(path, line, reason): return "\(path):\(line): \(reason)"
        case let .empty(path, what): return "\(path): no \(what)"
        case let .unknownClass(path, line, name, known):
            return "\(path):\(line): unknown class '\(name)' (the class list has \(known) classes; names are case-sensitive, or give 0-based ids)"
        case let .invalidRequest(reason): return "invalid split request: \(reason)"
        case let .writeFailed(path, reason): return "\(path): cannot write: \(reason)"
        }
    }

    public var errorDescription: String? { description }
}

/// Reads a text file as lines, bounded (SECURITY.md: memory a small multiple of the input).
func readLines(_ path: String, maxBytes: Int = 512 << 20) throws -> [Substring] {
    let url = URL(fileURLWithPath: path)
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else {
        throw DatasetError.unreadable(path: path, reason: isDir.boolValue ? "is a directory" : "no such file")
    }
    let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    if size > maxBytes { throw DatasetError.unreadable(path: path, reason: "\(size) bytes exceeds the limit \(maxBytes)") }
    let data: Data
    do { data = try Data(contentsOf: url) } catch { throw DatasetError.unreadable(path: path, reason: error.localizedDescription) }
    guard let text = String(data: data, encoding: .utf8) else { throw DatasetError.unreadable(path: path, reason: "not UTF-8 text") }
    return text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.hasSuffix("\r") ? $0.dropLast() : $0 }
}

/// Writes text atomically (temporary file in the same folder, then rename).
func writeText(_ text: String, to path: String) throws {
    do { try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
        throw DatasetError.writeFailed(path: path, reason: error.localizedDescription)
    }
}
