// Inflation of 2D ImageNet ResNet-50 weights into a 3D (Slow / SlowFast) network,
// as PySlowFast's checkpoint.inflate_weight: a [O, I, 1, H, W] kernel becomes
// [O, I, T, H, W] by repeating it T times and dividing by T (`mean`, so a static
// clip gives the 2D network's activations) or by putting it in the middle slice
// (`center`). Slow-pathway inputs widened by the fusions are zero-padded on the
// extra (trailing, fused) input channels; everything the 2D network lacks starts
// from PySlowFast's init.

import Foundation
import Formats

/// How a 2D kernel fills the temporal axis.
public enum InflateMode: String, CaseIterable, Sendable, Codable {
    /// repeat(w2d, T) / T (PySlowFast inflate_weight).
    case mean
    /// w2d in the middle temporal slice, zeros elsewhere.
    case center
}

enum Inflate {
    /// Whether canonical `name` comes from the 2D network when inflating: the slow
    /// pathway's stem and residual blocks. Fast pathway, fusions and head start fresh.
    static func takesFrom2D(_ name: String) -> Bool {
        name.hasPrefix("s1.pathway0_") || (name.count > 3 && name.hasPrefix("s") && name.dropFirst(2).hasPrefix(".pathway0_"))
    }

    /// `t` ([O, I, 1, H, W]) fitted to `shape` ([O, I', T, H, W], I' >= I): inflated along
    /// T and zero-padded on the trailing I' - I inputs. Nil when it cannot fit. F32 output.
    static func fit(_ t: Tensor, to shape: [Int], mode: InflateMode) -> (tensor: Tensor, actions: [String])? {
        let f = t.shape
        guard f.count == 5, shape.count == 5, f[2] == 1, f[0] == shape[0], f[1] <= shape[1],
              f[3] == shape[3], f[4] == shape[4], t.dtype.isFloatingPoint else { return nil }
        let (outC, inFile, inModel, kT, hw) = (shape[0], f[1], shape[1], shape[2], shape[3] * shape[4])
        let src = t.floats()
        let count = shape.reduce(1, *)
        let buffer = OwnedBuffer(count: count * 4)
        let dst = buffer.pointer.bindMemory(to: Float.self, capacity: count)
        dst.initialize(repeating: 0, count: count)
        let center = kT / 2
        for o in 0 ..< outC {
            for i in 0 ..< inFile {
                let from = (o * inFile + i) * hw
                for t in 0 ..< kT {
                    if mode == .center && t != center { continue }
                    let to = ((o * inModel + i) * kT + t) * hw
                    for k in 0 ..< hw {
                        let v = mode == .mean ? src[from + k] / Float(kT) : src[from + k]
                        dst[to + k] = Float(bitPattern: v.bitPattern.littleEndian)
                    }
                }
            }
        }
        var actions: [String] = []
        if kT > 1 { actions.append("inflated T=\(kT) (\(mode.rawValue))") }
        if inModel > inFile { actions.append("zero-padded inputs \(inFile)->\(inModel)") }
        if t.dtype != .f32 { actions.append("cast \(t.dtype.shortName)->f32") }
        return (Tensor(dtype: .f32, shape: shape, data: buffer.bytes), actions)
    }

    /// `t` with a unit temporal axis inserted after the input channels: a 2D kernel
    /// [O, I, H, W] as [O, I, 1, H, W]. Shares the bytes.
    static func addTemporalAxis(_ t: Tensor) -> Tensor {
        precondition(t.shape.count == 4)
        return Tensor(dtype: t.dtype, shape: [t.shape[0], t.shape[1], 1, t.shape[2], t.shape[3]], data: t.data)
    }
}
