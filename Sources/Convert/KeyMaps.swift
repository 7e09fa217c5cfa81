// Key-map tables: other libraries' tensor names -> canonical PySlowFast keys.
// Each rule is a regular expression and a replacement ($1, $2 = captures), applied
// in order to the output of the previous rule, as PySlowFast's c2_model_loading.py
// does. Adding a naming scheme means adding a table here and a case to `Naming`.

import Foundation

/// One rename rule.
public struct KeyRule: Sendable {
    public let pattern: String
    public let template: String
    let regex: NSRegularExpression
    /// The literal text every match starts with (for `^`-anchored patterns): keys without it
    /// skip the regex engine, which keeps mapping a 662-key checkpoint cheap.
    let literalPrefix: String?
    /// The literal text every match ends with (for `…literal$` patterns) and, for unanchored
    /// patterns that start with text, a literal every match contains: cheap pre-filters.
    let literalSuffix: String?
    let literalInfix: String?

    public init(_ pattern: String, _ template: String) {
        self.pattern = pattern
        self.template = template
        // The tables are literals checked by the tests; a bad pattern is a programming error.
        self.regex = try! NSRegularExpression(pattern: pattern)
        self.literalPrefix = KeyRule.anchoredLiteral(pattern)
        self.literalSuffix = KeyRule.trailingLiteral(pattern)
        self.literalInfix = pattern.hasPrefix("^") ? nil : KeyRule.anchoredLiteral("^" + pattern)
    }

    /// `key` with the rule applied (unchanged when the pattern does not match).
    func apply(_ key: String) -> String {
        if let p = literalPrefix, !key.hasPrefix(p) { return key }
        if let p = literalSuffix, !key.hasSuffix(p) { return key }
        if let p = literalInfix, !key.contains(p) { return key }
        return regex.stringByReplacingMatches(in: key, range: NSRange(key.startIndex..., in: key), withTemplate: template)
    }

    /// For `(.*)bn.b$`, "b": the literal run just before a final `$` (nil when there is none).
    static func trailingLiteral(_ pattern: String) -> String? {
        guard pattern.hasSuffix("$"), !pattern.hasSuffix("\\$") else { return nil }
        var chars = Array(pattern.dropLast())
        var out: [Character] = []
        while let c = chars.popLast() {
            if let prev = chars.last, prev == "\\" {
                guard "._-/".contains(c) else { break }
                out.append(c)
                chars.removeLast()
            } else if "()[]{}*+?|$^.".contains(c) {
                break
            } else {
                out.append(c)
            }
        }
        return out.isEmpty ? nil : String(out.reversed())
    }

    /// For `^abc\.d(…)`, "abc.d"; nil when the pattern is not anchored.
    static func anchoredLiteral(_ pattern: String) -> String? {
        guard pattern.hasPrefix("^") else { return nil }
        var out = ""
        var chars = pattern.dropFirst().makeIterator()
        while let c = chars.next() {
            if c == "\\" {
                guard let n = chars.next(), "._-/".contains(n) else { break }
                out.append(n)
            } else if "()[]{}*+?|$^.".contains(c) {
                break
            } else {
                out.append(c)
            }
        }
        // A quantifier right after the literal would make its last character optional.
        return out.isEmpty ? nil : String(out.dropLast())
    }
}

/// An ordered list of rules.
public struct KeyMap: Sendable {
    public let rules: [KeyRule]

    public init(_ rules: [KeyRule]) { self.rules = rules }

    /// The key after every rule; `changed` is false when no rule rewrote it.
    public func map(_ key: String) -> (name: String, changed: Bool) {
        var name = key
        for rule in rules { name = rule.apply(name) }
        return (name, name != key)
    }

    // MARK: Tables

    /// PySlowFast: the canonical naming itself.
    public static let pyslowfast = KeyMap([])

