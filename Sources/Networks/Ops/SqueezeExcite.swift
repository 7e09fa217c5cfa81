// Squeeze-excitation as PySlowFast's SE (slowfast/models/operators.py) and pytorchvideo's
// SqueezeExcitation define it for X3D: global average pool over (T, H, W) -> fc1, a 1x1x1 conv
// with bias (C -> C_se) -> ReLU -> fc2, a 1x1x1 conv with bias (C_se -> C) -> sigmoid -> the input
// scaled per (sample, channel). C_se (PySlowFast's round_width(C, se_ratio)) is the builder's
// business: the op takes the weights. With the float64 oracle beside it.
// The big tensors are touched twice each way (pool, then scale; backward: the per-channel
// dot product of dy and x, then dx); the tiny [N, C] x [C, C_se] layers run in double.
// Backward, with s = sigmoid(z2), h = relu(z1), p = pooled input, P = T*H*W:
//   ds[n,c] = sum dy * x;  dz2 = ds * s * (1 - s);  dW2 += dz2^T h;  db2 += sum_n dz2
//   dz1 = (dz2 W2) * (h > 0);  dW1 += dz1^T p;  db1 += sum_n dz1
//   dx = dy * s + (dz1 W1) / P.

import Foundation

/// What `squeezeExciteForward` keeps for its backward: per sample and channel, a few floats.
public struct SqueezeExciteSaved: Sendable {
    /// Pooled input [N, C], hidden activation after ReLU [N, C_se] (double), the scale [N, C].
    let pooled: [Double], hidden: [Double], scale: [Float]
    /// The scale sigmoid(fc2(relu(fc1(pool(x))))) per (sample, channel), [N * C].
    public var channelScale: [Float] { scale }
}

/// Sizes of one SE call; weights may be [O, I, 1, 1, 1] (Conv3d, PySlowFast and pytorchvideo) or [O, I].
private struct SEGeometry {
    let x: Shape5D, reduced: Int

    init(_ input: [Int], _ w1: [Int], _ b1: [Int], _ w2: [Int], _ b2: [Int]) {
        x = Shape5D(input)
        precondition(w1.count >= 2 && w1.dropFirst(2).allSatisfy { $0 == 1 } && w1[1] == x.c,
                     "squeezeExcite: fc1 weight \(w1) must be [C_se, \(x.c), 1, 1, 1] or [C_se, \(x.c)]")
        reduced = w1[0]
        precondition(b1 == [reduced], "squeezeExcite: fc1 bias \(b1) for \(reduced) hidden channels")
        precondition(w2.count == w1.count && w2.dropFirst(2).allSatisfy { $0 == 1 } && w2[0] == x.c && w2[1] == reduced,
                     "squeezeExcite: fc2 weight \(w2) must be [\(x.c), \(reduced)\(w1.count == 5 ? ", 1, 1, 1" : "")]")
        precondition(b2 == [x.c], "squeezeExcite: fc2 bias \(b2) for \(x.c) channels")
    }
}

/// dst[i] = a[i] * s + b for i < count (8 lanes at a time).
@inline(__always)
private func scaleShift(_ a: UnsafePointer<Float>, _ s: Float, _ b: Float, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
    let sv = SIMD8(repeating: s), bv = SIMD8(repeating: b)
    var i = 0
    while i + 8 <= count {
        store8(load8(a + i) * sv + bv, dst + i)
        i += 8
    }
    while i < count {
        dst[i] = a[i] * s + b
        i += 1
    }
}

