// OpenBLAS 0.3.21 (Debian 12) does not recognise some current Xeons and falls back
// to its SSE3 "Prescott" kernel, about 4x slower for sfnet's convolutions. OpenBLAS
// reads OPENBLAS_CORETYPE only when it loads, so when it reports that fallback on a
// CPU with AVX-512/AVX2 and the variable is unset, sfnet re-executes itself once
// with the matching kernel. A value already set (some machines set one on purpose)
// is never overridden; SFNET_KEEP_BLAS_KERNEL=1 turns this off.

import Foundation
import SlowFastNet

enum BlasKernel {
    static func selectForThisCPU() {
        let env = ProcessInfo.processInfo.environment
        guard env["OPENBLAS_CORETYPE"] == nil, env["SFNET_KEEP_BLAS_KERNEL"] == nil,
              let command = CommandLine.arguments.dropFirst().first, ["verify", "bench"].contains(command),
              Threading.blasCoreName.lowercased() == "prescott",
              let cpu = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flagsLine = cpu.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return }
        let flags = Set(flagsLine.split(separator: " ").map(String.init))
        let core: String
        if flags.contains("avx512_bf16") { core = "COOPERLAKE" }
        else if flags.contains("avx512f") && flags.contains("avx512vl") { core = "SKYLAKEX" }
        else if flags.contains("avx2") { core = "HASWELL" }
        else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        let argv = CommandLine.unsafeArgv
        execv("/proc/self/exe", argv)
        // exec failed: carry on with the slow kernel.
    }
}
