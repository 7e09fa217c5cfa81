// ArchConfig: presets, the canonical state_dict they imply, JSON, validation.

import Families
import XCTest
import Formats
@testable import Convert

final class ArchitectureTests: XCTestCase {
    private func shapes(_ preset: String) -> [String: [Int]] {
        Fixtures.shapes(ArchConfig.preset(named: preset)!)
    }

    func testSlowFastR50PresetHas662EntriesAnd34566488Parameters() {
        let config = ArchConfig.preset(named: "slowfast-r50-8x8")!
        let expected = config.expectedParameters()
        XCTAssertEqual(expected.count, 662)
        XCTAssertEqual(expected.filter { !$0.name.hasSuffix("num_batches_tracked") }.count, 552)
        XCTAssertEqual(config.parameterCount, 34_566_488)
        XCTAssertEqual(config.stateElementCount, 34_566_488 + 2 * 30_344, "plus running mean and var of 30,344 BN channels")
        XCTAssertEqual(Set(expected.map(\.name)).count, expected.count, "names are unique")
    }

    func testSlowFastR50KeyShapesMatchReference() {
        let s = shapes("slowfast-r50-8x8")
        XCTAssertEqual(s["s1.pathway0_stem.conv.weight"], [64, 3, 1, 7, 7])
        XCTAssertEqual(s["s1.pathway1_stem.conv.weight"], [8, 3, 5, 7, 7])
        XCTAssertEqual(s["s1_fuse.conv_f2s.weight"], [16, 8, 7, 1, 1])
        XCTAssertEqual(s["s2.pathway0_res0.branch1.weight"], [256, 80, 1, 1, 1])
        XCTAssertEqual(s["s2.pathway0_res0.branch2.a.weight"], [64, 80, 1, 1, 1])
        XCTAssertEqual(s["s2.pathway0_res0.branch2.b.weight"], [64, 64, 1, 3, 3])
        XCTAssertEqual(s["s2.pathway0_res0.branch2.c.weight"], [256, 64, 1, 1, 1])
        XCTAssertEqual(s["s2.pathway1_res1.branch2.a.weight"], [8, 32, 3, 1, 1])
        XCTAssertEqual(s["s4.pathway0_res0.branch2.a.weight"], [256, 640, 3, 1, 1])
        XCTAssertEqual(s["s5.pathway0_res0.branch1.weight"], [2048, 1280, 1, 1, 1])
        XCTAssertEqual(s["head.projection.weight"], [400, 2304])
        XCTAssertEqual(s["head.projection.bias"], [400])
        XCTAssertEqual(s["s3.pathway0_res0.branch1.weight"], [512, 320, 1, 1, 1])
        XCTAssertEqual(s["s4_fuse.conv_f2s.weight"], [256, 128, 7, 1, 1])
        XCTAssertEqual(s["s2.pathway0_res0.branch2.a_bn.running_var"], [64])
        XCTAssertNil(s["s5_fuse.conv_f2s.weight"], "no fusion after res5")
        XCTAssertNil(s["s2.pathway0_res1.branch1.weight"], "shortcut conv only in block 0")
    }

    func testExpectedParametersFollowPySlowFastModuleOrder() {
        let names = ArchConfig.preset(named: "slowfast-r50-8x8")!.expectedParameters().map(\.name)
        XCTAssertEqual(Array(names.prefix(14)), [
            "s1.pathway0_stem.conv.weight", "s1.pathway0_stem.bn.weight", "s1.pathway0_stem.bn.bias",
            "s1.pathway0_stem.bn.running_mean", "s1.pathway0_stem.bn.running_var", "s1.pathway0_stem.bn.num_batches_tracked",
            "s1.pathway1_stem.conv.weight", "s1.pathway1_stem.bn.weight", "s1.pathway1_stem.bn.bias",
            "s1.pathway1_stem.bn.running_mean", "s1.pathway1_stem.bn.running_var", "s1.pathway1_stem.bn.num_batches_tracked",
            "s1_fuse.conv_f2s.weight", "s1_fuse.bn.weight",
        ])
        XCTAssertEqual(names[18], "s2.pathway0_res0.branch1.weight")
        XCTAssertEqual(names[19], "s2.pathway0_res0.branch1_bn.weight")
        XCTAssertEqual(names[24], "s2.pathway0_res0.branch2.a.weight")
        XCTAssertEqual(names[30], "s2.pathway0_res0.branch2.b.weight")
        XCTAssertEqual(names[36], "s2.pathway0_res0.branch2.c.weight")
        func index(_ n: String) -> Int { names.firstIndex(of: n)! }
        XCTAssertLessThan(index("s2.pathway0_res2.branch2.c_bn.num_batches_tracked"), index("s2.pathway1_res0.branch1.weight"))
        XCTAssertLessThan(index("s2.pathway1_res2.branch2.c_bn.num_batches_tracked"), index("s2_fuse.conv_f2s.weight"))
        XCTAssertLessThan(index("s2_fuse.bn.num_batches_tracked"), index("s3.pathway0_res0.branch1.weight"))
        XCTAssertLessThan(index("s4_fuse.bn.num_batches_tracked"), index("s5.pathway0_res0.branch1.weight"))
        XCTAssertEqual(Array(names.suffix(2)), ["head.projection.weight", "head.projection.bias"])
    }

    func testBatchNormEntriesEndWithScalarI64Counter() {
        let expected = ArchConfig.preset(named: "slowfast-r50-8x8")!.expectedParameters()
        let counters = expected.filter { $0.name.hasSuffix(".num_batches_tracked") }
        XCTAssertEqual(counters.count, 110)
        XCTAssertTrue(counters.allSatisfy { $0.shape == [] && $0.dtype == .i64 })
        XCTAssertTrue(expected.filter { !$0.name.hasSuffix(".num_batches_tracked") }.allSatisfy { $0.dtype == .f32 })
    }

