// Element-wise activations and softmax (torch.relu, torch.sigmoid,
// torch.softmax(dim=-1)), each with its double-precision oracle.
// Backward from the outputs: ReLU passes the gradient where its output is > 0,
// sigmoid multiplies by y(1-y), softmax takes y * (dy - sum(dy * y)) per row.

import Foundation

/// ReLU; `inPlace` overwrites and returns `x`.
public func reluForward(_ x: FloatTensor, inPlace: Bool = false) -> FloatTensor {
    let out = inPlace ? x : FloatTensor(uninitialized: x.shape)
    let src = x.pointer, dst = out.pointer
    parallelRanges(x.count, minPerThread: 1 << 15) { range in
        for i in range { dst[i] = max(src[i], 0) }
    }
    return out
}

/// Logistic sigmoid, stable for large |x| (no overflow to inf/inf).
public func sigmoidForward(_ x: FloatTensor) -> FloatTensor {
    let out = FloatTensor(uninitialized: x.shape)
    let src = x.pointer, dst = out.pointer
    parallelRanges(x.count, minPerThread: 1 << 14) { range in
        for i in range {
            let v = src[i]
            if v >= 0 {
                dst[i] = 1 / (1 + expf(-v))
            } else {
                let e = expf(v)
                dst[i] = e / (1 + e)
            }
        }
    }
    return out
}

/// Softmax over the last dimension, with the row maximum subtracted first.
public func softmaxForward(_ x: FloatTensor) -> FloatTensor {
    precondition(x.rank >= 1, "softmax: scalar input")
    let out = FloatTensor(uninitialized: x.shape)
    let n = x.shape[x.rank - 1]
    guard n > 0 else { return out }
    let rows = x.count / n
    let src = x.pointer, dst = out.pointer
    parallelFor(rows, work: n * 8) { r in
        let s = src + r * n, d = dst + r * n
        var m = -Float.infinity
        for i in 0..<n { m = max(m, s[i]) }
        var sum: Float = 0
        for i in 0..<n {
            let e = expf(s[i] - m)
            d[i] = e
            sum += e
        }
        let inv = 1 / sum
        for i in 0..<n { d[i] *= inv }
    }
    return out
}

// MARK: - Reference

public func reluNaive(_ x: FloatTensor) -> FloatTensor {
    FloatTensor(shape: x.shape, values: x.values.map { $0 > 0 ? $0 : 0 })
}

public func sigmoidNaive(_ x: FloatTensor) -> FloatTensor {
    FloatTensor(shape: x.shape, values: x.values.map { v in
        let d = Double(v)
        return Float(d >= 0 ? 1 / (1 + exp(-d)) : exp(d) / (1 + exp(d)))
    })
}

public func softmaxNaive(_ x: FloatTensor) -> FloatTensor {
    let n = x.shape.last ?? 1
    var values = x.values
    for r in 0..<(n == 0 ? 0 : x.count / n) {
        let row = values[(r * n)..<((r + 1) * n)].map(Double.init)
        let m = row.max()!
        let e = row.map { exp($0 - m) }
        let sum = e.reduce(0, +)
        for i in 0..<n { values[r * n + i] = Float(e[i] / sum) }
    }
    return FloatTensor(shape: x.shape, values: values)
}

// MARK: - Backward

/// ReLU backward from the forward's output: dy where output > 0, else 0.
/// `inPlace` (default) overwrites and returns `gradOutput`.
@discardableResult
public func reluBackward(output: FloatTensor, gradOutput: FloatTensor, inPlace: Bool = true) -> FloatTensor {
    precondition(output.count == gradOutput.count, "reluBackward: output \(output.shape), gradOutput \(gradOutput.shape)")
    let dx = inPlace ? gradOutput : FloatTensor(uninitialized: gradOutput.shape)
    let y = output.pointer, dy = gradOutput.pointer, d = dx.pointer
    parallelRanges(output.count, minPerThread: 1 << 15) { range in
        var i = range.lowerBound
        let zero = SIMD16<Float>(repeating: 0)
        while i + 16 <= range.upperBound {
            store16(load16(dy + i).replacing(with: zero, where: load16(y + i) .<= zero), d + i)
            i += 16
        }
        while i < range.upperBound {
            d[i] = y[i] > 0 ? dy[i] : 0
            i += 1
        }
    }
    return dx
}

