// Static shapes of an ONNX graph's values, and the values of its small integer tensors (the shape arithmetic
// torch.onnx.export writes for dynamic axes and without constant folding: Shape, Gather, Unsqueeze, Concat,
// Div, Cast...), computed in one pass over the nodes in order with the graph input's symbolic dimensions taken
// as 1. The transformer walk reads Reshape targets, Slice bounds and split sizes from here, so a graph that
// computes them at run time reads like one that states them. Anything not understood is left unknown (nil);
// every size is overflow-checked and integer tensors are kept only up to 64 elements.

import Foundation
import Formats

struct OnnxShapes {
    /// Known shapes by value name.
    private(set) var shapes: [String: [Int]] = [:]
    /// Known integer (or boolean) values of small tensors, row-major.
    private(set) var ints: [String: [Int]] = [:]

    static let maxInts = 64

    init(model: OnnxModel, inits: [String: OnnxInitializer]) {
        for i in model.initializers where Self.plausible(i.dims) {
            shapes[i.name] = i.dims
            if let v = Self.intValues(i) { ints[i.name] = v }
        }
        for input in model.inputs where inits[input.name] == nil {
            let dims = input.dims.map { d -> Int in if case .value(let v) = d, v > 0 { return v }; return 1 }
            if Self.plausible(dims) { shapes[input.name] = dims }
        }
        for n in model.nodes { evaluate(n) }
    }

    /// The product of `xs`, nil on overflow or a negative factor.
    static func product(_ xs: [Int]) -> Int? {
        var p = 1
        for x in xs {
            guard x >= 0 else { return nil }
            let (r, o) = p.multipliedReportingOverflow(by: x)
            if o { return nil }
            p = r
        }
        return p
    }

    static func sum(_ xs: [Int]) -> Int? {
        var s = 0
        for x in xs {
            let (r, o) = s.addingReportingOverflow(x)
            if o { return nil }
            s = r
        }
        return s
    }

    static func plausible(_ dims: [Int]) -> Bool {
        dims.count <= 8 && dims.allSatisfy { $0 >= 0 && $0 < 1 << 40 } && (try? Checked.product(dims, "shape")) != nil
    }

    static func intValues(_ i: OnnxInitializer) -> [Int]? {
        guard let n = product(i.dims), n <= maxInts else { return nil }
        let size: Int
        switch i.dataType { case 7: size = 8; case 6: size = 4; case 9: size = 1; default: return nil }
        guard i.rawData.count == n * size else { return nil }
        return withExtendedLifetime(i.rawData.owner) {
            (0 ..< n).map { j in
                switch size {
                case 8: return Int(Int64(littleEndian: i.rawData.raw.loadUnaligned(fromByteOffset: j * 8, as: Int64.self)))
                case 4: return Int(Int32(littleEndian: i.rawData.raw.loadUnaligned(fromByteOffset: j * 4, as: Int32.self)))
                default: return Int(i.rawData.raw[j])
                }
            }
        }
    }

    private mutating func set(_ v: String, _ shape: [Int]?, _ values: [Int]? = nil) {
        guard let shape, Self.plausible(shape) else { return }
        shapes[v] = shape
        if let values, values.count == shape.reduce(1, *), values.count <= Self.maxInts { ints[v] = values }
    }

    /// Numpy broadcasting of two shapes.
    static func broadcast(_ a: [Int], _ b: [Int]) -> [Int]? {
        let n = max(a.count, b.count)
        let a = Array(repeating: 1, count: n - a.count) + a, b = Array(repeating: 1, count: n - b.count) + b
        var out: [Int] = []
        for (x, y) in zip(a, b) {
            if x == y || y == 1 { out.append(x) } else if x == 1 { out.append(y) } else { return nil }
        }
        return out
    }

    private static func axis(_ a: Int, _ rank: Int) -> Int? {
        let r = a < 0 ? a + rank : a
        return r >= 0 && r < rank ? r : nil
    }

    private func attr(_ n: OnnxNode, _ name: String) -> [Int]? {
        switch n.attribute(name) {
        case let .ints(v)?: return v
        case let .int(v)?: return [v]
        default: return nil
        }
    }

