// A family's network in training mode, run from its `NetworkGraph` (for SlowFast, Slow-only
// and ResNet: PySlowFast's video_model_builder in model.train()): unfolded BatchNorm
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

public final class TrainableNetwork {
    public let config: ArchConfig
    public let options: TrainOptions
    /// Parameters, gradients, BN buffers by canonical name.
    public let store: ParameterStore
    /// Activation and activation-gradient memory.
    public let pool = TensorPool()
    private let ctx: TrainContext
    /// The network's description (Families): what `nodes` were built from.
    public let graph: NetworkGraph
    /// The graph's nodes with their training layers, in execution order.
    private let nodes: [TrainNode]
    private let headIndex: Int
    private var rng: SplitMix64
    // Saved by forward for backward.
    private var finalShapes: [[Int]] = []
    private var features: FloatTensor?
    private var dropoutMask: FloatTensor?
    /// With a hidden head unit: its input (the pooled features) and its activated output.
    private var pooledFeatures: FloatTensor?, hiddenOutput: FloatTensor?
    /// Per max-pool node: the argmax indices and the input shape.
    private var poolSaved: [Int: (indices: [Int32], shape: [Int])] = [:]
    /// Per fusion node: the `into` lane's channels before the concatenation.
    private var fusedChannels: [Int: Int] = [:]

    /// A graph node with its training layers.
    private enum TrainNode {
        case unit(TrainConvUnit, lane: Int)
        case maxPool(Pool3dConfig, lane: Int)
        case bottleneck(TrainBottleneck, lane: Int)
        case fuse(TrainConvUnit, from: Int, into: Int)
        case stageEnd

        var units: [TrainConvUnit] {
            switch self {
            case let .unit(u, _), let .fuse(u, _, _): return [u]
            case let .bottleneck(block, _): return block.units
            case .maxPool, .stageEnd: return []
            }
        }
    }

