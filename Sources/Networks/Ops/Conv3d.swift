// Conv3d forward (torch.nn.functional.conv3d semantics) on OpenBLAS, with the
// naive loop it is tested against. Per sample and group the work is the
// row-major GEMM  out[O_g, P] = W[O_g, C_g*kT*kH*kW] x col[C_g*kT*kH*kW, P],
// P = To*Ho*Wo, with PyTorch's weight layout used as A unchanged. Paths:
//   1x1x1, stride 1, no padding: the input is col already (no copy);
//   Tx1x1, stride 1 in time and space, no spatial padding: one GEMM per
//     temporal tap on shifted frames of the input (no copy);
//   anything else (incl. strided 1x1x1 = subsample, strided Tx1x1 = frame
//     copies): im2col (Im2col.swift) into per-thread scratch, chunked along P;
//     with a W stride and a W kernel > 1 the input is first split into
//     column phases so that every im2col row is a contiguous copy.
// Backward needs only the input and the weight, which the caller keeps:
//   dW_g += dY_g x col_g^T   (summed over samples and position chunks; each
//                             thread accumulates its share of the positions
//                             into its own copy, added once at the end),
//   dX_g += col2im(W_g^T x dY_g)   (pointwise: W_g^T x dY_g directly),
//   db   += sum of dY per channel.
// Channel-wise convolutions (groups == C == O) take the direct kernels of
// ChannelwiseConv3d.swift instead, forward and backward.

import Foundation

/// Stride, padding, dilation and groups of a 3-D convolution (kernel size comes from the weight).
public struct Conv3dConfig: Equatable, Sendable {
    public var stride: Size3
    public var padding: Size3
    public var dilation: Size3
    public var groups: Int

    public init(stride: Size3 = 1, padding: Size3 = 0, dilation: Size3 = 1, groups: Int = 1) {
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
    }
}

/// The checked sizes of one convolution call.
public struct Conv3dGeometry: Equatable, Sendable {
    public let input: Shape5D
    public let outChannels: Int
    public let kernel: Size3
    public let config: Conv3dConfig
    /// Output (To, Ho, Wo).
    public let output: Size3

    /// Input channels per group.
    public var groupIn: Int { input.c / config.groups }
    /// Output channels per group.
    public var groupOut: Int { outChannels / config.groups }
    /// GEMM inner dimension: C_g * kT * kH * kW.
    public var reduction: Int { groupIn * kernel.product }
    /// Output positions per channel: To * Ho * Wo.
    public var positions: Int { output.product }
    public var outputShape: Shape5D {
        Shape5D(n: input.n, c: outChannels, t: output.t, h: output.h, w: output.w)
    }
    /// Multiply-adds of the whole call.
    public var macs: Int { input.n * outChannels * positions * reduction }

    /// Validates `weight` ([O, C/groups, kT, kH, kW]) and `bias` ([O]) against the input.
    public init(input: [Int], weight: [Int], bias: [Int]? = nil, config: Conv3dConfig) {
        precondition(input.count == 5, "conv3d: input must be NCTHW, got \(input)")
        precondition(weight.count == 5, "conv3d: weight must be [O, C/groups, kT, kH, kW], got \(weight)")
        let x = Shape5D(input)
        let g = config.groups
        precondition(g >= 1 && x.c % g == 0 && weight[0] % g == 0,
                     "conv3d: groups \(g) must divide input channels \(x.c) and output channels \(weight[0])")
        precondition(weight[1] == x.c / g,
                     "conv3d: weight \(weight) expects \(weight[1] * g) input channels, input \(input) has \(x.c)")
        if let bias { precondition(bias == [weight[0]], "conv3d: bias \(bias) for \(weight[0]) output channels") }
        let s = config.stride, p = config.padding, d = config.dilation
        precondition([s.t, s.h, s.w, d.t, d.h, d.w].allSatisfy { $0 >= 1 } && [p.t, p.h, p.w].allSatisfy { $0 >= 0 },
                     "conv3d: stride \(s) and dilation \(d) must be >= 1, padding \(p) >= 0")
        let kernel = Size3(weight[2], weight[3], weight[4])
        let out = windowOutputSize(x.spatial, kernel: kernel, stride: s, padding: p, dilation: d)
        precondition(out.t >= 1 && out.h >= 1 && out.w >= 1,
                     "conv3d: kernel \(kernel) dilation \(d) does not fit input \(input) padded by \(p)")
        self.input = x
        self.outChannels = weight[0]
        self.kernel = kernel
        self.config = config
        self.output = out
    }

