// Tubelet / patch embedding as one GEMM: a Conv3d whose kernel equals its stride (t, ph, pw), no
// padding (VideoMAE's `patch_embeddings.projection`, 2 x 16 x 16; TimeSformer's per-frame Conv2d is
// t = 1) reads non-overlapping patches, so it is a gather of each patch into a row
// [C * t * ph * pw] (columns in the order of PyTorch's weight [D, C, t, ph, pw] flattened) followed by
// a linear with the weight viewed as [D, C t ph pw]. Positions past the last whole patch are dropped,
// as torch's conv drops them. The token order is explicit (`PatchTokenOrder`).
// Backward: dW += dY^T patches (the patches gathered again from the input), db += column sums of dY,
// dInput = the patches' scatter of dY W (a permutation: every covered input element is in exactly one
// patch; uncovered ones get zero).

import Foundation

/// The order of a sample's patch tokens.
public enum PatchTokenOrder: String, Sendable, Codable, CaseIterable {
    /// (t, h, w), time slowest: torch's conv output `flatten(2).transpose(1, 2)`, VideoMAE's tokens; with
    /// t = 1 also TimeSformer's `(b t) (h w)`, each frame's Conv2d patches after the previous frame's.
    case timeMajor
    /// (h, w, t): each spatial position's frames adjacent, the `(b h w) t` rows TimeSformer's temporal
    /// attention runs over.
    case spaceMajor
}

/// The patch grid of an input [N, C, T, H, W] for patches (t, ph, pw) equal to their stride.
public struct PatchGeometry: Equatable, Sendable {
    public let input: Shape5D
    public let patch: Size3
    public let order: PatchTokenOrder
    /// Patches along (T, H, W): each extent divided by the patch, rounded down.
    public let grid: Size3

    public init(input: [Int], patch: Size3, order: PatchTokenOrder) {
        self.input = Shape5D(input)
        self.patch = patch
        self.order = order
        precondition(patch.t > 0 && patch.h > 0 && patch.w > 0, "patch embedding: patch \(patch)")
        grid = Size3(self.input.t / patch.t, self.input.h / patch.h, self.input.w / patch.w)
    }

    /// Tokens per sample: the grid's product.
    public var tokens: Int { grid.product }
    /// Floats per patch row: C * t * ph * pw.
    public var features: Int { input.c * patch.product }
    /// Whether every input element lies in a patch.
    public var coversInput: Bool { grid.t * patch.t == input.t && grid.h * patch.h == input.h && grid.w * patch.w == input.w }

    /// The row of patch (gt, gh, gw) of sample n among all N * tokens rows.
    @inline(__always)
    public func row(_ n: Int, _ gt: Int, _ gh: Int, _ gw: Int) -> Int {
        switch order {
        case .timeMajor: return ((n * grid.t + gt) * grid.h + gh) * grid.w + gw
        case .spaceMajor: return ((n * grid.h + gh) * grid.w + gw) * grid.t + gt
        }
    }
}

/// Copies between the input [N, C, T, H, W] and the patch rows [N * tokens, C t ph pw]: gather
/// (`toRows`) or its inverse scatter. Threads take (n, gt, gh) bands of patches.
private func movePatches(_ geo: PatchGeometry, input: UnsafeMutablePointer<Float>, rows: UnsafeMutablePointer<Float>, toRows: Bool) {
    let (s, p, g) = (geo.input, geo.patch, geo.grid)
    let features = geo.features
    parallelFor(s.n * g.t * g.h, work: g.w * features) { band in
        let (ngt, gh) = band.quotientAndRemainder(dividingBy: g.h)
        let (n, gt) = ngt.quotientAndRemainder(dividingBy: g.t)
        for c in 0..<s.c {
            for kt in 0..<p.t {
                for kh in 0..<p.h {
                    let line = input + (((n * s.c + c) * s.t + gt * p.t + kt) * s.h + gh * p.h + kh) * s.w
                    let column = ((c * p.t + kt) * p.h + kh) * p.w
                    for gw in 0..<g.w {
                        let r = rows + geo.row(n, gt, gh, gw) * features + column
                        if toRows { r.update(from: line + gw * p.w, count: p.w) } else { (line + gw * p.w).update(from: r, count: p.w) }
                    }
                }
            }
        }
    }
}

