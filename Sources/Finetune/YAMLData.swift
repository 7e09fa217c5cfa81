// PySlowFast YAML configs read as data (SECURITY.md case 34): plain and quoted scalars, sequences
// and mappings, nothing else. Anchors/aliases, tags (`!!python/object`...), merge keys (`<<`),
// directives and multi-document streams are refused with the file and line; size, depth and
// node-count limits bound the work.
//
// Why a lexical pre-scan before Yams: Yams resolves aliases while composing (its Parser returns
// the anchored node in place of each alias), so the tree it hands back no longer shows them, and
// a "billion laughs" whose aliases are mapping keys is hashed exponentially by the composer's
// duplicate-key check before we could look. So `prescan` walks the bytes first, tracking quoted
// strings and comments, and refuses `&`, `*` and `!` where a node starts (line start, after
// `key: `, `- `, `? `, `[`, `{`, `,`), `<<` keys, `%` directives and a second document; it also
// counts block indentation levels and flow brackets for the depth limit. It is conservative: a
// plain scalar continued onto a line that starts with `*` is refused too (quote it). The composed
// tree is then checked again (anchors, tags, `<<`, depth, node count) as a second guard.

import Foundation
import Yams

/// A scalar as written: its text, whether it was plain (unquoted: the only form YAML 1.1 types as
/// bool/int/float), and its line.
public struct YAMLScalar: Sendable, Equatable {
    public var text: String
    public var plain: Bool
    public var line: Int
}

/// A YAML document as data.
public indirect enum YAMLNode: Sendable {
    case scalar(YAMLScalar)
    case sequence([YAMLNode], line: Int)
    case mapping([YAMLEntry], line: Int)

    public var line: Int {
        switch self {
        case .scalar(let s): return s.line
        case .sequence(_, let l), .mapping(_, let l): return l
        }
    }
}

public struct YAMLEntry: Sendable {
    public var key: String
    public var value: YAMLNode
    public var line: Int
}

/// A refused or unreadable YAML file: file, line (when known), what and why.
public struct YAMLError: Error, LocalizedError, CustomStringConvertible, Equatable {
    public enum Kind: String, Sendable {
        case tooLarge, notUTF8, syntax, anchorOrAlias, tag, mergeKey, directive, multipleDocuments, tooDeep, tooManyNodes, notAMapping, unreadable
    }
    public let kind: Kind
    public let file: String
    public let line: Int?
    public let message: String
    public init(_ kind: Kind, file: String, line: Int?, _ message: String) {
        (self.kind, self.file, self.line, self.message) = (kind, file, line, message)
    }
    public var description: String { "\(file)\(line.map { ":\($0)" } ?? ""): \(message)" }
    public var errorDescription: String? { description }
}

public enum YAMLData {
    /// Largest config file read (PySlowFast configs are a few KiB).
    public static let maxBytes = 1 << 20
    /// Deepest nesting of sequences and mappings (PySlowFast configs nest 3 deep: NONLOCAL.POOL).
    public static let maxDepth = 32
    /// Most nodes in a document.
    public static let maxNodes = 100_000

    /// Reads and checks `path` (size first, without reading more than the limit).
    public static func load(_ path: String) throws -> YAMLNode {
        guard let h = FileHandle(forReadingAtPath: path) else {
            throw YAMLError(.unreadable, file: path, line: nil, "cannot open the config file")
        }
        defer { try? h.close() }
        let data = (try? h.read(upToCount: maxBytes + 1)) ?? Data()
        guard data.count <= maxBytes else {
            throw YAMLError(.tooLarge, file: path, line: nil, "the config is larger than \(maxBytes) bytes (the limit; PySlowFast configs are a few KiB)")
        }
        return try parse(data, file: path)
    }

    /// Checks and composes one document.
    public static func parse(_ data: Data, file: String) throws -> YAMLNode {
        guard data.count <= maxBytes else {
            throw YAMLError(.tooLarge, file: file, line: nil, "the config is larger than \(maxBytes) bytes (the limit; PySlowFast configs are a few KiB)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw YAMLError(.notUTF8, file: file, line: nil, "the config is not UTF-8 text")
        }
        try prescan(Array(data), file: file)
        let parser: Parser
        let root: Node?
        do {
            parser = try Parser(yaml: text)
            root = try parser.singleRoot()
        } catch let e as YamlError {
            throw syntax(e, file: file)
        }
        guard let root else { throw YAMLError(.notAMapping, file: file, line: nil, "the config is empty") }
        var nodes = 0
        // Anchors are weak references owned by the parser: keep it alive while the tree is walked.
        return try withExtendedLifetime(parser) { try convert(root, depth: 1, nodes: &nodes, file: file) }
    }

    static func syntax(_ e: YamlError, file: String) -> YAMLError {
        var line: Int?
        switch e {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): line = mark.line
        default: break
        }
        let first = "\(e)".split(separator: "\n").first.map(String.init) ?? "\(e)"
        // Yams prefixes "LINE:COLUMN: error: "; keep the problem.
        let problem = first.range(of: "error: ").map { String(first[$0.upperBound...]) } ?? first
        if problem.contains("another document") {
            return YAMLError(.multipleDocuments, file: file, line: line, "more than one YAML document; a config is one mapping")
        }
        return YAMLError(.syntax, file: file, line: line, "not valid YAML: \(problem)")
    }