    /// Tx1x1 with unit strides and no spatial padding: time shifts of whole frames.
    var isTemporalShift: Bool {
        kernel.h == 1 && kernel.w == 1 && config.stride == 1 && config.padding.h == 0 && config.padding.w == 0
    }
    /// Tx1x1 with unit spatial strides and no spatial padding (any temporal stride):
    /// every tap maps whole input frames to whole output frames.
    var isTemporalTaps: Bool {
        kernel.h == 1 && kernel.w == 1 && config.stride.h == 1 && config.stride.w == 1
            && config.padding.h == 0 && config.padding.w == 0
    }
    /// Tx1x1 taps whose whole input (all samples) is smaller than their weight (few positions, many
    /// channels: the deep slow stages at small crops) run as one GEMM on the input unfolded kT times
    /// (im2col) with the weight as it is, cheaper than repacking the weight tap-major for per-tap GEMMs
    /// and, in the backward, scattering the weight gradient back from that layout.
    var unfoldsTaps: Bool { input.n * input.c * input.plane < outChannels * groupIn }
    /// 1x1x1 with unit stride and no padding: the input is already the GEMM's B.
    var isPointwise: Bool { kernel == 1 && config.stride == 1 && config.padding == 0 }
}

/// Conv3d forward: `input` [N, C, T, H, W], `weight` [O, C/groups, kT, kH, kW],
/// optional `bias` [O]; returns [N, O, To, Ho, Wo] (written into `output` when
/// given). Pass a `workspace` to reuse scratch memory across calls.
public func conv3dForward(_ input: FloatTensor, weight: FloatTensor, bias: FloatTensor? = nil,
                          config: Conv3dConfig = Conv3dConfig(), workspace: Workspace? = nil,
                          into output: FloatTensor? = nil) -> FloatTensor {
    let geo = Conv3dGeometry(input: input.shape, weight: weight.shape, bias: bias?.shape, config: config)
    let out = output ?? FloatTensor(uninitialized: geo.outputShape.array)
    precondition(out.shape == geo.outputShape.array && out !== input, "conv3d: output \(out.shape) for \(geo.outputShape)")
    if geo.isChannelwise {
        // groups == C == O: the direct kernels of ChannelwiseConv3d.swift.
        channelwiseForward(geo, input.pointer, weight.pointer, bias.map { UnsafePointer($0.pointer) }, out.pointer,
                           workspace: workspace ?? Workspace())
        return out
    }
    let beta: Float
    if let bias {
        fillChannels(out.pointer, geo.outputShape, values: bias.pointer)
        beta = 1
    } else if geo.isTemporalShift && !geo.isPointwise {
        out.fill(0)
        beta = 1
    } else {
        beta = 0
    }
    if geo.isPointwise {
        conv3dPointwise(geo, input.pointer, weight.pointer, out.pointer, beta: beta)
    } else if geo.isTemporalShift {
        conv3dTemporalShift(geo, input.pointer, weight.pointer, out.pointer, workspace: workspace ?? Workspace())
    } else {
        conv3dIm2col(geo, input.pointer, weight.pointer, out.pointer, beta: beta, workspace: workspace ?? Workspace())
    }
    return out
}

/// Writes `values[c]` into every element of channel c.
func fillChannels(_ out: UnsafeMutablePointer<Float>, _ shape: Shape5D, values: UnsafePointer<Float>) {
    let plane = shape.plane
    parallelFor(shape.n * shape.c, work: plane) { nc in
        (out + nc * plane).update(repeating: values[nc % shape.c], count: plane)
    }
}

