// BatchNorm3d (torch.nn.BatchNorm3d). Eval mode with running statistics:
// y = (x - mean) / sqrt(var + eps) * weight + bias, folded once into a
// per-channel y = x * scale + shift, optionally fused with the ReLU after it.
// Train mode: batch statistics (biased variance normalises), running
// statistics updated as PyTorch does (momentum 0.1, the UNBIASED variance);
// backward from the saved input and per-channel mean / inverse std:
//   dx = w * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),
//   dw += sum(dy * xhat), db += sum(dy)
// (with frozen statistics, the eval form: dx = w * invstd * dy).

import Foundation

/// PyTorch's default BatchNorm epsilon.
public let batchNormEpsilon: Float = 1e-5

/// Eval-mode BatchNorm reduced to a per-channel affine map.
public struct BatchNormFold: Sendable {
    /// weight / sqrt(running_var + eps), per channel.
    public let scale: FloatTensor
    /// bias - running_mean * scale, per channel.
    public let shift: FloatTensor

    public var channels: Int { scale.count }

    /// Folds BN parameters ([C] each). A missing `weight`/`bias` (affine=False) means 1/0.
    public init(weight: FloatTensor?, bias: FloatTensor?, runningMean: FloatTensor, runningVar: FloatTensor,
                eps: Float = batchNormEpsilon) {
        let c = runningMean.count
        for (name, t) in [("weight", weight), ("bias", bias), ("running_var", runningVar)] {
            if let t { precondition(t.count == c, "batchNorm: \(name) has \(t.shape), running_mean has \(runningMean.shape)") }
        }
        let scale = FloatTensor(uninitialized: [c]), shift = FloatTensor(uninitialized: [c])
        for i in 0..<c {
            // Double, so that the fold adds no error of its own beyond the final rounding.
            let s = Double(weight?.pointer[i] ?? 1) / (Double(runningVar.pointer[i]) + Double(eps)).squareRoot()
            scale.pointer[i] = Float(s)
            shift.pointer[i] = Float(Double(bias?.pointer[i] ?? 0) - Double(runningMean.pointer[i]) * s)
        }
        self.scale = scale
        self.shift = shift
    }

    /// A fold from explicit scale and shift ([C] each).
    public init(scale: FloatTensor, shift: FloatTensor) {
        precondition(scale.count == shift.count, "batchNorm: scale \(scale.shape) vs shift \(shift.shape)")
        self.scale = scale
        self.shift = shift
    }
}

/// Eval-mode BN on channel dimension 1 of `x` ([N, C, ...]), optionally
/// followed by ReLU; `inPlace` overwrites and returns `x`.
public func batchNormEvalForward(_ x: FloatTensor, _ bn: BatchNormFold, relu: Bool = false,
                                 inPlace: Bool = false) -> FloatTensor {
    precondition(x.rank >= 2 && x.shape[1] == bn.channels,
                 "batchNorm: input \(x.shape) has \(x.rank >= 2 ? x.shape[1] : 0) channels, BN has \(bn.channels)")
    let out = inPlace ? x : FloatTensor(uninitialized: x.shape)
    let c = x.shape[1]
    let plane = x.count / max(1, x.shape[0] * c)
    let src = x.pointer, dst = out.pointer, scale = bn.scale.pointer, shift = bn.shift.pointer
    parallelFor(x.shape[0] * c, work: plane) { nc in
        let a = scale[nc % c], b = shift[nc % c]
        let s = src + nc * plane, d = dst + nc * plane
        if relu {
            for i in 0..<plane { d[i] = max(s[i] * a + b, 0) }
        } else {
            for i in 0..<plane { d[i] = s[i] * a + b }
        }
    }
    return out
}

/// The oracle: the unfolded formula in double precision.
public func batchNormEvalNaive(_ x: FloatTensor, weight: FloatTensor?, bias: FloatTensor?,
                               runningMean: FloatTensor, runningVar: FloatTensor,
                               eps: Float = batchNormEpsilon, relu: Bool = false) -> FloatTensor {
    let c = x.shape[1]
    let plane = x.count / max(1, x.shape[0] * c)
    let out = FloatTensor(uninitialized: x.shape)
    for i in 0..<x.count {
        let ch = (i / plane) % c
        let norm = (Double(x.pointer[i]) - Double(runningMean.pointer[ch]))
            / (Double(runningVar.pointer[ch]) + Double(eps)).squareRoot()
        let y = norm * Double(weight?.pointer[ch] ?? 1) + Double(bias?.pointer[ch] ?? 0)
        out.pointer[i] = Float(relu ? max(y, 0) : y)
    }
    return out
}

// MARK: - Train mode

