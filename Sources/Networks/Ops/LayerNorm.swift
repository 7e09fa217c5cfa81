// LayerNorm over the last dimension (torch.nn.functional.layer_norm with normalized_shape = [D]):
// y = (x - mean) / sqrt(var + eps) * gamma + beta per row, biased variance, with its double-precision
// oracle. Row statistics are two passes in float64 lanes (mean, then the centred sum of squares), and
// x - mean is taken in double, so a row whose mean is large beside its spread (a residual stream)
// loses nothing to cancellation. Rows are split across the threads.
// Backward from the input and the saved (mean, rstd): with xhat = (x - mean) rstd and g = dy gamma,
// dx = rstd (g - mean(g) - xhat mean(g xhat)), dgamma += sum over rows of dy xhat, dbeta += sum of dy
// (per-thread float64 partial sums, added once).

import Foundation

/// What `layerNormForward` saves for the backward: each row's mean and 1 / sqrt(var + eps), in
/// double precision, `rows` of each (rows = element count / D, in the input's row order).
public final class LayerNormStatistics: @unchecked Sendable {
    public let rows: Int
    let mean: UnsafeMutablePointer<Double>
    let rstd: UnsafeMutablePointer<Double>

    public init(rows: Int) {
        self.rows = rows
        mean = .allocate(capacity: max(rows, 1))
        rstd = .allocate(capacity: max(rows, 1))
    }

    deinit {
        mean.deallocate()
        rstd.deallocate()
    }

    /// The row means (a copy).
    public var means: [Double] { Array(UnsafeBufferPointer(start: mean, count: rows)) }
    /// The rows' 1 / sqrt(var + eps) (a copy).
    public var rstds: [Double] { Array(UnsafeBufferPointer(start: rstd, count: rows)) }
}

/// LayerNorm of `x` [..., D] over its last dimension with optional affine `gamma` and `beta` [D]
/// (either may be nil: 1 and 0); `eps` as torch's (Hugging Face's default 1e-12, the original
/// VideoMAE/TimeSformer code's 1e-6). Returns the output (same shape, written into `output` when given;
/// it may be `x`) and, when `saveStatistics`, the rows' mean and rstd for `layerNormBackward`.
public func layerNormForward(_ x: FloatTensor, gamma: FloatTensor?, beta: FloatTensor?, eps: Double,
                             saveStatistics: Bool = true, into output: FloatTensor? = nil)
    -> (output: FloatTensor, statistics: LayerNormStatistics?) {
    precondition(x.rank >= 1 && x.shape[x.rank - 1] > 0, "layerNorm: input \(x.shape) has no last dimension")
    let d = x.shape[x.rank - 1], rows = x.count / d
    if let gamma { precondition(gamma.shape == [d], "layerNorm: gamma \(gamma.shape) for D = \(d)") }
    if let beta { precondition(beta.shape == [d], "layerNorm: beta \(beta.shape) for D = \(d)") }
    let out = output ?? FloatTensor(uninitialized: x.shape)
    precondition(out.count == x.count, "layerNorm: output \(out.shape) for input \(x.shape)")
    let stats = saveStatistics ? LayerNormStatistics(rows: rows) : nil
    withExtendedLifetime((x, gamma, beta, out, stats)) {
        layerNormRows(x.pointer, rows: rows, width: d, gamma: gamma?.pointer, beta: beta?.pointer, eps: eps,
                      output: out.pointer, mean: stats?.mean, rstd: stats?.rstd)
    }
    return (out, stats)
}

/// The rows' mean and rstd of row `x` (D = `d`), both in double.
@inline(__always)
private func rowStatistics(_ x: UnsafePointer<Float>, _ d: Int, eps: Double) -> (mean: Double, rstd: Double) {
    let mean = sums8d(x, nil, shift: 0, count: d).0 / Double(d)
    let centred = sums8d(x, nil, shift: mean, count: d).1
    return (mean, 1 / (centred / Double(d) + eps).squareRoot())
}

