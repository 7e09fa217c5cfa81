// Class names from an .xlsx spreadsheet, as Animal Kingdom ships them (df_action.xlsx, 140 actions).
// An .xlsx (ECMA-376 SpreadsheetML) is a zip of XML: the project's strict zip reader (Formats/Zip.swift:
// sizes, ratio, names, overlap; SECURITY.md 13) gives xl/workbook.xml and xl/_rels/workbook.xml.rels,
// which name the first worksheet, plus xl/sharedStrings.xml; each is parsed by Foundation's XMLParser
// (libxml2 underneath) as a stream, so the limits below stop a hostile file before it is held in memory.
// Why XMLParser rather than XMLCoder: no new dependency (XMLCoder decodes through the same XMLParser), and
// a streaming reader can stop at the first limit; XMLCoder builds the whole tree first. No DTD is
// accepted: a `<!DOCTYPE` anywhere is refused before parsing (so no entity can be declared or expanded),
// external entities are never resolved, and an entity declaration that reached the parser aborts it.
// SECURITY.md case 35.

import Foundation
import Formats
#if canImport(FoundationXML)
import FoundationXML
#endif

/// Budgets on an .xlsx class list.
public struct SpreadsheetLimits: Sendable, Equatable {
    /// Bytes of the .xlsx file.
    public var maxFileBytes = 64 << 20
    /// Uncompressed bytes of one XML entry (checked on the zip's declared size, before inflating).
    public var maxEntryBytes = 64 << 20
    /// Entries of the shared-string table.
    public var maxSharedStrings = 1_000_000
    /// Rows of the sheet.
    public var maxRows = 1_000_000
    /// Columns of a row (Excel's own maximum is 16384).
    public var maxColumns = 16_384
    /// Characters of one cell or shared string (Excel's own maximum is 32767).
    public var maxCellChars = 32_767

    public init() {}
    public static let `default` = SpreadsheetLimits()
}

