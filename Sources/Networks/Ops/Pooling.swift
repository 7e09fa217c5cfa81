// MaxPool3d, AvgPool3d and global average pooling with PyTorch semantics
// (ceil_mode false; max pooling pads with -inf, i.e. ignores padding; average
// pooling counts padding by default). Each with its naive oracle.
// Backward: max pooling routes each gradient to its saved argmax index,
// average pooling spreads it over the window by the same divisor.

import Foundation

/// Kernel, stride and padding of a 3-D pooling window.
public struct Pool3dConfig: Equatable, Sendable {
    public var kernel: Size3
    public var stride: Size3
    public var padding: Size3

    /// `stride` defaults to `kernel`, as in PyTorch.
    public init(kernel: Size3, stride: Size3? = nil, padding: Size3 = 0) {
        self.kernel = kernel
        self.stride = stride ?? kernel
        self.padding = padding
    }

    /// Output shape for an NCTHW input, after checking PyTorch's constraints.
    func outputShape(_ x: Shape5D, op: String) -> Shape5D {
        let (k, s, p) = (kernel, stride, padding)
        precondition([k.t, k.h, k.w, s.t, s.h, s.w].allSatisfy { $0 >= 1 },
                     "\(op): kernel \(k) and stride \(s) must be >= 1")
        precondition(p.t >= 0 && p.h >= 0 && p.w >= 0 && 2 * p.t <= k.t && 2 * p.h <= k.h && 2 * p.w <= k.w,
                     "\(op): padding \(p) must be at most half of kernel \(k)")
        let o = windowOutputSize(x.spatial, kernel: k, stride: s, padding: p)
        precondition(o.t >= 1 && o.h >= 1 && o.w >= 1, "\(op): kernel \(k) does not fit input \(x) padded by \(p)")
        return Shape5D(n: x.n, c: x.c, t: o.t, h: o.h, w: o.w)
    }
}

/// Max pooling of an NCTHW tensor.
public func maxPool3dForward(_ x: FloatTensor, _ config: Pool3dConfig) -> FloatTensor {
    maxPool3d(x, config, indices: nil)
}

/// Max pooling that also returns, per output element, the flat index of the
/// chosen input element within its (n, c) plane (t*H*W + h*W + w), as PyTorch's
/// `return_indices=True`; the backward pass routes gradients through them.
public func maxPool3dForwardWithIndices(_ x: FloatTensor, _ config: Pool3dConfig) -> (output: FloatTensor, indices: [Int32]) {
    let os = config.outputShape(x.shape5D, op: "maxPool3d")
    precondition(x.shape5D.plane <= Int(Int32.max), "maxPool3d: plane too large for Int32 indices")
    var indices = [Int32](repeating: 0, count: os.n * os.c * os.plane)
    let out = indices.withUnsafeMutableBufferPointer { maxPool3d(x, config, indices: $0.baseAddress!) }
    return (out, indices)
}

private func maxPool3d(_ x: FloatTensor, _ config: Pool3dConfig, indices: UnsafeMutablePointer<Int32>?) -> FloatTensor {
    let xs = x.shape5D
    let os = config.outputShape(xs, op: "maxPool3d")
    let out = FloatTensor(uninitialized: os.array)
    let (k, s, p) = (config.kernel, config.stride, config.padding)
    let src = x.pointer, dst = out.pointer
    let (inPlane, outPlane, frame) = (xs.plane, os.plane, xs.h * xs.w)
    parallelFor(xs.n * xs.c, work: outPlane * k.product) { nc in
        let xp = src + nc * inPlane
        var o = nc * outPlane
        for to in 0..<os.t {
            let t0 = max(0, to * s.t - p.t), t1 = min(xs.t, to * s.t - p.t + k.t)
            for ho in 0..<os.h {
                let h0 = max(0, ho * s.h - p.h), h1 = min(xs.h, ho * s.h - p.h + k.h)
                for wo in 0..<os.w {
                    let w0 = max(0, wo * s.w - p.w), w1 = min(xs.w, wo * s.w - p.w + k.w)
                    var best = -Float.infinity
                    var arg = t0 * frame + h0 * xs.w + w0
                    for t in t0..<t1 {
                        for h in h0..<h1 {
                            let row = t * frame + h * xs.w
                            for w in w0..<w1 {
                                let v = xp[row + w]
                                // NaN propagates, as in PyTorch (`val > max || isnan(val)`).
                                if v > best || v.isNaN {
                                    best = v
                                    arg = row + w
                                }
                            }
                        }
                    }
                    dst[o] = best
                    indices?[o] = Int32(arg)
                    o += 1
                }
            }
        }
    }
    return out
}