    private mutating func evaluate(_ n: OnnxNode) {
        guard let out = n.outputs.first, !out.isEmpty else { return }
        let inShapes = n.inputs.map { shapes[$0] }, inInts = n.inputs.map { ints[$0] }
        func shape(_ i: Int) -> [Int]? { i < inShapes.count ? inShapes[i] : nil }
        func values(_ i: Int) -> [Int]? { i < inInts.count ? inInts[i] : nil }
        switch n.opType {
        case "Constant":
            if let t = n.tensorValue, Self.plausible(t.dims) { set(out, t.dims, Self.intValues(t)) }
            else if case let .ints(v)? = n.attribute("value_ints") { set(out, [v.count], v) }
            else if case let .int(v)? = n.attribute("value_int") { set(out, [], [v]) }
            else if case .float? = n.attribute("value_float") { set(out, []) }
        case "Identity", "Cast", "Dropout", "Erf", "Tanh", "Sqrt", "Sigmoid", "Relu", "Softmax", "LayerNormalization", "Neg", "Reciprocal", "Gelu":
            set(out, shape(0), values(0))
        case "Add", "Sub", "Mul", "Div", "Pow", "Equal":
            guard let a = shape(0), let b = shape(1), let s = Self.broadcast(a, b) else { return }
            var v: [Int]?
            if let x = values(0), let y = values(1), a == s || x.count == 1, b == s || y.count == 1 {
                let count = s.reduce(1, *)
                v = (0 ..< count).compactMap { i -> Int? in
                    let p = x.count == 1 ? x[0] : x[i], q = y.count == 1 ? y[0] : y[i]
                    switch n.opType {
                    case "Add": return p.addingReportingOverflow(q).overflow ? nil : p + q
                    case "Sub": return p.subtractingReportingOverflow(q).overflow ? nil : p - q
                    case "Mul": return p.multipliedReportingOverflow(by: q).overflow ? nil : p * q
                    case "Div": return q == 0 || (p == Int.min && q == -1) ? nil : p / q
                    case "Equal": return p == q ? 1 : 0
                    default: return nil
                    }
                }
                if v?.count != count { v = nil }
            }
            set(out, s, v)
        case "Where":
            guard let c = shape(0), let a = shape(1), let b = shape(2), let ab = Self.broadcast(a, b), let s = Self.broadcast(c, ab) else { return }
            var v: [Int]?
            if let cv = values(0), let x = values(1), let y = values(2), [c, a, b].allSatisfy({ $0 == s }) {
                v = zip(cv, zip(x, y)).map { $0 != 0 ? $1.0 : $1.1 }
            }
            set(out, s, v)
        case "Shape":
            guard let s = shape(0) else { return }
            var start = 0, end = s.count
            if case let .int(a)? = n.attribute("start") { start = a < 0 ? max(0, a + s.count) : min(a, s.count) }
            if case let .int(b)? = n.attribute("end") { end = b < 0 ? max(0, b + s.count) : min(b, s.count) }
            let part = start < end ? Array(s[start ..< end]) : []
            set(out, [part.count], part)
        case "ConstantOfShape":
            guard let dims = values(0), Self.plausible(dims) else { return }
            let count = dims.reduce(1, *)
            var v: [Int]?
            if count <= Self.maxInts, let t = n.tensorValue, let fill = Self.intValues(t), fill.count == 1 { v = Array(repeating: fill[0], count: count) }
            set(out, dims, v)
        case "Unsqueeze":
            guard let s = shape(0), let axes = attr(n, "axes") ?? values(1) else { return }
            var r = s
            for a in axes.map({ $0 < 0 ? $0 + (s.count + axes.count) : $0 }).sorted() {
                guard a >= 0, a <= r.count else { return }
                r.insert(1, at: a)
            }
            set(out, r, values(0))
        case "Squeeze":
            guard let s = shape(0) else { return }
            let axes = (attr(n, "axes") ?? values(1))?.compactMap { Self.axis($0, s.count) } ?? s.indices.filter { s[$0] == 1 }
            set(out, s.enumerated().filter { !axes.contains($0.offset) }.map(\.element), values(0))
        case "Concat":
            guard case let .int(a)? = n.attribute("axis"), let first = shape(0), let ax = Self.axis(a, first.count) else { return }
            var r = first
            for i in 1 ..< n.inputs.count {
                guard let s = shape(i), s.count == r.count, let total = Self.sum([r[ax], s[ax]]) else { return }
                r[ax] = total
            }
            var v: [Int]? = first.count == 1 ? [] : nil
            for i in n.inputs.indices where v != nil {
                if let x = values(i), v!.count + x.count <= Self.maxInts { v! += x } else { v = nil }
            }
            set(out, r, v)
        case "Reshape":
            guard let s = shape(0), let target = values(1) else { return }
            let total = s.reduce(1, *)
            var r = target.enumerated().map { i, d in d == 0 && i < s.count ? s[i] : d }
            if let m = r.firstIndex(of: -1) {
                guard let rest = Self.product(r.enumerated().filter { $0.offset != m }.map(\.element)), rest > 0, total % rest == 0 else { return }
                r[m] = total / rest
            }
            guard Self.product(r) == total else { return }
            set(out, r, values(0))
        case "Flatten":
            guard let s = shape(0) else { return }
            var a = 1
            if case let .int(x)? = n.attribute("axis") { a = x < 0 ? x + s.count : x }
            guard a >= 0, a <= s.count else { return }
            set(out, [s[..<a].reduce(1, *), s[a...].reduce(1, *)], values(0))
        case "Transpose":
            guard let s = shape(0) else { return }
            let perm = attr(n, "perm") ?? Array(s.indices.reversed())
            guard perm.sorted() == Array(s.indices) else { return }
            set(out, perm.map { s[$0] })
        case "Gather":
            guard let s = shape(0), let idx = shape(1) else { return }
            var a = 0
            if case let .int(x)? = n.attribute("axis") { a = x }
            guard let ax = Self.axis(a, s.count) else { return }
            var v: [Int]?
            if s.count == 1, let data = values(0), let at = values(1) {
                v = at.compactMap { i in let j = i < 0 ? i + data.count : i; return j >= 0 && j < data.count ? data[j] : nil }
                if v?.count != at.count { v = nil }
            }
            set(out, Array(s[..<ax]) + idx + Array(s[(ax + 1)...]), v)
        case "Slice":
            guard let s = shape(0), let starts = values(1), let ends = values(2), starts.count == ends.count else { return }
            let axes = n.inputs.count >= 4 && !n.inputs[3].isEmpty ? values(3) : Array(0 ..< starts.count)
            let steps = n.inputs.count >= 5 && !n.inputs[4].isEmpty ? values(4) : Array(repeating: 1, count: starts.count)
            guard let axes, let steps, axes.count == starts.count, steps.count == starts.count, steps.allSatisfy({ $0 == 1 }) else { return }
            var r = s, lo = Array(repeating: 0, count: s.count)
            for (k, a) in axes.enumerated() {
                guard let ax = Self.axis(a, s.count) else { return }
                func clamp(_ x: Int) -> Int { let y = x < 0 ? x + s[ax] : x; return min(max(y, 0), s[ax]) }
                let b = clamp(starts[k]), e = clamp(ends[k])
                r[ax] = max(0, e - b)
                lo[ax] = b
            }
            var v: [Int]?
            if s.count == 1, let data = values(0) { v = Array(data[lo[0] ..< lo[0] + r[0]]) }
            set(out, r, v)
        case "Expand":
            guard let s = shape(0), let target = values(1), let r = Self.broadcast(s, target) else { return }
            set(out, r)
        case "Tile":
            guard let s = shape(0), let reps = values(1), reps.count == s.count else { return }
            let r = zip(s, reps).map { $0.multipliedReportingOverflow(by: $1) }
            guard !r.contains(where: \.overflow) else { return }
            set(out, r.map(\.partialValue))
        case "MatMul":
            guard let a = shape(0), let b = shape(1), a.count >= 2, b.count >= 2, a[a.count - 1] == b[b.count - 2],
                  let batch = Self.broadcast(Array(a.dropLast(2)), Array(b.dropLast(2))) else { return }
            set(out, batch + [a[a.count - 2], b[b.count - 1]])
        case "Gemm":
            guard let a = shape(0), let b = shape(1), a.count == 2, b.count == 2 else { return }
            var transA = false, transB = false
            if case let .int(t)? = n.attribute("transA") { transA = t != 0 }
            if case let .int(t)? = n.attribute("transB") { transB = t != 0 }
            set(out, [transA ? a[1] : a[0], transB ? b[0] : b[1]])
        case "ReduceMean":
            guard let s = shape(0) else { return }
            var keep = true
            if case let .int(k)? = n.attribute("keepdims") { keep = k != 0 }
            let axes = (attr(n, "axes") ?? values(1))?.compactMap { Self.axis($0, s.count) } ?? Array(s.indices)
            set(out, s.enumerated().compactMap { axes.contains($0.offset) ? (keep ? 1 : nil) : $0.element })
        case "Split":
            guard let s = shape(0), !n.outputs.isEmpty else { return }
            var a = 0
            if case let .int(x)? = n.attribute("axis") { a = x }
            guard let ax = Self.axis(a, s.count) else { return }
            let sizes = attr(n, "split") ?? (n.inputs.count >= 2 ? values(1) : nil)
                ?? (s[ax] % n.outputs.count == 0 ? Array(repeating: s[ax] / n.outputs.count, count: n.outputs.count) : nil)
            guard let sizes, sizes.count == n.outputs.count, sizes.allSatisfy({ $0 >= 0 }), Self.sum(sizes) == s[ax] else { return }
            for (o, size) in zip(n.outputs, sizes) {
                var r = s
                r[ax] = size
                set(o, r)
            }
        case "Conv":
            guard let x = shape(0), let w = shape(1), x.count == w.count, x.count >= 3 else { return }
            let k = x.count - 2
            let strides = attr(n, "strides") ?? Array(repeating: 1, count: k), pads = attr(n, "pads") ?? Array(repeating: 0, count: 2 * k)
            let dil = attr(n, "dilations") ?? Array(repeating: 1, count: k)
            guard strides.count == k, pads.count == 2 * k, dil.count == k, strides.allSatisfy({ $0 > 0 }) else { return }
            var r = [x[0], w[0]]
            for i in 0 ..< k {
                guard w[2 + i] >= 1, dil[i] >= 1, pads[i] >= 0, pads[k + i] >= 0, let span = Self.product([dil[i], w[2 + i] - 1]),
                      let padded = Self.sum([x[2 + i], pads[i], pads[k + i]]), padded > span else { return }
                r.append((padded - span - 1) / strides[i] + 1)
            }
            set(out, r)
        default:
            return
        }
    }
}
