// Channel-wise (depthwise) Conv3d, groups == input channels == output channels, weight
// [C, 1, kT, kH, kW] (X3D's 3x3x3 and its stem's 5x1x1): direct kernels, not im2col + GEMM.
// Mirrors torch.nn.functional.conv3d(groups=C). Each (n, c) plane is copied once into
// per-thread scratch, zero-padded in H and W and split into stride phases: sH x sW
// sub-planes of Hq x Wq, padded element (h, w) at sub-plane (h % sH, w % sW), row h / sH,
// column w / sW. Tap (kt, kh, kw) then reads sub-plane (kh*dH % sH, kw*dW % sW) at offset
// (kh*dH / sH) * Wq + kw*dW / sW, so an output frame flattened with row stride Wq (columns
// Wo..<Wq are thrown away) is a sum over taps of weight x a contiguous run of the scratch:
// a 1-D correlation, vectorised along the flat index (`correlateFlat`).
// Backward in the same layout: dX per input frame and sub-plane is the adjoint correlation,
// gathering from the output gradient laid out with row stride Wq between zero margins;
// dW is one dot product per tap. Threads take runs of (n, c) planes (forward) or of channels (backward).

import Foundation

extension Conv3dGeometry {
    /// groups == C == O > 1: the channel-wise kernels run it.
    public var isChannelwise: Bool {
        config.groups > 1 && config.groups == input.c && outChannels == input.c
    }
}

/// Channel-wise Conv3d forward: `input` [N, C, T, H, W], `weight` [C, 1, kT, kH, kW], optional
/// `bias` [C], any kernel, stride, padding and dilation (`config.groups` must be C); returns
/// [N, C, To, Ho, Wo] as torch.nn.functional.conv3d(groups=C), written into `output` when given.
/// `conv3dForward` dispatches here for such convolutions.
public func channelwiseConv3dForward(_ input: FloatTensor, weight: FloatTensor, bias: FloatTensor? = nil,
                                     config: Conv3dConfig, workspace: Workspace? = nil,
                                     into output: FloatTensor? = nil) -> FloatTensor {
    let geo = Conv3dGeometry(input: input.shape, weight: weight.shape, bias: bias?.shape, config: config)
    precondition(geo.isChannelwise, "channelwiseConv3d: groups \(config.groups) must equal input and output channels (\(geo.input.c), \(geo.outChannels))")
    let out = output ?? FloatTensor(uninitialized: geo.outputShape.array)
    precondition(out.shape == geo.outputShape.array && out !== input, "channelwiseConv3d: output \(out.shape) for \(geo.outputShape)")
    withExtendedLifetime((input, weight, bias)) {
        channelwiseForward(geo, input.pointer, weight.pointer, bias.map { UnsafePointer($0.pointer) }, out.pointer,
                           workspace: workspace ?? Workspace())
    }
    return out
}

/// Channel-wise Conv3d backward: adds dL/dinput to `gradInput` and dL/dweight to `gradWeight`
/// (either may be nil) for dL/doutput = `gradOutput`; gradients accumulate. The bias gradient is
/// the per-channel sum of `gradOutput` (`conv3dBackward` adds it). `conv3dBackward` dispatches here.
public func channelwiseConv3dBackward(_ input: FloatTensor, weight: FloatTensor, gradOutput: FloatTensor,
                                      config: Conv3dConfig, gradInput: FloatTensor? = nil,
                                      gradWeight: FloatTensor? = nil, workspace: Workspace? = nil) {
    let geo = Conv3dGeometry(input: input.shape, weight: weight.shape, config: config)
    precondition(geo.isChannelwise, "channelwiseConv3dBackward: groups \(config.groups) must equal input and output channels")
    precondition(gradOutput.shape == geo.outputShape.array, "channelwiseConv3dBackward: gradOutput \(gradOutput.shape) for \(geo.outputShape)")
    if let gradInput { precondition(gradInput.shape == input.shape, "channelwiseConv3dBackward: gradInput \(gradInput.shape)") }
    if let gradWeight { precondition(gradWeight.shape == weight.shape, "channelwiseConv3dBackward: gradWeight \(gradWeight.shape)") }
    guard gradInput != nil || gradWeight != nil else { return }
    withExtendedLifetime((input, weight, gradOutput, gradInput, gradWeight)) {
        channelwiseBackward(geo, input.pointer, weight.pointer, gradOutput.pointer, gradInput: gradInput?.pointer,
                            gradWeight: gradWeight?.pointer, workspace: workspace ?? Workspace())
    }
}

