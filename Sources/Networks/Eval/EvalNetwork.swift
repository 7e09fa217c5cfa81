// A family's network in eval mode, run from its `NetworkGraph`: each convolution unit with
// its BatchNorm folded in and a fused bias/residual/ReLU epilogue, residual blocks that add
// their identity shortcut in place, fusions written straight into the channels after the lane
// they join (the node before reserves them, so no concatenation copies), and the head's
// fixed-kernel average pool, projection per grid position and eval activation. Activation
// buffers come from a recycling pool.

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

/// The eval-mode executor of a network graph.
public final class EvalNetwork {
    public let config: ArchConfig
    /// The network's description (Families): what `nodes` were built from.
    public let graph: NetworkGraph
    /// The graph's nodes with their layers (BN folded), in execution order.
    let nodes: [EvalNode]
    /// Per node: channels a fusion later appends to the lane this node writes, so that the node
    /// writes into the first channels of a wider buffer and the fusion fills the rest (no concat copy).
    let reserved: [Int]
    /// [classes, C] and [classes].
    let projectionWeight: FloatTensor, projectionBias: FloatTensor
    /// The head's hidden unit on the pooled grid (X3D's lin_5) as a linear map, BN folded: [D, C], [D], ReLU.
    let headHidden: (weight: FloatTensor, bias: FloatTensor?, relu: Bool)?

    private let pool = BufferPool()
    private var spareWorkspaces: [Workspace] = []
    private let lock = NSLock()

    /// A graph node with its layers.
    enum EvalNode {
        case unit(ConvLayer, relu: Bool, lane: Int)
        case maxPool(name: String, Pool3dConfig, lane: Int)
        case bottleneck(Bottleneck, lane: Int)
        case fuse(ConvLayer, relu: Bool, from: Int, into: Int, stage: String)
        case stageEnd(String)
    }

    /// Builds the network, checking `weights` (canonical names) strictly against the config's
    /// graph: every tensor present with its exact shape, nothing unused except
    /// `num_batches_tracked`; any float dtype. BN is folded once here.
    public init(config: ArchConfig, weights: TensorMap) throws {
        do { try config.validate() } catch { throw ModelError.invalidConfig("\(error)") }
        guard (0...1).contains(config.dropout) else { throw ModelError.invalidConfig("dropout \(config.dropout) outside [0, 1]") }
        let w = try ModelWeights(config: config, map: weights)
        self.config = config
        graph = config.graph()
        func layer(_ u: ConvUnit) throws -> ConvLayer {
            guard u.activation != .swish else {
                throw ModelError.invalidConfig("\(u.name): Swish is supported inside residual blocks only (as X3D places it)")
            }
            let weight = w[u.name + ".weight"]
            let conv = Conv3dConfig(stride: Size3(u.stride), padding: Size3(u.padding), groups: u.groups)
            let bn = u.norm.map { m in
                BatchNormFold(weight: w[m + ".weight"], bias: w[m + ".bias"], runningMean: w[m + ".running_mean"],
                              runningVar: w[m + ".running_var"])
            }
            return ConvLayer(name: u.name, kind: u.profileKind ?? Self.kind(weight.shape, conv), weight: weight, bn: bn, config: conv)
        }
        var nodes: [EvalNode] = []
        var reserved = [Int](repeating: 0, count: graph.nodes.count)
        var lastWriter = [Int?](repeating: nil, count: graph.lanes)
        for (i, node) in graph.nodes.enumerated() {
            switch node {
            case let .unit(u, lane):
                nodes.append(.unit(try layer(u), relu: u.activation == .relu, lane: lane))
                lastWriter[lane] = i
            case let .maxPool(name, window, lane):
                nodes.append(.maxPool(name: name, Pool3dConfig(window), lane: lane))
                lastWriter[lane] = i
            case let .bottleneck(block, lane):
                guard block.b.activation != .none else {
                    throw ModelError.invalidConfig("\(block.name): a residual block's 3x3 without an activation is not supported")
                }
                var b = block.b
                b.activation = .none
                var evalBlock = Bottleneck(name: block.name, a: try layer(block.a), b: try layer(b), c: try layer(block.c),
                                           branch1: try block.shortcut.map(layer))
                evalBlock.bActivation = block.b.activation == .swish ? .swish : .relu
                evalBlock.se = block.se.map { se in
                    EvalSqueezeExcite(name: se.name, fc1Weight: w[se.name + ".fc1.weight"], fc1Bias: w[se.name + ".fc1.bias"],
                                      fc2Weight: w[se.name + ".fc2.weight"], fc2Bias: w[se.name + ".fc2.bias"])
                }
                nodes.append(.bottleneck(evalBlock, lane: lane))
                lastWriter[lane] = i
            case let .fuse(u, from, into, stage):
                nodes.append(.fuse(try layer(u), relu: u.activation == .relu, from: from, into: into, stage: stage))
                if let writer = lastWriter[into] { reserved[writer] += u.outChannels }
                lastWriter[into] = nil
            case let .stageEnd(name):
                nodes.append(.stageEnd(name))
            }
        }
        self.nodes = nodes
        self.reserved = reserved
        projectionWeight = w[graph.head.projection + ".weight"]
        projectionBias = w[graph.head.projection + ".bias"]
        if let hidden = graph.head.hidden {
            // A 1x1x1 unit on the pooled grid (X3D's lin_5): a linear map, its BN folded into weight and bias.
            let weight = w[hidden.name + ".weight"]
            let (o, c) = (weight.shape[0], weight.shape[1])
            let matrix = FloatTensor(shape: [o, c], copying: weight.pointer)
            var bias: FloatTensor?
            if let norm = hidden.norm {
                let fold = BatchNormFold(weight: w[norm + ".weight"], bias: w[norm + ".bias"], runningMean: w[norm + ".running_mean"],
                                         runningVar: w[norm + ".running_var"])
                for i in 0..<o { for j in 0..<c { matrix.pointer[i * c + j] *= fold.scale.pointer[i] } }
                bias = fold.shift
            }
            headHidden = (matrix, bias, hidden.activation == .relu)
        } else {
            headHidden = nil
        }
    }

