// How close an output is to its reference: max abs error, relative L2 error,
// cosine similarity, and top-1/top-5 agreement for logits. NaN/Inf never pass.
// Float64 expected values are compared in double precision, never rounded first.

import Foundation
import Networks

public struct Comparison: Sendable {
    public var name: String
    public var shape: [Int]
    public var maxAbsError: Double
    /// ||got - expected|| / ||expected|| (absolute L2 when the reference is all zeros).
    public var relativeL2: Double
    public var cosine: Double
    /// Fraction of samples whose top-1 class agrees (logits only).
    public var top1Agreement: Double?
    /// Fraction of samples whose top-5 sets agree (logits only).
    public var top5Agreement: Double?
    /// Index of the first non-finite value in the computed output, if any.
    public var firstNonFinite: Int?
    public var passed: Bool

    /// Compares `got` with `expected` (same shape required; a mismatch fails with infinite error).
    public static func compare(_ name: String, got: FloatTensor, expected: FloatTensor, tolerance: Double, isLogits: Bool) -> Comparison {
        guard got.shape == expected.shape else { return shapeMismatch(name, got: got, isLogits: isLogits) }
        return compareBuffers(name, got: got, expected: UnsafeBufferPointer(start: expected.pointer, count: expected.count),
                              tolerance: tolerance, isLogits: isLogits)
    }

    /// Compares `got` with float64 expected values of `shape`, in double precision: a float64
    /// truth is not rounded to float32 first (that rounding alone is ~3e-8 relative).
    public static func compare(_ name: String, got: FloatTensor, expected: [Double], shape: [Int], tolerance: Double, isLogits: Bool) -> Comparison {
        guard got.shape == shape, got.count == expected.count else { return shapeMismatch(name, got: got, isLogits: isLogits) }
        return expected.withUnsafeBufferPointer { compareBuffers(name, got: got, expected: $0, tolerance: tolerance, isLogits: isLogits) }
    }

    /// Compares `got` with what a reference expects (float64 values where the reference holds them).
    public static func compare(_ name: String, got: FloatTensor, expected: ExpectedOutput, tolerance: Double, isLogits: Bool) -> Comparison {
        if let d = expected.float64 { return compare(name, got: got, expected: d, shape: expected.value.shape, tolerance: tolerance, isLogits: isLogits) }
        return compare(name, got: got, expected: expected.value, tolerance: tolerance, isLogits: isLogits)
    }

    static func shapeMismatch(_ name: String, got: FloatTensor, isLogits: Bool) -> Comparison {
        Comparison(name: name, shape: got.shape, maxAbsError: .infinity, relativeL2: .infinity, cosine: 0,
                   top1Agreement: isLogits ? 0 : nil, top5Agreement: isLogits ? 0 : nil, firstNonFinite: nil, passed: false)
    }

    static func compareBuffers<E: BinaryFloatingPoint>(_ name: String, got: FloatTensor, expected e: UnsafeBufferPointer<E>,
                                                       tolerance: Double, isLogits: Bool) -> Comparison {
        var maxAbs = 0.0, diff2 = 0.0, ref2 = 0.0, got2 = 0.0, dot = 0.0
        var nonFinite: Int?
        let g = got.pointer
        for i in 0 ..< got.count {
            let a = Double(g[i]), b = Double(e[i])
            if !a.isFinite && nonFinite == nil { nonFinite = i }
            let d = abs(a - b)
            if d > maxAbs || d.isNaN { maxAbs = d.isNaN ? .nan : d }
            diff2 += (a - b) * (a - b)
            ref2 += b * b
            got2 += a * a
            dot += a * b
        }
        let rel = ref2 > 0 ? (diff2 / ref2).squareRoot() : diff2.squareRoot()
        let cos = (ref2 > 0 && got2 > 0) ? dot / (ref2.squareRoot() * got2.squareRoot()) : (ref2 == got2 ? 1 : 0)
        var top1: Double?, top5: Double?
        if isLogits, got.rank == 2 {
            let n = got.shape[0], k = got.shape[1]
            var agree1 = 0, agree5 = 0
            for s in 0 ..< n {
                let gs = (0 ..< k).map { Double(g[s * k + $0]) }, es = (0 ..< k).map { Double(e[s * k + $0]) }
                let gOrder = gs.indices.sorted { gs[$0] > gs[$1] }, eOrder = es.indices.sorted { es[$0] > es[$1] }
                if gOrder.first == eOrder.first { agree1 += 1 }
                if Set(gOrder.prefix(5)) == Set(eOrder.prefix(5)) { agree5 += 1 }
            }
            top1 = n > 0 ? Double(agree1) / Double(n) : 1
            top5 = n > 0 ? Double(agree5) / Double(n) : 1
        }
        let passed = nonFinite == nil && rel.isFinite && rel <= tolerance && (top1 ?? 1) == 1
        return Comparison(name: name, shape: got.shape, maxAbsError: maxAbs, relativeL2: rel, cosine: cos,
                          top1Agreement: top1, top5Agreement: top5, firstNonFinite: nonFinite, passed: passed)
    }
}
