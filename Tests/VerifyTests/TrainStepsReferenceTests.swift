// Three training steps against real PyTorch: fixtures/train/tiny_resnet2d_3steps.safetensors
// (fixtures/generate_train_steps.py) holds the tiny 2D ResNet's parameters and BN
// running statistics after 3 steps of BCE-with-logits + torch.optim.SGD (momentum 0.9,
// nesterov, weight decay 1e-4 with none on BN parameters and biases) at PySlowFast's
// warm-up LRs, batch 4, train mode, dropout off; the weights before are
// tiny_resnet2d_train.safetensors'. sfnet runs the same steps with TrainableNetwork, Train's
// Loss, LRSchedule and SGD, and must land on PyTorch's float64 result: each step's loss,
// all parameters together within relative L2 1e-4, each parameter tensor within
// max(1e-4, 10 x PyTorch float32's own distance to float64), and the same for each
// tensor's update (parameters after minus before: at warm-up LRs they move by about 1e-3
// of their size, so the parameters' own distance would hide a wrong update) and for the
// running statistics (floor 1e-5).

import Families
import Convert
import Foundation
import Finetune
import Formats
import Networks
import Train
import XCTest

/// The network's parameter store as Train's optimizer sees it (no copies: SGD updates it in place).
final class TrainStepsReferenceTests: XCTestCase {
    static func fixture(_ p: String) -> String { VerifyTests.fixture(p) }

    static func relativeL2(_ got: [Float], _ want: [Float]) -> Double {
        var d = 0.0, n = 0.0
        for (g, w) in zip(got, want) { d += (Double(g) - Double(w)) * (Double(g) - Double(w)); n += Double(w) * Double(w) }
        return d.squareRoot() / (n > 0 ? n.squareRoot() : 1)
    }

