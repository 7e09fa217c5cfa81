// The layers of the trainable network: a convolution with its BatchNorm (and
// ReLU), a bottleneck block, each keeping from its forward only what its
// backward reads (the conv input, the conv output for BN, the BN statistics,
// the ReLU output for its mask) and releasing it once backward has run.

import Foundation

/// What every layer of one training pass shares.
final class TrainContext {
    let store: ParameterStore
    let pool: TensorPool
    let workspace = Workspace()
    /// false: BN normalises with its running statistics and updates nothing.
    var batchStatistics = true
    /// The running-statistics momentum of this pass (PyTorch's 0.1; precise BN's 1/(k+1) at batch k).
    var momentum = 0.1
    /// false: a statistics-only pass (precise BN): layers keep nothing for a backward.
    var keepForBackward = true
    /// Test hook: sees every BN's input (module name, conv output) in each forward.
    var batchNormInputObserver: ((String, FloatTensor) -> Void)?
    /// Per unit index (execution order): whether any parameter at a smaller index trains,
    /// i.e. whether that unit must produce its input gradient.
    var trainableBefore: [Bool] = []
    /// Convolution units whose backward ran in the last backward pass.
    var unitsBackward = 0
    /// Forward passes so far: the eval network's convolution paths (ConvLayer, with
    /// weights repacked per path) are rebuilt once per pass, after the optimizer moved the weights.
    var pass = 0

    init(store: ParameterStore, pool: TensorPool) {
        (self.store, self.pool) = (store, pool)
    }
}

/// Conv3d (no bias) -> BatchNorm3d (optional) -> ReLU (optional).
final class TrainConvUnit {
    /// Canonical module names: `s2.pathway0_res0.branch2.a`, `s2.pathway0_res0.branch2.a_bn`.
    let conv: String, bn: String?
    let config: Conv3dConfig
    let relu: Bool
    /// Position in execution order.
    let index: Int
    private var input: FloatTensor?, convOut: FloatTensor?, output: FloatTensor?
    private var saved: BatchNormSaved?
    /// The forward's convolution, built from the current weight once per pass.
    private var layer: ConvLayer?
    private var layerPass = -1
    /// The input-gradient convolution (see `transposedLayer`), built once per pass.
    private var transposed: ConvLayer?
    private var transposedPass = -1

    init(conv: String, bn: String?, config: Conv3dConfig, relu: Bool, index: Int) {
        (self.conv, self.bn, self.config, self.relu, self.index) = (conv, bn, config, relu, index)
    }

    /// The parameter names of this unit.
    var parameterNames: [String] { [conv + ".weight"] + (bn.map { [$0 + ".weight", $0 + ".bias"] } ?? []) }

    func output(for shape: [Int], _ ctx: TrainContext) -> [Int] {
        Conv3dGeometry(input: shape, weight: ctx.store.value(required: conv + ".weight").shape, config: config).outputShape.array
    }

    func forward(_ x: FloatTensor, _ ctx: TrainContext) -> FloatTensor {
        let keep = ctx.keepForBackward
        if !keep { input = nil; convOut = nil; output = nil; saved = nil }
        let w = ctx.store.value(required: conv + ".weight")
        if layerPass != ctx.pass {
            if !(layer?.refresh(from: w) ?? false) {
                layer = ConvLayer(name: conv, kind: EvalNetwork.kind(w.shape, config), weight: w, bn: nil, config: config)
            }
            layerPass = ctx.pass
        }
        let z = ctx.pool.take(output(for: x.shape, ctx))
        layer!.run(Act(borrowing: x, as: Shape5D(x.shape)), into: Act(borrowing: z, as: Shape5D(z.shape)), relu: false,
                   workspace: ctx.workspace)
        if keep { input = x }
        guard let bn else {
            if relu {
                _ = reluForward(z, inPlace: true)
                if keep { output = z }
            } else {
                convOut = nil
            }
            return z
        }
        let store = ctx.store
        ctx.batchNormInputObserver?(bn, z)
        let (y, stats) = batchNormTrainForward(z, weight: store.value(bn + ".weight"), bias: store.value(bn + ".bias"),
                                               runningMean: store.value(bn + ".running_mean"),
                                               runningVar: store.value(bn + ".running_var"),
                                               batchStatistics: ctx.batchStatistics, momentum: ctx.momentum, relu: relu,
                                               into: ctx.pool.take(z.shape))
        if ctx.batchStatistics { store.countBatch(bn) }
        guard keep else { return y }
        convOut = z
        saved = stats
        if relu { output = y }
        return y
    }

