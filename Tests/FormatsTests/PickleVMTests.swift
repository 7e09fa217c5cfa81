// The pickle VM on hand-built streams: what it accepts and what it refuses.

import XCTest
@testable import Formats

final class PickleVMTests: XCTestCase {
    /// VMs are kept until tearDown: disposing a VM empties the containers it built.
    var vms: [PickleVM] = []
    override func tearDown() { vms.forEach { $0.dispose() }; vms = [] }

    func load(_ b: PickleBuilder) throws -> PickleValue {
        let vm = PickleVM(b.data)
        vms.append(vm)
        return try vm.load()
    }

    func error(_ b: PickleBuilder, file: StaticString = #filePath, line: UInt = #line) -> String {
        do { _ = try load(b); XCTFail("expected an error", file: file, line: line); return "" } catch { return "\(error)" }
    }

    func testProtocol2DictWithMemoAndLong() throws {
        var b = PickleBuilder()
        b.proto(2); b.op(0x7D); b.op(0x71); b.raw([0]) // EMPTY_DICT BINPUT 0
        b.op(0x28) // MARK
        b.binUnicode("epoch"); b.binint1(7)
        b.binUnicode("big"); b.raw([0x8A, 0x09, 1, 0, 0, 0, 0, 0, 0, 0, 1]) // LONG1 9 bytes
        b.binUnicode("neg"); b.raw([0x8A, 0x01, 0xFF]) // -1
        b.op(0x75); b.stop()
        guard case .dict(let d) = try load(b) else { return XCTFail("not a dict") }
        XCTAssertEqual(d.value(forKey: "epoch")?.intValue, 7)
        XCTAssertEqual(d.value(forKey: "neg")?.intValue, -1)
        guard case .bigInt(let bytes)? = d.value(forKey: "big") else { return XCTFail("big int") }
        XCTAssertEqual(bytes.count, 9)
    }

    func testProtocol4FrameStackGlobalAndMemoize() throws {
        var inner = PickleBuilder()
        inner.op(0x5D); inner.op(0x94) // EMPTY_LIST MEMOIZE
        inner.shortUnicode("collections"); inner.op(0x94); inner.shortUnicode("OrderedDict"); inner.op(0x94)
        inner.op(0x93); inner.op(0x94) // STACK_GLOBAL
        inner.op(0x29); inner.op(0x52) // EMPTY_TUPLE REDUCE -> OrderedDict()
        inner.op(0x61) // APPEND to list
        inner.raw([0x68, 0]) // BINGET 0 (the list)
        inner.op(0x85) // TUPLE1
        inner.stop()
        var b = PickleBuilder()
        b.proto(4)
        b.raw([0x95] + (0 ..< 8).map { UInt8((inner.bytes.count >> (8 * $0)) & 0xFF) })
        b.raw(inner.bytes)
        guard case .tuple(let t) = try load(b), case .list(let l) = t[0], case .dict(let d) = l.items[0] else { return XCTFail("shape") }
        XCTAssertTrue(d.isOrdered)
    }

    func testFrameLengthDisagreeingWithContentsIsRefused() {
        var b = PickleBuilder()
        b.proto(4)
        b.raw([0x95, 10, 0, 0, 0, 0, 0, 0, 0]) // FRAME of 10, but only 2 bytes follow
        b.op(0x4E); b.stop()
        XCTAssertTrue(error(b).contains("FRAME"))
        var c = PickleBuilder()
        c.proto(4)
        c.raw([0x95, 1, 0, 0, 0, 0, 0, 0, 0]) // FRAME of 1, the STOP lies outside it: fine per CPython
        c.op(0x4E); c.stop()
        XCTAssertNoThrow(try load(c))
        var d = PickleBuilder()
        d.proto(4)
        d.raw([0x95, 4, 0, 0, 0, 0, 0, 0, 0]) // BININT straddles the frame end
        d.raw([0x4A, 1, 0, 0, 0]); d.stop()
        XCTAssertTrue(error(d).contains("FRAME"))
    }

