// One convolution of the network with its eval BatchNorm folded in once at
// load (weights scaled per output channel, BN shift as bias, weights repacked
// for the GEMM path that will run them), run on activation views with a fused
// epilogue: after each GEMM chunk, while it is still in cache, the chunk gets
// bias, an optional residual and ReLU (ConvPaths.swift). `accumulate` adds onto
// what the output already holds (the projection shortcut, or the block input
// itself for an identity shortcut computed in place).

import Foundation

/// A convolution + folded BN (+ ReLU) ready to run.
final class ConvLayer: @unchecked Sendable {
    /// Canonical module name, e.g. `s2.pathway0_res0.branch2.a`.
    let name: String
    /// Profile class: "conv stem", "conv 1x1x1", "conv Tx1x1", "conv 1x3x3", ...
    let kind: String
    /// PyTorch weight shape [O, C/groups, kT, kH, kW].
    let shape: [Int]
    /// The weight in PyTorch layout, BN scale folded in; nil for BN-folded layers that always
    /// take a path with its own layout (temporal taps, stem ring), to save the memory.
    let weight: FloatTensor?
    /// Whether the shifted-GEMM path can run this layer (Tx1x1, unit strides, no spatial padding).
    let temporalShiftable: Bool
    /// Its temporal-tap layout [kT, O, C/groups]: made at load for BN-folded layers, on first use for
    /// the others (which may run on the unfolded input instead, see `Conv3dGeometry.unfoldsTaps`).
    private var tapCache: FloatTensor?
    /// For 3-D kernels with unit temporal stride (the stems): [kT rotations][O, kT*C*kH*kW], rotation r
    /// holding tap (i - r) mod kT in column block i, to run on a ring of per-frame im2col slices.
    let ringWeights: FloatTensor?
    /// Whether the row-shift path can run this layer (1xkHxkW, unit strides, one group).
    let rowShiftable: Bool
    /// BN shift per output channel (nil without BN).
    let bias: FloatTensor?
    let config: Conv3dConfig
    let kernel: Size3
    var outChannels: Int { shape[0] }
    var inChannels: Int { shape[1] * config.groups }
    /// [kW taps][O, C*kH] for the row-shift path, made on first use (narrow inputs never need it).
    private var rowWeightsCache: FloatTensor?
    private let lock = NSLock()

    /// `bn` nil: a plain convolution without bias (mmaction2's laterals).
    init(name: String, kind: String, weight: FloatTensor, bn: BatchNormFold?, config: Conv3dConfig) {
        let o = weight.shape[0], perOut = weight.count / max(1, o)
        // Without BN the caller's weight is used as it is (the training forward rebuilds its layers from
        // the live weights every pass: no copy).
        var scaled = weight
        if let bn {
            scaled = FloatTensor(uninitialized: weight.shape)
            for oc in 0..<o {
                let s = Double(bn.scale.pointer[oc])
                for i in 0..<perOut {
                    scaled.pointer[oc * perOut + i] = Float(Double(weight.pointer[oc * perOut + i]) * s)
                }
            }
        }
        self.name = name
        self.kind = kind
        self.shape = weight.shape
        self.bias = bn.map { $0.shift.copy() }
        self.config = config
        let kernel = Size3(weight.shape[2], weight.shape[3], weight.shape[4])
        self.kernel = kernel
        // Channel-wise layers (X3D's stem 5x1x1 included) keep the plain weight for the direct kernel.
        let channelwise = config.groups > 1 && config.groups == o && weight.shape[1] == 1
        temporalShiftable = kernel.t > 1 && kernel.h == 1 && kernel.w == 1 && config.stride == 1 && config.padding.h == 0
            && config.padding.w == 0 && !channelwise
        if temporalShiftable && bn != nil {
            let taps = FloatTensor(uninitialized: [kernel.t, o, weight.shape[1]])
            Self.fillTaps(taps, from: scaled)
            tapCache = taps
        }
        if kernel.t > 1 && (kernel.h > 1 || kernel.w > 1) && config.stride.t == 1 && config.dilation == 1 && config.groups == 1 {
            let rotated = FloatTensor(uninitialized: [kernel.t, o, kernel.t * weight.shape[1] * kernel.h * kernel.w])
            Self.fillRing(rotated, from: scaled)
            ringWeights = rotated
        } else {
            ringWeights = nil
        }
        rowShiftable = kernel.t == 1 && kernel.w > 1 && config.stride == 1 && config.dilation == 1 && config.groups == 1
            && config.padding.t == 0
        self.weight = (tapCache == nil && ringWeights == nil) ? scaled : nil
    }

