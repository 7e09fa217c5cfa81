// The GEMM paths of ConvLayer, one sample and one group at a time, each
// ending every GEMM chunk with the fused epilogue while the chunk is in cache:
//   pointwise       1x1x1 stride 1: the input planes are B as they are;
//   temporalShift   Tx1x1 stride 1: one GEMM per tap on time-shifted planes;
//   temporalRing    3-D kernels (the stems): per-frame 2-D im2col in a ring of kT slices;
//   rowShift        1xkHxkW stride 1 (the 3x3s) on wide rows: im2col along H only into
//                   rows padded in W, then one GEMM per W tap on shifted columns;
//   general         anything else: im2col of whole output rows, chunked.
// Plus the tiling of GEMMs over threads and the epilogue itself.

import Foundation

extension ConvLayer {
    // MARK: GEMM paths (one sample, one group)

    /// 1x1x1 stride 1: the input planes are the GEMM's B.
    func pointwise(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                   _ out: UnsafeMutablePointer<Float>, accumulate: Bool, epilogue: Epilogue) {
        let (m, k, p) = (geo.groupOut, geo.groupIn, geo.positions)
        forGemmTiles(m: m, n: p, k: k) { rows, c0, cols in
            sgemm(m: rows.count, n: cols, k: k, a: w + rows.lowerBound * k, lda: k, b: x + c0, ldb: p,
                  beta: accumulate ? 1 : 0, c: out + rows.lowerBound * p + c0, ldc: p)
            epilogue.apply(out, rows: rows, columns: c0, count: cols)
        }
    }

    /// Tx1x1 unit strides: out[:, j] += W_kt x[:, j + shift_kt] per temporal tap over the
    /// columns whose source frame exists; the zero-shift tap (if any) goes first with beta 0.
    func temporalShift(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, _ taps: UnsafePointer<Float>,
                       _ out: UnsafeMutablePointer<Float>, accumulate: Bool, epilogue: Epilogue) {
        let (m, k, kT, o) = (geo.groupOut, geo.groupIn, geo.kernel.t, geo.outChannels)
        let frame = geo.input.h * geo.input.w
        let (inPlane, p) = (geo.input.plane, geo.positions)
        let (pT, dT, tIn) = (geo.config.padding.t, geo.config.dilation.t, geo.input.t)
        let shifts = (0..<kT).map { ($0 * dT - pT) * frame }
        let center = accumulate ? nil : shifts.firstIndex(of: 0)
        let order = center.map { c in [c] + (0..<kT).filter { $0 != c } } ?? Array(0..<kT)
        forGemmTiles(m: m, n: p, k: k) { rows, c0, cols in
            let c = out + rows.lowerBound * p
            if center == nil && !accumulate {
                for r in 0..<rows.count { (c + r * p + c0).update(repeating: 0, count: cols) }
            }
            for (i, kt) in order.enumerated() {
                let shift = shifts[kt]
                let lo = max(c0, -shift), hi = min(c0 + cols, tIn * frame - shift)
                guard lo < hi else { continue }
                sgemm(m: rows.count, n: hi - lo, k: k, a: taps + (kt * o + rows.lowerBound) * k, lda: k,
                      b: x + lo + shift, ldb: inPlane, beta: i == 0 && center != nil ? 0 : 1, c: c + lo, ldc: p)
            }
            epilogue.apply(out, rows: rows, columns: c0, count: cols)
        }
    }

