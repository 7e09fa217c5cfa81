// X3D's exports beyond its canonical (PySlowFast) names:
//   pytorchvideo: create_x3d's state_dict (blocks.0 stem as Conv2plus1d, blocks.1..4 res stages with
//     norm_b = Sequential(BN, SE or Identity): norm_b.0, norm_b.1.block.0|2; blocks.5 ProjectedPool + proj). Its
//     create_x3d_res_block gives a shortcut a BN only when the channels change, so the BN PySlowFast has
//     on a stride-only shortcut (X3D's first res2 block) must be the identity, or fold into the conv.
//   mmaction2: the X3D backbone (ConvModules conv1_s, conv1_t, layerN.i.conv1..3 / downsample /
//     se_module, conv5) and X3DHead (fc1 = lin_5 as a Linear of 2048, fc2 = projection), as read
//     from mmaction/models/backbones/x3d.py and heads/x3d_head.py.
// What the target's builder cannot build is refused before anything is written.

import Families
import Foundation
import Formats

enum X3DExport {
    /// BatchNorm epsilon of PySlowFast, pytorchvideo and mmaction2 (and sfnet's BN).
    static let bnEps = 1e-5

    /// Throws when `target`'s X3D builder cannot build `arch` under its names.
    static func checkExpressible(_ arch: ArchConfig, _ target: ExportTarget) throws {
        let x = arch.x3d ?? X3DConfig()
        func refuse(_ reason: String) -> ExportError {
            .notExpressible(target, reason: reason, hint: "export to pyslowfast (X3D's canonical names) or to onnx")
        }
        switch target {
        case .pyslowfast:
            return
        case .pytorchvideo:
            if !x.channelwise { throw refuse("pytorchvideo's create_x3d always makes the 3x3x3 convolutions channel-wise; these weights have full ones") }
            if x.scaleRes2 { throw refuse("pytorchvideo's create_x3d has no SCALE_RES2 (its res2 width is the stem's input width times the width factor)") }
        case .mmaction2:
            let stem = x.stemChannels
            if x.stageOutChannels != (0 ..< 4).map({ stem << $0 }) {
                throw refuse("mmaction2's X3D widths are the stem's doubled per stage (base_channels x 2^i); these are stem \(stem), stages \(x.stageOutChannels)")
            }
            if X3DConfig.roundWidth(24, mmaction2GammaW(x)) != stem {
                throw refuse("no gamma_w makes mmaction2's round_width(24, gamma_w) the stem width \(stem)")
            }
            if x.dimC5 != 2048 { throw refuse("mmaction2's X3DHead has a hidden layer (fc1) of 2048, these weights' lin_5 has \(x.dimC5)") }
            if x.bnLin5 { throw refuse("mmaction2's X3DHead has no BatchNorm after fc1 (lin_5); these weights have head.lin_5_bn") }
            if !x.channelwise { throw refuse("mmaction2's BlockX3D always makes conv2 channel-wise; these weights have full 3x3x3 convolutions") }
            if !x.swishInner { throw refuse("mmaction2's BlockX3D always applies Swish after the 3x3x3 (and SE); these weights use ReLU there") }
            if x.stemTemporalKernel != 5 || x.blockTemporalKernel != 3 {
                throw refuse("mmaction2's X3D has a 5x1x1 stem and 3x3x3 block kernels; these weights have \(x.stemTemporalKernel) and \(x.blockTemporalKernel)")
            }
        }
    }

    /// mmaction2's gamma_w for these widths: base_channels = round_width(24, gamma_w) is the stem width.
    static func mmaction2GammaW(_ x: X3DConfig) -> Double { Double(x.stemChannels) / 24 }

