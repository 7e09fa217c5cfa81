// glibc's allocator policy for the commands that train. A training step allocates its saved
// activations and gradients (hundreds of MB in blocks of 0.1-30 MB) and frees them at the step's
// end. glibc serves blocks above its mmap threshold (128 KiB, raised dynamically) with fresh
// mappings and returns freed heap tops above its trim threshold to the kernel, so every step
// faulted its whole working set in again: the kernel zeroing pages was 9.5% of a VideoMAE-S
// step (perf, 2 threads). With blocks up to 32 MiB (glibc's ceiling for the threshold) taken from
// the heap and freed memory kept, each step reuses the last one's pages: the VideoMAE-S step took
// 0.95x its time in the same invocation, peak RSS within 2% (BENCHMARKS.md, "Allocator policy").
// The process then keeps its peak until it exits, which a CLI run does anyway.
// A policy the user set (GLIBC_TUNABLES with glibc.malloc, or MALLOC_*_ variables) is left alone,
// as is SFNET_KEEP_MALLOC=1.

import CSys
import Foundation

enum AllocatorPolicy {
    static let trainingCommands: Set<String> = ["finetune", "pretrain", "experiment", "bench"]

    static func applyForThisCommand() {
        let env = ProcessInfo.processInfo.environment
        guard let command = CommandLine.arguments.dropFirst().first, trainingCommands.contains(command),
              env["SFNET_KEEP_MALLOC"] == nil, !(env["GLIBC_TUNABLES"] ?? "").contains("glibc.malloc"),
              !env.keys.contains(where: { $0.hasPrefix("MALLOC_") && $0.hasSuffix("_") }) else { return }
        _ = sfnet_malloc_keep_freed_pages(32 << 20)
    }
}