/// Squeeze-excitation forward: `x` [N, C, T, H, W]; `fc1Weight` [C_se, C, 1, 1, 1], `fc1Bias` [C_se],
/// `fc2Weight` [C, C_se, 1, 1, 1], `fc2Bias` [C] (2-D [O, I] weights also accepted). Returns
/// x * sigmoid(fc2(relu(fc1(mean_THW(x))))) broadcast per (n, c), and what backward needs;
/// `inPlace` overwrites and returns `x` (then backward, which reads x, is not possible).
public func squeezeExciteForward(_ x: FloatTensor, fc1Weight: FloatTensor, fc1Bias: FloatTensor,
                                 fc2Weight: FloatTensor, fc2Bias: FloatTensor,
                                 inPlace: Bool = false) -> (output: FloatTensor, saved: SqueezeExciteSaved) {
    let geo = SEGeometry(x.shape, fc1Weight.shape, fc1Bias.shape, fc2Weight.shape, fc2Bias.shape)
    let (n, c, r, plane) = (geo.x.n, geo.x.c, geo.reduced, geo.x.plane)
    let src = UnsafePointer(x.pointer)
    var pooled = [Double](repeating: 0, count: n * c)
    pooled.withUnsafeMutableBufferPointer { pb in
        let p = UncheckedSendable(pb.baseAddress!)
        parallelFor(n * c, work: plane) { nc in
            p.value[nc] = sums8d(src + nc * plane, nil, shift: 0, count: plane).0 / Double(plane)
        }
    }
    let w1 = fc1Weight.pointer, b1 = fc1Bias.pointer, w2 = fc2Weight.pointer, b2 = fc2Bias.pointer
    var hidden = [Double](repeating: 0, count: n * r)
    var scale = [Float](repeating: 0, count: n * c)
    for s in 0..<n {
        for j in 0..<r {
            var z = Double(b1[j])
            for ch in 0..<c { z += Double(w1[j * c + ch]) * pooled[s * c + ch] }
            hidden[s * r + j] = max(z, 0)
        }
        for ch in 0..<c {
            var z = Double(b2[ch])
            for j in 0..<r { z += Double(w2[ch * r + j]) * hidden[s * r + j] }
            scale[s * c + ch] = Float(z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z)))
        }
    }
    let out = inPlace ? x : FloatTensor(uninitialized: x.shape)
    let dst = out.pointer
    withExtendedLifetime((x, out)) {
        scale.withUnsafeBufferPointer { sb in
            let sp = UncheckedSendable(sb.baseAddress!)
            parallelFor(n * c, work: plane) { nc in
                scaleShift(src + nc * plane, sp.value[nc], 0, dst + nc * plane, plane)
            }
        }
    }
    return (out, SqueezeExciteSaved(pooled: pooled, hidden: hidden, scale: scale))
}

