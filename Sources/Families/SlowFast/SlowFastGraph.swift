// The SlowFast family's graph (SlowFast, Slow-only, 2D ResNet in 3D layout), mirroring
// PySlowFast's video_model_builder.SlowFast / ResNet and resnet_helper: per-pathway stems
// (conv, BN, ReLU, 1x3x3 max pool), res2..res5 bottleneck stages, the fast -> slow fusions
// after the stem and res2..res4 (conv_f2s, BN, ReLU, concatenated after the slow channels),
// and the head (fixed-kernel average pool per pathway, dropout, projection).

import Foundation

extension ArchConfig {
    /// The network this config describes, in PySlowFast's module registration order.
    public func graph() -> NetworkGraph {
        precondition(!model.isTransformer, "\(model.rawValue) is a transformer: its tensors are TransformerLayout(arch:)'s, it has no NetworkGraph")
        if model == .x3d { return x3dGraph() }
        var nodes: [GraphNode] = []
        let stemPool = PoolWindow(kernel: Triple(1, 3, 3), stride: Triple(1, 2, 2), padding: Triple(0, 1, 1))
        for p in 0 ..< pathways {
            let c = stemChannels(pathway: p)
            let kT = temporalKernel(stageIndex: 0, pathway: p)
            nodes.append(.unit(ConvUnit(name: "s1.pathway\(p)_stem.conv", weightShape: [c, 3, kT, 7, 7], stride: Triple(1, 2, 2),
                                        padding: Triple(kT / 2, 3, 3), norm: "s1.pathway\(p)_stem.bn", activation: .relu,
                                        profileKind: "conv stem"), lane: p))
            nodes.append(.maxPool(name: "s1.pathway\(p)_stem.pool", stemPool, lane: p))
        }
        func fuse(afterStage stage: Int) {
            guard model == .slowfast else { return }
            let fast = stageOutput(stage, pathway: 1)
            let unit = ConvUnit(name: "s\(stage)_fuse.conv_f2s", weightShape: [fast * fusionConvChannelRatio, fast, fusionKernel, 1, 1],
                                stride: Triple(alpha, 1, 1), padding: Triple(fusionKernel / 2, 0, 0),
                                norm: fusionNorm ? "s\(stage)_fuse.bn" : nil, activation: fusionNorm ? .relu : .none,
                                profileKind: "fuse/concat (conv_f2s)")
            nodes.append(.fuse(unit, from: 1, into: 0, stage: "s\(stage)_fuse"))
        }
        nodes.append(.stageEnd("s1"))
        fuse(afterStage: 1)
        for stage in 2 ... 5 {
            let blocks = stage - 2 < stageDepths.count ? stageDepths[stage - 2] : 0
            let stride = stage - 2 < spatialStrides.count ? spatialStrides[stage - 2] : 1
            for p in 0 ..< pathways {
                let inner = innerChannels(stage: stage, pathway: p)
                let dimOut = outChannels(stage: stage, pathway: p)
                let kT = temporalKernel(stageIndex: stage - 1, pathway: p)
                for i in 0 ..< blocks {
                    let name = "s\(stage).pathway\(p)_res\(i)"
                    let dimIn = i == 0 ? inChannels(stage: stage, pathway: p) : dimOut
                    let s = i == 0 ? stride : 1
                    let (strideA, strideB) = stride1x1 ? (s, 1) : (1, s)
                    // ResBlock has a projection shortcut iff channels or stride change.
                    let shortcut = dimIn != dimOut || s != 1
                        ? ConvUnit(name: name + ".branch1", weightShape: [dimOut, dimIn, 1, 1, 1], stride: Triple(1, s, s),
                                   norm: name + ".branch1_bn", activation: .none)
                        : nil
                    let a = ConvUnit(name: name + ".branch2.a", weightShape: [inner, dimIn, kT, 1, 1], stride: Triple(1, strideA, strideA),
                                     padding: Triple(kT / 2, 0, 0), norm: name + ".branch2.a_bn", activation: .relu)
                    let b = ConvUnit(name: name + ".branch2.b", weightShape: [inner, inner / max(numGroups, 1), 1, 3, 3],
                                     stride: Triple(1, strideB, strideB), padding: Triple(0, 1, 1), groups: numGroups,
                                     norm: name + ".branch2.b_bn", activation: .relu)
                    let c = ConvUnit(name: name + ".branch2.c", weightShape: [dimOut, inner, 1, 1, 1], norm: name + ".branch2.c_bn",
                                     activation: .none, zeroInitNorm: true)
                    nodes.append(.bottleneck(BottleneckBlock(name: name, a: a, b: b, c: c, shortcut: shortcut), lane: p))
                }
            }
            nodes.append(.stageEnd("s\(stage)"))
            if stage < 5 { fuse(afterStage: stage) }
        }
        let head = HeadSpec(poolKernels: headPoolKernels, hidden: nil, dropout: dropout, projection: "head.projection",
                            inputChannels: headInputChannels, classes: numClasses, activation: headActivation)
        return NetworkGraph(family: model.rawValue, inputs: graphInputs, nodes: nodes, head: head)
    }

    /// The network's inputs, one per pathway: SlowFast's slow (num_frames / alpha frames) and fast, or one
    /// `x` (every other family, transformers included), each (N, 3, frames, H, W).
    public var graphInputs: [GraphInput] {
        switch model {
        case .slowfast:
            return [GraphInput(name: "slow", frames: numFrames / max(alpha, 1), accepts2D: false),
                    GraphInput(name: "fast", frames: numFrames, accepts2D: false)]
        case .slow, .x3d, .videomae, .timesformer: return [GraphInput(name: "x", frames: numFrames, accepts2D: false)]
        case .resnet: return [GraphInput(name: "x", frames: 1, accepts2D: true)]
        }
    }

    /// The head's AvgPool3d kernel per pathway, as PySlowFast derives it from the training clip.
    public var headPoolKernels: [Triple] {
        let s = trainCrop / 32
        return graphInputs.map { Triple($0.frames, s, s) }
    }
}
