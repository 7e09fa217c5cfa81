// AdamW against torch.optim.AdamW (fixtures/train/adamw_ref.safetensors, fixtures/generate_train_opt.py):
// 5 steps at warm-up-then-cosine LRs (the first at 0), one param group per tensor (layer-wise LR scales,
// decay on weight matrices and kernels, 0 on biases and norms), a tensor whose gradients are 1e-8
// (where eps decides the step), clipping and a frozen tensor in one variant. Parameters, exp_avg and
// exp_avg_sq after every step are judged against the float64 run of the same optimizer relative to
// PyTorch float32's own distance to it (STYLE 14); a run checkpointed after 2 steps and resumed lands on
// the uninterrupted run's values bit for bit.

import Foundation
import XCTest
import Formats
@testable import Train

final class AdamWTests: XCTestCase {
    struct Meta: Decodable {
        struct Param: Decodable { let name: String; let shape: [Int]; let depth: Int; let decayed: Bool; let grad_scale: Double }
        struct Variant: Decodable {
            let betas: [Double]; let eps: Double; let weight_decay: Double; let layer_decay: Double
            let clip_norm: Double?; let frozen: [String]; let groups: [String: [Double]]
        }
        struct Schedule: Decodable {
            let base_lr: Double; let warmup_start_lr: Double; let warmup_epochs: Double; let max_epoch: Double; let end_lr: Double
            let cosine_after_warmup: Bool; let policy: String
        }
        let steps: Int, iters_per_epoch: Int, layers: Int
        let params: [Param]
        let variants: [String: Variant]
        let schedule: Schedule
    }

    /// sfnet may be this many times further from the float64 truth than PyTorch float32 (per tensor)...
    static let factor = 2.0
    /// ... or four float32 roundings (4 x 2^-24) relative: the longest chain of a step, the clipped gradient squared
    /// into exp_avg_sq, rounds five times, and a tensor PyTorch happens to round exactly says nothing.
    static let floor = 0x1p-22

    func load() throws -> (Checkpoint, Meta, [Double]) {
        let f = try TrainFixtures.load("train/adamw_ref.safetensors")
        let text = try XCTUnwrap(f.metadata.first { $0.key == "sfnet.adamw" }?.value)
        let meta = try JSONDecoder().decode(Meta.self, from: Data(text.utf8))
        let lrs = try f.doubles("lr")
        XCTAssertEqual(lrs.count, meta.steps)
        return (f, meta, lrs)
    }

    func initialSet(_ f: Checkpoint, _ meta: Meta, frozen: [String] = []) throws -> ParameterSet {
        let set = ParameterSet()
        for p in meta.params { try set.add(p.name, shape: p.shape, values: try f.floats("initial.\(p.name)"), trainable: !frozen.contains(p.name)) }
        return set
    }

    func optimizer(_ v: Meta.Variant) throws -> AdamW {
        try AdamW(config: AdamWConfig(beta1: v.betas[0], beta2: v.betas[1], epsilon: Float(v.eps), clipGradNorm: v.clip_norm.map(Float.init)),
                  groups: v.groups.mapValues { ParameterGroup(lrScale: Float($0[0]), weightDecay: Float($0[1])) })
    }

    func setGrads(_ set: ParameterSet, _ f: Checkpoint, step: Int) throws {
        for p in set.parameters { p.grads = try f.floats("grad.step\(step).\(p.name)") }
    }

    /// The optimizer's moments by parameter name.
    func moments(_ opt: AdamW) -> (m: [String: [Float]], v: [String: [Float]]) {
        var m: [String: [Float]] = [:], v: [String: [Float]] = [:]
        for (name, t) in opt.stateTensors() {
            if name.hasPrefix(AdamW.firstPrefix) { m[String(name.dropFirst(AdamW.firstPrefix.count))] = t.floats() }
            if name.hasPrefix(AdamW.secondPrefix) { v[String(name.dropFirst(AdamW.secondPrefix.count))] = t.floats() }
        }
        return (m, v)
    }