    /// Backward from dL/d(output) (`grad`, consumed: overwritten in place). Adds the
    /// parameter gradients of trainable parameters; returns dL/dinput when a
    /// parameter before this unit trains, else nil. Releases what forward saved.
    func backward(_ grad: FloatTensor, _ ctx: TrainContext) -> FloatTensor? {
        defer { input = nil; convOut = nil; output = nil; saved = nil }
        let store = ctx.store
        let needInput = ctx.trainableBefore[index]
        let convGrad = store.gradient(conv + ".weight")
        guard needInput || parameterNames.contains(where: store.isTrainable) else { return nil }
        guard let x = input else { preconditionFailure("\(conv): backward without forward") }
        ctx.unitsBackward += 1
        if relu, let y = output { reluBackward(output: y, gradOutput: grad) }
        var dz = grad
        if let bn, let stats = saved, let z = convOut {
            dz = batchNormBackward(z, gradOutput: grad, weight: store.value(bn + ".weight"), saved: stats,
                                   gradWeight: store.gradient(bn + ".weight"), gradBias: store.gradient(bn + ".bias"),
                                   needInputGradient: needInput || convGrad != nil, inPlace: true) ?? grad
        }
        guard needInput || convGrad != nil else { return nil }
        let w = store.value(required: conv + ".weight")
        if needInput, x.count * 4 >= w.count, let transposed = transposedLayer(w, ctx) {
            // Stride-1 spatial kernels: dx is a forward convolution of dz (the eval network's fast paths),
            // unless the input is small against the weight (the deep stages at small crops), where flipping
            // the weight every pass costs more than the col2im of the general backward.
            let dx = ctx.pool.take(x.shape)
            transposed.run(Act(borrowing: dz, as: Shape5D(dz.shape)), into: Act(borrowing: dx, as: Shape5D(dx.shape)),
                           relu: false, workspace: ctx.workspace)
            if convGrad != nil {
                conv3dBackward(x, weight: w, gradOutput: dz, config: config, gradWeight: convGrad, workspace: ctx.workspace)
            }
            return dx
        }
        let dx = needInput ? ctx.pool.zeros(x.shape) : nil
        conv3dBackward(x, weight: w, gradOutput: dz, config: config, gradInput: dx, gradWeight: convGrad, workspace: ctx.workspace,
                       tapWeights: layerPass == ctx.pass ? layer?.builtTapWeights : nil)
        return dx
    }

    /// For a stride-1, undilated, ungrouped convolution with a spatial kernel, the
    /// input gradient is the convolution of the output gradient with the kernel
    /// flipped and transposed ([C, O, kT, kH, kW] reversed along each kernel axis),
    /// padded by k - 1 - p: built once per pass; nil for other convolutions.
    private func transposedLayer(_ w: FloatTensor, _ ctx: TrainContext) -> ConvLayer? {
        let k = Size3(w.shape[2], w.shape[3], w.shape[4]), p = config.padding
        guard config.stride == 1, config.dilation == 1, config.groups == 1, k.h > 1 || k.w > 1,
              p.t <= k.t - 1, p.h <= k.h - 1, p.w <= k.w - 1 else { return nil }
        if let cached = transposed, transposedPass == ctx.pass { return cached }
        let (o, c) = (w.shape[0], w.shape[1])
        // The flipped weight lives as long as the unit: rewritten in place each pass.
        let flipped = transposed?.weight ?? FloatTensor(uninitialized: [c, o, k.t, k.h, k.w])
        let taps = k.product
        let src = w.pointer, dst = flipped.pointer
        parallelFor(c, work: o * taps) { ci in
            for oc in 0..<o {
                let from = src + (oc * c + ci) * taps, to = dst + (ci * o + oc) * taps
                for i in 0..<taps { to[i] = from[taps - 1 - i] }
            }
        }
        let pad = Size3(k.t - 1 - p.t, k.h - 1 - p.h, k.w - 1 - p.w)
        let layer = transposed.flatMap { $0.refresh(from: flipped) ? $0 : nil }
            ?? ConvLayer(name: conv + " (input gradient)", kind: "conv transposed", weight: flipped, bn: nil,
                         config: Conv3dConfig(padding: pad))
        transposed = layer
        transposedPass = ctx.pass
        return layer
    }
}