    /// Builds the network from `config` and canonical `weights` (strict, as `EvalNetwork`).
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
        graph = config.graph()
        var index = 0
        func unit(_ u: ConvUnit) throws -> TrainConvUnit {
            guard u.activation != .swish else {
                throw ModelError.invalidConfig("\(u.name): Swish is supported inside residual blocks only (as X3D places it)")
            }
            defer { index += 1 }
            return TrainConvUnit(conv: u.name, bn: u.norm,
                                 config: Conv3dConfig(stride: Size3(u.stride), padding: Size3(u.padding), groups: u.groups),
                                 relu: u.activation == .relu, index: index)
        }
        var nodes: [TrainNode] = []
        for node in graph.nodes {
            switch node {
            case let .unit(u, lane): nodes.append(.unit(try unit(u), lane: lane))
            case let .maxPool(_, window, lane): nodes.append(.maxPool(Pool3dConfig(window), lane: lane))
            case let .bottleneck(block, lane):
                let b1 = try block.shortcut.map(unit)
                // With SE or Swish, b's unit stops at its norm; SE, then the activation, follow it.
                var bSpec = block.b
                let swish = bSpec.activation == .swish
                if swish || block.se != nil { bSpec.activation = .none }
                let (a, b, c) = (try unit(block.a), try unit(bSpec), try unit(block.c))
                guard block.se == nil || swish else {
                    throw ModelError.invalidConfig("\(block.name): squeeze-excitation is supported before Swish only (as X3D places it)")
                }
                nodes.append(.bottleneck(TrainBottleneck(a: a, b: b, c: c, branch1: b1, se: block.se.map { TrainSqueezeExcite(name: $0.name) },
                                                         swish: swish ? TrainSwish() : nil), lane: lane))
            case let .fuse(u, from, into, _): nodes.append(.fuse(try unit(u), from: from, into: into))
            case .stageEnd: nodes.append(.stageEnd)
            }
        }
        self.nodes = nodes
        headIndex = index
        // trainableBefore[i]: any parameter of a unit with a smaller index (or the head, last) trains.
        var trains = [Bool](repeating: false, count: index + 1)
        for u in nodes.flatMap(\.units) { trains[u.index] = u.parameterNames.contains(where: store.isTrainable) }
        // A block's squeeze-excitation sits between b and c: it counts as b's for "does anything before c train".
        for case let .bottleneck(block, _) in nodes where block.extraParameterNames.contains(where: store.isTrainable) {
            trains[block.b.index] = true
        }
        let projection = graph.head.projection
        if let hidden = graph.head.hidden, hidden.norm != nil {
            throw ModelError.invalidConfig("\(hidden.name): training a head whose hidden unit has a BatchNorm (bn_lin5) is not supported")
        }
        trains[headIndex] = store.isTrainable(projection + ".weight") || store.isTrainable(projection + ".bias")
        var before = false
        ctx.trainableBefore = trains.map { t in defer { before = before || t }; return before }
    }

    /// Reads a native sfnet file (safetensors with `sfnet.arch`).
    public static func load(path: String, options: TrainOptions = TrainOptions()) throws -> TrainableNetwork {
        let checkpoint = try CheckpointReader.read(path: path)
        let found: ArchConfig?
        do { found = try NativeMetadata.architecture(in: checkpoint) } catch { throw ModelError.missingArchitecture(path: path, reason: "\(error)") }
        guard let config = found else {
            throw ModelError.missingArchitecture(path: path, reason: "the file has no \(NativeMetadata.archKey) metadata")
        }
        return try TrainableNetwork(config: config, weights: checkpoint.tensors, options: options)
    }

    // MARK: - Shapes

    /// Checks the inputs against the training clip the head's pool was sized for:
    /// the head must pool each lane's whole trunk output to one position.
    private func validate(_ shapes: [[Int]]) throws -> [[Int]] {
        let inputs = try EvalNetwork.checkInputs(shapes, graph: graph, agreeing: false)
        var out: [[Int]] = []
        for (p, input) in inputs.enumerated() {
            let what = "input \(p) (\(graph.inputs[p].name)) has shape \(Tensor.shapeString(shapes[p]))"
            let head = graph.head.poolKernels[p]
            guard input.t == head.t else {
                throw ModelError.badInput("\(what): training needs \(head.t) frames on this pathway (the head pools the "
                                          + "training clip of num_frames \(config.numFrames))")
            }
            for (axis, length, target) in [("height", input.h, head.h), ("width", input.w, head.w)] {
                let l = trunkExtent(length, lane: p, axis: axis == "height" ? 1 : 2)
                guard l == target else {
                    throw ModelError.badInput("\(what): its \(axis) gives a trunk output extent of \(l), the head pools \(target) "
                                              + "(train_crop \(config.trainCrop)); training takes clips of the training crop size")
                }
            }
            out.append(input.array)
        }
        try EvalNetwork.checkLanesAgree(inputs, graph: graph)
        return out
    }

    /// The extent along spatial `axis` (1 = h, 2 = w) of lane `lane`'s trunk output for an input extent.
    private func trunkExtent(_ length: Int, lane: Int, axis: Int) -> Int {
        var l = length
        func through(_ u: ConvUnit) { l = windowOutputLength(l, kernel: u.kernel.array[axis], stride: u.stride.array[axis], padding: u.padding.array[axis]) }
        for node in graph.nodes {
            switch node {
            case let .unit(u, p) where p == lane: through(u)
            case let .maxPool(_, window, p) where p == lane:
                l = windowOutputLength(l, kernel: window.kernel.array[axis], stride: window.stride.array[axis], padding: window.padding.array[axis])
            case let .bottleneck(block, p) where p == lane: for u in [block.a, block.b, block.c] { through(u) }
            default: break
            }
        }
        return l
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
        var headInput = feats
        if let hidden = graph.head.hidden {
            // X3D's lin_5: a bias-free 1x1x1 conv on the one pooled position, i.e. a linear map, then ReLU.
            pooledFeatures = feats
            headInput = withMatrix(store.value(required: hidden.name + ".weight")) { linearForward(feats, weight: $0!) }
            if hidden.activation == .relu { _ = reluForward(headInput, inPlace: true) }
            hiddenOutput = headInput
        }
        let p = Float(options.dropout ?? config.dropout)
        let (dropped, mask) = dropoutForward(headInput, p: p, training: true, using: &rng)
        features = dropped
        dropoutMask = mask
        return linearForward(dropped, weight: store.value(required: graph.head.projection + ".weight"),
                             bias: store.value(required: graph.head.projection + ".bias"))
    }

    /// The graph's nodes in training mode, up to each lane's trunk output; saves what
    /// `backward` reads unless the pass is statistics-only (`ctx.keepForBackward` false).
    private func backbone(_ inputs: [FloatTensor], shapes: [[Int]]) -> [FloatTensor] {
        let keep = ctx.keepForBackward
        var x: [FloatTensor] = inputs.enumerated().map { p, input in
            input.shape == shapes[p] ? input : FloatTensor(shape: shapes[p], copying: input.pointer)
        }
        for (i, node) in nodes.enumerated() {
            switch node {
            case let .unit(u, lane): x[lane] = u.forward(x[lane], ctx)
            case let .maxPool(window, lane):
                let (pooled, indices) = maxPool3dForwardWithIndices(x[lane], window)
                if keep { poolSaved[i] = (indices, x[lane].shape) }
                x[lane] = pooled
            case let .bottleneck(block, lane): x[lane] = block.forward(x[lane], ctx)
            case let .fuse(u, from, into):
                let f = u.forward(x[from], ctx)
                if keep { fusedChannels[i] = x[into].shape[1] }
                x[into] = concatChannels([x[into], f])
            case .stageEnd: break
            }
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
        let projection = graph.head.projection
        let hidden = graph.head.hidden
        let hiddenTrains = hidden.map { store.isTrainable($0.name + ".weight") } ?? false
        let dFeats = linearBackward(feats, weight: store.value(required: projection + ".weight"), gradOutput: gradLogits,
                                    gradWeight: store.gradient(projection + ".weight"),
                                    gradBias: store.gradient(projection + ".bias"), needInputGradient: needFeatures || hiddenTrains)
        guard let dFeats else { return }
        var dPooled = dropoutBackward(gradOutput: dFeats, mask: dropoutMask)
        if let hidden, let h = hiddenOutput, let pooled = pooledFeatures {
            if hidden.activation == .relu { _ = reluBackward(output: h, gradOutput: dPooled) }
            let dIn = withMatrix(store.value(required: hidden.name + ".weight")) { w in
                withMatrix(store.gradient(hidden.name + ".weight")) { gw in
                    linearBackward(pooled, weight: w!, gradOutput: dPooled, gradWeight: gw, needInputGradient: needFeatures)
                }
            }
            guard let dIn else { return }
            dPooled = dIn
        }
        dPooled.reshape([dPooled.shape[0], dPooled.shape[1], 1, 1, 1])
        let split = concatChannelsBackward(dPooled, channels: finalShapes.map { $0[1] })
        var g: [FloatTensor?] = zip(split, finalShapes).map { globalAvgPool3dBackward(gradOutput: $0, inputShape: $1) }
        for (i, node) in nodes.enumerated().reversed() {
            switch node {
            case let .unit(u, lane):
                guard let grad = g[lane] else { continue }
                g[lane] = u.backward(grad, ctx)
            case let .maxPool(_, lane):
                guard let grad = g[lane], let saved = poolSaved[i] else { continue }
                g[lane] = maxPool3dBackward(gradOutput: grad, indices: saved.indices, inputShape: saved.shape)
            case let .bottleneck(block, lane):
                guard let grad = g[lane] else { continue }
                g[lane] = block.backward(grad, ctx)
            case let .fuse(u, from, into):
                // dL/d(concat) -> dL/d(into's part), and the fusion's input gradient added to dL/d(from).
                guard let dCat = g[into], let kept = fusedChannels[i] else { continue }
                let parts = concatChannelsBackward(dCat, channels: [kept, dCat.shape[1] - kept])
                g[into] = parts[0]
                if let dFrom = u.backward(parts[1], ctx) {
                    if let existing = g[from] {
                        let e = existing.pointer, d = dFrom.pointer
                        parallelRanges(existing.count, minPerThread: 1 << 15) { range in for j in range { e[j] += d[j] } }
                    } else {
                        g[from] = dFrom
                    }
                }
            case .stageEnd: break
            }
        }
    }

    /// A 1x1x1 weight as a [rows, cols] matrix sharing its memory, for the duration of `body`.
    private func withMatrix<R>(_ t: FloatTensor?, _ body: (FloatTensor?) -> R) -> R {
        guard let t else { return body(nil) }
        let shape = t.shape
        t.reshape([shape[0], shape[1]])
        defer { t.reshape(shape) }
        return body(t)
    }

    /// Drops everything the last forward saved (also done by backward and the next forward).
    public func releaseSaved() {
        pooledFeatures = nil
        hiddenOutput = nil
        features = nil
        dropoutMask = nil
        poolSaved = [:]
        fusedChannels = [:]
        finalShapes = []
    }

    // MARK: - Parameters

    /// Sets every gradient to zero.
    public func zeroGradients() { store.zeroGradients() }

    /// Restarts the head dropout's generator (see `TrainableClipNetwork.reseed`).
    public func reseed(_ seed: UInt64) { rng = SplitMix64(seed: seed) }

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
    public func evalModel() throws -> EvalNetwork { try EvalNetwork(config: config, weights: exportWeights()) }

    /// Convolution (+ BN) layers whose backward ran in the last `backward` (0 for head-only training).
    public var convolutionsBackward: Int { ctx.unitsBackward }

    /// Bytes of activation memory the pool holds (its peak, since it never shrinks unless trimmed).
    public var activationBytes: Int { pool.heldBytes }
}