    func testFixtureGroupsAreVideoMAEsLayerDecayRuleAndLRsAreTheWarmupCosineSchedule() throws {
        let (_, meta, lrs) = try load()
        for (name, v) in meta.variants {
            for p in meta.params where !v.frozen.contains(p.name) {
                let g = try XCTUnwrap(v.groups[p.name], "\(name): no group for \(p.name)")
                XCTAssertEqual(g[0], Foundation.pow(v.layer_decay, Double(meta.layers + 1 - p.depth)), "\(name) \(p.name)")
                XCTAssertEqual(g[1], p.decayed ? v.weight_decay : 0, "\(name) \(p.name)")
            }
        }
        XCTAssertTrue(Set(meta.variants.values.flatMap { $0.groups.values.map { $0[1] } }).contains(0), "a group without weight decay")
        XCTAssertTrue(meta.variants.values.contains { $0.clip_norm != nil } && meta.variants.values.contains { !$0.frozen.isEmpty })
        let s = meta.schedule
        XCTAssertEqual(s.policy, "cosine")
        let schedule = LRSchedule(baseLR: s.base_lr, warmupEpochs: s.warmup_epochs, warmupStartLR: s.warmup_start_lr, maxEpochs: s.max_epoch,
                                  policy: .cosine(endLR: s.end_lr, afterWarmup: s.cosine_after_warmup))
        for (k, lr) in lrs.enumerated() {
            XCTAssertEqual(schedule.lr(epoch: k / meta.iters_per_epoch, iteration: k % meta.iters_per_epoch, itersPerEpoch: meta.iters_per_epoch),
                           lr, accuracy: 1e-15, "step \(k + 1)")
        }
        XCTAssertEqual(lrs[0], 0, "the recipe's warm-up starts at 0: the first step moves only the moments")
    }

    func testFiveStepsLandOnTorchOptimAdamWsFloat64TrajectoryAsCloselyAsPyTorchFloat32() throws {
        let (f, meta, lrs) = try load()
        XCTAssertEqual(Set(meta.variants.keys), ["recipe", "clip_frozen"])
        var ratios: [Double] = []
        var worst = (ratio: 0.0, what: "")
        for (vname, v) in meta.variants.sorted(by: { $0.key < $1.key }) {
            let set = try initialSet(f, meta, frozen: v.frozen)
            let opt = try optimizer(v)
            for step in 1 ... meta.steps {
                try setGrads(set, f, step: step)
                let before = set.parameters.map(\.values)
                let info = try opt.step(set, lr: lrs[step - 1])
                XCTAssertEqual(info.updated, meta.params.count - v.frozen.count)
                if v.clip_norm != nil { XCTAssertLessThan(info.clipCoefficient, 1, "\(vname): the fixture's gradients exceed the clip norm") }
                let (m, s) = moments(opt)
                XCTAssertEqual(m.count, meta.params.count - v.frozen.count, "frozen tensors get no moments")
                for (i, p) in set.parameters.enumerated() {
                    let key = "\(vname).step\(step).\(p.name)"
                    if v.frozen.contains(p.name) {
                        XCTAssertEqual(p.values, before[i], "frozen \(p.name) changed")
                        XCTAssertNil(m[p.name])
                        continue
                    }
                    var entries: [(String, [Float])] = [("", p.values)]
                    entries.append(("exp_avg.", try XCTUnwrap(m[p.name], key)))
                    entries.append(("exp_avg_sq.", try XCTUnwrap(s[p.name], key)))
                    for (prefix, got) in entries {
                        let name = "\(vname).step\(step).\(prefix)\(p.name)"
                        let truth = try f.doubles("f64." + name)
                        let torch = try f.floats(name)
                        let (mine, theirs) = (relL2(got, truth), relL2(torch, truth))
                        let allowed = max(Self.factor * theirs, Self.floor)
                        XCTAssertLessThanOrEqual(mine, allowed, "\(name): sfnet \(mine) from float64, PyTorch float32 \(theirs)")
                        // For the aggregate, a floor of one rounding (2^-24): the ratio to PyTorch itself, not to the floor.
                        let ratio = mine / max(theirs, 0x1p-24)
                        ratios.append(ratio)
                        if ratio > worst.ratio { worst = (ratio, name) }
                    }
                    // The step itself (a few % of the value at these LRs) against the float64 run's step: a wrong
                    // LR scale, decay or bias correction shows here first. Its float32 floor is the rounding of
                    // the two endpoints, 2^-24 of their size over the step's.
                    let prev = step == 1 ? try f.doubles("initial.\(p.name)") : try f.doubles("f64.\(vname).step\(step - 1).\(p.name)")
                    let truthStep = zip(try f.doubles("f64.\(vname).step\(step).\(p.name)"), prev).map { $0 - $1 }
                    let torchPrev = step == 1 ? try f.floats("initial.\(p.name)") : try f.floats("\(vname).step\(step - 1).\(p.name)")
                    let torchStep = zip(try f.floats("\(vname).step\(step).\(p.name)"), torchPrev).map { Double($0) - Double($1) }
                    let mineStep = zip(p.values, before[i]).map { Double($0) - Double($1) }
                    let norm = { (x: [Double]) in x.reduce(0) { $0 + $1 * $1 }.squareRoot() }
                    if lrs[step - 1] == 0 {
                        XCTAssertEqual(p.values, before[i], "\(vname) step \(step): LR 0 moves \(p.name)")
                        continue
                    }
                    let rounding = 0x1p-24 * (norm(p.values.map(Double.init)) + norm(before[i].map(Double.init))) / norm(truthStep)
                    let (mine, theirs) = (relL2(mineStep, truthStep), relL2(torchStep, truthStep))
                    XCTAssertLessThanOrEqual(mine, max(Self.factor * theirs, rounding),
                                             "\(vname) step \(step) update of \(p.name): sfnet \(mine), PyTorch float32 \(theirs), rounding \(rounding)")
                }
            }
            XCTAssertEqual(opt.stepCount, meta.steps)
        }
        ratios.sort()
        let median = ratios[ratios.count / 2]
        print("AdamW vs float64 over \(ratios.count) tensors: median \(median)x PyTorch float32's distance, worst \(worst.ratio)x (\(worst.what))")
        XCTAssertLessThanOrEqual(median, 1.5, "in aggregate sfnet's AdamW is as accurate as PyTorch float32's")
    }

