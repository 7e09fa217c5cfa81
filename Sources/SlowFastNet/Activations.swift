// Element-wise activations and softmax (torch.relu, torch.sigmoid,
// torch.softmax(dim=-1)), each with its double-precision oracle.
// Backward (later): ReLU from the output's sign, sigmoid and softmax from their outputs.

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
