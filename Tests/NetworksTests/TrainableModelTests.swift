// The trainable network's behaviour beyond gradient parity: freezing by name
// pattern (head-only training runs no backbone backward), frozen BN statistics
// (the step's forward equals the eval network's), buffer reuse across steps,
// seeded dropout, export, and typed errors for bad inputs.

import Convert
import Foundation
import Formats
import XCTest
@testable import Networks

final class TrainableModelTests: XCTestCase {
    static let reference = ModelReferenceTests.fixtures.appendingPathComponent("train/tiny_slowfast_8x8_train.safetensors").path

    private func tiny(_ options: TrainOptions = TrainOptions(dropout: 0)) throws -> (TrainableNetwork, [FloatTensor], FloatTensor) {
        let ref = try CheckpointReader.read(path: Self.reference)
        let (model, inputs) = try TrainStepReferenceTests.load(ref, options: options)
        return (model, inputs, ModelReferenceTests.floatTensor(ref.tensors["grad_output.logits"]!))
    }

    func testHeadOnlyFreezingSkipsTheBackboneBackward() throws {
        let (full, inputs, r) = try tiny()
        _ = try full.forward(inputs)
        try full.backward(r)
        XCTAssertGreaterThan(full.convolutionsBackward, 40)
        let (head, _, _) = try tiny(TrainOptions(frozen: ["s*"], dropout: 0))
        XCTAssertEqual(head.store.trainableNames, ["head.projection.weight", "head.projection.bias"])
        _ = try head.forward(inputs)
        try head.backward(r)
        XCTAssertEqual(head.convolutionsBackward, 0, "head-only training runs no convolution backward")
        XCTAssertNil(head.store.gradient("s5.pathway0_res0.branch2.c.weight"))
        for name in ["head.projection.weight", "head.projection.bias"] {
            XCTAssertLessThanOrEqual(ModelReferenceTests.relativeL2(head.store.gradient(name)!.values, full.store.gradient(name)!.values), 1e-6, name)
        }
    }

    func testFreezingAnEarlyStageStillTrainsWhatFollows() throws {
        let (model, inputs, r) = try tiny(TrainOptions(frozen: ["s1.*", "s1_fuse.*", "s2.pathway1_*"], dropout: 0))
        let (full, _, _) = try tiny()
        _ = try model.forward(inputs)
        try model.backward(r)
        _ = try full.forward(inputs)
        try full.backward(r)
        XCTAssertNil(model.store.gradient("s1.pathway0_stem.conv.weight"))
        XCTAssertNil(model.store.gradient("s2.pathway1_res1.branch2.b.weight"))
        for name in model.store.trainableNames {
            XCTAssertLessThanOrEqual(ModelReferenceTests.relativeL2(model.store.gradient(name)!.values, full.store.gradient(name)!.values),
                                     1e-6, name)
        }
        XCTAssertLessThan(model.convolutionsBackward, full.convolutionsBackward)
    }

    func testFrozenBatchNormStatisticsMatchTheEvalNetworkAndUpdateNothing() throws {
        let (model, inputs, r) = try tiny(TrainOptions(freezeBatchNormStatistics: true, dropout: 0))
        let before = model.store.bufferNames.map { model.store.value($0)!.values }
        let eval = try model.evalModel().forward(inputs).logits
        let logits = try model.forward(inputs)
        XCTAssertLessThanOrEqual(ModelReferenceTests.relativeL2(logits.values, eval.values), 1e-5)
        try model.backward(r)
        XCTAssertEqual(model.store.bufferNames.map { model.store.value($0)!.values }, before)
        XCTAssertTrue(model.store.batchesTracked.values.allSatisfy { $0 == 0 })
        XCTAssertNotNil(model.store.gradient("s1.pathway0_stem.bn.weight"))
    }

    func testSecondStepReusesTheActivationBuffers() throws {
        let (model, inputs, r) = try tiny()
        for _ in 0..<2 {
            model.zeroGradients()
            _ = try model.forward(inputs)
            try model.backward(r)
        }
        let held = model.pool.heldBytes, peak = model.pool.peakBytesInUse
        model.zeroGradients()
        _ = try model.forward(inputs)
        try model.backward(r)
        XCTAssertEqual(model.pool.heldBytes, held, "a step of the same shapes allocates nothing new")
        XCTAssertEqual(model.pool.peakBytesInUse, peak)
        XCTAssertGreaterThan(held, 0)
    }

    func testDropoutMasksAreSeededAndChangeTheLogits() throws {
        let (a, inputs, _) = try tiny(TrainOptions(dropout: 0.5, seed: 7))
        let (b, _, _) = try tiny(TrainOptions(dropout: 0.5, seed: 7))
        let (plain, _, _) = try tiny()
        let la = try a.forward(inputs), lb = try b.forward(inputs), lp = try plain.forward(inputs)
        XCTAssertEqual(la.values, lb.values, "same seed, same masks")
        XCTAssertNotEqual(la.values, lp.values)
        XCTAssertNotEqual(try a.forward(inputs).values, la.values, "the next step draws a new mask")
    }

    func testExportedWeightsRebuildTheSameNetwork() throws {
        let (model, inputs, r) = try tiny()
        _ = try model.forward(inputs)
        try model.backward(r)
        model.sgdStep(learningRate: 0.01)
        let exported = model.exportWeights()
        XCTAssertEqual(exported.names, model.config.expectedParameters().map(\.name))
        let copy = try TrainableNetwork(config: model.config, weights: exported, options: TrainOptions(dropout: 0))
        XCTAssertEqual(copy.store.batchesTracked, model.store.batchesTracked)
        XCTAssertEqual(try copy.forward(inputs).values, try model.forward(inputs).values)
    }

    func testBadInputsAreTypedErrors() throws {
        let (model, inputs, r) = try tiny()
        XCTAssertThrowsError(try model.backward(r)) { XCTAssertTrue("\($0)".contains("without a forward pass"), "\($0)") }
        let small = FloatTensor(zeros: [2, 3, 8, 64, 64])
        XCTAssertThrowsError(try model.forward([inputs[0], small])) { XCTAssertTrue("\($0)".contains("input 1 (fast)"), "\($0)") }
        XCTAssertThrowsError(try model.forward([inputs[1]])) { XCTAssertTrue("\($0)".contains("takes 2 input"), "\($0)") }
        _ = try model.forward(inputs)
        XCTAssertThrowsError(try model.backward(FloatTensor(zeros: [2, 7]))) { XCTAssertTrue("\($0)".contains("dLogits"), "\($0)") }
    }

    func testGlobPatternsMatchCanonicalNames() {
        XCTAssertTrue(globMatch("s*", "s2.pathway0_res0.branch2.a.weight"))
        XCTAssertFalse(globMatch("s*", "head.projection.weight"))
        XCTAssertTrue(globMatch("*_bn.*", "s2.pathway0_res0.branch2.a_bn.weight"))
        XCTAssertTrue(globMatch("s?.pathway1_*", "s4.pathway1_res2.branch2.b.weight"))
        XCTAssertFalse(globMatch("s?.pathway1_*", "s4.pathway0_res2.branch2.b.weight"))
        XCTAssertTrue(globMatch("head.projection.bias", "head.projection.bias"))
    }
}