    func testPython2StringsAreLatin1() throws {
        var b = PickleBuilder()
        b.proto(2)
        b.raw([0x55, 3, 0x72, 0xE9, 0x73]) // SHORT_BINSTRING "rés" in latin-1
        b.stop()
        let v = try load(b)
        XCTAssertEqual(v.stringValue, "rés")
        var t = PickleBuilder()
        t.raw(Array("S'a\\x41\\n'\n".utf8)); t.stop() // protocol 0 STRING with escapes
        XCTAssertEqual(try load(t).stringValue, "aA\n")
    }

    func testProtocol0TextOpcodes() throws {
        var b = PickleBuilder()
        b.raw(Array("(lp0\nI1\naI-5\naL12345678901234567890L\naF1.5\naVcaf\\u00e9\na.".utf8))
        guard case .list(let l) = try load(b) else { return XCTFail("list") }
        XCTAssertEqual(l.items.count, 5)
        XCTAssertEqual(l.items[1].intValue, -5)
        XCTAssertEqual(l.items[4].stringValue, "café")
        if case .bigInt = l.items[2] {} else { XCTFail("big LONG") }
    }

    func testDisallowedGlobalIsNamedAndNothingRuns() {
        for (m, n) in [("os", "system"), ("builtins", "eval"), ("subprocess", "Popen"), ("torch.jit", "load"), ("__builtin__", "getattr")] {
            var b = PickleBuilder()
            b.proto(2); b.global(m, n); b.binUnicode("touch /tmp/x"); b.op(0x85); b.op(0x52); b.stop()
            let e = error(b)
            XCTAssertTrue(e.contains("'\(m).\(n)' is not allowed"), e)
        }
    }

    func testStackGlobalWithNonStringOperandsIsRefused() {
        var b = PickleBuilder()
        b.proto(4); b.binint1(1); b.binint1(2); b.op(0x93); b.stop()
        XCTAssertTrue(error(b).contains("STACK_GLOBAL"))
    }

    func testSetItemOnListAndAppendOnDictAreRefused() {
        var b = PickleBuilder()
        b.proto(2); b.op(0x5D); b.binint1(1); b.binint1(2); b.op(0x73); b.stop()
        XCTAssertTrue(error(b).contains("non-dict"))
        var c = PickleBuilder()
        c.proto(2); c.op(0x7D); c.binint1(1); c.op(0x61); c.stop()
        XCTAssertTrue(error(c).contains("non-list"))
    }

    func testReduceOnNonCallableIsRefused() {
        var b = PickleBuilder()
        b.proto(2); b.op(0x29); b.op(0x29); b.op(0x52); b.stop() // REDUCE with a tuple as callable
        XCTAssertTrue(error(b).contains("REDUCE"))
        var c = PickleBuilder()
        c.proto(2); c.global("torch", "FloatStorage"); c.op(0x29); c.op(0x52); c.stop()
        XCTAssertTrue(error(c).contains("REDUCE"))
        var d = PickleBuilder()
        d.proto(2); d.op(0x5D); d.op(0x7D); d.op(0x62); d.stop() // BUILD on a list
        XCTAssertTrue(error(d).contains("BUILD"))
    }

    func testCorruptStreamsAreRejected() {
        var underflow = PickleBuilder(); underflow.proto(2); underflow.op(0x30); underflow.stop()
        XCTAssertTrue(error(underflow).contains("stack underflow"))
        var noMark = PickleBuilder(); noMark.proto(2); noMark.op(0x5D); noMark.op(0x65); noMark.stop()
        XCTAssertTrue(error(noMark).contains("MARK"))
        var memo = PickleBuilder(); memo.proto(2); memo.raw([0x68, 9]); memo.stop()
        XCTAssertTrue(error(memo).contains("memo"))
        var noStop = PickleBuilder(); noStop.proto(2); noStop.op(0x4E)
        XCTAssertTrue(error(noStop).contains("truncated"))
        var cut = PickleBuilder(); cut.proto(2); cut.raw([0x58, 0xFF, 0xFF, 0xFF])
        XCTAssertTrue(error(cut).contains("truncated"))
        var unknown = PickleBuilder(); unknown.proto(2); unknown.op(0xFF); unknown.stop()
        XCTAssertTrue(error(unknown).contains("unknown opcode 0xff"))
        var proto = PickleBuilder(); proto.proto(6); proto.op(0x4E); proto.stop()
        XCTAssertTrue(error(proto).contains("protocol 6"))
    }