/// Average pooling of an NCTHW tensor. With `countIncludePad` (PyTorch's
/// default) the divisor is the window size including padding.
public func avgPool3dForward(_ x: FloatTensor, _ config: Pool3dConfig, countIncludePad: Bool = true) -> FloatTensor {
    let xs = x.shape5D
    let os = config.outputShape(xs, op: "avgPool3d")
    let out = FloatTensor(uninitialized: os.array)
    let (k, s, p) = (config.kernel, config.stride, config.padding)
    let src = x.pointer, dst = out.pointer
    let (inPlane, outPlane, frame) = (xs.plane, os.plane, xs.h * xs.w)
    parallelFor(xs.n * xs.c, work: outPlane * k.product) { nc in
        let xp = src + nc * inPlane
        var o = nc * outPlane
        for to in 0..<os.t {
            let ts = to * s.t - p.t
            let t0 = max(0, ts), t1 = min(xs.t, ts + k.t)
            for ho in 0..<os.h {
                let hs = ho * s.h - p.h
                let h0 = max(0, hs), h1 = min(xs.h, hs + k.h)
                for wo in 0..<os.w {
                    let ws = wo * s.w - p.w
                    let w0 = max(0, ws), w1 = min(xs.w, ws + k.w)
                    var sum: Float = 0
                    for t in t0..<t1 {
                        for h in h0..<h1 {
                            let row = xp + t * frame + h * xs.w
                            for w in w0..<w1 { sum += row[w] }
                        }
                    }
                    let divisor = countIncludePad
                        ? (min(ts + k.t, xs.t + p.t) - ts) * (min(hs + k.h, xs.h + p.h) - hs) * (min(ws + k.w, xs.w + p.w) - ws)
                        : (t1 - t0) * (h1 - h0) * (w1 - w0)
                    dst[o] = sum / Float(divisor)
                    o += 1
                }
            }
        }
    }
    return out
}

/// Mean over T, H and W: [N, C, T, H, W] -> [N, C, 1, 1, 1] (AdaptiveAvgPool3d(1)).
public func globalAvgPool3dForward(_ x: FloatTensor) -> FloatTensor {
    let xs = x.shape5D
    let out = FloatTensor(uninitialized: [xs.n, xs.c, 1, 1, 1])
    let plane = xs.plane
    let src = x.pointer, dst = out.pointer
    parallelFor(xs.n * xs.c, work: plane) { nc in
        let xp = src + nc * plane
        var sum: Float = 0
        for i in 0..<plane { sum += xp[i] }
        dst[nc] = sum / Float(plane)
    }
    return out
}

// MARK: - Reference

/// The oracle for both pools: every window position checked against the
/// padded extent, accumulation in double.
public func pool3dNaive(_ x: FloatTensor, _ config: Pool3dConfig, max isMax: Bool,
                        countIncludePad: Bool = true) -> FloatTensor {
    let xs = x.shape5D
    let os = config.outputShape(xs, op: "pool3d")
    let (k, s, p) = (config.kernel, config.stride, config.padding)
    let out = FloatTensor(uninitialized: os.array)
    var o = 0
    for nc in 0..<(xs.n * xs.c) { for to in 0..<os.t { for ho in 0..<os.h { for wo in 0..<os.w {
        var best = -Double.infinity, sum = 0.0, valid = 0, padded = 0
        for kt in 0..<k.t { for kh in 0..<k.h { for kw in 0..<k.w {
            let t = to * s.t - p.t + kt, h = ho * s.h - p.h + kh, w = wo * s.w - p.w + kw
            // Positions inside the padded input count for the average's divisor.
            if t < xs.t + p.t && h < xs.h + p.h && w < xs.w + p.w { padded += 1 }
            guard t >= 0, t < xs.t, h >= 0, h < xs.h, w >= 0, w < xs.w else { continue }
            let v = Double(x.pointer[((nc * xs.t + t) * xs.h + h) * xs.w + w])
            best = max(best, v)
            sum += v
            valid += 1
        } } }
        out.pointer[o] = Float(isMax ? best : sum / Double(countIncludePad ? padded : valid))
        o += 1
    } } } }
    return out
}

