// The SlowFast / Slow-only / 2D ResNet network built from an `ArchConfig`, in
// eval mode, mirroring PySlowFast's video_model_builder.SlowFast and
// ResNet: per-pathway stems, res2..res5 bottleneck stages, fast -> slow
// fusions after the stem and res2..res4 (written straight into the channels
// after the slow pathway's, so no concatenation copies), and the head's
// fixed-kernel average pool, projection and eval activation.

import Families
import Foundation
import Formats

/// What a forward pass returns.
public struct ForwardOutput {
    /// (N, classes): the projection, averaged over the head's grid (pre-activation).
    public var logits: FloatTensor
    /// (N, classes): the eval activation (softmax or sigmoid) applied per grid position, then averaged.
    public var probabilities: FloatTensor
    /// With `capture`: "s1.pathway0", "s1.pathway1", ..., "s5.pathway1" (each stage's
    /// output per pathway before the fusion after it; s1 = after the stem max-pool) and
    /// "head.pool" (the concatenated pooled features (N, C, t, h, w)), in execution order.
    public var activations: [(name: String, value: FloatTensor)]
}

public final class SlowFastModel {
    public let config: ArchConfig
    /// Per pathway.
    let stems: [ConvLayer]
    /// [stage 0...3 = res2...res5][pathway][block].
    let stages: [[[Bottleneck]]]
    /// After the stem and res2...res4 (SlowFast only).
    let fusions: [ConvLayer]
    /// [classes, C] and [classes].
    let projectionWeight: FloatTensor, projectionBias: FloatTensor
    static let stemPool = Pool3dConfig(kernel: Size3(1, 3, 3), stride: Size3(1, 2, 2), padding: Size3(0, 1, 1))

    private let pool = BufferPool()
    private var spareWorkspaces: [Workspace] = []
    private let lock = NSLock()

    /// Builds the network, checking `weights` (canonical PySlowFast names) strictly
    /// against the config: every tensor present with its exact shape, nothing unused
    /// except `num_batches_tracked`; any float dtype. BN is folded once here.
    public init(config: ArchConfig, weights: TensorMap) throws {
        do { try config.validate() } catch { throw ModelError.invalidConfig("\(error)") }
        guard (0...1).contains(config.dropout) else { throw ModelError.invalidConfig("dropout \(config.dropout) outside [0, 1]") }
        let w = try ModelWeights(config: config, map: weights)
        self.config = config
        func bn(_ module: String) -> BatchNormFold {
            BatchNormFold(weight: w[module + ".weight"], bias: w[module + ".bias"],
                          runningMean: w[module + ".running_mean"], runningVar: w[module + ".running_var"])
        }
        func conv(_ module: String, bnModule: String?, kind: String? = nil, stride: Size3 = 1, padding: Size3 = 0,
                  groups: Int = 1) -> ConvLayer {
            let weight = w[module + ".weight"]
            let config = Conv3dConfig(stride: stride, padding: padding, groups: groups)
            return ConvLayer(name: module, kind: kind ?? Self.kind(weight.shape, config), weight: weight,
                             bn: bnModule.map(bn), config: config)
        }
        let pathways = config.pathways
        stems = (0..<pathways).map { p in
            let kT = config.temporalKernel(stageIndex: 0, pathway: p)
            return conv("s1.pathway\(p)_stem.conv", bnModule: "s1.pathway\(p)_stem.bn", kind: "conv stem",
                        stride: Size3(1, 2, 2), padding: Size3(kT / 2, 3, 3))
        }
        var stages: [[[Bottleneck]]] = []
        for stage in 2...5 {
            let stride = config.spatialStrides[stage - 2]
            stages.append((0..<pathways).map { p in
                let kT = config.temporalKernel(stageIndex: stage - 1, pathway: p)
                return (0..<config.stageDepths[stage - 2]).map { i in
                    let block = "s\(stage).pathway\(p)_res\(i)"
                    let s = i == 0 ? stride : 1
                    let (strideA, strideB) = config.stride1x1 ? (s, 1) : (1, s)
                    let hasBranch1 = weights[block + ".branch1.weight"] != nil
                    return Bottleneck(
                        name: block,
                        a: conv(block + ".branch2.a", bnModule: block + ".branch2.a_bn",
                                stride: Size3(1, strideA, strideA), padding: Size3(kT / 2, 0, 0)),
                        b: conv(block + ".branch2.b", bnModule: block + ".branch2.b_bn",
                                stride: Size3(1, strideB, strideB), padding: Size3(0, 1, 1), groups: config.numGroups),
                        c: conv(block + ".branch2.c", bnModule: block + ".branch2.c_bn"),
                        branch1: hasBranch1 ? conv(block + ".branch1", bnModule: block + ".branch1_bn",
                                                   stride: Size3(1, s, s)) : nil)
                }
            })
        }
        self.stages = stages
        fusions = config.model == .slowfast ? (1...4).map { stage in
            conv("s\(stage)_fuse.conv_f2s", bnModule: config.fusionNorm ? "s\(stage)_fuse.bn" : nil,
                 kind: "fuse/concat (conv_f2s)", stride: Size3(config.alpha, 1, 1),
                 padding: Size3(config.fusionKernel / 2, 0, 0))
        } : []
        projectionWeight = w["head.projection.weight"]
        projectionBias = w["head.projection.bias"]
    }