/// 1x1x1, stride 1: out_g = W_g x x_g with the input planes as B (ldb = T*H*W).
private func conv3dPointwise(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                             _ out: UnsafeMutablePointer<Float>, beta: Float) {
    let (cg, og, p) = (geo.groupIn, geo.groupOut, geo.positions)
    for n in 0..<geo.input.n {
        for g in 0..<geo.config.groups {
            parallelSgemm(m: og, n: p, k: cg,
                          a: w + g * og * cg, lda: cg,
                          b: x + (n * geo.input.c + g * cg) * p, ldb: p,
                          beta: beta, c: out + (n * geo.outChannels + g * og) * p, ldc: p)
        }
    }
}

/// Tx1x1 with unit strides: for each tap kt, out[:, to] += W[:, :, kt] x x[:, to - pT + kt*dT]
/// over the range of `to` whose source frame exists. Frames of one channel are
/// contiguous, so each tap is one GEMM with ldb = T*H*W on a shifted B. Each
/// thread owns a block of output columns and runs all taps on it. `out` holds bias or zeros.
private func conv3dTemporalShift(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                                 _ out: UnsafeMutablePointer<Float>, workspace: Workspace) {
    let (cg, og, kT) = (geo.groupIn, geo.groupOut, geo.kernel.t)
    let o = geo.outChannels
    let frame = geo.input.h * geo.input.w
    let inPlane = geo.input.plane, outPlane = geo.positions
    let (pT, dT, tIn) = (geo.config.padding.t, geo.config.dilation.t, geo.input.t)
    // Repack [O, C_g, kT] -> [kT, O, C_g] so that one tap is a dense A. (Up to
    // 3M floats for slow res5; a layer could keep the packed copy instead.)
    let packed = workspace.buffer(kT * o * cg, slot: 1)
    packTemporalTaps(w, o: o, cg: cg, kT: kT, into: packed)
    for n in 0..<geo.input.n {
        for g in 0..<geo.config.groups {
            let xg = x + (n * geo.input.c + g * cg) * inPlane
            let outg = out + (n * o + g * og) * outPlane
            forGemmColumnBlocks(outPlane, macs: og * outPlane * cg * kT) { cols in
                for kt in 0..<kT {
                    let shift = (kt * dT - pT) * frame // source column = output column + shift
                    let lo = max(cols.lowerBound, -shift), hi = min(cols.upperBound, tIn * frame - shift)
                    guard lo < hi else { continue }
                    sgemm(m: og, n: hi - lo, k: cg,
                          a: packed + (kt * o + g * og) * cg, lda: cg,
                          b: xg + lo + shift, ldb: inPlane,
                          beta: 1, c: outg + lo, ldc: outPlane)
                }
            }
        }
    }
}

/// A Tx1x1 weight [O, C_g, kT] in the temporal-tap layout [kT, O, C_g] (one dense A per tap), on all threads.
func packTemporalTaps(_ w: UnsafePointer<Float>, o: Int, cg: Int, kT: Int, into dst: UnsafeMutablePointer<Float>) {
    parallelFor(o, work: cg * kT) { oc in
        for c in 0..<cg { for kt in 0..<kT { dst[(kt * o + oc) * cg + c] = w[(oc * cg + c) * kT + kt] } }
    }
}

