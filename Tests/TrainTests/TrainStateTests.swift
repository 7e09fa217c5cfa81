// Training checkpoints: one atomic safetensors file with weights, optimizer
// state and the run state; a run resumed from it continues bit for bit.

import XCTest
import Formats
@testable import Train

final class TrainStateTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-trainstate-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// A small model: a conv weight, a BN pair, the head; gradients drawn from `rng`.
    func model() throws -> ParameterSet {
        let set = ParameterSet()
        var r = TrainRNG(seed: 99)
        func vals(_ n: Int) -> [Float] { (0 ..< n).map { _ in Float.random(in: -0.1 ... 0.1, using: &r) } }
        try set.add("s1.pathway0_stem.conv.weight", shape: [2, 3, 1, 3, 3], values: vals(54))
        try set.add("s1.pathway0_stem.bn.weight", shape: [2], values: [1, 1])
        try set.add("s1.pathway0_stem.bn.bias", shape: [2], values: [0, 0])
        try set.add("head.projection.weight", shape: [3, 2], values: vals(6))
        try set.add("head.projection.bias", shape: [3], values: vals(3))
        return set
    }

    func drawGrads(_ set: ParameterSet, _ rng: inout TrainRNG) {
        for p in set.parameters { p.grads = p.grads.map { _ in Float.random(in: -1 ... 1, using: &rng) } }
    }

    func config() -> TrainConfig {
        TrainConfig(epochs: 3, batchSize: 2, itersPerEpoch: 2, seed: 7, options: ["train": "train.csv"])
    }

    func weights(_ set: ParameterSet) -> [(name: String, tensor: Tensor)] {
        set.valueTensors() + [("s1.pathway0_stem.bn.running_mean", Tensor.float32(shape: [2], values: [0.5, -0.5]))]
    }

    func testResumedRunContinuesBitForBitLikeAnUninterruptedOne() throws {
        let cfg = config()
        // Uninterrupted: 6 steps.
        let straight = try model()
        let sgd = try SGD(config: cfg.sgd)
        var rng = TrainRNG(seed: cfg.seed)
        for it in 0 ..< 6 {
            drawGrads(straight, &rng)
            try sgd.step(straight, lr: cfg.lr(atIteration: it))
        }

        // Interrupted after epoch 1 (4 steps), checkpointed, resumed in a "new process".
        let first = try model()
        let sgd1 = try SGD(config: cfg.sgd)
        var rng1 = TrainRNG(seed: cfg.seed)
        for it in 0 ..< 4 {
            drawGrads(first, &rng1)
            try sgd1.step(first, lr: cfg.lr(atIteration: it))
        }
        let state = TrainState(epoch: 2, iteration: 4, rng: ["data": rng1.state], bestMAP: 0.5, bestEpoch: 1,
                               history: [EpochRecord(epoch: 0, trainLoss: 0.7, lr: 0.001, valMAP: 0.4, seconds: 1.5),
                                         EpochRecord(epoch: 1, trainLoss: 0.6, lr: 0.004, valMAP: 0.5, valTop1: 0.5, seconds: 1.25)],
                               config: cfg)
        let file = path(TrainCheckpoint.fileName(epoch: 2))
        try TrainCheckpoint.write(to: file, weights: weights(first), optimizer: sgd1, state: state, metadata: [("sfnet.arch", "{\"model\":\"tiny\"}")])

        let loaded = try TrainCheckpoint.read(file)
        XCTAssertEqual(loaded.state, state)
        XCTAssertEqual(loaded.weights.names, weights(first).map(\.name), "weights only, in order, no optimizer entries")
        XCTAssertEqual(loaded.metadata.first { $0.key == "sfnet.arch" }?.value, "{\"model\":\"tiny\"}")
        let resumed = try model()
        for p in resumed.parameters { p.values = try XCTUnwrap(loaded.weights[p.name]).floats() }
        let sgd2 = try loaded.makeOptimizer(params: resumed)
        XCTAssertEqual(sgd2.stepCount, 4)
        var rng2 = try TrainRNG(state: try XCTUnwrap(loaded.state.rng["data"]))
        for it in loaded.state.iteration ..< 6 {
            drawGrads(resumed, &rng2)
            try sgd2.step(resumed, lr: cfg.lr(atIteration: it))
        }
        for (a, b) in zip(straight.parameters, resumed.parameters) {
            XCTAssertEqual(a.values, b.values, "\(a.name) differs after resuming")
        }
        XCTAssertEqual(sgd.momentumBuffers, sgd2.momentumBuffers)
    }

    func testCheckpointIsAValidSafetensorsFileWithStateInMetadata() throws {
        let set = try model()
        let sgd = try SGD()
        for p in set.parameters { p.grads = [Float](repeating: 0.5, count: p.values.count) }
        try sgd.step(set, lr: 0.1)
        let file = path("c.safetensors")
        try TrainCheckpoint.write(to: file, weights: weights(set), optimizer: sgd, state: TrainState(config: config()))
        let raw = try CheckpointReader.read(path: file)
        XCTAssertEqual(raw.format, .safetensors)
        XCTAssertNotNil(raw.tensors["optimizer.momentum.head.projection.weight"])
        XCTAssertEqual(raw.tensors["optimizer.momentum.head.projection.weight"]?.shape, [3, 2])
        let keys = Set(raw.metadata.map(\.key))
        XCTAssertTrue(keys.isSuperset(of: ["sfnet.format", "sfnet.optimizer", "sfnet.train_state"]), "\(keys)")
        let json = try XCTUnwrap(raw.metadata.first { $0.key == "sfnet.train_state" }?.value)
        XCTAssertTrue(json.contains("\"epoch\":0") && json.contains("\"schedule\""), json)
        // Nothing but the file itself is left in the directory (the temporary was renamed).
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["c.safetensors"])
    }

    func testFailedWriteLeavesTheExistingCheckpointUntouched() throws {
        let set = try model()
        let sgd = try SGD()
        let file = path("c.safetensors")
        try TrainCheckpoint.write(to: file, weights: weights(set), optimizer: sgd, state: TrainState(config: config()))
        let before = try Data(contentsOf: URL(fileURLWithPath: file))
        XCTAssertThrowsError(try TrainCheckpoint.write(to: file, weights: weights(set), optimizer: sgd,
                                                       state: TrainState(epoch: 1, config: config()), overwrite: false)) {
            XCTAssertTrue("\($0)".contains(file) && "\($0)".contains("already exists"), "\($0)")
        }
        XCTAssertThrowsError(try TrainCheckpoint.write(to: file, weights: [("optimizer.x", Tensor.float32(shape: [1], values: [0]))],
                                                       optimizer: sgd, state: TrainState(config: config()))) {
            XCTAssertTrue("\($0)".contains("tensor 'optimizer.x'"), "\($0)")
        }
        XCTAssertThrowsError(try TrainCheckpoint.write(to: path("missing-dir/c.safetensors"), weights: weights(set), optimizer: sgd,
                                                       state: TrainState(config: config())))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: file)), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["c.safetensors"])
    }

    func testLatestSkipsATruncatedNewerCheckpoint() throws {
        let set = try model()
        let sgd = try SGD()
        XCTAssertNil(TrainCheckpoint.latest(in: dir.path))
        for e in [1, 2] {
            try TrainCheckpoint.write(to: path(TrainCheckpoint.fileName(epoch: e)), weights: weights(set), optimizer: sgd,
                                      state: TrainState(epoch: e, config: config()))
        }
        XCTAssertEqual(TrainCheckpoint.latest(in: dir.path)?.loaded.state.epoch, 2)
        // A damaged epoch-3 file (copied in from elsewhere, say) is skipped, not trusted.
        let good = try Data(contentsOf: URL(fileURLWithPath: path(TrainCheckpoint.fileName(epoch: 2))))
        try good.prefix(good.count / 2).write(to: URL(fileURLWithPath: path(TrainCheckpoint.fileName(epoch: 3))))
        try Data("x".utf8).write(to: URL(fileURLWithPath: path("checkpoint-epochABC.safetensors")))
        let latest = try XCTUnwrap(TrainCheckpoint.latest(in: dir.path))
        XCTAssertEqual(latest.loaded.state.epoch, 2)
        XCTAssertTrue(latest.path.hasSuffix("checkpoint-epoch002.safetensors"))
    }

    func testNonCheckpointsAndBadStateAreClearErrors() throws {
        let sgd = try SGD()
        let plain = path("opt.safetensors")
        try sgd.save(to: plain)
        XCTAssertThrowsError(try TrainCheckpoint.read(plain)) {
            XCTAssertTrue("\($0)".contains("not a training checkpoint: no 'sfnet.train_state' metadata"), "\($0)")
            XCTAssertTrue("\($0)".hasPrefix(plain), "\($0)")
        }
        let bad = path("bad.safetensors")
        try SafetensorsWriter.write([], metadata: [("sfnet.train_state", "{\"format\":1,\"epoch\":\"two\"}")], to: bad, overwrite: true)
        XCTAssertThrowsError(try TrainCheckpoint.read(bad)) {
            XCTAssertTrue("\($0)".contains("metadata 'sfnet.train_state'") && "\($0)".contains("epoch"), "\($0)")
        }
        let future = path("future.safetensors")
        var json = TrainState(config: config()).json()
        json = json.replacingOccurrences(of: "\"format\":1", with: "\"format\":9")
        try SafetensorsWriter.write([], metadata: [("sfnet.train_state", json)], to: future, overwrite: true)
        XCTAssertThrowsError(try TrainCheckpoint.read(future)) { XCTAssertTrue("\($0)".contains("format 9"), "\($0)") }
        // Counters at the bound read; one past it (and Int.max, which a resumed step would overflow) are refused.
        for (iteration, ok) in [(TrainState.maxCount, true), (TrainState.maxCount + 1, false), (Int.max, false)] {
            let f = path("iter\(iteration).safetensors")
            let j = TrainState(iteration: 0, config: config()).json().replacingOccurrences(of: "\"iteration\":0", with: "\"iteration\":\(iteration)")
            XCTAssertTrue(j.contains("\"iteration\":\(iteration)"), j)
            try SafetensorsWriter.write([], metadata: [("sfnet.train_state", j)], to: f, overwrite: true)
            if ok { XCTAssertNoThrow(try TrainCheckpoint.read(f)) } else {
                XCTAssertThrowsError(try TrainCheckpoint.read(f)) { XCTAssertTrue("\($0)".contains("past \(TrainState.maxCount)"), "\($0)") }
            }
        }
        XCTAssertThrowsError(try TrainCheckpoint.read(path("nope.safetensors"))) { XCTAssertTrue("\($0)".contains("nope.safetensors"), "\($0)") }
    }

    func testRNGStateRoundTripsThroughJSONAndContinuesTheSequence() throws {
        var a = TrainRNG(seed: 12345)
        for _ in 0 ..< 10 { _ = a.next() }
        let data = try JSONEncoder().encode(a.state)
        XCTAssertTrue(String(decoding: data, as: UTF8.self).hasPrefix("[\""), "hex strings, not lossy JSON numbers")
        var b = try TrainRNG(state: try JSONDecoder().decode(RNGState.self, from: data))
        for _ in 0 ..< 100 { XCTAssertEqual(a.next(), b.next()) }
        XCTAssertThrowsError(try TrainRNG(state: RNGState([0, 0, 0, 0])))
        XCTAssertThrowsError(try JSONDecoder().decode(RNGState.self, from: Data("[\"xyz\"]".utf8)))
        XCTAssertNotEqual(TrainRNG(seed: 1).state, TrainRNG(seed: 2).state)
    }

    func testConfigDefaultsAreTheStudyRecipeAndValidate() throws {
        let c = TrainConfig(itersPerEpoch: 113)
        XCTAssertEqual(c.epochs, 20)
        XCTAssertEqual(c.batchSize, 8)
        XCTAssertEqual(c.loss, .bce)
        XCTAssertEqual(c.sgd.momentum, 0.9)
        XCTAssertTrue(c.sgd.nesterov)
        XCTAssertEqual(c.sgd.weightDecay.weightDecay, 1e-4)
        XCTAssertEqual(c.schedule, LRSchedule.study(maxEpochs: 20))
        XCTAssertEqual(c.lr(atIteration: 0), 0.00085)
        XCTAssertEqual(c.lr(atIteration: 5 * 113), 0.0375)
        try c.validate()
        XCTAssertThrowsError(try TrainConfig(batchSize: 0, itersPerEpoch: 1).validate()) { XCTAssertTrue("\($0)".contains("option batch"), "\($0)") }
        let data = try JSONEncoder().encode(TrainState(config: c))
        XCTAssertEqual(try JSONDecoder().decode(TrainState.self, from: data), TrainState(config: c))
    }
}