public func globalAvgPool3dNaive(_ x: FloatTensor) -> FloatTensor {
    let xs = x.shape5D
    let out = FloatTensor(uninitialized: [xs.n, xs.c, 1, 1, 1])
    for nc in 0..<(xs.n * xs.c) {
        var sum = 0.0
        for i in 0..<xs.plane { sum += Double(x.pointer[nc * xs.plane + i]) }
        out.pointer[nc] = Float(sum / Double(xs.plane))
    }
    return out
}

// MARK: - Backward

/// Max pooling backward: each output gradient added at its argmax (the indices
/// `maxPool3dForwardWithIndices` returned, flat within the (n, c) plane).
public func maxPool3dBackward(gradOutput: FloatTensor, indices: [Int32], inputShape: [Int]) -> FloatTensor {
    let xs = Shape5D(inputShape), os = gradOutput.shape5D
    precondition(indices.count == gradOutput.count && os.n == xs.n && os.c == xs.c,
                 "maxPool3dBackward: gradOutput \(gradOutput.shape), \(indices.count) indices, input \(inputShape)")
    let dx = FloatTensor(zeros: inputShape)
    let dy = gradOutput.pointer, d = dx.pointer
    indices.withUnsafeBufferPointer { ip in
        let ip = UncheckedSendable(ip.baseAddress!)
        parallelFor(xs.n * xs.c, work: os.plane) { nc in
            let dst = d + nc * xs.plane
            for o in (nc * os.plane)..<((nc + 1) * os.plane) { dst[Int(ip.value[o])] += dy[o] }
        }
    }
    return dx
}

/// Average pooling backward: each output gradient spread over its window,
/// divided by the forward's divisor.
public func avgPool3dBackward(gradOutput: FloatTensor, inputShape: [Int], _ config: Pool3dConfig,
                              countIncludePad: Bool = true) -> FloatTensor {
    let xs = Shape5D(inputShape)
    let os = config.outputShape(xs, op: "avgPool3dBackward")
    precondition(gradOutput.shape == os.array, "avgPool3dBackward: gradOutput \(gradOutput.shape) for output \(os)")
    let dx = FloatTensor(zeros: inputShape)
    let (k, s, p) = (config.kernel, config.stride, config.padding)
    let dy = gradOutput.pointer, d = dx.pointer
    let frame = xs.h * xs.w
    parallelFor(xs.n * xs.c, work: os.plane * k.product) { nc in
        let xp = d + nc * xs.plane
        var o = nc * os.plane
        for to in 0..<os.t {
            let ts = to * s.t - p.t
            let t0 = max(0, ts), t1 = min(xs.t, ts + k.t)
            for ho in 0..<os.h {
                let hs = ho * s.h - p.h
                let h0 = max(0, hs), h1 = min(xs.h, hs + k.h)
                for wo in 0..<os.w {
                    let ws = wo * s.w - p.w
                    let w0 = max(0, ws), w1 = min(xs.w, ws + k.w)
                    let divisor = countIncludePad
                        ? (min(ts + k.t, xs.t + p.t) - ts) * (min(hs + k.h, xs.h + p.h) - hs) * (min(ws + k.w, xs.w + p.w) - ws)
                        : (t1 - t0) * (h1 - h0) * (w1 - w0)
                    let g = dy[o] / Float(divisor)
                    for t in t0..<t1 { for h in h0..<h1 {
                        let row = xp + t * frame + h * xs.w
                        for w in w0..<w1 { row[w] += g }
                    } }
                    o += 1
                }
            }
        }
    }
    return dx
}