    // MARK: the tree

    static func convert(_ node: Node, depth: Int, nodes: inout Int, file: String) throws -> YAMLNode {
        nodes += 1
        let line = node.mark?.line ?? 0
        guard nodes <= maxNodes else { throw YAMLError(.tooManyNodes, file: file, line: line, "more than \(maxNodes) YAML nodes") }
        guard depth <= maxDepth else { throw YAMLError(.tooDeep, file: file, line: line, "nested deeper than \(maxDepth) levels") }
        switch node {
        case .scalar(let s):
            if s.anchor != nil { throw anchor(file, line) }
            let quoted = s.style != .plain
            guard Self.plainTag(s.tag, quoted: quoted) else { throw tag(s.tag.rawValue, file, line) }
            return .scalar(YAMLScalar(text: s.string, plain: !quoted, line: line))
        case .sequence(let q):
            if q.anchor != nil { throw anchor(file, line) }
            guard resolvedTags.contains(q.tag.rawValue) else { throw tag(q.tag.rawValue, file, line) }
            return .sequence(try q.map { try convert($0, depth: depth + 1, nodes: &nodes, file: file) }, line: line)
        case .mapping(let m):
            if m.anchor != nil { throw anchor(file, line) }
            guard resolvedTags.contains(m.tag.rawValue) else { throw tag(m.tag.rawValue, file, line) }
            var entries: [YAMLEntry] = []
            for (k, v) in m {
                let kl = k.mark?.line ?? line
                guard case .scalar(let ks) = k else {
                    throw YAMLError(.syntax, file: file, line: kl, "a mapping key is not a scalar; config keys are names")
                }
                if ks.anchor != nil { throw anchor(file, kl) }
                if ks.style == .plain && ks.string == "<<" { throw merge(file, kl) }
                guard Self.plainTag(ks.tag, quoted: ks.style != .plain) else { throw tag(ks.tag.rawValue, file, kl) }
                entries.append(YAMLEntry(key: ks.string, value: try convert(v, depth: depth + 1, nodes: &nodes, file: file), line: kl))
            }
            return .mapping(entries, line: line)
        case .alias:
            throw anchor(file, line)
        }
    }

    /// Tags Yams gives untagged nodes: it resolves implicit tags in place (Tag is a class) while composing,
    /// so an explicit `!!str` looks the same as a resolved plain scalar here; the pre-scan refuses every
    /// explicit tag, and this check refuses any other (`!!python/object:...`, `!custom`).
    static let resolvedTags: Set<String> = ["", "str", "int", "float", "bool", "null", "seq", "map", "timestamp"].reduce(into: []) {
        $0.insert($1.isEmpty ? "" : "tag:yaml.org,2002:" + $1)
    }
    static func plainTag(_ t: Tag, quoted: Bool) -> Bool { resolvedTags.contains(t.rawValue) }

    static func anchor(_ file: String, _ line: Int) -> YAMLError {
        YAMLError(.anchorOrAlias, file: file, line: line, "anchors and aliases (&name, *name) are refused: a config is read as plain data (the 'billion laughs' expansion)")
    }
    static func tag(_ name: String, _ file: String, _ line: Int) -> YAMLError {
        YAMLError(.tag, file: file, line: line, "YAML tags (\(name.isEmpty ? "!" : name)) are refused: a config is read as plain data, never as objects")
    }
    static func merge(_ file: String, _ line: Int) -> YAMLError {
        YAMLError(.mergeKey, file: file, line: line, "merge keys (<<) are refused: write the keys out")
    }

    // MARK: the pre-scan