public enum Spreadsheet {
    /// Whether the file starts like a zip (an .xlsx), by content, not by name.
    public static func looksLikeXLSX(_ path: String) -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        return ((try? h.read(upToCount: 4)) ?? Data()).elementsEqual([0x50, 0x4B, 0x03, 0x04])
    }

    /// The first worksheet's rows: each a dictionary column index (0 = A) -> cell text, in sheet order,
    /// with the 1-based row number.
    public static func firstSheet(_ path: String, limits: SpreadsheetLimits = .default) throws -> [(row: Int, cells: [Int: String])] {
        func fail(_ entry: String?, _ reason: String) -> DatasetError { .badSpreadsheet(path: path, entry: entry, cell: nil, reason: reason) }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        if size > limits.maxFileBytes { throw fail(nil, "\(size) bytes exceeds the limit \(limits.maxFileBytes) (file size limit)") }
        guard let data = FileManager.default.contents(atPath: path) else { throw DatasetError.unreadable(path: path, reason: "cannot read the file") }
        if data.count > limits.maxFileBytes { throw fail(nil, "\(data.count) bytes exceeds the limit \(limits.maxFileBytes) (file size limit)") }
        let zip: ZipArchive
        do { zip = try ZipArchive(Bytes.copying([UInt8](data))) } catch {
            throw fail(nil, "not a readable .xlsx (zip): \(error)")
        }
        func entry(_ name: String, required: Bool = true) throws -> Data? {
            guard let e = zip.entry(named: name) else {
                if required { throw fail(name, "missing from the archive (an .xlsx has xl/workbook.xml, xl/_rels/workbook.xml.rels and a worksheet)") }
                return nil
            }
            if e.uncompressedSize > limits.maxEntryBytes {
                throw fail(name, "\(e.uncompressedSize) bytes uncompressed exceeds the limit \(limits.maxEntryBytes) (entry size limit)")
            }
            do { return Data(try zip.read(e).array) } catch { throw fail(name, "\(error)") }
        }
        // Which sheet is first: workbook.xml's first <sheet r:id>, resolved through the relationships.
        let workbook = try XMLScan(entry("xl/workbook.xml")!, path: path, entry: "xl/workbook.xml", limits: limits)
        guard let rid = workbook.elements.first(where: { $0.name == "sheet" })?.attributes.first(where: { $0.key == "r:id" || $0.key.hasSuffix(":id") })?.value else {
            throw fail("xl/workbook.xml", "no <sheet> with an r:id: the workbook names no worksheet")
        }
        let rels = try XMLScan(entry("xl/_rels/workbook.xml.rels")!, path: path, entry: "xl/_rels/workbook.xml.rels", limits: limits)
        guard let target = rels.elements.first(where: { $0.name == "Relationship" && $0.attributes["Id"] == rid })?.attributes["Target"] else {
            throw fail("xl/_rels/workbook.xml.rels", "no Relationship with Id '\(rid)' (the first sheet's)")
        }
        let sheetName = target.hasPrefix("/") ? String(target.dropFirst()) : "xl/" + target
        guard !sheetName.split(separator: "/").contains(".."), zip.entry(named: sheetName) != nil else {
            throw fail("xl/_rels/workbook.xml.rels", "the first sheet's target '\(target)' is not an entry of the archive")
        }
        let shared = try entry("xl/sharedStrings.xml", required: false).map {
            try SharedStrings($0, path: path, limits: limits).strings
        } ?? []
        return try SheetReader(entry(sheetName)!, path: path, entry: sheetName, shared: shared, limits: limits).rows
    }

    /// Header names that mark the class-name column, compared in lower case.
    public static let nameHeaders = ["action", "action_name", "action name", "actions", "name", "class", "class_name", "label", "label_name"]

    /// Class names in id order: the rows below the header row (the first non-empty row), from the column
    /// whose header is `column` (any case), else the first header in `nameHeaders`, else the first column
    /// holding text (not only numbers). Empty rows are skipped; an empty cell in a non-empty row is an error.
    public static func classNames(_ path: String, column: String? = nil, limits: SpreadsheetLimits = .default) throws -> [String] {
        let rows = try firstSheet(path, limits: limits).filter { !$0.cells.values.allSatisfy { $0.trimmingCharacters(in: .whitespaces).isEmpty } }
        guard let header = rows.first else { throw DatasetError.empty(path: path, what: "rows in the first sheet") }
        let body = rows.dropFirst()
        let headers = header.cells.mapValues { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        let sheetName = "first sheet"
        let col: Int
        if let column {
            guard let c = headers.sorted(by: { $0.key < $1.key }).first(where: { $0.value == column.lowercased() })?.key else {
                throw DatasetError.badSpreadsheet(path: path, entry: sheetName, cell: nil,
                    reason: "no column headed '\(column)' (headers: \(headers.sorted { $0.key < $1.key }.map { "'\($0.value)'" }.joined(separator: ", ")))")
            }
            col = c
        } else if let c = nameHeaders.lazy.compactMap({ h in headers.sorted(by: { $0.key < $1.key }).first(where: { $0.value == h })?.key }).first {
            col = c
        } else if let c = headers.keys.sorted().first(where: { c in body.contains { r in r.cells[c].map { Double($0) == nil && !$0.isEmpty } ?? false } }) {
            col = c
        } else {
            throw DatasetError.badSpreadsheet(path: path, entry: sheetName, cell: nil, reason: "no column of class names (no header like 'action' or 'name', and no text column)")
        }
        var names: [String] = []
        var seen: [String: String] = [:]
        for r in body {
            let cell = cellName(column: col, row: r.row)
            let name = (r.cells[col] ?? "").trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty else { throw DatasetError.badSpreadsheet(path: path, entry: sheetName, cell: cell, reason: "empty class name") }
            if name.contains(",") || name.contains(";") || name.contains("\n") {
                throw DatasetError.badSpreadsheet(path: path, entry: sheetName, cell: cell, reason: "class names cannot contain ',', ';' or line breaks (manifests separate with them): '\(name)'")
            }
            if let first = seen[name] { throw DatasetError.badSpreadsheet(path: path, entry: sheetName, cell: cell, reason: "class '\(name)' already in \(first)") }
            seen[name] = cell
            names.append(name)
        }
        guard !names.isEmpty else { throw DatasetError.empty(path: path, what: "class names below the header row") }
        return names
    }

    /// "B7" for column 1, row 7.
    public static func cellName(column: Int, row: Int) -> String {
        var c = column + 1, letters = ""
        while c > 0 { letters = String(UnicodeScalar(UInt8(65 + (c - 1) % 26))) + letters; c = (c - 1) / 26 }
        return "\(letters)\(row)"
    }

    /// Column index of a cell reference ("AB12" -> 27), nil when it has no letters or too many.
    static func column(ofReference ref: String) -> Int? {
        var c = 0, n = 0
        for u in ref.utf8 {
            guard u >= 65 && u <= 90 else { break }
            c = c * 26 + Int(u - 64); n += 1
            if n > 3 { return nil }
        }
        return n == 0 ? nil : c - 1
    }
}