// MARK: - Layout

/// The phase-split, padded scratch layout of one plane.
struct ChannelwiseLayout {
    let geo: Conv3dGeometry
    let sH: Int, sW: Int
    /// Sub-plane rows and columns, and floats per sub-plane.
    let hq: Int, wq: Int, sub: Int
    /// Floats per scratch frame (sH * sW sub-planes).
    let frame: Int
    /// Flat output positions of one output frame: Ho * Wq.
    let outFlat: Int
    /// Largest tap offset within a sub-plane.
    let maxOffset: Int
    /// Zeroed floats after the last frame (reads of discarded lanes run past it).
    let slack: Int
    /// Output-gradient frame in the backward layout: `lead` zeros, Ho * Wq values, zeros.
    let lead: Int, dyFrame: Int

    init(_ geo: Conv3dGeometry) {
        self.geo = geo
        let s = geo.config.stride, p = geo.config.padding, d = geo.config.dilation, k = geo.kernel
        (sH, sW) = (s.h, s.w)
        let hp = geo.input.h + 2 * p.h, wp = geo.input.w + 2 * p.w
        hq = (hp + s.h - 1) / s.h
        wq = (wp + s.w - 1) / s.w
        sub = hq * wq
        frame = s.h * s.w * sub
        outFlat = geo.output.h * wq
        maxOffset = ((k.h - 1) * d.h / s.h) * wq + (k.w - 1) * d.w / s.w
        slack = frame + maxOffset + 64
        lead = maxOffset
        dyFrame = lead + Self.rounded(sub) + 64
    }

    /// `n` rounded up to the 32 lanes `correlateFlat` writes at a time.
    static func rounded(_ n: Int) -> Int { (n + 31) / 32 * 32 }

    /// Offset of tap (kh, kw) from the start of a scratch frame.
    @inline(__always)
    func tapOffset(_ kh: Int, _ kw: Int) -> Int {
        let d = geo.config.dilation
        let (h, w) = (kh * d.h, kw * d.w)
        return ((h % sH) * sW + w % sW) * sub + (h / sH) * wq + w / sW
    }

    /// Floats of the input scratch: all input frames plus the zeroed slack.
    var planeFloats: Int { geo.input.t * frame + slack }