    /// [O, C_g, kT, 1, 1] -> the temporal-tap layout [kT, O, C_g].
    private static func fillTaps(_ taps: FloatTensor, from weight: FloatTensor) {
        packTemporalTaps(weight.pointer, o: weight.shape[0], cg: weight.shape[1], kT: weight.shape[2], into: taps.pointer)
    }

    /// [O, C, kT, kH, kW] -> the ring layout [kT rotations][O, kT*C*kH*kW] (see `ringWeights`).
    private static func fillRing(_ rotated: FloatTensor, from weight: FloatTensor) {
        let (o, c, kT) = (weight.shape[0], weight.shape[1], weight.shape[2])
        let spatial = weight.shape[3] * weight.shape[4], k2 = c * spatial
        let (src, dst) = (weight.pointer, rotated.pointer)
        parallelFor(kT * o, work: kT * k2) { ro in
            let (r, oc) = (ro / o, ro % o)
            for i in 0..<kT {
                let kt = ((i - r) % kT + kT) % kT
                for ci in 0..<c {
                    (dst + ((r * o + oc) * kT + i) * k2 + ci * spatial)
                        .update(from: src + ((oc * c + ci) * kT + kt) * spatial, count: spatial)
                }
            }
        }
    }

    /// A BN-less layer made from `weight` takes that tensor's current values (the training forward,
    /// once per pass after the optimizer moved them in place): the derived layouts are rewritten in
    /// their own memory, nothing is allocated. false: the layer was made from another tensor.
    func refresh(from weight: FloatTensor) -> Bool {
        guard bias == nil, weight.shape == shape else { return false }
        if let ringWeights {
            Self.fillRing(ringWeights, from: weight)
            return true
        }
        guard self.weight === weight else { return false }
        lock.lock()
        if let taps = tapCache { Self.fillTaps(taps, from: weight) }
        if let rows = rowWeightsCache { Self.fillRows(rows, from: weight) }
        lock.unlock()
        return true
    }

    /// The temporal-tap layout, if the layer has one (made on first use; rewritten in place by `refresh`).
    func tapWeights() -> FloatTensor? {
        lock.lock()
        defer { lock.unlock() }
        guard temporalShiftable else { return nil }
        if let cached = tapCache { return cached }
        guard let weight else { preconditionFailure("\(name): no weight for the temporal-tap layout") }
        let taps = FloatTensor(uninitialized: [kernel.t, shape[0], shape[1]])
        Self.fillTaps(taps, from: weight)
        tapCache = taps
        return taps
    }

    /// The temporal-tap layout if it was made already (the training backward reuses the forward's).
    var builtTapWeights: FloatTensor? {
        lock.lock()
        defer { lock.unlock() }
        return tapCache
    }

    /// The row-shift layout of the weight, built once (rewritten in place by `refresh`).
    func rowWeights() -> FloatTensor {
        lock.lock()
        defer { lock.unlock() }
        if let cached = rowWeightsCache { return cached }
        guard let weight else { preconditionFailure("\(name): no weight for the row-shift layout") }
        let rows = FloatTensor(uninitialized: [kernel.w, shape[0], shape[1] * kernel.h])
        Self.fillRows(rows, from: weight)
        rowWeightsCache = rows
        return rows
    }

    /// [O, C, 1, kH, kW] -> the row-shift layout [kW taps][O, C*kH].
    private static func fillRows(_ rows: FloatTensor, from weight: FloatTensor) {
        let (o, c, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[3], weight.shape[4])
        let (src, dst) = (weight.pointer, rows.pointer)
        parallelFor(o, work: c * kh * kw) { oc in
            for tap in 0..<kw { for ci in 0..<c { for r in 0..<kh {
                dst[(tap * o + oc) * c * kh + ci * kh + r] = src[((oc * c + ci) * kh + r) * kw + tap]
            } } }
        }
    }

    /// Sizes of this convolution on an input of shape `input`.
    func geometry(_ input: Shape5D) -> Conv3dGeometry {
        Conv3dGeometry(input: input.array, weight: shape, config: config)
    }

