// PySlowFast's resize, exactly: torch.nn.functional.interpolate(mode="bilinear", align_corners=False)
// (ATen upsample_bilinear2d: source = (dst + 0.5) * in/out - 0.5, clamped at 0, two taps per axis),
// on float frames. This is the `.exact` resize path and the oracle the swscale path is measured against:
// swscale's SWS_BILINEAR works in fixed point on 8-bit data and, when shrinking, widens its filter
// (an anti-aliased area-like average) where torch still takes two taps.

/// One RGB24 frame resized to `width` x `height` as float values in 0...255 (HWC).
public func bilinearResizeTorch(_ frame: RGBFrame, width: Int, height: Int) -> [Float] {
    let inW = frame.width, inH = frame.height
    let scaleX = Float(inW) / Float(width), scaleY = Float(inH) / Float(height)
    func taps(_ dst: Int, _ scale: Float, _ size: Int) -> (Int, Int, Float, Float) {
        let src = max((Float(dst) + 0.5) * scale - 0.5, 0)
        let i0 = min(Int(src), size - 1)
        let i1 = i0 < size - 1 ? i0 + 1 : i0
        let l1 = src - Float(i0)
        return (i0, i1, 1 - l1, l1)
    }
    let xs = (0..<width).map { taps($0, scaleX, inW) }
    var out = [Float](repeating: 0, count: width * height * 3)
    frame.pixels.withUnsafeBufferPointer { p in
        out.withUnsafeMutableBufferPointer { o in
            for y in 0..<height {
                let (y0, y1, h0, h1) = taps(y, scaleY, inH)
                for x in 0..<width {
                    let (x0, x1, w0, w1) = xs[x]
                    for c in 0..<3 {
                        let a = Float(p[(y0 * inW + x0) * 3 + c]), b = Float(p[(y0 * inW + x1) * 3 + c])
                        let d = Float(p[(y1 * inW + x0) * 3 + c]), e = Float(p[(y1 * inW + x1) * 3 + c])
                        o[(y * width + x) * 3 + c] = h0 * (w0 * a + w1 * b) + h1 * (w0 * d + w1 * e)
                    }
                }
            }
        }
    }
    return out
}

/// PySlowFast's short-side scaling (`random_short_side_scale_jitter`): the short side becomes `size`,
/// the long side `floor(long / short * size)`.
public func shortSideScaledSize(width: Int, height: Int, shortSide size: Int) -> (width: Int, height: Int) {
    if width < height { return (size, Int((Double(height) / Double(width) * Double(size)).rounded(.down))) }
    return (Int((Double(width) / Double(height) * Double(size)).rounded(.down)), size)
}
