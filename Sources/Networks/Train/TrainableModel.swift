// The SlowFast / Slow-only / 2D ResNet network of an `ArchConfig` in training
// mode (PySlowFast's video_model_builder in model.train()): unfolded BatchNorm
// with batch statistics and running-stat updates, dropout before the head, a
// forward that keeps only what backward reads, and a backward from dLogits to
// every parameter's gradient. Frozen parameters (glob patterns) get no
// gradient, and backward stops where nothing earlier trains (head-only
// fine-tuning runs no backbone backward at all). Activation memory comes from
// a TensorPool, so every iteration after the first reuses the same buffers.
// Evaluation reuses the folded, fused eval network (`evalModel()`). Precise BN
// (`preciseBNStatistics`) runs statistics-only forwards that keep nothing.

import Families
import Foundation
import Formats

/// How a training pass treats the network.
public struct TrainOptions: Sendable {
    /// Glob patterns (`*`, `?`) of parameters that do not train, e.g. `["s*"]` (head only).
    public var frozen: [String]
    /// BatchNorm with its running statistics inside the training step (nothing updated).
    public var freezeBatchNormStatistics: Bool
    /// Dropout before the projection; nil takes the config's `dropout`.
    public var dropout: Double?
    /// Seed of the dropout masks.
    public var seed: UInt64

    public init(frozen: [String] = [], freezeBatchNormStatistics: Bool = false, dropout: Double? = nil, seed: UInt64 = 0) {
        (self.frozen, self.freezeBatchNormStatistics, self.dropout, self.seed) = (frozen, freezeBatchNormStatistics, dropout, seed)
    }
}

public final class TrainableModel {
    public let config: ArchConfig
    public let options: TrainOptions
    /// Parameters, gradients, BN buffers by canonical name.
    public let store: ParameterStore
    /// Activation and activation-gradient memory.
    public let pool = TensorPool()
    private let ctx: TrainContext
    private let stems: [TrainConvUnit]
    /// [res2...res5][pathway][block]
    private let stages: [[[TrainBottleneck]]]
    /// After the stem and res2...res4 (SlowFast only).
    private let fusions: [TrainConvUnit]
    private let headIndex: Int
    private var rng: SplitMix64
    // Saved by forward for backward.
    private var finalShapes: [[Int]] = []
    private var features: FloatTensor?
    private var dropoutMask: FloatTensor?
    private var stemIndices: [[Int32]] = []
    private var stemShapes: [[Int]] = []
    private var fusedSlowChannels: [Int] = []

