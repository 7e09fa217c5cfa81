// Caffe2 (PySlowFast .pkl), Detectron R-50.pkl and torchvision ResNet-50 sources:
// real files written by fixtures/generate_sources.py, read with CheckpointReader and
// compared byte for byte with the expected canonical tensors.

import XCTest
import Formats
@testable import Convert

enum SourceFixtures {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures")

    static func path(_ relative: String) -> String { dir.appendingPathComponent(relative).path }

    static func read(_ relative: String) throws -> Checkpoint {
        let p = path(relative)
        guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("fixture \(relative) missing: run fixtures/generate_sources.py") }
        return try CheckpointReader.read(path: p)
    }

    static func action(_ result: ConversionResult, _ name: String) -> String {
        result.report.first { $0.name == name }?.action ?? "<no entry>"
    }

    static func reason(_ result: ConversionResult, _ name: String) -> String? {
        result.dropped.first { $0.name == name }?.reason
    }
}

final class SourceNamingTests: XCTestCase {
    private func assertCaffe2(_ file: String, extraDropped: [String]) throws {
        let checkpoint = try SourceFixtures.read(file)
        XCTAssertEqual(checkpoint.containerKey, "blobs")
        let result = try convertTensors(checkpoint, options: ConvertOptions())
        XCTAssertEqual(result.naming, .caffe2)
        let expected = try SourceFixtures.read("torch/tiny_expected.safetensors").tensors
        XCTAssertEqual(Set(result.tensors.names), Set(expected.names))
        for (name, want) in expected.ordered {
            if name.hasSuffix(".num_batches_tracked") {
                // Caffe2 files have none: filled 0, as PyTorch loads such state_dicts.
                XCTAssertEqual(result.tensors[name]?.data.array, [UInt8](repeating: 0, count: 8), name)
            } else {
                Fixtures.assertSameBytes(result.tensors[name], want, name)
            }
        }
        XCTAssertEqual(SourceFixtures.action(result, "s2.pathway0_res0.branch1.weight"),
                       "renamed from res2_0_branch1_w; trailing unit dims appended [16,6]->[16,6,1,1,1]")
        XCTAssertEqual(SourceFixtures.action(result, "s3_fuse.conv_f2s.weight"), "renamed from t_res3_3_branch2c_bn_subsample_w")
        XCTAssertEqual(SourceFixtures.action(result, "s1.pathway1_stem.bn.running_var"), "renamed from t_res_conv1_bn_riv")
        for name in ["conv1_w_momentum", "t_conv1_w_momentum", "pred_w_momentum"] {
            XCTAssertEqual(SourceFixtures.reason(result, name), "optimizer momentum (Caffe2 training state)", name)
        }
        XCTAssertEqual(SourceFixtures.reason(result, "lr"), "learning rate (Caffe2 training state)")
        for name in extraDropped {
            XCTAssertNotNil(SourceFixtures.reason(result, name), name)
        }
        XCTAssertEqual(result.dropped.count, 4 + extraDropped.count)
        XCTAssertEqual(result.counts.initialized, expected.names.filter { $0.hasSuffix(".num_batches_tracked") }.count)
    }

    func testCaffe2PickleFromPython3ConvertsToCanonicalBytes() throws {
        try assertCaffe2("caffe2/tiny_slowfast_c2.pkl", extraDropped: [])
        let checkpoint = try SourceFixtures.read("caffe2/tiny_slowfast_c2.pkl")
        XCTAssertTrue(checkpoint.otherEntries.contains { $0.key == "model_iter" }, "\(checkpoint.otherEntries)")
    }

    func testCaffe2PickleWithPython2StringsConvertsToCanonicalBytes() throws {
        try assertCaffe2("caffe2/tiny_slowfast_c2_py2.pkl", extraDropped: ["model_iter"])
    }

    func testCaffe2WeightsWithA4x16ConfigNameTheVariant() throws {
        let checkpoint = try SourceFixtures.read("caffe2/tiny_slowfast_c2.pkl")
        var arch = Fixtures.tiny
        arch.alpha = 8
        arch.fusionKernel = 5
        XCTAssertThrowsError(try convertTensors(checkpoint, options: ConvertOptions(arch: arch))) { error in
            XCTAssertTrue("\(error)".contains("8x8 weights with an 4x16 config?"), "\(error)")
        }
    }