/// Knobs of the im2col path, for benchmarks and tests; the defaults were
/// measured on the 2-core box (fast stem and slow res2-res5 shapes).
public enum Conv3dTuning {
    /// Floats of im2col scratch per thread (1 MiB): chunks cover whole output
    /// rows, so the col block stays near L2...
    nonisolated(unsafe) public static var chunkFloats = 1 << 18
    /// ...but span at least this many output positions, so that each GEMM stays
    /// wide enough to amortise OpenBLAS's packing of the weight.
    nonisolated(unsafe) public static var minChunkColumns = 512
    /// Whether W-strided convolutions with kW > 1 copy rows from a phase-split
    /// input (else they gather element by element: 2-3x slower for the stem).
    nonisolated(unsafe) public static var phaseSplit = true
    /// Floats of each backward im2col / col2im chunk (shared by the threads).
    nonisolated(unsafe) public static var backwardChunkFloats = 1 << 21
    /// Below this many output positions per sample, a batch runs as one stacked sample where the
    /// kernel allows it (SampleStacking.swift), forward and backward (0: never).
    nonisolated(unsafe) public static var stackSamplesBelow = 1024
    /// Weight-gradient reductions shorter than this split their output rows over the threads instead
    /// of their K range (a K split costs a zeroed [m, n] buffer per extra thread and a pass adding it back).
    nonisolated(unsafe) public static var splitKMinimum = 512
}

/// General case: im2col of whole output rows (to, ho) into per-thread scratch,
/// a chunk at a time, each chunk followed by one GEMM into the matching output
/// columns. Threads own disjoint row ranges (or, with `splitGemms` off, chunks
/// run in turn with a parallel im2col and OpenBLAS-threaded GEMMs).
private func conv3dIm2col(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                          _ out: UnsafeMutablePointer<Float>, beta: Float, workspace: Workspace) {
    let (cg, og, k) = (geo.groupIn, geo.groupOut, geo.reduction)
    let rows = geo.output.t * geo.output.h, wo = geo.output.w
    let p = geo.positions
    let split = shouldSplitGemm(macs: og * p * k)
    let parts = split ? min(Threading.threads, rows) : 1
    let perPart = (rows + parts - 1) / parts
    let wanted = max(Conv3dTuning.chunkFloats / max(1, k * wo), (Conv3dTuning.minChunkColumns + wo - 1) / wo)
    let chunkRows = max(1, min(perPart, wanted))
    let chunkFloats = k * chunkRows * wo
    let scratch = workspace.buffer(chunkFloats * parts)
    // The phase split pays off when several W taps re-read each input row (the
    // stems, strided 3x3s); a strided 1x1 is a plain gather of the rows it needs.
    let phaseSplit = geo.config.stride.w > 1 && geo.kernel.w > 1 && Conv3dTuning.phaseSplit
    let phaseBuffer = phaseSplit ? workspace.buffer(PhasedInput.count(geo), slot: 2) : nil
    for n in 0..<geo.input.n {
        for g in 0..<geo.config.groups {
            let xg = x + (n * geo.input.c + g * cg) * geo.input.plane
            let outg = out + (n * geo.outChannels + g * og) * p
            let phased = phaseBuffer.map { PhasedInput(geo, xg, buffer: $0, parallel: true) }
            parallelParts(rows, maxParts: parts) { part, range in
                let col = scratch + part * chunkFloats
                var r0 = range.lowerBound
                while r0 < range.upperBound {
                    let r1 = min(range.upperBound, r0 + chunkRows)
                    im2col(geo, xg, phased: phased, rows: r0..<r1, into: col, parallel: !split)
                    let cols = (r1 - r0) * wo
                    sgemm(m: og, n: cols, k: k, a: w + g * og * k, lda: k,
                          b: col, ldb: cols, beta: beta, c: outg + r0 * wo, ldc: p)
                    r0 = r1
                }
            }
        }
    }
}

// MARK: - Backward