    /// Builds the network from `config` and canonical `weights` (strict, as `SlowFastModel`).
    public init(config: ArchConfig, weights: TensorMap, options: TrainOptions = TrainOptions()) throws {
        do { try config.validate() } catch { throw ModelError.invalidConfig("\(error)") }
        let p = options.dropout ?? config.dropout
        guard (0..<1).contains(p) else { throw ModelError.invalidConfig("dropout \(p) outside [0, 1)") }
        self.config = config
        self.options = options
        store = try ParameterStore(config: config, weights: weights, frozen: options.frozen)
        ctx = TrainContext(store: store, pool: pool)
        ctx.batchStatistics = !options.freezeBatchNormStatistics
        rng = SplitMix64(seed: options.seed)
        var index = 0
        func unit(_ module: String, bn: String?, stride: Size3 = 1, padding: Size3 = 0, groups: Int = 1, relu: Bool) -> TrainConvUnit {
            defer { index += 1 }
            return TrainConvUnit(conv: module, bn: bn, config: Conv3dConfig(stride: stride, padding: padding, groups: groups),
                                 relu: relu, index: index)
        }
        let pathways = config.pathways
        stems = (0..<pathways).map { p in
            let kT = config.temporalKernel(stageIndex: 0, pathway: p)
            return unit("s1.pathway\(p)_stem.conv", bn: "s1.pathway\(p)_stem.bn", stride: Size3(1, 2, 2),
                        padding: Size3(kT / 2, 3, 3), relu: true)
        }
        func fusion(_ stage: Int) -> TrainConvUnit {
            unit("s\(stage)_fuse.conv_f2s", bn: config.fusionNorm ? "s\(stage)_fuse.bn" : nil, stride: Size3(config.alpha, 1, 1),
                 padding: Size3(config.fusionKernel / 2, 0, 0), relu: config.fusionNorm)
        }
        var fusions: [TrainConvUnit] = []
        if config.model == .slowfast { fusions.append(fusion(1)) }
        var stages: [[[TrainBottleneck]]] = []
        for stage in 2...5 {
            let stride = config.spatialStrides[stage - 2]
            stages.append((0..<pathways).map { p in
                let kT = config.temporalKernel(stageIndex: stage - 1, pathway: p)
                return (0..<config.stageDepths[stage - 2]).map { i in
                    let block = "s\(stage).pathway\(p)_res\(i)"
                    let s = i == 0 ? stride : 1
                    let (strideA, strideB) = config.stride1x1 ? (s, 1) : (1, s)
                    let b1 = weights[block + ".branch1.weight"] != nil
                        ? unit(block + ".branch1", bn: block + ".branch1_bn", stride: Size3(1, s, s), relu: false) : nil
                    let a = unit(block + ".branch2.a", bn: block + ".branch2.a_bn", stride: Size3(1, strideA, strideA),
                                 padding: Size3(kT / 2, 0, 0), relu: true)
                    let b = unit(block + ".branch2.b", bn: block + ".branch2.b_bn", stride: Size3(1, strideB, strideB),
                                 padding: Size3(0, 1, 1), groups: config.numGroups, relu: true)
                    let c = unit(block + ".branch2.c", bn: block + ".branch2.c_bn", relu: false)
                    return TrainBottleneck(a: a, b: b, c: c, branch1: b1)
                }
            })
            if config.model == .slowfast && stage < 5 { fusions.append(fusion(stage)) }
        }
        self.stages = stages
        self.fusions = fusions
        headIndex = index
        // trainableBefore[i]: any parameter of a unit with a smaller index (or the head, last) trains.
        var units = stems + fusions
        for stage in stages { for path in stage { for block in path { units += block.units } } }
        var trains = [Bool](repeating: false, count: index + 1)
        for u in units { trains[u.index] = u.parameterNames.contains(where: store.isTrainable) }
        trains[headIndex] = store.isTrainable("head.projection.weight") || store.isTrainable("head.projection.bias")
        var before = false
        ctx.trainableBefore = trains.map { t in defer { before = before || t }; return before }
    }

    /// Reads a native sfnet file (safetensors with `sfnet.arch`).
    public static func load(path: String, options: TrainOptions = TrainOptions()) throws -> TrainableModel {
        let checkpoint = try CheckpointReader.read(path: path)
        guard let arch = checkpoint.metadataValue("sfnet.arch") else {
            throw ModelError.missingArchitecture(path: path, reason: "the file has no sfnet.arch metadata")
        }
        let config: ArchConfig
        do { config = try ArchConfig.fromJSON(arch) } catch { throw ModelError.missingArchitecture(path: path, reason: "\(error)") }
        return try TrainableModel(config: config, weights: checkpoint.tensors, options: options)
    }

    // MARK: - Shapes