    /// Reads a native sfnet file (safetensors with `sfnet.arch` metadata) or any
    /// checkpoint whose tensors carry canonical names and whose metadata has `sfnet.arch`.
    public static func load(path: String) throws -> SlowFastModel {
        let checkpoint = try CheckpointReader.read(path: path)
        guard let arch = checkpoint.metadataValue("sfnet.arch") else {
            throw ModelError.missingArchitecture(path: path, reason: "the file has no sfnet.arch metadata")
        }
        let config: ArchConfig
        do { config = try ArchConfig.fromJSON(arch) } catch {
            throw ModelError.missingArchitecture(path: path, reason: "\(error)")
        }
        return try SlowFastModel(config: config, weights: checkpoint.tensors)
    }

    /// A network with seeded random weights (`randomWeights(config:seed:)`), for benchmarks and tests.
    public static func random(config: ArchConfig, seed: UInt64) -> SlowFastModel {
        do {
            return try SlowFastModel(config: config, weights: randomWeights(config: config, seed: seed))
        } catch {
            preconditionFailure("random weights do not fit their own config: \(error)")
        }
    }

    /// Profile class of a convolution from its kernel and stride.
    static func kind(_ weight: [Int], _ config: Conv3dConfig) -> String {
        let strided = config.stride.h > 1 || config.stride.w > 1 ? " strided" : ""
        switch (weight[2], weight[3], weight[4]) {
        case (1, 1, 1): return "conv 1x1x1" + strided
        case (_, 1, 1): return "conv Tx1x1" + strided
        case (1, 3, 3): return "conv 1x3x3" + strided
        case let (t, h, w): return "conv \(t)x\(h)x\(w)" + strided
        }
    }

    // MARK: - Shapes

    /// The checked shapes of one forward pass.
    struct Plan {
        /// Per pathway, as 5-D.
        var inputs: [Shape5D]
        /// Every convolution with its geometry, in execution order.
        var convs: [(layer: ConvLayer, geometry: Conv3dGeometry)] = []
        /// Per pathway: the res5 output and the head's pool kernel.
        var finals: [Shape5D] = []
        var headKernels: [Size3] = []
        /// The head's (t, h, w) grid.
        var grid = Size3(1, 1, 1)
    }

    /// The head's AvgPool3d kernel per pathway, as PySlowFast derives it from the training clip.
    public var headPoolKernels: [Size3] {
        let s = config.trainCrop / 32
        switch config.model {
        case .slowfast: return [Size3(config.numFrames / config.alpha, s, s), Size3(config.numFrames, s, s)]
        case .slow: return [Size3(config.numFrames, s, s)]
        case .resnet: return [Size3(1, s, s)]
        }
    }

