// Explicit 16-wide loops for the memory-bound element-wise work of training
// (ReLU masks, BatchNorm sums and maps). LLVM leaves these scalar: in-place
// updates fail its overlap checks, and float sums may not be reordered.

/// Loads 16 floats at `p`.
@inline(__always)
func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }

/// Stores 16 floats at `p`.
@inline(__always)
func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self) }

/// (sum of x[i], sum of (x[i] - shift) * y[i]) over `count` elements, accumulated in float64
/// (8 double lanes; each float product is exact in double, so only the additions round, and
/// in double). With `y` nil: (sum of x, sum of (x - shift)^2). BatchNorm's batch statistics
/// and backward sums are ill-conditioned at small batches (a few values per channel): float
/// lanes there lose more than PyTorch float32 does, on some BLAS kernels 10x more.
@inline(__always)
func sums8d(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>?, shift: Double, count: Int) -> (Double, Double) {
    var a = SIMD8<Double>(repeating: 0), b = SIMD8<Double>(repeating: 0)
    let s = SIMD8<Double>(repeating: shift)
    var i = 0
    while i + 8 <= count {
        let xv = SIMD8<Double>(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self))
        if let y {
            let yv = SIMD8<Double>(UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self))
            a += yv
            b += (xv - s) * yv
        } else {
            a += xv
            let d = xv - s
            b += d * d
        }
        i += 8
    }
    var total = (a.sum(), b.sum())
    while i < count {
        let xv = Double(x[i])
        if let y {
            total.0 += Double(y[i])
            total.1 += (xv - shift) * Double(y[i])
        } else {
            total.0 += xv
            total.1 += (xv - shift) * (xv - shift)
        }
        i += 1
    }
    return total
}

/// Eight floats from `p` (no alignment needed).
@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }

/// Eight floats to `p` (no alignment needed).
@inline(__always)
func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}