/// Normalises `rows` contiguous rows of `d` floats from `x` into `output` (may be `x`), storing each
/// row's mean and rstd when the pointers are given.
func layerNormRows(_ x: UnsafePointer<Float>, rows: Int, width d: Int, gamma: UnsafePointer<Float>?,
                   beta: UnsafePointer<Float>?, eps: Double, output: UnsafeMutablePointer<Float>,
                   mean: UnsafeMutablePointer<Double>?, rstd: UnsafeMutablePointer<Double>?) {
    parallelRanges(rows, minPerThread: max(1, (1 << 14) / d)) { range in
        for r in range {
            let src = x + r * d, dst = output + r * d
            let (m, s) = rowStatistics(src, d, eps: eps)
            mean?[r] = m
            rstd?[r] = s
            let mv = SIMD8<Double>(repeating: m), sv = SIMD8<Double>(repeating: s)
            var j = 0
            while j + 8 <= d {
                let xhat = SIMD8<Float>((SIMD8<Double>(load8(src + j)) - mv) * sv)
                let y = gamma.map { xhat * load8($0 + j) } ?? xhat
                store8(beta.map { y + load8($0 + j) } ?? y, dst + j)
                j += 8
            }
            while j < d {
                let xhat = Float((Double(src[j]) - m) * s)
                dst[j] = xhat * (gamma?[j] ?? 1) + (beta?[j] ?? 0)
                j += 1
            }
        }
    }
}

/// LayerNorm backward for `x` [..., D], `gradOutput` of the same shape and the forward's `statistics`
/// (recomputed when nil): adds sum over rows of dy * xhat to `gradGamma` and of dy to `gradBeta` (when
/// given, [D]) and returns dL/dx (nil when `needInputGradient` is false).
@discardableResult
public func layerNormBackward(_ x: FloatTensor, gamma: FloatTensor?, statistics: LayerNormStatistics?, eps: Double,
                              gradOutput: FloatTensor, gradGamma: FloatTensor? = nil, gradBeta: FloatTensor? = nil,
                              needInputGradient: Bool = true) -> FloatTensor? {
    let d = x.shape[x.rank - 1], rows = x.count / d
    precondition(gradOutput.shape == x.shape, "layerNormBackward: gradOutput \(gradOutput.shape) for input \(x.shape)")
    if let gamma { precondition(gamma.shape == [d], "layerNormBackward: gamma \(gamma.shape) for D = \(d)") }
    if let gradGamma { precondition(gradGamma.shape == [d], "layerNormBackward: gradGamma \(gradGamma.shape)") }
    if let gradBeta { precondition(gradBeta.shape == [d], "layerNormBackward: gradBeta \(gradBeta.shape)") }
    if let statistics { precondition(statistics.rows == rows, "layerNormBackward: statistics for \(statistics.rows) rows, input has \(rows)") }
    let stats = statistics ?? layerNormForward(x, gamma: nil, beta: nil, eps: eps).statistics!
    let dx = needInputGradient ? FloatTensor(uninitialized: x.shape) : nil
    withExtendedLifetime((x, gamma, stats, gradOutput, gradGamma, gradBeta, dx)) {
        layerNormBackwardRows(x.pointer, rows: rows, width: d, gamma: gamma?.pointer, mean: stats.mean, rstd: stats.rstd,
                              gradOutput: gradOutput.pointer, gradInput: dx?.pointer,
                              gradGamma: gradGamma?.pointer, gradBeta: gradBeta?.pointer)
    }
    return dx
}