    func testOtherPresetsHaveTheirShapes() {
        let r101 = shapes("slowfast-r101-8x8")
        XCTAssertNotNil(r101["s4.pathway0_res22.branch2.c.weight"])
        XCTAssertNil(r101["s4.pathway0_res23.branch2.c.weight"])
        XCTAssertEqual(ArchConfig.preset(named: "slowfast-r101-8x8")!.depth, 101)
        XCTAssertEqual(shapes("slowfast-r50-4x16")["s1_fuse.conv_f2s.weight"], [16, 8, 5, 1, 1])
        XCTAssertEqual(ArchConfig.preset(named: "slowfast-r50-4x16")!.alpha, 8)

        let slow = shapes("slow-r50-8x8")
        XCTAssertNil(slow["s1.pathway1_stem.conv.weight"])
        XCTAssertNil(slow["s1_fuse.conv_f2s.weight"])
        XCTAssertEqual(slow["s2.pathway0_res0.branch2.a.weight"], [64, 64, 1, 1, 1])
        XCTAssertEqual(slow["s4.pathway0_res0.branch2.a.weight"], [256, 512, 3, 1, 1])
        XCTAssertEqual(slow["head.projection.weight"], [400, 2048])

        let resnet = shapes("resnet50")
        XCTAssertEqual(resnet["s1.pathway0_stem.conv.weight"], [64, 3, 1, 7, 7])
        XCTAssertEqual(resnet["s4.pathway0_res0.branch2.a.weight"], [256, 512, 1, 1, 1])
        XCTAssertEqual(resnet["head.projection.weight"], [1000, 2048])
        // torchvision ResNet-50 has 25,557,032 parameters.
        XCTAssertEqual(ArchConfig.preset(named: "resnet50")!.parameterCount, 25_557_032)
    }

    func testFusionNormFalseOmitsFusionBatchNorm() {
        var config = Fixtures.tiny
        config.fusionNorm = false
        let names = config.expectedParameters().map(\.name)
        XCTAssertTrue(names.contains("s3_fuse.conv_f2s.weight"))
        XCTAssertFalse(names.contains { $0.contains("_fuse.bn.") })
    }

    func testTinyConfigChannels() {
        let s = Fixtures.shapes(Fixtures.tiny)
        XCTAssertEqual(s["s1.pathway1_stem.conv.weight"], [1, 3, 5, 7, 7])
        XCTAssertEqual(s["s1_fuse.conv_f2s.weight"], [2, 1, 7, 1, 1])
        XCTAssertEqual(s["s2.pathway0_res0.branch2.a.weight"], [4, 6, 1, 1, 1])
        XCTAssertEqual(s["s5.pathway1_res0.branch2.c.weight"], [32, 8, 1, 1, 1])
        XCTAssertEqual(s["head.projection.weight"], [5, 128 + 32])
    }

    func testArchConfigJSONUsesSnakeCaseKeysAndRoundTrips() throws {
        let config = ArchConfig.preset(named: "slowfast-r50-4x16")!
        let json = try config.jsonString()
        for key in ["\"stage_depths\":[3,4,6,3]", "\"width_per_group\":64", "\"beta_inv\":8", "\"fusion_conv_channel_ratio\":2",
                    "\"fusion_kernel\":5", "\"fusion_norm\":true", "\"temporal_kernels\":[[1,5],[1,3],[1,3],[3,3],[3,3]]",
                    "\"spatial_strides\":[1,2,2,2]", "\"stride_1x1\":false", "\"num_classes\":400", "\"head_activation\":\"softmax\"",
                    "\"num_frames\":32", "\"train_crop\":224", "\"preset\":\"slowfast-r50-4x16\"", "\"model\":\"slowfast\"", "\"alpha\":8"] {
            XCTAssertTrue(json.contains(key), "\(key) not in \(json)")
        }
        XCTAssertEqual(try ArchConfig.fromJSON(json), config)
    }

    func testPresetLookupAndUnknownPresetListsNames() {
        XCTAssertEqual(ArchConfig.presetNames, ["slowfast-r50-8x8", "slowfast-r50-4x16", "slowfast-r101-8x8", "slow-r50-8x8", "resnet50",
                                                "x3d-xs", "x3d-s", "x3d-m", "x3d-l", "videomae-s", "videomae-b", "timesformer-b"])
        for name in ArchConfig.presetNames {
            let config = ArchConfig.preset(named: name)!
            XCTAssertEqual(config.preset, name)
            XCTAssertEqual(config.matchingPresetName, name)
            XCTAssertNoThrow(try config.validate(), name)
        }
        XCTAssertNil(ArchConfig.preset(named: "videomae-h"))
        XCTAssertThrowsError(try ArchConfig.requirePreset("videomae-h")) { error in
            XCTAssertTrue("\(error)".contains("videomae-h") && "\(error)".contains("slowfast-r50-4x16") && "\(error)".contains("x3d-s")
                          && "\(error)".contains("timesformer-b"), "\(error)")
        }
        XCTAssertNil(Fixtures.tiny.matchingPresetName)
    }

    func testValidateListsEveryInconsistency() {
        var config = Fixtures.tiny
        config.betaInv = 3
        config.temporalKernels = [[1], [1, 3]]
        config.numClasses = 0
        XCTAssertThrowsError(try config.validate()) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("beta_inv 3"), text)
            XCTAssertTrue(text.contains("temporal_kernels needs 5"), text)
            XCTAssertTrue(text.contains("num_classes"), text)
        }
    }
}
