// The reference forms `sfnet verify` takes from producers (Reference.swift,
// Verifier.resolveArch, TrainStepCheck): inputs plus any non-empty subset of outputs,
// logits optional; no sfnet.arch (the weights' is used) or one that must agree with
// the weights'; float64 expected values compared in double precision; train steps as
// target + output.loss (BCE or CE, sfnet computing the loss). Most forms are built at
// test time from the committed PyTorch fixtures; the BCE/CE train steps need their own
// PyTorch-made files (fixtures/generate_train_grads.py), since the gradients differ per loss.

import Families
import Convert
import Foundation
import Networks
import XCTest
@testable import Formats
@testable import Verify

final class ReferenceFormsTests: XCTestCase {
    static func fixture(_ p: String) -> String { VerifyTests.fixture(p) }
    static let slowFastRef = fixture("reference/tiny_slowfast_8x8_ref.safetensors")

    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-forms-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func convert(_ fixture: String) throws -> String {
        let out = dir.appendingPathComponent(UUID().uuidString + ".safetensors").path
        _ = try ConvertPipeline.run(ConvertRequest(input: Self.fixture(fixture), output: out))
        return out
    }

    /// A copy of `path` with each tensor passed through `tensor` (nil drops it) and the metadata through `metadata`.
    func rewrite(_ path: String, _ name: String, tensor: (String, Formats.Tensor) -> Formats.Tensor? = { $1 },
                 metadata: ([(key: String, value: String)]) -> [(key: String, value: String)] = { $0 }) throws -> String {
        let ck = try CheckpointReader.read(path: path)
        let items = ck.tensors.ordered.compactMap { e in tensor(e.name, e.tensor).map { SafetensorsWriter.Item(name: e.name, tensor: $0) } }
        let out = dir.appendingPathComponent(name).path
        try SafetensorsWriter.write(items, metadata: metadata(Self.sfnetMetadata(ck)).map { ($0.key, $0.value) }, to: out, overwrite: true)
        return out
    }

    /// The file's own metadata (the reader adds format facts such as "data offset" beside it).
    static func sfnetMetadata(_ ck: Checkpoint) -> [(key: String, value: String)] { ck.metadata.filter { $0.key.hasPrefix("sfnet.") } }

    static func withoutArch(_ m: [(key: String, value: String)]) -> [(key: String, value: String)] { m.filter { $0.key != "sfnet.arch" } }

    /// `t` with every value scaled by (1 + eps) at every 7th element (float dtypes).
    static func perturbed(_ t: Formats.Tensor, by eps: Double) -> Formats.Tensor {
        let f = DTypeCast.cast(t, to: .f64)
        let copy = OwnedBuffer(copying: f.data.raw)
        let p = copy.pointer.assumingMemoryBound(to: Double.self)
        for i in stride(from: 0, to: f.numel, by: 7) { p[i] = p[i] * (1 + eps) + eps }
        return DTypeCast.cast(Formats.Tensor(dtype: .f64, shape: t.shape, data: copy.bytes), to: t.dtype)
    }

    // MARK: Inference references

    func testActivationOnlyReferenceWithoutLogitsPasses() throws {
        let ref = try rewrite(Self.slowFastRef, "acts.safetensors") { n, t in n == "output.logits" ? nil : t }
        let r = try Verifier.run(weights: try convert("torch/tiny_pyslowfast.pyth"), reference: ref)
        XCTAssertTrue(r.passed, r.text())
        XCTAssertEqual(r.comparisons.count, 11)
        XCTAssertFalse(r.comparisons.contains { $0.name == "output.logits" })
        XCTAssertTrue(r.comparisons.contains { $0.name == "activation.head.pool" })
    }