/// What a BatchNorm forward saves for its backward: the statistics it normalised with,
/// in float64 (the backward's cancellation dy - mean(dy) - xhat * mean(dy * xhat) is
/// where small-batch BN loses precision; rounding the statistics to float adds to it).
public struct BatchNormSaved: Sendable {
    /// Per channel: the batch mean (train) or running mean (frozen statistics).
    public let mean: [Double]
    /// Per channel: 1 / sqrt(var + eps) of the same statistics.
    public let invStd: [Double]
    /// true: batch statistics (the backward differentiates through them).
    public let batchStatistics: Bool
}

/// Per-channel mean and biased variance of `x` ([N, C, ...]) in float64 (two passes: the
/// mean, then the squares of the deviations from it).
func channelMeanVariance(_ x: FloatTensor) -> (mean: [Double], variance: [Double]) {
    let (n, c) = (x.shape[0], x.shape[1])
    let plane = x.count / max(1, n * c)
    var mean = [Double](repeating: 0, count: c), variance = [Double](repeating: 0, count: c)
    let src = x.pointer
    mean.withUnsafeMutableBufferPointer { mp in
        variance.withUnsafeMutableBufferPointer { vp in
            let (mp, vp) = (UncheckedSendable(mp.baseAddress!), UncheckedSendable(vp.baseAddress!))
            parallelFor(c, work: 2 * n * plane) { ch in
                var sum = 0.0
                for s in 0..<n { sum += sums8d(src + (s * c + ch) * plane, nil, shift: 0, count: plane).0 }
                let m = sum / Double(max(1, n * plane))
                var sq = 0.0
                for s in 0..<n { sq += sums8d(src + (s * c + ch) * plane, nil, shift: m, count: plane).1 }
                mp.value[ch] = m
                vp.value[ch] = sq / Double(max(1, n * plane))
            }
        }
    }
    return (mean, variance)
}

/// Train-mode BatchNorm on channel dimension 1 of `x` ([N, C, ...]), optionally
/// followed by ReLU, writing `out` (a new tensor when nil; never `x`, which the
/// backward needs). With `batchStatistics` it normalises with the batch's mean and
/// biased variance and, when given, updates `runningMean` / `runningVar` in place:
/// r = (1 - momentum) * r + momentum * batch (unbiased variance for r_var; momentum 1
/// replaces them, as precise BN's first batch does).
/// Without, it normalises with the running statistics and updates nothing
/// (BN frozen inside a training step).
public func batchNormTrainForward(_ x: FloatTensor, weight: FloatTensor?, bias: FloatTensor?,
                                  runningMean: FloatTensor?, runningVar: FloatTensor?,
                                  batchStatistics: Bool = true, momentum: Double = 0.1,
                                  eps: Float = batchNormEpsilon, relu: Bool = false,
                                  into out: FloatTensor? = nil) -> (output: FloatTensor, saved: BatchNormSaved) {
    precondition(x.rank >= 2, "batchNorm: input \(x.shape) has no channel dimension")
    let (n, c) = (x.shape[0], x.shape[1])
    for (name, t) in [("weight", weight), ("bias", bias), ("running_mean", runningMean), ("running_var", runningVar)] {
        if let t { precondition(t.count == c, "batchNorm: \(name) has \(t.shape) for \(c) channels") }
    }
    let plane = x.count / max(1, n * c)
    var mean = [Double](repeating: 0, count: c), invStd = [Double](repeating: 0, count: c)
    if batchStatistics {
        let (m, v) = channelMeanVariance(x)
        let count = Double(n * plane)
        for ch in 0..<c {
            mean[ch] = m[ch]
            invStd[ch] = 1 / (v[ch] + Double(eps)).squareRoot()
            if let runningMean {
                runningMean.pointer[ch] = Float((1 - momentum) * Double(runningMean.pointer[ch]) + momentum * m[ch])
            }
            if let runningVar {
                let unbiased = count > 1 ? v[ch] * count / (count - 1) : v[ch]
                runningVar.pointer[ch] = Float((1 - momentum) * Double(runningVar.pointer[ch]) + momentum * unbiased)
            }
        }
    } else {
        guard let runningMean, let runningVar else { preconditionFailure("batchNorm: frozen statistics need running_mean and running_var") }
        for ch in 0..<c {
            mean[ch] = Double(runningMean.pointer[ch])
            invStd[ch] = 1 / (Double(runningVar.pointer[ch]) + Double(eps)).squareRoot()
        }
    }
    // y = (x - mean) * scale + bias per channel: centred first, so a mean large against the
    // spread does not cancel (x * scale + shift would lose |mean| / std of the precision).
    var center = [Float](repeating: 0, count: c), scale = [Float](repeating: 0, count: c), shift = [Float](repeating: 0, count: c)
    for ch in 0..<c {
        center[ch] = Float(mean[ch])
        // Fold the rounding of the float mean back into the bias: (x - m') * s + b - (m - m') * s.
        let s = Double(weight?.pointer[ch] ?? 1) * invStd[ch]
        scale[ch] = Float(s)
        shift[ch] = Float(Double(bias?.pointer[ch] ?? 0) - (mean[ch] - Double(center[ch])) * s)
    }
    let result = out ?? FloatTensor(uninitialized: x.shape)
    precondition(result.shape == x.shape && result !== x, "batchNorm: output \(result.shape) for input \(x.shape)")
    let src = x.pointer, dst = result.pointer
    center.withUnsafeBufferPointer { cp in scale.withUnsafeBufferPointer { sp in shift.withUnsafeBufferPointer { hp in
        let (cp, sp, hp) = (UncheckedSendable(cp), UncheckedSendable(sp), UncheckedSendable(hp))
        parallelFor(n * c, work: plane) { nc in
            let m = cp.value[nc % c], a = sp.value[nc % c], b = hp.value[nc % c]
            let s = src + nc * plane, d = dst + nc * plane
            if relu {
                for i in 0..<plane { d[i] = max((s[i] - m) * a + b, 0) }
            } else {
                for i in 0..<plane { d[i] = (s[i] - m) * a + b }
            }
        }
    } } }
    return (result, BatchNormSaved(mean: mean, invStd: invStd, batchStatistics: batchStatistics))
}

