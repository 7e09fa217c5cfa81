// A pickle virtual machine that executes nothing (protocols 0-5).
// Mirrors CPython's Lib/pickle.py _Unpickler opcode by opcode, but every
// GLOBAL resolves through an allowlist and every REDUCE/NEWOBJ/BUILD is
// interpreted as data (PickleGlobals.swift); SECURITY.md items 1-11.

import Foundation

public struct PickleLimits: Sendable {
    /// Most memo entries.
    public var maxMemo = 1 << 20
    /// Most values created (containers, strings, tensors...).
    public var maxObjects = 4_000_000
    /// Deepest MARK stack and tuple nesting.
    public var maxDepth = 1000
    /// Largest single string/bytes object.
    public var maxStringBytes = 1 << 31
    public init() {}

    /// Largest LONG1/LONG4 integer, in bytes.
    public static let maxLongBytes = 1 << 20
    /// Most decimal digits of a text LONG (its conversion is quadratic in the digits).
    public static let maxLongDigits = 4095
}

public final class PickleVM {
    /// Called for PERSID/BINPERSID; returns the object the id names (a storage).
    public typealias PersistentLoad = (PickleValue) throws -> PickleValue

    let data: Bytes
    let base: Int
    var pos: Int
    let end: Int
    let limits: PickleLimits
    let persistentLoad: PersistentLoad?

    var stack: [PickleValue] = []
    var marks: [Int] = []
    var memo: [Int: PickleValue] = [:]
    var objects = 0
    /// Nested tuples visited while computing tuple depths, bounded by `maxObjects`: a tuple
    /// built from shared tuples (BINGET, DUP) would otherwise be walked exponentially often.
    var tupleVisits = 0
    var frameEnd: Int? = nil
    var opStart = 0
    /// Protocol declared by PROTO (0 if none).
    public private(set) var proto = 0
    /// Every container created, so teardown can break the graph without deep recursion.
    var containers: [AnyObject] = []

    /// Unpickles `data[offset...]` up to its STOP. `base` is added to offsets in messages.
    public init(_ data: Bytes, offset: Int = 0, base: Int = 0, limits: PickleLimits = PickleLimits(),
                persistentLoad: PersistentLoad? = nil) {
        self.data = data
        self.pos = offset
        self.end = data.count
        self.base = base
        self.limits = limits
        self.persistentLoad = persistentLoad
    }

    /// Breaks every container's references iteratively so that freeing a deeply
    /// nested or cyclic structure cannot overflow the stack. Callers extract what
    /// they need from `load()`'s result first, then call this (readers use `defer`).
    public func dispose() {
        for c in containers {
            if let l = c as? PickleList { l.items = [] }
            if let d = c as? PickleDict { d.removeAll() }
        }
        containers = []
        stack = []
        memo = [:]
    }

    /// Walks the loaded value as a consumer expanding it would (shared references
    /// counted each time they are reached) and refuses memo "laughs" bombs, cycles
    /// and deep nesting before anyone recurses into it.
    public func checkStructure(_ root: PickleValue) throws {
        var work: [(PickleValue, Int)] = [(root, 1)]
        var visits = 0
        while let (v, depth) = work.popLast() {
            visits += 1
            if visits > limits.maxObjects {
                throw FormatError.limit("pickle structure expands to more than \(limits.maxObjects) objects (object limit; a memo bomb or a cycle)")
            }
            if depth > limits.maxDepth {
                throw FormatError.limit("pickle structure nests deeper than \(limits.maxDepth) levels (depth limit)")
            }
            switch v {
            case .tuple(let xs): for x in xs { work.append((x, depth + 1)) }
            case .list(let l): for x in l.items { work.append((x, depth + 1)) }
            case .dict(let d):
                for (k, x) in d.entries { work.append((k, depth + 1)); work.append((x, depth + 1)) }
                if let a = d.attributes { work.append((a, depth + 1)) }
            default: break
            }
        }
    }

