// SECURITY.md 25: protobuf-c unpacks nested messages recursively and has no depth
// limit, and ONNX's schema is recursive (a node attribute holds a graph whose nodes
// hold attributes holding graphs; TypeProto nests through sequence/map/optional).
// Before any unpack, this walks the bytes iteratively along exactly those recursive
// fields of onnx.proto and refuses nesting deeper than `maxDepth` and any field that
// claims more bytes than its enclosing message holds. Everything else is skipped by
// its wire type without being interpreted.

import Formats

enum OnnxNesting {
    /// Message levels from ModelProto down (a plain model is ~5 deep; each subgraph adds 3).
    static let maxDepth = 64

    private enum Kind { case model, graph, node, attribute, function, valueInfo, type, typeWrap, training }

    /// The child message kind of field `field` in a message of `kind`, when it is on a recursive path.
    private static func child(_ kind: Kind, _ field: UInt64) -> Kind? {
        switch (kind, field) {
        case (.model, 7): return .graph
        case (.model, 20): return .training
        case (.model, 25): return .function
        case (.training, 1), (.training, 2): return .graph
        case (.graph, 1): return .node
        case (.graph, 11), (.graph, 12), (.graph, 13): return .valueInfo
        case (.node, 5): return .attribute
        case (.function, 7): return .node
        case (.function, 11): return .attribute
        case (.function, 12): return .valueInfo
        case (.attribute, 6), (.attribute, 11): return .graph
        case (.attribute, 14), (.attribute, 15): return .type
        case (.valueInfo, 2): return .type
        case (.type, 4), (.type, 5), (.type, 9): return .typeWrap     // Sequence, Map, Optional
        case (.typeWrap, 1), (.typeWrap, 2): return .type             // elem_type / value_type
        default: return nil
        }
    }

    static func check(_ bytes: UnsafeRawBufferPointer, file: String) throws {
        func fail(_ msg: String) -> FormatError { FormatError(.malformed, msg, file: file) }
        var stack: [(kind: Kind, end: Int)] = [(.model, bytes.count)]
        var i = 0
        func varint() throws -> UInt64 {
            var v: UInt64 = 0
            for shift in stride(from: 0, to: 70, by: 7) {
                guard i < stack.last!.end else { throw fail("protobuf varint runs past the end of its message at offset \(i)") }
                let b = bytes[i]; i += 1
                guard shift < 64 else { throw fail("protobuf varint longer than 10 bytes at offset \(i)") }
                v |= UInt64(b & 0x7f) << UInt64(shift)
                if b & 0x80 == 0 { return v }
            }
            throw fail("protobuf varint longer than 10 bytes at offset \(i)")
        }
        while !stack.isEmpty {
            let (kind, end) = stack.last!
            if i == end { stack.removeLast(); continue }
            let key = try varint()
            let (field, wire) = (key >> 3, key & 7)
            switch wire {
            case 0: _ = try varint()
            case 1, 5:
                let n = wire == 1 ? 8 : 4
                guard end - i >= n else { throw fail("protobuf field \(field) runs past the end of its message at offset \(i)") }
                i += n
            case 2:
                let n = try varint()
                guard n <= UInt64(end - i) else {
                    throw fail("protobuf field \(field) claims \(n) bytes, only \(end - i) remain in its message (offset \(i))")
                }
                if let c = child(kind, field) {
                    guard stack.count < maxDepth else {
                        throw fail("ONNX messages nested deeper than \(maxDepth) levels (offset \(i)); refused before unpacking")
                    }
                    stack.append((c, i + Int(n)))
                } else {
                    i += Int(n)
                }
            default:
                throw fail("protobuf wire type \(wire) (field \(field)) at offset \(i) is not valid in ONNX")
            }
        }
    }
}