    func testStageOutputsOnlyWithoutArchUseTheWeightsArchAndFailWhenPerturbed() throws {
        // Only stage outputs, no sfnet.arch: the weights' arch runs (its recorded clip, 32 frames at 224, is a
        // convert default; with no head output compared the head pool is sized to the inputs).
        let keep: (String) -> Bool = { $0.hasPrefix("input.") || $0 == "activation.s3.pathway0" || $0 == "activation.s5.pathway1" }
        let ref = try rewrite(Self.slowFastRef, "stages.safetensors", tensor: { n, t in keep(n) ? t : nil }, metadata: Self.withoutArch)
        let weights = try convert("torch/tiny_pyslowfast.pyth")
        let r = try Verifier.run(weights: weights, reference: ref)
        XCTAssertTrue(r.passed, r.text())
        XCTAssertEqual(r.comparisons.map(\.name), ["activation.s3.pathway0", "activation.s5.pathway1"])
        XCTAssertTrue(r.notes.contains { $0.contains("from the weights' sfnet.arch") }, "\(r.notes)")
        XCTAssertTrue(r.notes.contains { $0.contains("head pool is sized to the inputs") }, "\(r.notes)")
        let bad = try rewrite(ref, "stages_bad.safetensors") { n, t in n == "activation.s5.pathway1" ? Self.perturbed(t, by: 1e-3) : t }
        let f = try Verifier.run(weights: weights, reference: bad)
        XCTAssertFalse(f.passed)
        XCTAssertEqual(f.comparisons.filter { !$0.passed }.map(\.name), ["activation.s5.pathway1"])
    }

    func testReferenceWithInputsOnlyOrUnknownEntriesIsRefused() throws {
        let weights = try convert("torch/tiny_pyslowfast.pyth")
        let bare = try rewrite(Self.slowFastRef, "bare.safetensors") { n, t in n.hasPrefix("input.") ? t : nil }
        XCTAssertThrowsError(try Verifier.run(weights: weights, reference: bare)) { e in
            XCTAssertTrue("\(e)".contains("no output to compare") && "\(e)".contains("activation.head.pool"), "\(e)")
        }
        let odd = try rewrite(Self.slowFastRef, "odd.safetensors") { n, t in t }
        let ck = try CheckpointReader.read(path: odd)
        var items = ck.tensors.ordered.map { SafetensorsWriter.Item(name: $0.name, tensor: $0.tensor) }
        items.append(.init(name: "output.probabilities", tensor: ck.tensors["output.logits"]!))
        try SafetensorsWriter.write(items, metadata: Self.sfnetMetadata(ck).map { ($0.key, $0.value) }, to: odd, overwrite: true)
        XCTAssertThrowsError(try Verifier.run(weights: weights, reference: odd)) { e in
            XCTAssertTrue("\(e)".contains("unknown entries output.probabilities") && "\(e)".contains("output.logits, activation.sN.pathwayP"), "\(e)")
        }
    }

    func testReferenceArchDisagreeingWithTheWeightsIsAnErrorNamingBoth() throws {
        let weights = try convert("torch/tiny_pyslowfast.pyth")
        let ref = try rewrite(Self.slowFastRef, "classes.safetensors", metadata: { m in
            m.map { $0.key == "sfnet.arch" ? ($0.key, $0.value.replacingOccurrences(of: "\"num_classes\":5", with: "\"num_classes\":7")) : $0 }
        })
        XCTAssertThrowsError(try Verifier.run(weights: weights, reference: ref)) { e in
            XCTAssertTrue("\(e)".contains("reference sfnet.arch custom (slowfast R50) disagrees with the weights' custom (slowfast R50)")
                          && "\(e)".contains("num_classes 7 vs 5"), "\(e)")
        }
        // A label and the clip the head pools over are not disagreements (the reference's clip is used).
        let relabelled = try rewrite(Self.slowFastRef, "label.safetensors", metadata: { m in
            m.map { $0.key == "sfnet.arch" ? ($0.key, $0.value.replacingOccurrences(of: "\"dropout\":0.5", with: "\"dropout\":0.2")) : $0 }
        })
        let r = try Verifier.run(weights: weights, reference: relabelled)
        XCTAssertTrue(r.passed, r.text())
        XCTAssertTrue(r.notes.contains { $0.contains("the reference's clip (num_frames 8, train_crop 32)") }, "\(r.notes)")
    }

