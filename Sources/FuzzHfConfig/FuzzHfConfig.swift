// libFuzzer entry for the "hf-config" target (body: FuzzTargets): a Hugging Face folder's config.json and
// shard index as the folder reader and convert take them. Traps on an untyped error.
import FuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let raw = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    if case let .untyped(e) = FuzzTargets.body(named: "hf-config")!(raw) { fatalError("untyped error: \(e)") }
    return 0
}