    /// out = [relu]((accumulate ? out : 0) + conv(x) + bias [+ residual]). `out` must
    /// have the output shape; `residual` (same shape) may not alias `out` (use
    /// `accumulate` on the residual's memory instead).
    /// `channelwise` replaces `relu` as what a channel-wise layer does to its output (Swish, or the
    /// per-(n, c) sums into [N, C] floats that squeeze-excitation reads).
    func run(_ x: Act, into out: Act, relu: Bool, accumulate: Bool = false, residual: Act? = nil,
             channelwise: ChannelwiseEpilogue? = nil, workspace: Workspace) {
        let geo = geometry(x.shape)
        precondition(out.shape == geo.outputShape, "\(name): output view \(out.shape) for output \(geo.outputShape)")
        if let residual { precondition(residual.shape == out.shape && !residual.sameMemory(out)) }
        if geo.isChannelwise, !accumulate, residual == nil, let weight {
            // Channel-wise (X3D's 3x3x3 and stem 5x1x1): the direct kernel, one sample at a time (views may be strided).
            var one = x.shape
            one.n = 1
            let sample = Conv3dGeometry(input: one.array, weight: shape, config: config)
            let epilogue = channelwise ?? (relu ? .relu : .none)
            withExtendedLifetime((x.buffer, out.buffer, weight, bias)) {
                for n in 0..<geo.input.n {
                    var perSample = epilogue
                    if case let .sums(sums) = epilogue { perSample = .sums(sums + n * geo.input.c) }
                    channelwiseForward(sample, UnsafePointer(x.sample(n)), UnsafePointer(weight.pointer),
                                       bias.map { UnsafePointer($0.pointer) }, out.sample(n), workspace: workspace,
                                       epilogue: perSample)
                }
            }
            return
        }
        precondition(channelwise == nil, "\(name): a channel-wise epilogue on a layer that is not channel-wise")
        withExtendedLifetime((x.buffer, out.buffer, residual?.buffer)) {
            if let stacking = SampleStacking(geo) {
                // Few positions per sample: every sample at once (SampleStacking.swift); bias in the
                // GEMM's epilogue, the rest (accumulate, residual, ReLU) in the copy back.
                let sgeo = geometry(stacking.stacked(geo.input))
                let xs = workspace.buffer(sgeo.input.n * sgeo.input.c * sgeo.input.plane, slot: 8)
                stacking.gather(geo.input, sample: { UnsafePointer(x.sample($0)) }, into: xs)
                let os = workspace.buffer(sgeo.outChannels * sgeo.positions, slot: 9)
                runSample(sgeo, UnsafePointer(xs), os, residual: nil, relu: false, accumulate: false, workspace: workspace)
                stacking.scatter(geo.outputShape, from: os, sample: { out.sample($0) }, accumulate: accumulate,
                                 residual: residual.map { r in { UnsafePointer(r.sample($0)) } }, relu: relu)
                return
            }
            for n in 0..<geo.input.n {
                runSample(geo, UnsafePointer(x.sample(n)), out.sample(n), residual: residual.map { UnsafePointer($0.sample(n)) },
                          relu: relu, accumulate: accumulate, workspace: workspace)
            }
        }
    }

    /// One sample (`geo`'s per-sample sizes), every group, on the path that fits the layer.
    private func runSample(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                           residual: UnsafePointer<Float>?, relu: Bool, accumulate: Bool, workspace: Workspace) {
        for g in 0..<config.groups {
            let og = geo.groupOut
            let epilogue = Epilogue(bias: bias.map { UnsafePointer($0.pointer) + g * og },
                                    residual: residual.map { $0 + g * og * geo.positions }, relu: relu, ld: geo.positions)
            let xg = x + g * geo.groupIn * geo.input.plane
            let outg = out + g * og * geo.positions
            let w = weight.map { UnsafePointer($0.pointer) + g * og * geo.reduction }
            if geo.isPointwise {
                pointwise(geo, xg, w!, outg, accumulate: accumulate, epilogue: epilogue)
            } else if let ring = ringWeights {
                temporalRing(geo, xg, UnsafePointer(ring.pointer), outg, accumulate: accumulate,
                             epilogue: epilogue, workspace: workspace)
            } else if temporalShiftable && (weight == nil || !geo.unfoldsTaps), let taps = tapWeights() {
                temporalShift(geo, xg, UnsafePointer(taps.pointer) + g * og * geo.groupIn, outg,
                              accumulate: accumulate, epilogue: epilogue)
            } else if rowShiftable && geo.output.w >= ModelTuning.rowShiftMinWidth {
                let rows = rowWeights()
                rowShift(geo, xg, UnsafePointer(rows.pointer), outg, accumulate: accumulate,
                         epilogue: epilogue, workspace: workspace)
            } else {
                general(geo, xg, w!, outg, accumulate: accumulate, epilogue: epilogue, workspace: workspace)
            }
        }
    }
}