    func testFloat64ReferenceIsComparedInDoublePrecision() throws {
        let weights = try convert("torch/tiny_pyslowfast.pyth")
        let ref = try rewrite(Self.slowFastRef, "f64.safetensors") { _, t in DTypeCast.cast(t, to: .f64) }
        let loaded = try Reference.load(path: ref)
        XCTAssertEqual(loaded.dtypeDescription, "float64")
        XCTAssertNotNil(loaded.expected.last?.float64)
        let r = try Verifier.run(weights: weights, reference: ref)
        XCTAssertTrue(r.passed, r.text())
        XCTAssertEqual(r.comparisons.count, 12)
        XCTAssertTrue(r.text().contains("reference dtype: float64"), r.text())
        XCTAssertEqual(r.json()["reference_dtype"]?.stringValue, "float64")
        let f32 = try Verifier.run(weights: weights, reference: Self.slowFastRef)
        XCTAssertEqual(f32.referenceDType, "float32")
        // A float64 error far below float32's resolution still shows: the expected values are not rounded first.
        let one = FloatTensor(shape: [2], values: [1, 2])
        let c = Comparison.compare("x", got: one, expected: [1 + 1e-12, 2], shape: [2], tolerance: 1e-5, isLogits: false)
        XCTAssertEqual(c.relativeL2, 1e-12 / 5.0.squareRoot(), accuracy: 1e-16)
        XCTAssertGreaterThan(c.relativeL2, 0)
        // And a perturbed float64 reference fails.
        let bad = try rewrite(ref, "f64_bad.safetensors") { n, t in n == "activation.s2.pathway0" ? Self.perturbed(t, by: 1e-3) : t }
        let f = try Verifier.run(weights: weights, reference: bad)
        XCTAssertEqual(f.comparisons.filter { !$0.passed }.map(\.name), ["activation.s2.pathway0"], f.text())
    }

    // MARK: Boring video

    func testBoringVideoReferenceWithoutArchUsesTheWeightsArch() throws {
        let boring = Self.fixture("boring/tiny_resnet50_tv_boring_ref.safetensors")
        var options = ConvertOptions(arch: try Reference.load(path: boring).arch, seed: 7)
        options.inflate = .center
        let weights = dir.appendingPathComponent("inflated.safetensors").path
        _ = try ConvertPipeline.run(ConvertRequest(input: Self.fixture("imagenet/tiny_resnet50_tv.pth"), output: weights, options: options))
        let ref = try rewrite(boring, "boring_noarch.safetensors", metadata: Self.withoutArch)
        XCTAssertNil(try CheckpointReader.read(path: ref).metadataValue("sfnet.arch"))
        let r = try Verifier.run(weights: weights, reference: ref)
        XCTAssertTrue(r.passed, r.text())
        XCTAssertEqual(r.comparisons.count, 24)
        XCTAssertTrue(r.notes.contains { $0.contains("from the weights' sfnet.arch") }, "\(r.notes)")
        // Neither carrying one is an error that says so.
        let bare = try rewrite(weights, "bare.safetensors", metadata: Self.withoutArch)
        XCTAssertThrowsError(try Verifier.run(weights: bare, reference: ref)) { e in
            XCTAssertTrue("\(e)".contains("neither the reference nor the weights carry sfnet.arch"), "\(e)")
        }
    }

    // MARK: Train steps

    /// The train reference's own weights (`weights.*`, fresh running statistics filled in) as a native file.
    func nativeWeights(of ref: String) throws -> String {
        let ck = try CheckpointReader.read(path: ref)
        var items: [SafetensorsWriter.Item] = []
        var have = Set<String>()
        for (name, t) in ck.tensors.ordered where name.hasPrefix("weights.") {
            let n = String(name.dropFirst("weights.".count))
            items.append(SafetensorsWriter.Item(name: n, tensor: t, dtype: t.dtype.isFloatingPoint ? .f32 : nil))
            have.insert(n)
        }
        let config = try ArchConfig.fromJSON(try XCTUnwrap(ck.metadataValue("sfnet.arch")))
        for entry in config.expectedParameters() where !have.contains(entry.name)
            && (entry.name.hasSuffix(".running_mean") || entry.name.hasSuffix(".running_var")) {
            let count = entry.shape.reduce(1, *)
            let values = [Float](repeating: entry.name.hasSuffix("running_var") ? 1 : 0, count: count)
            let buffer = OwnedBuffer(count: count * 4)
            values.withUnsafeBytes { buffer.pointer.copyMemory(from: $0.baseAddress!, byteCount: count * 4) }
            items.append(SafetensorsWriter.Item(name: entry.name, tensor: Formats.Tensor(dtype: .f32, shape: entry.shape, data: buffer.bytes)))
        }
        let out = dir.appendingPathComponent(UUID().uuidString + ".safetensors").path
        try SafetensorsWriter.write(items, metadata: [("sfnet.format", "1"), ("sfnet.naming", "pyslowfast"), ("sfnet.arch", try config.jsonString())],
                                    to: out, overwrite: false)
        return out
    }

