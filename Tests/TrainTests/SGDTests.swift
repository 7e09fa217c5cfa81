// SGD against torch.optim.SGD (fixtures/train/sgd_ref.safetensors: 3 steps with the
// study's warm-up learning rates, nesterov on/off, weight decay by param group,
// clipping, a frozen parameter), state save/restore, and the rules by name.

import XCTest
import Formats
@testable import Train

final class SGDTests: XCTestCase {
    struct Variant { let name: String; let nesterov: Bool; let weightDecay: Float; let clip: Float?; let frozen: [String] }

    func loadFixture() throws -> (Checkpoint, JSONValue, [(String, [Int], String)], [Variant]) {
        let f = try TrainFixtures.load("train/sgd_ref.safetensors")
        let meta = try TrainFixtures.metadataJSON(f, "sfnet.sgd")
        guard case .array(let ps)? = meta["params"], case .object(let vs)? = meta["variants"] else {
            XCTFail("sfnet.sgd metadata lacks params/variants"); throw XCTSkip()
        }
        let params = ps.map { p -> (String, [Int], String) in
            guard case .array(let dims)? = p["shape"] else { return ("", [], "") }
            return (p["name"]!.stringValue!, dims.map { $0.intValue! }, p["group"]!.stringValue!)
        }
        let variants = vs.map { name, v -> Variant in
            var wd = 0.0, clip: Float?
            if case .number(let d, _, _)? = v["weight_decay"] { wd = d }
            if case .number(let c, _, _)? = v["clip_norm"] { clip = Float(c) }
            var frozen: [String] = []
            if case .array(let fs)? = v["frozen"] { frozen = fs.compactMap(\.stringValue) }
            return Variant(name: name, nesterov: v["nesterov"] == .bool(true), weightDecay: Float(wd), clip: clip, frozen: frozen)
        }
        return (f, meta, params, variants)
    }

    func initialSet(_ f: Checkpoint, _ params: [(String, [Int], String)], prefix: String = "initial", frozen: [String] = []) throws -> ParameterSet {
        let set = ParameterSet()
        for (name, shape, _) in params {
            try set.add(name, shape: shape, values: try f.floats("\(prefix).\(name)"), trainable: !frozen.contains(name))
        }
        return set
    }

    func setGrads(_ set: ParameterSet, _ f: Checkpoint, step: Int) throws {
        for p in set.parameters { p.grads = try f.floats("grad.step\(step).\(p.name)") }
    }

    func config(_ v: Variant) -> SGDConfig {
        SGDConfig(momentum: 0.9, dampening: 0, nesterov: v.nesterov,
                  weightDecay: WeightDecayPolicy(weightDecay: v.weightDecay, bnWeightDecay: 0, zeroDecayOnBiases: true),
                  clipGradNorm: v.clip)
    }

    func testDefaultRulesPutFixtureParametersInTorchsParamGroups() throws {
        let (_, _, params, _) = try loadFixture()
        let policy = WeightDecayPolicy(weightDecay: 1e-4)
        for (name, shape, group) in params {
            XCTAssertEqual(WeightDecayPolicy.isBatchNorm(name), group == "bn", name)
            XCTAssertEqual(policy.decay(for: name, shape: shape), group == "decay" ? 1e-4 : 0, name)
        }
    }