/// BatchNorm backward from its input `x`, `gradOutput` (already through any ReLU)
/// and what the forward saved. Adds to `gradWeight` / `gradBias` when given and
/// returns dL/dx, written over `gradOutput` when `inPlace`, or nil when
/// `needInputGradient` is false.
@discardableResult
public func batchNormBackward(_ x: FloatTensor, gradOutput: FloatTensor, weight: FloatTensor?, saved: BatchNormSaved,
                              gradWeight: FloatTensor? = nil, gradBias: FloatTensor? = nil,
                              needInputGradient: Bool = true, inPlace: Bool = false) -> FloatTensor? {
    precondition(gradOutput.shape == x.shape, "batchNormBackward: gradOutput \(gradOutput.shape) for input \(x.shape)")
    let (n, c) = (x.shape[0], x.shape[1])
    let plane = x.count / max(1, n * c)
    // Per channel, in float64: sum(dy) and sum(dy * xhat).
    var sumDy = [Double](repeating: 0, count: c), sumDyXhat = [Double](repeating: 0, count: c)
    let xs = x.pointer, dys = gradOutput.pointer
    sumDy.withUnsafeMutableBufferPointer { a in sumDyXhat.withUnsafeMutableBufferPointer { b in
        let (a, b) = (UncheckedSendable(a.baseAddress!), UncheckedSendable(b.baseAddress!))
        parallelFor(c, work: 2 * n * plane) { ch in
            let m = saved.mean[ch]
            var s1 = 0.0, s2 = 0.0
            for s in 0..<n {
                let (p1, p2) = sums8d(xs + (s * c + ch) * plane, dys + (s * c + ch) * plane, shift: m, count: plane)
                s1 += p1
                s2 += p2
            }
            a.value[ch] = s1
            b.value[ch] = s2 * saved.invStd[ch]
        }
    } }
    if let gradWeight { for ch in 0..<c { gradWeight.pointer[ch] = Float(Double(gradWeight.pointer[ch]) + sumDyXhat[ch]) } }
    if let gradBias { for ch in 0..<c { gradBias.pointer[ch] = Float(Double(gradBias.pointer[ch]) + sumDy[ch]) } }
    guard needInputGradient else { return nil }
    let dx = inPlace ? gradOutput : FloatTensor(uninitialized: x.shape)
    // dx = k * (dy - a - (x - mean) * b) with k = w * invstd, a = mean(dy), b = invstd * mean(dy * xhat);
    // without batch statistics a = b = 0 and dx = k * dy. With batch statistics the three terms
    // nearly cancel at small batches (exactly, for 2 values per channel and eps -> 0), so the map
    // runs in float64 and rounds once.
    let count = Double(n * plane)
    var k = [Double](repeating: 0, count: c), a = [Double](repeating: 0, count: c), b = [Double](repeating: 0, count: c)
    for ch in 0..<c {
        k[ch] = Double(weight?.pointer[ch] ?? 1) * saved.invStd[ch]
        if saved.batchStatistics {
            a[ch] = sumDy[ch] / count
            b[ch] = saved.invStd[ch] * sumDyXhat[ch] / count
        }
    }
    let dst = dx.pointer
    k.withUnsafeBufferPointer { kp in a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
        let (kp, ap, bp) = (UncheckedSendable(kp), UncheckedSendable(ap), UncheckedSendable(bp))
        parallelFor(n * c, work: plane) { nc in
            let ch = nc % c
            let xr = xs + nc * plane, dr = dys + nc * plane, out = dst + nc * plane
            guard saved.batchStatistics else {
                let kk = Float(kp.value[ch]), kv = SIMD16<Float>(repeating: kk)
                var i = 0
                while i + 16 <= plane { store16(kv * load16(dr + i), out + i); i += 16 }
                while i < plane { out[i] = kk * dr[i]; i += 1 }
                return
            }
            let (kk, aa, bb, m) = (kp.value[ch], ap.value[ch], bp.value[ch], saved.mean[ch])
            let kv = SIMD8<Double>(repeating: kk), av = SIMD8<Double>(repeating: aa)
            let bv = SIMD8<Double>(repeating: bb), mv = SIMD8<Double>(repeating: m)
            var i = 0
            while i + 8 <= plane {
                let dv = SIMD8<Double>(UnsafeRawPointer(dr + i).loadUnaligned(as: SIMD8<Float>.self))
                let xv = SIMD8<Double>(UnsafeRawPointer(xr + i).loadUnaligned(as: SIMD8<Float>.self))
                let r = SIMD8<Float>(kv * (dv - av - (xv - mv) * bv))
                UnsafeMutableRawPointer(out + i).storeBytes(of: r, as: SIMD8<Float>.self)
                i += 8
            }
            while i < plane {
                out[i] = Float(kk * (Double(dr[i]) - aa - (Double(xr[i]) - m) * bb))
                i += 1
            }
        }
    } } }
    return dx
}

