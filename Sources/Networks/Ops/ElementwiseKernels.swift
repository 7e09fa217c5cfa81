// Which build of the C element-wise kernels (Sources/CKernels: the attention softmax rows, GELU, Swish)
// runs: AVX-512 (16 lanes, FMA) where the CPU has it, else AVX2 (8 lanes, FMA) where it has that, else
// the baseline build (8 lanes); SFNET_KERNELS=generic or avx2 forces a narrower one. Chosen once per
// process; tests switch it to run the op oracles on every build the CPU runs.

import CKernels

/// A build of the C element-wise kernels.
public enum ElementwiseKernels: String, CaseIterable, Sendable {
    /// The package's baseline target: 8 float lanes, multiply-adds rounded twice.
    case generic
    /// AVX2 with FMA: 8 float lanes, fused multiply-adds.
    case avx2
    /// AVX-512 F/DQ/BW/VL with FMA: 16 float lanes.
    case avx512

    /// The build that runs now.
    public static var active: ElementwiseKernels {
        switch sfk_active_path() {
        case SFK_PATH_AVX512: .avx512
        case SFK_PATH_AVX2: .avx2
        default: .generic
        }
    }

    /// The builds this CPU can run (generic always).
    public static var available: [ElementwiseKernels] { allCases.filter { sfk_path_available($0.path) != 0 } }

    /// Makes `kernels` the active build; false, changing nothing, where this CPU cannot run it. For tests
    /// and benchmarks: no kernel may be running on another thread meanwhile.
    @discardableResult
    public static func use(_ kernels: ElementwiseKernels) -> Bool { sfk_set_path(kernels.path) != 0 }

    var path: sfk_path {
        switch self {
        case .generic: SFK_PATH_GENERIC
        case .avx2: SFK_PATH_AVX2
        case .avx512: SFK_PATH_AVX512
        }
    }
}