    static func doubles(_ t: Formats.Tensor) throws -> [Double] {
        guard t.dtype == .f64 else { throw XCTSkip("expected f64, got \(t.dtype)") }
        return (0 ..< t.numel).map { t.data.raw.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) }
    }

    struct Recipe: Decodable {
        struct Optimizer: Decodable { let momentum: Double; let dampening: Double; let nesterov: Bool; let weight_decay: [String: Double] }
        struct Schedule: Decodable { let base_lr: Double; let warmup_start_lr: Double; let warmup_epochs: Double; let max_epoch: Double; let policy: String }
        let steps: Int, batch: Int, iters_per_epoch: Int
        let optimizer: Optimizer
        let no_decay: [String]
        let schedule: Schedule
    }

    /// The model before the steps: tiny_resnet2d_train's weights; running statistics left out there are fresh (0 / 1).
    static func initialModel(config: ArchConfig) throws -> TrainableNetwork {
        let initial = try CheckpointReader.read(path: fixture("train/tiny_resnet2d_train.safetensors"))
        var weights = TensorMap()
        for name in initial.tensors.names where name.hasPrefix("weights.") {
            weights.set(String(name.dropFirst("weights.".count)), initial.tensors[name]!)
        }
        for entry in config.expectedParameters() where weights[entry.name] == nil {
            let n = entry.shape.reduce(1, *)
            if entry.name.hasSuffix(".running_mean") {
                weights.set(entry.name, .float32(shape: entry.shape, values: [Float](repeating: 0, count: n)))
            } else if entry.name.hasSuffix(".running_var") {
                weights.set(entry.name, .float32(shape: entry.shape, values: [Float](repeating: 1, count: n)))
            }
        }
        return try TrainableNetwork(config: config, weights: weights, options: TrainOptions(dropout: 0))
    }

    func testThreeWarmupSGDStepsLandOnPyTorchsParameters() throws {
        let ref = try CheckpointReader.read(path: Self.fixture("train/tiny_resnet2d_3steps.safetensors"))
        let config = try ArchConfig.fromJSON(try XCTUnwrap(ref.metadataValue("sfnet.arch")))
        let recipe = try JSONDecoder().decode(Recipe.self, from: Data(try XCTUnwrap(ref.metadataValue("sfnet.recipe")).utf8))
        let gaps = try JSONDecoder().decode([String: Double].self, from: Data(try XCTUnwrap(ref.metadataValue("sfnet.torch_f32_gap")).utf8))
        let model = try Self.initialModel(config: config)
        let names = model.store.parameterNames
        let before = Dictionary(uniqueKeysWithValues: names.map { ($0, model.store.value($0)!.values) })

        // The recipe, in Train's terms.
        let schedule = LRSchedule(baseLR: recipe.schedule.base_lr, warmupEpochs: recipe.schedule.warmup_epochs,
                                  warmupStartLR: recipe.schedule.warmup_start_lr, maxEpochs: recipe.schedule.max_epoch, policy: .constant)
        XCTAssertEqual(recipe.schedule.policy, "constant")
        let policy = WeightDecayPolicy(weightDecay: Float(try XCTUnwrap(recipe.optimizer.weight_decay["decay"])))
        XCTAssertEqual(recipe.optimizer.weight_decay["no_decay"], 0)
        for name in names {  // the name rules put every parameter in PyTorch's param group
            XCTAssertEqual(policy.decay(for: name, shape: model.store.value(name)!.shape) == 0, recipe.no_decay.contains(name), name)
        }
        let sgd = try SGD(config: SGDConfig(momentum: Float(recipe.optimizer.momentum), dampening: Float(recipe.optimizer.dampening),
                                            nesterov: recipe.optimizer.nesterov, weightDecay: policy))
        let params = StoreParameters(model.store)

        // The inputs: uint8 images normalised as fixtures/generate.py does (float64, rounded once).
        let pixels = try XCTUnwrap(ref.tensors["pixels.x"])
        XCTAssertEqual(pixels.shape.first, recipe.batch)
        let x = FloatTensor(shape: pixels.shape, values: [UInt8](pixels.data.raw).map { Float((Double($0) / 255 - 0.45) / 0.225) })
        let target = try XCTUnwrap(ref.tensors["target"]).floats()
        let k = config.numClasses
        let wantLR = try Self.doubles(try XCTUnwrap(ref.tensors["lr"])), wantLoss = try Self.doubles(try XCTUnwrap(ref.tensors["loss"]))
        XCTAssertEqual(wantLR.count, recipe.steps)

        var worstLoss = 0.0
        for step in 0 ..< recipe.steps {
            let lr = schedule.lr(epoch: step / recipe.iters_per_epoch, iteration: step % recipe.iters_per_epoch,
                                 itersPerEpoch: recipe.iters_per_epoch)
            XCTAssertEqual(lr, wantLR[step], accuracy: 1e-15, "LR of step \(step + 1)")
            model.zeroGradients()
            let logits = try model.forward([x])
            let loss = try Loss.bceWithLogits(logits: logits.values, targets: target, batch: recipe.batch, classes: k)
            let err = abs(Double(loss.loss) - wantLoss[step]) / abs(wantLoss[step])
            XCTAssertLessThanOrEqual(err, max(1e-5, 10 * (gaps["loss"] ?? 0)), "loss of step \(step + 1): \(loss.loss) vs \(wantLoss[step])")
            worstLoss = max(worstLoss, err)
            try model.backward(FloatTensor(shape: [recipe.batch, k], values: loss.dLogits))
            try sgd.step(params, lr: lr)
        }

        // Every parameter after the last step, and its update over the 3 steps.
        var all: (got: [Float], want: [Float]) = ([], []), allUpdates: (got: [Float], want: [Float]) = ([], [])
        var worst: [String: (ratio: Double, err: Double, name: String)] = [:]
        func check(_ kind: String, _ key: String, _ got: [Float], _ want: [Float], floor: Double) {
            let err = Self.relativeL2(got, want), allowed = max(floor, 10 * (gaps[key] ?? 0))
            XCTAssertLessThanOrEqual(err, allowed, "\(key): relative L2 \(err) (PyTorch float32: \(gaps[key] ?? 0))")
            if err / allowed > (worst[kind]?.ratio ?? -1) { worst[kind] = (err / allowed, err, key) }
        }
        for name in names {
            let want = try XCTUnwrap(ref.tensors["params_after3." + name], "no params_after3.\(name)")
            let got = model.store.value(name)!
            XCTAssertEqual(got.shape, want.shape, name)
            check("parameter", "params_after3." + name, got.values, want.floats(), floor: 1e-4)
            let update = zip(got.values, before[name]!).map { $0 - $1 }
            let wantUpdate = try XCTUnwrap(ref.tensors["update3." + name], "no update3.\(name)").floats()
            check("update", "update3." + name, update, wantUpdate, floor: 1e-4)
            all.got += got.values; all.want += want.floats()
            allUpdates.got += update; allUpdates.want += wantUpdate
        }
        XCTAssertEqual(names.count, ref.tensors.names.filter { $0.hasPrefix("params_after3.") }.count, "every parameter checked")
        let whole = Self.relativeL2(all.got, all.want), wholeUpdate = Self.relativeL2(allUpdates.got, allUpdates.want)
        XCTAssertLessThanOrEqual(whole, 1e-4, "all parameters after \(recipe.steps) steps")
        XCTAssertLessThanOrEqual(wholeUpdate, 1e-4, "all updates over \(recipe.steps) steps")

        // BN running statistics after 3 train-mode forwards, and the batch counters.
        for name in model.store.bufferNames {
            let want = try XCTUnwrap(ref.tensors["running." + name], "no running.\(name)")
            check("running statistic", "running." + name, model.store.value(name)!.values, want.floats(), floor: 1e-5)
        }
        XCTAssertEqual(model.store.bufferNames.count, ref.tensors.names.filter { $0.hasPrefix("running.") }.count)
        XCTAssertTrue(model.store.batchesTracked.values.allSatisfy { $0 == Int64(recipe.steps) }, "\(recipe.steps) batches counted per BN")

        print("3 SGD steps vs PyTorch float64: loss worst relative error \(worstLoss); all parameters \(whole), all updates \(wholeUpdate); "
              + worst.keys.sorted().map { "worst \($0) \(worst[$0]!.err) (\(worst[$0]!.ratio) of allowed) at \(worst[$0]!.name)" }.joined(separator: "; "))
    }
}