    /// Copies plane `x` (T*H*W) into `dst` (`planeFloats`), padded and phase-split; zeroes the slack.
    /// `bordersZeroed`: `dst` already holds this layout with zero padding (a plane filled before, or
    /// all zeros), so only the input's own values are written.
    func fill(_ dst: UnsafeMutablePointer<Float>, from x: UnsafePointer<Float>, bordersZeroed: Bool = false) {
        let (ti, hi, wi) = (geo.input.t, geo.input.h, geo.input.w)
        let (ph, pw) = (geo.config.padding.h, geo.config.padding.w)
        if sH == 1 && sW == 1 && bordersZeroed {
            for t in 0..<ti {
                let f = dst + t * frame + ph * wq + pw
                for h in 0..<hi { copyFloats(x + (t * hi + h) * wi, f + h * wq, wi) }
            }
            return
        }
        (dst + ti * frame).update(repeating: 0, count: slack)
        if sH == 1 && sW == 1 {
            let wp = wq
            for t in 0..<ti {
                let f = dst + t * frame
                f.update(repeating: 0, count: ph * wp)
                for h in 0..<hi {
                    let row = f + (h + ph) * wp, src = x + (t * hi + h) * wi
                    row.update(repeating: 0, count: pw)
                    (row + pw).update(from: src, count: wi)
                    (row + pw + wi).update(repeating: 0, count: wp - pw - wi)
                }
                (f + (hi + ph) * wp).update(repeating: 0, count: (hq - hi - ph) * wp)
            }
            return
        }
        // Stride 2 in W (X3D's strided 3x3x3): each row padded once into `rowScratch`, then split into
        // its two phases 16 floats at a time (even and odd lanes), not gathered element by element.
        let pairs = wq
        let row2 = sW == 2 ? UnsafeMutablePointer<Float>.allocate(capacity: 2 * pairs + 16) : nil
        defer { row2?.deallocate() }
        if let row2 { row2.initialize(repeating: 0, count: 2 * pairs + 16) }
        for t in 0..<ti {
            let f = dst + t * frame
            for hp in 0..<(hq * sH) {
                let rowBase = f + (hp % sH) * sW * sub + (hp / sH) * wq
                let h = hp - ph
                guard h >= 0 && h < hi else {
                    for b in 0..<sW { (rowBase + b * sub).update(repeating: 0, count: wq) }
                    continue
                }
                let src = x + (t * hi + h) * wi
                if let row2, pw + wi <= 2 * pairs {
                    // Padded row: pw zeros (kept from the initialisation), the row, zeros to 2 * wq.
                    (row2 + pw).update(from: src, count: wi)
                    let (even, odd) = (rowBase, rowBase + sub)
                    var j = 0
                    while j + 8 <= pairs {
                        let v = UnsafeRawPointer(row2 + 2 * j).loadUnaligned(as: SIMD16<Float>.self)
                        store8(v.evenHalf, even + j)
                        store8(v.oddHalf, odd + j)
                        j += 8
                    }
                    while j < pairs {
                        even[j] = row2[2 * j]
                        odd[j] = row2[2 * j + 1]
                        j += 1
                    }
                    continue
                }
                // Phase b holds padded columns b, b + sW, ...: zeros, a strided gather of the row, zeros.
                for b in 0..<sW {
                    let row = rowBase + b * sub
                    let j0 = min(wq, max(0, (pw - b + sW - 1) / sW)), j1 = min(wq, max(j0, (pw + wi - b + sW - 1) / sW))
                    row.update(repeating: 0, count: j0)
                    var w = j0 * sW + b - pw
                    for j in j0..<j1 {
                        row[j] = src[w]
                        w += sW
                    }
                    (row + j1).update(repeating: 0, count: wq - j1)
                }
            }
        }
    }
}

// MARK: - Kernels

/// out[q] = initial + sum over taps of weights[t] * sources[t][q], for q in 0..<count rounded
/// up to 32 (`out` and every source must have room for the rounded count). Four 8-lane
/// accumulators per step: independent add chains that hide the add latency.
@inline(__always)
func correlateFlat(_ out: UnsafeMutablePointer<Float>, count: Int, sources: UnsafePointer<UnsafePointer<Float>>,
                   weights: UnsafePointer<Float>, taps: Int, initial: Float) {
    var q = 0
    let start = SIMD8<Float>(repeating: initial)
    while q < count {
        var a0 = start, a1 = start, a2 = start, a3 = start
        for t in 0..<taps {
            let s = sources[t] + q
            let w = SIMD8<Float>(repeating: weights[t])
            a0 += w * load8(s)
            a1 += w * load8(s + 8)
            a2 += w * load8(s + 16)
            a3 += w * load8(s + 24)
        }
        store8(a0, out + q)
        store8(a1, out + q + 8)
        store8(a2, out + q + 16)
        store8(a3, out + q + 24)
        q += 32
    }
}

/// What the forward does to each output frame while it is still in cache (X3D's executor fuses
/// its activation, or the squeeze-excitation's channel sums, into the convolution's output pass).
enum ChannelwiseEpilogue {
    case none, relu, swish
    /// sums[nc] = the sum of plane nc's outputs (in double across rows), for the SE's channel means.
    case sums(UnsafeMutablePointer<Float>)
}

/// dst[0..<n] = src[0..<n] for short runs (an image row): 8-lane copies, the last one overlapping
/// the one before instead of a scalar tail; no call per row.
@inline(__always)
func copyFloats(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    guard n >= 8 else {
        for j in 0..<n { dst[j] = src[j] }
        return
    }
    var j = 0
    while j + 8 <= n {
        store8(load8(src + j), dst + j)
        j += 8
    }
    if j < n { store8(load8(src + n - 8), dst + n - 8) }
}