/// Conv3d backward. Adds dL/dinput to `gradInput`, dL/dweight to `gradWeight`
/// and dL/dbias to `gradBias` (each optional: nil skips that gradient's work)
/// given `gradOutput` = dL/doutput. Gradients accumulate (zero them once).
public func conv3dBackward(_ input: FloatTensor, weight: FloatTensor, gradOutput: FloatTensor,
                           config: Conv3dConfig = Conv3dConfig(), gradInput: FloatTensor? = nil,
                           gradWeight: FloatTensor? = nil, gradBias: FloatTensor? = nil, workspace: Workspace? = nil,
                           tapWeights: FloatTensor? = nil) {
    let geo = Conv3dGeometry(input: input.shape, weight: weight.shape, config: config)
    precondition(gradOutput.shape == geo.outputShape.array,
                 "conv3dBackward: gradOutput \(gradOutput.shape) for output \(geo.outputShape)")
    if let gradInput { precondition(gradInput.shape == input.shape, "conv3dBackward: gradInput \(gradInput.shape) for input \(input.shape)") }
    if let gradWeight { precondition(gradWeight.shape == weight.shape, "conv3dBackward: gradWeight \(gradWeight.shape) for weight \(weight.shape)") }
    if let gradBias { precondition(gradBias.shape == [geo.outChannels], "conv3dBackward: gradBias \(gradBias.shape)") }
    if let gradBias { addChannelSums(gradOutput, into: gradBias.pointer) }
    guard gradInput != nil || gradWeight != nil else { return }
    let ws = workspace ?? Workspace()
    withExtendedLifetime((input, weight, gradOutput, gradInput, gradWeight)) {
        let (x, w, dy) = (UnsafePointer(input.pointer), UnsafePointer(weight.pointer), UnsafePointer(gradOutput.pointer))
        guard let stacking = SampleStacking(geo) else {
            return conv3dBackward(geo, x, w, dy, gradInput: gradInput?.pointer, gradWeight: gradWeight?.pointer, workspace: ws,
                                  tapWeights: tapWeights.map { UnsafePointer($0.pointer) })
        }
        // Few positions per sample: every sample at once (SampleStacking.swift).
        let sx = stacking.stacked(geo.input), sy = stacking.stacked(geo.outputShape)
        let sgeo = Conv3dGeometry(input: sx.array, weight: weight.shape, config: config)
        let xs = ws.buffer(sx.c * sx.plane, slot: 10), dys = ws.buffer(sy.c * sy.plane, slot: 11)
        stacking.gather(geo.input, sample: { x + $0 * geo.input.c * geo.input.plane }, into: xs)
        stacking.gather(geo.outputShape, sample: { dy + $0 * geo.outChannels * geo.positions }, into: dys)
        let dxs = gradInput == nil ? nil : ws.buffer(sx.c * sx.plane, slot: 12)
        dxs?.update(repeating: 0, count: sx.c * sx.plane)
        conv3dBackward(sgeo, xs, w, dys, gradInput: dxs, gradWeight: gradWeight?.pointer, workspace: ws,
                       tapWeights: tapWeights.map { UnsafePointer($0.pointer) })
        if let dxs, let gradInput {
            stacking.scatter(geo.input, from: dxs, sample: { gradInput.pointer + $0 * geo.input.c * geo.input.plane },
                             accumulate: true)
        }
    }
}