/// Refuses DTDs before libxml2 sees the bytes.
private func refuseDTD(_ data: Data, path: String, entry: String) throws {
    if data.range(of: Data("<!DOCTYPE".utf8)) != nil || data.range(of: Data("<!ENTITY".utf8)) != nil {
        throw DatasetError.badSpreadsheet(path: path, entry: entry, cell: nil, reason: "has a DTD (<!DOCTYPE / <!ENTITY); DTDs and entity declarations are refused")
    }
}

/// The shared parts of the three readers: a parser with external entities off, DTD declarations fatal,
/// and the first error kept (libxml2's or a limit's).
private class XMLReaderBase: NSObject, XMLParserDelegate {
    let path: String, entry: String
    let limits: SpreadsheetLimits
    var failure: DatasetError?

    init(path: String, entry: String, limits: SpreadsheetLimits) { (self.path, self.entry, self.limits) = (path, entry, limits) }

    func run(_ data: Data) throws {
        try refuseDTD(data, path: path, entry: entry)
        let parser = XMLParser(data: data)
        parser.shouldResolveExternalEntities = false
        parser.shouldProcessNamespaces = false
        parser.delegate = self
        let ok = parser.parse()
        if let failure { throw failure }
        if !ok {
            throw DatasetError.badSpreadsheet(path: path, entry: entry, cell: nil,
                                              reason: "malformed XML at line \(parser.lineNumber), column \(parser.columnNumber): \(parser.parserError.map { "\($0.localizedDescription)" } ?? "parse error")")
        }
    }

    func stop(_ parser: XMLParser, cell: String? = nil, _ reason: String) {
        if failure == nil { failure = .badSpreadsheet(path: path, entry: entry, cell: cell, reason: reason) }
        parser.abortParsing()
    }

    // The element callbacks live here so that they are the protocol's witnesses (on Linux XMLParser calls
    // its delegate through the protocol, and a subclass's own methods would never be called); readers override.
    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {}
    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {}
    func parser(_ parser: XMLParser, foundCharacters s: String) {}

    func parser(_ parser: XMLParser, foundInternalEntityDeclarationWithName name: String, value: String?) { stop(parser, "declares entity '\(name)'; entities are refused") }
    func parser(_ parser: XMLParser, foundExternalEntityDeclarationWithName name: String, publicID: String?, systemID: String?) { stop(parser, "declares external entity '\(name)'; entities are refused") }
    func parser(_ parser: XMLParser, foundUnparsedEntityDeclarationWithName name: String, publicID: String?, systemID: String?, notationName: String?) { stop(parser, "declares entity '\(name)'; entities are refused") }
    func parser(_ parser: XMLParser, resolveExternalEntityName name: String, systemID: String?) -> Data? { stop(parser, "refers to external entity '\(name)'"); return nil }
}

/// Every element's name and attributes (workbook.xml and its relationships: small files).
private final class XMLScan: XMLReaderBase {
    var elements: [(name: String, attributes: [String: String])] = []

    init(_ data: Data, path: String, entry: String, limits: SpreadsheetLimits) throws {
        super.init(path: path, entry: entry, limits: limits)
        try run(data)
    }