/// dst[0..<n] = act(src[0..<n]) for a row of an output frame, act Swish (`swish`, Swish.swift's C lanes)
/// or ReLU: whole 8-lane vectors, the last overlapping (recomputing a few lanes from the unchanged `src`);
/// ReLU rows under 8 read 8 lanes of `src` (the frame scratch has them) and store `n`.
@inline(__always)
private func activateRow(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int, swish: Bool) {
    if swish { return swishSpan(src, dst, count: n) }
    @inline(__always) func act(_ v: SIMD8<Float>) -> SIMD8<Float> { v.replacing(with: 0, where: v .< 0) }
    guard n >= 8 else {
        let r = act(load8(src))
        for j in 0..<n { dst[j] = r[j] }
        return
    }
    var j = 0
    while j + 8 <= n {
        store8(act(load8(src + j)), dst + j)
        j += 8
    }
    if j < n { store8(act(load8(src + n - 8)), dst + n - 8) }
}

/// Sum of `count` floats in 8 double lanes (each float exact in double: only the additions round).
@inline(__always)
private func rowSum(_ p: UnsafePointer<Float>, _ count: Int) -> Double {
    var a = SIMD8<Double>()
    var i = 0
    while i + 8 <= count {
        a += SIMD8<Double>(load8(p + i))
        i += 8
    }
    var s = Double(a.sum())
    while i < count {
        s += Double(p[i])
        i += 1
    }
    return s
}

/// Runs `body(part, range)` over `0..<count` on at most `maxParts` threads that take `grain`-sized ranges
/// from a shared counter as they finish the last: on a shared machine a thread that lost its core for a
/// while does less, instead of the other one waiting for it at the end (as with fixed halves).
func dynamicParts(_ count: Int, grain: Int, maxParts: Int, _ body: (_ part: Int, _ range: Range<Int>) -> Void) {
    guard count > 0 else { return }
    let grain = max(1, grain)
    let parts = min(maxParts, (count + grain - 1) / grain)
    if parts <= 1 { return body(0, 0..<count) }
    final class Counter: @unchecked Sendable {
        let lock = NSLock()
        var next = 0
    }
    let counter = Counter()
    runParts(parts) { part in
        while true {
            counter.lock.lock()
            let lo = counter.next
            counter.next = min(count, lo + grain)
            counter.lock.unlock()
            guard lo < count else { return }
            body(part, lo..<min(count, lo + grain))
        }
    }
}