/// Conv3d backward on raw memory (`conv3dBackward`'s work once the sizes are checked).
private func conv3dBackward(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                            _ dy: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
                            gradWeight: UnsafeMutablePointer<Float>?, workspace ws: Workspace,
                            tapWeights: UnsafePointer<Float>?) {
    if geo.isChannelwise {
        channelwiseBackward(geo, x, w, dy, gradInput: gradInput, gradWeight: gradWeight, workspace: ws)
        return
    }
    let config = geo.config
    let (cg, og, k, p) = (geo.groupIn, geo.groupOut, geo.reduction, geo.positions)
    let (c, o) = (geo.input.c, geo.outChannels)
    let acc = gradWeight.map { SplitKAccumulator(m: o, n: k, into: $0, workspace: ws, slot: 3) }
    if geo.isPointwise {
        for n in 0..<geo.input.n {
            for g in 0..<config.groups {
                let xg = x + (n * c + g * cg) * p, dyg = dy + (n * o + g * og) * p
                acc?.add(m: og, n: cg, k: p, a: dyg, lda: p, b: xg, ldb: p, rowOffset: g * og)
                if let gradInput {
                    parallelSgemm(transA: true, transB: false, m: cg, n: p, k: og, a: w + g * og * cg, lda: cg,
                                  b: dyg, ldb: p, beta: 1, c: gradInput + (n * c + g * cg) * p, ldc: p)
                }
            }
        }
    } else if geo.isTemporalTaps && !geo.unfoldsTaps {
        conv3dBackwardTemporalTaps(geo, x, w, dy, gradInput: gradInput, gradWeight: gradWeight, workspace: ws,
                                   tapWeights: tapWeights)
        return
    } else {
        let rows = geo.output.t * geo.output.h, wo = geo.output.w
        let chunkRows = max(1, min(rows, Conv3dTuning.backwardChunkFloats / max(1, k * wo)))
        let chunkFloats = k * chunkRows * wo
        let col = acc == nil ? nil : ws.buffer(chunkFloats, slot: 0)
        let dcol = gradInput == nil ? nil : ws.buffer(chunkFloats, slot: 1)
        let phaseSplit = acc != nil && geo.config.stride.w > 1 && geo.kernel.w > 1 && Conv3dTuning.phaseSplit
        let phaseBuffer = phaseSplit ? ws.buffer(PhasedInput.count(geo), slot: 2) : nil
        for n in 0..<geo.input.n {
            for g in 0..<config.groups {
                let xg = x + (n * c + g * cg) * geo.input.plane, dyg = dy + (n * o + g * og) * p
                let phased = phaseBuffer.map { PhasedInput(geo, xg, buffer: $0, parallel: true) }
                var r0 = 0
                while r0 < rows {
                    let r1 = min(rows, r0 + chunkRows)
                    let cols = (r1 - r0) * wo
                    if let acc, let col {
                        im2col(geo, xg, phased: phased, rows: r0..<r1, into: col, parallel: true)
                        acc.add(m: og, n: k, k: cols, a: dyg + r0 * wo, lda: p, b: col, ldb: cols, rowOffset: g * og)
                    }
                    if let gradInput, let dcol {
                        parallelSgemm(transA: true, transB: false, m: k, n: cols, k: og, a: w + g * og * k, lda: k,
                                      b: dyg + r0 * wo, ldb: p, beta: 0, c: dcol, ldc: cols)
                        col2imAdd(geo, dcol, rows: r0..<r1, into: gradInput + (n * c + g * cg) * geo.input.plane)
                    }
                    r0 = r1
                }
            }
        }
    }
    acc?.finish()
}