// MARK: - Float64 oracle (train mode)

/// Train-mode BatchNorm in float64: batch mean, biased variance; returns the
/// output and the updated running statistics (unbiased variance, `momentum`).
public func batchNormTrainForward64(_ x: Tensor64, weight: Tensor64, bias: Tensor64, runningMean: Tensor64,
                                    runningVar: Tensor64, momentum: Double = 0.1, eps: Double = 1e-5)
    -> (output: Tensor64, runningMean: Tensor64, runningVar: Tensor64) {
    let (n, c) = (x.shape[0], x.shape[1])
    let plane = x.count / max(1, n * c)
    let m = Double(n * plane)
    var out = Tensor64(zeros: x.shape), rm = runningMean, rv = runningVar
    for ch in 0..<c {
        var idx: [Int] = []
        for s in 0..<n { for i in 0..<plane { idx.append((s * c + ch) * plane + i) } }
        let mean = idx.reduce(0.0) { $0 + x.values[$1] } / m
        let variance = idx.reduce(0.0) { $0 + (x.values[$1] - mean) * (x.values[$1] - mean) } / m
        for i in idx {
            out.values[i] = (x.values[i] - mean) / (variance + eps).squareRoot() * weight.values[ch] + bias.values[ch]
        }
        rm.values[ch] = (1 - momentum) * rm.values[ch] + momentum * mean
        rv.values[ch] = (1 - momentum) * rv.values[ch] + momentum * variance * m / max(1, m - 1)
    }
    return (out, rm, rv)
}

/// Float64 train-mode BatchNorm backward: (dx, dweight, dbias).
public func batchNormTrainBackward64(_ x: Tensor64, weight: Tensor64, gradOutput: Tensor64, eps: Double = 1e-5)
    -> (input: Tensor64, weight: Tensor64, bias: Tensor64) {
    let (n, c) = (x.shape[0], x.shape[1])
    let plane = x.count / max(1, n * c)
    let m = Double(n * plane)
    var dx = Tensor64(zeros: x.shape), dw = Tensor64(zeros: [c]), db = Tensor64(zeros: [c])
    for ch in 0..<c {
        var idx: [Int] = []
        for s in 0..<n { for i in 0..<plane { idx.append((s * c + ch) * plane + i) } }
        let mean = idx.reduce(0.0) { $0 + x.values[$1] } / m
        let variance = idx.reduce(0.0) { $0 + (x.values[$1] - mean) * (x.values[$1] - mean) } / m
        let invStd = 1 / (variance + eps).squareRoot()
        var sumDy = 0.0, sumDyXhat = 0.0
        for i in idx {
            sumDy += gradOutput.values[i]
            sumDyXhat += gradOutput.values[i] * (x.values[i] - mean) * invStd
        }
        dw.values[ch] = sumDyXhat
        db.values[ch] = sumDy
        for i in idx {
            let xhat = (x.values[i] - mean) * invStd
            dx.values[i] = weight.values[ch] * invStd * (gradOutput.values[i] - sumDy / m - xhat * sumDyXhat / m)
        }
    }
    return (dx, dw, db)
}