/// Forward over all (n, c) planes, threads taking runs of planes; `epilogue` applied to each output frame.
func channelwiseForward(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                        _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>, workspace: Workspace,
                        epilogue: ChannelwiseEpilogue = .none) {
    let lay = ChannelwiseLayout(geo)
    let (c, k) = (geo.input.c, geo.kernel)
    let (tIn, tOut, ho, wo) = (geo.input.t, geo.output.t, geo.output.h, geo.output.w)
    let (sT, pT, dT) = (geo.config.stride.t, geo.config.padding.t, geo.config.dilation.t)
    let taps = k.product
    let outScratch = ChannelwiseLayout.rounded(lay.outFlat)
    // 8 more floats: rows narrower than a vector read 8 lanes of the frame.
    let perThread = lay.planeFloats + outScratch + 8
    let planes = geo.input.n * c
    let parts = max(1, min(Threading.threads, planes))
    let scratch = workspace.buffer(parts * perThread, slot: 5)
    // Offsets of the (kh, kw) taps within a frame, shared by all planes.
    let offsets = (0..<(k.h * k.w)).map { lay.tapOffset($0 / k.w, $0 % k.w) }
    let work = geo.positions * taps + geo.input.plane
    offsets.withUnsafeBufferPointer { offsetBuffer in
        let off = UncheckedSendable(offsetBuffer.baseAddress!)
        let grain = max(max(1, (1 << 16) / max(1, work)), planes / (8 * parts))
        dynamicParts(planes, grain: grain, maxParts: parts) { part, range in
            let plane = scratch + part * perThread
            let frameOut = plane + lay.planeFloats
            let sources = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: taps)
            let weights = UnsafeMutablePointer<Float>.allocate(capacity: taps)
            defer { sources.deallocate(); weights.deallocate() }
            // Zero padding once per run of planes; each plane then writes only its values.
            var bordersZeroed = false
            if lay.sH == 1 && lay.sW == 1 {
                plane.update(repeating: 0, count: perThread)
                bordersZeroed = true
            }
            for nc in range {
                let ch = nc % c
                var planeSum: Double = 0
                lay.fill(plane, from: x + nc * geo.input.plane, bordersZeroed: bordersZeroed)
                let wc = w + ch * taps
                let b = bias?[ch] ?? 0
                for to in 0..<tOut {
                    var n = 0
                    for kt in 0..<k.t {
                        let ti = to * sT - pT + kt * dT
                        guard ti >= 0 && ti < tIn else { continue }
                        let f = UnsafePointer(plane + ti * lay.frame)
                        for i in 0..<(k.h * k.w) {
                            sources[n] = f + off.value[i]
                            weights[n] = wc[kt * k.h * k.w + i]
                            n += 1
                        }
                    }
                    correlateFlat(frameOut, count: lay.outFlat, sources: UnsafePointer(sources), weights: UnsafePointer(weights),
                                  taps: n, initial: b)
                    // Rows out of the flat frame, the activation applied on the way.
                    let dst = out + nc * geo.positions + to * ho * wo
                    switch epilogue {
                    case .relu, .swish:
                        let swish: Bool
                        if case .swish = epilogue { swish = true } else { swish = false }
                        for h in 0..<ho { activateRow(frameOut + h * lay.wq, dst + h * wo, wo, swish: swish) }
                    case .none, .sums:
                        if wo == lay.wq {
                            dst.update(from: frameOut, count: ho * wo)
                        } else {
                            for h in 0..<ho { copyFloats(frameOut + h * lay.wq, dst + h * wo, wo) }
                        }
                        if case .sums = epilogue { planeSum += rowSum(dst, ho * wo) }
                    }
                }
                if case let .sums(sums) = epilogue { sums[nc] = Float(planeSum) }
            }
        }
    }
}