/// The patches of `input` [N, C, T, H, W] as rows: [N, tokens, C * t * ph * pw], tokens in `order`.
public func patchify(_ input: FloatTensor, patch: Size3, order: PatchTokenOrder = .timeMajor) -> FloatTensor {
    let geo = PatchGeometry(input: input.shape, patch: patch, order: order)
    let out = FloatTensor(uninitialized: [geo.input.n, geo.tokens, geo.features])
    withExtendedLifetime((input, out)) { movePatches(geo, input: input.pointer, rows: out.pointer, toRows: true) }
    return out
}

/// The inverse of `patchify`: rows [N, tokens, C t ph pw] back into an input of `inputShape`
/// [N, C, T, H, W]; elements no patch covers are zero.
public func unpatchify(_ rows: FloatTensor, inputShape: [Int], patch: Size3, order: PatchTokenOrder = .timeMajor) -> FloatTensor {
    let geo = PatchGeometry(input: inputShape, patch: patch, order: order)
    precondition(rows.shape == [geo.input.n, geo.tokens, geo.features], "unpatchify: rows \(rows.shape) for input \(inputShape), patch \(patch)")
    let out = geo.coversInput ? FloatTensor(uninitialized: inputShape) : FloatTensor(zeros: inputShape)
    withExtendedLifetime((rows, out)) { movePatches(geo, input: out.pointer, rows: rows.pointer, toRows: false) }
    return out
}

/// The patch size of a weight [D, C, t, ph, pw].
private func patchOf(_ weight: FloatTensor) -> Size3 {
    precondition(weight.rank == 5, "patch embedding: weight must be [D, C, t, ph, pw], got \(weight.shape)")
    return Size3(weight.shape[2], weight.shape[3], weight.shape[4])
}

/// Patch embedding forward: `input` [N, C, T, H, W], `weight` [D, C, t, ph, pw] (kernel = stride),
/// optional `bias` [D] -> tokens [N, tokens, D] in `order`; as torch's
/// `conv3d(input, weight, bias, stride=(t, ph, pw)).flatten(2).transpose(1, 2)` for `.timeMajor`.
public func patchEmbedForward(_ input: FloatTensor, weight: FloatTensor, bias: FloatTensor? = nil,
                              order: PatchTokenOrder = .timeMajor) -> FloatTensor {
    let geo = PatchGeometry(input: input.shape, patch: patchOf(weight), order: order)
    let d = weight.shape[0], k = geo.features
    precondition(weight.shape[1] == geo.input.c, "patch embedding: weight \(weight.shape) for input \(input.shape)")
    if let bias { precondition(bias.shape == [d], "patch embedding: bias \(bias.shape) for weight \(weight.shape)") }
    let rows = geo.input.n * geo.tokens
    let patches = patchify(input, patch: geo.patch, order: order)
    let out = FloatTensor(uninitialized: [geo.input.n, geo.tokens, d])
    withExtendedLifetime((patches, weight, bias, out)) {
        if let bias { for r in 0..<rows { (out.pointer + r * d).update(from: bias.pointer, count: d) } }
        parallelSgemm(transA: false, transB: true, m: rows, n: d, k: k, a: patches.pointer, lda: k, b: weight.pointer, ldb: k,
                      beta: bias == nil ? 0 : 1, c: out.pointer, ldc: d)
    }
    return out
}