/// Squeeze-excitation backward from dL/doutput `gradOutput`, the forward's input `x` and `saved`:
/// adds the four parameter gradients (each optional) and returns dL/dx (nil when
/// `needInputGradient` is false). `inPlace` writes dL/dx over `gradOutput`. Gradients accumulate.
@discardableResult
public func squeezeExciteBackward(_ x: FloatTensor, gradOutput: FloatTensor, fc1Weight: FloatTensor, fc2Weight: FloatTensor,
                                  saved: SqueezeExciteSaved, gradFc1Weight: FloatTensor? = nil, gradFc1Bias: FloatTensor? = nil,
                                  gradFc2Weight: FloatTensor? = nil, gradFc2Bias: FloatTensor? = nil,
                                  needInputGradient: Bool = true, inPlace: Bool = false) -> FloatTensor? {
    let xs = x.shape5D
    let (n, c, plane) = (xs.n, xs.c, xs.plane)
    let r = fc1Weight.shape[0]
    precondition(gradOutput.shape == x.shape, "squeezeExciteBackward: gradOutput \(gradOutput.shape) for input \(x.shape)")
    precondition(fc1Weight.count == r * c && fc2Weight.count == c * r && saved.scale.count == n * c && saved.hidden.count == n * r,
                 "squeezeExciteBackward: weights \(fc1Weight.shape), \(fc2Weight.shape) and saved state for input \(x.shape)")
    for (g, w) in [(gradFc1Weight, fc1Weight), (gradFc2Weight, fc2Weight)] {
        if let g { precondition(g.shape == w.shape, "squeezeExciteBackward: gradient \(g.shape) for weight \(w.shape)") }
    }
    if let g = gradFc1Bias { precondition(g.shape == [r], "squeezeExciteBackward: fc1 bias gradient \(g.shape)") }
    if let g = gradFc2Bias { precondition(g.shape == [c], "squeezeExciteBackward: fc2 bias gradient \(g.shape)") }
    let xp = UnsafePointer(x.pointer), dyp = UnsafePointer(gradOutput.pointer)
    // ds = sum over the plane of dy * x, in double lanes.
    var ds = [Double](repeating: 0, count: n * c)
    withExtendedLifetime((x, gradOutput)) {
        ds.withUnsafeMutableBufferPointer { db in
            let d = UncheckedSendable(db.baseAddress!)
            parallelFor(n * c, work: 2 * plane) { nc in
                d.value[nc] = sums8d(xp + nc * plane, dyp + nc * plane, shift: 0, count: plane).1
            }
        }
    }
    let w1 = fc1Weight.pointer, w2 = fc2Weight.pointer
    var dz2 = [Double](repeating: 0, count: n * c), dz1 = [Double](repeating: 0, count: n * r)
    for i in 0..<(n * c) {
        let s = Double(saved.scale[i])
        dz2[i] = ds[i] * s * (1 - s)
    }
    for s in 0..<n {
        for j in 0..<r where saved.hidden[s * r + j] > 0 {
            var g = 0.0
            for ch in 0..<c { g += dz2[s * c + ch] * Double(w2[ch * r + j]) }
            dz1[s * r + j] = g
        }
    }
    if let g = gradFc2Weight {
        for ch in 0..<c { for j in 0..<r {
            var acc = 0.0
            for s in 0..<n { acc += dz2[s * c + ch] * saved.hidden[s * r + j] }
            g.pointer[ch * r + j] += Float(acc)
        } }
    }
    if let g = gradFc2Bias {
        for ch in 0..<c { g.pointer[ch] += Float((0..<n).reduce(0.0) { $0 + dz2[$1 * c + ch] }) }
    }
    if let g = gradFc1Weight {
        for j in 0..<r { for ch in 0..<c {
            var acc = 0.0
            for s in 0..<n { acc += dz1[s * r + j] * saved.pooled[s * c + ch] }
            g.pointer[j * c + ch] += Float(acc)
        } }
    }
    if let g = gradFc1Bias {
        for j in 0..<r { g.pointer[j] += Float((0..<n).reduce(0.0) { $0 + dz1[$1 * r + j] }) }
    }
    guard needInputGradient else { return nil }
    // dx = dy * s + dpooled / P, dpooled = dz1 W1.
    var shift = [Float](repeating: 0, count: n * c)
    for s in 0..<n { for ch in 0..<c {
        var g = 0.0
        for j in 0..<r { g += dz1[s * r + j] * Double(w1[j * c + ch]) }
        shift[s * c + ch] = Float(g / Double(plane))
    } }
    let dx = inPlace ? gradOutput : FloatTensor(uninitialized: x.shape)
    let dst = dx.pointer
    withExtendedLifetime((gradOutput, dx)) {
        shift.withUnsafeBufferPointer { sb in
            saved.scale.withUnsafeBufferPointer { kb in
                let (sp, kp) = (UncheckedSendable(sb.baseAddress!), UncheckedSendable(kb.baseAddress!))
                parallelFor(n * c, work: plane) { nc in
                    scaleShift(dyp + nc * plane, kp.value[nc], sp.value[nc], dst + nc * plane, plane)
                }
            }
        }
    }
    return dx
}

// MARK: - Float64 oracle

