// `sfnet bench train-step`: time one training step of the native network
// (train-mode forward, backward from dLogits, plain SGD update) on random
// weights and a random clip: warm-up, then the median of --repeat steps, the
// forward/backward split, GFLOP/s from the counted multiply-adds (3x the
// forward's: forward, input and weight gradients), peak RSS and the activation
// memory the step holds.

import Families
import Convert
import Formats
import Foundation
import Networks

public struct TrainStepBenchOptions: Sendable {
    public var preset: String
    public var size: Int
    public var frames: Int
    public var batch: Int
    public var threads: Int
    public var repeats: Int
    public init(preset: String, size: Int = 224, frames: Int = 32, batch: Int = 2, threads: Int = 2, repeats: Int = 3) {
        (self.preset, self.size, self.frames, self.batch, self.threads, self.repeats) = (preset, size, frames, batch, threads, repeats)
    }
}

public struct TrainStepBenchResult {
    public var options: TrainStepBenchOptions
    public var inputShapes: [[Int]]
    /// Whole steps, and their forward and backward parts (seconds).
    public var times: [Double], forwardTimes: [Double], backwardTimes: [Double]
    /// Forward multiply-adds (a step does about 3x).
    public var forwardMultiplyAdds: Int
    public var peakRSSMB: Double
    /// Activation and activation-gradient memory the step holds (pool), MB.
    public var activationMB: Double
    public var blasCore: String

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    public var median: Double { Self.median(times) }
    public var gflops: Double { 2 * 3 * Double(forwardMultiplyAdds) / median / 1e9 }

    public func json() -> JSONValue {
        .object([
            ("arch", .string(options.preset)), ("size", .int(options.size)), ("frames", .int(options.frames)),
            ("batch", .int(options.batch)), ("threads", .int(options.threads)), ("repeat", .int(options.repeats)),
            ("input_shapes", .array(inputShapes.map { .array($0.map { .int($0) }) })),
            ("median_s", .double(median)), ("times_s", .array(times.map { .double($0) })),
            ("forward_median_s", .double(Self.median(forwardTimes))), ("backward_median_s", .double(Self.median(backwardTimes))),
            ("forward_multiply_adds", .int(forwardMultiplyAdds)), ("gflops", .double(gflops)),
            ("peak_rss_mb", .double(peakRSSMB)), ("activation_mb", .double(activationMB)),
            ("openblas_core", .string(blasCore)),
            ("elementwise_kernels", .string(ElementwiseKernels.active.rawValue)),
        ])
    }

    public func text() -> String {
        var s = "train step \(options.preset): batch \(options.batch), input \(inputShapes.map { Tensor.shapeString($0) }.joined(separator: " + ")), "
        s += "\(options.threads) threads (OpenBLAS \(blasCore), element-wise kernels \(ElementwiseKernels.active.rawValue))\n"
        s += String(format: "  median %.3f s over %d steps (forward %.3f s, backward + update %.3f s); about %.0f GFLOP/s\n",
                    median, times.count, Self.median(forwardTimes), Self.median(backwardTimes), gflops)
        s += String(format: "  peak RSS %.0f MB; activations held by the step %.0f MB\n", peakRSSMB, activationMB)
        return s
    }
}

public enum TrainStepBench {
    public static func run(_ o: TrainStepBenchOptions) throws -> TrainStepBenchResult {
        let config = try BenchSupport.config(preset: o.preset, frames: o.frames, size: o.size, threads: o.threads)
        let model = try makeTrainableNetwork(config: config, weights: EvalNetwork.randomWeights(config: config, seed: 0),
                                             options: TrainOptions(seed: 1))
        let (shapes, inputs) = BenchSupport.inputs(config, batch: o.batch, frames: o.frames, size: o.size)
        // dL/dlogits of sum(logits * R), as the PyTorch peer's loss.
        let r = FloatTensor(uninitialized: [o.batch, config.numClasses])
        var rng = SplitMix64(seed: 2)
        rng.fillNormal(r.pointer, count: r.count, std: 1)
        func step() throws -> (Double, Double) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            model.zeroGradients()
            _ = try model.forward(inputs)
            let t1 = DispatchTime.now().uptimeNanoseconds
            try model.backward(r)
            model.sgdStep(learningRate: 1e-4)
            let t2 = DispatchTime.now().uptimeNanoseconds
            return (Double(t1 - t0) / 1e9, Double(t2 - t1) / 1e9)
        }
        _ = try step() // warm-up: pooled buffers, page faults
        var times: [Double] = [], fwd: [Double] = [], bwd: [Double] = []
        for _ in 0..<max(1, o.repeats) {
            let (f, b) = try step()
            times.append(f + b)
            fwd.append(f)
            bwd.append(b)
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let macs = try model.makeEvalNetwork().multiplyAdds(forInputs: shapes)
        return TrainStepBenchResult(options: o, inputShapes: shapes, times: times, forwardTimes: fwd, backwardTimes: bwd,
                                    forwardMultiplyAdds: macs, peakRSSMB: Double(usage.ru_maxrss) / 1024,
                                    activationMB: Double(model.activationBytes) / 1e6, blasCore: Threading.blasCoreName)
    }
}

/// One training step's timing (see `TrainStepBench`): SlowFast R50 8x8 at 32x224x224, batch 2 by default.
public func trainStepBenchmark(arch: String = "slowfast-r50-8x8", batch: Int = 2, size: Int = 224, frames: Int = 32,
                               threads: Int = 2, repeats: Int = 3) throws -> TrainStepBenchResult {
    try TrainStepBench.run(TrainStepBenchOptions(preset: arch, size: size, frames: frames, batch: batch, threads: threads, repeats: repeats))
}
