// Precise BN statistics (fvcore update_bn_stats, PySlowFast BN.USE_PRECISE_STATS): after
// the pass every BN's running mean / variance is the float64 average over the batches of
// each batch's mean / unbiased variance (computed from the BN inputs the pass saw, by the
// float64 oracle), num_batches_tracked counts the batches, weights and gradients stay put,
// and the pass keeps nothing for a backward.

import Convert
import Foundation
import Formats
import XCTest
@testable import Networks

final class PreciseBNTests: XCTestCase {
    private let config = TinyConfigs.slowFast

    private func model(_ options: TrainOptions = TrainOptions(dropout: 0)) throws -> TrainableNetwork {
        try TrainableNetwork(config: config, weights: EvalNetwork.randomWeights(config: config, seed: 1), options: options)
    }

    /// Batch `i` of 2 clips at the training size (slow 1 frame, fast 8, 32x32), a different scale each.
    private func batch(_ i: Int) -> [FloatTensor] {
        var rng = SeededGenerator(seed: 40 + UInt64(i))
        let range: ClosedRange<Float> = -1 - Float(i) ... 1 + 0.5 * Float(i)
        return [randomTensor([2, 3, config.numFrames / config.alpha, 32, 32], &rng, in: range),
                randomTensor([2, 3, config.numFrames, 32, 32], &rng, in: range)]
    }

    private func batches(_ count: Int) -> () -> [FloatTensor]? {
        var i = 0
        return { [self] in
            defer { i += 1 }
            return i < count ? batch(i) : nil
        }
    }

    func testRunningStatisticsBecomeTheAverageOfTheBatchStatistics() throws {
        let m = try model()
        // Gradients that are not zero, to see that the pass leaves them alone.
        _ = try m.forward(batch(9))
        var rng = SeededGenerator(seed: 3)
        try m.backward(randomTensor([2, config.numClasses], &rng))
        let store = m.store
        let params = store.parameterNames.map { store.value($0)!.values }
        let grads = store.parameterNames.map { store.gradient($0)?.values }
        let tracked = store.batchesTracked

        // Per BN, per batch: mean and unbiased variance of its input, in float64.
        var seen: [String: [(mean: [Double], variance: [Double])]] = [:]
        m.batchNormInputObserver = { name, z in
            let c = z.shape[1]
            let ones = Tensor64(shape: [c], values: .init(repeating: 1, count: c))
            let zeros = Tensor64(zeros: [c])
            let r = batchNormTrainForward64(Tensor64(z), weight: ones, bias: zeros, runningMean: zeros, runningVar: zeros, momentum: 1)
            seen[name, default: []].append((r.runningMean.values, r.runningVar.values))
        }
        let used = try m.preciseBNStatistics(batches: 3, next: batches(5))
        m.batchNormInputObserver = nil
        XCTAssertEqual(used, 3, "stops after the batches asked for")

        XCTAssertEqual(Set(seen.keys), Set(store.batchNormModules))
        var worst = 0.0
        for bn in store.batchNormModules {
            let stats = seen[bn]!
            XCTAssertEqual(stats.count, 3, bn)
            let mean = store.value(bn + ".running_mean")!.values, variance = store.value(bn + ".running_var")!.values
            for ch in 0..<mean.count {
                let m64 = stats.map { $0.mean[ch] }.reduce(0, +) / 3
                let v64 = stats.map { $0.variance[ch] }.reduce(0, +) / 3
                let scale = v64.squareRoot()
                let dm = abs(Double(mean[ch]) - m64) / (abs(m64) + scale + 1e-12)
                let dv = abs(Double(variance[ch]) - v64) / (v64 + 1e-12)
                worst = max(worst, dm, dv)
                XCTAssertLessThanOrEqual(dm, 1e-5, "\(bn).running_mean[\(ch)]: \(mean[ch]) vs float64 \(m64)")
                XCTAssertLessThanOrEqual(dv, 1e-5, "\(bn).running_var[\(ch)]: \(variance[ch]) vs float64 \(v64)")
            }
            XCTAssertEqual(store.batchesTracked[bn], (tracked[bn] ?? 0) + 3, "\(bn).num_batches_tracked counts the forwards, as fvcore's")
        }
        print("precise BN: worst relative difference to the float64 average \(worst)")
        XCTAssertEqual(store.parameterNames.map { store.value($0)!.values }, params, "weights unchanged")
        XCTAssertEqual(store.parameterNames.map { store.gradient($0)?.values }, grads, "gradients unchanged")
    }

    func testTheFirstBatchReplacesWhateverTheStatisticsWere() throws {
        let a = try model(), b = try model()
        for name in b.store.bufferNames { b.store.value(name)!.fill(name.hasSuffix("_var") ? 7 : -3) }
        try a.preciseBNStatistics(batches: 2, next: batches(2))
        try b.preciseBNStatistics(batches: 2, next: batches(2))
        for name in a.store.bufferNames {
            XCTAssertEqual(a.store.value(name)!.values, b.store.value(name)!.values, name)
        }
    }

    func testThePassKeepsNothingAndMemoryDoesNotGrow() throws {
        let stats = try model()
        try stats.preciseBNStatistics(batches: 1, next: batches(1))
        let held = stats.pool.heldBytes, peak = stats.pool.peakBytesInUse
        try stats.preciseBNStatistics(batches: 6, next: batches(6))
        XCTAssertEqual(stats.pool.heldBytes, held, "six more batches allocate nothing new")
        XCTAssertEqual(stats.pool.peakBytesInUse, peak)
        let train = try model()
        _ = try train.forward(batch(0))
        XCTAssertLessThan(peak, train.pool.peakBytesInUse, "a statistics pass holds less than a training forward, which keeps its activations")
        // A training step still works after a statistics pass (nothing stale kept).
        _ = try stats.forward(batch(0))
        var rng = SeededGenerator(seed: 3)
        try stats.backward(randomTensor([2, config.numClasses], &rng))
    }

    func testFrozenStatisticsAreLeftAlone() throws {
        let m = try model(TrainOptions(freezeBatchNormStatistics: true, dropout: 0))
        let before = m.store.bufferNames.map { m.store.value($0)!.values }, tracked = m.store.batchesTracked
        XCTAssertEqual(try m.preciseBNStatistics(batches: 3, next: batches(3)), 0)
        XCTAssertEqual(m.store.bufferNames.map { m.store.value($0)!.values }, before)
        XCTAssertEqual(m.store.batchesTracked, tracked)
    }
}
