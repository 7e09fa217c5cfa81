// libFuzzer entry for the "frame-list" target (body: FuzzTargets). Traps on an untyped error.
import FuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let raw = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    if case let .untyped(e) = FuzzTargets.body(named: "frame-list")!(raw) { fatalError("untyped error: \(e)") }
    return 0
}
