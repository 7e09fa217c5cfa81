// Small clips run as one: a convolution whose output has few positions per sample (the deep stages
// at small crops: 8 positions per clip in SlowFast's slow res5 at 64², 8 frames) costs a pass over
// its whole weight per sample (OpenBLAS packs A on every call) and, for the weight gradient, a
// read-modify-write of the whole gradient per sample. Where the kernel never reaches across one
// axis, the samples can be laid side by side along that axis and the convolution run once:
//   time:   kernel.t == 1, stride.t == 1, padding.t == 0 (1x1x1, 1x3x3, strided or not):
//           [N, C, T, H, W] -> [1, C, N*T, H, W]   (blocks of T*H*W per channel and sample);
//   height: kernel.h == 1, stride.h == 1, padding.h == 0 (Tx1x1, the temporal taps and fusions):
//           [N, C, T, H, W] -> [1, C, T, N*H, W]   (blocks of H*W per channel, frame and sample).
// The copy in and out costs (C*P_in + O*P_out) per sample against the K*O weight pass it saves, so
// it runs only below `Conv3dTuning.stackSamplesBelow` output positions per sample; the arithmetic of
// every output is the same dot product (only the GEMM blocking around it changes).

/// How the samples of a batch are laid side by side into one sample.
enum SampleStacking {
    case time, height

    /// The stacking this convolution allows and profits from, or nil (one sample, channel-wise,
    /// enough positions per sample, or a kernel that reaches across both axes).
    init?(_ geo: Conv3dGeometry) {
        guard geo.input.n > 1, !geo.isChannelwise, geo.positions < Conv3dTuning.stackSamplesBelow else { return nil }
        let (k, s, p) = (geo.kernel, geo.config.stride, geo.config.padding)
        if k.t == 1 && s.t == 1 && p.t == 0 {
            self = .time
        } else if k.h == 1 && s.h == 1 && p.h == 0 {
            self = .height
        } else {
            return nil
        }
    }

    /// The one-sample shape that holds every sample of `shape`.
    func stacked(_ shape: Shape5D) -> Shape5D {
        switch self {
        case .time: return Shape5D(n: 1, c: shape.c, t: shape.n * shape.t, h: shape.h, w: shape.w)
        case .height: return Shape5D(n: 1, c: shape.c, t: shape.t, h: shape.n * shape.h, w: shape.w)
        }
    }

    /// Contiguous floats per (outer index, sample) and outer indices per sample.
    func blocks(_ shape: Shape5D) -> (block: Int, outer: Int) {
        switch self {
        case .time: return (shape.t * shape.h * shape.w, shape.c)
        case .height: return (shape.h * shape.w, shape.c * shape.t)
        }
    }

    /// stacked[(outer * N + n) * block + i] = sample n's [outer * block + i].
    func gather(_ shape: Shape5D, sample: (Int) -> UnsafePointer<Float>, into stacked: UnsafeMutablePointer<Float>) {
        let (block, outer) = blocks(shape), n = shape.n
        let sources = (0..<n).map(sample)
        parallelFor(outer, work: n * block) { o in
            for s in 0..<n {
                (stacked + (o * n + s) * block).update(from: sources[s] + o * block, count: block)
            }
        }
    }

    /// The inverse of `gather` for an output: sample n's [outer * block + i] = relu(stacked value
    /// (+ what it holds when `accumulate`) (+ residual)). `residual` gives sample n's residual (same layout).
    func scatter(_ shape: Shape5D, from stacked: UnsafePointer<Float>, sample: (Int) -> UnsafeMutablePointer<Float>,
                 accumulate: Bool, residual: ((Int) -> UnsafePointer<Float>)? = nil, relu: Bool = false) {
        let (block, outer) = blocks(shape), n = shape.n
        let targets = (0..<n).map(sample)
        let residuals = residual.map { r in (0..<n).map(r) }
        parallelFor(outer, work: n * block) { o in
            for s in 0..<n {
                let src = stacked + (o * n + s) * block, dst = targets[s] + o * block
                switch (accumulate, residuals.map { $0[s] + o * block }, relu) {
                case (false, nil, false): dst.update(from: src, count: block)
                case (true, nil, false): for i in 0..<block { dst[i] += src[i] }
                case (false, nil, true): for i in 0..<block { dst[i] = max(src[i], 0) }
                case (true, nil, true): for i in 0..<block { dst[i] = max(dst[i] + src[i], 0) }
                case let (false, res?, false): for i in 0..<block { dst[i] = src[i] + res[i] }
                case let (false, res?, true): for i in 0..<block { dst[i] = max(src[i] + res[i], 0) }
                case let (true, res?, false): for i in 0..<block { dst[i] += src[i] + res[i] }
                case let (true, res?, true): for i in 0..<block { dst[i] = max(dst[i] + src[i] + res[i], 0) }
                }
            }
        }
    }
}