    func testBudgetsStopBombs() {
        var marks = PickleBuilder(); marks.proto(2)
        marks.raw([UInt8](repeating: 0x28, count: 5000)); marks.stop()
        XCTAssertTrue(error(marks).contains("limit"))
        var tuples = PickleBuilder(); tuples.proto(2); tuples.op(0x29)
        tuples.raw([UInt8](repeating: 0x85, count: 5000)); tuples.stop()
        XCTAssertTrue(error(tuples).contains("limit"))
        // A DUP bomb: a small stream that would create many objects.
        var limits = PickleLimits(); limits.maxObjects = 10_000
        var dup = PickleBuilder(); dup.proto(2); dup.op(0x4E)
        dup.raw([UInt8](repeating: 0x32, count: 20_000)); dup.stop()
        let vm = PickleVM(dup.data, limits: limits)
        XCTAssertThrowsError(try vm.load()) { XCTAssertTrue("\($0)".contains("limit")) }
    }

    func testDeeplyNestedListsFreeWithoutRecursion() throws {
        // 200k lists, each appended into the previous one through the memo: freeing must not overflow the stack.
        var b = PickleBuilder(); b.proto(2)
        b.op(0x5D); b.raw([0x71, 0]) // EMPTY_LIST BINPUT 0 (the root)
        for _ in 0 ..< 200_000 {
            b.op(0x5D); b.raw([0x71, 1]) // new list, memo 1
            b.op(0x61) // append into the list below it
            b.raw([0x68, 1]) // push it again
        }
        b.op(0x30); b.stop()
        let vm = PickleVM(b.data)
        _ = try vm.load()
        vm.dispose()
    }

    func testNumpyArrayRebuildAndObjectArrayRefusal() throws {
        // Build (version, shape, dtype, fortran, data) with MARK ... TUPLE around the pieces above.
        var b = PickleBuilder(); b.proto(2)
        b.global("numpy.core.multiarray", "_reconstruct")
        b.global("numpy", "ndarray"); b.binint1(0); b.op(0x85); b.raw([0x43, 1, 0x62]); b.op(0x87); b.op(0x52)
        b.op(0x28); b.binint1(1); b.binint1(2); b.op(0x85)
        b.global("numpy", "dtype"); b.binUnicode("f4"); b.op(0x89); b.op(0x88); b.op(0x87); b.op(0x52)
        b.op(0x28); b.binint1(3); b.binUnicode("<"); b.op(0x4E); b.op(0x4E); b.op(0x4E); b.raw([0x4A, 0xFF, 0xFF, 0xFF, 0xFF]); b.raw([0x4A, 0xFF, 0xFF, 0xFF, 0xFF]); b.binint1(0); b.op(0x74); b.op(0x62)
        b.op(0x89); b.raw([0x43, 8, 0, 0, 0x80, 0x3F, 0, 0, 0, 0x40]); b.op(0x74); b.op(0x62); b.stop()
        guard case .ndarray(let a) = try load(b) else { return XCTFail("ndarray") }
        XCTAssertEqual(a.shape, [2])
        let (t, _) = try TorchCheckpoint.tensorValue(.ndarray(a))!
        XCTAssertEqual(t.floats(), [1, 2])
        var o = PickleBuilder(); o.proto(2)
        o.global("numpy", "dtype"); o.binUnicode("O8"); o.op(0x89); o.op(0x88); o.op(0x87); o.op(0x52); o.stop()
        XCTAssertTrue(error(o).contains("object"))
    }

    func testCodecsEncodeGivesLatin1Bytes() throws {
        var b = PickleBuilder(); b.proto(3)
        b.global("_codecs", "encode"); b.binUnicode("\u{00FF}a"); b.binUnicode("latin1"); b.op(0x86); b.op(0x52); b.stop()
        guard case .bytes(let x) = try load(b) else { return XCTFail("bytes") }
        XCTAssertEqual(x.array, [0xFF, 0x61])
    }
}
