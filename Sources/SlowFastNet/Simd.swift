// Explicit 16-wide loops for the memory-bound element-wise work of training
// (ReLU masks, BatchNorm sums and maps). LLVM leaves these scalar: in-place
// updates fail its overlap checks, and float sums may not be reordered.

/// Loads 16 floats at `p`.
@inline(__always)
func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }

/// Stores 16 floats at `p`.
@inline(__always)
func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self) }

/// (sum of x[i], sum of (x[i] - shift) * y[i]) over `count` elements, 16 lanes, double at the end.
/// With `y` nil: (sum of x, sum of (x - shift)^2).
@inline(__always)
func sums16(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>?, shift: Float, count: Int) -> (Double, Double) {
    var a = SIMD16<Float>(repeating: 0), b = SIMD16<Float>(repeating: 0)
    let s = SIMD16<Float>(repeating: shift)
    var i = 0
    var total = (0.0, 0.0)
    while i + 16 <= count {
        // Flush to double every 4096 elements so float lanes never sum too many terms.
        let end = min(count - (count - i) % 16, i + 4096)
        while i + 16 <= end {
            let xv = load16(x + i)
            if let y {
                let yv = load16(y + i)
                a += yv
                b += (xv - s) * yv
            } else {
                a += xv
                let d = xv - s
                b += d * d
            }
            i += 16
        }
        total.0 += Double(a.sum())
        total.1 += Double(b.sum())
        a = SIMD16(repeating: 0)
        b = SIMD16(repeating: 0)
    }
    while i < count {
        if let y {
            total.0 += Double(y[i])
            total.1 += Double((x[i] - shift) * y[i])
        } else {
            total.0 += Double(x[i])
            total.1 += Double((x[i] - shift) * (x[i] - shift))
        }
        i += 1
    }
    return total
}