/// PySlowFast's ResBlock: branch2 = a (Tx1x1) -> b (1x3x3, stride) -> c (1x1x1, BN
/// without ReLU); shortcut branch1 (1x1x1 stride + BN) or identity; add; ReLU.
final class TrainBottleneck {
    let a: TrainConvUnit, b: TrainConvUnit, c: TrainConvUnit, branch1: TrainConvUnit?
    /// X3D: squeeze-excitation on b's normalised output, then Swish (b itself then runs without activation).
    let se: TrainSqueezeExcite?, swish: TrainSwish?
    private var output: FloatTensor?

    init(a: TrainConvUnit, b: TrainConvUnit, c: TrainConvUnit, branch1: TrainConvUnit?, se: TrainSqueezeExcite? = nil,
         swish: TrainSwish? = nil) {
        (self.a, self.b, self.c, self.branch1, self.se, self.swish) = (a, b, c, branch1, se, swish)
    }

    var units: [TrainConvUnit] { (branch1.map { [$0] } ?? []) + [a, b, c] }

    /// Parameters of the block outside its units (the squeeze-excitation's).
    var extraParameterNames: [String] { se?.parameterNames ?? [] }

    func forward(_ x: FloatTensor, _ ctx: TrainContext) -> FloatTensor {
        if !ctx.keepForBackward { output = nil }
        let shortcut = branch1?.forward(x, ctx) ?? x
        var inner = b.forward(a.forward(x, ctx), ctx)
        if let se { inner = se.forward(inner, ctx) }
        if let swish { inner = swish.forward(inner, ctx) }
        let out = c.forward(inner, ctx)
        let o = out.pointer, s = shortcut.pointer
        withExtendedLifetime(shortcut) {
            parallelRanges(out.count, minPerThread: 1 << 15) { range in
                for i in range { o[i] = max(o[i] + s[i], 0) }
            }
        }
        if ctx.keepForBackward { output = out }
        return out
    }

    /// Backward from dL/d(block output) (consumed); nil when nothing before the block trains.
    func backward(_ grad: FloatTensor, _ ctx: TrainContext) -> FloatTensor? {
        guard let out = output else { preconditionFailure("bottleneck backward without forward") }
        output = nil
        reluBackward(output: out, gradOutput: grad)
        let first = branch1 ?? a
        let needInput = ctx.trainableBefore[first.index]
        // The shortcut's gradient: branch1's input gradient, or the sum's gradient itself.
        var shortcutGrad: FloatTensor?
        if let branch1 {
            let copy = ctx.pool.take(grad.shape)
            copy.pointer.update(from: grad.pointer, count: grad.count)
            shortcutGrad = branch1.backward(copy, ctx)
        } else if needInput {
            shortcutGrad = ctx.pool.take(grad.shape)
            shortcutGrad!.pointer.update(from: grad.pointer, count: grad.count)
        }
        var g: FloatTensor? = c.backward(grad, ctx)
        if var current = g, se != nil || swish != nil {
            if let swish { current = swish.backward(current) }
            if let se { current = se.backward(current, ctx) }
            g = current
        }
        for unit in [b, a] {
            guard let current = g else { break }
            g = unit.backward(current, ctx)
        }
        guard needInput else { return nil }
        switch (g, shortcutGrad) {
        case let (main?, short?):
            let m = main.pointer, s = short.pointer
            parallelRanges(main.count, minPerThread: 1 << 15) { range in for i in range { m[i] += s[i] } }
            return main
        case let (main?, nil): return main
        case let (nil, short?): return short
        case (nil, nil): return nil
        }
    }
}