    /// 3-D kernels with unit temporal stride: each input frame's 2-D im2col (one output
    /// row at a time) is computed once and kept in a ring of kT slices, shared by the kT
    /// output frames that read it; one GEMM per output row over the whole ring, with the
    /// weight rotation that matches the ring's order. kT times less im2col than the 3-D unfold.
    func temporalRing(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, _ rotated: UnsafePointer<Float>,
                      _ out: UnsafeMutablePointer<Float>, accumulate: Bool, epilogue: Epilogue,
                      workspace: Workspace) {
        let (o, kT, pT) = (geo.outChannels, geo.kernel.t, geo.config.padding.t)
        let s = geo.config.stride, p = geo.config.padding
        let frameGeo = Conv3dGeometry(input: geo.input.array, weight: [o, geo.input.c, 1, geo.kernel.h, geo.kernel.w],
                                      config: Conv3dConfig(stride: Size3(1, s.h, s.w), padding: Size3(0, p.h, p.w)))
        let k2 = frameGeo.reduction, k = kT * k2
        let (ho, wo, tIn, tOut) = (geo.output.h, geo.output.w, geo.input.t, geo.output.t)
        let slot = k2 * wo
        let phased = s.w > 1 && geo.kernel.w > 1
            ? PhasedInput(frameGeo, x, buffer: workspace.buffer(PhasedInput.count(frameGeo), slot: 2), parallel: true) : nil
        let parts = shouldSplitGemm(macs: geo.macs / max(1, geo.input.n)) ? min(Threading.threads, ho) : 1
        let ring = workspace.buffer(parts * kT * slot)
        parallelParts(ho, maxParts: parts) { part, rows in
            let r = ring + part * kT * slot
            for h in rows {
                // Frames read by output frames 0..<tOut: -pT ... tOut - 1 - pT + kT - 1.
                for f in (-pT)..<(tOut - pT + kT - 1) {
                    let slice = r + ((f % kT) + kT) % kT * slot
                    if f < 0 || f >= tIn {
                        slice.update(repeating: 0, count: slot)
                    } else {
                        im2col(frameGeo, x, phased: phased, rows: (f * ho + h)..<(f * ho + h + 1), into: slice, parallel: false)
                    }
                    let t = f - (kT - 1) + pT // the output frame whose last tap is f
                    guard t >= 0 else { continue }
                    let rotation = ((t - pT) % kT + kT) % kT
                    let c0 = (t * ho + h) * wo
                    sgemm(m: o, n: wo, k: k, a: rotated + rotation * o * k, lda: k, b: r, ldb: wo,
                          beta: accumulate ? 1 : 0, c: out + c0, ldc: geo.positions)
                    epilogue.apply(out, rows: 0..<o, columns: c0, count: wo)
                }
            }
        }
    }

    /// 1xkHxkW with unit strides: the input rows each W tap needs, padded with pW zeros
    /// on both sides, are stacked along H only (kH rows per channel, kW times less
    /// copying than im2col); the output is computed on the padded row pitch, one GEMM
    /// per W tap on B shifted by the tap, and the epilogue drops the pad columns.
    func rowShift(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, _ taps: UnsafePointer<Float>,
                  _ out: UnsafeMutablePointer<Float>, accumulate: Bool, epilogue: Epilogue,
                  workspace: Workspace) {
        let (o, c, kh, kw) = (geo.outChannels, geo.input.c, geo.kernel.h, geo.kernel.w)
        let (ph, pw) = (geo.config.padding.h, geo.config.padding.w)
        let (tIn, hIn, wIn) = (geo.input.t, geo.input.h, geo.input.w)
        let (ho, wo) = (geo.output.h, geo.output.w)
        let pitch = wIn + 2 * pw // padded row; wo = pitch - kw + 1
        let k = c * kh
        let rows = geo.output.t * ho
        let split = shouldSplitGemm(macs: geo.macs / max(1, geo.input.n))
        let parts = split ? min(Threading.threads, rows) : 1
        let perPart = (rows + parts - 1) / parts
        let wanted = max(ModelTuning.rowShiftChunkFloats / max(1, k * pitch), (ModelTuning.minChunkColumns + pitch - 1) / pitch)
        let chunkRows = max(1, min(perPart, wanted))
        let colFloats = k * chunkRows * pitch + kw, accFloats = o * chunkRows * pitch
        let scratch = workspace.buffer(parts * (colFloats + accFloats))
        parallelParts(rows, maxParts: parts) { part, range in
            let col = scratch + part * (colFloats + accFloats)
            let acc = col + colFloats
            var r0 = range.lowerBound
            while r0 < range.upperBound {
                let r1 = min(range.upperBound, r0 + chunkRows)
                let cols = (r1 - r0) * pitch
                for ci in 0..<c {
                    for dh in 0..<kh {
                        let dst = col + (ci * kh + dh) * cols
                        for r in r0..<r1 {
                            let (t, h) = (r / ho, r % ho)
                            let hi = h + dh - ph
                            let d = dst + (r - r0) * pitch
                            guard hi >= 0 && hi < hIn else {
                                d.update(repeating: 0, count: pitch)
                                continue
                            }
                            if pw > 0 {
                                d.update(repeating: 0, count: pw)
                                (d + pw + wIn).update(repeating: 0, count: pw)
                            }
                            (d + pw).update(from: x + ((ci * tIn + t) * hIn + hi) * wIn, count: wIn)
                        }
                    }
                }
                // Shifted taps read up to kw - 1 floats past the last row, into pad columns' results only.
                (col + k * cols).update(repeating: 0, count: kw)
                for tap in 0..<kw {
                    sgemm(m: o, n: cols, k: k, a: taps + tap * o * k, lda: k, b: col + tap, ldb: cols,
                          beta: tap == 0 ? 0 : 1, c: acc, ldc: cols)
                }
                epilogue.apply(from: acc, pitch: pitch, width: wo, to: out, rows: r0..<r1, channels: o,
                               accumulate: accumulate)
                r0 = r1
            }
        }
    }