/// Sigmoid backward from the forward's output: dy * y * (1 - y).
public func sigmoidBackward(output: FloatTensor, gradOutput: FloatTensor) -> FloatTensor {
    precondition(output.shape == gradOutput.shape, "sigmoidBackward: output \(output.shape), gradOutput \(gradOutput.shape)")
    let dx = FloatTensor(uninitialized: output.shape)
    for i in 0..<output.count {
        let y = output.pointer[i]
        dx.pointer[i] = gradOutput.pointer[i] * y * (1 - y)
    }
    return dx
}

/// Softmax (last dimension) backward from the forward's output: y * (dy - sum(dy * y)) per row.
public func softmaxBackward(output: FloatTensor, gradOutput: FloatTensor) -> FloatTensor {
    precondition(output.shape == gradOutput.shape, "softmaxBackward: output \(output.shape), gradOutput \(gradOutput.shape)")
    let dx = FloatTensor(uninitialized: output.shape)
    let n = output.shape.last ?? 1
    guard n > 0 else { return dx }
    for r in 0..<(output.count / n) {
        let y = output.pointer + r * n, dy = gradOutput.pointer + r * n, d = dx.pointer + r * n
        var dot: Double = 0
        for i in 0..<n { dot += Double(dy[i]) * Double(y[i]) }
        for i in 0..<n { d[i] = y[i] * (dy[i] - Float(dot)) }
    }
    return dx
}

// MARK: - Float64 oracle

public func relu64(_ x: Tensor64) -> Tensor64 { Tensor64(shape: x.shape, values: x.values.map { max($0, 0) }) }

public func reluBackward64(_ x: Tensor64, gradOutput: Tensor64) -> Tensor64 {
    Tensor64(shape: x.shape, values: zip(x.values, gradOutput.values).map { $0 > 0 ? $1 : 0 })
}

public func sigmoid64(_ x: Tensor64) -> Tensor64 {
    Tensor64(shape: x.shape, values: x.values.map { $0 >= 0 ? 1 / (1 + exp(-$0)) : exp($0) / (1 + exp($0)) })
}

public func sigmoidBackward64(_ x: Tensor64, gradOutput: Tensor64) -> Tensor64 {
    let y = sigmoid64(x)
    return Tensor64(shape: x.shape, values: (0..<x.count).map { gradOutput.values[$0] * y.values[$0] * (1 - y.values[$0]) })
}

public func softmax64(_ x: Tensor64) -> Tensor64 {
    let n = x.shape.last ?? 1
    var out = x
    for r in 0..<(n == 0 ? 0 : x.count / n) {
        let row = Array(x.values[(r * n)..<((r + 1) * n)])
        let m = row.max()!
        let e = row.map { exp($0 - m) }
        let sum = e.reduce(0, +)
        for i in 0..<n { out.values[r * n + i] = e[i] / sum }
    }
    return out
}

/// Through the full Jacobian dy_i/dx_j = y_i (delta_ij - y_j).
public func softmaxBackward64(_ x: Tensor64, gradOutput: Tensor64) -> Tensor64 {
    let n = x.shape.last ?? 1
    let y = softmax64(x)
    var dx = Tensor64(zeros: x.shape)
    for r in 0..<(n == 0 ? 0 : x.count / n) {
        for j in 0..<n {
            var s = 0.0
            for i in 0..<n {
                let yi = y.values[r * n + i], yj = y.values[r * n + j]
                s += gradOutput.values[r * n + i] * yi * ((i == j ? 1 : 0) - yj)
            }
            dx.values[r * n + j] = s
        }
    }
    return dx
}