    /// Reads a native sfnet file (safetensors with `sfnet.arch` metadata) or any
    /// checkpoint whose tensors carry canonical names and whose metadata has `sfnet.arch`.
    public static func load(path: String) throws -> EvalNetwork {
        let checkpoint = try CheckpointReader.read(path: path)
        let found: ArchConfig?
        do { found = try NativeMetadata.architecture(in: checkpoint) } catch { throw ModelError.missingArchitecture(path: path, reason: "\(error)") }
        guard let config = found else {
            throw ModelError.missingArchitecture(path: path, reason: "the file has no \(NativeMetadata.archKey) metadata")
        }
        return try EvalNetwork(config: config, weights: checkpoint.tensors)
    }

    /// A network with seeded random weights (`randomWeights(config:seed:)`), for benchmarks and tests.
    public static func random(config: ArchConfig, seed: UInt64) -> EvalNetwork {
        do {
            return try EvalNetwork(config: config, weights: randomWeights(config: config, seed: seed))
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
        /// Per lane, as 5-D.
        var inputs: [Shape5D]
        /// Every convolution with its geometry, in execution order.
        var convs: [(layer: ConvLayer, geometry: Conv3dGeometry)] = []
        /// Per lane: the trunk's output and the head's pool kernel.
        var finals: [Shape5D] = []
        var headKernels: [Size3] = []
        /// The head's (t, h, w) grid.
        var grid = Size3(1, 1, 1)
    }

    /// The head's AvgPool3d kernel per pathway, as PySlowFast derives it from the training clip.
    public var headPoolKernels: [Size3] { graph.head.poolKernels.map(Size3.init) }

    /// Validates input shapes (against the graph's inputs) and walks them through the network.
    func plan(_ shapes: [[Int]]) throws -> Plan {
        let inputs = try Self.checkInputs(shapes, graph: graph)
        var plan = Plan(inputs: inputs)
        var x = inputs
        for node in nodes {
            switch node {
            case let .unit(layer, _, lane):
                let g = layer.geometry(x[lane])
                plan.convs.append((layer, g))
                x[lane] = g.outputShape
            case let .maxPool(name, window, lane):
                x[lane] = window.outputShape(x[lane], op: name)
            case let .bottleneck(block, lane):
                let ga = block.a.geometry(x[lane]), gb = block.b.geometry(ga.outputShape), gc = block.c.geometry(gb.outputShape)
                if let b1 = block.branch1 { plan.convs.append((b1, b1.geometry(x[lane]))) }
                plan.convs += [(block.a, ga), (block.b, gb), (block.c, gc)]
                x[lane] = gc.outputShape
            case let .fuse(layer, _, from, into, stage):
                let g = layer.geometry(x[from])
                plan.convs.append((layer, g))
                guard g.output == x[into].spatial else {
                    throw ModelError.badInput("fusion \(stage) maps \(graph.inputs[from].name) \(x[from]) to \(g.outputShape), "
                                              + "\(graph.inputs[into].name) is \(x[into])")
                }
                x[into].c += g.outChannels
            case .stageEnd:
                break
            }
        }
        plan.finals = x
        plan.headKernels = headPoolKernels
        var grids: [Size3] = []
        for lane in 0..<graph.lanes {
            let (k, f) = (plan.headKernels[lane], x[lane])
            guard k.t >= 1, k.h >= 1, k.w >= 1 else {
                throw ModelError.invalidConfig("head pool kernel \(k) from num_frames \(config.numFrames) and train_crop \(config.trainCrop)")
            }
            guard k.t <= f.t, k.h <= f.h, k.w <= f.w else {
                throw ModelError.badInput("the head pools pathway \(lane) with the training clip's kernel \(k) "
                    + "(num_frames \(config.numFrames), train_crop \(config.trainCrop)) but the trunk gives \(f.spatial): "
                    + "input \(Tensor.shapeString(shapes[lane])) is smaller than the training clip")
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

    /// The graph's inputs checked against `shapes`: one per lane, (N, 3, T, H, W) (or (N, 3, H, W) where
    /// the lane takes 2D input), equal batch and spatial sizes, and each lane's frames in the ratio of
    /// the training clip's (SlowFast: fast = slow x alpha).
    static func checkInputs(_ shapes: [[Int]], graph: NetworkGraph, agreeing: Bool = true) throws -> [Shape5D] {
        let names = graph.inputs.map(\.name)
        guard shapes.count == graph.lanes else {
            throw ModelError.badInput("\(graph.family) takes \(graph.lanes) input\(graph.lanes == 1 ? "" : "s") "
                                      + "(\(names.joined(separator: ", "))), got \(shapes.count)")
        }
        var inputs: [Shape5D] = []
        for (p, shape) in shapes.enumerated() {
            let what = "input \(p) (\(names[p])) has shape \(Tensor.shapeString(shape))"
            let accepts2D = graph.inputs[p].accepts2D
            if shape.count == 4 && accepts2D {
                inputs.append(Shape5D(n: shape[0], c: shape[1], t: 1, h: shape[2], w: shape[3]))
            } else if shape.count == 5 {
                inputs.append(Shape5D(shape))
            } else {
                throw ModelError.badInput("\(what); expected (N, 3, T, H, W)\(accepts2D ? " or (N, 3, H, W)" : "")")
            }
            guard shape.allSatisfy({ $0 >= 1 }) else { throw ModelError.badInput("\(what): every dimension must be >= 1") }
            guard inputs[p].c == 3 else { throw ModelError.badInput("\(what): expected 3 (RGB) channels in dimension 1") }
        }
        if agreeing { try checkLanesAgree(inputs, graph: graph) }
        return inputs
    }

    /// Equal batch and spatial sizes on every lane, and frames in the ratio of the training clip's.
    static func checkLanesAgree(_ inputs: [Shape5D], graph: NetworkGraph) throws {
        let names = graph.inputs.map(\.name)
        for p in 1..<max(1, inputs.count) {
            let (first, other) = (inputs[0], inputs[p])
            guard first.n == other.n else {
                throw ModelError.badInput("batch sizes differ: \(names[0]) \(first.n), \(names[p]) \(other.n)")
            }
            guard first.h == other.h && first.w == other.w else {
                throw ModelError.badInput("spatial sizes differ: \(names[0]) \(first.h)x\(first.w), \(names[p]) \(other.h)x\(other.w)")
            }
            let (f0, fp) = (graph.inputs[0].frames, graph.inputs[p].frames)
            guard first.t * fp == other.t * f0 else {
                let ratio = fp / max(f0, 1)
                throw ModelError.badInput("\(names[0]) has \(first.t) frames and \(names[p]) \(other.t): with alpha \(ratio) "
                                          + "\(names[p]) needs \(first.t * ratio) (\(names[0]) T x alpha)")
            }
        }
    }

    /// Multiply-adds of one forward pass on inputs of these shapes: every
    /// convolution's geometry plus the projection at each head grid position.
    public func multiplyAdds(forInputs shapes: [[Int]]) throws -> Int {
        let plan = try plan(shapes)
        let convs = plan.convs.reduce(0) { $0 + $1.geometry.macs }
        let head = projectionWeight.count + (headHidden?.weight.count ?? 0)
        return convs + plan.inputs[0].n * plan.grid.product * head
    }

    // MARK: - Forward

    /// Runs the network. `inputs`: one tensor per lane (the graph's input order: SlowFast's slow
    /// first), (N, 3, T, H, W); a 2D ResNet also takes (N, 3, H, W).
    public func forward(_ inputs: [FloatTensor], capture: Bool = false, profile: ForwardProfile? = nil) throws -> ForwardOutput {
        let start = DispatchTime.now().uptimeNanoseconds
        let plan = try plan(inputs.map(\.shape))
        let workspace = takeWorkspace()
        defer { giveBack(workspace) }
        var activations: [(name: String, value: FloatTensor)] = []
        var x: [Act] = zip(inputs, plan.inputs).map { Act(borrowing: $0, as: $1) }
        /// Per lane: the wide buffer the lane's value is the first channels of (a fusion fills the rest).
        var wide = [Act?](repeating: nil, count: x.count)
        /// Per lane: the value is a whole buffer no one else reads, so a residual block may add onto it.
        var owned = [Bool](repeating: false, count: x.count)
        var stage = "s1"

        /// Node `i`'s output buffer: plain, or the first channels of a wider one.
        func output(_ i: Int, _ shape: Shape5D) -> (value: Act, full: Act?) {
            guard reserved[i] > 0 else { return (Act(pool, shape), nil) }
            var wider = shape
            wider.c += reserved[i]
            let full = Act(pool, wider)
            return (full.channels(0..<shape.c), full)
        }

        for (i, node) in nodes.enumerated() {
            switch node {
            case let .unit(layer, relu, lane):
                let g = layer.geometry(x[lane].shape)
                let (y, full) = output(i, g.outputShape)
                timed(profile, kind: layer.kind, stage: stage, layer: layer.name, macs: g.macs) {
                    layer.run(x[lane], into: y, relu: relu, workspace: workspace)
                }
                (x[lane], wide[lane], owned[lane]) = (y, full, false)
            case let .maxPool(name, window, lane):
                let (y, full) = output(i, window.outputShape(x[lane].shape, op: name))
                timed(profile, kind: "pool", stage: stage, layer: name) { maxPool(x[lane], window, into: y) }
                (x[lane], wide[lane], owned[lane]) = (y, full, false)
            case let .bottleneck(block, lane):
                var out: Act?, full: Act?
                if reserved[i] > 0 {
                    let a = block.a.geometry(x[lane].shape)
                    let shape = block.c.geometry(block.b.geometry(a.outputShape).outputShape).outputShape
                    (out, full) = output(i, shape)
                }
                // A block whose input no one else reads (the previous block's output) adds its identity shortcut in place.
                x[lane] = block.run(x[lane], into: out, inPlace: owned[lane], pool: pool, workspace: workspace, profile: profile, stage: stage)
                (wide[lane], owned[lane]) = (full, out == nil)
            case let .fuse(layer, relu, from, into, name):
                let g = layer.geometry(x[from].shape)
                let target: Act
                if let full = wide[into] {
                    target = full.channels((full.shape.c - g.outChannels)..<full.shape.c)
                    x[into] = full
                } else {
                    // No node reserved the channels (the lane's value is an input or another fusion's): concatenate.
                    var shape = x[into].shape
                    shape.c += g.outChannels
                    let joined = Act(pool, shape)
                    copyChannels(x[into], into: joined.channels(0..<x[into].shape.c))
                    target = joined.channels(x[into].shape.c..<shape.c)
                    x[into] = joined
                }
                timed(profile, kind: layer.kind, stage: name, layer: layer.name, macs: g.macs) {
                    layer.run(x[from], into: target, relu: relu, workspace: workspace)
                }
                (wide[into], owned[into]) = (nil, false)
            case let .stageEnd(name):
                if capture {
                    for lane in x.indices {
                        timed(profile, kind: "capture (copies)", stage: "capture", layer: "\(name).pathway\(lane)") {
                            activations.append(("\(name).pathway\(lane)", x[lane].tensor()))
                        }
                    }
                }
                stage = Self.stage(after: name)
            }
        }

        // Head: fixed-kernel average pool per lane, concat, projection per grid position, activation, mean.
        let output = timed(profile, kind: "head", stage: "head", layer: "head") { () -> ForwardOutput in
            let n = plan.inputs[0].n, grid = plan.grid
            let channels = x.reduce(0) { $0 + $1.shape.c }
            let pooled = FloatTensor(uninitialized: [n, channels, grid.t, grid.h, grid.w])
            var offset = 0
            for lane in x.indices {
                headAvgPool(x[lane], kernel: plan.headKernels[lane], into: pooled, channelOffset: offset)
                offset += x[lane].shape.c
            }
            if capture { activations.append(("head.pool", pooled.copy())) }
            return head(pooled)
        }
        profile?.finishPass(seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        return ForwardOutput(logits: output.logits, probabilities: output.probabilities, activations: activations)
    }

    /// The profile's stage name of the nodes after stage end `name` ("s1" -> "s2"; others kept).
    static func stage(after name: String) -> String {
        guard name.hasPrefix("s"), let k = Int(name.dropFirst()) else { return name }
        return "s\(k + 1)"
    }

    /// What the projection reads for pooled features (N, C, t, h, w): rows (N * t*h*w, D) in (n, position) order,
    /// the pooled channels or, with a hidden unit (X3D's lin_5), its output after BN (folded) and ReLU.
    public func projectionInputs(_ pooled: FloatTensor) -> FloatTensor {
        let s = pooled.shape5D
        let positions = s.plane
        // (N, C, t, h, w) -> (N, t*h*w, C) rows for the projection.
        let rows = FloatTensor(uninitialized: [s.n * positions, s.c])
        for n in 0..<s.n { for c in 0..<s.c { for q in 0..<positions {
            rows.pointer[(n * positions + q) * s.c + c] = pooled.pointer[(n * s.c + c) * positions + q]
        } } }
        guard let hidden = headHidden else { return rows }
        let features = linearForward(rows, weight: hidden.weight, bias: hidden.bias)
        if hidden.relu { _ = reluForward(features, inPlace: true) }
        return features
    }

    /// Dropout (identity in eval), projection at every grid position, then the grid
    /// mean of the projection (logits) and of the activated projection (probabilities).
    func head(_ pooled: FloatTensor) -> ForwardOutput {
        let s = pooled.shape5D
        let positions = s.plane
        let features = projectionInputs(pooled)
        let projected = linearForward(dropoutForward(features, p: Float(config.dropout)), weight: projectionWeight, bias: projectionBias)
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
