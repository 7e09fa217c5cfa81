// OpenBLAS settings that only take effect when the library loads, so sfnet sets
// them by re-executing itself once (a few milliseconds) before doing any work:
// - the commands that run the network (`verify`, `bench`, `finetune`, `pretrain`,
//   `eval`, `predict`, `experiment`) run GEMMs. Debian's OpenBLAS 0.3.21 does not recognise
//   some current Xeons and falls back to its SSE3 "Prescott" kernel, about 4x
//   slower; when it reports that fallback on a CPU with AVX-512/AVX2 and
//   OPENBLAS_CORETYPE is unset, the matching kernel is chosen.
// - `convert`, `inspect` and `export` run no GEMMs, but OpenBLAS starts its
//   worker threads at load and they spin for a while on the second core, which
//   those commands use for the source digest; OPENBLAS_NUM_THREADS=1 avoids that.
// A value already set (some machines set one on purpose) is never overridden;
// SFNET_KEEP_BLAS_KERNEL=1 turns all of this off.

import Foundation
import Networks

enum BlasKernel {
    static func selectForThisCPU() {
        let env = ProcessInfo.processInfo.environment
        guard env["SFNET_KEEP_BLAS_KERNEL"] == nil, let command = CommandLine.arguments.dropFirst().first else { return }
        var changed = false
        if ["convert", "inspect", "export"].contains(command), env["OPENBLAS_NUM_THREADS"] == nil {
            setenv("OPENBLAS_NUM_THREADS", "1", 1)
            changed = true
        }
        if ["verify", "bench", "finetune", "pretrain", "eval", "predict", "experiment"].contains(command),
           env["OPENBLAS_CORETYPE"] == nil, let core = kernelForThisCPU() {
            setenv("OPENBLAS_CORETYPE", core, 1)
            changed = true
        }
        guard changed else { return }
        setenv("SFNET_KEEP_BLAS_KERNEL", "1", 1) // exec once only
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // exec failed: carry on as loaded.
    }

    /// The OpenBLAS kernel for this CPU when OpenBLAS fell back to Prescott; nil otherwise.
    static func kernelForThisCPU() -> String? {
        guard Threading.blasCoreName.lowercased() == "prescott",
              let cpu = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flagsLine = cpu.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        let flags = Set(flagsLine.split(separator: " ").map(String.init))
        if flags.contains("avx512_bf16") { return "COOPERLAKE" }
        if flags.contains("avx512f") && flags.contains("avx512vl") { return "SKYLAKEX" }
        if flags.contains("avx2") { return "HASWELL" }
        return nil
    }
}
