// Float64 tensors for the naive oracles: every op keeps, beside its fast
// float32 kernels, a double-precision forward and backward written as plain
// loops. Tests differentiate the float64 forward numerically (central finite
// differences) to check the float64 backward, then check the fast backward
// against it.

import Foundation

/// A row-major float64 tensor (oracle use only: no views, no speed).
public struct Tensor64: Equatable, Sendable, CustomStringConvertible {
    public var shape: [Int]
    public var values: [Double]

    public init(shape: [Int], values: [Double]) {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        (self.shape, self.values) = (shape, values)
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, values: [Double](repeating: 0, count: shape.reduce(1, *)))
    }

    /// The float32 tensor widened exactly.
    public init(_ t: FloatTensor) {
        self.init(shape: t.shape, values: t.values.map(Double.init))
    }

    public var count: Int { values.count }

    /// Rounded to float32.
    public func float() -> FloatTensor { FloatTensor(shape: shape, values: values.map { Float($0) }) }

    /// Sum of `self * other` (the scalar loss the gradient checks differentiate).
    public func dot(_ other: Tensor64) -> Double {
        precondition(shape == other.shape, "dot: \(shape) vs \(other.shape)")
        var s = 0.0
        for i in 0..<values.count { s += values[i] * other.values[i] }
        return s
    }

    public var description: String { "Tensor64\(shape)" }
}
