// Which build of the C element-wise kernels (Sources/CKernels: the attention softmax rows, GELU, Swish)
// runs: AVX-512 (16 lanes, FMA) where the CPU has it, the baseline build (8 lanes) otherwise or under
// SFNET_KERNELS=generic. Chosen once per process; tests switch it to run the op oracles on both.

import CKernels

/// A build of the C element-wise kernels.
public enum ElementwiseKernels: String, CaseIterable, Sendable {
    /// The package's baseline target: 8 float lanes, multiply-adds rounded twice.
    case generic
    /// AVX-512 F/DQ/BW/VL with FMA: 16 float lanes.
    case avx512

    /// The build that runs now.
    public static var active: ElementwiseKernels { sfk_active_path() == SFK_PATH_AVX512 ? .avx512 : .generic }

    /// The builds this CPU can run (generic always).
    public static var available: [ElementwiseKernels] { allCases.filter { sfk_path_available($0.path) != 0 } }

    /// Makes `kernels` the active build; false, changing nothing, where this CPU cannot run it. For tests
    /// and benchmarks: no kernel may be running on another thread meanwhile.
    @discardableResult
    public static func use(_ kernels: ElementwiseKernels) -> Bool { sfk_set_path(kernels.path) != 0 }

    var path: sfk_path { self == .avx512 ? SFK_PATH_AVX512 : SFK_PATH_GENERIC }
}