    func trainFixture(_ name: String) throws -> String {
        let path = Self.fixture("train/" + name)
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("SKIPPED: \(path) missing (fixtures/generate_train_grads.py)") }
        return path
    }

    func checkTrainStep(_ fixture: String, loss: String, dtype: String) throws {
        let ref = try trainFixture(fixture)
        let ck = try CheckpointReader.read(path: ref)
        XCTAssertNil(ck.tensors["grad_output.logits"], "the target + output.loss form")
        let weights = try nativeWeights(of: ref)
        let r = try Verifier.run(weights: weights, reference: ref)
        XCTAssertTrue(r.passed, "\(fixture)\n\(r.text())")
        XCTAssertEqual(r.referenceDType, dtype)
        XCTAssertTrue(r.comparisons.contains { $0.name == "output.loss (\(loss), mean)" && $0.passed }, r.text())
        XCTAssertEqual(r.comparisons.filter { $0.name.hasPrefix("grad.") }.count, ck.tensors.names.filter { $0.hasPrefix("grad.") }.count)
        XCTAssertTrue(r.comparisons.contains { $0.name.hasPrefix("running.") })
        // Without sfnet.arch in the reference the weights' arch runs, with the same verdict.
        let file = URL(fileURLWithPath: fixture).lastPathComponent
        let noArch = try rewrite(ref, "noarch_" + file, metadata: Self.withoutArch)
        XCTAssertTrue(try Verifier.run(weights: weights, reference: noArch).passed)
        // A perturbed gradient fails, and so does a perturbed loss.
        let g = try XCTUnwrap(ck.tensors.names.first { $0.hasPrefix("grad.") && $0.hasSuffix("branch2.b.weight") })
        for name in [g, "output.loss"] {
            let bad = try rewrite(ref, "bad_" + file) { n, t in n == name ? Self.perturbed(t, by: 1e-2) : t }
            let f = try Verifier.run(weights: weights, reference: bad)
            XCTAssertFalse(f.passed, name)
            XCTAssertEqual(f.comparisons.filter { !$0.passed }.count, 1, "\(name)\n\(f.text())")
        }
    }

    func testBCETrainStepWithTargetAndLossPasses() throws {
        try checkTrainStep("tiny_resnet2d_bce_train.safetensors", loss: "BCE", dtype: "float32")
    }

    /// X3D (fixtures/x3d/generate_x3d.py): channel-wise convolutions, squeeze-excitation, Swish and lin_5
    /// trained against pytorchvideo's float64 step.
    func testX3DTrainStepPasses() throws {
        try checkTrainStep("../x3d/tiny_x3d_bce_train.safetensors", loss: "BCE", dtype: "float32")
    }

    func testCrossEntropyTrainStepWithClassIdsPasses() throws {
        let ref = try trainFixture("tiny_resnet2d_ce_train.safetensors")
        XCTAssertFalse(try XCTUnwrap(CheckpointReader.read(path: ref).tensors["target"]).dtype.isFloatingPoint, "class ids")
        try checkTrainStep("tiny_resnet2d_ce_train.safetensors", loss: "CE", dtype: "float32")
    }

    func testFloat64TrainStepReferencePasses() throws {
        try checkTrainStep("tiny_resnet2d_bce_train_f64.safetensors", loss: "BCE", dtype: "float64")
    }

    func testTargetAndLossFormBackpropagatesTheLossNotR() throws {
        // The sum(logits * R) reference relabelled as target + output.loss (the BCE value it stores): the loss
        // matches, but its gradients are R's, not BCE's, so they must fail.
        let src = Self.fixture("train/tiny_resnet2d_train.safetensors")
        let weights = try nativeWeights(of: src)
        let relabelled = try rewrite(src, "relabelled.safetensors") { n, t in n == "grad_output.logits" ? nil : t }
        let ck = try CheckpointReader.read(path: relabelled)
        let items = ck.tensors.ordered.map { SafetensorsWriter.Item(name: $0.name == "output.loss_bce" ? "output.loss" : $0.name, tensor: $0.tensor) }
        try SafetensorsWriter.write(items, metadata: Self.sfnetMetadata(ck).map { ($0.key, $0.value) }, to: relabelled, overwrite: true)
        let r = try Verifier.run(weights: weights, reference: relabelled)
        XCTAssertFalse(r.passed)
        XCTAssertTrue(r.comparisons.contains { $0.name == "output.loss (BCE, mean)" && $0.passed }, r.text())
        XCTAssertGreaterThan(r.comparisons.filter { $0.name.hasPrefix("grad.") && !$0.passed }.count, 10, r.text())
        // The R form itself still passes.
        XCTAssertTrue(try Verifier.run(weights: weights, reference: src).passed)
        // An unknown entry in a train reference is an error listing the accepted names.
        let odd = try rewrite(src, "odd.safetensors") { _, t in t }
        var oddItems = try CheckpointReader.read(path: odd).tensors.ordered.map { SafetensorsWriter.Item(name: $0.name, tensor: $0.tensor) }
        oddItems.append(.init(name: "grad.no_such_layer.weight", tensor: ck.tensors["output.logits"]!))
        try SafetensorsWriter.write(oddItems, metadata: Self.sfnetMetadata(ck).map { ($0.key, $0.value) }, to: odd, overwrite: true)
        XCTAssertThrowsError(try Verifier.run(weights: weights, reference: odd)) { e in
            XCTAssertTrue("\(e)".contains("grad.no_such_layer.weight") && "\(e)".contains("target + output.loss"), "\(e)")
        }
    }
    /// The video transformers' train steps (fixtures/transformers/generate_transformers.py: mean BCE, float64 gradients,
    /// per-gradient PyTorch float32 gaps) pass the gradient criterion on the converted Hugging Face folders; a perturbed
    /// gradient, loss or attention weight gradient fails.
    func testTransformerTrainStepsPass() throws {
        for (folder, probe) in [("tiny_videomae", "attention.attention.query.weight"), ("tiny_timesformer", "temporal_dense.weight")] {
            let weights = dir.appendingPathComponent(folder + ".safetensors").path
            _ = try ConvertPipeline.run(ConvertRequest(input: Self.fixture("transformers/" + folder), output: weights))
            let ref = Self.fixture("transformers/\(folder)_bce_train.safetensors")
            let ck = try CheckpointReader.read(path: ref)
            let r = try Verifier.run(weights: weights, reference: ref)
            XCTAssertTrue(r.passed, "\(folder)\n\(r.text())")
            XCTAssertTrue(r.comparisons.contains { $0.name == "output.loss (BCE, mean)" && $0.passed }, r.text())
            XCTAssertEqual(r.comparisons.filter { $0.name.hasPrefix("grad.") }.count, ck.tensors.names.filter { $0.hasPrefix("grad.") }.count)
            XCTAssertTrue(r.comparisons.contains { $0.name == "gradients, median vs PyTorch f32" && $0.passed }, r.text())
            let g = try XCTUnwrap(ck.tensors.names.first { $0.hasPrefix("grad.") && $0.hasSuffix(probe) })
            for name in [g, "output.loss"] {
                let bad = try rewrite(ref, "bad_\(folder).safetensors") { n, t in n == name ? Self.perturbed(t, by: 1e-2) : t }
                let b = try Verifier.run(weights: weights, reference: bad)
                XCTAssertFalse(b.passed, "\(folder): perturbed \(name) must fail\n\(b.text())")
            }
        }
    }
}