    /// Validates input shapes and walks them through the network.
    func plan(_ shapes: [[Int]]) throws -> Plan {
        let names = config.pathways == 2 ? ["slow", "fast"] : ["x"]
        guard shapes.count == config.pathways else {
            throw ModelError.badInput("\(config.model.rawValue) takes \(config.pathways) input\(config.pathways == 1 ? "" : "s") "
                                      + "(\(names.joined(separator: ", "))), got \(shapes.count)")
        }
        var inputs: [Shape5D] = []
        for (p, shape) in shapes.enumerated() {
            let what = "input \(p) (\(names[p])) has shape \(Tensor.shapeString(shape))"
            if shape.count == 4 && config.model == .resnet {
                inputs.append(Shape5D(n: shape[0], c: shape[1], t: 1, h: shape[2], w: shape[3]))
            } else if shape.count == 5 {
                inputs.append(Shape5D(shape))
            } else {
                throw ModelError.badInput("\(what); expected (N, 3, T, H, W)\(config.model == .resnet ? " or (N, 3, H, W)" : "")")
            }
            guard shape.allSatisfy({ $0 >= 1 }) else { throw ModelError.badInput("\(what): every dimension must be >= 1") }
            guard inputs[p].c == 3 else { throw ModelError.badInput("\(what): expected 3 (RGB) channels in dimension 1") }
        }
        if config.pathways == 2 {
            let (slow, fast) = (inputs[0], inputs[1])
            guard slow.n == fast.n else { throw ModelError.badInput("batch sizes differ: slow \(slow.n), fast \(fast.n)") }
            guard slow.h == fast.h && slow.w == fast.w else {
                throw ModelError.badInput("spatial sizes differ: slow \(slow.h)x\(slow.w), fast \(fast.h)x\(fast.w)")
            }
            guard slow.t * config.alpha == fast.t else {
                throw ModelError.badInput("slow has \(slow.t) frames and fast \(fast.t): with alpha \(config.alpha) fast needs "
                                          + "\(slow.t * config.alpha) (slow T x alpha)")
            }
        }
        var plan = Plan(inputs: inputs)
        var x = inputs
        for p in 0..<config.pathways {
            let g = stems[p].geometry(x[p])
            plan.convs.append((stems[p], g))
            x[p] = Self.stemPool.outputShape(g.outputShape, op: "stem max pool")
        }
        func fuse(_ stage: Int) throws {
            guard config.model == .slowfast else { return }
            let g = fusions[stage - 1].geometry(x[1])
            plan.convs.append((fusions[stage - 1], g))
            guard g.output == x[0].spatial else {
                throw ModelError.badInput("fusion after s\(stage) maps fast \(x[1]) to \(g.outputShape), slow is \(x[0])")
            }
            x[0].c += g.outChannels
        }
        try fuse(1)
        for (s, stage) in stages.enumerated() {
            for p in 0..<config.pathways {
                for block in stage[p] {
                    let ga = block.a.geometry(x[p]), gb = block.b.geometry(ga.outputShape), gc = block.c.geometry(gb.outputShape)
                    if let b1 = block.branch1 { plan.convs.append((b1, b1.geometry(x[p]))) }
                    plan.convs += [(block.a, ga), (block.b, gb), (block.c, gc)]
                    x[p] = gc.outputShape
                }
            }
            if s < 3 { try fuse(s + 2) }
        }
        plan.finals = x
        plan.headKernels = headPoolKernels
        var grids: [Size3] = []
        for p in 0..<config.pathways {
            let (k, f) = (plan.headKernels[p], x[p])
            guard k.t >= 1, k.h >= 1, k.w >= 1 else {
                throw ModelError.invalidConfig("head pool kernel \(k) from num_frames \(config.numFrames) and train_crop \(config.trainCrop)")
            }
            guard k.t <= f.t, k.h <= f.h, k.w <= f.w else {
                throw ModelError.badInput("the head pools pathway \(p) with the training clip's kernel \(k) "
                    + "(num_frames \(config.numFrames), train_crop \(config.trainCrop)) but res5 gives \(f.spatial): "
                    + "input \(Tensor.shapeString(shapes[p])) is smaller than the training clip")
            }
            grids.append(Size3(f.t - k.t + 1, f.h - k.h + 1, f.w - k.w + 1))
        }
        guard grids.allSatisfy({ $0 == grids[0] }) else {
            throw ModelError.badInput("the head's pooled grids differ between pathways (\(grids.map(\.description).joined(separator: " vs "))): "
                                      + "inputs longer than the training clip do not line up")
        }
        plan.grid = grids[0]
        return plan
    }