/// Tx1x1 with unit spatial strides and no spatial padding (no copies): per temporal
/// tap kt, output frame `to` reads input frame to*sT - pT + kt*dT, so
///   dW[:, :, kt] += dY[:, frames] x X[:, source frames]^T,
///   dX[:, source frames] += W[:, :, kt]^T x dY[:, frames],
/// over all valid frames at once when sT = 1 (a plain shift), frame by frame otherwise
/// (the strided fast -> slow fusions).
private func conv3dBackwardTemporalTaps(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                                         _ dy: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
                                         gradWeight: UnsafeMutablePointer<Float>?, workspace ws: Workspace,
                                         tapWeights: UnsafePointer<Float>?) {
    let (cg, og, kT, o, c) = (geo.groupIn, geo.groupOut, geo.kernel.t, geo.outChannels, geo.input.c)
    let frame = geo.input.h * geo.input.w
    let (inPlane, p) = (geo.input.plane, geo.positions)
    let (pT, dT, tIn, sT) = (geo.config.padding.t, geo.config.dilation.t, geo.input.t, geo.config.stride.t)
    // Tap-major weights [kT, O, C_g] for the input gradient; the weight gradient is summed tap-major too.
    var packed = tapWeights
    if gradInput != nil && packed == nil {
        let buffer = ws.buffer(kT * o * cg, slot: 4)
        packTemporalTaps(w, o: o, cg: cg, kT: kT, into: buffer)
        packed = UnsafePointer(buffer)
    }
    let taps = gradWeight == nil ? nil : ws.buffer(kT * o * cg, slot: 6)
    taps?.update(repeating: 0, count: kT * o * cg)
    let acc = taps.map { SplitKAccumulator(m: kT * o, n: cg, into: $0, workspace: ws, slot: 3) }
    for n in 0..<geo.input.n {
        for g in 0..<geo.config.groups {
            let xg = x + (n * c + g * cg) * inPlane, dyg = dy + (n * o + g * og) * p
            // (output column range, source shift) blocks: one per tap when sT = 1, else one per tap and output frame.
            var blocks: [(kt: Int, lo: Int, hi: Int, shift: Int)] = []
            for kt in 0..<kT {
                if sT == 1 {
                    let shift = (kt * dT - pT) * frame // source column = output column + shift
                    blocks.append((kt, max(0, -shift), min(p, tIn * frame - shift), shift))
                } else {
                    for to in 0..<geo.output.t {
                        let ti = to * sT - pT + kt * dT
                        if ti >= 0 && ti < tIn { blocks.append((kt, to * frame, (to + 1) * frame, (ti - to) * frame)) }
                    }
                }
            }
            for (kt, lo, hi, shift) in blocks where lo < hi {
                acc?.add(m: og, n: cg, k: hi - lo, a: dyg + lo, lda: p, b: xg + lo + shift, ldb: inPlane, rowOffset: kt * o + g * og)
                if let gradInput, let packed {
                    parallelSgemm(transA: true, transB: false, m: cg, n: hi - lo, k: og, a: packed + (kt * o + g * og) * cg, lda: cg,
                                  b: dyg + lo, ldb: p, beta: 1, c: gradInput + (n * c + g * cg) * inPlane + lo + shift, ldc: inPlane)
                }
            }
        }
    }
    if let acc, let taps, let dw = gradWeight {
        acc.finish()
        parallelFor(o, work: cg * kT) { oc in
            for ci in 0..<cg { for kt in 0..<kT { dw[(oc * cg + ci) * kT + kt] += taps[(kt * o + oc) * cg + ci] } }
        }
    }
}

/// sums[c] += the sum of channel c of `x` ([N, C, ...]) over samples and positions.
func addChannelSums(_ x: FloatTensor, into sums: UnsafeMutablePointer<Float>) {
    let (n, c) = (x.shape[0], x.shape[1])
    let plane = x.count / max(1, n * c)
    let src = x.pointer
    parallelFor(c, work: n * plane) { ch in
        var total = 0.0
        for s in 0..<n {
            let row = src + (s * c + ch) * plane
            var part: Float = 0
            for i in 0..<plane { part += row[i] }
            total += Double(part)
        }
        sums[ch] += Float(total)
    }
}

// MARK: - Reference

/// The oracle: direct loops in double precision, no BLAS, no threads.
public func conv3dForwardNaive(_ input: FloatTensor, weight: FloatTensor, bias: FloatTensor? = nil,
                               config: Conv3dConfig = Conv3dConfig()) -> FloatTensor {
    let geo = Conv3dGeometry(input: input.shape, weight: weight.shape, bias: bias?.shape, config: config)
    let xs = geo.input, os = geo.outputShape, k = geo.kernel
    let (s, p, d) = (config.stride, config.padding, config.dilation)
    let out = FloatTensor(zeros: os.array)
    let x = input.pointer, w = weight.pointer
    for n in 0..<xs.n {
        for oc in 0..<os.c {
            let g = oc / geo.groupOut
            for to in 0..<os.t { for ho in 0..<os.h { for wo in 0..<os.w {
                var acc = Double(bias?.pointer[oc] ?? 0)
                for ci in 0..<geo.groupIn {
                    let c = g * geo.groupIn + ci
                    for kt in 0..<k.t {
                        let ti = to * s.t - p.t + kt * d.t
                        if ti < 0 || ti >= xs.t { continue }
                        for kh in 0..<k.h {
                            let hi = ho * s.h - p.h + kh * d.h
                            if hi < 0 || hi >= xs.h { continue }
                            for kw in 0..<k.w {
                                let wi = wo * s.w - p.w + kw * d.w
                                if wi < 0 || wi >= xs.w { continue }
                                let xv = x[(((n * xs.c + c) * xs.t + ti) * xs.h + hi) * xs.w + wi]
                                let wv = w[(((oc * geo.groupIn + ci) * k.t + kt) * k.h + kh) * k.w + kw]
                                acc += Double(xv) * Double(wv)
                            }
                        }
                    }
                }
                out.pointer[(((n * os.c + oc) * os.t + to) * os.h + ho) * os.w + wo] = Float(acc)
            } } }
        }
    }
    return out
}

