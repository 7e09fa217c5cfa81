// `verify` against the references real PyTorch made: every committed reference
// passes on weights that went through `convert`, and damaged weights or
// references fail, naming where the computation diverges.

import Convert
import Foundation
import XCTest
@testable import Formats
@testable import Verify

final class VerifyTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static func fixture(_ p: String) -> String { root.appendingPathComponent("fixtures/" + p).path }

    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-verify-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// Converts a checkpoint with the real pipeline and returns the native file's path.
    func convert(_ fixture: String) throws -> String {
        let out = dir.appendingPathComponent(URL(fileURLWithPath: fixture).deletingPathExtension().lastPathComponent + ".safetensors").path
        _ = try ConvertPipeline.run(ConvertRequest(input: Self.fixture(fixture), output: out))
        return out
    }

    func testEveryCommittedReferencePassesOnConvertedWeights() throws {
        let cases = [
            ("torch/tiny_pyslowfast.pyth", "reference/tiny_slowfast_8x8_ref.safetensors", 12),
            ("torch/tiny_pytorchvideo.pyth", "reference/tiny_slowfast_8x8_ref.safetensors", 12),
            ("torch/tiny_legacy.pth", "reference/tiny_slowfast_8x8_ref.safetensors", 12),
            ("reference/tiny_slowfast_4x16.pyth", "reference/tiny_slowfast_4x16_ref.safetensors", 12),
            ("reference/tiny_slow_only.pyth", "reference/tiny_slow_only_ref.safetensors", 7),
            ("reference/tiny_resnet2d.pyth", "reference/tiny_resnet2d_ref.safetensors", 7),
        ]
        for (weights, reference, outputs) in cases {
            let native = try convert(weights)
            let r = try Verifier.run(weights: native, reference: Self.fixture(reference))
            XCTAssertTrue(r.passed, "\(weights) vs \(reference):\n\(r.text())")
            XCTAssertEqual(r.comparisons.count, outputs, reference)
            let logits = r.comparisons.last!
            XCTAssertEqual(logits.name, "output.logits")
            XCTAssertEqual(logits.top1Agreement, 1)
            XCTAssertLessThanOrEqual(logits.relativeL2, 1e-5)
            try? FileManager.default.removeItem(atPath: native)
        }
    }

    /// Rewrites a safetensors file with one tensor changed by `edit`.
    func rewrite(_ path: String, to out: String, tensor name: String, edit: (UnsafeMutablePointer<Float>, Int) -> Void) throws {
        let ck = try CheckpointReader.read(path: path)
        var items: [SafetensorsWriter.Item] = []
        for (n, t) in ck.tensors.ordered {
            if n == name {
                let copy = OwnedBuffer(copying: t.data.raw)
                edit(copy.pointer.assumingMemoryBound(to: Float.self), t.numel)
                items.append(.init(name: n, tensor: Tensor(dtype: t.dtype, shape: t.shape, data: copy.bytes)))
            } else {
                items.append(.init(name: n, tensor: t))
            }
        }
        try SafetensorsWriter.write(items, metadata: ck.metadata.filter { $0.key.hasPrefix("sfnet.") }, to: out, overwrite: true)
    }

    func testPerturbedReferenceFailsAndNamesTheOutput() throws {
        let native = try convert("torch/tiny_pyslowfast.pyth")
        let bad = dir.appendingPathComponent("bad_ref.safetensors").path
        try rewrite(Self.fixture("reference/tiny_slowfast_8x8_ref.safetensors"), to: bad, tensor: "activation.s3.pathway1") { p, n in
            for i in stride(from: 0, to: n, by: 7) { p[i] += 0.01 }
        }
        let r = try Verifier.run(weights: native, reference: bad)
        XCTAssertFalse(r.passed)
        XCTAssertEqual(r.comparisons.filter { !$0.passed }.map(\.name), ["activation.s3.pathway1"])
        XCTAssertTrue(r.divergence?.contains("activation.s3.pathway1") ?? false, r.divergence ?? "")
    }

    func testDamagedWeightsFailFromTheStageThatUsesThem() throws {
        let native = try convert("torch/tiny_pyslowfast.pyth")
        let bad = dir.appendingPathComponent("bad.safetensors").path
        // Every tap of one conv shifted (a single tap can sit on a channel the ReLU zeroes).
        try rewrite(native, to: bad, tensor: "s4.pathway0_res0.branch2.a.weight") { p, n in for i in 0 ..< n { p[i] += 0.05 } }
        let r = try Verifier.run(weights: bad, reference: Self.fixture("reference/tiny_slowfast_8x8_ref.safetensors"))
        XCTAssertFalse(r.passed)
        let firstBad = r.comparisons.first { !$0.passed }?.name
        XCTAssertEqual(firstBad, "activation.s4.pathway0", r.text())
        XCTAssertTrue(r.comparisons.filter { ["activation.s1.pathway0", "activation.s3.pathway1"].contains($0.name) }.allSatisfy(\.passed))
        XCTAssertTrue(r.divergence?.contains("activation.s4.pathway0") ?? false, r.divergence ?? "no divergence")
    }

    func testNaNInWeightsNeverPasses() throws {
        let native = try convert("torch/tiny_pyslowfast.pyth")
        let bad = dir.appendingPathComponent("nan.safetensors").path
        try rewrite(native, to: bad, tensor: "s2.pathway1_res0.branch2.a.weight") { p, _ in p[0] = .nan }
        let r = try Verifier.run(weights: bad, reference: Self.fixture("reference/tiny_slowfast_8x8_ref.safetensors"))
        XCTAssertFalse(r.passed)
        XCTAssertNotNil(r.comparisons.first { $0.name == "output.logits" }?.firstNonFinite)
        XCTAssertTrue(r.divergence?.contains("non-finite") ?? false, r.divergence ?? "")
        XCTAssertEqual(r.nonFiniteWeights, ["s2.pathway1_res0.branch2.a.weight"])
        XCTAssertTrue(r.text().contains("s2.pathway1_res0.branch2.a.weight"), r.text())
    }

    func testPassWritesARecordThatTracksTheWeights() throws {
        let native = try convert("torch/tiny_pyslowfast.pyth")
        let r = try Verifier.run(weights: native, reference: Self.fixture("reference/tiny_slowfast_8x8_ref.safetensors"))
        XCTAssertTrue(r.passed)
        try Verifier.writeRecord(r)
        let record = Verifier.passingRecord(for: native)
        XCTAssertEqual(record?["weights_sha256"]?.stringValue, try SHA256.hex(file: native))
        XCTAssertEqual(record?["reference_sha256"]?.stringValue, try SHA256.hex(file: Self.fixture("reference/tiny_slowfast_8x8_ref.safetensors")))
        // Changing the weights invalidates the record.
        try rewrite(native, to: native, tensor: "head.projection.bias") { p, _ in p[0] += 1 }
        XCTAssertNil(Verifier.passingRecord(for: native))
    }

    func testComparisonMetrics() {
        // Hand-computed: expected [3, 4] (norm 5), got [3, 4.5]: diff norm 0.5 -> rel L2 0.1.
        let e = FloatTensorBox.make([1, 2], [3, 4]), g = FloatTensorBox.make([1, 2], [3, 4.5])
        let c = Comparison.compare("output.logits", got: g, expected: e, tolerance: 0.2, isLogits: true)
        XCTAssertEqual(c.relativeL2, 0.1, accuracy: 1e-12)
        XCTAssertEqual(c.maxAbsError, 0.5, accuracy: 1e-12)
        XCTAssertEqual(c.top1Agreement, 1)
        XCTAssertTrue(c.passed)
        let flipped = Comparison.compare("output.logits", got: FloatTensorBox.make([1, 2], [5, 4]), expected: e, tolerance: 1, isLogits: true)
        XCTAssertEqual(flipped.top1Agreement, 0)
        XCTAssertFalse(flipped.passed, "a different top-1 never passes")
        let inf = Comparison.compare("x", got: FloatTensorBox.make([2], [.infinity, 1]), expected: FloatTensorBox.make([2], [1, 1]), tolerance: 1e9, isLogits: false)
        XCTAssertFalse(inf.passed)
        XCTAssertEqual(inf.firstNonFinite, 0)
    }
}

import Networks
enum FloatTensorBox {
    static func make(_ shape: [Int], _ values: [Float]) -> FloatTensor { FloatTensor(shape: shape, values: values) }
}
