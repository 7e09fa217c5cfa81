// The token rearrangements the eval and the training network share: TimeSformer's embeddings
// (class token, per-frame position table, per-patch time table), its divided layer's regrouping
// of tokens between the temporal sequences (per patch, over the frames) and the spatial ones (per
// frame, with the class token), and the pooling of tokens before the classifier.
//
// Token order of a TimeSformer clip (Hugging Face's): the class token, then patch-major
// (patch p of frame f at 1 + p * T + f). Patch embeddings arrive frame-major ([N, T * hw, D]).

import Foundation

enum TokenOps {
    /// [N, 1 + hw * T, D] from patch embeddings [N, T * hw, D] (frame-major): row 0 = cls + pos[0];
    /// row 1 + p T + f = (embedded[f, p] + pos[1 + p]) + time[f].
    static func timesformerEmbeddings(_ embedded: FloatTensor, n: Int, frames: Int, spatial: Int, width d: Int,
                                      cls: UnsafePointer<Float>, pos: UnsafePointer<Float>, time: UnsafePointer<Float>) -> FloatTensor {
        let tokens = 1 + spatial * frames
        let out = FloatTensor(uninitialized: [n, tokens, d])
        for b in 0 ..< n {
            let row = out.pointer + b * tokens * d
            for j in 0 ..< d { row[j] = cls[j] + pos[j] }
            for p in 0 ..< spatial {
                for f in 0 ..< frames {
                    let src = embedded.pointer + ((b * frames + f) * spatial + p) * d
                    let dst = row + (1 + p * frames + f) * d
                    let pp = pos + (1 + p) * d, tt = time + f * d
                    for j in 0 ..< d { dst[j] = (src[j] + pp[j]) + tt[j] }
                }
            }
        }
        return out
    }

    /// The patch tokens of `x` [N, 1 + hw T, D] as [N hw, T, D]: one temporal sequence per (clip, patch), a copy.
    static func patchSequences(_ x: FloatTensor, n: Int, frames: Int, spatial: Int, width d: Int) -> FloatTensor {
        let tokens = 1 + spatial * frames
        let out = FloatTensor(uninitialized: [n * spatial, frames, d])
        for b in 0 ..< n {
            (out.pointer + b * spatial * frames * d).update(from: x.pointer + (b * tokens + 1) * d, count: spatial * frames * d)
        }
        return out
    }

    /// Spatial sequences [N T, 1 + hw, D]: per (clip, frame), the clip's class token (row 0 of `x`) then
    /// the frame's patches of `te` [N hw, T, D].
    static func spatialSequences(classTokensOf x: FloatTensor, patches te: FloatTensor, n: Int, frames: Int, spatial: Int,
                                 width d: Int) -> FloatTensor {
        let tokens = 1 + spatial * frames
        let out = FloatTensor(uninitialized: [n * frames, 1 + spatial, d])
        for b in 0 ..< n {
            for f in 0 ..< frames {
                let seq = out.pointer + (b * frames + f) * (1 + spatial) * d
                seq.update(from: x.pointer + b * tokens * d, count: d)
                for p in 0 ..< spatial { (seq + (1 + p) * d).update(from: te.pointer + ((b * spatial + p) * frames + f) * d, count: d) }
            }
        }
        return out
    }

    /// The divided layer's output before its MLP: cat(cls, te) + cat(mean over frames of the spatial
    /// class outputs, the spatial patch outputs back in patch-major order).
    static func dividedOutput(classTokensOf x: FloatTensor, patches te: FloatTensor, spatialOut: FloatTensor, n: Int, frames: Int,
                              spatial: Int, width d: Int) -> FloatTensor {
        let tokens = 1 + spatial * frames
        let out = FloatTensor(uninitialized: [n, tokens, d])
        for b in 0 ..< n {
            let row = out.pointer + b * tokens * d
            for j in 0 ..< d {
                var s = 0.0
                for f in 0 ..< frames { s += Double(spatialOut.pointer[(b * frames + f) * (1 + spatial) * d + j]) }
                row[j] = x.pointer[b * tokens * d + j] + Float(s / Double(frames))
            }
            for p in 0 ..< spatial {
                for f in 0 ..< frames {
                    let dst = row + (1 + p * frames + f) * d
                    let a = te.pointer + ((b * spatial + p) * frames + f) * d
                    let s = spatialOut.pointer + ((b * frames + f) * (1 + spatial) + 1 + p) * d
                    for j in 0 ..< d { dst[j] = a[j] + s[j] }
                }
            }
        }
        return out
    }

    /// What the classifier's norm reads, [N, D]: the mean over each clip's tokens (in double), or its first token.
    static func pool(_ hidden: FloatTensor, mean: Bool) -> FloatTensor {
        let (n, tokens, d) = (hidden.shape[0], hidden.shape[1], hidden.shape[2])
        let out = FloatTensor(uninitialized: [n, d])
        for b in 0 ..< n {
            if mean {
                var sums = [Double](repeating: 0, count: d)
                for r in 0 ..< tokens { let row = hidden.pointer + (b * tokens + r) * d; for j in 0 ..< d { sums[j] += Double(row[j]) } }
                for j in 0 ..< d { out.pointer[b * d + j] = Float(sums[j] / Double(tokens)) }
            } else {
                (out.pointer + b * d).update(from: hidden.pointer + b * tokens * d, count: d)
            }
        }
        return out
    }

    /// x += y, element-wise.
    static func add(_ y: FloatTensor, into x: FloatTensor) {
        precondition(x.count == y.count, "add: \(y.shape) into \(x.shape)")
        let (a, b) = (x.pointer, y.pointer)
        withExtendedLifetime((x, y)) {
            parallelRanges(x.count, minPerThread: 1 << 16) { range in for j in range { a[j] += b[j] } }
        }
    }

    /// VideoMAE: the fixed sinusoid table [L, D] added to every clip's tokens [N, L, D].
    static func addPositions(_ table: UnsafePointer<Float>, to hidden: FloatTensor) {
        let per = hidden.count / max(hidden.shape[0], 1)
        for b in 0 ..< hidden.shape[0] {
            let row = hidden.pointer + b * per
            for j in 0 ..< per { row[j] += table[j] }
        }
    }
}
