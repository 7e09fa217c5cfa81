// The building blocks of PySlowFast's ResNet trunk on activation views:
// the bottleneck (resnet_helper.BottleneckTransform + ResBlock), the stem's
// max pool, and the head's fixed-kernel average pool.

import Foundation

/// One bottleneck block: a (Tx1x1) -> b (1x3x3, groups) -> c (1x1x1), each with
/// folded BN and ReLU after a and b; shortcut `branch1` (1x1x1 strided, BN) or
/// identity; add; ReLU. The spatial stride sits on b, or on a with `stride_1x1`.
struct Bottleneck {
    /// `sK.pathwayP_resI`.
    let name: String
    let a: ConvLayer, b: ConvLayer, c: ConvLayer
    let branch1: ConvLayer?
    /// b's activation (ReLU, or X3D's Swish), after the squeeze-excitation when there is one.
    var bActivation: BlockActivation = .relu
    var se: EvalSqueezeExcite?

    enum BlockActivation { case relu, swish }

    /// Runs the block on `x`. The result goes into `out` when given (a view into a
    /// wider buffer), else into `x` itself when `inPlace` (x is not needed
    /// afterwards and has no projection shortcut), else into a fresh buffer.
    func run(_ x: Act, into out: Act?, inPlace: Bool, pool: BufferPool, workspace: Workspace,
             profile: ForwardProfile?, stage: String) -> Act {
        let ga = a.geometry(x.shape)
        let ya = Act(pool, ga.outputShape)
        timed(profile, kind: a.kind, stage: stage, layer: a.name, macs: ga.macs) {
            a.run(x, into: ya, relu: true, workspace: workspace)
        }
        let gb = b.geometry(ya.shape)
        let yb = Act(pool, gb.outputShape)
        if gb.isChannelwise {
            // X3D: the activation, or SE's channel sums, in the conv's output pass; then SE's gate and
            // the activation in one sweep.
            let sums = se.map { _ in FloatTensor(uninitialized: [gb.input.n, gb.outChannels]) }
            let epilogue: ChannelwiseEpilogue = sums.map { .sums($0.pointer) } ?? (bActivation == .swish ? .swish : .relu)
            timed(profile, kind: b.kind, stage: stage, layer: b.name, macs: gb.macs) {
                withExtendedLifetime(sums) { b.run(ya, into: yb, relu: false, channelwise: epilogue, workspace: workspace) }
            }
            if let se, let sums {
                timed(profile, kind: "squeeze-excitation + \(bActivation)", stage: stage, layer: se.name) {
                    se.apply(yb, sums: sums, swish: bActivation == .swish)
                }
            }
        } else {
            timed(profile, kind: b.kind, stage: stage, layer: b.name, macs: gb.macs) {
                b.run(ya, into: yb, relu: bActivation == .relu && se == nil, workspace: workspace)
            }
        }
        if let se, !gb.isChannelwise {
            timed(profile, kind: "squeeze-excitation", stage: stage, layer: se.name) { se.apply(yb) }
            if bActivation == .relu { timed(profile, kind: "relu", stage: stage, layer: b.name) { reluInPlace(yb) } }
        }
        if bActivation == .swish && !gb.isChannelwise {
            timed(profile, kind: "swish", stage: stage, layer: b.name) { swishInPlace(yb) }
        }
        let gc = c.geometry(yb.shape)
        if let branch1 {
            let result = out ?? Act(pool, gc.outputShape)
            let g1 = branch1.geometry(x.shape)
            timed(profile, kind: branch1.kind, stage: stage, layer: branch1.name, macs: g1.macs) {
                branch1.run(x, into: result, relu: false, workspace: workspace)
            }
            timed(profile, kind: c.kind, stage: stage, layer: c.name, macs: gc.macs) {
                c.run(yb, into: result, relu: true, accumulate: true, workspace: workspace)
            }
            return result
        }
        if out == nil && inPlace {
            // Identity shortcut: the GEMM accumulates onto the block input itself.
            timed(profile, kind: c.kind, stage: stage, layer: c.name, macs: gc.macs) {
                c.run(yb, into: x, relu: true, accumulate: true, workspace: workspace)
            }
            return x
        }
        let result = out ?? Act(pool, gc.outputShape)
        timed(profile, kind: c.kind, stage: stage, layer: c.name, macs: gc.macs) {
            c.run(yb, into: result, relu: true, residual: x, workspace: workspace)
        }
        return result
    }
}