    /// Checks the inputs against the training clip the head's pool was sized for:
    /// the head must pool each pathway's whole res5 output to one position.
    private func validate(_ shapes: [[Int]]) throws -> [[Int]] {
        let names = config.pathways == 2 ? ["slow", "fast"] : ["x"]
        guard shapes.count == config.pathways else {
            throw ModelError.badInput("\(config.model.rawValue) takes \(config.pathways) input(s) (\(names.joined(separator: ", "))), got \(shapes.count)")
        }
        var out: [[Int]] = []
        for (p, s) in shapes.enumerated() {
            let what = "input \(p) (\(names[p])) has shape \(Tensor.shapeString(s))"
            let shape: [Int]
            if s.count == 4 && config.model == .resnet { shape = [s[0], s[1], 1, s[2], s[3]] } else if s.count == 5 { shape = s } else {
                throw ModelError.badInput("\(what); expected (N, 3, T, H, W)")
            }
            guard shape.allSatisfy({ $0 >= 1 }), shape[1] == 3 else { throw ModelError.badInput("\(what); expected (N, 3, T, H, W) with every dimension >= 1") }
            let head = headPoolKernel(pathway: p)
            guard shape[2] == head.t else {
                throw ModelError.badInput("\(what): training needs \(head.t) frames on this pathway (the head pools the "
                                          + "training clip of num_frames \(config.numFrames))")
            }
            for (axis, length) in [("height", shape[3]), ("width", shape[4])] {
                var l = windowOutputLength(length, kernel: 7, stride: 2, padding: 3)
                l = windowOutputLength(l, kernel: 3, stride: 2, padding: 1)
                for s in config.spatialStrides { l = windowOutputLength(l, kernel: 3, stride: s, padding: 1) }
                guard l == head.h else {
                    throw ModelError.badInput("\(what): its \(axis) gives res5 extent \(l), the head pools \(head.h) "
                                              + "(train_crop \(config.trainCrop)); training takes clips of the training crop size")
                }
            }
            out.append(shape)
        }
        if out.count == 2 && (out[0][0] != out[1][0] || out[0][3] != out[1][3] || out[0][4] != out[1][4]) {
            throw ModelError.badInput("slow \(Tensor.shapeString(out[0])) and fast \(Tensor.shapeString(out[1])) differ in batch or spatial size")
        }
        return out
    }

    private func headPoolKernel(pathway p: Int) -> Size3 {
        let s = config.trainCrop / 32
        switch config.model {
        case .slowfast: return p == 0 ? Size3(config.numFrames / config.alpha, s, s) : Size3(config.numFrames, s, s)
        case .slow: return Size3(config.numFrames, s, s)
        case .resnet: return Size3(1, s, s)
        }
    }

    // MARK: - Forward

    /// One training-mode forward: batch-statistics BN (running statistics updated,
    /// unless frozen), dropout, the projection. `inputs`: one tensor per pathway
    /// (slow first) at the training clip size. Returns the logits (N, classes) and keeps
    /// what `backward` needs until it runs.
    public func forward(_ inputs: [FloatTensor]) throws -> FloatTensor {
        let shapes = try validate(inputs.map(\.shape))
        releaseSaved()
        ctx.pass += 1
        ctx.momentum = 0.1
        ctx.keepForBackward = true
        let x = backbone(inputs, shapes: shapes)
        // Head: the pool covers each pathway's whole output (checked): global average, concat.
        finalShapes = x.map(\.shape)
        let pooled = x.map { globalAvgPool3dForward($0) }
        let n = shapes[0][0]
        let channels = pooled.reduce(0) { $0 + $1.shape[1] }
        let feats = concatChannels(pooled)
        feats.reshape([n, channels])
        let p = Float(options.dropout ?? config.dropout)
        let (dropped, mask) = dropoutForward(feats, p: p, training: true, using: &rng)
        features = dropped
        dropoutMask = mask
        return linearForward(dropped, weight: store.value(required: "head.projection.weight"),
                             bias: store.value(required: "head.projection.bias"))
    }

