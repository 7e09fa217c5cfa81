// `sfnet bench forward`: time the native forward pass on random weights and a
// random clip: warm-up, then the median of --repeat runs, GFLOP/s from the
// counted multiply-adds, peak RSS, and optionally a per-op breakdown.

import Families
import Convert
import Formats
import Foundation
import Networks

public struct ForwardBenchOptions: Sendable {
    public var preset: String
    public var size: Int
    public var frames: Int
    public var batch: Int
    public var threads: Int
    public var repeats: Int
    public var profile: Bool
    public init(preset: String, size: Int = 224, frames: Int = 32, batch: Int = 1, threads: Int = 2, repeats: Int = 5, profile: Bool = false) {
        (self.preset, self.size, self.frames, self.batch, self.threads, self.repeats, self.profile) = (preset, size, frames, batch, threads, repeats, profile)
    }
}

public struct ForwardBenchResult {
    public var options: ForwardBenchOptions
    public var config: ArchConfig
    public var inputShapes: [[Int]]
    public var times: [Double]
    public var multiplyAdds: Int
    public var peakRSSMB: Double
    public var blasCore: String
    public var profile: String?

    public var median: Double { let s = times.sorted(); return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2 }
    public var gflops: Double { 2 * Double(multiplyAdds) / median / 1e9 }

    public func json() -> JSONValue {
        .object([
            ("arch", .string(options.preset)), ("size", .int(options.size)), ("frames", .int(options.frames)),
            ("batch", .int(options.batch)), ("threads", .int(options.threads)), ("repeat", .int(options.repeats)),
            ("input_shapes", .array(inputShapes.map { .array($0.map { .int($0) }) })),
            ("median_s", .double(median)), ("times_s", .array(times.map { .double($0) })),
            ("multiply_adds", .int(multiplyAdds)), ("gflops", .double(gflops)),
            ("peak_rss_mb", .double(peakRSSMB)), ("openblas_core", .string(blasCore)),
            ("elementwise_kernels", .string(ElementwiseKernels.active.rawValue)),
        ])
    }

    public func text() -> String {
        var s = "forward \(options.preset): batch \(options.batch), input \(inputShapes.map { Tensor.shapeString($0) }.joined(separator: " + ")), \(options.threads) threads (OpenBLAS \(blasCore), element-wise kernels \(ElementwiseKernels.active.rawValue))\n"
        s += String(format: "  median %.3f s over %d runs (min %.3f, max %.3f); %.1f GMACs, %.1f GFLOP/s; peak RSS %.0f MB\n",
                    median, times.count, times.min() ?? 0, times.max() ?? 0, Double(multiplyAdds) / 1e9, gflops, peakRSSMB)
        if let p = profile { s += p + "\n" }
        return s
    }
}

public enum ForwardBench {
    public static func run(_ o: ForwardBenchOptions) throws -> ForwardBenchResult {
        let config = try BenchSupport.config(preset: o.preset, frames: o.frames, size: o.size, threads: o.threads)
        let model = try makeEvalNetwork(config: config, weights: EvalNetwork.randomWeights(config: config, seed: 0))
        let (shapes, inputs) = BenchSupport.inputs(config, batch: o.batch, frames: o.frames, size: o.size)
        _ = try model.forward(inputs) // warm-up: buffers, packed weights, page faults
        var times: [Double] = []
        let profile = o.profile ? ForwardProfile() : nil
        for _ in 0 ..< max(1, o.repeats) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try model.forward(inputs, capture: false, profile: profile)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return ForwardBenchResult(options: o, config: config, inputShapes: shapes, times: times,
                                  multiplyAdds: try model.multiplyAdds(forInputs: shapes), peakRSSMB: Double(usage.ru_maxrss) / 1024,
                                  blasCore: Threading.blasCoreName, profile: profile?.report())
    }
}
