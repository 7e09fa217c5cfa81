// Keras ResNet names -> canonical keys (SLOWFAST.md "Keras ResNet50 files").
// Keys are `<layer>/<weight>` as the Keras importer names them (`conv2_block1_1_conv/kernel`);
// the importer has already transposed kernels to PyTorch layout and folded the conv
// biases into the BN that follows, so the table only renames.
// Both naming generations: keras.applications.ResNet50 (`convS_blockB_{0,1,2,3}_conv/_bn`,
// 1-based blocks, `predictions`) and Keras 2.2's Caffe-style names (`res2a_branch2a`,
// `bn2a_branch2a`, block letters a, b, c..., `fc1000`).

import Foundation

extension KeyMap {
    /// Keras ResNet50 layer names of both generations.
    public static let keras = KeyMap(kerasNames + kerasBlockIndices + kerasFields)

    private static let kerasNames: [KeyRule] = [
        // current keras.applications names
        KeyRule(#"^conv1_conv/"#, "s1.pathway0_stem.conv/"),                                          // conv1_conv/kernel -> s1.pathway0_stem.conv/kernel
        KeyRule(#"^conv1_bn/"#, "s1.pathway0_stem.bn/"),                                              // conv1_bn/gamma -> s1.pathway0_stem.bn/gamma
        KeyRule(#"^conv([2-5])_block(\d+)_0_conv/"#, "s$1.pathway0_resB$2.branch1/"),                 // conv3_block1_0_conv/kernel -> s3.pathway0_resB1.branch1/kernel
        KeyRule(#"^conv([2-5])_block(\d+)_0_bn/"#, "s$1.pathway0_resB$2.branch1_bn/"),                // conv3_block1_0_bn/beta -> s3.pathway0_resB1.branch1_bn/beta
        KeyRule(#"^conv([2-5])_block(\d+)_([123])_conv/"#, "s$1.pathway0_resB$2.branch2.$3/"),        // conv2_block3_2_conv/kernel -> s2.pathway0_resB3.branch2.2/kernel
        KeyRule(#"^conv([2-5])_block(\d+)_([123])_bn/"#, "s$1.pathway0_resB$2.branch2.$3_bn/"),       // conv2_block3_2_bn/moving_mean -> s2.pathway0_resB3.branch2.2_bn/moving_mean
        KeyRule(#"^predictions/"#, "head.projection/"),                                               // predictions/kernel -> head.projection/kernel
        // Keras 2.2 (Caffe-style) names
        KeyRule(#"^conv1/"#, "s1.pathway0_stem.conv/"),                                               // conv1/kernel -> s1.pathway0_stem.conv/kernel
        KeyRule(#"^bn_conv1/"#, "s1.pathway0_stem.bn/"),                                              // bn_conv1/moving_variance -> s1.pathway0_stem.bn/moving_variance
        KeyRule(#"^res([2-5])([a-z])_branch1/"#, "s$1.pathway0_resL$2.branch1/"),                     // res3a_branch1/kernel -> s3.pathway0_resLa.branch1/kernel
        KeyRule(#"^bn([2-5])([a-z])_branch1/"#, "s$1.pathway0_resL$2.branch1_bn/"),                   // bn3a_branch1/gamma -> s3.pathway0_resLa.branch1_bn/gamma
        KeyRule(#"^res([2-5])([a-z])_branch2([abc])/"#, "s$1.pathway0_resL$2.branch2.$3/"),           // res2b_branch2c/kernel -> s2.pathway0_resLb.branch2.c/kernel
        KeyRule(#"^bn([2-5])([a-z])_branch2([abc])/"#, "s$1.pathway0_resL$2.branch2.$3_bn/"),         // bn2b_branch2c/beta -> s2.pathway0_resLb.branch2.c_bn/beta
        KeyRule(#"^fc1000/"#, "head.projection/"),                                                    // fc1000/bias -> head.projection/bias
        // conv index 1/2/3 -> a/b/c
        KeyRule(#"\.branch2\.1"#, ".branch2.a"),                                                      // s2.pathway0_resB3.branch2.1_bn/gamma -> s2.pathway0_resB3.branch2.a_bn/gamma
        KeyRule(#"\.branch2\.2"#, ".branch2.b"),                                                      // s2.pathway0_resB3.branch2.2/kernel -> s2.pathway0_resB3.branch2.b/kernel
        KeyRule(#"\.branch2\.3"#, ".branch2.c"),                                                      // s2.pathway0_resB3.branch2.3/kernel -> s2.pathway0_resB3.branch2.c/kernel
    ]

    /// 1-based block numbers (`block1` -> res0) and block letters (`a` -> res0), one rule each:
    /// s3.pathway0_resB1.branch1/kernel -> s3.pathway0_res0.branch1/kernel,
    /// s2.pathway0_resLb.branch2.c/kernel -> s2.pathway0_res1.branch2.c/kernel.
    private static let kerasBlockIndices: [KeyRule] =
        (1 ... 64).map { (n: Int) -> KeyRule in KeyRule("_resB\(n)\\.", "_res\(n - 1).") }
        + Array("abcdefghijklmnopqrstuvwxyz").enumerated().map { (i: Int, c: Character) -> KeyRule in KeyRule("_resL\(c)\\.", "_res\(i).") }

    private static let kerasFields: [KeyRule] = [
        // weights -> fields
        KeyRule(#"/kernel$"#, ".weight"),                                                             // head.projection/kernel -> head.projection.weight
        KeyRule(#"/bias$"#, ".bias"),                                                                 // head.projection/bias -> head.projection.bias
        KeyRule(#"/gamma$"#, ".weight"),                                                              // s1.pathway0_stem.bn/gamma -> s1.pathway0_stem.bn.weight
        KeyRule(#"/beta$"#, ".bias"),                                                                 // s1.pathway0_stem.bn/beta -> s1.pathway0_stem.bn.bias
        KeyRule(#"/moving_mean$"#, ".running_mean"),                                                  // s1.pathway0_stem.bn/moving_mean -> s1.pathway0_stem.bn.running_mean
        KeyRule(#"/moving_variance$"#, ".running_var"),                                               // s1.pathway0_stem.bn/moving_variance -> s1.pathway0_stem.bn.running_var
    ]

    /// The canonical module of a Keras layer (`conv2_block1_1_bn` -> `s2.pathway0_res0.branch2.a_bn`),
    /// or nil when the table has no rule for it.
    public static func kerasModule(ofLayer layer: String) -> String? {
        let (name, changed) = keras.map(layer + "/kernel")
        guard changed, name.hasSuffix(".weight"), Naming.isCanonical(name) else { return nil }
        return String(name.dropLast(".weight".count))
    }
}