    /// The tensors as `target`'s model holds them, with what was done. pytorchvideo: the BN of a shortcut
    /// whose channels do not change is dropped when it is the identity and folded into the shortcut conv
    /// when it only scales; anything else is refused. mmaction2: lin_5 becomes fc1's [2048, C] matrix.
    static func adapt(_ tensors: TensorMap, arch: ArchConfig, target: ExportTarget) throws -> (TensorMap, [String]) {
        var out = tensors
        var notes: [String] = []
        switch target {
        case .pyslowfast:
            break
        case .pytorchvideo:
            for node in arch.graph().nodes {
                guard case let .bottleneck(block, _) = node, let shortcut = block.shortcut, let bn = shortcut.norm,
                      shortcut.weightShape[0] == shortcut.weightShape[1] else { continue }
                let fields = ["weight", "bias", "running_mean", "running_var"].map { tensors["\(bn).\($0)"]!.floats() }
                let (w, b, mean, variance) = (fields[0], fields[1], fields[2], fields[3])
                let scale = (0 ..< w.count).map { w[$0] / (variance[$0] + Float(bnEps)).squareRoot() }
                let channels = "\(shortcut.weightShape[1]) -> \(shortcut.weightShape[0]) channels, stride \(shortcut.stride.h)"
                for field in ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"] { out.remove("\(bn).\(field)") }
                if b.allSatisfy({ $0 == 0 }) && mean.allSatisfy({ $0 == 0 }) && scale.allSatisfy({ $0 == 1 }) {
                    notes.append("\(bn) left out: it is the identity (weight / sqrt(running_var + eps) = 1, bias 0, running_mean 0), "
                        + "and pytorchvideo's X3D has no BN on this shortcut (\(channels))")
                } else if b.allSatisfy({ $0 == 0 }) && mean.allSatisfy({ $0 == 0 }) && scale.allSatisfy({ $0.isFinite }) {
                    let name = shortcut.name + ".weight"
                    out.set(name, scaleRows(tensors[name]!, by: (0 ..< w.count).map { Double(w[$0]) / (Double(variance[$0]) + bnEps).squareRoot() }))
                    notes.append("\(bn) folded into \(name) (its bias and running_mean are 0, so it only scales each channel, by "
                        + String(format: "%.6g...%.6g", scale.min()!, scale.max()!) + "): pytorchvideo's X3D has no BN on this shortcut "
                        + "(\(channels)); the export computes the same function up to float32 rounding, and converting it back gives an "
                        + "identity BN beside the scaled weights, not these tensors")
                } else {
                    throw ExportError.notExpressible(target,
                        reason: "pytorchvideo's X3D has no BatchNorm on the shortcut of \(block.name) (\(channels)), and these weights' \(bn) "
                            + "is not the identity: " + describe(bias: b, mean: mean, scale: scale)
                            + "; its shift (bias - running_mean x scale) has no place in pytorchvideo's bias-free shortcut conv",
                        hint: "export to pyslowfast (PySlowFast's X3D has this BN), or to onnx; weights converted from pytorchvideo keep it "
                            + "the identity unless training changes it (fine-tune with --freeze-bn-stats and --freeze '\(bn).*')")
                }
            }
        case .mmaction2:
            let name = "head.lin_5.weight"
            if var t = tensors[name], t.shape.count == 5 {
                t.shape = Array(t.shape.prefix(2))
                out.set(name, t)
                notes.append("head.lin_5.weight \(Tensor.shapeString(tensors[name]!.shape)) written as X3DHead's fc1 Linear \(Tensor.shapeString(t.shape))")
            }
        }
        return (out, notes)
    }

    /// "bias in [a, b], running_mean in [c, d], weight / sqrt(running_var + eps) in [e, f]" for the fields that break the identity.
    private static func describe(bias: [Float], mean: [Float], scale: [Float]) -> String {
        func range(_ v: [Float]) -> String { String(format: "[%.4g, %.4g]", v.min() ?? 0, v.max() ?? 0) }
        var parts: [String] = []
        if !bias.allSatisfy({ $0 == 0 }) { parts.append("bias in \(range(bias))") }
        if !mean.allSatisfy({ $0 == 0 }) { parts.append("running_mean in \(range(mean))") }
        if !scale.allSatisfy({ $0 == 1 }) { parts.append("weight / sqrt(running_var + eps) in \(range(scale))") }
        return parts.joined(separator: ", ")
    }

    /// `t` ([out, ...], any float dtype) with row o multiplied by `factors[o]`, as f32.
    private static func scaleRows(_ t: Tensor, by factors: [Double]) -> Tensor {
        let values = t.floats()
        let per = values.count / max(1, t.shape[0])
        let buffer = OwnedBuffer(count: values.count * 4)
        let p = buffer.pointer.bindMemory(to: Float.self, capacity: max(1, values.count))
        for i in 0 ..< values.count { p[i] = Float(Double(values[i]) * factors[i / per]) }
        #if _endian(big)
        for i in 0 ..< values.count { p[i] = Float(bitPattern: p[i].bitPattern.littleEndian) }
        #endif
        return Tensor(dtype: .f32, shape: t.shape, data: buffer.bytes)
    }

    /// The table that renames canonical X3D keys into `target`'s names.
    static func keyMap(_ target: ExportTarget) -> KeyMap {
        switch target {
        case .pyslowfast: return .pyslowfast
        case .pytorchvideo: return pytorchvideo
        case .mmaction2: return mmaction2
        }
    }

