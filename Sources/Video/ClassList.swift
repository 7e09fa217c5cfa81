// A class list file: one class name per line, in id order (the first name is class 0). Blank lines and
// lines starting with '#' are skipped; LF, CRLF or CR line ends, an optional UTF-8 BOM (TextRecords).
// Or an .xlsx spreadsheet (Animal Kingdom's df_action.xlsx), told by its content (zip magic), read by
// Spreadsheet.classNames.

import Foundation

public struct ClassList: Sendable, Equatable {
    public let names: [String]
    private let ids: [String: Int]

    public init(names: [String]) throws {
        var ids: [String: Int] = [:]
        for (i, n) in names.enumerated() {
            if let j = ids[n] { throw DatasetError.invalidRequest("class '\(n)' listed twice (ids \(j) and \(i))") }
            ids[n] = i
        }
        self.names = names
        self.ids = ids
    }

    public var count: Int { names.count }

    public func id(of name: String) -> Int? { ids[name] }

    /// A class list file or an .xlsx (detected by content); `column` picks the .xlsx column by its header.
    public static func load(_ path: String, column: String? = nil, limits: TextLimits = .default) throws -> ClassList {
        if Spreadsheet.looksLikeXLSX(path) { return try ClassList(names: Spreadsheet.classNames(path, column: column)) }
        var names: [String] = []
        var seen: [String: Int] = [:]
        for record in try TextRecords.read(path, mode: .lines, limits: limits) {
            let line = record.text.trimmingCharacters(in: .whitespaces)
            if let first = seen[line] { throw DatasetError.badLine(path: path, line: record.line, reason: "class '\(line)' already on line \(first)") }
            if line.contains(",") || line.contains(";") {
                throw DatasetError.badLine(path: path, line: record.line, reason: "class names cannot contain ',' or ';' (manifests separate with them)")
            }
            seen[line] = record.line
            names.append(line)
        }
        guard !names.isEmpty else { throw DatasetError.empty(path: path, what: "class names") }
        return try ClassList(names: names)
    }

    public func write(to path: String) throws {
        try writeText(names.joined(separator: "\n") + "\n", to: path)
    }
}