    /// Everything else: im2col of whole output rows into per-thread scratch, a chunk at a time.
    func general(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                 _ out: UnsafeMutablePointer<Float>, accumulate: Bool, epilogue: Epilogue,
                 workspace: Workspace) {
        let (m, k) = (geo.groupOut, geo.reduction)
        let rows = geo.output.t * geo.output.h, wo = geo.output.w
        let p = geo.positions
        let split = shouldSplitGemm(macs: m * p * k)
        let parts = split ? min(Threading.threads, rows) : 1
        let perPart = (rows + parts - 1) / parts
        let wanted = max(ModelTuning.im2colChunkFloats / max(1, k * wo), (ModelTuning.minChunkColumns + wo - 1) / wo)
        let chunkRows = max(1, min(perPart, wanted))
        let chunkFloats = k * chunkRows * wo
        let scratch = workspace.buffer(chunkFloats * parts)
        let phased = geo.config.stride.w > 1 && geo.kernel.w > 1
            ? PhasedInput(geo, x, buffer: workspace.buffer(PhasedInput.count(geo), slot: 2), parallel: true) : nil
        parallelParts(rows, maxParts: parts) { part, range in
            let col = scratch + part * chunkFloats
            var r0 = range.lowerBound
            while r0 < range.upperBound {
                let r1 = min(range.upperBound, r0 + chunkRows)
                im2col(geo, x, phased: phased, rows: r0..<r1, into: col, parallel: !split)
                let cols = (r1 - r0) * wo
                sgemm(m: m, n: cols, k: k, a: w, lda: k, b: col, ldb: cols,
                      beta: accumulate ? 1 : 0, c: out + r0 * wo, ldc: p)
                epilogue.apply(out, rows: 0..<m, columns: r0 * wo, count: cols)
                r0 = r1
            }
        }
    }
}

/// Knobs of the model's convolution driver (defaults measured on the 2-core box).
public enum ModelTuning {
    /// GEMMs up to this many multiply-adds per call run OpenBLAS's small-matrix
    /// kernels (no packing): thin GEMMs are cut into column chunks that fit (0: off).
    nonisolated(unsafe) public static var smallGemmMacs = 1_000_000
    /// Otherwise: target floats of one output chunk (rows x columns), small enough
    /// that the epilogue finds it in cache...
    nonisolated(unsafe) public static var outputChunkFloats = 1 << 16
    /// ...but at least this many columns per GEMM call.
    nonisolated(unsafe) public static var minChunkColumns = 512
    /// Floats of im2col scratch per thread.
    nonisolated(unsafe) public static var im2colChunkFloats = 1 << 18
    /// Floats of row-stacked input per thread on the row-shift path.
    nonisolated(unsafe) public static var rowShiftChunkFloats = 1 << 17
    /// Output width from which 1xkHxkW convolutions take the row-shift path (narrower
    /// rows waste too much on the computed pad columns).
    nonisolated(unsafe) public static var rowShiftMinWidth = 28
}

