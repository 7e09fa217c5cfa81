// What the optimizer and the checkpoint helpers see of a model: parameters in
// a fixed order, each with its canonical PySlowFast name, shape, float32
// values and gradient buffer, and whether it trains. The network module
// adapts its own storage to `TrainableParameters` (no copy); `ParameterSet`
// is a plain implementation for tests, tools and small models.

import Formats

/// Parameters and their gradients, addressed by position; names are canonical
/// (`s1.pathway0_stem.conv.weight`, `head.projection.bias`).
public protocol TrainableParameters: AnyObject {
    var parameterCount: Int { get }
    func parameterName(at index: Int) -> String
    func parameterShape(at index: Int) -> [Int]
    /// False for frozen parameters (`--freeze`): the optimizer neither updates them
    /// nor counts their gradients in the clipping norm.
    func parameterIsTrainable(at index: Int) -> Bool
    /// Whether the parameter is a normalisation layer's scale or shift (its own weight decay).
    /// The network says so from its graph; the default reads PySlowFast's module names.
    func parameterIsNorm(at index: Int) -> Bool
    /// Runs `body` on the parameter's values (updated in place) and its gradient.
    func withParameter<R>(at index: Int,
                          _ body: (_ values: UnsafeMutableBufferPointer<Float>, _ grads: UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R
}

extension TrainableParameters {
    public func parameterIsNorm(at index: Int) -> Bool { WeightDecayPolicy.isBatchNorm(parameterName(at: index)) }
}

/// Named float32 parameters with gradient buffers, in insertion order.
public final class ParameterSet: TrainableParameters {
    public final class Parameter {
        public let name: String
        public let shape: [Int]
        public var values: [Float]
        public var grads: [Float]
        public var trainable: Bool

        init(name: String, shape: [Int], values: [Float], trainable: Bool) {
            self.name = name
            self.shape = shape
            self.values = values
            self.grads = [Float](repeating: 0, count: values.count)
            self.trainable = trainable
        }
    }

    public private(set) var parameters: [Parameter] = []
    private var index: [String: Int] = [:]

    public init() {}

    /// Adds a parameter (gradient zeroed). Names must be unique and `values` must
    /// hold `shape`'s element count.
    @discardableResult
    public func add(_ name: String, shape: [Int], values: [Float], trainable: Bool = true) throws -> Parameter {
        guard index[name] == nil else { throw TrainError(.invalidArgument, "parameter added twice", at: "parameter '\(name)'") }
        let n = shape.reduce(1, *)
        guard shape.allSatisfy({ $0 >= 0 }), n == values.count else {
            throw TrainError(.shapeMismatch, "\(values.count) values for shape \(Tensor.shapeString(shape))", at: "parameter '\(name)'")
        }
        let p = Parameter(name: name, shape: shape, values: values, trainable: trainable)
        index[name] = parameters.count
        parameters.append(p)
        return p
    }

    public subscript(name: String) -> Parameter? { index[name].map { parameters[$0] } }

    public func zeroGrads() {
        for p in parameters { for i in p.grads.indices { p.grads[i] = 0 } }
    }

    /// The values as float32 tensors, in order (for checkpoints).
    public func valueTensors() -> [(name: String, tensor: Tensor)] {
        parameters.map { ($0.name, Tensor.float32(shape: $0.shape, values: $0.values)) }
    }

    // MARK: TrainableParameters

    public var parameterCount: Int { parameters.count }
    public func parameterName(at i: Int) -> String { parameters[i].name }
    public func parameterShape(at i: Int) -> [Int] { parameters[i].shape }
    public func parameterIsTrainable(at i: Int) -> Bool { parameters[i].trainable }
    public func withParameter<R>(at i: Int,
                                 _ body: (UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        let p = parameters[i]
        return try p.values.withUnsafeMutableBufferPointer { v in try p.grads.withUnsafeMutableBufferPointer { g in try body(v, g) } }
    }
}

/// Shell-style name patterns for parameter rules (`--freeze`, weight-decay
/// exclusions): `*` matches any run of characters (dots included), `?` one
/// character; everything else literally. `s[1-4]*` is not supported: list patterns.
public struct NamePattern: Codable, Sendable, Equatable, CustomStringConvertible {
    public let pattern: String
    public init(_ pattern: String) { self.pattern = pattern }
    public var description: String { pattern }

    public func matches(_ name: String) -> Bool {
        let p = Array(pattern.utf8), s = Array(name.utf8)
        var pi = 0, si = 0, star = -1, mark = 0
        while si < s.count {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == s[si]) {
                pi += 1; si += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                star = pi; mark = si; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; si = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }

    public static func anyMatches(_ patterns: [NamePattern], _ name: String) -> Bool {
        patterns.contains { $0.matches(name) }
    }
}

extension Tensor {
    /// A float32 tensor owning a copy of `values`.
    public static func float32(shape: [Int], values: [Float]) -> Tensor {
        let buf = OwnedBuffer(count: values.count * 4)
        values.withUnsafeBytes { if let b = $0.baseAddress { buf.pointer.copyMemory(from: b, byteCount: $0.count) } }
        return Tensor(dtype: .f32, shape: shape, data: buf.bytes)
    }

    static func float32(shape: [Int], _ values: UnsafeBufferPointer<Float>) -> Tensor {
        let buf = OwnedBuffer(count: values.count * 4)
        if let b = values.baseAddress { buf.pointer.copyMemory(from: b, byteCount: values.count * 4) }
        return Tensor(dtype: .f32, shape: shape, data: buf.bytes)
    }
}
