// `sfnet bench forward --arch PRESET ...`

import Families
import ArgumentParser
import Convert
import Foundation
import Formats
import Verify

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time sfnet's own computations.",
        subcommands: [BenchForward.self, BenchTrainStep.self]
    )
}

struct BenchForward: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Time the native forward pass on random weights and a random clip.",
        discussion: """
        Example: sfnet bench forward --arch slowfast-r50-8x8 --size 224 --frames 32 --threads 2 --profile
        The peers (PyTorch, onnxruntime) are timed by Benchmarks/forward_bench.py in the same invocation.
        """
    )

    @Option(help: "Architecture preset: \(ArchConfig.presetNames.joined(separator: "|")).")
    var arch: String = "slowfast-r50-8x8"
    @Option(help: "Crop size (height = width).")
    var size: Int = 224
    @Option(help: "Fast-pathway frames (the slow pathway gets frames/alpha).")
    var frames: Int = 32
    @Option(help: "Clips per batch.")
    var batch: Int = 1
    @Option(help: "Threads (OpenBLAS and sfnet's own).")
    var threads: Int = 2
    @Option(help: "Timed runs after one warm-up.")
    var `repeat`: Int = 5
    @Flag(help: "Print a per-op time breakdown.")
    var profile = false
    @Flag(help: "Print JSON (median_s, gflops, peak_rss_mb...).")
    var json = false

    func validate() throws { try validateBench(arch: arch, size: size, frames: frames, batch: batch, threads: threads, repeat: `repeat`) }

    func run() throws {
        let r = try ForwardBench.run(ForwardBenchOptions(preset: arch, size: size, frames: frames, batch: batch,
                                                         threads: threads, repeats: `repeat`, profile: profile))
        Terminal.write(json ? r.json().serialized + "\n" : r.text())
    }
}

struct BenchTrainStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-step",
        abstract: "Time one native training step (forward, backward, SGD update) on random weights and a random clip.",
        discussion: """
        Example: sfnet bench train-step --arch slowfast-r50-8x8 --batch 2 --size 224 --frames 32 --threads 2 --json
        PyTorch's same step is timed by Benchmarks/train_step_bench.py in the same invocation.
        """
    )

    @Option(help: "Architecture preset: \(ArchConfig.presetNames.joined(separator: "|")).")
    var arch: String = "slowfast-r50-8x8"
    @Option(help: "Clips per batch.")
    var batch: Int = 2
    @Option(help: "Crop size (height = width; also the training crop the head pools).")
    var size: Int = 224
    @Option(help: "Fast-pathway frames (the slow pathway gets frames/alpha).")
    var frames: Int = 32
    @Option(help: "Threads (OpenBLAS and sfnet's own).")
    var threads: Int = 2
    @Option(help: "Timed steps after one warm-up.")
    var `repeat`: Int = 3
    @Flag(help: "Print JSON (median_s, forward_median_s, backward_median_s, peak_rss_mb...).")
    var json = false

    func validate() throws { try validateBench(arch: arch, size: size, frames: frames, batch: batch, threads: threads, repeat: `repeat`) }

    func run() throws {
        let r = try TrainStepBench.run(TrainStepBenchOptions(preset: arch, size: size, frames: frames, batch: batch,
                                                             threads: threads, repeats: `repeat`))
        Terminal.write(json ? r.json().serialized + "\n" : r.text())
    }
}

/// The checks both benchmarks make of their clip options.
func validateBench(arch: String, size: Int, frames: Int, batch: Int, threads: Int, repeat: Int) throws {
    if ArchConfig.preset(named: arch) == nil { throw ValidationError("unknown --arch '\(arch)'; presets: \(ArchConfig.presetNames.joined(separator: ", "))") }
    if size < 32 || size % 32 != 0 { throw ValidationError("--size must be a multiple of 32") }
    if frames < 1 || batch < 1 || threads < 1 || `repeat` < 1 { throw ValidationError("--frames, --batch, --threads and --repeat must be at least 1") }
}