    /// Every parameter of the tiny SlowFast 8x8 (canonical names), grouped by torch module type
    /// (fixtures/train/tiny_param_groups.json, fixtures/generate_train_step.py): the name rules agree.
    func testNameRulesAgreeWithTorchModuleTypesOnEverySlowFastParameter() throws {
        struct Groups: Decodable { let bn: [String]; let zero: [String]; let decay: [String] }
        let g = try JSONDecoder().decode(Groups.self, from: Data(contentsOf: URL(fileURLWithPath: TrainFixtures.path("train/tiny_param_groups.json"))))
        XCTAssertEqual(g.bn.count + g.zero.count + g.decay.count, 332)  // 662 state entries - 110 BNs x 3 buffers
        let policy = WeightDecayPolicy()
        for n in g.bn {
            XCTAssertTrue(WeightDecayPolicy.isBatchNorm(n), n)
            XCTAssertEqual(policy.decay(for: n, shape: [4]), 0, n)
        }
        XCTAssertEqual(g.zero, ["head.projection.bias"])
        for n in g.zero { XCTAssertEqual(policy.decay(for: n, shape: [5]), 0, n) }
        for n in g.decay {
            XCTAssertFalse(WeightDecayPolicy.isBatchNorm(n), n)
            XCTAssertEqual(policy.decay(for: n, shape: [4, 4, 1, 1, 1]), 1e-4, n)
        }
    }

    func testThreeStepsMatchTorchOptimSGDForEveryVariant() throws {
        let (f, _, params, variants) = try loadFixture()
        XCTAssertEqual(Set(variants.map(\.name)), ["plain", "nesterov", "nesterov_wd", "clip_frozen"])
        let lrs = try f.doubles("lr")
        XCTAssertEqual(lrs.count, 3)
        // The fixture's schedule is the study's warm-up at 2 iterations per epoch.
        let schedule = LRSchedule.study(maxEpochs: 20)
        for (k, lr) in lrs.enumerated() { XCTAssertEqual(schedule.lr(epoch: 0, iteration: k, itersPerEpoch: 2), lr, accuracy: 1e-15) }
        for v in variants {
            let set = try initialSet(f, params, frozen: v.frozen)
            let sgd = try SGD(config: config(v))
            for step in 1 ... 3 {
                try setGrads(set, f, step: step)
                let before = set.parameters.map(\.values)
                let info = try sgd.step(set, lr: lrs[step - 1])
                XCTAssertEqual(info.updated, params.count - v.frozen.count)
                if v.clip != nil { XCTAssertLessThan(info.clipCoefficient, 1, "\(v.name): the fixture's gradients exceed the clip norm") }
                for (i, p) in set.parameters.enumerated() {
                    let want = try f.floats("\(v.name).step\(step).\(p.name)")
                    assertClose(p.values, want, relL2: 1e-6, "\(v.name) step \(step) \(p.name)")
                    // The update itself (a few % of the value) must match too, not only the sum.
                    let got = zip(p.values, before[i]).map { Double($0) - Double($1) }
                    let wantDelta = zip(want, before[i]).map { Double($0) - Double($1) }
                    if v.frozen.contains(p.name) {
                        XCTAssertEqual(p.values, before[i], "frozen \(p.name) changed")
                    } else {
                        assertClose(got, wantDelta, relL2: 1e-4, "\(v.name) step \(step) update of \(p.name)")
                    }
                }
            }
            XCTAssertEqual(sgd.stepCount, 3)
            XCTAssertEqual(sgd.momentumBuffers.count, params.count - v.frozen.count, "frozen parameters get no momentum buffer")
        }
    }

    func testStateSavedAfterTwoStepsResumesOntoTorchsThirdStep() throws {
        let (f, _, params, variants) = try loadFixture()
        let lrs = try f.doubles("lr")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-sgd-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for v in variants where v.frozen.isEmpty {
            let set = try initialSet(f, params)
            let sgd = try SGD(config: config(v))
            for step in 1 ... 2 {
                try setGrads(set, f, step: step)
                try sgd.step(set, lr: lrs[step - 1])
            }
            let path = dir.appendingPathComponent("\(v.name).safetensors").path
            try sgd.save(to: path)
            // A new process: parameters from the fixture's step 2, optimizer from the file.
            let resumed = try initialSet(f, params, prefix: "\(v.name).step2")
            let back = try SGD.load(from: path, params: resumed)
            XCTAssertEqual(back.config, sgd.config)
            XCTAssertEqual(back.stepCount, 2)
            XCTAssertEqual(back.momentumBuffers, sgd.momentumBuffers)
            try setGrads(resumed, f, step: 3)
            try back.step(resumed, lr: lrs[2])
            for p in resumed.parameters {
                assertClose(p.values, try f.floats("\(v.name).step3.\(p.name)"), relL2: 1e-6, "resumed \(v.name) \(p.name)")
            }
        }
    }