/// Backward over channels (each thread owns whole channels, so dW needs no reduction
/// across threads); per sample: the input plane (for dW) and the output gradient into
/// scratch, then dW's dot products and dX's adjoint correlation.
func channelwiseBackward(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                         _ dy: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
                         gradWeight: UnsafeMutablePointer<Float>?, workspace: Workspace) {
    let lay = ChannelwiseLayout(geo)
    let (c, k) = (geo.input.c, geo.kernel)
    let (tIn, hIn, wIn) = (geo.input.t, geo.input.h, geo.input.w)
    let (tOut, ho, wo) = (geo.output.t, geo.output.h, geo.output.w)
    let (sT, pT, dT) = (geo.config.stride.t, geo.config.padding.t, geo.config.dilation.t)
    let (ph, pw) = (geo.config.padding.h, geo.config.padding.w)
    let spatialTaps = k.h * k.w, taps = k.product
    let needX = gradWeight != nil
    let xFloats = needX ? lay.planeFloats : 0
    let dyFloats = tOut * lay.dyFrame + 64
    let dxFloats = gradInput == nil ? 0 : lay.frame + lay.slack
    let perThread = xFloats + dyFloats + dxFloats
    let parts = max(1, min(Threading.threads, c))
    let scratch = workspace.buffer(parts * perThread, slot: 5)
    let offsets = (0..<spatialTaps).map { lay.tapOffset($0 / k.w, $0 % k.w) }
    // Which sub-plane each spatial tap reads, and its offset inside that sub-plane.
    let subOf = offsets.map { $0 / lay.sub }, inner = offsets.map { $0 % lay.sub }
    let work = geo.input.n * (geo.positions * taps * 2 + geo.input.plane)
    let shared = UncheckedSendable((offsets, subOf, inner))
    dynamicParts(c, grain: max(max(1, (1 << 16) / max(1, work)), c / (8 * parts)), maxParts: parts) { part, range in
        let (offsets, subOf, inner) = shared.value
        let base = scratch + part * perThread
        let xs = base, dys = base + xFloats, dxs = base + xFloats + dyFloats
        var sources = [UnsafePointer<Float>](repeating: UnsafePointer(base), count: taps)
        var weights = [Float](repeating: 0, count: taps)
        var dwAcc = [Double](repeating: 0, count: taps)
        // Zero padding once per run of channels: each (n, c) then writes only its values (stride 1:
        // the input plane too), the zeros around them stay.
        base.update(repeating: 0, count: perThread)
        let xBordersZeroed = lay.sH == 1 && lay.sW == 1
        for ch in range {
            for i in 0..<taps { dwAcc[i] = 0 }
            let wc = w + ch * taps
            for n in 0..<geo.input.n {
                let nc = n * c + ch
                if needX { lay.fill(xs, from: x + nc * geo.input.plane, bordersZeroed: xBordersZeroed) }
                // Output gradient frames: lead zeros, Ho rows of Wq (zeros past Wo), trailing zeros.
                for to in 0..<tOut {
                    let f = dys + to * lay.dyFrame + lay.lead
                    let src = dy + nc * geo.positions + to * ho * wo
                    for h in 0..<ho { copyFloats(src + h * wo, f + h * lay.wq, wo) }
                }
                if needX {
                    for to in 0..<tOut {
                        let g = UnsafePointer(dys + to * lay.dyFrame + lay.lead)
                        for kt in 0..<k.t {
                            let ti = to * sT - pT + kt * dT
                            guard ti >= 0 && ti < tIn else { continue }
                            let f = UnsafePointer(xs + ti * lay.frame)
                            var i = 0
                            while i < spatialTaps {
                                let m = min(4, spatialTaps - i)
                                let sums = dotTaps(g, f, offsets: offsets, from: i, count: m, length: lay.outFlat)
                                for j in 0..<m { dwAcc[kt * spatialTaps + i + j] += sums[j] }
                                i += m
                            }
                        }
                    }
                }
                guard let gradInput else { continue }
                let dxPlane = gradInput + nc * geo.input.plane
                for ti in 0..<tIn {
                    // dX frame ti, sub-plane by sub-plane: taps reading that sub-plane, from the output frames that read ti.
                    for s in 0..<(lay.sH * lay.sW) {
                        var m = 0
                        for kt in 0..<k.t {
                            let num = ti + pT - kt * dT
                            guard num >= 0 && num % sT == 0 && num / sT < tOut else { continue }
                            let g = UnsafePointer(dys + (num / sT) * lay.dyFrame + lay.lead)
                            for i in 0..<spatialTaps where subOf[i] == s {
                                sources[m] = g - inner[i]
                                weights[m] = wc[kt * spatialTaps + i]
                                m += 1
                            }
                        }
                        let dst = dxs + s * lay.sub
                        sources.withUnsafeBufferPointer { sp in
                            weights.withUnsafeBufferPointer { wp in
                                correlateFlat(dst, count: lay.sub, sources: sp.baseAddress!, weights: wp.baseAddress!, taps: m, initial: 0)
                            }
                        }
                    }
                    // Back from the padded, phase-split frame to the input's rows.
                    let dxFrame = dxPlane + ti * hIn * wIn
                    for h in 0..<hIn {
                        let hp = h + ph
                        let row = dxs + (hp % lay.sH) * lay.sW * lay.sub + (hp / lay.sH) * lay.wq
                        let dst = dxFrame + h * wIn
                        if lay.sW == 1 {
                            let src = row + pw
                            for j in 0..<wIn { dst[j] += src[j] }
                        } else {
                            for b in 0..<lay.sW {
                                let phase = row + b * lay.sub
                                // Input columns j with (j + pw) % sW == b, from phase column (j + pw) / sW.
                                var j = ((b - pw) % lay.sW + lay.sW) % lay.sW
                                var q = (j + pw) / lay.sW
                                while j < wIn {
                                    dst[j] += phase[q]
                                    j += lay.sW
                                    q += 1
                                }
                            }
                        }
                    }
                }
            }
            if let gradWeight {
                for i in 0..<taps { gradWeight[ch * taps + i] += Float(dwAcc[i]) }
            }
        }
    }
}