    static let pytorchvideoStem: [KeyRule] = [
        KeyRule(#"^s1\.pathway0_stem\.conv_xy\."#, "blocks.0.conv.conv_t."),                     // s1.pathway0_stem.conv_xy.weight -> blocks.0.conv.conv_t.weight
        KeyRule(#"^s1\.pathway0_stem\.conv\."#, "blocks.0.conv.conv_xy."),                       // s1.pathway0_stem.conv.weight -> blocks.0.conv.conv_xy.weight
        KeyRule(#"^s1\.pathway0_stem\.bn\."#, "blocks.0.norm."),                                 // s1.pathway0_stem.bn.running_var -> blocks.0.norm.running_var
        KeyRule(#"^s2\.pathway0_res(\d+)\."#, "blocks.1.res_blocks.$1."),                        // s2.pathway0_res0.branch1.weight -> blocks.1.res_blocks.0.branch1.weight
        KeyRule(#"^s3\.pathway0_res(\d+)\."#, "blocks.2.res_blocks.$1."),                        // s3.pathway0_res1.branch2.a.weight -> blocks.2.res_blocks.1.branch2.a.weight
        KeyRule(#"^s4\.pathway0_res(\d+)\."#, "blocks.3.res_blocks.$1."),                        // s4.pathway0_res4.branch2.se.fc1.bias -> blocks.3.res_blocks.4.branch2.se.fc1.bias
        KeyRule(#"^s5\.pathway0_res(\d+)\."#, "blocks.4.res_blocks.$1."),                        // s5.pathway0_res2.branch2.c_bn.weight -> blocks.4.res_blocks.2.branch2.c_bn.weight
        KeyRule(#"(res_blocks\.\d+)\.branch2\.se\.fc1\."#, "$1.branch2.norm_b.1.block.0."),      // blocks.1.res_blocks.0.branch2.se.fc1.weight -> blocks.1.res_blocks.0.branch2.norm_b.1.block.0.weight
        KeyRule(#"(res_blocks\.\d+)\.branch2\.se\.fc2\."#, "$1.branch2.norm_b.1.block.2."),      // blocks.3.res_blocks.2.branch2.se.fc2.bias -> blocks.3.res_blocks.2.branch2.norm_b.1.block.2.bias
    ]

    static let pytorchvideoHead: [KeyRule] = [
        KeyRule(#"^head\.conv_5\."#, "blocks.5.pool.pre_conv."),                                 // head.conv_5.weight -> blocks.5.pool.pre_conv.weight
        KeyRule(#"^head\.conv_5_bn\."#, "blocks.5.pool.pre_norm."),                              // head.conv_5_bn.running_mean -> blocks.5.pool.pre_norm.running_mean
        KeyRule(#"^head\.lin_5\."#, "blocks.5.pool.post_conv."),                                 // head.lin_5.weight -> blocks.5.pool.post_conv.weight
        KeyRule(#"^head\.lin_5_bn\."#, "blocks.5.pool.post_norm."),                              // head.lin_5_bn.bias -> blocks.5.pool.post_norm.bias
        KeyRule(#"^head\.projection\."#, "blocks.5.proj."),                                      // head.projection.weight -> blocks.5.proj.weight
    ]

    /// pytorchvideo `create_x3d`: norm_b is Sequential(BN, SE or Identity) on every block.
    static let pytorchvideo = KeyMap(pytorchvideoStem + [
        KeyRule(#"(res_blocks\.\d+)\.branch2\.b_bn\."#, "$1.branch2.norm_b.0."),               // blocks.2.res_blocks.1.branch2.b_bn.weight -> blocks.2.res_blocks.1.branch2.norm_b.0.weight
    ] + ExportNames.pytorchvideoBlock + pytorchvideoHead)

    /// mmaction2 `X3D` backbone + `X3DHead` (Recognizer3D: backbone.*, cls_head.*).
    static let mmaction2 = KeyMap([
        KeyRule(#"^s1\.pathway0_stem\.conv_xy\."#, "backbone.conv1_s.conv."),                    // s1.pathway0_stem.conv_xy.weight -> backbone.conv1_s.conv.weight
        KeyRule(#"^s1\.pathway0_stem\.conv\."#, "backbone.conv1_t.conv."),                       // s1.pathway0_stem.conv.weight -> backbone.conv1_t.conv.weight
        KeyRule(#"^s1\.pathway0_stem\.bn\."#, "backbone.conv1_t.bn."),                           // s1.pathway0_stem.bn.running_mean -> backbone.conv1_t.bn.running_mean
        KeyRule(#"^head\.conv_5\."#, "backbone.conv5.conv."),                                    // head.conv_5.weight -> backbone.conv5.conv.weight
        KeyRule(#"^head\.conv_5_bn\."#, "backbone.conv5.bn."),                                   // head.conv_5_bn.weight -> backbone.conv5.bn.weight
        KeyRule(#"^head\.lin_5\."#, "cls_head.fc1."),                                            // head.lin_5.weight -> cls_head.fc1.weight
        KeyRule(#"^head\.projection\."#, "cls_head.fc2."),                                       // head.projection.bias -> cls_head.fc2.bias
        KeyRule(#"(_res\d+)\.branch2\.se\.fc([12])\."#, "$1.se_module.fc$2."),                   // s3.pathway0_res0.branch2.se.fc2.weight -> s3.pathway0_res0.se_module.fc2.weight
    ] + ExportNames.mmaction2Block + [
        KeyRule(#"^path0\."#, "backbone."),                                                      // path0.layer1.0.conv1.conv.weight -> backbone.layer1.0.conv1.conv.weight
    ])

    /// Canonical X3D keys in the order mmaction2's modules register them: in a block, `downsample`
    /// (assigned in BlockX3D.__init__ before the convs), conv1..3, then se_module (assigned last).
    static func mmaction2Order(_ canonical: [String]) -> [String] {
        func rank(_ name: String) -> Int {
            if name.contains(".branch1") { return 0 }
            if name.contains(".branch2.se.") { return 2 }
            return 1
        }
        let keyed = canonical.enumerated().map { entry -> ([Int], String) in
            let block = entry.element.components(separatedBy: ".branch").first!
            let blockIndex = canonical.firstIndex { $0.hasPrefix(block + ".") } ?? entry.offset
            return ([blockIndex, rank(entry.element), entry.offset], entry.element)
        }
        return keyed.sorted { $0.0.lexicographicallyPrecedes($1.0) }.map(\.1)
    }

    /// The call that builds the target's model for these weights (said in the export's notes).
    static func builder(_ arch: ArchConfig, _ target: ExportTarget) -> String? {
        let x = arch.x3d ?? X3DConfig()
        switch target {
        case .pyslowfast:
            return nil
        case .pytorchvideo:
            var args = ["input_clip_length=\(arch.numFrames)", "input_crop_size=\(arch.trainCrop)", "model_num_class=\(arch.numClasses)",
                        "dropout_rate=\(arch.dropout)", "width_factor=\(x.widthFactor)", "depth_factor=\(x.depthFactor)",
                        "stem_dim_in=\(x.dimC1)", "bottleneck_factor=\(x.bottleneckFactor)", "se_ratio=\(x.seRatio)", "head_dim_out=\(x.dimC5)"]
            if x.stemTemporalKernel != 5 { args.append("stem_conv_kernel_size=(\(x.stemTemporalKernel), 3, 3)") }
            if x.blockTemporalKernel != 3 { args.append("stage_conv_kernel_size=((\(x.blockTemporalKernel), 3, 3),) * 4") }
            if !x.swishInner { args.append("inner_act=nn.ReLU") }
            if x.bnLin5 { args.append("head_bn_lin5_on=True") }
            return "build it with pytorchvideo.models.x3d.create_x3d(\(args.joined(separator: ", "))) and load_state_dict(ckpt[\"model_state\"])"
        case .mmaction2:
            return "build it with backbone=dict(type='X3D', gamma_w=\(format(mmaction2GammaW(x))), gamma_b=\(x.bottleneckFactor), "
                + "gamma_d=\(x.depthFactor)\(x.seRatio > 0 ? ", se_ratio=\(x.seRatio)" : ", se_ratio=None")), cls_head=dict(type='X3DHead', "
                + "in_channels=\(x.stageInnerChannels[3]), num_classes=\(arch.numClasses), dropout_ratio=\(arch.dropout), fc1_bias=False); "
                + "X3DHead pools the whole clip, sfnet the grid of a \(arch.numFrames)x\(arch.trainCrop)² clip: the same on clips of that size"
        }
    }

    /// A gamma as mmaction2 configs write it (1 rather than 1.0; 1/3 to the digits that round back).
    private static func format(_ v: Double) -> String {
        if v == v.rounded() { return String(Int(v)) }
        return "\(v)"
    }

    /// mmaction2's `meta` entries for an X3D export.
    static func mmaction2Meta(_ arch: ArchConfig) -> [(String, PickleWriter.Value)] {
        let x = arch.x3d ?? X3DConfig()
        return [
            ("backbone", .string("X3D")),
            ("gamma_w", .float(mmaction2GammaW(x))),
            ("gamma_b", .float(x.bottleneckFactor)),
            ("gamma_d", .float(x.depthFactor)),
            ("se_ratio", x.seRatio > 0 ? .float(x.seRatio) : .none),
            ("cls_head", .string("X3DHead")),
            ("in_channels", .int(Int64(x.stageInnerChannels[3]))),
        ]
    }
}