    func testTorchvisionResNet50RenamesToCanonical2DLayout() throws {
        let result = try convertTensors(try SourceFixtures.read("imagenet/tiny_resnet50_tv.pth"), options: ConvertOptions())
        XCTAssertEqual(result.naming, .torchvision)
        XCTAssertEqual(result.arch.model, .resnet)
        XCTAssertEqual(result.arch.widthPerGroup, 2)
        XCTAssertEqual(result.arch.numClasses, 10)
        let expected = try SourceFixtures.read("imagenet/tiny_resnet50_tv_expected.safetensors").tensors
        XCTAssertEqual(Set(result.tensors.names), Set(expected.names))
        for (name, want) in expected.ordered { Fixtures.assertSameBytes(result.tensors[name], want, name) }
        XCTAssertEqual(SourceFixtures.action(result, "s1.pathway0_stem.conv.weight"),
                       "renamed from conv1.weight; temporal axis added (2D kernel, T=1)")
        XCTAssertEqual(SourceFixtures.action(result, "s5.pathway0_res0.branch1_bn.running_mean"), "renamed from layer4.0.downsample.1.running_mean")
        XCTAssertEqual(SourceFixtures.action(result, "head.projection.weight"), "renamed from fc.weight")
        XCTAssertEqual(result.counts.initialized, 0)
        XCTAssertTrue(result.dropped.isEmpty)
    }

    func testDetectronAffineBNGetsRunningMeanZeroAndVarOne() throws {
        let checkpoint = try SourceFixtures.read("imagenet/tiny_R-50.pkl")
        XCTAssertNil(checkpoint.containerKey)
        let result = try convertTensors(checkpoint, options: ConvertOptions())
        XCTAssertEqual(result.naming, .detectron)
        XCTAssertEqual(result.arch.model, .resnet)
        let expected = try SourceFixtures.read("imagenet/tiny_R-50_expected.safetensors").tensors
        XCTAssertEqual(Set(result.tensors.names), Set(expected.names))
        for (name, want) in expected.ordered { Fixtures.assertSameBytes(result.tensors[name], want, name) }
        XCTAssertEqual(SourceFixtures.action(result, "s3.pathway0_res1.branch2.b_bn.running_var"),
                       "initialized 1 (affine-only BN in file (no running statistics))")
        XCTAssertEqual(SourceFixtures.action(result, "s1.pathway0_stem.bn.running_mean"),
                       "initialized 0 (affine-only BN in file (no running statistics))")
        XCTAssertEqual(SourceFixtures.action(result, "head.projection.weight"), "renamed from fc1000_w")
        XCTAssertEqual(result.dropped.map(\.name), ["conv1_b"])
        XCTAssertTrue(result.dropped[0].reason.contains("stem conv bias"))
    }

    func testCaffe2AndDetectronBlobsAreToldApartByKeySet() throws {
        // Slow-only Caffe2 blobs (no t_ pathway) still carry running statistics and a pred head.
        XCTAssertEqual(try Naming.detect(["conv1_w", "res_conv1_bn_s", "res_conv1_bn_rm", "res2_0_branch2a_w"]), .caffe2)
        XCTAssertEqual(try Naming.detect(["conv1_w", "res_conv1_bn_s", "res_conv1_bn_b", "res2_0_branch2a_w", "pred_w"]), .caffe2)
        XCTAssertEqual(try Naming.detect(["t_conv1_w", "conv1_w", "res_conv1_bn_s"]), .caffe2)
        XCTAssertEqual(try Naming.detect(["conv1_w", "res_conv1_bn_s", "res_conv1_bn_b", "res2_0_branch2a_w"]), .detectron)
        XCTAssertEqual(try Naming.detect(["conv1_w", "conv1_b", "res_conv1_bn_s", "fc1000_w"]), .detectron)
        XCTAssertEqual(try Naming.detect(["conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "fc.weight"]), .torchvision)
    }

    func testTrainingStateBlobsAreNotWeights() {
        XCTAssertNotNil(Naming.caffe2.ignoredReason("res2_0_branch2a_w_momentum"))
        XCTAssertNotNil(Naming.caffe2.ignoredReason("model_iter"))
        XCTAssertNotNil(Naming.caffe2.ignoredReason("lr"))
        XCTAssertNil(Naming.caffe2.ignoredReason("res2_0_branch2a_w"))
        XCTAssertNil(Naming.torchvision.ignoredReason("lr"))
    }
}