/// Patch embedding backward for dL/dtokens `gradOutput` [N, tokens, D]: adds dL/dweight to `gradWeight`
/// [D, C, t, ph, pw] and dL/dbias to `gradBias` [D] (when given) and returns dL/dinput [N, C, T, H, W]
/// (nil when `needInputGradient` is false; VideoMAE's pixels need none).
@discardableResult
public func patchEmbedBackward(_ input: FloatTensor, weight: FloatTensor, gradOutput: FloatTensor,
                               gradWeight: FloatTensor? = nil, gradBias: FloatTensor? = nil,
                               order: PatchTokenOrder = .timeMajor, needInputGradient: Bool = true) -> FloatTensor? {
    let geo = PatchGeometry(input: input.shape, patch: patchOf(weight), order: order)
    let d = weight.shape[0], k = geo.features, rows = geo.input.n * geo.tokens
    precondition(gradOutput.shape == [geo.input.n, geo.tokens, d], "patchEmbedBackward: gradOutput \(gradOutput.shape), expected \([geo.input.n, geo.tokens, d])")
    if let gradWeight {
        precondition(gradWeight.shape == weight.shape, "patchEmbedBackward: gradWeight \(gradWeight.shape)")
        let patches = patchify(input, patch: geo.patch, order: order)
        withExtendedLifetime((patches, gradOutput, gradWeight)) {
            parallelSgemm(transA: true, transB: false, m: d, n: k, k: rows, a: gradOutput.pointer, lda: d,
                          b: patches.pointer, ldb: k, beta: 1, c: gradWeight.pointer, ldc: k)
        }
    }
    if let gradBias {
        precondition(gradBias.shape == [d], "patchEmbedBackward: gradBias \(gradBias.shape)")
        withExtendedLifetime((gradOutput, gradBias)) {
            var sums = [Double](repeating: 0, count: d)
            for r in 0..<rows { for j in 0..<d { sums[j] += Double(gradOutput.pointer[r * d + j]) } }
            for j in 0..<d { gradBias.pointer[j] += Float(sums[j]) }
        }
    }
    guard needInputGradient else { return nil }
    let gradPatches = FloatTensor(uninitialized: [geo.input.n, geo.tokens, k])
    withExtendedLifetime((gradOutput, weight, gradPatches)) {
        parallelSgemm(m: rows, n: k, k: d, a: gradOutput.pointer, lda: d, b: weight.pointer, ldb: k,
                      beta: 0, c: gradPatches.pointer, ldc: k)
    }
    return unpatchify(gradPatches, inputShape: input.shape, patch: geo.patch, order: order)
}

// MARK: - Float64 oracle

/// Patch embedding in double precision, as the convolution reads: token (n, gt, gh, gw), channel o =
/// bias[o] + sum over (c, kt, kh, kw) of weight[o, c, kt, kh, kw] * input[n, c, gt t + kt, gh ph + kh, gw pw + kw].
public func patchEmbed64(_ input: Tensor64, weight: Tensor64, bias: Tensor64?, order: PatchTokenOrder = .timeMajor) -> Tensor64 {
    let p = Size3(weight.shape[2], weight.shape[3], weight.shape[4])
    let geo = PatchGeometry(input: input.shape, patch: p, order: order)
    let (s, g, d) = (geo.input, geo.grid, weight.shape[0])
    var out = Tensor64(zeros: [s.n, geo.tokens, d])
    for n in 0..<s.n { for gt in 0..<g.t { for gh in 0..<g.h { for gw in 0..<g.w {
        let row = geo.row(n, gt, gh, gw)
        for o in 0..<d {
            var acc = bias?.values[o] ?? 0
            for c in 0..<s.c { for kt in 0..<p.t { for kh in 0..<p.h { for kw in 0..<p.w {
                let x = input.values[(((n * s.c + c) * s.t + gt * p.t + kt) * s.h + gh * p.h + kh) * s.w + gw * p.w + kw]
                acc += weight.values[(((o * s.c + c) * p.t + kt) * p.h + kh) * p.w + kw] * x
            } } } }
            out.values[row * d + o] = acc
        }
    } } } }
    return out
}

/// patchEmbed64's gradients for dL/dtokens `gradOutput` [N, tokens, D].
public func patchEmbedBackward64(_ input: Tensor64, weight: Tensor64, gradOutput: Tensor64, order: PatchTokenOrder = .timeMajor)
    -> (input: Tensor64, weight: Tensor64, bias: Tensor64) {
    let p = Size3(weight.shape[2], weight.shape[3], weight.shape[4])
    let geo = PatchGeometry(input: input.shape, patch: p, order: order)
    let (s, g, d) = (geo.input, geo.grid, weight.shape[0])
    var dx = Tensor64(zeros: input.shape), dw = Tensor64(zeros: weight.shape), db = Tensor64(zeros: [d])
    for n in 0..<s.n { for gt in 0..<g.t { for gh in 0..<g.h { for gw in 0..<g.w {
        let row = geo.row(n, gt, gh, gw)
        for o in 0..<d {
            let dy = gradOutput.values[row * d + o]
            db.values[o] += dy
            for c in 0..<s.c { for kt in 0..<p.t { for kh in 0..<p.h { for kw in 0..<p.w {
                let xi = (((n * s.c + c) * s.t + gt * p.t + kt) * s.h + gh * p.h + kh) * s.w + gw * p.w + kw
                let wi = (((o * s.c + c) * p.t + kt) * p.h + kh) * p.w + kw
                dx.values[xi] += dy * weight.values[wi]
                dw.values[wi] += dy * input.values[xi]
            } } } }
        }
    } } } }
    return (dx, dw, db)
}
