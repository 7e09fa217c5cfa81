// `sfnet verify WEIGHTS --reference REF [--tolerance 1e-5] [--json]`

import ArgumentParser
import Foundation
import Formats
import SlowFastNet
import Verify

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check that the native network reproduces a PyTorch reference on these weights.",
        discussion: """
        The reference is a safetensors file with input.slow/input.fast (or input.x), output.logits and
        optionally activation.sN.pathwayP and activation.head.pool, made by PyTorch (fixtures/generate.py).
        Every output is compared (max abs error, relative L2, cosine, top-1/top-5 agreement); all must have
        relative L2 <= --tolerance and identical top-1. A pass writes WEIGHTS.verified.json, which
        `finetune` requires. Exit 0 on pass, 1 on failure or bad input.
        Examples:
          sfnet verify slowfast_r50.safetensors --reference slowfast_r50_ref.safetensors
          sfnet verify w.safetensors --reference ref.safetensors --tolerance 1e-4 --json
        """
    )

    @Argument(help: "Native weights (from `sfnet convert`).")
    var weights: String

    @Option(help: "The reference fixture made by PyTorch.")
    var reference: String

    @Option(help: "Largest relative L2 error that passes.")
    var tolerance: Double = 1e-5

    @Option(help: "Threads for the forward pass.")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Flag(help: "Print the report as JSON.")
    var json = false

    func validate() throws {
        if !(tolerance > 0) { throw ValidationError("--tolerance must be positive") }
        if threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        Threading.setThreads(threads)
        let report = try Verifier.run(weights: weights, reference: reference, tolerance: tolerance)
        if report.passed { try Verifier.writeRecord(report) }
        Terminal.write((json ? report.json().serialized : report.text() + (report.passed ? "\n  record: \(Verifier.recordPath(for: weights))" : "")) + "\n")
        if !report.passed { throw ExitCode(1) }
    }
}