    func testFirstStepUsesTheDecayedGradientAsMomentumBufferAndPlainSGDHasNone() throws {
        let set = ParameterSet()
        let w = try set.add("head.projection.weight", shape: [1, 2], values: [1, -2])  // 2-D: decayed
        w.grads = [0.5, 0.25]
        let sgd = try SGD(config: SGDConfig(momentum: 0.9, dampening: 0.5, nesterov: false, weightDecay: WeightDecayPolicy(weightDecay: 0.1)))
        try sgd.step(set, lr: 0.5)
        // d = g + 0.1 p = [0.6, 0.05]; first buffer = d (no dampening on the first step); p -= 0.5 d
        let first = try XCTUnwrap(sgd.momentumBuffers["head.projection.weight"])
        for (got, want) in zip(first + w.values, [0.6, 0.05, 0.7, -2.025] as [Float]) { XCTAssertEqual(got, want, accuracy: 1e-7) }
        try sgd.step(set, lr: 0.5)
        // d = [0.5 + 0.07, 0.25 - 0.2025]; buf = 0.9 buf + 0.5 d
        let d: [Float] = [0.5 + 0.1 * 0.7, 0.25 + 0.1 * -2.025]
        let buf: [Float] = [0.9 * 0.6 + 0.5 * d[0], 0.9 * 0.05 + 0.5 * d[1]]
        for j in 0 ..< 2 { XCTAssertEqual(sgd.momentumBuffers["head.projection.weight"]![j], buf[j], accuracy: 1e-7) }

        let plainSet = ParameterSet()
        let b = try plainSet.add("head.projection.bias", shape: [1], values: [1])
        b.grads = [2]
        let plain = try SGD(config: SGDConfig(momentum: 0, nesterov: false))
        try plain.step(plainSet, lr: 0.25)
        XCTAssertEqual(b.values, [0.5])
        XCTAssertTrue(plain.momentumBuffers.isEmpty)
    }

    func testNonFiniteGradientIsRefusedBeforeAnyParameterChanges() throws {
        let set = ParameterSet()
        let a = try set.add("a.weight", shape: [2], values: [1, 2])
        let b = try set.add("b.weight", shape: [1], values: [3])
        a.grads = [1, 1]
        b.grads = [.nan]
        let sgd = try SGD()
        XCTAssertThrowsError(try sgd.step(set, lr: 0.1)) { XCTAssertTrue("\($0)".contains("parameter 'b.weight'"), "\($0)") }
        XCTAssertEqual(a.values, [1, 2])
        XCTAssertEqual(sgd.stepCount, 0)
        XCTAssertTrue(sgd.momentumBuffers.isEmpty)
    }

    func testClippingScalesByMaxNormOverTotalNorm() throws {
        let set = ParameterSet()
        let a = try set.add("a.weight", shape: [2], values: [0, 0])
        let frozen = try set.add("f.weight", shape: [1], values: [0], trainable: false)
        a.grads = [3, 4]
        frozen.grads = [100]   // not counted
        let sgd = try SGD(config: SGDConfig(momentum: 0, nesterov: false, weightDecay: WeightDecayPolicy(weightDecay: 0), clipGradNorm: 1))
        let info = try sgd.step(set, lr: 1)
        XCTAssertEqual(info.gradNorm, 5)
        XCTAssertEqual(info.clipCoefficient, Float(1 / (5 + 1e-6)), accuracy: 1e-7)
        XCTAssertEqual(a.values[0], -0.6, accuracy: 1e-6)
        XCTAssertEqual(a.values[1], -0.8, accuracy: 1e-6)
        XCTAssertEqual(a.grads, [3, 4], "gradients are read, not rewritten")
        XCTAssertEqual(frozen.values, [0])
    }