/// Max pooling of a view into a view (PyTorch semantics: padding never wins,
/// NaN propagates). Windows one frame deep (the stem's 1x3x3) run separably: a
/// row max per input row, then a column max over the window's rows.
func maxPool(_ x: Act, _ config: Pool3dConfig, into out: Act) {
    let xs = x.shape, os = out.shape
    precondition(config.outputShape(xs, op: "maxPool3d") == os)
    let (k, s, p) = (config.kernel, config.stride, config.padding)
    let frame = xs.h * xs.w
    @inline(__always) func pick(_ best: Float, _ v: Float) -> Float { v > best || v != v ? v : best }
    withExtendedLifetime((x.buffer, out.buffer)) {
        guard k.t == 1 && s.t == 1 && p.t == 0 else {
            parallelFor(xs.n * xs.c, work: os.plane * k.product) { nc in
                let (n, c) = (nc / xs.c, nc % xs.c)
                let src = x.sample(n) + c * xs.plane
                let dst = out.sample(n) + c * os.plane
                var o = 0
                for to in 0..<os.t {
                    let t0 = max(0, to * s.t - p.t), t1 = min(xs.t, to * s.t - p.t + k.t)
                    for ho in 0..<os.h {
                        let h0 = max(0, ho * s.h - p.h), h1 = min(xs.h, ho * s.h - p.h + k.h)
                        for wo in 0..<os.w {
                            let w0 = max(0, wo * s.w - p.w), w1 = min(xs.w, wo * s.w - p.w + k.w)
                            var best = -Float.infinity
                            for t in t0..<t1 { for h in h0..<h1 {
                                let row = src + t * frame + h * xs.w
                                for w in w0..<w1 { best = pick(best, row[w]) }
                            } }
                            dst[o] = best
                            o += 1
                        }
                    }
                }
            }
            return
        }
        // One frame at a time: the column max over each output row's window rows
        // (contiguous, vectorizes), then the row max over each output column's window.
        let frames = xs.n * xs.c * xs.t
        let parts = max(1, min(Threading.threads, frames))
        let columnMax = UnsafeMutablePointer<Float>.allocate(capacity: parts * xs.w)
        defer { columnMax.deallocate() }
        // Output columns whose window lies inside the row: [inLo, inHi).
        let inLo = min(os.w, (p.w + s.w - 1) / s.w)
        let inHi = max(inLo, min(os.w, xs.w + p.w - k.w >= 0 ? (xs.w + p.w - k.w) / s.w + 1 : 0))
        parallelParts(frames, minPerThread: max(1, (1 << 14) / max(1, frame)), maxParts: parts) { part, range in
            let v = columnMax + part * xs.w
            for f in range {
                let (nc, t) = (f / xs.t, f % xs.t)
                let (n, c) = (nc / xs.c, nc % xs.c)
                let src = x.sample(n) + c * xs.plane + t * frame
                let dst = out.sample(n) + c * os.plane + t * os.h * os.w
                for ho in 0..<os.h {
                    let h0 = max(0, ho * s.h - p.h), h1 = min(xs.h, ho * s.h - p.h + k.h)
                    v.update(from: src + h0 * xs.w, count: xs.w)
                    for h in (h0 + 1)..<max(h0 + 1, h1) {
                        let row = src + h * xs.w
                        for w in 0..<xs.w { v[w] = pick(v[w], row[w]) }
                    }
                    let d = dst + ho * os.w
                    for wo in 0..<os.w where wo < inLo || wo >= inHi {
                        let w0 = max(0, wo * s.w - p.w), w1 = min(xs.w, wo * s.w - p.w + k.w)
                        var best = -Float.infinity
                        for w in w0..<w1 { best = pick(best, v[w]) }
                        d[wo] = best
                    }
                    if k.w == 3 {
                        for wo in inLo..<inHi {
                            let window = v + (wo * s.w - p.w)
                            d[wo] = pick(pick(window[0], window[1]), window[2])
                        }
                    } else {
                        for wo in inLo..<inHi {
                            let window = v + (wo * s.w - p.w)
                            var best = window[0]
                            for j in 1..<k.w { best = pick(best, window[j]) }
                            d[wo] = best
                        }
                    }
                }
            }
        }
    }
}

/// AvgPool3d(kernel, stride 1, no padding) of a view, written into channels
/// `channelOffset...` of `out` ([N, C_total, t, h, w]).
func headAvgPool(_ x: Act, kernel: Size3, into out: FloatTensor, channelOffset: Int) {
    let xs = x.shape
    let os = out.shape5D
    let frame = xs.h * xs.w
    let divisor = Float(kernel.product)
    withExtendedLifetime(x.buffer) {
        parallelFor(xs.n * xs.c, work: os.plane * kernel.product) { nc in
            let (n, c) = (nc / xs.c, nc % xs.c)
            let src = x.sample(n) + c * xs.plane
            let dst = out.pointer + (n * os.c + channelOffset + c) * os.plane
            var o = 0
            for to in 0..<os.t { for ho in 0..<os.h { for wo in 0..<os.w {
                var sum: Float = 0
                for t in to..<(to + kernel.t) {
                    for h in ho..<(ho + kernel.h) {
                        let row = src + t * frame + h * xs.w
                        for w in wo..<(wo + kernel.w) { sum += row[w] }
                    }
                }
                dst[o] = sum / divisor
                o += 1
            } } }
        }
    }
}