    /// pytorchvideo `slowfast_r50` / `slow_r50` (hub models, `Net(blocks=...)`).
    public static let pytorchvideo = KeyMap([
        // stem
        KeyRule(#"^blocks\.0\.multipathway_blocks\.(\d+)\.conv\."#, "s1.pathway$1_stem.conv."),    // blocks.0.multipathway_blocks.1.conv.weight -> s1.pathway1_stem.conv.weight
        KeyRule(#"^blocks\.0\.multipathway_blocks\.(\d+)\.norm\."#, "s1.pathway$1_stem.bn."),      // blocks.0.multipathway_blocks.0.norm.bias -> s1.pathway0_stem.bn.bias
        // X3D's stem is Conv2plus1d: its conv_t is the 1x3x3 (PySlowFast's conv_xy), its conv_xy the channel-wise 5x1x1
        KeyRule(#"^blocks\.0\.conv\.conv_t\."#, "s1.pathway0_stem.conv_xy."),                   // blocks.0.conv.conv_t.weight (x3d) -> s1.pathway0_stem.conv_xy.weight
        KeyRule(#"^blocks\.0\.conv\.conv_xy\."#, "s1.pathway0_stem.conv."),                     // blocks.0.conv.conv_xy.weight (x3d) -> s1.pathway0_stem.conv.weight
        KeyRule(#"^blocks\.0\.conv\."#, "s1.pathway0_stem.conv."),                                 // blocks.0.conv.weight (slow_r50) -> s1.pathway0_stem.conv.weight
        KeyRule(#"^blocks\.0\.norm\."#, "s1.pathway0_stem.bn."),                                   // blocks.0.norm.running_var -> s1.pathway0_stem.bn.running_var
        // fusions: blocks.K.multipathway_fusion follows stage K (K = 0 is the stem)
        KeyRule(#"^blocks\.(\d)\.multipathway_fusion\.conv_fast_to_slow\."#, "fuse$1.conv_f2s."),  // blocks.2.multipathway_fusion.conv_fast_to_slow.weight -> fuse2.conv_f2s.weight
        KeyRule(#"^blocks\.(\d)\.multipathway_fusion\.norm\."#, "fuse$1.bn."),                     // blocks.2.multipathway_fusion.norm.weight -> fuse2.bn.weight
        KeyRule(#"^fuse0\."#, "s1_fuse."),                                                         // fuse0.conv_f2s.weight -> s1_fuse.conv_f2s.weight
        KeyRule(#"^fuse1\."#, "s2_fuse."),                                                         // fuse1.bn.weight -> s2_fuse.bn.weight
        KeyRule(#"^fuse2\."#, "s3_fuse."),                                                         // fuse2.conv_f2s.weight -> s3_fuse.conv_f2s.weight
        KeyRule(#"^fuse3\."#, "s4_fuse."),                                                         // fuse3.bn.running_mean -> s4_fuse.bn.running_mean
        // residual blocks: blocks.1..4 are res2..res5
        KeyRule(#"^blocks\.(\d)\.multipathway_blocks\.(\d+)\.res_blocks\.(\d+)\."#, "res$1.pathway$2_res$3."), // blocks.1.multipathway_blocks.1.res_blocks.2.branch2.conv_a.weight -> res1.pathway1_res2.branch2.conv_a.weight
        KeyRule(#"^blocks\.(\d)\.res_blocks\.(\d+)\."#, "res$1.pathway0_res$2."),                  // blocks.3.res_blocks.0.branch1_conv.weight (slow_r50) -> res3.pathway0_res0.branch1_conv.weight
        KeyRule(#"^res1\.pathway"#, "s2.pathway"),                                                 // res1.pathway0_res0.branch1_conv.weight -> s2.pathway0_res0.branch1_conv.weight
        KeyRule(#"^res2\.pathway"#, "s3.pathway"),                                                 // res2.pathway1_res3.branch2.norm_b.bias -> s3.pathway1_res3.branch2.norm_b.bias
        KeyRule(#"^res3\.pathway"#, "s4.pathway"),                                                 // res3.pathway0_res5.branch2.conv_c.weight -> s4.pathway0_res5.branch2.conv_c.weight
        KeyRule(#"^res4\.pathway"#, "s5.pathway"),                                                 // res4.pathway0_res0.branch1_norm.weight -> s5.pathway0_res0.branch1_norm.weight
        KeyRule(#"(_res\d+)\.branch1_conv\."#, "$1.branch1."),                                     // s2.pathway0_res0.branch1_conv.weight -> s2.pathway0_res0.branch1.weight
        KeyRule(#"(_res\d+)\.branch1_norm\."#, "$1.branch1_bn."),                                  // s2.pathway0_res0.branch1_norm.bias -> s2.pathway0_res0.branch1_bn.bias
        // X3D: norm_b is BatchNorm + squeeze-excitation (fvcore SqueezeExcitation: block.0 fc1, block.2 fc2)
        KeyRule(#"(_res\d+)\.branch2\.norm_b\.0\."#, "$1.branch2.b_bn."),                          // s2.pathway0_res0.branch2.norm_b.0.weight -> s2.pathway0_res0.branch2.b_bn.weight
        KeyRule(#"(_res\d+)\.branch2\.norm_b\.1\.block\.0\."#, "$1.branch2.se.fc1."),            // s2.pathway0_res0.branch2.norm_b.1.block.0.bias -> s2.pathway0_res0.branch2.se.fc1.bias
        KeyRule(#"(_res\d+)\.branch2\.norm_b\.1\.block\.2\."#, "$1.branch2.se.fc2."),            // s2.pathway0_res0.branch2.norm_b.1.block.2.weight -> s2.pathway0_res0.branch2.se.fc2.weight
        KeyRule(#"(_res\d+)\.branch2\.conv_([abc])\."#, "$1.branch2.$2."),                         // s2.pathway0_res1.branch2.conv_b.weight -> s2.pathway0_res1.branch2.b.weight
        KeyRule(#"(_res\d+)\.branch2\.norm_([abc])\."#, "$1.branch2.$2_bn."),                      // s2.pathway0_res1.branch2.norm_b.weight -> s2.pathway0_res1.branch2.b_bn.weight
        // head (blocks.6 in slowfast_r50, blocks.5 in slow_r50)
        KeyRule(#"^blocks\.\d+\.proj\."#, "head.projection."),                                     // blocks.6.proj.weight -> head.projection.weight
        // X3D's head (blocks.5): ProjectedPool's pre_conv/pre_norm (conv_5), post_conv/post_norm (lin_5)
        KeyRule(#"^blocks\.\d+\.pool\.pre_conv\."#, "head.conv_5."),                              // blocks.5.pool.pre_conv.weight -> head.conv_5.weight
        KeyRule(#"^blocks\.\d+\.pool\.pre_norm\."#, "head.conv_5_bn."),                           // blocks.5.pool.pre_norm.running_mean -> head.conv_5_bn.running_mean
        KeyRule(#"^blocks\.\d+\.pool\.post_conv\."#, "head.lin_5."),                              // blocks.5.pool.post_conv.weight -> head.lin_5.weight
        KeyRule(#"^blocks\.\d+\.pool\.post_norm\."#, "head.lin_5_bn."),                           // blocks.5.pool.post_norm.weight -> head.lin_5_bn.weight
    ])

    /// mmaction2 `ResNet3dSlowFast` / `ResNet3dSlowOnly` backbones with `SlowFastHead` / `I3DHead`, and `X3D` with `X3DHead`.
    /// The laterals sit under `slow_path` but carry fast features; they are ConvModules
    /// (`.conv`, `.bn` when lateral_norm) or plain Conv3d in older forks.
    public static let mmaction2 = KeyMap([
        // laterals first, before the pathway rules below see `slow_path`
        KeyRule(#"^backbone\.slow_path\.conv1_lateral\.bn\."#, "s1_fuse.bn."),                     // backbone.slow_path.conv1_lateral.bn.weight -> s1_fuse.bn.weight
        KeyRule(#"^backbone\.slow_path\.conv1_lateral\.(conv\.)?"#, "s1_fuse.conv_f2s."),          // backbone.slow_path.conv1_lateral.conv.weight -> s1_fuse.conv_f2s.weight
        KeyRule(#"^backbone\.slow_path\.layer1_lateral\.bn\."#, "s2_fuse.bn."),                    // backbone.slow_path.layer1_lateral.bn.bias -> s2_fuse.bn.bias
        KeyRule(#"^backbone\.slow_path\.layer1_lateral\.(conv\.)?"#, "s2_fuse.conv_f2s."),         // backbone.slow_path.layer1_lateral.conv.weight -> s2_fuse.conv_f2s.weight
        KeyRule(#"^backbone\.slow_path\.layer2_lateral\.bn\."#, "s3_fuse.bn."),                    // backbone.slow_path.layer2_lateral.bn.weight -> s3_fuse.bn.weight
        KeyRule(#"^backbone\.slow_path\.layer2_lateral\.(conv\.)?"#, "s3_fuse.conv_f2s."),         // backbone.slow_path.layer2_lateral.weight -> s3_fuse.conv_f2s.weight
        KeyRule(#"^backbone\.slow_path\.layer3_lateral\.bn\."#, "s4_fuse.bn."),                    // backbone.slow_path.layer3_lateral.bn.running_var -> s4_fuse.bn.running_var
        KeyRule(#"^backbone\.slow_path\.layer3_lateral\.(conv\.)?"#, "s4_fuse.conv_f2s."),         // backbone.slow_path.layer3_lateral.conv.weight -> s4_fuse.conv_f2s.weight
        // X3D (backbone X3D + X3DHead): ConvModule stem conv1_s (1x3x3, no BN) and conv1_t (channel-wise 5x1x1, BN), conv5, fc1/fc2
        KeyRule(#"^backbone\.conv1_s\.conv\."#, "s1.pathway0_stem.conv_xy."),                    // backbone.conv1_s.conv.weight (x3d) -> s1.pathway0_stem.conv_xy.weight
        KeyRule(#"^backbone\.conv1_t\.conv\."#, "s1.pathway0_stem.conv."),                       // backbone.conv1_t.conv.weight (x3d) -> s1.pathway0_stem.conv.weight
        KeyRule(#"^backbone\.conv1_t\.bn\."#, "s1.pathway0_stem.bn."),                           // backbone.conv1_t.bn.running_var (x3d) -> s1.pathway0_stem.bn.running_var
        KeyRule(#"^backbone\.conv5\.conv\."#, "head.conv_5."),                                   // backbone.conv5.conv.weight (x3d) -> head.conv_5.weight
        KeyRule(#"^backbone\.conv5\.bn\."#, "head.conv_5_bn."),                                  // backbone.conv5.bn.bias (x3d) -> head.conv_5_bn.bias
        KeyRule(#"^cls_head\.fc1\."#, "head.lin_5."),                                             // cls_head.fc1.weight (x3d; a Linear: the converter adds 1x1x1) -> head.lin_5.weight
        KeyRule(#"^cls_head\.fc2\."#, "head.projection."),                                        // cls_head.fc2.bias (x3d) -> head.projection.bias
        // pathways
        KeyRule(#"^backbone\.slow_path\."#, "path0."),                                             // backbone.slow_path.layer1.0.conv1.conv.weight -> path0.layer1.0.conv1.conv.weight
        KeyRule(#"^backbone\.fast_path\."#, "path1."),                                             // backbone.fast_path.conv1.bn.weight -> path1.conv1.bn.weight
        KeyRule(#"^backbone\.(conv1|layer\d)\."#, "path0.$1."),                                    // backbone.layer2.0.conv1.conv.weight (slow-only) -> path0.layer2.0.conv1.conv.weight
        // stem
        KeyRule(#"^path(\d)\.conv1\.conv\."#, "s1.pathway$1_stem.conv."),                          // path1.conv1.conv.weight -> s1.pathway1_stem.conv.weight
        KeyRule(#"^path(\d)\.conv1\.bn\."#, "s1.pathway$1_stem.bn."),                              // path0.conv1.bn.running_mean -> s1.pathway0_stem.bn.running_mean
        // stages: layer1..4 are res2..res5
        KeyRule(#"^path(\d)\.layer1\.(\d+)\."#, "s2.pathway$1_res$2."),                            // path0.layer1.2.conv3.bn.weight -> s2.pathway0_res2.conv3.bn.weight
        KeyRule(#"^path(\d)\.layer2\.(\d+)\."#, "s3.pathway$1_res$2."),                            // path1.layer2.0.downsample.conv.weight -> s3.pathway1_res0.downsample.conv.weight
        KeyRule(#"^path(\d)\.layer3\.(\d+)\."#, "s4.pathway$1_res$2."),                            // path0.layer3.5.conv1.conv.weight -> s4.pathway0_res5.conv1.conv.weight
        KeyRule(#"^path(\d)\.layer4\.(\d+)\."#, "s5.pathway$1_res$2."),                            // path0.layer4.0.conv2.bn.bias -> s5.pathway0_res0.conv2.bn.bias
        // inside a block
        KeyRule(#"(_res\d+)\.downsample\.(conv|0)\."#, "$1.branch1."),                             // s2.pathway0_res0.downsample.conv.weight -> s2.pathway0_res0.branch1.weight
        KeyRule(#"(_res\d+)\.downsample\.(bn|1)\."#, "$1.branch1_bn."),                            // s2.pathway0_res0.downsample.bn.weight -> s2.pathway0_res0.branch1_bn.weight
        KeyRule(#"(_res\d+)\.conv1\.conv\."#, "$1.branch2.a."),                                    // s2.pathway0_res0.conv1.conv.weight -> s2.pathway0_res0.branch2.a.weight
        KeyRule(#"(_res\d+)\.conv1\.bn\."#, "$1.branch2.a_bn."),                                   // s2.pathway0_res0.conv1.bn.bias -> s2.pathway0_res0.branch2.a_bn.bias
        KeyRule(#"(_res\d+)\.conv2\.conv\."#, "$1.branch2.b."),                                    // s3.pathway1_res1.conv2.conv.weight -> s3.pathway1_res1.branch2.b.weight
        KeyRule(#"(_res\d+)\.conv2\.bn\."#, "$1.branch2.b_bn."),                                   // s3.pathway1_res1.conv2.bn.weight -> s3.pathway1_res1.branch2.b_bn.weight
        KeyRule(#"(_res\d+)\.conv3\.conv\."#, "$1.branch2.c."),                                    // s5.pathway0_res2.conv3.conv.weight -> s5.pathway0_res2.branch2.c.weight
        KeyRule(#"(_res\d+)\.conv3\.bn\."#, "$1.branch2.c_bn."),                                   // s5.pathway0_res2.conv3.bn.running_var -> s5.pathway0_res2.branch2.c_bn.running_var
        KeyRule(#"(_res\d+)\.se_module\.fc([12])\."#, "$1.branch2.se.fc$2."),                      // s2.pathway0_res2.se_module.fc1.weight (x3d) -> s2.pathway0_res2.branch2.se.fc1.weight
        // head: its input is [fast, slow]; the converter reorders the weight columns
        KeyRule(#"^cls_head\.fc_cls\."#, "head.projection."),                                      // cls_head.fc_cls.weight -> head.projection.weight
    ])

    /// Caffe2 blob names of the PySlowFast model zoo `.pkl` files: c2_model_loading.py's
    /// `get_name_convert_func` rules, in its order (its non-local and `conv1_xy` rules left
    /// out: sfnet has no such modules, so those blobs fail strictly as unused). Intermediate names keep the blob's
    /// suffix (`_w`, `_bn_s`, `_riv`) until the last six rules turn it into a field.
    public static let caffe2 = KeyMap([
        // fusions (the fast -> slow laterals)
        KeyRule(#"^t_pool1_subsample_bn_(.*)"#, "s1_fuse.bn.$1"),                                 // t_pool1_subsample_bn_rm -> s1_fuse.bn.rm
        KeyRule(#"^t_pool1_subsample_(.*)"#, "s1_fuse.conv_f2s.$1"),                              // t_pool1_subsample_w -> s1_fuse.conv_f2s.w
        KeyRule(#"^t_res(\d+)_(\d+)_branch2c_bn_subsample_bn_(.*)"#, "s$1_fuse.bn.$3"),           // t_res2_2_branch2c_bn_subsample_bn_riv -> s2_fuse.bn.riv
        KeyRule(#"^t_res(\d+)_(\d+)_branch2c_bn_subsample_(.*)"#, "s$1_fuse.conv_f2s.$3"),        // t_res3_3_branch2c_bn_subsample_w -> s3_fuse.conv_f2s.w
        // slow pathway
        KeyRule(#"^res(\d+)_(\d+)_branch(\d+)([a-z])_(.*)"#, "s$1.pathway0_res$2.branch$3.$4_$5"), // res2_0_branch2a_bn_s -> s2.pathway0_res0.branch2.a_bn_s
        KeyRule(#"^res_conv1_bn_(.*)"#, "s1.pathway0_stem.bn.$1"),                               // res_conv1_bn_riv -> s1.pathway0_stem.bn.riv
        KeyRule(#"^conv1_(.*)"#, "s1.pathway0_stem.conv.$1"),                                    // conv1_w -> s1.pathway0_stem.conv.w
        KeyRule(#"^res(\d+)_(\d+)_branch(\d+)_(.*)"#, "s$1.pathway0_res$2.branch$3_$4"),         // res3_0_branch1_w -> s3.pathway0_res0.branch1_w
        KeyRule(#"^res_conv1_(.*)"#, "s1.pathway0_stem.conv.$1"),                                // res_conv1_w -> s1.pathway0_stem.conv.w
        // fast pathway: the same with a t_ prefix
        KeyRule(#"^t_res(\d+)_(\d+)_branch(\d+)([a-z])_(.*)"#, "s$1.pathway1_res$2.branch$3.$4_$5"), // t_res4_5_branch2c_w -> s4.pathway1_res5.branch2.c_w
        KeyRule(#"^t_res_conv1_bn_(.*)"#, "s1.pathway1_stem.bn.$1"),                             // t_res_conv1_bn_s -> s1.pathway1_stem.bn.s
        KeyRule(#"^t_conv1_(.*)"#, "s1.pathway1_stem.conv.$1"),                                  // t_conv1_w -> s1.pathway1_stem.conv.w
        KeyRule(#"^t_res(\d+)_(\d+)_branch(\d+)_(.*)"#, "s$1.pathway1_res$2.branch$3_$4"),       // t_res2_0_branch1_bn_b -> s2.pathway1_res0.branch1_bn_b
        KeyRule(#"^t_res_conv1_(.*)"#, "s1.pathway1_stem.conv.$1"),                              // t_res_conv1_w -> s1.pathway1_stem.conv.w
        // head (unanchored, as upstream)
        KeyRule(#"pred_(.*)"#, "head.projection.$1"),                                            // pred_w -> head.projection.w
        // suffixes -> fields
        KeyRule(#"(.*)bn.b$"#, "$1bn.bias"),                                                     // s2.pathway0_res0.branch2.a_bn_b -> s2.pathway0_res0.branch2.a_bn.bias
        KeyRule(#"(.*)bn.s$"#, "$1bn.weight"),                                                   // s1.pathway0_stem.bn.s -> s1.pathway0_stem.bn.weight
        KeyRule(#"(.*)bn.rm$"#, "$1bn.running_mean"),                                            // s1_fuse.bn.rm -> s1_fuse.bn.running_mean
        KeyRule(#"(.*)bn.riv$"#, "$1bn.running_var"),                                            // s3.pathway1_res0.branch1_bn_riv -> s3.pathway1_res0.branch1_bn.running_var
        KeyRule(#"(.*)[._]b$"#, "$1.bias"),                                                      // head.projection.b -> head.projection.bias
        KeyRule(#"(.*)[._]w$"#, "$1.weight"),                                                    // s2.pathway0_res0.branch2.a_w -> s2.pathway0_res0.branch2.a.weight
    ])

    /// Detectron ImageNet `R-50.pkl` (Caffe2 blobs of a 2D ResNet, affine-only BN): the
    /// slow-pathway half of the Caffe2 rules, plus the ImageNet classifier `fc1000`.
    public static let detectron = KeyMap([
        KeyRule(#"^res(\d+)_(\d+)_branch(\d+)([a-z])_(.*)"#, "s$1.pathway0_res$2.branch$3.$4_$5"), // res2_0_branch2a_bn_s -> s2.pathway0_res0.branch2.a_bn_s
        KeyRule(#"^res(\d+)_(\d+)_branch(\d+)_(.*)"#, "s$1.pathway0_res$2.branch$3_$4"),         // res5_0_branch1_w -> s5.pathway0_res0.branch1_w
        KeyRule(#"^res_conv1_bn_(.*)"#, "s1.pathway0_stem.bn.$1"),                               // res_conv1_bn_b -> s1.pathway0_stem.bn.b
        KeyRule(#"^conv1_(.*)"#, "s1.pathway0_stem.conv.$1"),                                    // conv1_w -> s1.pathway0_stem.conv.w
        KeyRule(#"^fc1000_(.*)"#, "head.projection.$1"),                                         // fc1000_w -> head.projection.w
        KeyRule(#"(.*)bn.b$"#, "$1bn.bias"),                                                     // s1.pathway0_stem.bn.b -> s1.pathway0_stem.bn.bias
        KeyRule(#"(.*)bn.s$"#, "$1bn.weight"),                                                   // s2.pathway0_res1.branch2.b_bn_s -> s2.pathway0_res1.branch2.b_bn.weight
        KeyRule(#"(.*)[._]b$"#, "$1.bias"),                                                      // head.projection.b -> head.projection.bias
        KeyRule(#"(.*)[._]w$"#, "$1.weight"),                                                    // s3.pathway0_res0.branch1_w -> s3.pathway0_res0.branch1.weight
    ])

    /// torchvision `resnet50` state_dict (2D kernels; the converter adds the temporal axis).
    public static let torchvision = KeyMap([
        KeyRule(#"^conv1\."#, "s1.pathway0_stem.conv."),                                         // conv1.weight -> s1.pathway0_stem.conv.weight
        KeyRule(#"^bn1\."#, "s1.pathway0_stem.bn."),                                             // bn1.running_var -> s1.pathway0_stem.bn.running_var
        KeyRule(#"^layer1\.(\d+)\."#, "s2.pathway0_res$1."),                                     // layer1.0.conv1.weight -> s2.pathway0_res0.conv1.weight
        KeyRule(#"^layer2\.(\d+)\."#, "s3.pathway0_res$1."),                                     // layer2.3.bn2.bias -> s3.pathway0_res3.bn2.bias
        KeyRule(#"^layer3\.(\d+)\."#, "s4.pathway0_res$1."),                                     // layer3.5.conv3.weight -> s4.pathway0_res5.conv3.weight
        KeyRule(#"^layer4\.(\d+)\."#, "s5.pathway0_res$1."),                                     // layer4.0.downsample.0.weight -> s5.pathway0_res0.downsample.0.weight
        KeyRule(#"(_res\d+)\.downsample\.0\."#, "$1.branch1."),                                  // s5.pathway0_res0.downsample.0.weight -> s5.pathway0_res0.branch1.weight
        KeyRule(#"(_res\d+)\.downsample\.1\."#, "$1.branch1_bn."),                               // s2.pathway0_res0.downsample.1.running_mean -> s2.pathway0_res0.branch1_bn.running_mean
        KeyRule(#"(_res\d+)\.conv([123])\."#, "$1.branch2.$2."),                                 // s2.pathway0_res0.conv2.weight -> s2.pathway0_res0.branch2.2.weight
        KeyRule(#"(_res\d+)\.bn([123])\."#, "$1.branch2.$2_bn."),                                // s2.pathway0_res0.bn3.weight -> s2.pathway0_res0.branch2.3_bn.weight
        KeyRule(#"\.branch2\.1"#, ".branch2.a"),                                                 // s2.pathway0_res0.branch2.1_bn.bias -> s2.pathway0_res0.branch2.a_bn.bias
        KeyRule(#"\.branch2\.2"#, ".branch2.b"),                                                 // s2.pathway0_res0.branch2.2.weight -> s2.pathway0_res0.branch2.b.weight
        KeyRule(#"\.branch2\.3"#, ".branch2.c"),                                                 // s4.pathway0_res5.branch2.3.weight -> s4.pathway0_res5.branch2.c.weight
        KeyRule(#"^fc\."#, "head.projection."),                                                  // fc.weight -> head.projection.weight
    ])
}