    /// Multiply-adds of one forward pass on inputs of these shapes: every
    /// convolution's geometry plus the projection at each head grid position.
    public func multiplyAdds(forInputs shapes: [[Int]]) throws -> Int {
        let plan = try plan(shapes)
        let convs = plan.convs.reduce(0) { $0 + $1.geometry.macs }
        return convs + plan.inputs[0].n * plan.grid.product * projectionWeight.count
    }

    // MARK: - Forward

    /// Runs the network. `inputs`: one tensor per pathway (slow first), (N, 3, T, H, W);
    /// a 2D ResNet also takes (N, 3, H, W).
    public func forward(_ inputs: [FloatTensor], capture: Bool = false, profile: ForwardProfile? = nil) throws -> ForwardOutput {
        let start = DispatchTime.now().uptimeNanoseconds
        let plan = try plan(inputs.map(\.shape))
        let workspace = takeWorkspace()
        defer { giveBack(workspace) }
        var activations: [(name: String, value: FloatTensor)] = []
        func keep(_ name: String, _ a: Act) {
            if capture { timed(profile, kind: "capture (copies)", stage: "capture", layer: name) { activations.append((name, a.tensor())) } }
        }
        let twoPath = config.model == .slowfast
        var x: [Act] = zip(inputs, plan.inputs).map { Act(borrowing: $0, as: $1) }

        // The slow pathway's stage outputs live in a buffer with room for the fused channels.
        func stageOutput(_ shape: Shape5D, fused: Int) -> (full: Act, view: Act) {
            var wide = shape
            wide.c += fused
            let full = Act(pool, wide)
            return (full, full.channels(0..<shape.c))
        }
        func fuse(_ stage: Int, into full: Act) {
            let layer = fusions[stage - 1]
            let g = layer.geometry(x[1].shape)
            let target = full.channels((full.shape.c - g.outChannels)..<full.shape.c)
            timed(profile, kind: layer.kind, stage: "s\(stage)_fuse", layer: layer.name, macs: g.macs) {
                layer.run(x[1], into: target, relu: config.fusionNorm, workspace: workspace)
            }
        }

        // s1: stems and max pools.
        var slowFull: Act?
        for p in 0..<config.pathways {
            let stem = stems[p]
            let g = stem.geometry(x[p].shape)
            let y = Act(pool, g.outputShape)
            timed(profile, kind: stem.kind, stage: "s1", layer: stem.name, macs: g.macs) {
                stem.run(x[p], into: y, relu: true, workspace: workspace)
            }
            let pooledShape = Self.stemPool.outputShape(y.shape, op: "stem max pool")
            let fusedChannels = p == 0 && twoPath ? fusions[0].outChannels : 0
            let (full, view) = stageOutput(pooledShape, fused: fusedChannels)
            timed(profile, kind: "pool", stage: "s1", layer: "s1.pathway\(p)_stem.pool") {
                maxPool(y, Self.stemPool, into: view)
            }
            if p == 0 { slowFull = full }
            x[p] = view
        }
        for p in 0..<config.pathways { keep("s1.pathway\(p)", x[p]) }
        if twoPath, let full = slowFull {
            fuse(1, into: full)
            x[0] = full
        }

        // res2...res5 with fusions after res2...res4.
        for (s, stage) in stages.enumerated() {
            let name = "s\(s + 2)"
            slowFull = nil
            for p in 0..<config.pathways {
                var y = x[p]
                for (i, block) in stage[p].enumerated() {
                    var out: Act?
                    if p == 0 && twoPath && s < 3 && i == stage[p].count - 1 {
                        let gc = block.c.geometry(block.b.geometry(block.a.geometry(y.shape).outputShape).outputShape)
                        let (full, view) = stageOutput(gc.outputShape, fused: fusions[s + 1].outChannels)
                        slowFull = full
                        out = view
                    }
                    // Later blocks own their input (the previous block's output): identity shortcuts add in place.
                    y = block.run(y, into: out, inPlace: i > 0, pool: pool, workspace: workspace, profile: profile, stage: name)
                }
                x[p] = y
            }
            for p in 0..<config.pathways { keep("\(name).pathway\(p)", x[p]) }
            if s < 3, twoPath, let full = slowFull {
                fuse(s + 2, into: full)
                x[0] = full
            }
        }

        // Head: fixed-kernel average pool per pathway, concat, projection per grid position, activation, mean.
        let output = timed(profile, kind: "head", stage: "head", layer: "head") { () -> ForwardOutput in
            let n = plan.inputs[0].n, grid = plan.grid
            let channels = x.reduce(0) { $0 + $1.shape.c }
            let pooled = FloatTensor(uninitialized: [n, channels, grid.t, grid.h, grid.w])
            var offset = 0
            for p in 0..<config.pathways {
                headAvgPool(x[p], kernel: plan.headKernels[p], into: pooled, channelOffset: offset)
                offset += x[p].shape.c
            }
            if capture { activations.append(("head.pool", pooled.copy())) }
            return head(pooled)
        }
        profile?.finishPass(seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        return ForwardOutput(logits: output.logits, probabilities: output.probabilities, activations: activations)
    }

    /// Dropout (identity in eval), projection at every grid position, then the grid
    /// mean of the projection (logits) and of the activated projection (probabilities).
    func head(_ pooled: FloatTensor) -> ForwardOutput {
        let s = pooled.shape5D
        let positions = s.plane
        // (N, C, t, h, w) -> (N, t*h*w, C) rows for the projection.
        let rows = FloatTensor(uninitialized: [s.n * positions, s.c])
        for n in 0..<s.n { for c in 0..<s.c { for q in 0..<positions {
            rows.pointer[(n * positions + q) * s.c + c] = pooled.pointer[(n * s.c + c) * positions + q]
        } } }
        let projected = linearForward(dropoutForward(rows, p: Float(config.dropout)), weight: projectionWeight, bias: projectionBias)
        let activated = config.headActivation == .softmax ? softmaxForward(projected) : sigmoidForward(projected)
        let k = config.numClasses
        let logits = FloatTensor(zeros: [s.n, k]), probabilities = FloatTensor(zeros: [s.n, k])
        for n in 0..<s.n {
            for q in 0..<positions {
                for j in 0..<k {
                    logits.pointer[n * k + j] += projected.pointer[(n * positions + q) * k + j]
                    probabilities.pointer[n * k + j] += activated.pointer[(n * positions + q) * k + j]
                }
            }
            if positions > 1 {
                for j in 0..<k {
                    logits.pointer[n * k + j] /= Float(positions)
                    probabilities.pointer[n * k + j] /= Float(positions)
                }
            }
        }
        return ForwardOutput(logits: logits, probabilities: probabilities, activations: [])
    }

    private func takeWorkspace() -> Workspace {
        lock.lock()
        defer { lock.unlock() }
        return spareWorkspaces.popLast() ?? Workspace()
    }

    private func giveBack(_ workspace: Workspace) {
        lock.lock()
        spareWorkspaces.append(workspace)
        lock.unlock()
    }
}