    /// Stems, fusions and stages in training mode, up to each pathway's res5 output; saves what
    /// `backward` reads unless the pass is statistics-only (`ctx.keepForBackward` false).
    private func backbone(_ inputs: [FloatTensor], shapes: [[Int]]) -> [FloatTensor] {
        let keep = ctx.keepForBackward
        let twoPath = config.model == .slowfast
        // Stems: conv -> BN -> ReLU -> max pool (kept: indices).
        var x: [FloatTensor] = []
        for (p, input) in inputs.enumerated() {
            let view = input.shape == shapes[p] ? input : FloatTensor(shape: shapes[p], copying: input.pointer)
            let y = stems[p].forward(view, ctx)
            let (pooled, indices) = maxPool3dForwardWithIndices(y, SlowFastModel.stemPool)
            if keep {
                stemIndices.append(indices)
                stemShapes.append(y.shape)
            }
            x.append(pooled)
        }
        func fuse(_ i: Int) {
            let f = fusions[i].forward(x[1], ctx)
            if keep { fusedSlowChannels.append(x[0].shape[1]) }
            x[0] = concatChannels([x[0], f])
        }
        if twoPath { fuse(0) }
        for (s, stage) in stages.enumerated() {
            for p in 0..<config.pathways {
                for block in stage[p] { x[p] = block.forward(x[p], ctx) }
            }
            if twoPath && s < 3 { fuse(s + 1) }
        }
        return x
    }

    // MARK: - Precise BN statistics

    /// One statistics-only pass (fvcore's `update_bn_stats` step, which PySlowFast's
    /// `BN.USE_PRECISE_STATS` runs): a training-mode forward of the backbone with no
    /// gradient, no dropout and no head, that moves every BN's running mean and running
    /// variance toward this batch's mean and unbiased variance,
    /// r = (1 - momentum) * r + momentum * batch, counts the batch in `num_batches_tracked`
    /// (as a PyTorch forward in train mode does), and keeps nothing for a backward. With
    /// frozen BN statistics it changes nothing.
    public func updateBNStatistics(momentum: Double, inputs: [FloatTensor]) throws {
        guard momentum > 0 && momentum <= 1 else { throw ModelError.badInput("BN momentum \(momentum) outside (0, 1]") }
        ctx.pass += 1
        try statisticsPass(momentum: momentum, inputs: inputs)
    }

    /// Precise BN statistics over up to `batches` batches from `next` (nil: no more): batch k
    /// (k = 0, 1, ...) with momentum 1 / (k + 1), so that each BN's running mean and variance
    /// end as the plain average over the batches of each batch's mean and unbiased variance,
    /// whatever they were before. Weights and gradients stay as they are. Returns the batches used.
    @discardableResult
    public func preciseBNStatistics(batches: Int, next: () throws -> [FloatTensor]?) throws -> Int {
        guard ctx.batchStatistics, batches > 0 else { return 0 }
        ctx.pass += 1  // the weights may have moved since the last forward; they stay fixed from here
        var k = 0
        while k < batches, let inputs = try next() {
            try statisticsPass(momentum: 1 / Double(k + 1), inputs: inputs)
            k += 1
        }
        return k
    }

    private func statisticsPass(momentum: Double, inputs: [FloatTensor]) throws {
        let shapes = try validate(inputs.map(\.shape))
        releaseSaved()
        guard ctx.batchStatistics else { return }
        ctx.momentum = momentum
        ctx.keepForBackward = false
        defer { ctx.momentum = 0.1; ctx.keepForBackward = true }
        _ = backbone(inputs, shapes: shapes)
    }

    /// Test hook: called with every BN's module name and input in each forward.
    var batchNormInputObserver: ((String, FloatTensor) -> Void)? {
        get { ctx.batchNormInputObserver }
        set { ctx.batchNormInputObserver = newValue }
    }

    // MARK: - Backward

