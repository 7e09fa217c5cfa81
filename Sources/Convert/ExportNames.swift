// Canonical PySlowFast keys -> other libraries' names: the inverse of the
// KeyMaps.swift tables, written as tables in the same style (ordered regex
// rules, one example each). The tests check that every canonical key of an
// architecture maps back to itself through the forward table.

import Foundation

public enum ExportNames {
    /// The table that renames canonical keys into `target`'s naming for a network of `pathways` pathways.
    /// `lateralNorm`: mmaction2 laterals built with `lateral_norm=True` (a `.bn` after the conv).
    public static func keyMap(_ target: ExportTarget, pathways: Int, lateralNorm: Bool = false) -> KeyMap {
        switch target {
        case .pyslowfast: return .pyslowfast
        case .pytorchvideo: return pathways == 2 ? pytorchvideoSlowFast : pytorchvideoSingle
        case .mmaction2:
            let base = pathways == 2 ? mmaction2SlowFast : mmaction2Single
            return lateralNorm ? KeyMap(mmaction2LateralNorm.rules + base.rules) : base
        }
    }

    static let pytorchvideoBlock: [KeyRule] = [
        KeyRule(#"(res_blocks\.\d+)\.branch1\."#, "$1.branch1_conv."),                           // blocks.1.res_blocks.0.branch1.weight -> blocks.1.res_blocks.0.branch1_conv.weight
        KeyRule(#"(res_blocks\.\d+)\.branch1_bn\."#, "$1.branch1_norm."),                        // blocks.1.res_blocks.0.branch1_bn.bias -> blocks.1.res_blocks.0.branch1_norm.bias
        KeyRule(#"(res_blocks\.\d+)\.branch2\.([abc])_bn\."#, "$1.branch2.norm_$2."),            // ...res_blocks.1.branch2.b_bn.weight -> ...res_blocks.1.branch2.norm_b.weight
        KeyRule(#"(res_blocks\.\d+)\.branch2\.([abc])\."#, "$1.branch2.conv_$2."),               // ...res_blocks.1.branch2.b.weight -> ...res_blocks.1.branch2.conv_b.weight
    ]

    /// pytorchvideo `slowfast_r50` (`create_slowfast`): blocks.0 stem, blocks.1..4 res2..res5, blocks.6 head.
    public static let pytorchvideoSlowFast = KeyMap([
        KeyRule(#"^s1\.pathway(\d+)_stem\.conv\."#, "blocks.0.multipathway_blocks.$1.conv."),    // s1.pathway1_stem.conv.weight -> blocks.0.multipathway_blocks.1.conv.weight
        KeyRule(#"^s1\.pathway(\d+)_stem\.bn\."#, "blocks.0.multipathway_blocks.$1.norm."),      // s1.pathway0_stem.bn.bias -> blocks.0.multipathway_blocks.0.norm.bias
        KeyRule(#"^s1_fuse\."#, "fuse0."),                                                       // s1_fuse.conv_f2s.weight -> fuse0.conv_f2s.weight
        KeyRule(#"^s2_fuse\."#, "fuse1."),                                                       // s2_fuse.bn.weight -> fuse1.bn.weight
        KeyRule(#"^s3_fuse\."#, "fuse2."),                                                       // s3_fuse.conv_f2s.weight -> fuse2.conv_f2s.weight
        KeyRule(#"^s4_fuse\."#, "fuse3."),                                                       // s4_fuse.bn.running_mean -> fuse3.bn.running_mean
        KeyRule(#"^fuse(\d)\.conv_f2s\."#, "blocks.$1.multipathway_fusion.conv_fast_to_slow."),  // fuse2.conv_f2s.weight -> blocks.2.multipathway_fusion.conv_fast_to_slow.weight
        KeyRule(#"^fuse(\d)\.bn\."#, "blocks.$1.multipathway_fusion.norm."),                     // fuse2.bn.weight -> blocks.2.multipathway_fusion.norm.weight
        KeyRule(#"^s2\.pathway(\d+)_res(\d+)\."#, "blocks.1.multipathway_blocks.$1.res_blocks.$2."), // s2.pathway1_res2.branch2.a.weight -> blocks.1.multipathway_blocks.1.res_blocks.2.branch2.a.weight
        KeyRule(#"^s3\.pathway(\d+)_res(\d+)\."#, "blocks.2.multipathway_blocks.$1.res_blocks.$2."), // s3.pathway0_res3.branch2.c_bn.bias -> blocks.2.multipathway_blocks.0.res_blocks.3.branch2.c_bn.bias
        KeyRule(#"^s4\.pathway(\d+)_res(\d+)\."#, "blocks.3.multipathway_blocks.$1.res_blocks.$2."), // s4.pathway0_res5.branch2.c.weight -> blocks.3.multipathway_blocks.0.res_blocks.5.branch2.c.weight
        KeyRule(#"^s5\.pathway(\d+)_res(\d+)\."#, "blocks.4.multipathway_blocks.$1.res_blocks.$2."), // s5.pathway0_res0.branch1_bn.weight -> blocks.4.multipathway_blocks.0.res_blocks.0.branch1_bn.weight
    ] + pytorchvideoBlock + [
        KeyRule(#"^head\.projection\."#, "blocks.6.proj."),                                      // head.projection.weight -> blocks.6.proj.weight
    ])

    /// pytorchvideo `slow_r50` (`create_resnet`): blocks.0 stem, blocks.1..4 res2..res5, blocks.5 head.
    public static let pytorchvideoSingle = KeyMap([
        KeyRule(#"^s1\.pathway0_stem\.conv\."#, "blocks.0.conv."),                               // s1.pathway0_stem.conv.weight -> blocks.0.conv.weight
        KeyRule(#"^s1\.pathway0_stem\.bn\."#, "blocks.0.norm."),                                 // s1.pathway0_stem.bn.running_var -> blocks.0.norm.running_var
        KeyRule(#"^s2\.pathway0_res(\d+)\."#, "blocks.1.res_blocks.$1."),                        // s2.pathway0_res0.branch1.weight -> blocks.1.res_blocks.0.branch1.weight
        KeyRule(#"^s3\.pathway0_res(\d+)\."#, "blocks.2.res_blocks.$1."),                        // s3.pathway0_res1.branch2.a.weight -> blocks.2.res_blocks.1.branch2.a.weight
        KeyRule(#"^s4\.pathway0_res(\d+)\."#, "blocks.3.res_blocks.$1."),                        // s4.pathway0_res5.branch2.b_bn.bias -> blocks.3.res_blocks.5.branch2.b_bn.bias
        KeyRule(#"^s5\.pathway0_res(\d+)\."#, "blocks.4.res_blocks.$1."),                        // s5.pathway0_res2.branch2.c.weight -> blocks.4.res_blocks.2.branch2.c.weight
    ] + pytorchvideoBlock + [
        KeyRule(#"^head\.projection\."#, "blocks.5.proj."),                                      // head.projection.bias -> blocks.5.proj.bias
    ])

    static let mmaction2Block: [KeyRule] = [
        KeyRule(#"^s1\.pathway(\d)_stem\.conv\."#, "path$1.conv1.conv."),                        // s1.pathway1_stem.conv.weight -> path1.conv1.conv.weight
        KeyRule(#"^s1\.pathway(\d)_stem\.bn\."#, "path$1.conv1.bn."),                            // s1.pathway0_stem.bn.weight -> path0.conv1.bn.weight
        KeyRule(#"^s2\.pathway(\d)_res(\d+)\."#, "path$1.layer1.$2."),                           // s2.pathway0_res2.branch2.c_bn.weight -> path0.layer1.2.branch2.c_bn.weight
        KeyRule(#"^s3\.pathway(\d)_res(\d+)\."#, "path$1.layer2.$2."),                           // s3.pathway1_res0.branch1.weight -> path1.layer2.0.branch1.weight
        KeyRule(#"^s4\.pathway(\d)_res(\d+)\."#, "path$1.layer3.$2."),                           // s4.pathway0_res5.branch2.a.weight -> path0.layer3.5.branch2.a.weight
        KeyRule(#"^s5\.pathway(\d)_res(\d+)\."#, "path$1.layer4.$2."),                           // s5.pathway0_res0.branch2.b_bn.bias -> path0.layer4.0.branch2.b_bn.bias
        KeyRule(#"(layer\d\.\d+)\.branch1\."#, "$1.downsample.conv."),                           // path0.layer1.0.branch1.weight -> path0.layer1.0.downsample.conv.weight
        KeyRule(#"(layer\d\.\d+)\.branch1_bn\."#, "$1.downsample.bn."),                          // path0.layer1.0.branch1_bn.weight -> path0.layer1.0.downsample.bn.weight
        KeyRule(#"(layer\d\.\d+)\.branch2\.a_bn\."#, "$1.conv1.bn."),                            // path0.layer1.0.branch2.a_bn.bias -> path0.layer1.0.conv1.bn.bias
        KeyRule(#"(layer\d\.\d+)\.branch2\.b_bn\."#, "$1.conv2.bn."),                            // path1.layer2.1.branch2.b_bn.weight -> path1.layer2.1.conv2.bn.weight
        KeyRule(#"(layer\d\.\d+)\.branch2\.c_bn\."#, "$1.conv3.bn."),                            // path0.layer4.2.branch2.c_bn.running_var -> path0.layer4.2.conv3.bn.running_var
        KeyRule(#"(layer\d\.\d+)\.branch2\.a\."#, "$1.conv1.conv."),                             // path0.layer1.0.branch2.a.weight -> path0.layer1.0.conv1.conv.weight
        KeyRule(#"(layer\d\.\d+)\.branch2\.b\."#, "$1.conv2.conv."),                             // path1.layer2.1.branch2.b.weight -> path1.layer2.1.conv2.conv.weight
        KeyRule(#"(layer\d\.\d+)\.branch2\.c\."#, "$1.conv3.conv."),                             // path0.layer4.2.branch2.c.weight -> path0.layer4.2.conv3.conv.weight
    ]

    /// mmaction2 `ResNet3dSlowFast` + `SlowFastHead` (whose input is [fast, slow]: the
    /// exporter reorders the head's columns). Fusion BN has no name here (plain lateral conv).
    public static let mmaction2SlowFast = KeyMap([
        KeyRule(#"^s1_fuse\.conv_f2s\."#, "backbone.slow_path.conv1_lateral.conv."),             // s1_fuse.conv_f2s.weight -> backbone.slow_path.conv1_lateral.conv.weight
        KeyRule(#"^s2_fuse\.conv_f2s\."#, "backbone.slow_path.layer1_lateral.conv."),            // s2_fuse.conv_f2s.weight -> backbone.slow_path.layer1_lateral.conv.weight
        KeyRule(#"^s3_fuse\.conv_f2s\."#, "backbone.slow_path.layer2_lateral.conv."),            // s3_fuse.conv_f2s.weight -> backbone.slow_path.layer2_lateral.conv.weight
        KeyRule(#"^s4_fuse\.conv_f2s\."#, "backbone.slow_path.layer3_lateral.conv."),            // s4_fuse.conv_f2s.weight -> backbone.slow_path.layer3_lateral.conv.weight
    ] + mmaction2Block + [
        KeyRule(#"^path0\."#, "backbone.slow_path."),                                            // path0.conv1.conv.weight -> backbone.slow_path.conv1.conv.weight
        KeyRule(#"^path1\."#, "backbone.fast_path."),                                            // path1.layer1.0.conv1.bn.bias -> backbone.fast_path.layer1.0.conv1.bn.bias
        KeyRule(#"^head\.projection\."#, "cls_head.fc_cls."),                                    // head.projection.weight -> cls_head.fc_cls.weight
    ])

    /// mmaction2 laterals with `lateral_norm=True` (ConvModule conv -> BN -> ReLU, as PySlowFast's fusion).
    static let mmaction2LateralNorm = KeyMap([
        KeyRule(#"^s1_fuse\.bn\."#, "backbone.slow_path.conv1_lateral.bn."),                     // s1_fuse.bn.weight -> backbone.slow_path.conv1_lateral.bn.weight
        KeyRule(#"^s2_fuse\.bn\."#, "backbone.slow_path.layer1_lateral.bn."),                    // s2_fuse.bn.bias -> backbone.slow_path.layer1_lateral.bn.bias
        KeyRule(#"^s3_fuse\.bn\."#, "backbone.slow_path.layer2_lateral.bn."),                    // s3_fuse.bn.running_mean -> backbone.slow_path.layer2_lateral.bn.running_mean
        KeyRule(#"^s4_fuse\.bn\."#, "backbone.slow_path.layer3_lateral.bn."),                    // s4_fuse.bn.running_var -> backbone.slow_path.layer3_lateral.bn.running_var
    ])

    /// mmaction2 `ResNet3dSlowOnly` + `I3DHead`.
    public static let mmaction2Single = KeyMap(mmaction2Block + [
        KeyRule(#"^path0\."#, "backbone."),                                                      // path0.layer1.0.conv1.conv.weight -> backbone.layer1.0.conv1.conv.weight
        KeyRule(#"^head\.projection\."#, "cls_head.fc_cls."),                                    // head.projection.bias -> cls_head.fc_cls.bias
    ])

    /// Canonical keys in the order mmaction2's modules register them: the slow path (stem,
    /// layers; in each block conv1..3 before downsample), its laterals, the fast path, the head.
    public static func mmaction2Order(_ canonical: [String]) -> [String] {
        var blockRank: [String: Int] = [:]
        func key(_ entry: (offset: Int, element: String)) -> [Int] {
            let name = entry.element
            let group = name.hasPrefix("head.") ? 2 : (name.contains("pathway1") ? 1 : 0)
            let lateral = name.contains("_fuse.") ? 1 : 0
            let block = name.components(separatedBy: ".branch").first!
            let rank: Int
            if let r = blockRank[block] { rank = r } else { rank = blockRank.count; blockRank[block] = rank }
            return [group, lateral, rank, name.contains(".branch1") ? 1 : 0, entry.offset]
        }
        let keyed = canonical.enumerated().map { (key($0), $0.element) }
        return keyed.sorted { $0.0.lexicographicallyPrecedes($1.0) }.map(\.1)
    }
}