/// Splits the GEMM C[m, n] (+)= A[m, k] B[k, n] into tiles and calls
/// `body(rows, firstColumn, columns)` for each, spread over the network's
/// threads when the GEMM is worth splitting. Thin GEMMs get column chunks small
/// enough for OpenBLAS's unpacked small-matrix kernels; GEMMs with few columns
/// are also split by rows (multiples of 16) so that every thread has work.
func forGemmTiles(m: Int, n: Int, k: Int, _ body: (Range<Int>, Int, Int) -> Void) {
    guard m > 0, n > 0 else { return }
    let threads = shouldSplitGemm(macs: m * n * k) ? Threading.threads : 1
    let small = ModelTuning.smallGemmMacs / max(1, m * k)
    var chunk = small >= 64 ? small / 16 * 16
        : max(ModelTuning.minChunkColumns, ModelTuning.outputChunkFloats / m + 15) / 16 * 16
    var rowParts = 1
    if (n + chunk - 1) / chunk < threads {
        if m >= 32 {
            rowParts = min((m + 15) / 16, threads)
        }
        if (n + chunk - 1) / chunk * rowParts < threads {
            chunk = max(16, (n + threads - 1) / threads + 15) / 16 * 16
        }
    }
    chunk = min(chunk, n)
    let chunks = (n + chunk - 1) / chunk
    let rowBlock = ((m + rowParts - 1) / rowParts + 15) / 16 * 16
    let tiles = chunks * rowParts
    parallelParts(tiles, maxParts: min(threads, tiles)) { _, range in
        for tile in range {
            let (c, r) = (tile / rowParts, tile % rowParts)
            let rows = (r * rowBlock)..<min(m, (r + 1) * rowBlock)
            guard !rows.isEmpty else { continue }
            let c0 = c * chunk
            body(rows, c0, min(chunk, n - c0))
        }
    }
}

/// What follows a GEMM chunk: + bias per row, + residual, ReLU; in place on the output.
struct Epilogue {
    let bias: UnsafePointer<Float>?
    /// Same layout as the output (row stride `ld`).
    let residual: UnsafePointer<Float>?
    let relu: Bool
    /// Row stride of output and residual (T*H*W of the output).
    let ld: Int

    var isEmpty: Bool { bias == nil && residual == nil && !relu }

    @inline(__always)
    func apply(_ out: UnsafeMutablePointer<Float>, rows: Range<Int>, columns c0: Int, count: Int) {
        if isEmpty { return }
        for r in rows {
            let d = out + r * ld + c0
            let b = bias?[r] ?? 0
            if let residual {
                let s = residual + r * ld + c0
                if relu {
                    for j in 0..<count { d[j] = max(d[j] + b + s[j], 0) }
                } else {
                    for j in 0..<count { d[j] = d[j] + b + s[j] }
                }
            } else if relu {
                for j in 0..<count { d[j] = max(d[j] + b, 0) }
            } else {
                for j in 0..<count { d[j] += b }
            }
        }
    }

    /// The row-shift path's epilogue: from `acc` ([channels, rows * pitch], output rows on
    /// the padded pitch) into `out` ([channels, positions], ld), dropping pad columns;
    /// `accumulate` adds what `out` holds.
    func apply(from acc: UnsafePointer<Float>, pitch: Int, width: Int, to out: UnsafeMutablePointer<Float>,
               rows: Range<Int>, channels: Int, accumulate: Bool) {
        let cols = rows.count * pitch
        for ch in 0..<channels {
            let b = bias?[ch] ?? 0
            for r in rows {
                let s = acc + ch * cols + (r - rows.lowerBound) * pitch
                let d = out + ch * ld + r * width
                let res = residual.map { $0 + ch * ld + r * width }
                for j in 0..<width {
                    var v = s[j] + b
                    if accumulate { v += d[j] }
                    if let res { v += res[j] }
                    d[j] = relu ? max(v, 0) : v
                }
            }
        }
    }
}
