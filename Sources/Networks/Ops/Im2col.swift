// im2col for Conv3d: unfolds the input windows of a range of output rows into
// the GEMM's B matrix, row (c, kt, kh, kw) by column (to, ho, wo), matching
// PyTorch's weight layout. Zero where the window reads padding. (col2im for
// the backward pass belongs here too.)

/// Ceiling division for a positive divisor.
@inline(__always)
private func ceilDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? (a + b - 1) / b : -((-a) / b) }

/// One group's input with every row zero-padded in W and split into its
/// `stride.w` phases (phase f holds padded columns f, f + s, f + 2s, ...), so
/// that a strided im2col row becomes one contiguous copy instead of a gather.
struct PhasedInput {
    let pointer: UnsafeMutablePointer<Float>
    /// Columns per phase: ceil((W + 2*pW) / sW).
    let phaseWidth: Int
    /// Floats per input row (all phases).
    var rowStride: Int { phaseWidth * stride }
    let stride: Int

    /// Floats needed for one group.
    static func count(_ geo: Conv3dGeometry) -> Int {
        let s = geo.config.stride.w
        let width = (geo.input.w + 2 * geo.config.padding.w + s - 1) / s
        return geo.groupIn * geo.input.t * geo.input.h * width * s
    }

    /// Splits the C_g channels at `x` into `buffer` (PhasedInput.count floats).
    init(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, buffer: UnsafeMutablePointer<Float>, parallel: Bool) {
        let (s, pw, w) = (geo.config.stride.w, geo.config.padding.w, geo.input.w)
        let width = (w + 2 * pw + s - 1) / s
        (pointer, phaseWidth, stride) = (buffer, width, s)
        let rows = geo.groupIn * geo.input.t * geo.input.h
        parallelParts(rows, minPerThread: max(1, (1 << 15) / max(1, w)), maxParts: parallel ? nil : 1) { _, range in
            for r in range {
                let src = x + r * w, dst = buffer + r * width * s
                for f in 0..<s {
                    let phase = dst + f * width
                    for j in 0..<width {
                        let i = j * s + f - pw // unpadded input column
                        phase[j] = i >= 0 && i < w ? src[i] : 0
                    }
                }
            }
        }
    }
}

