// X3D's graph in PySlowFast's names and registration order (video_model_builder.X3D,
// stem_helper.X3DStem, resnet_helper.X3DTransform, head_helper.X3DHead):
//   s1: conv_xy (1x3x3, stride 1x2x2, no norm) -> conv (channel-wise 5x1x1) -> bn -> ReLU
//   s2..s5: blocks of a (1x1x1) -> BN -> ReLU -> b (channel-wise 3x3x3, spatial stride on the
//           first block) -> BN -> SE (blocks 0, 2, 4, ...) -> Swish -> c (1x1x1) -> BN, with a
//           1x1x1 strided shortcut on the first block, added, ReLU
//   head: conv_5 (1x1x1) -> BN -> ReLU, average pool over the training clip, lin_5 (1x1x1,
//         no bias) -> ReLU, dropout, projection.

import Foundation

extension ArchConfig {
    func x3dGraph() -> NetworkGraph {
        let x = x3d ?? X3DConfig()
        var nodes: [GraphNode] = []
        let c1 = x.stemChannels
        let kS = x.stemTemporalKernel, kB = x.blockTemporalKernel
        nodes.append(.unit(ConvUnit(name: "s1.pathway0_stem.conv_xy", weightShape: [c1, 3, 1, 3, 3], stride: Triple(1, 2, 2),
                                    padding: Triple(0, 1, 1), norm: nil, activation: .none, profileKind: "conv stem"), lane: 0))
        nodes.append(.unit(ConvUnit(name: "s1.pathway0_stem.conv", weightShape: [c1, 1, kS, 1, 1], padding: Triple(kS / 2, 0, 0),
                                    groups: c1, norm: "s1.pathway0_stem.bn", activation: .relu, profileKind: "conv stem"), lane: 0))
        nodes.append(.stageEnd("s1"))
        var dimIn = c1
        let outs = x.stageOutChannels, inners = x.stageInnerChannels, depths = x.stageDepths
        for s in 0 ..< 4 {
            let stage = s + 2
            let (dimOut, inner) = (outs[s], inners[s])
            for i in 0 ..< depths[s] {
                let name = "s\(stage).pathway0_res\(i)"
                let blockIn = i == 0 ? dimIn : dimOut
                let stride = i == 0 ? X3DConfig.stageStrides[s] : 1
                let shortcut = blockIn != dimOut || stride != 1
                    ? ConvUnit(name: name + ".branch1", weightShape: [dimOut, blockIn, 1, 1, 1], stride: Triple(1, stride, stride),
                               norm: name + ".branch1_bn", activation: .none)
                    : nil
                let groups = x.channelwise ? inner : 1
                let a = ConvUnit(name: name + ".branch2.a", weightShape: [inner, blockIn, 1, 1, 1], norm: name + ".branch2.a_bn",
                                 activation: .relu)
                let b = ConvUnit(name: name + ".branch2.b", weightShape: [inner, inner / groups, kB, 3, 3], stride: Triple(1, stride, stride),
                                 padding: Triple(kB / 2, 1, 1), groups: groups, norm: name + ".branch2.b_bn",
                                 activation: x.swishInner ? .swish : .relu)
                let c = ConvUnit(name: name + ".branch2.c", weightShape: [dimOut, inner, 1, 1, 1], norm: name + ".branch2.c_bn",
                                 activation: .none, zeroInitNorm: true)
                let se = x.seRatio > 0 && i % 2 == 0
                    ? SqueezeExcite(name: name + ".branch2.se", channels: inner, reduced: x.seChannels(inner)) : nil
                nodes.append(.bottleneck(BottleneckBlock(name: name, a: a, b: b, c: c, shortcut: shortcut, se: se), lane: 0))
            }
            nodes.append(.stageEnd("s\(stage)"))
            dimIn = dimOut
        }
        let inner5 = inners[3]
        nodes.append(.unit(ConvUnit(name: "head.conv_5", weightShape: [inner5, dimIn, 1, 1, 1], norm: "head.conv_5_bn",
                                    activation: .relu), lane: 0))
        let spatial = Int((Double(trainCrop) / 32).rounded(.up))
        let lin5 = ConvUnit(name: "head.lin_5", weightShape: [x.dimC5, inner5, 1, 1, 1], norm: x.bnLin5 ? "head.lin_5_bn" : nil,
                            activation: .relu)
        let head = HeadSpec(poolKernels: [Triple(numFrames, spatial, spatial)], hidden: lin5, dropout: dropout,
                            projection: "head.projection", inputChannels: inner5, classes: numClasses, activation: headActivation)
        return NetworkGraph(family: model.rawValue, inputs: graphInputs, nodes: nodes, head: head)
    }
}
