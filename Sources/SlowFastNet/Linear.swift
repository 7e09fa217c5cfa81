// Linear layer (torch.nn.functional.linear): y = x W^T + b with W in
// PyTorch layout [O, F], as one sgemm over all leading rows.
// Backward (later): dx = dy W, dW = dy^T x, db = sum of dy rows; needs x.

import Foundation

/// `x` [..., F], `weight` [O, F], optional `bias` [O] -> [..., O].
public func linearForward(_ x: FloatTensor, weight: FloatTensor, bias: FloatTensor? = nil) -> FloatTensor {
    precondition(weight.rank == 2, "linear: weight must be [O, F], got \(weight.shape)")
    let (o, f) = (weight.shape[0], weight.shape[1])
    precondition(x.rank >= 1 && x.shape[x.rank - 1] == f, "linear: input \(x.shape) for weight \(weight.shape)")
    if let bias { precondition(bias.shape == [o], "linear: bias \(bias.shape) for weight \(weight.shape)") }
    let rows = f == 0 ? x.count : x.count / f
    var shape = x.shape
    shape[shape.count - 1] = o
    let out = FloatTensor(uninitialized: shape)
    if let bias {
        for r in 0..<rows { (out.pointer + r * o).update(from: bias.pointer, count: o) }
    }
    sgemm(transB: true, m: rows, n: o, k: f, a: x.pointer, lda: f, b: weight.pointer, ldb: f,
          beta: bias == nil ? 0 : 1, c: out.pointer, ldc: o)
    return out
}

/// The oracle: dot products in double precision.
public func linearNaive(_ x: FloatTensor, weight: FloatTensor, bias: FloatTensor? = nil) -> FloatTensor {
    let (o, f) = (weight.shape[0], weight.shape[1])
    let rows = x.count / f
    var shape = x.shape
    shape[shape.count - 1] = o
    let out = FloatTensor(uninitialized: shape)
    for r in 0..<rows {
        for j in 0..<o {
            var acc = Double(bias?.pointer[j] ?? 0)
            for i in 0..<f { acc += Double(x.pointer[r * f + i]) * Double(weight.pointer[j * f + i]) }
            out.pointer[r * o + j] = Float(acc)
        }
    }
    return out
}