/// Fills `col` [C_g*kT*kH*kW, rows.count*Wo] from one group's input planes `x`
/// (C_g channels of T*H*W) for the output rows `rows` (row = to*Ho + ho).
/// With `phased` rows are copied from the phase-split input, else gathered. `parallel` spreads the rows of `col` over the network's threads.
func im2col(_ geo: Conv3dGeometry, _ x: UnsafePointer<Float>, phased: PhasedInput?, rows: Range<Int>,
            into col: UnsafeMutablePointer<Float>, parallel: Bool) {
    let (kernel, s, p, d) = (geo.kernel, geo.config.stride, geo.config.padding, geo.config.dilation)
    let (tIn, hIn, wIn) = (geo.input.t, geo.input.h, geo.input.w)
    let (ho, wo) = (geo.output.h, geo.output.w)
    let frame = hIn * wIn
    let cols = rows.count * wo
    // Whole frames move at once when the spatial part is the identity.
    let spatialIdentity = kernel.h == 1 && kernel.w == 1 && s.h == 1 && s.w == 1 && p.h == 0 && p.w == 0
    let taps = kernel.product
    let minRows = max(1, (1 << 15) / max(1, cols))
    parallelParts(geo.reduction, minPerThread: minRows, maxParts: parallel ? nil : 1) { _, krs in
        for kr in krs {
            let c = kr / taps
            let kt = (kr % taps) / (kernel.h * kernel.w)
            let kh = (kr % (kernel.h * kernel.w)) / kernel.w
            let kw = kr % kernel.w
            let xc = x + c * tIn * frame
            var dst = col + kr * cols
            // Output columns whose source column lies inside the row: [woLo, woHi).
            let wOff = kw * d.w - p.w
            let woLo = min(wo, max(0, ceilDiv(-wOff, s.w)))
            let woHi = max(woLo, min(wo, ceilDiv(wIn - wOff, s.w)))
            var r = rows.lowerBound
            while r < rows.upperBound {
                let to = r / ho, hoIdx = r % ho
                let run = min(rows.upperBound, (to + 1) * ho) - r // rows left in this output frame
                let ti = to * s.t - p.t + kt * d.t
                if ti < 0 || ti >= tIn {
                    dst.update(repeating: 0, count: run * wo)
                } else if spatialIdentity {
                    dst.update(from: xc + ti * frame + hoIdx * wIn, count: run * wo)
                } else {
                    let xt = xc + ti * frame
                    for h in hoIdx..<(hoIdx + run) {
                        let row = dst + (h - hoIdx) * wo
                        let hi = h * s.h - p.h + kh * d.h
                        if hi < 0 || hi >= hIn {
                            row.update(repeating: 0, count: wo)
                            continue
                        }
                        if let phased {
                            // Padded column of output column j: j*s.w + kw*d.w, in phase (kw*d.w) % s.w.
                            let tap = kw * d.w
                            let src = phased.pointer + ((c * tIn + ti) * hIn + hi) * phased.rowStride
                                + (tap % s.w) * phased.phaseWidth + tap / s.w
                            row.update(from: src, count: wo)
                            continue
                        }
                        let src = xt + hi * wIn // input column of output column j: j*s.w + wOff
                        if woLo > 0 { row.update(repeating: 0, count: woLo) }
                        if s.w == 1 {
                            (row + woLo).update(from: src + (woLo + wOff), count: woHi - woLo)
                        } else {
                            for j in woLo..<woHi { row[j] = src[j * s.w + wOff] }
                        }
                        if woHi < wo { (row + woHi).update(repeating: 0, count: wo - woHi) }
                    }
                }
                dst += run * wo
                r += run
            }
        }
    }
}

/// The adjoint of `im2col`: adds each element of `col` [C_g*kT*kH*kW,
/// rows.count*Wo] into the input position it was read from, in `dx` (one
/// group's C_g channel planes of T*H*W); padding reads are dropped. Threads own
/// whole channels, so no two write the same element.
func col2imAdd(_ geo: Conv3dGeometry, _ col: UnsafePointer<Float>, rows: Range<Int>, into dx: UnsafeMutablePointer<Float>) {
    let (kernel, s, p, d) = (geo.kernel, geo.config.stride, geo.config.padding, geo.config.dilation)
    let (tIn, hIn, wIn) = (geo.input.t, geo.input.h, geo.input.w)
    let (ho, wo) = (geo.output.h, geo.output.w)
    let frame = hIn * wIn
    let cols = rows.count * wo
    let taps = kernel.product
    parallelFor(geo.groupIn, work: taps * cols) { c in
        let xc = dx + c * tIn * frame
        for tap in 0..<taps {
            let kt = tap / (kernel.h * kernel.w)
            let kh = (tap % (kernel.h * kernel.w)) / kernel.w
            let kw = tap % kernel.w
            var src = col + (c * taps + tap) * cols
            let wOff = kw * d.w - p.w
            let woLo = min(wo, max(0, ceilDiv(-wOff, s.w)))
            let woHi = max(woLo, min(wo, ceilDiv(wIn - wOff, s.w)))
            for r in rows {
                defer { src += wo }
                let to = r / ho, h = r % ho
                let ti = to * s.t - p.t + kt * d.t
                let hi = h * s.h - p.h + kh * d.h
                if ti < 0 || ti >= tIn || hi < 0 || hi >= hIn { continue }
                let dst = xc + ti * frame + hi * wIn + wOff
                if s.w == 1 {
                    for j in woLo..<woHi { dst[j] += src[j] }
                } else {
                    for j in woLo..<woHi { dst[j * s.w] += src[j] }
                }
            }
        }
    }
}