    func testInvalidSettingsAndMismatchedStateAreTypedErrors() throws {
        XCTAssertThrowsError(try SGD(config: SGDConfig(momentum: 0, nesterov: true))) {
            XCTAssertTrue("\($0)".contains("option nesterov"), "\($0)")
        }
        XCTAssertThrowsError(try SGD(config: SGDConfig(clipGradNorm: 0))) { XCTAssertTrue("\($0)".contains("clip-grad-norm"), "\($0)") }
        XCTAssertThrowsError(try SGD().step(ParameterSet(), lr: .nan))

        let set = ParameterSet()
        let w = try set.add("head.projection.weight", shape: [2, 3], values: [Float](repeating: 1, count: 6))
        w.grads = [Float](repeating: 0.1, count: 6)
        let sgd = try SGD()
        try sgd.step(set, lr: 0.1)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-sgd-mismatch-\(getpid()).safetensors").path
        defer { unlink(path) }
        try sgd.save(to: path)
        let other = ParameterSet()
        try other.add("head.projection.weight", shape: [3, 2], values: [Float](repeating: 1, count: 6))
        XCTAssertThrowsError(try SGD.load(from: path, params: other)) {
            XCTAssertTrue("\($0)".contains("tensor 'optimizer.momentum.head.projection.weight': file has [2,3], model expects [3,2]"), "\($0)")
            XCTAssertTrue("\($0)".hasPrefix(path), "\($0)")
        }
        let unrelated = ParameterSet()
        try unrelated.add("s1.pathway0_stem.conv.weight", shape: [2, 3], values: [Float](repeating: 1, count: 6))
        XCTAssertThrowsError(try SGD.load(from: path, params: unrelated)) {
            XCTAssertTrue("\($0)".contains("a parameter the model does not have"), "\($0)")
        }
        XCTAssertThrowsError(try SGD.load(from: "/nonexistent/opt.safetensors")) { XCTAssertTrue("\($0)".contains("/nonexistent/opt.safetensors"), "\($0)") }
    }

    func testNamePatternsAndBatchNormNames() {
        XCTAssertTrue(NamePattern("head.*").matches("head.projection.weight"))
        XCTAssertTrue(NamePattern("*_bn.*").matches("s2.pathway0_res0.branch2.a_bn.bias"))
        XCTAssertTrue(NamePattern("s?.pathway1*").matches("s3.pathway1_res2.branch2.b.weight"))
        XCTAssertFalse(NamePattern("head.*").matches("s1.head.x"))
        XCTAssertFalse(NamePattern("s1").matches("s1.pathway0_stem.conv.weight"))
        for bn in ["s1.pathway0_stem.bn.weight", "s1_fuse.bn.bias", "s2.pathway0_res0.branch1_bn.weight", "s5.pathway1_res2.branch2.c_bn.bias"] {
            XCTAssertTrue(WeightDecayPolicy.isBatchNorm(bn), bn)
        }
        for other in ["s1.pathway0_stem.conv.weight", "s1_fuse.conv_f2s.weight", "head.projection.bias", "s2.pathway0_res0.branch2.b.weight"] {
            XCTAssertFalse(WeightDecayPolicy.isBatchNorm(other), other)
        }
        let p = WeightDecayPolicy(weightDecay: 1e-4, bnWeightDecay: 1e-5, zeroDecayOnBiases: false, noDecay: [NamePattern("s1_fuse.*")])
        XCTAssertEqual(p.decay(for: "s1.pathway0_stem.bn.weight", shape: [4]), 1e-5)
        XCTAssertEqual(p.decay(for: "head.projection.bias", shape: [5]), 1e-4)
        XCTAssertEqual(p.decay(for: "s1_fuse.conv_f2s.weight", shape: [2, 1, 7, 1, 1]), 0)
    }
}