    /// Position just after STOP once `load()` returned.
    public var position: Int { pos }

    // MARK: reading

    func fail(_ message: String) -> FormatError {
        FormatError.malformed(message, at: "pickle offset \(base + opStart)")
    }

    @inline(__always) func need(_ n: Int) throws {
        if n < 0 || n > end - pos { throw fail("truncated pickle: needs \(n) more bytes at offset \(base + pos), \(end - pos) remain") }
        if let fe = frameEnd, pos + n > fe { throw fail("opcode crosses the end of its FRAME at offset \(base + fe)") }
    }

    func u8() throws -> UInt8 { try need(1); defer { pos += 1 }; return data.raw[pos] }
    func u16() throws -> Int { try need(2); defer { pos += 2 }; return Int(UInt16(littleEndian: data.raw.loadUnaligned(fromByteOffset: pos, as: UInt16.self))) }
    func u32() throws -> Int { try need(4); defer { pos += 4 }; return Int(UInt32(littleEndian: data.raw.loadUnaligned(fromByteOffset: pos, as: UInt32.self))) }
    func i32() throws -> Int { try need(4); defer { pos += 4 }; return Int(Int32(littleEndian: data.raw.loadUnaligned(fromByteOffset: pos, as: Int32.self))) }
    func u64() throws -> Int {
        try need(8)
        let v = UInt64(littleEndian: data.raw.loadUnaligned(fromByteOffset: pos, as: UInt64.self))
        pos += 8
        guard v <= UInt64(Int.max) else { throw fail("length \(v) is absurd") }
        return Int(v)
    }
    func take(_ n: Int) throws -> Bytes {
        try checkStringSize(n)
        try need(n)
        defer { pos += n }
        return data.slice(pos, n)
    }
    func checkStringSize(_ n: Int) throws {
        if n > limits.maxStringBytes { throw FormatError.limit("object of \(n) bytes exceeds the limit of \(limits.maxStringBytes)", at: "pickle offset \(base + opStart)") }
    }
    func line() throws -> String {
        var i = pos
        let stop = frameEnd ?? end
        while i < stop && data.raw[i] != 0x0A { i += 1 }
        if i >= stop { throw fail("truncated pickle: unterminated text argument") }
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: data.raw[pos ..< i]), as: UTF8.self)
        pos = i + 1
        return s
    }

    // MARK: stack

    func push(_ v: PickleValue) throws {
        objects += 1
        if objects > limits.maxObjects { throw FormatError.limit("pickle creates more than \(limits.maxObjects) objects (object limit)", at: "pickle offset \(base + opStart)") }
        stack.append(v)
    }
    func pop() throws -> PickleValue {
        if stack.isEmpty || (marks.last.map { stack.count <= $0 } ?? false) { throw fail("stack underflow") }
        return stack.removeLast()
    }
    func top() throws -> PickleValue {
        if stack.isEmpty || (marks.last.map { stack.count <= $0 } ?? false) { throw fail("stack underflow") }
        return stack[stack.count - 1]
    }
    func popMark() throws -> [PickleValue] {
        guard let m = marks.popLast() else { throw fail("no MARK on the stack for this opcode") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }
    func makeList(_ kind: PickleList.Kind) -> PickleList {
        let l = PickleList(kind: kind); containers.append(l); return l
    }
    func makeDict() -> PickleDict {
        let d = PickleDict(); containers.append(d); return d
    }
    func tuple(_ items: [PickleValue]) throws -> PickleValue {
        var depth = 0
        for v in items { if case .tuple = v { depth = max(depth, try tupleDepth(v)) } }
        if depth + 1 > limits.maxDepth { throw FormatError.limit("tuple nesting deeper than \(limits.maxDepth) (depth limit)", at: "pickle offset \(base + opStart)") }
        return .tuple(items)
    }
    func tupleDepth(_ v: PickleValue) throws -> Int {
        // Tuples are immutable, so their depth is fixed when built; compute it iteratively.
        var best = 0
        var work: [(PickleValue, Int)] = [(v, 1)]
        while let (x, d) = work.popLast() {
            tupleVisits += 1
            if tupleVisits > limits.maxObjects {
                throw FormatError.limit("tuples nest through more than \(limits.maxObjects) shared tuples (object limit; a memo bomb of tuples)", at: "pickle offset \(base + opStart)")
            }
            best = max(best, d)
            if d > limits.maxDepth { return d }
            if case .tuple(let xs) = x { for y in xs { if case .tuple = y { work.append((y, d + 1)) } } }
        }
        return best
    }
    func memoPut(_ index: Int, _ v: PickleValue) throws {
        if index < 0 { throw fail("negative memo index \(index)") }
        if memo[index] == nil && memo.count >= limits.maxMemo { throw FormatError.limit("memo holds more than \(limits.maxMemo) entries (memo limit)", at: "pickle offset \(base + opStart)") }
        memo[index] = v
    }
    func memoGet(_ index: Int) throws -> PickleValue {
        guard let v = memo[index] else { throw fail("GET of memo slot \(index), which was never stored") }
        return v
    }

    // MARK: the loop

    /// Runs until STOP and returns the value left on the stack.
    public func load() throws -> PickleValue {
        while true {
            opStart = pos
            if let fe = frameEnd, pos == fe { frameEnd = nil }
            if pos >= end { throw fail("truncated pickle: no STOP opcode before the end of the data") }
            let op = try u8()
            switch op {
            case 0x80: // PROTO
                let p = Int(try u8())
                if p > 5 { throw fail("unsupported pickle protocol \(p) (0-5 are supported)") }
                proto = p
            case 0x95: // FRAME
                try need(8)
                let n64 = UInt64(littleEndian: data.raw.loadUnaligned(fromByteOffset: pos, as: UInt64.self))
                pos += 8
                if n64 > UInt64(end - pos) { throw fail("FRAME length \(n64) exceeds the \(end - pos) bytes that remain") }
                let n = Int(n64)
                if frameEnd != nil { throw fail("FRAME starts inside another FRAME") }
                frameEnd = pos + n
            case 0x2E: // STOP
                if let fe = frameEnd, pos != fe { throw fail("STOP inside a FRAME that has \(fe - pos) bytes left (FRAME length disagrees with its contents)") }
                if !marks.isEmpty { throw fail("STOP with an unclosed MARK") }
                let v = try pop()
                return v
            case 0x28: // MARK
                if marks.count >= limits.maxDepth { throw FormatError.limit("more than \(limits.maxDepth) nested MARKs (depth limit)", at: "pickle offset \(base + opStart)") }
                marks.append(stack.count)
            case 0x30: _ = try pop() // POP
            case 0x31: _ = try popMark() // POP_MARK
            case 0x32: try push(try top()) // DUP
            case 0x4E: try push(.none)
            case 0x88: try push(.bool(true))
            case 0x89: try push(.bool(false))
            case 0x4A: try push(.int(Int64(try i32()))) // BININT
            case 0x4B: try push(.int(Int64(try u8()))) // BININT1
            case 0x4D: try push(.int(Int64(try u16()))) // BININT2
            case 0x49: // INT (text); "01"/"00" are bools in protocol 0
                let s = try line()
                if s == "01" { try push(.bool(true)) } else if s == "00" { try push(.bool(false)) }
                else if let v = Int64(s) { try push(.int(v)) }
                else { throw fail("INT argument '\(s.prefix(40))' is not an integer") }
            case 0x4C: // LONG (text)
                var s = try line()
                if s.hasSuffix("L") { s.removeLast() }
                if let v = Int64(s) { try push(.int(v)) } else {
                    let digits = s.utf8.count - (s.hasPrefix("-") ? 1 : 0)
                    if digits > PickleLimits.maxLongDigits { throw FormatError.limit("LONG of \(digits) digits exceeds the limit of \(PickleLimits.maxLongDigits)", at: "pickle offset \(base + opStart)") }
                    try push(.bigInt(try Self.decimalToBytes(s, fail: fail)))
                }
            case 0x8A: try push(try long(Int(try u8()))) // LONG1
            case 0x8B: // LONG4
                let n = try i32()
                if n < 0 { throw fail("LONG4 with negative length") }
                try push(try long(n))
            case 0x46: // FLOAT (text)
                let s = try line()
                guard let d = Double(s) else { throw fail("FLOAT argument '\(s.prefix(40))' is not a number") }
                try push(.float(d))
            case 0x47: // BINFLOAT, big-endian
                try need(8)
                let bits = UInt64(bigEndian: data.raw.loadUnaligned(fromByteOffset: pos, as: UInt64.self))
                pos += 8
                try push(.float(Double(bitPattern: bits)))
            case 0x53: // STRING
                let b = try Self.unquote(try line(), fail: fail)
                try checkStringSize(b.count)
                try push(.py2String(b))
            case 0x54: // BINSTRING
                let n = try i32()
                if n < 0 { throw fail("BINSTRING with negative length") }
                try push(.py2String(try take(n)))
            case 0x55: try push(.py2String(try take(Int(try u8())))) // SHORT_BINSTRING
            case 0x56: // UNICODE
                let s = Self.rawUnicodeEscape(try line())
                try checkStringSize(s.utf8.count)
                try push(.string(s))
            case 0x58: try push(.string(try utf8(try take(try u32())))) // BINUNICODE
            case 0x8C: try push(.string(try utf8(try take(Int(try u8()))))) // SHORT_BINUNICODE
            case 0x8D: try push(.string(try utf8(try take(try u64())))) // BINUNICODE8
            case 0x42: try push(.bytes(try take(try u32()))) // BINBYTES
            case 0x43: try push(.bytes(try take(Int(try u8())))) // SHORT_BINBYTES
            case 0x8E: try push(.bytes(try take(try u64()))) // BINBYTES8
            case 0x96: try push(.bytes(try take(try u64()))) // BYTEARRAY8
            case 0x29: try push(.tuple([])) // EMPTY_TUPLE
            case 0x74: try push(try tuple(try popMark())) // TUPLE
            case 0x85: let a = try pop(); try push(try tuple([a])) // TUPLE1
            case 0x86: let b = try pop(); let a = try pop(); try push(try tuple([a, b]))
            case 0x87: let c = try pop(); let b = try pop(); let a = try pop(); try push(try tuple([a, b, c]))
            case 0x5D: try push(.list(makeList(.list))) // EMPTY_LIST
            case 0x6C: let l = makeList(.list); l.items = try popMark(); try push(.list(l)) // LIST
            case 0x7D: try push(.dict(makeDict())) // EMPTY_DICT
            case 0x64: // DICT
                let items = try popMark()
                if items.count % 2 != 0 { throw fail("DICT with an odd number of items") }
                let d = makeDict()
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }
                try push(.dict(d))
            case 0x8F: try push(.list(makeList(.set))) // EMPTY_SET
            case 0x91: try push(try tuple(try popMark())) // FROZENSET (kept as a tuple)
            case 0x61: // APPEND
                let v = try pop()
                guard case .list(let l) = try top(), l.kind == .list else { throw fail("APPEND on a non-list (\(try top().typeName))") }
                l.items.append(v)
            case 0x65: // APPENDS
                let items = try popMark()
                guard case .list(let l) = try top(), l.kind == .list else { throw fail("APPENDS on a non-list (\(try top().typeName))") }
                l.items.append(contentsOf: items)
            case 0x90: // ADDITEMS
                let items = try popMark()
                guard case .list(let l) = try top(), l.kind == .set else { throw fail("ADDITEMS on a non-set (\(try top().typeName))") }
                l.items.append(contentsOf: items)
            case 0x73: // SETITEM
                let v = try pop(); let k = try pop()
                guard case .dict(let d) = try top() else { throw fail("SETITEM on a non-dict (\(try top().typeName))") }
                d.set(k, v)
            case 0x75: // SETITEMS
                let items = try popMark()
                if items.count % 2 != 0 { throw fail("SETITEMS with an odd number of items") }
                guard case .dict(let d) = try top() else { throw fail("SETITEMS on a non-dict (\(try top().typeName))") }
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }
            case 0x67: try push(try memoGet(try intLine())) // GET
            case 0x68: try push(try memoGet(Int(try u8()))) // BINGET
            case 0x6A: try push(try memoGet(try u32())) // LONG_BINGET
            case 0x70: try memoPut(try intLine(), try top()) // PUT
            case 0x71: try memoPut(Int(try u8()), try top()) // BINPUT
            case 0x72: try memoPut(try u32(), try top()) // LONG_BINPUT
            case 0x94: try memoPut(memo.count, try top()) // MEMOIZE
            case 0x63: // GLOBAL
                let module = try line(); let name = try line()
                try push(.global(try PickleGlobals.resolve(module: module, name: name, at: "pickle offset \(base + opStart)")))
            case 0x93: // STACK_GLOBAL
                let n = try pop(); let m = try pop()
                guard case .string(let name) = n, case .string(let module) = m else {
                    throw fail("STACK_GLOBAL operands must be strings, found \(m.typeName) and \(n.typeName)")
                }
                try push(.global(try PickleGlobals.resolve(module: module, name: name, at: "pickle offset \(base + opStart)")))
            case 0x69: // INST
                let module = try line(); let name = try line()
                _ = try PickleGlobals.resolve(module: module, name: name, at: "pickle offset \(base + opStart)")
                throw FormatError(.disallowed, "INST of \(module).\(name) is not allowed", at: "pickle offset \(base + opStart)")
            case 0x6F: // OBJ
                let items = try popMark()
                throw FormatError(.disallowed, "OBJ on \(items.first?.typeName ?? "nothing") is not allowed", at: "pickle offset \(base + opStart)")
            case 0x52: // REDUCE
                let args = try pop(); let f = try pop()
                try push(try PickleGlobals.reduce(f, args, vm: self))
            case 0x81: // NEWOBJ
                let args = try pop(); let cls = try pop()
                try push(try PickleGlobals.newObject(cls, args, vm: self))
            case 0x92: // NEWOBJ_EX
                let kwargs = try pop(); let args = try pop(); let cls = try pop()
                if case .dict(let d) = kwargs, !d.entries.isEmpty { throw FormatError(.disallowed, "NEWOBJ_EX with keyword arguments on \(cls.typeName) is not allowed", at: "pickle offset \(base + opStart)") }
                try push(try PickleGlobals.newObject(cls, args, vm: self))
            case 0x62: // BUILD
                let state = try pop()
                try PickleGlobals.build(try top(), state: state, vm: self)
            case 0x50: // PERSID
                let pid = try line()
                guard let persistentLoad else { throw FormatError(.disallowed, "persistent id '\(pid.prefix(40))' in a pickle that allows none", at: "pickle offset \(base + opStart)") }
                try push(try persistentLoad(.string(pid)))
            case 0x51: // BINPERSID
                let pid = try pop()
                guard let persistentLoad else { throw FormatError(.disallowed, "persistent id in a pickle that allows none", at: "pickle offset \(base + opStart)") }
                try push(try persistentLoad(pid))
            case 0x82, 0x83, 0x84:
                throw FormatError(.disallowed, "extension registry opcodes (EXT1/2/4) are not allowed", at: "pickle offset \(base + opStart)")
            case 0x97, 0x98:
                throw FormatError(.disallowed, "out-of-band buffers (NEXT_BUFFER/READONLY_BUFFER) are not allowed", at: "pickle offset \(base + opStart)")
            default:
                throw fail(String(format: "unknown opcode 0x%02x", op))
            }
        }
    }

    func intLine() throws -> Int {
        let s = try line()
        guard let v = Int(s) else { throw fail("expected an integer memo index, found '\(s.prefix(40))'") }
        return v
    }

    func utf8(_ b: Bytes) throws -> String {
        guard let s = String(validating: b.raw, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return s
    }

    func long(_ n: Int) throws -> PickleValue {
        if n > PickleLimits.maxLongBytes { throw FormatError.limit("integer of \(n) bytes exceeds the limit of \(PickleLimits.maxLongBytes)", at: "pickle offset \(base + opStart)") }
        let b = try take(n)
        if n == 0 { return .int(0) }
        if n <= 8 {
            var v: UInt64 = 0
            for i in 0 ..< n { v |= UInt64(b.raw[i]) << (8 * UInt64(i)) }
            if n < 8 && b.raw[n - 1] & 0x80 != 0 { v |= ~UInt64(0) << (8 * UInt64(n)) }
            return .int(Int64(bitPattern: v))
        }
        return .bigInt(b.array)
    }

    static func decimalToBytes(_ s: String, fail: (String) -> FormatError) throws -> [UInt8] {
        // Little-endian two's complement of a decimal literal (used for big LONG text).
        var digits = Array(s.utf8)
        var negative = false
        if digits.first == UInt8(ascii: "-") { negative = true; digits.removeFirst() }
        guard !digits.isEmpty, digits.count <= PickleLimits.maxLongDigits, digits.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { throw fail("LONG argument is not an integer") }
        var mag: [UInt8] = [0]
        for d in digits {
            var carry = Int(d - 48)
            for i in mag.indices { let v = Int(mag[i]) * 10 + carry; mag[i] = UInt8(v & 0xFF); carry = v >> 8 }
            while carry > 0 { mag.append(UInt8(carry & 0xFF)); carry >>= 8 }
        }
        mag.append(0)
        if negative {
            var carry = 1
            for i in mag.indices { let v = Int(~mag[i]) + carry; mag[i] = UInt8(v & 0xFF); carry = v >> 8 }
        }
        return mag
    }

    static func unquote(_ s: String, fail: (String) -> FormatError) throws -> Bytes {
        var chars = Array(s.utf8)
        guard chars.count >= 2, let q = chars.first, q == UInt8(ascii: "'") || q == UInt8(ascii: "\""), chars.last == q else {
            throw fail("STRING argument is not quoted")
        }
        chars = Array(chars[1 ..< chars.count - 1])
        var out: [UInt8] = []
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < chars.count else { throw fail("STRING ends with a backslash") }
            let e = chars[i]
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A); i += 1
            case UInt8(ascii: "r"): out.append(0x0D); i += 1
            case UInt8(ascii: "t"): out.append(0x09); i += 1
            case UInt8(ascii: "x"):
                guard i + 2 < chars.count,
                      let v = UInt8(String(decoding: chars[(i + 1) ... (i + 2)], as: UTF8.self), radix: 16) else {
                    throw fail("bad \\x escape in STRING")
                }
                out.append(v); i += 3
            default: out.append(e); i += 1
            }
        }
        return Bytes.copying(out)
    }

    static func rawUnicodeEscape(_ s: String) -> String {
        guard s.contains("\\u") || s.contains("\\U") else { return s }
        var out = String.UnicodeScalarView()
        let scalars = Array(s.unicodeScalars)
        var i = 0
        while i < scalars.count {
            if scalars[i] == "\\", i + 1 < scalars.count, scalars[i + 1] == "u" || scalars[i + 1] == "U" {
                let n = scalars[i + 1] == "u" ? 4 : 8
                if i + 2 + n <= scalars.count,
                   let v = UInt32(String(String.UnicodeScalarView(scalars[(i + 2) ..< (i + 2 + n)])), radix: 16),
                   let u = Unicode.Scalar(v) {
                    out.append(u); i += 2 + n; continue
                }
            }
            out.append(scalars[i]); i += 1
        }
        return String(out)
    }
}
