// `sfnet convert --from keras` as a library call (the worker runs as the built binary),
// then `sfnet verify` against Keras's own outputs.

import Families
import XCTest
@testable import Convert
import Formats
@testable import Keras
import Networks
import Verify

final class KerasConvertTests: XCTestCase {
    func convert(_ input: String, bnEpsilon: Double? = nil, allowPartial: Bool = false) throws -> (ConvertSummary, String) {
        let dir = try KerasFixtures.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("w.safetensors").path
        var req = ConvertRequest(input: input, output: out)
        req.options.allowPartial = allowPartial
        return (try KerasImport.convert(req, executable: KerasFixtures.binary, bnEpsilon: bnEpsilon), out)
    }

    func assertVerifies(_ weights: String, _ reference: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let report = try Verifier.run(weights: weights, reference: reference)
        XCTAssertTrue(report.passed, report.text(), file: file, line: line)
        for c in report.comparisons { XCTAssertLessThanOrEqual(c.relativeL2, 1e-5, c.name, file: file, line: line) }
    }

    func testKeras3WeightsFileConvertsAndVerifiesAgainstKerasLogits() throws {
        let (summary, out) = try convert(KerasFixtures.keras3)
        XCTAssertEqual(summary.result.naming, .keras)
        XCTAssertEqual(summary.sourceFormat, .hdf5)
        try assertVerifies(out, KerasFixtures.keras3Ref)
    }

    func testKeras2LegacyWeightsFileConvertsAndVerifiesAgainstKerasLogits() throws {
        let (summary, out) = try convert(KerasFixtures.keras2)
        XCTAssertTrue(summary.result.notes.contains { $0.contains("BN epsilon 0.001 assumed") }, "\(summary.result.notes)")
        try assertVerifies(out, KerasFixtures.keras2Ref)
    }

    func testResultRecordsStride1x1AndTheFixtureNeedsIt() throws {
        let (summary, out) = try convert(KerasFixtures.keras3)
        XCTAssertTrue(summary.result.arch.stride1x1)
        XCTAssertTrue(summary.result.notes.contains { $0.hasPrefix("stride_1x1 true") })
        let ck = try CheckpointReader.read(path: out)
        XCTAssertTrue(try ArchConfig.fromJSON(ck.metadataValue("sfnet.arch")!).stride1x1)
        // The same weights with the stride on the 3x3 compute something else: the fixture tells them apart.
        let ref = try Reference.load(path: KerasFixtures.keras3Ref)
        var wrong = ref.arch!
        wrong.stride1x1 = false
        let logits = try EvalNetwork(config: wrong, weights: ck.tensors).forward(ref.inputs).logits
        let c = Comparison.compare("output.logits", got: logits, expected: ref.expected.last!.value, tolerance: 1e-5, isLogits: true)
        XCTAssertGreaterThan(c.relativeL2, 1e-2, "stride on the 3x3 should not reproduce Keras")
    }

    func testReportRecordsTransposeBiasFoldAndEpsilonForEveryTensor() throws {
        let (summary, _) = try convert(KerasFixtures.keras3)
        let report = Dictionary(summary.result.report.map { ($0.name, $0.action) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(report["s2.pathway0_res1.branch2.b.weight"],
                       "renamed from conv2_block2_2_conv/kernel; transposed [kh,kw,in,out]=[3,3,2,2] -> [out,in,kh,kw]; temporal axis added (2D kernel, T=1)")
        XCTAssertEqual(report["s3.pathway0_res0.branch1_bn.running_mean"],
                       "renamed from conv3_block1_0_bn/moving_mean; minus the conv bias conv3_block1_0_conv/bias (folded: mean' = mean - bias)")
        XCTAssertTrue(report["s3.pathway0_res0.branch1_bn.running_var"]!.contains("var' = var + eps_keras - eps"))
        XCTAssertEqual(report["head.projection.weight"], "renamed from predictions/kernel; transposed [in,out]=[64,5] -> [out,in]")
        XCTAssertEqual(report["head.projection.bias"], "renamed from predictions/bias")
        XCTAssertEqual(report.count, summary.result.tensors.count)
        // Every BN gets a bias folded in: each Keras conv has one.
        let bnMeans = summary.result.report.filter { $0.name.hasSuffix("_bn.running_mean") || $0.name.hasSuffix("stem.bn.running_mean") }
        XCTAssertEqual(bnMeans.count, 20)
        XCTAssertTrue(bnMeans.allSatisfy { $0.action.contains("minus the conv bias") })
        XCTAssertTrue(summary.result.dropped.isEmpty)
    }

    func testBiasFoldAndEpsilonAreExactArithmetic() throws {
        // The converted BN running statistics equal the Keras ones shifted by the conv bias / epsilon difference.
        let weights = try HDF5Worker.read(path: KerasFixtures.keras3, executable: KerasFixtures.binary)
        let (summary, _) = try convert(KerasFixtures.keras3)
        func keras(_ layer: String, _ i: Int) -> [Float] { weights.layers.first { $0.name == layer }!.weights[i].tensor.floats() }
        let mean = summary.result.tensors["s2.pathway0_res0.branch2.a_bn.running_mean"]!.floats()
        let vars = summary.result.tensors["s2.pathway0_res0.branch2.a_bn.running_var"]!.floats()
        let kMean = keras("conv2_block1_1_bn", 2), kVar = keras("conv2_block1_1_bn", 3), bias = keras("conv2_block1_1_conv", 1)
        for c in 0 ..< mean.count {
            XCTAssertEqual(mean[c], Float(Double(kMean[c]) - Double(bias[c])))
            XCTAssertEqual(vars[c], Float(Double(kVar[c]) + 1.001e-5 - 1e-5))
        }
        // Kernel [kh,kw,in,out] -> [out,in,1,kh,kw].
        let k = keras("conv1_conv", 0), w = summary.result.tensors["s1.pathway0_stem.conv.weight"]!
        XCTAssertEqual(w.shape, [2, 3, 1, 7, 7])
        let wf = w.floats()
        for (o, i, y, x) in [(0, 0, 0, 0), (1, 2, 3, 5), (1, 1, 6, 2)] {
            XCTAssertEqual(wf[((o * 3 + i) * 7 + y) * 7 + x], k[((y * 7 + x) * 3 + i) * 2 + o])
        }
    }

    func testWrongEpsilonIsVisibleInVerify() throws {
        // Keras 2.2 files used epsilon 1e-3; treating them as 1e-5 does not reproduce Keras.
        let (_, out) = try convert(KerasFixtures.keras2, bnEpsilon: 1e-5)
        let report = try Verifier.run(weights: out, reference: KerasFixtures.keras2Ref)
        XCTAssertFalse(report.passed)
    }

    func testFullSizeKerasResNet50ConvertsAndVerifies() throws {
        let h5 = KerasFixtures.path("full/keras_resnet50.h5"), ref = KerasFixtures.path("full/keras_resnet50_ref.safetensors")
        guard FileManager.default.fileExists(atPath: h5), FileManager.default.fileExists(atPath: ref) else {
            print("SKIPPED testFullSizeKerasResNet50ConvertsAndVerifies: \(h5) absent (KERAS_BACKEND=torch python fixtures/generate_keras.py --full)")
            throw XCTSkip("full-size Keras ResNet50 fixture absent")
        }
        let (summary, out) = try convert(h5)
        XCTAssertEqual(summary.result.counts.parameters, 25_557_032, "Keras's 25,636,712 minus the 79,680 conv bias values folded into BN = torchvision's ResNet-50")
        try assertVerifies(out, ref)
    }
}