    /// Backward from dL/dlogits (N, classes): adds every trainable parameter's gradient
    /// (zero them first with `zeroGradients()`), running only the layers that lead to a
    /// trainable parameter, then releases the saved activations.
    public func backward(_ gradLogits: FloatTensor) throws {
        guard let feats = features else { throw ModelError.badInput("backward without a forward pass before it") }
        guard gradLogits.shape == [feats.shape[0], config.numClasses] else {
            throw ModelError.badInput("dLogits has shape \(Tensor.shapeString(gradLogits.shape)), the logits were "
                                      + "\(Tensor.shapeString([feats.shape[0], config.numClasses]))")
        }
        defer { releaseSaved() }
        ctx.unitsBackward = 0
        let needFeatures = ctx.trainableBefore[headIndex]
        let dFeats = linearBackward(feats, weight: store.value(required: "head.projection.weight"), gradOutput: gradLogits,
                                    gradWeight: store.gradient("head.projection.weight"),
                                    gradBias: store.gradient("head.projection.bias"), needInputGradient: needFeatures)
        guard let dFeats else { return }
        let dPooled = dropoutBackward(gradOutput: dFeats, mask: dropoutMask)
        dPooled.reshape([dPooled.shape[0], dPooled.shape[1], 1, 1, 1])
        let split = concatChannelsBackward(dPooled, channels: finalShapes.map { $0[1] })
        var g: [FloatTensor?] = zip(split, finalShapes).map { globalAvgPool3dBackward(gradOutput: $0, inputShape: $1) }
        let twoPath = config.model == .slowfast
        /// dL/dslow (concatenated) -> dL/dslow part, and the fusion's input gradient added to dL/dfast.
        func unfuse(_ i: Int) {
            guard let dCat = g[0] else { return }
            let slowChannels = fusedSlowChannels[i]
            let parts = concatChannelsBackward(dCat, channels: [slowChannels, dCat.shape[1] - slowChannels])
            g[0] = parts[0]
            if let dFast = fusions[i].backward(parts[1], ctx) {
                if let existing = g[1] {
                    let e = existing.pointer, d = dFast.pointer
                    parallelRanges(existing.count, minPerThread: 1 << 15) { range in for j in range { e[j] += d[j] } }
                } else {
                    g[1] = dFast
                }
            }
        }
        for (s, stage) in stages.enumerated().reversed() {
            if twoPath && s < 3 { unfuse(s + 1) }
            for p in (0..<config.pathways).reversed() {
                for block in stage[p].reversed() {
                    guard let grad = g[p] else { break }
                    g[p] = block.backward(grad, ctx)
                }
            }
        }
        if twoPath { unfuse(0) }
        for p in (0..<config.pathways).reversed() {
            guard let grad = g[p] else { continue }
            let dy = maxPool3dBackward(gradOutput: grad, indices: stemIndices[p], inputShape: stemShapes[p])
            _ = stems[p].backward(dy, ctx)
        }
    }

    /// Drops everything the last forward saved (also done by backward and the next forward).
    public func releaseSaved() {
        features = nil
        dropoutMask = nil
        stemIndices = []
        stemShapes = []
        fusedSlowChannels = []
        finalShapes = []
    }

    // MARK: - Parameters

    /// Sets every gradient to zero.
    public func zeroGradients() { store.zeroGradients() }

    /// Plain SGD, p -= lr * grad, over the trainable parameters (benchmarks; the
    /// optimizer with momentum and weight decay lives in Train/).
    public func sgdStep(learningRate: Float) {
        for name in store.trainableNames {
            guard let p = store.value(name), let g = store.gradient(name) else { continue }
            let pp = p.pointer, gp = g.pointer
            parallelRanges(p.count, minPerThread: 1 << 16) { range in for i in range { pp[i] -= learningRate * gp[i] } }
        }
    }

    /// The current weights in canonical names (f32; counters i64).
    public func exportWeights() -> TensorMap { store.exportWeights() }

    /// The eval-mode network (BN folded with the current running statistics) on the current weights.
    public func evalModel() throws -> SlowFastModel { try SlowFastModel(config: config, weights: exportWeights()) }

    /// Convolution (+ BN) layers whose backward ran in the last `backward` (0 for head-only training).
    public var convolutionsBackward: Int { ctx.unitsBackward }

    /// Bytes of activation memory the pool holds (its peak, since it never shrinks unless trimmed).
    public var activationBytes: Int { pool.heldBytes }
}