    /// The step that decides eps's place: gradients of 1e-8 make sqrt(v) / sqrt(1 - b2^t) comparable to eps. Placed
    /// before the bias correction (sqrt(v) + eps, then / sqrt(1 - b2^t)) or inside the root, the steps differ by a factor.
    func testTinyGradientsStepAsTorchDoesWithEpsAfterTheBiasCorrectedRoot() throws {
        let (f, meta, lrs) = try load()
        let v = try XCTUnwrap(meta.variants["recipe"])
        let tiny = try XCTUnwrap(meta.params.first { $0.grad_scale < 1e-6 }).name
        let set = try initialSet(f, meta)
        let opt = try optimizer(v)
        for step in 1 ... 2 {
            try setGrads(set, f, step: step)
            let before = try XCTUnwrap(set.parameters.first { $0.name == tiny }).values
            try opt.step(set, lr: lrs[step - 1])
            guard step == 2 else { continue }
            let after = try XCTUnwrap(set.parameters.first { $0.name == tiny }).values
            let truth = zip(try f.doubles("f64.recipe.step2.\(tiny)"), try f.doubles("f64.recipe.step1.\(tiny)")).map { $0 - $1 }
            let mine = zip(after, before).map { Double($0) - Double($1) }
            // Decay alone would move it by lr * wd * p, far less than the Adam step, so the step is Adam's.
            XCTAssertLessThan(relL2(mine, truth), 0.01, "\(tiny): step \(mine) vs torch's \(truth)")
        }
    }

