// Linear layer (torch.nn.functional.linear): y = x W^T + b with W in
// PyTorch layout [O, F], as one sgemm over all leading rows (split over the threads when large).
// Backward: dx = dy W, dW += dy^T x, db += sum of dy rows; needs x.

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
        // Split over the threads: a serial fill left the other core idle (perf, VideoMAE-S train step).
        withExtendedLifetime(bias) {
            parallelRanges(rows, minPerThread: max(1, (1 << 15) / max(o, 1))) { range in
                for r in range { (out.pointer + r * o).update(from: bias.pointer, count: o) }
            }
        }
    }
    parallelSgemm(transA: false, transB: true, m: rows, n: o, k: f, a: x.pointer, lda: f, b: weight.pointer, ldb: f,
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

/// Linear backward for `x` [..., F], `weight` [O, F], `gradOutput` [..., O]: adds
/// dy^T x to `gradWeight` and the row sums of dy to `gradBias` (when given) and
/// returns dL/dx (nil when `needInputGradient` is false).
@discardableResult
public func linearBackward(_ x: FloatTensor, weight: FloatTensor, gradOutput: FloatTensor,
                           gradWeight: FloatTensor? = nil, gradBias: FloatTensor? = nil,
                           needInputGradient: Bool = true) -> FloatTensor? {
    let (o, f) = (weight.shape[0], weight.shape[1])
    let rows = f == 0 ? x.count : x.count / f
    precondition(gradOutput.count == rows * o && x.shape.last == f,
                 "linearBackward: x \(x.shape), weight \(weight.shape), gradOutput \(gradOutput.shape)")
    if let gradWeight {
        precondition(gradWeight.shape == weight.shape)
        parallelSgemm(transA: true, transB: false, m: o, n: f, k: rows, a: gradOutput.pointer, lda: o, b: x.pointer, ldb: f,
                      beta: 1, c: gradWeight.pointer, ldc: f)
    }
    if let gradBias {
        precondition(gradBias.shape == [o])
        // Column sums in double, row by row (contiguous reads), the rows split over the threads.
        let parts = min(max(1, rows / 256), Threading.threads)
        var partial = [Double](repeating: 0, count: parts * o)
        partial.withUnsafeMutableBufferPointer { acc in
            let base = acc.baseAddress!, g = gradOutput.pointer
            parallelFor(parts, work: 1 << 30) { part in
                let sums = base + part * o
                let lo = part * rows / parts, hi = (part + 1) * rows / parts
                for r in lo..<hi {
                    let row = g + r * o
                    for j in 0..<o { sums[j] += Double(row[j]) }
                }
            }
        }
        for j in 0..<o {
            var s: Double = 0
            for part in 0..<parts { s += partial[part * o + j] }
            gradBias.pointer[j] += Float(s)
        }
    }
    guard needInputGradient else { return nil }
    let dx = FloatTensor(uninitialized: x.shape)
    parallelSgemm(m: rows, n: f, k: o, a: gradOutput.pointer, lda: o, b: weight.pointer, ldb: f, beta: 0, c: dx.pointer, ldc: f)
    return dx
}

// MARK: - Float64 oracle

public func linearForward64(_ x: Tensor64, weight: Tensor64, bias: Tensor64?) -> Tensor64 {
    let (o, f) = (weight.shape[0], weight.shape[1])
    let rows = x.count / f
    var shape = x.shape
    shape[shape.count - 1] = o
    var out = Tensor64(zeros: shape)
    for r in 0..<rows { for j in 0..<o {
        var acc = bias?.values[j] ?? 0
        for i in 0..<f { acc += x.values[r * f + i] * weight.values[j * f + i] }
        out.values[r * o + j] = acc
    } }
    return out
}

public func linearBackward64(_ x: Tensor64, weight: Tensor64, gradOutput: Tensor64) -> (input: Tensor64, weight: Tensor64, bias: Tensor64) {
    let (o, f) = (weight.shape[0], weight.shape[1])
    let rows = x.count / f
    var dx = Tensor64(zeros: x.shape), dw = Tensor64(zeros: weight.shape), db = Tensor64(zeros: [o])
    for r in 0..<rows { for j in 0..<o {
        let g = gradOutput.values[r * o + j]
        db.values[j] += g
        for i in 0..<f {
            dx.values[r * f + i] += g * weight.values[j * f + i]
            dw.values[j * f + i] += g * x.values[r * f + i]
        }
    } }
    return (dx, dw, db)
}
