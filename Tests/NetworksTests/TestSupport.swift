// Shared helpers: a seeded generator, random tensors, and the comparison
// every op test uses (shape first, then values with atol + rtol, reporting
// the max difference and the first bad index).

import Families
import XCTest
@testable import Networks

/// SplitMix64: small, fast, reproducible across platforms.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func randomTensor(_ shape: [Int], _ rng: inout SeededGenerator, in range: ClosedRange<Float> = -1...1) -> FloatTensor {
    let count = shape.reduce(1, *)
    return FloatTensor(shape: shape, values: (0..<count).map { _ in Float.random(in: range, using: &rng) })
}

/// Asserts equal shapes, then |a - e| <= atol + rtol * |e| everywhere.
func assertClose(_ actual: FloatTensor, _ expected: FloatTensor, atol: Float = 1e-4, rtol: Float = 1e-4,
                 _ message: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line) {
    guard actual.shape == expected.shape else {
        XCTFail("shape \(actual.shape) != expected \(expected.shape) \(message())", file: file, line: line)
        return
    }
    var maxDiff: Float = 0
    var firstBad: Int?
    for i in 0..<actual.count {
        let a = actual.pointer[i], e = expected.pointer[i]
        let diff = abs(a - e)
        if diff.isNaN || diff > maxDiff { maxDiff = diff.isNaN ? .nan : max(maxDiff, diff) }
        if firstBad == nil && (!(diff <= atol + rtol * abs(e)) && !(a.isNaN && e.isNaN) && a != e) { firstBad = i }
    }
    if let bad = firstBad {
        XCTFail("max diff \(maxDiff); first bad index \(unflatten(bad, actual.shape)) (flat \(bad)): "
                + "\(actual.pointer[bad]) vs expected \(expected.pointer[bad]) \(message())", file: file, line: line)
    }
}

func unflatten(_ flat: Int, _ shape: [Int]) -> [Int] {
    var rest = flat
    var index = [Int](repeating: 0, count: shape.count)
    for d in stride(from: shape.count - 1, through: 0, by: -1) where shape[d] > 0 {
        index[d] = rest % shape[d]
        rest /= shape[d]
    }
    return index
}

/// Runs `body` under each build of the C element-wise kernels this CPU can run (generic always, AVX2 and
/// AVX-512 where present), restoring the active build after: one oracle check covers them all.
func forEachKernelBuild(_ body: (ElementwiseKernels) throws -> Void) rethrows {
    let saved = ElementwiseKernels.active
    defer { ElementwiseKernels.use(saved) }
    for kernels in ElementwiseKernels.available {
        XCTAssertTrue(ElementwiseKernels.use(kernels), "\(kernels)")
        try body(kernels)
    }
}
