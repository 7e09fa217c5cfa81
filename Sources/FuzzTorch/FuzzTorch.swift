// libFuzzer entry for the "torch" target (body: FuzzTargets). Traps on an untyped error.
// Mutation: entry-level zip (*.pkl entries as pickles) mixed with libFuzzer's byte mutation (CFuzzMutators);
// SFNET_FUZZ_MUTATOR=bytes turns it into libFuzzer's byte mutation alone.
import CFuzzMutators
import FuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let raw = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    if case let .untyped(e) = FuzzTargets.body(named: "torch")!(raw) { fatalError("untyped error: \(e)") }
    return 0
}

@_cdecl("LLVMFuzzerCustomMutator")
public func fuzzCustomMutator(_ data: UnsafeMutablePointer<UInt8>?, _ size: Int, _ maxSize: Int, _ seed: UInt32) -> Int {
    guard let data else { return 0 }
    return sfnet_custom_mutator(SFNET_FORMAT_ZIP, data, size, maxSize, seed)
}