/// The SE chain written out plainly: (output, pooled [N, C], fc1 pre-activation [N, C_se], scale [N, C]).
private func squeezeExciteParts64(_ x: Tensor64, _ w1: Tensor64, _ b1: Tensor64, _ w2: Tensor64, _ b2: Tensor64)
    -> (out: Tensor64, pooled: [Double], z1: [Double], scale: [Double]) {
    let xs = Shape5D(x.shape)
    let (n, c, p, r) = (xs.n, xs.c, xs.plane, w1.shape[0])
    var pooled = [Double](repeating: 0, count: n * c), z1 = [Double](repeating: 0, count: n * r)
    var scale = [Double](repeating: 0, count: n * c)
    for i in 0..<(n * c) { pooled[i] = x.values[(i * p)..<((i + 1) * p)].reduce(0, +) / Double(p) }
    for s in 0..<n {
        for j in 0..<r {
            z1[s * r + j] = b1.values[j] + (0..<c).reduce(0.0) { $0 + w1.values[j * c + $1] * pooled[s * c + $1] }
        }
        for ch in 0..<c {
            let z = b2.values[ch] + (0..<r).reduce(0.0) { $0 + w2.values[ch * r + $1] * max(z1[s * r + $1], 0) }
            scale[s * c + ch] = 1 / (1 + exp(-z))
        }
    }
    var out = x
    for i in 0..<x.count { out.values[i] *= scale[i / p] }
    return (out, pooled, z1, scale)
}

/// Float64 SE forward.
public func squeezeExcite64(_ x: Tensor64, fc1Weight: Tensor64, fc1Bias: Tensor64, fc2Weight: Tensor64, fc2Bias: Tensor64) -> Tensor64 {
    squeezeExciteParts64(x, fc1Weight, fc1Bias, fc2Weight, fc2Bias).out
}

/// Float64 SE backward by the chain rule, one step per line.
public func squeezeExciteBackward64(_ x: Tensor64, fc1Weight: Tensor64, fc1Bias: Tensor64, fc2Weight: Tensor64, fc2Bias: Tensor64,
                                    gradOutput: Tensor64)
    -> (input: Tensor64, fc1Weight: Tensor64, fc1Bias: Tensor64, fc2Weight: Tensor64, fc2Bias: Tensor64) {
    let (_, pooled, z1, scale) = squeezeExciteParts64(x, fc1Weight, fc1Bias, fc2Weight, fc2Bias)
    let xs = Shape5D(x.shape)
    let (n, c, p, r) = (xs.n, xs.c, xs.plane, fc1Weight.shape[0])
    var dx = Tensor64(zeros: x.shape), dw1 = Tensor64(zeros: fc1Weight.shape), db1 = Tensor64(zeros: fc1Bias.shape)
    var dw2 = Tensor64(zeros: fc2Weight.shape), db2 = Tensor64(zeros: fc2Bias.shape)
    var dScale = [Double](repeating: 0, count: n * c)
    for i in 0..<x.count {
        dx.values[i] = gradOutput.values[i] * scale[i / p]
        dScale[i / p] += gradOutput.values[i] * x.values[i]
    }
    var dPooled = [Double](repeating: 0, count: n * c)
    for s in 0..<n {
        var dHidden = [Double](repeating: 0, count: r)
        for ch in 0..<c {
            let dz2 = dScale[s * c + ch] * scale[s * c + ch] * (1 - scale[s * c + ch])
            db2.values[ch] += dz2
            for j in 0..<r {
                dw2.values[ch * r + j] += dz2 * max(z1[s * r + j], 0)
                dHidden[j] += dz2 * fc2Weight.values[ch * r + j]
            }
        }
        for j in 0..<r {
            let dz1 = z1[s * r + j] > 0 ? dHidden[j] : 0
            db1.values[j] += dz1
            for ch in 0..<c {
                dw1.values[j * c + ch] += dz1 * pooled[s * c + ch]
                dPooled[s * c + ch] += dz1 * fc1Weight.values[j * c + ch]
            }
        }
    }
    for i in 0..<x.count { dx.values[i] += dPooled[i / p] / Double(p) }
    return (dx, dw1, db1, dw2, db2)
}
