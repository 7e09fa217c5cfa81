// The optimizers split each parameter's element-wise update across threads (ParallelLoop): the
// parameters, the optimizer state and the reported gradient norm must be the same bits whatever the
// thread count, with parameters large enough to be split (and one too small to be).

import XCTest
@testable import Train

final class ParallelOptimizerTests: XCTestCase {
    /// Parameters of 300 001 (split, an odd size), 70 000 and 5 values, with fixed pseudo-random values and gradients.
    private func parameters(step: Int) throws -> ParameterSet {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15 &+ UInt64(step)
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1_000_000
        }
        let set = ParameterSet()
        for (name, count) in [("big", 300_001), ("middle", 70_000), ("small", 5)] {
            try set.add(name, shape: [count], values: (0 ..< count).map { _ in next() }, trainable: true)
        }
        return set
    }

    private func run(_ make: () throws -> any Optimizer, threads: Int) throws -> (params: [[Float]], state: [[Float]], norms: [Double]) {
        let set = try parameters(step: 0)
        let opt = try make()
        opt.threads = threads
        var norms: [Double] = []
        for step in 1 ... 3 {
            let grads = try parameters(step: step)
            for (p, g) in zip(set.parameters, grads.parameters) { p.grads = g.values }
            norms.append(try opt.step(set, lr: 0.01 * Double(step)).gradNorm)
        }
        return (set.parameters.map(\.values), opt.stateTensors().map { $0.tensor.floats() }, norms)
    }

    func testSGDAndAdamWGiveTheSameBitsOnOneTwoAndThreeThreads() throws {
        let makers: [(String, () throws -> any Optimizer)] = [
            ("SGD with momentum, Nesterov, decay and clipping", {
                try SGD(config: SGDConfig(momentum: 0.9, nesterov: true, weightDecay: WeightDecayPolicy(weightDecay: 1e-4, zeroDecayOnBiases: false), clipGradNorm: 1))
            }),
            ("plain SGD", { try SGD(config: SGDConfig(momentum: 0, nesterov: false)) }),
            ("AdamW with clipping", {
                try AdamW(config: AdamWConfig(clipGradNorm: 0.5), groups: ["big": ParameterGroup(lrScale: 0.5, weightDecay: 0.05)])
            }),
        ]
        for (what, make) in makers {
            let one = try run(make, threads: 1)
            XCTAssertGreaterThan(one.norms[0], 0, what)
            for threads in [2, 3] {
                let many = try run(make, threads: threads)
                XCTAssertEqual(many.params, one.params, "\(what): parameters, \(threads) threads")
                XCTAssertEqual(many.state, one.state, "\(what): optimizer state, \(threads) threads")
                XCTAssertEqual(many.norms, one.norms, "\(what): gradient norms, \(threads) threads")
            }
        }
    }

    func testTheChunkedSumIsTheSerialSumOfItsChunksOnAnyThreadCount() {
        let values = (0 ..< 200_003).map { Double($0 % 97) * 0.25 }
        let chunk = 1 << 16
        var serial = 0.0
        for start in stride(from: 0, to: values.count, by: chunk) { serial += values[start ..< min(values.count, start + chunk)].reduce(0, +) }
        for threads in [1, 2, 4] {
            let got = ParallelLoop.chunkedSum(values.count, threads: threads, chunkSize: chunk) { values[$0].reduce(0, +) }
            XCTAssertEqual(got, serial, "\(threads) threads")
        }
        XCTAssertEqual(ParallelLoop.chunkedSum(0, threads: 2) { _ in 1 }, 0)
    }
}