    override func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        if elements.count >= 100_000 { return stop(parser, "more than 100000 elements (element limit)") }
        elements.append((name, attributes))
    }
}

/// xl/sharedStrings.xml: <sst><si><t>text</t></si> or rich text <si><r><t>a</t></r><r><t>b</t></r></si>;
/// phonetic runs (<rPh>) are not part of the text.
private final class SharedStrings: XMLReaderBase {
    var strings: [String] = []
    private var current: String?
    private var chars = 0
    private var inText = false, inPhonetic = false

    init(_ data: Data, path: String, limits: SpreadsheetLimits) throws {
        super.init(path: path, entry: "xl/sharedStrings.xml", limits: limits)
        try run(data)
    }

    override func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        switch name {
        case "si":
            if strings.count >= limits.maxSharedStrings { return stop(parser, "more than \(limits.maxSharedStrings) shared strings (shared-string limit)") }
            current = ""; chars = 0
        case "t": inText = current != nil && !inPhonetic
        case "rPh": inPhonetic = true
        default: break
        }
    }

    override func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        switch name {
        case "si": strings.append(current ?? ""); current = nil
        case "t": inText = false
        case "rPh": inPhonetic = false
        default: break
        }
    }

    override func parser(_ parser: XMLParser, foundCharacters s: String) {
        guard inText, current != nil else { return }
        current! += s
        chars += s.count
        if chars > limits.maxCellChars {
            stop(parser, "shared string \(strings.count) is longer than \(limits.maxCellChars) characters (cell size limit)")
        }
    }
}

/// A worksheet: <sheetData><row r="1"><c r="A1" t="s"><v>0</v></c>...; cell types s (shared string),
/// inlineStr (<is><t>), str, n, b and e all read as their text.
private final class SheetReader: XMLReaderBase {
    var rows: [(row: Int, cells: [Int: String])] = []
    let shared: [String]
    private var rowNumber = 0, column = 0
    private var cellType: String?
    private var cellRef = ""
    private var value: String?
    private var chars = 0
    private var inValue = false

    init(_ data: Data, path: String, entry: String, shared: [String], limits: SpreadsheetLimits) throws {
        self.shared = shared
        super.init(path: path, entry: entry, limits: limits)
        try run(data)
    }

    override func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        switch name {
        case "row":
            if rows.count >= limits.maxRows { return stop(parser, "more than \(limits.maxRows) rows (row limit)") }
            let r = attributes["r"].flatMap { Int($0) } ?? rowNumber + 1
            guard r > rowNumber, r <= 1_048_576 else { return stop(parser, "row number \(attributes["r"] ?? "?") out of order or beyond 1048576") }
            rowNumber = r
            column = -1
            rows.append((r, [:]))
        case "c":
            guard !rows.isEmpty else { return stop(parser, "a cell outside any row") }
            let c = attributes["r"].flatMap(Spreadsheet.column(ofReference:)) ?? column + 1
            guard c > column, c < limits.maxColumns else {
                return stop(parser, cell: attributes["r"], "column out of order or beyond \(limits.maxColumns) (column limit)")
            }
            column = c
            cellType = attributes["t"]
            cellRef = Spreadsheet.cellName(column: c, row: rowNumber)
            value = nil; chars = 0
        case "v", "t":
            inValue = rows.last != nil && column >= 0
            if inValue && value == nil { value = "" }
        default: break
        }
    }

    override func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        switch name {
        case "v", "t": inValue = false
        case "c":
            guard let v = value else { return }
            var text = v
            if cellType == "s" {
                guard let i = Int(v.trimmingCharacters(in: .whitespaces)), i >= 0, i < shared.count else {
                    return stop(parser, cell: cellRef, "shared string index '\(v)' outside 0..<\(shared.count)")
                }
                text = shared[i]
            }
            rows[rows.count - 1].cells[column] = text
        default: break
        }
    }

    override func parser(_ parser: XMLParser, foundCharacters s: String) {
        guard inValue, value != nil else { return }
        value! += s
        chars += s.count
        if chars > limits.maxCellChars { stop(parser, cell: cellRef, "longer than \(limits.maxCellChars) characters (cell size limit)") }
    }
}