/// Up to four dot products sharing one output-gradient run: sum over q < length (rounded up to 8;
/// the gradient is zero there) of g[q] * f[offsets[from + j] + q], in float lanes per frame, returned in double.
@inline(__always)
private func dotTaps(_ g: UnsafePointer<Float>, _ f: UnsafePointer<Float>, offsets: [Int], from: Int, count: Int,
                     length: Int) -> SIMD4<Double> {
    let p0 = f + offsets[from]
    let p1 = f + offsets[from + min(1, count - 1)]
    let p2 = f + offsets[from + min(2, count - 1)]
    let p3 = f + offsets[from + min(3, count - 1)]
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
    var q = 0
    while q < length {
        let d = load8(g + q)
        a0 += d * load8(p0 + q)
        a1 += d * load8(p1 + q)
        a2 += d * load8(p2 + q)
        a3 += d * load8(p3 + q)
        q += 8
    }
    return SIMD4(Double(a0.sum()), Double(a1.sum()), Double(a2.sum()), Double(a3.sum()))
}

// MARK: - Reference

/// The oracle in float64: direct loops over one channel at a time, no scratch, no threads.
public func channelwiseConv3dForward64(_ x: Tensor64, weight: Tensor64, bias: Tensor64? = nil,
                                       config: Conv3dConfig) -> Tensor64 {
    let geo = Conv3dGeometry(input: x.shape, weight: weight.shape, bias: bias?.shape, config: config)
    precondition(geo.isChannelwise, "channelwiseConv3dForward64: not channel-wise")
    var out = Tensor64(zeros: geo.outputShape.array)
    channelwiseVisit(geo) { xi, wi, oi in out.values[oi] += x.values[xi] * weight.values[wi] }
    if let bias {
        for i in 0..<out.count { out.values[i] += bias.values[(i / geo.positions) % geo.outChannels] }
    }
    return out
}

/// Float64 oracle backward: (dL/dx, dL/dweight, dL/dbias) for dL/dout = `gradOutput`.
public func channelwiseConv3dBackward64(_ x: Tensor64, weight: Tensor64, gradOutput: Tensor64,
                                        config: Conv3dConfig) -> (input: Tensor64, weight: Tensor64, bias: Tensor64) {
    let geo = Conv3dGeometry(input: x.shape, weight: weight.shape, config: config)
    precondition(geo.isChannelwise, "channelwiseConv3dBackward64: not channel-wise")
    var dx = Tensor64(zeros: x.shape), dw = Tensor64(zeros: weight.shape), db = Tensor64(zeros: [geo.outChannels])
    for i in 0..<gradOutput.count { db.values[(i / geo.positions) % geo.outChannels] += gradOutput.values[i] }
    channelwiseVisit(geo) { xi, wi, oi in
        dx.values[xi] += gradOutput.values[oi] * weight.values[wi]
        dw.values[wi] += gradOutput.values[oi] * x.values[xi]
    }
    return (dx, dw, db)
}

/// `body(inputIndex, weightIndex, outputIndex)` for every multiply-add: channel c reads only channel c.
private func channelwiseVisit(_ geo: Conv3dGeometry, _ body: (Int, Int, Int) -> Void) {
    let xs = geo.input, os = geo.outputShape, k = geo.kernel
    let (s, p, d) = (geo.config.stride, geo.config.padding, geo.config.dilation)
    for n in 0..<xs.n { for c in 0..<xs.c {
        for to in 0..<os.t { for ho in 0..<os.h { for wo in 0..<os.w {
            let oi = (((n * os.c + c) * os.t + to) * os.h + ho) * os.w + wo
            for kt in 0..<k.t { for kh in 0..<k.h { for kw in 0..<k.w {
                let (ti, hi, wi) = (to * s.t - p.t + kt * d.t, ho * s.h - p.h + kh * d.h, wo * s.w - p.w + kw * d.w)
                guard ti >= 0, ti < xs.t, hi >= 0, hi < xs.h, wi >= 0, wi < xs.w else { continue }
                body((((n * xs.c + c) * xs.t + ti) * xs.h + hi) * xs.w + wi, ((c * k.t + kt) * k.h + kh) * k.w + kw, oi)
            } } }
        } } }
    } }
}