    /// The lexical checks that run before Yams composes anything (see the header).
    static func prescan(_ b: [UInt8], file: String) throws {
        let n = b.count
        var i = 0, line = 1
        var inSingle = false, inDouble = false
        var flow = 0
        var indents: [Int] = []
        var nodeStart = false
        var sawContent = false, documentEnded = false
        func at(_ k: Int) -> UInt8 { k < n ? b[k] : 0 }
        func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D || c == 0 }
        func deep(_ depth: Int) throws {
            if depth > maxDepth { throw YAMLError(.tooDeep, file: file, line: line, "nested deeper than \(maxDepth) levels") }
        }
        var lineStart = true
        while i < n {
            let c = b[i]
            if inSingle || inDouble {
                if c == 0x0A { line += 1 }
                if inSingle && c == 0x27 {                                   // '' is an escaped quote
                    if at(i + 1) == 0x27 { i += 2; continue }
                    inSingle = false
                } else if inDouble && c == 0x5C {                            // backslash escape
                    if at(i + 1) == 0x0A { line += 1 }
                    i += 2; continue
                } else if inDouble && c == 0x22 {
                    inDouble = false
                }
                i += 1
                continue
            }
            if lineStart {
                lineStart = false
                var col = 0
                while at(i + col) == 0x20 { col += 1 }
                let first = at(i + col)
                if first == 0x0A || first == 0x0D || first == 0x23 || first == 0 {   // blank or comment line
                    while i < n && b[i] != 0x0A { i += 1 }
                    continue
                }
                if col == 0 && first == 0x25 {                                // %YAML, %TAG
                    throw YAMLError(.directive, file: file, line: line, "YAML directives (%...) are refused")
                }
                let marker = col == 0 && isBlank(at(i + 3))
                if marker && b[i] == 0x2D && at(i + 1) == 0x2D && at(i + 2) == 0x2D {      // ---
                    if sawContent { throw YAMLError(.multipleDocuments, file: file, line: line, "a second YAML document ('---'); a config is one mapping") }
                    i += 3; nodeStart = true; sawContent = true
                    continue
                }
                if marker && b[i] == 0x2E && at(i + 1) == 0x2E && at(i + 2) == 0x2E {      // ...
                    documentEnded = true
                    i += 3
                    continue
                }
                if documentEnded { throw YAMLError(.multipleDocuments, file: file, line: line, "content after the end of the document ('...'); a config is one mapping") }
                sawContent = true
                if flow == 0 {
                    while let t = indents.last, t > col { indents.removeLast() }
                    if indents.last != col { indents.append(col) }
                    // Compact nesting on one line ("- - - x", "? - x") adds a level per indicator.
                    var k = i + col, compact = 0
                    while (at(k) == 0x2D || at(k) == 0x3F) && isBlank(at(k + 1)) && at(k + 1) != 0x0A {
                        compact += 1; k += 2
                        while at(k) == 0x20 { k += 1 }
                    }
                    try deep(indents.count + compact)
                }
                i += col
                nodeStart = true
                continue
            }
            switch c {
            case 0x0A:
                line += 1; lineStart = true
            case 0x20, 0x09, 0x0D:
                break
            case 0x23:                                                       // # comment (after a blank)
                if i == 0 || isBlank(b[i - 1]) { while i < n && b[i] != 0x0A { i += 1 }; continue }
                nodeStart = false
            case 0x27, 0x22:                                                 // a quote opens a string only where a node starts
                if nodeStart || flow > 0 && (i > 0 && [0x5B, 0x7B, 0x2C, 0x20].contains(b[i - 1])) {
                    if c == 0x27 { inSingle = true } else { inDouble = true }
                }
                nodeStart = false
            case 0x26, 0x2A, 0x21:                                           // & * !
                if nodeStart {
                    if c == 0x21 { throw YAMLError(.tag, file: file, line: line, "YAML tags (!...) are refused: a config is read as plain data, never as objects") }
                    throw anchor(file, line)
                }
            case 0x5B, 0x7B:                                                 // [ {
                if nodeStart || flow > 0 {
                    flow += 1
                    try deep(indents.count + flow)
                    nodeStart = true
                } else { nodeStart = false }
            case 0x5D, 0x7D:                                                 // ] }
                if flow > 0 { flow -= 1 }
                nodeStart = false
            case 0x2C:                                                       // ,
                nodeStart = flow > 0
            case 0x3A:                                                       // : then a blank (or a flow indicator) starts a value
                let next = at(i + 1)
                nodeStart = isBlank(next) || (flow > 0 && [0x2C, 0x5D, 0x7D].contains(next))
            case 0x2D, 0x3F:                                                 // - ? block indicators
                if !(nodeStart && isBlank(at(i + 1))) { nodeStart = false }
            case 0x3C:                                                       // << as a key
                if nodeStart && at(i + 1) == 0x3C {
                    var k = i + 2
                    while at(k) == 0x20 { k += 1 }
                    if at(k) == 0x3A { throw merge(file, line) }
                }
                nodeStart = false
            default:
                nodeStart = false
            }
            i += 1
        }
    }
}
