// The Keras key map: both ResNet50 naming generations land on canonical names.

import Families
import XCTest
@testable import Convert

final class KerasKeyMapTests: XCTestCase {
    func testCurrentKerasNamesMapToCanonicalResNetKeys() {
        let cases = [
            ("conv1_conv/kernel", "s1.pathway0_stem.conv.weight"),
            ("conv1_bn/moving_variance", "s1.pathway0_stem.bn.running_var"),
            ("conv2_block1_0_conv/kernel", "s2.pathway0_res0.branch1.weight"),
            ("conv2_block1_0_bn/gamma", "s2.pathway0_res0.branch1_bn.weight"),
            ("conv2_block1_1_conv/kernel", "s2.pathway0_res0.branch2.a.weight"),
            ("conv3_block4_2_bn/beta", "s3.pathway0_res3.branch2.b_bn.bias"),
            ("conv4_block6_3_conv/kernel", "s4.pathway0_res5.branch2.c.weight"),
            ("conv4_block23_3_bn/moving_mean", "s4.pathway0_res22.branch2.c_bn.running_mean"),
            ("predictions/kernel", "head.projection.weight"),
            ("predictions/bias", "head.projection.bias"),
        ]
        for (k, want) in cases { XCTAssertEqual(KeyMap.keras.map(k).name, want, k) }
    }

    func testKeras22CaffeStyleNamesMapToCanonicalResNetKeys() {
        let cases = [
            ("conv1/kernel", "s1.pathway0_stem.conv.weight"),
            ("bn_conv1/gamma", "s1.pathway0_stem.bn.weight"),
            ("res2a_branch2a/kernel", "s2.pathway0_res0.branch2.a.weight"),
            ("bn2a_branch2a/moving_mean", "s2.pathway0_res0.branch2.a_bn.running_mean"),
            ("res2a_branch1/kernel", "s2.pathway0_res0.branch1.weight"),
            ("bn3a_branch1/beta", "s3.pathway0_res0.branch1_bn.bias"),
            ("res4f_branch2c/kernel", "s4.pathway0_res5.branch2.c.weight"),
            ("bn5c_branch2b/moving_variance", "s5.pathway0_res2.branch2.b_bn.running_var"),
            ("fc1000/kernel", "head.projection.weight"),
        ]
        for (k, want) in cases { XCTAssertEqual(KeyMap.keras.map(k).name, want, k) }
    }

    func testEveryCanonicalResNet50KeyHasAKerasNameInBothGenerations() {
        // Build the Keras names of ResNet50 as keras.applications and Keras 2.2 spell them.
        let depths = [3, 4, 6, 3]
        var modern = ["conv1_conv", "conv1_bn", "predictions"], old = ["conv1", "bn_conv1", "fc1000"]
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        for (i, d) in depths.enumerated() {
            let s = i + 2
            for b in 0 ..< d {
                for k in (b == 0 ? [0, 1, 2, 3] : [1, 2, 3]) { modern += ["conv\(s)_block\(b + 1)_\(k)_conv", "conv\(s)_block\(b + 1)_\(k)_bn"] }
                for br in (b == 0 ? ["1", "2a", "2b", "2c"] : ["2a", "2b", "2c"]) { old += ["res\(s)\(letters[b])_branch\(br)", "bn\(s)\(letters[b])_branch\(br)"] }
            }
        }
        let expected = Set(ArchConfig.preset(named: "resnet50")!.expectedParameters().map(\.name).filter { !$0.hasSuffix("num_batches_tracked") }
            .map { String($0[..<$0.lastIndex(of: ".")!]) })
        for layers in [modern, old] {
            let modules = Set(layers.compactMap { KeyMap.kerasModule(ofLayer: $0) })
            XCTAssertEqual(layers.count, modules.count, "two layers map to one module")
            XCTAssertEqual(modules, expected)
        }
    }

    func testKerasNamingIsNotDetectedOnOtherNamings() {
        XCTAssertEqual(Naming.keras.score(["conv1.weight", "bn1.running_var", "layer1.0.conv1.weight"]), 0)
        XCTAssertEqual(Naming.keras.score(["conv1_conv/kernel", "conv1_bn/gamma"]), 1)
    }
}

@testable import Keras

final class KerasWeightNameTests: XCTestCase {
    func testWeightNamesOfEveryKerasGenerationNameTheirField() {
        let cases: [(String, String, String?)] = [
            ("conv1_conv/kernel:0", "conv1_conv", "kernel"),            // Keras 2
            ("conv1_conv/bias", "conv1_conv", "bias"),                  // Keras 3 legacy .h5
            ("resnet50/conv1_bn/moving_variance:0", "conv1_bn", "moving_variance"),
            ("conv1_W:0", "conv1", "kernel"),                           // Keras 1
            ("bn_conv1_running_std:0", "bn_conv1", "moving_variance"),  // Keras 1: "std" held the variance
            ("bn_conv1_running_mean:0", "bn_conv1", "moving_mean"),
            ("something_else:0", "conv1", nil),
        ]
        for (name, layer, want) in cases { XCTAssertEqual(KerasImport.fieldName(name, layer: layer), want, name) }
    }
}