/// Calls `body(inputIndex, weightIndex, outputIndex)` for every multiply-add of
/// the convolution (flat indices into input, weight, output): the one loop
/// nest the float64 oracle's forward and backward share.
func conv3dVisit(_ geo: Conv3dGeometry, _ body: (Int, Int, Int) -> Void) {
    let xs = geo.input, os = geo.outputShape, k = geo.kernel
    let (s, p, d) = (geo.config.stride, geo.config.padding, geo.config.dilation)
    for n in 0..<xs.n { for oc in 0..<os.c {
        let g = oc / geo.groupOut
        for to in 0..<os.t { for ho in 0..<os.h { for wo in 0..<os.w {
            let oi = (((n * os.c + oc) * os.t + to) * os.h + ho) * os.w + wo
            for ci in 0..<geo.groupIn {
                let c = g * geo.groupIn + ci
                for kt in 0..<k.t {
                    let ti = to * s.t - p.t + kt * d.t
                    if ti < 0 || ti >= xs.t { continue }
                    for kh in 0..<k.h {
                        let hi = ho * s.h - p.h + kh * d.h
                        if hi < 0 || hi >= xs.h { continue }
                        for kw in 0..<k.w {
                            let wi = wo * s.w - p.w + kw * d.w
                            if wi < 0 || wi >= xs.w { continue }
                            body((((n * xs.c + c) * xs.t + ti) * xs.h + hi) * xs.w + wi,
                                 (((oc * geo.groupIn + ci) * k.t + kt) * k.h + kh) * k.w + kw, oi)
                        }
                    }
                }
            }
        } } }
    } }
}

/// Float64 oracle forward.
public func conv3dForward64(_ x: Tensor64, weight: Tensor64, bias: Tensor64? = nil,
                            config: Conv3dConfig = Conv3dConfig()) -> Tensor64 {
    let geo = Conv3dGeometry(input: x.shape, weight: weight.shape, bias: bias?.shape, config: config)
    var out = Tensor64(zeros: geo.outputShape.array)
    let plane = geo.positions
    if let bias { for i in 0..<out.count { out.values[i] = bias.values[(i / plane) % geo.outChannels] } }
    conv3dVisit(geo) { xi, wi, oi in out.values[oi] += x.values[xi] * weight.values[wi] }
    return out
}

/// Float64 oracle backward: (dL/dx, dL/dweight, dL/dbias) for dL/dout = `gradOutput`.
public func conv3dBackward64(_ x: Tensor64, weight: Tensor64, gradOutput: Tensor64,
                             config: Conv3dConfig = Conv3dConfig()) -> (input: Tensor64, weight: Tensor64, bias: Tensor64) {
    let geo = Conv3dGeometry(input: x.shape, weight: weight.shape, config: config)
    var dx = Tensor64(zeros: x.shape), dw = Tensor64(zeros: weight.shape), db = Tensor64(zeros: [geo.outChannels])
    let plane = geo.positions
    for i in 0..<gradOutput.count { db.values[(i / plane) % geo.outChannels] += gradOutput.values[i] }
    conv3dVisit(geo) { xi, wi, oi in
        dx.values[xi] += gradOutput.values[oi] * weight.values[wi]
        dw.values[wi] += gradOutput.values[oi] * x.values[xi]
    }
    return (dx, dw, db)
}