/// Global average pooling backward: [N, C, 1, 1, 1] (or [N, C]) -> the input shape, dy / (T*H*W) everywhere.
public func globalAvgPool3dBackward(gradOutput: FloatTensor, inputShape: [Int]) -> FloatTensor {
    let xs = Shape5D(inputShape)
    precondition(gradOutput.count == xs.n * xs.c, "globalAvgPool3dBackward: gradOutput \(gradOutput.shape) for input \(inputShape)")
    let dx = FloatTensor(uninitialized: inputShape)
    let dy = gradOutput.pointer, d = dx.pointer
    parallelFor(xs.n * xs.c, work: xs.plane) { nc in
        (d + nc * xs.plane).update(repeating: dy[nc] / Float(xs.plane), count: xs.plane)
    }
    return dx
}

// MARK: - Float64 oracle

/// Calls `body(inputIndex, outputIndex)` for every in-bounds window element and
/// `divisor(outputIndex, validCount, paddedCount)` once per output position.
private func pool3dVisit(_ xs: Shape5D, _ config: Pool3dConfig, _ body: (Int, Int) -> Void, window: (Int, Int, Int) -> Void) {
    let os = config.outputShape(xs, op: "pool3d")
    let (k, s, p) = (config.kernel, config.stride, config.padding)
    var o = 0
    for nc in 0..<(xs.n * xs.c) { for to in 0..<os.t { for ho in 0..<os.h { for wo in 0..<os.w {
        var valid = 0, padded = 0
        for kt in 0..<k.t { for kh in 0..<k.h { for kw in 0..<k.w {
            let t = to * s.t - p.t + kt, h = ho * s.h - p.h + kh, w = wo * s.w - p.w + kw
            if t < xs.t + p.t && h < xs.h + p.h && w < xs.w + p.w { padded += 1 }
            guard t >= 0, t < xs.t, h >= 0, h < xs.h, w >= 0, w < xs.w else { continue }
            body(((nc * xs.t + t) * xs.h + h) * xs.w + w, o)
            valid += 1
        } } }
        window(o, valid, padded)
        o += 1
    } } } }
}

/// Float64 max (first maximum in scan order) or average pooling.
public func pool3dForward64(_ x: Tensor64, _ config: Pool3dConfig, max isMax: Bool, countIncludePad: Bool = true) -> Tensor64 {
    let xs = Shape5D(x.shape)
    var out = Tensor64(zeros: config.outputShape(xs, op: "pool3d").array)
    var best = [Double](repeating: -.infinity, count: out.count)
    pool3dVisit(xs, config, { xi, o in
        if isMax { best[o] = max(best[o], x.values[xi]) } else { out.values[o] += x.values[xi] }
    }, window: { o, valid, padded in
        out.values[o] = isMax ? best[o] : out.values[o] / Double(countIncludePad ? padded : valid)
    })
    return out
}

/// Float64 pooling backward (max: to the first maximum of each window).
public func pool3dBackward64(_ x: Tensor64, gradOutput: Tensor64, _ config: Pool3dConfig, max isMax: Bool,
                             countIncludePad: Bool = true) -> Tensor64 {
    let xs = Shape5D(x.shape)
    var dx = Tensor64(zeros: x.shape)
    var members: [Int] = []
    pool3dVisit(xs, config, { xi, _ in members.append(xi) }, window: { o, valid, padded in
        if isMax {
            var arg = members.first
            for m in members where x.values[m] > x.values[arg!] { arg = m }
            if let arg { dx.values[arg] += gradOutput.values[o] }
        } else {
            for m in members { dx.values[m] += gradOutput.values[o] / Double(countIncludePad ? padded : valid) }
        }
        members.removeAll(keepingCapacity: true)
    })
    return dx
}