/// The backward over `rows` contiguous rows of `d` floats: writes dx into `gradInput` (may be
/// `gradOutput`) when given, adds the parameter gradients into `gradGamma` / `gradBeta` when given.
func layerNormBackwardRows(_ x: UnsafePointer<Float>, rows: Int, width d: Int, gamma: UnsafePointer<Float>?,
                           mean: UnsafePointer<Double>, rstd: UnsafePointer<Double>,
                           gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
                           gradGamma: UnsafeMutablePointer<Float>?, gradBeta: UnsafeMutablePointer<Float>?) {
    let wantParams = gradGamma != nil || gradBeta != nil
    let maxParts = Threading.threads
    // Per part: D floats of g = dy * gamma, then 2 D doubles of (dgamma, dbeta) partial sums.
    let scratchG = UnsafeMutablePointer<Float>.allocate(capacity: maxParts * d)
    let partials = UnsafeMutablePointer<Double>.allocate(capacity: maxParts * 2 * d)
    partials.initialize(repeating: 0, count: maxParts * 2 * d)
    defer { scratchG.deallocate(); partials.deallocate() }
    let parts = parallelParts(rows, minPerThread: max(1, (1 << 14) / d), maxParts: maxParts) { part, range in
        let g = scratchG + part * d
        let dGamma = partials + part * 2 * d, dBeta = dGamma + d
        for r in range {
            let xr = x + r * d, dy = gradOutput + r * d
            let mv = SIMD8<Double>(repeating: mean[r]), sv = SIMD8<Double>(repeating: rstd[r])
            if wantParams {
                var j = 0
                while j + 8 <= d {
                    let dyv = SIMD8<Double>(load8(dy + j)), xhat = (SIMD8<Double>(load8(xr + j)) - mv) * sv
                    let pg = UnsafeMutableRawPointer(dGamma + j), pb = UnsafeMutableRawPointer(dBeta + j)
                    pg.storeBytes(of: pg.loadUnaligned(as: SIMD8<Double>.self) + dyv * xhat, as: SIMD8<Double>.self)
                    pb.storeBytes(of: pb.loadUnaligned(as: SIMD8<Double>.self) + dyv, as: SIMD8<Double>.self)
                    j += 8
                }
                while j < d {
                    dGamma[j] += Double(dy[j]) * ((Double(xr[j]) - mean[r]) * rstd[r])
                    dBeta[j] += Double(dy[j])
                    j += 1
                }
            }
            guard let gradInput else { continue }
            let gr: UnsafePointer<Float>
            if let gamma {
                for j in 0..<d { g[j] = dy[j] * gamma[j] }
                gr = UnsafePointer(g)
            } else {
                gr = dy
            }
            // sum g and sum g (x - mean), in double.
            let (sumG, sumGX) = sums8d(xr, gr, shift: mean[r], count: d)
            let c1 = sumG / Double(d), c2 = sumGX * rstd[r] / Double(d)
            let c1v = SIMD8<Double>(repeating: c1), c2v = SIMD8<Double>(repeating: c2)
            let dst = gradInput + r * d
            var j = 0
            while j + 8 <= d {
                let xhat = (SIMD8<Double>(load8(xr + j)) - mv) * sv
                store8(SIMD8<Float>(sv * (SIMD8<Double>(load8(gr + j)) - c1v - xhat * c2v)), dst + j)
                j += 8
            }
            while j < d {
                let xhat = (Double(xr[j]) - mean[r]) * rstd[r]
                dst[j] = Float(rstd[r] * (Double(gr[j]) - c1 - xhat * c2))
                j += 1
            }
        }
    }
    guard wantParams else { return }
    for j in 0..<d {
        var sg = 0.0, sb = 0.0
        for p in 0..<parts {
            sg += partials[p * 2 * d + j]
            sb += partials[p * 2 * d + d + j]
        }
        gradGamma?[j] += Float(sg)
        gradBeta?[j] += Float(sb)
    }
}

// MARK: - Float64 oracle

/// LayerNorm over the last dimension in double precision (gamma, beta nil: 1 and 0).
public func layerNorm64(_ x: Tensor64, gamma: Tensor64?, beta: Tensor64?, eps: Double) -> Tensor64 {
    let d = x.shape[x.shape.count - 1], rows = x.count / d
    var out = Tensor64(zeros: x.shape)
    for r in 0..<rows {
        let row = x.values[(r * d)..<((r + 1) * d)]
        let mean = row.reduce(0, +) / Double(d)
        let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(d)
        let rstd = 1 / (variance + eps).squareRoot()
        for j in 0..<d {
            out.values[r * d + j] = (x.values[r * d + j] - mean) * rstd * (gamma?.values[j] ?? 1) + (beta?.values[j] ?? 0)
        }
    }
    return out
}

/// LayerNorm's gradients in double precision, through each row's full Jacobian
/// dy_i/dx_j = gamma_i rstd (delta_ij - 1/D - xhat_i xhat_j / D).
public func layerNormBackward64(_ x: Tensor64, gamma: Tensor64?, eps: Double, gradOutput: Tensor64)
    -> (input: Tensor64, gamma: Tensor64, beta: Tensor64) {
    let d = x.shape[x.shape.count - 1], rows = x.count / d
    var dx = Tensor64(zeros: x.shape), dGamma = Tensor64(zeros: [d]), dBeta = Tensor64(zeros: [d])
    for r in 0..<rows {
        let row = Array(x.values[(r * d)..<((r + 1) * d)])
        let mean = row.reduce(0, +) / Double(d)
        let rstd = 1 / (row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(d) + eps).squareRoot()
        let xhat = row.map { ($0 - mean) * rstd }
        for i in 0..<d {
            let dy = gradOutput.values[r * d + i]
            dGamma.values[i] += dy * xhat[i]
            dBeta.values[i] += dy
            let g = dy * (gamma?.values[i] ?? 1)
            for j in 0..<d {
                let jac = rstd * ((i == j ? 1 : 0) - 1 / Double(d) - xhat[i] * xhat[j] / Double(d))
                dx.values[r * d + j] += g * jac
            }
        }
    }
    return (dx, dGamma, dBeta)
}