    func testStateCheckpointedAfterTwoStepsResumesOntoTheUninterruptedTrajectoryBitForBit() throws {
        let (f, meta, lrs) = try load()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-adamw-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (vname, v) in meta.variants.sorted(by: { $0.key < $1.key }) {
            let straight = try initialSet(f, meta, frozen: v.frozen)
            let a = try optimizer(v)
            var trajectory: [[[Float]]] = []
            var momentsAt: [(m: [String: [Float]], v: [String: [Float]])] = []
            for step in 1 ... meta.steps {
                try setGrads(straight, f, step: step)
                try a.step(straight, lr: lrs[step - 1])
                trajectory.append(straight.parameters.map(\.values))
                momentsAt.append(moments(a))
            }

            let first = try initialSet(f, meta, frozen: v.frozen)
            let b = try optimizer(v)
            for step in 1 ... 2 {
                try setGrads(first, f, step: step)
                try b.step(first, lr: lrs[step - 1])
            }
            let file = dir.appendingPathComponent("\(vname).safetensors").path
            let state = TrainState(epoch: 1, iteration: 2, config: TrainConfig(epochs: 3, batchSize: 2, itersPerEpoch: meta.iters_per_epoch))
            try TrainCheckpoint.write(to: file, weights: first.valueTensors(), optimizer: b, state: state)

            // A new process: parameters and optimizer from the file only.
            let loaded = try TrainCheckpoint.read(file)
            let resumed = try initialSet(f, meta, frozen: v.frozen)
            for p in resumed.parameters { p.values = try XCTUnwrap(loaded.weights[p.name]).floats() }
            let c = try optimizer(v)
            try loaded.restoreOptimizer(c, params: resumed)
            XCTAssertEqual(c.stepCount, 2)
            XCTAssertEqual(moments(c).m, moments(b).m)
            XCTAssertEqual(moments(c).v, moments(b).v)
            for step in 3 ... meta.steps {
                try setGrads(resumed, f, step: step)
                try c.step(resumed, lr: lrs[step - 1])
                XCTAssertEqual(resumed.parameters.map(\.values), trajectory[step - 1], "\(vname): parameters differ after step \(step)")
                XCTAssertEqual(moments(c).m, momentsAt[step - 1].m, "\(vname): exp_avg differs after step \(step)")
                XCTAssertEqual(moments(c).v, momentsAt[step - 1].v, "\(vname): exp_avg_sq differs after step \(step)")
            }

            // Without the moments (a fresh AdamW at step 0), the same steps go elsewhere: the state is what carries it.
            let fresh = try initialSet(f, meta, frozen: v.frozen)
            for p in fresh.parameters { p.values = try XCTUnwrap(loaded.weights[p.name]).floats() }
            let d = try optimizer(v)
            try setGrads(fresh, f, step: 3)
            try d.step(fresh, lr: lrs[2])
            XCTAssertNotEqual(fresh.parameters.map(\.values), trajectory[2])
        }
    }

    func testStateOfAnotherOptimizerOrShapeIsATypedErrorNamingTheFile() throws {
        let set = ParameterSet()
        let w = try set.add("classifier.weight", shape: [2, 3], values: [Float](repeating: 1, count: 6))
        w.grads = [Float](repeating: 0.1, count: 6)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-adamw-err-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let state = TrainState(config: TrainConfig(itersPerEpoch: 1))

        let sgd = try SGD()
        try sgd.step(set, lr: 0.1)
        let sgdFile = dir.appendingPathComponent("sgd.safetensors").path
        try TrainCheckpoint.write(to: sgdFile, weights: set.valueTensors(), optimizer: sgd, state: state)
        XCTAssertThrowsError(try TrainCheckpoint.read(sgdFile).restoreOptimizer(try AdamW(groups: [:]), params: set)) {
            XCTAssertTrue("\($0)".contains("optimizer type 'sgd', expected 'adamw'") && "\($0)".contains("--optimizer sgd")
                          && "\($0)".contains(sgdFile), "\($0)")
        }

        let adam = try AdamW(groups: [:])
        try adam.step(set, lr: 0.1)
        let adamFile = dir.appendingPathComponent("adamw.safetensors").path
        try TrainCheckpoint.write(to: adamFile, weights: set.valueTensors(), optimizer: adam, state: state)
        XCTAssertNotNil(try CheckpointReader.read(path: adamFile).tensors["optimizer.exp_avg_sq.classifier.weight"])
        let other = ParameterSet()
        try other.add("classifier.weight", shape: [3, 2], values: [Float](repeating: 1, count: 6))
        XCTAssertThrowsError(try TrainCheckpoint.read(adamFile).restoreOptimizer(try AdamW(groups: [:]), params: other)) {
            XCTAssertTrue("\($0)".contains("tensor 'optimizer.exp_avg.classifier.weight': file has [2,3], model expects [3,2]"), "\($0)")
        }
        XCTAssertThrowsError(try TrainCheckpoint.read(adamFile).restoreOptimizer(try SGD(), params: set)) {
            XCTAssertTrue("\($0)".contains("optimizer type 'adamw', expected 'sgd'"), "\($0)")
        }
        XCTAssertThrowsError(try AdamW(config: AdamWConfig(beta2: 1), groups: [:])) { XCTAssertTrue("\($0)".contains("betas"), "\($0)") }
        XCTAssertThrowsError(try adam.step(set, lr: -1))
    }
}
