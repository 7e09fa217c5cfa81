// Multi-head scaled dot-product attention, softmax(Q K^T * scale) V per head, as Hugging Face's
// VideoMAE and TimeSformer attention (and torch.nn.functional.scaled_dot_product_attention without a
// mask or dropout), with its double-precision oracle. Q, K, V and the output are strided row buffers
// (`AttentionOperand`), so Q, K and V can be column slices of one fused qkv buffer [S, L, 3 H dh] (timm's
// and TimeSformer's `qkv` linear, columns (3, H, dh)) or separate [S, L, H dh] buffers (VideoMAE's
// query/key/value) with no copies; heads are concatenated in the output as torch's
// `transpose(1, 2).reshape(S, L, H dh)`.
// Memory plan: work items are (sequence, head, block of `blockRows` query rows); a thread holds the
// score block [rows, Lk] of its current item only, never a head's [L, L] matrix. Scores come from
// sgemm on the strided operands (K used transposed through its leading dimension), the softmax
// subtracts each row's maximum (AttentionRows.swift), P V is one more sgemm, and the rows are divided
// by their sum after it (dh values a row instead of Lk).
// Backward recomputes each block's probabilities from Q, K and the saved row maximum and sum:
// dP = dO V^T, dS = P (dP - rowsum(P dP)) (rowsum(P dP) = dO . O when the output is given),
// dV += P^T dO, dQ = scale dS K, dK += scale dS^T Q. A thread sums dK and dV of its current (sequence,
// head) in scratch and writes them once; a pair whose blocks two threads share is added under a lock.
// Where memory allows, the statistics can keep P (unnormalised) from the forward instead: the backward
// then skips Q K^T and the exp (measured: a third of its time at L = 1568 on one core; in the 2-thread
// VideoMAE-S train step, where the kept P streams from memory, the step was slower, so training recomputes).
// On AVX-512 with dh a multiple of 16, Q K^T, dO V^T, P V and dS K run on register tiles
// (attention_avx512.c, `HeadTiles`) that read the score block in place and K and V from copies made once
// per (sequence, head); P^T dO and dS^T Q, which read the block down its columns, stay with sgemm.

import Foundation

/// The extents of one attention call: `sequences` independent sequences (the batch, or batch x
/// frames / batch x patches for TimeSformer's divided attention), `length` query rows and `keyLength`
/// key/value rows per sequence, `heads` heads of `headDim` columns.
public struct AttentionShape: Equatable, Sendable {
    public var sequences, length, keyLength, heads, headDim: Int

    public init(sequences: Int, length: Int, keyLength: Int? = nil, heads: Int, headDim: Int) {
        precondition(sequences >= 0 && length > 0 && (keyLength ?? length) > 0 && heads > 0 && headDim > 0,
                     "attention: sequences \(sequences), length \(length), keyLength \(keyLength ?? length), heads \(heads), headDim \(headDim)")
        (self.sequences, self.length, self.keyLength, self.heads, self.headDim) = (sequences, length, keyLength ?? length, heads, headDim)
    }

    /// Columns of all heads: heads x headDim.
    public var width: Int { heads * headDim }
    /// torch's default scale, headDim^-0.5.
    public var defaultScale: Float { Float(1 / Double(headDim).squareRoot()) }
}

/// Where one attention operand lives: element (sequence s, row i, column c) at
/// `base[s * sequenceStride + i * rowStride + c]`, c in 0..<heads * headDim, head h the columns
/// h * headDim..<(h + 1) * headDim. The pointer must stay valid for the call it is passed to.
public struct AttentionOperand {
    public let base: UnsafeMutablePointer<Float>
    public let rowStride: Int
    public let sequenceStride: Int

    public init(base: UnsafeMutablePointer<Float>, rowStride: Int, sequenceStride: Int) {
        (self.base, self.rowStride, self.sequenceStride) = (base, rowStride, sequenceStride)
    }

    /// Columns `columnOffset`... of a contiguous [S, L, C] tensor: rowStride C, sequenceStride L C.
    /// For a fused qkv [S, L, 3 H dh], query, key and value are offsets 0, H dh and 2 H dh.
    public init(_ tensor: FloatTensor, columnOffset: Int = 0) {
        precondition(tensor.rank == 3, "attention operand: expected [S, L, C], got \(tensor.shape)")
        let (l, c) = (tensor.shape[1], tensor.shape[2])
        self.init(base: tensor.pointer + columnOffset, rowStride: c, sequenceStride: l * c)
    }

    /// The first column of head `h` in row `i` of sequence `s`.
    @inline(__always)
    func at(_ s: Int, _ i: Int, head h: Int, _ headDim: Int) -> UnsafeMutablePointer<Float> {
        base + s * sequenceStride + i * rowStride + h * headDim
    }
}

/// What the forward saves for the backward: per (sequence, head, query row) the softmax's row
/// maximum of the scaled scores and the sum of exp(score - max), both [S, H, L]; and, when made with
/// `keepProbabilities`, exp(score - max) itself, unnormalised, [S, H, L, Lk], which the backward then
/// reads instead of recomputing Q K^T and the exp (H L Lk floats a sequence: 59 MB at VideoMAE-S's
/// 6 x 1568^2, 118 MB a layer at VideoMAE-B's 12 heads).
public final class AttentionStatistics: @unchecked Sendable {
    public let rowMax: FloatTensor
    public let rowSum: FloatTensor
    public let probabilities: FloatTensor?

    public init(_ shape: AttentionShape, keepProbabilities: Bool = false) {
        rowMax = FloatTensor(uninitialized: [shape.sequences, shape.heads, shape.length])
        rowSum = FloatTensor(uninitialized: [shape.sequences, shape.heads, shape.length])
        probabilities = keepProbabilities ? FloatTensor(uninitialized: [shape.sequences, shape.heads, shape.length, shape.keyLength]) : nil
    }
}

/// Query rows per work item: a thread's score block is blockRows x Lk floats (128 x 1568: 0.8 MB; the
/// backward holds two). With the AVX-512 tiles K and V are copied once per (sequence, head) whatever the
/// block, and 128 rows keep the blocks and those copies within a core's 2 MB L2: the VideoMAE-S train step
/// (batch 2, 2 threads) took 2.96-2.99 s at 128 rows against 3.12 s at 256 (medians of 3-4 runs each,
/// alternated; 64 and 96 rows no better). Before the tiles, when OpenBLAS packed K and V for every block,
/// 256 rows measured best (one core: 64 rows 60 + 115 ms, 128 rows 56 + 108 ms, 256 rows 53 + 105 ms).
public let attentionBlockRows = 128

// MARK: - Strided entry points

/// Attention forward on strided operands: for each sequence s and head h,
/// output[s, :, h] = softmax(scale * Q[s, :, h] K[s, :, h]^T) V[s, :, h], with `scale` default
/// headDim^-0.5. `query` and `output` have `shape.length` rows per sequence, `key` and `value`
/// `shape.keyLength`. The output must not overlap the inputs. Fills `statistics` (for the backward)
/// when given; when those keep probabilities, the scores are computed in them instead of in a block of
/// scratch.
public func attentionForward(_ shape: AttentionShape, query: AttentionOperand, key: AttentionOperand,
                             value: AttentionOperand, output: AttentionOperand, scale: Float? = nil,
                             statistics: AttentionStatistics? = nil, blockRows: Int = attentionBlockRows,
                             workspace: Workspace? = nil) {
    let (l, lk, dh, heads) = (shape.length, shape.keyLength, shape.headDim, shape.heads)
    let scale = scale ?? shape.defaultScale
    if let statistics { precondition(statistics.rowMax.shape == [shape.sequences, heads, l], "attention: statistics \(statistics.rowMax.shape) for \(shape)") }
    let probabilities = statistics?.probabilities
    if let probabilities { precondition(probabilities.shape == [shape.sequences, heads, l, lk], "attention: probabilities \(probabilities.shape) for \(shape)") }
    let blk = max(1, min(blockRows, l))
    let blocks = (l + blk - 1) / blk
    let items = shape.sequences * heads * blocks
    guard items > 0 else { return }
    let maxParts = Threading.splitGemms ? min(Threading.threads, items) : 1
    let tileFloats = HeadTiles.available(dh: dh) ? HeadTiles.floats(dh: dh, lk: lk) : 0
    let perPart = (probabilities == nil ? blk * lk : 0) + tileFloats
    let ws = workspace ?? Workspace()
    let scratch = ws.buffer(maxParts * perPart)
    let rowMax = statistics?.rowMax.pointer, rowSum = statistics?.rowSum.pointer, kept = probabilities?.pointer
    _ = withExtendedLifetime((statistics, probabilities, ws)) {
        parallelParts(items, maxParts: maxParts) { part, range in
            var inverse = [Float](repeating: 0, count: blk)
            var tiles = HeadTiles(dh: dh, lk: lk, scratch: scratch + part * perPart + (perPart - tileFloats))
            for item in range {
                let (pair, block) = item.quotientAndRemainder(dividingBy: blocks)
                let (s, h) = pair.quotientAndRemainder(dividingBy: heads)
                let i0 = block * blk, nb = min(blk, l - i0)
                let scores = kept.map { $0 + (pair * l + i0) * lk } ?? scratch + part * perPart
                if tiles != nil {
                    tiles!.load(pair: pair, key: key.at(s, 0, head: h, dh), keyStride: key.rowStride,
                                value: value.at(s, 0, head: h, dh), valueStride: value.rowStride, backward: false)
                    tiles!.scores(m: nb, alpha: scale, a: query.at(s, i0, head: h, dh), lda: query.rowStride, c: scores)
                } else {
                    sgemm(transB: true, m: nb, n: lk, k: dh, alpha: scale,
                          a: query.at(s, i0, head: h, dh), lda: query.rowStride,
                          b: key.at(s, 0, head: h, dh), ldb: key.rowStride, beta: 0, c: scores, ldc: lk)
                }
                for r in 0..<nb {
                    let row = scores + r * lk
                    let m = rowMaximum(row, lk)
                    let sum = expShifted(row, lk, max: m)
                    inverse[r] = 1 / sum
                    rowMax?[pair * l + i0 + r] = m
                    rowSum?[pair * l + i0 + r] = sum
                }
                let out = output.at(s, i0, head: h, dh)
                if let tiles {
                    headProduct(m: nb, k: lk, dh: dh, a: scores, lda: lk, b: tiles.rows, ldb: dh, beta: 0, c: out, ldc: output.rowStride)
                } else {
                    sgemm(m: nb, n: dh, k: lk, a: scores, lda: lk, b: value.at(s, 0, head: h, dh), ldb: value.rowStride,
                          beta: 0, c: out, ldc: output.rowStride)
                }
                for r in 0..<nb {
                    let o = out + r * output.rowStride, f = inverse[r]
                    for c in 0..<dh { o[c] *= f }
                }
            }
        }
    }
}

/// Attention backward on strided operands, from the forward's inputs and `statistics` and dL/doutput
/// `gradOutput`: writes dL/dQ, dL/dK, dL/dV into `gradQuery`, `gradKey`, `gradValue` (overwriting, or
/// adding when `accumulate`). The gradient operands may be column slices of one fused dqkv buffer; they
/// must not overlap each other or the inputs. The probabilities are recomputed block by block, or read
/// from the statistics when they keep them (no Q K^T, no exp). With the forward's `output` (the
/// model keeps it for the projection's backward) each row's sum of P dP is dO . O, and the
/// probabilities and dS come out of one pass; without it, of three.
public func attentionBackward(_ shape: AttentionShape, query: AttentionOperand, key: AttentionOperand,
                              value: AttentionOperand, output: AttentionOperand? = nil,
                              gradOutput: AttentionOperand, statistics: AttentionStatistics,
                              gradQuery: AttentionOperand, gradKey: AttentionOperand, gradValue: AttentionOperand,
                              scale: Float? = nil, accumulate: Bool = false, blockRows: Int = attentionBlockRows,
                              workspace: Workspace? = nil) {
    let (l, lk, dh, heads) = (shape.length, shape.keyLength, shape.headDim, shape.heads)
    let scale = scale ?? shape.defaultScale
    precondition(statistics.rowMax.shape == [shape.sequences, heads, l], "attentionBackward: statistics \(statistics.rowMax.shape) for \(shape)")
    let probabilities = statistics.probabilities
    if let probabilities { precondition(probabilities.shape == [shape.sequences, heads, l, lk], "attentionBackward: probabilities \(probabilities.shape) for \(shape)") }
    let blk = max(1, min(blockRows, l))
    let blocks = (l + blk - 1) / blk
    let pairs = shape.sequences * heads
    let items = pairs * blocks
    guard items > 0 else { return }
    let parts = Threading.splitGemms ? max(1, min(Threading.threads, items)) : 1
    // The items of part p: itemRange(p). A pair is shared when a boundary between parts cuts its blocks.
    func itemRange(_ p: Int) -> Range<Int> { (items * p / parts)..<(items * (p + 1) / parts) }
    let shared = Set((1..<parts).map { items * $0 / parts }.filter { $0 % blocks != 0 }.map { $0 / blocks })
    /// Adds or copies a [lk, dh] block of scratch into the operand's rows of (s, h).
    func store(_ src: UnsafePointer<Float>, into dst: AttentionOperand, _ s: Int, _ h: Int, add: Bool) {
        for j in 0..<lk {
            let d = dst.at(s, j, head: h, dh), r = src + j * dh
            if add { for c in 0..<dh { d[c] += r[c] } } else { d.update(from: r, count: dh) }
        }
    }
    if !accumulate {
        for pair in shared {
            let (s, h) = pair.quotientAndRemainder(dividingBy: heads)
            for j in 0..<lk {
                gradKey.at(s, j, head: h, dh).update(repeating: 0, count: dh)
                gradValue.at(s, j, head: h, dh).update(repeating: 0, count: dh)
            }
        }
    }
    // Per part: dP (blk x lk), dK and dV sums of the current pair (lk x dh each), dO scaled by the rows'
    // 1 / sum (blk x dh) when P is kept, else a P block (blk x lk).
    let kept = probabilities?.pointer
    let tileFloats = HeadTiles.available(dh: dh) ? HeadTiles.floats(dh: dh, lk: lk) : 0
    let perPart = blk * lk + 2 * lk * dh + (kept == nil ? blk * lk : blk * dh) + tileFloats
    let ws = workspace ?? Workspace()
    let scratch = ws.buffer(parts * perPart)
    let lock = NSLock()
    let rowMax = statistics.rowMax.pointer, rowSum = statistics.rowSum.pointer
    _ = withExtendedLifetime((statistics, probabilities, ws)) {
        parallelParts(parts, maxParts: parts) { _, partRange in
            for part in partRange {
                let dProbs = scratch + part * perPart
                let dKSum = dProbs + blk * lk, dVSum = dKSum + lk * dh, extra = dVSum + lk * dh
                var tiles = HeadTiles(dh: dh, lk: lk, scratch: dProbs + (perPart - tileFloats))
                let range = itemRange(part)
                var item = range.lowerBound
                while item < range.upperBound {
                    // This part's blocks of one (sequence, head) pair.
                    let pair = item / blocks
                    let (s, h) = pair.quotientAndRemainder(dividingBy: heads)
                    let end = min(range.upperBound, (pair + 1) * blocks)
                    var first = true
                    while item < end {
                        let i0 = (item % blocks) * blk, nb = min(blk, l - i0)
                        let q = query.at(s, i0, head: h, dh), dO = gradOutput.at(s, i0, head: h, dh)
                        /// dO . O of row r, when the output is given.
                        func rowDot(_ r: Int) -> Float? {
                            output.map { Float(dotInDouble(dO + r * gradOutput.rowStride, $0.at(s, i0 + r, head: h, dh), dh)) }
                        }
                        // dP = dO V^T.
                        if tiles != nil {
                            tiles!.load(pair: pair, key: key.at(s, 0, head: h, dh), keyStride: key.rowStride,
                                        value: value.at(s, 0, head: h, dh), valueStride: value.rowStride, backward: true)
                            tiles!.scores(m: nb, alpha: 1, a: dO, lda: gradOutput.rowStride, value: true, c: dProbs)
                        } else {
                            sgemm(transB: true, m: nb, n: lk, k: dh, a: dO, lda: gradOutput.rowStride,
                                  b: value.at(s, 0, head: h, dh), ldb: value.rowStride, beta: 0, c: dProbs, ldc: lk)
                        }
                        // The P rows dV reads, and the right-hand side it multiplies: P and dO, or the kept
                        // unnormalised exp(S - max) and dO with each row divided by its sum.
                        let probs: UnsafeMutablePointer<Float>, dVRight: UnsafeMutablePointer<Float>, dVRightStride: Int
                        if let kept {
                            probs = kept + (pair * l + i0) * lk
                            (dVRight, dVRightStride) = (extra, dh)
                            for r in 0..<nb {
                                let (e, ds) = (probs + r * lk, dProbs + r * lk)
                                let inv = 1 / rowSum[pair * l + i0 + r]
                                let d = rowDot(r) ?? inv * Float(dotInDouble(e, ds, lk))
                                scaledSoftmaxGradient(e, ds, lk, inverseSum: inv, rowDot: d)
                                let src = dO + r * gradOutput.rowStride, dst = extra + r * dh
                                for c in 0..<dh { dst[c] = src[c] * inv }
                            }
                        } else {
                            // S = scale Q K^T, then P = exp(S - max) / sum and dS = P (dP - rowsum(P dP)).
                            probs = extra
                            (dVRight, dVRightStride) = (dO, gradOutput.rowStride)
                            if let tiles {
                                tiles.scores(m: nb, alpha: scale, a: q, lda: query.rowStride, c: probs)
                            } else {
                                sgemm(transB: true, m: nb, n: lk, k: dh, alpha: scale, a: q, lda: query.rowStride,
                                      b: key.at(s, 0, head: h, dh), ldb: key.rowStride, beta: 0, c: probs, ldc: lk)
                            }
                            for r in 0..<nb {
                                let stat = pair * l + i0 + r
                                let (p, ds) = (probs + r * lk, dProbs + r * lk)
                                if let d = rowDot(r) {
                                    probabilitiesAndGradient(p, ds, lk, max: rowMax[stat], inverseSum: 1 / rowSum[stat], rowDot: d)
                                } else {
                                    recomputeProbabilities(p, lk, max: rowMax[stat], inverseSum: 1 / rowSum[stat])
                                    softmaxRowBackward(p, ds, lk)
                                }
                            }
                        }
                        // dV += P^T dO; dK += scale dS^T Q; dQ = scale dS K.
                        let dQ = gradQuery.at(s, i0, head: h, dh)
                        // dV and dK stay with OpenBLAS: a tile reading the score block down its columns
                        // (a row of the block a page apart) measured slower than OpenBLAS's packed product.
                        sgemm(transA: true, m: lk, n: dh, k: nb, a: probs, lda: lk, b: dVRight, ldb: dVRightStride,
                              beta: first ? 0 : 1, c: dVSum, ldc: dh)
                        sgemm(transA: true, m: lk, n: dh, k: nb, alpha: scale, a: dProbs, lda: lk, b: q, ldb: query.rowStride,
                              beta: first ? 0 : 1, c: dKSum, ldc: dh)
                        if let tiles {
                            headProduct(m: nb, k: lk, dh: dh, alpha: scale, a: dProbs, lda: lk, b: tiles.rows, ldb: dh,
                                        beta: accumulate ? 1 : 0, c: dQ, ldc: gradQuery.rowStride)
                        } else {
                            sgemm(m: nb, n: dh, k: lk, alpha: scale, a: dProbs, lda: lk, b: key.at(s, 0, head: h, dh), ldb: key.rowStride,
                                  beta: accumulate ? 1 : 0, c: dQ, ldc: gradQuery.rowStride)
                        }
                        first = false
                        item += 1
                    }
                    if shared.contains(pair) {
                        lock.lock()
                        store(dKSum, into: gradKey, s, h, add: true)
                        store(dVSum, into: gradValue, s, h, add: true)
                        lock.unlock()
                    } else {
                        store(dKSum, into: gradKey, s, h, add: accumulate)
                        store(dVSum, into: gradValue, s, h, add: accumulate)
                    }
                }
            }
        }
    }
}

// MARK: - Tensor entry points

/// The [S, L, H dh] shape of a query/key/value tensor as an `AttentionShape` with `heads` heads.
private func attentionShape(_ query: FloatTensor, _ key: FloatTensor, heads: Int, fused: Bool = false) -> AttentionShape {
    precondition(query.rank == 3 && key.rank == 3 && query.shape[0] == key.shape[0] && query.shape[2] == key.shape[2],
                 "attention: query \(query.shape), key \(key.shape): expected [S, L, C] with equal S and C")
    let width = fused ? query.shape[2] / 3 : query.shape[2]
    precondition(heads > 0 && width % heads == 0 && (!fused || query.shape[2] % 3 == 0),
                 "attention: \(query.shape[2]) columns for \(heads) heads\(fused ? " (fused qkv: 3 x heads x headDim)" : "")")
    return AttentionShape(sequences: query.shape[0], length: query.shape[1], keyLength: key.shape[1],
                          heads: heads, headDim: width / heads)
}

/// Attention of separate `query` [S, L, H dh], `key` and `value` [S, Lk, H dh] (VideoMAE's layout):
/// returns the output [S, L, H dh] and the statistics for `attentionBackward` (keeping the
/// probabilities when `keepProbabilities`).
public func attentionForward(query: FloatTensor, key: FloatTensor, value: FloatTensor, heads: Int, scale: Float? = nil,
                             keepProbabilities: Bool = false) -> (output: FloatTensor, statistics: AttentionStatistics) {
    let shape = attentionShape(query, key, heads: heads)
    precondition(value.shape == key.shape, "attention: value \(value.shape) for key \(key.shape)")
    let out = FloatTensor(uninitialized: [shape.sequences, shape.length, shape.width])
    let stats = AttentionStatistics(shape, keepProbabilities: keepProbabilities)
    withExtendedLifetime((query, key, value, out)) {
        attentionForward(shape, query: AttentionOperand(query), key: AttentionOperand(key), value: AttentionOperand(value),
                         output: AttentionOperand(out), scale: scale, statistics: stats)
    }
    return (out, stats)
}

/// Gradients of `attentionForward(query:key:value:heads:)` for dL/doutput `gradOutput` [S, L, H dh];
/// `output`, the forward's, saves two passes when given.
public func attentionBackward(query: FloatTensor, key: FloatTensor, value: FloatTensor, output: FloatTensor? = nil,
                              statistics: AttentionStatistics, gradOutput: FloatTensor, heads: Int, scale: Float? = nil)
    -> (query: FloatTensor, key: FloatTensor, value: FloatTensor) {
    let shape = attentionShape(query, key, heads: heads)
    precondition(value.shape == key.shape && gradOutput.shape == query.shape && (output == nil || output!.shape == query.shape),
                 "attentionBackward: value \(value.shape), gradOutput \(gradOutput.shape), output \(output?.shape ?? []) for query \(query.shape), key \(key.shape)")
    let dq = FloatTensor(uninitialized: query.shape), dk = FloatTensor(uninitialized: key.shape)
    let dv = FloatTensor(uninitialized: value.shape)
    withExtendedLifetime((query, key, value, output, gradOutput, dq, dk, dv)) {
        attentionBackward(shape, query: AttentionOperand(query), key: AttentionOperand(key), value: AttentionOperand(value),
                          output: output.map { AttentionOperand($0) }, gradOutput: AttentionOperand(gradOutput), statistics: statistics,
                          gradQuery: AttentionOperand(dq), gradKey: AttentionOperand(dk), gradValue: AttentionOperand(dv), scale: scale)
    }
    return (dq, dk, dv)
}

/// Attention of a fused `qkv` [S, L, 3 H dh] (columns: query heads, key heads, value heads, as
/// timm's and TimeSformer's `qkv` linear writes them): returns the output [S, L, H dh] and the statistics
/// (keeping the probabilities when `keepProbabilities`).
public func fusedAttentionForward(qkv: FloatTensor, heads: Int, scale: Float? = nil, keepProbabilities: Bool = false)
    -> (output: FloatTensor, statistics: AttentionStatistics) {
    let shape = attentionShape(qkv, qkv, heads: heads, fused: true)
    let out = FloatTensor(uninitialized: [shape.sequences, shape.length, shape.width])
    let stats = AttentionStatistics(shape, keepProbabilities: keepProbabilities)
    withExtendedLifetime((qkv, out)) {
        attentionForward(shape, query: AttentionOperand(qkv), key: AttentionOperand(qkv, columnOffset: shape.width),
                         value: AttentionOperand(qkv, columnOffset: 2 * shape.width), output: AttentionOperand(out),
                         scale: scale, statistics: stats)
    }
    return (out, stats)
}

/// Gradient of `fusedAttentionForward` with respect to `qkv`: [S, L, 3 H dh], the fused layout; `output`,
/// the forward's, saves two passes when given.
public func fusedAttentionBackward(qkv: FloatTensor, output: FloatTensor? = nil, statistics: AttentionStatistics,
                                   gradOutput: FloatTensor, heads: Int, scale: Float? = nil) -> FloatTensor {
    let shape = attentionShape(qkv, qkv, heads: heads, fused: true)
    precondition(gradOutput.shape == [shape.sequences, shape.length, shape.width] && (output == nil || output!.shape == gradOutput.shape),
                 "fusedAttentionBackward: gradOutput \(gradOutput.shape), output \(output?.shape ?? []) for qkv \(qkv.shape)")
    let dqkv = FloatTensor(uninitialized: qkv.shape)
    withExtendedLifetime((qkv, output, gradOutput, dqkv)) {
        let w = shape.width
        attentionBackward(shape, query: AttentionOperand(qkv), key: AttentionOperand(qkv, columnOffset: w),
                          value: AttentionOperand(qkv, columnOffset: 2 * w), output: output.map { AttentionOperand($0) },
                          gradOutput: AttentionOperand(gradOutput),
                          statistics: statistics, gradQuery: AttentionOperand(dqkv),
                          gradKey: AttentionOperand(dqkv, columnOffset: w), gradValue: AttentionOperand(dqkv, columnOffset: 2 * w),
                          scale: scale)
    }
    return dqkv
}

// MARK: - Float64 oracle

/// One (sequence, head) of separate [S, L, H dh] tensors as an [L, dh] array.
private func headSlice(_ t: Tensor64, _ s: Int, _ h: Int, heads: Int) -> [[Double]] {
    let (l, c) = (t.shape[1], t.shape[2])
    let dh = c / heads
    return (0..<l).map { i in Array(t.values[(s * l * c + i * c + h * dh)..<(s * l * c + i * c + (h + 1) * dh)]) }
}

/// The probabilities softmax(scale q k^T) of one head, [L, Lk], in double precision.
private func probabilities64(_ q: [[Double]], _ k: [[Double]], scale: Double) -> [[Double]] {
    q.map { qi in
        let scores = k.map { kj in scale * zip(qi, kj).reduce(0) { $0 + $1.0 * $1.1 } }
        let m = scores.max()!
        let e = scores.map { exp($0 - m) }
        let sum = e.reduce(0, +)
        return e.map { $0 / sum }
    }
}

/// Attention of separate `query` [S, L, H dh], `key` and `value` [S, Lk, H dh] in double precision,
/// head by head as the definition reads (scale default headDim^-0.5).
public func attention64(query: Tensor64, key: Tensor64, value: Tensor64, heads: Int, scale: Double? = nil) -> Tensor64 {
    let (sequences, l, c) = (query.shape[0], query.shape[1], query.shape[2])
    let dh = c / heads
    let scale = scale ?? 1 / Double(dh).squareRoot()
    var out = Tensor64(zeros: query.shape)
    for s in 0..<sequences {
        for h in 0..<heads {
            let p = probabilities64(headSlice(query, s, h, heads: heads), headSlice(key, s, h, heads: heads), scale: scale)
            let v = headSlice(value, s, h, heads: heads)
            for i in 0..<l {
                for d in 0..<dh {
                    out.values[s * l * c + i * c + h * dh + d] = (0..<v.count).reduce(0) { $0 + p[i][$1] * v[$1][d] }
                }
            }
        }
    }
    return out
}

/// attention64's gradients for dL/doutput `gradOutput`: dV = P^T dO, dP = dO V^T,
/// dS = P (dP - rowsum(P dP)), dQ = scale dS K, dK = scale dS^T Q.
public func attentionBackward64(query: Tensor64, key: Tensor64, value: Tensor64, heads: Int, scale: Double? = nil,
                                gradOutput: Tensor64) -> (query: Tensor64, key: Tensor64, value: Tensor64) {
    let (sequences, l, c) = (query.shape[0], query.shape[1], query.shape[2])
    let lk = key.shape[1], dh = c / heads
    let scale = scale ?? 1 / Double(dh).squareRoot()
    var dq = Tensor64(zeros: query.shape), dk = Tensor64(zeros: key.shape), dv = Tensor64(zeros: value.shape)
    for s in 0..<sequences {
        for h in 0..<heads {
            let q = headSlice(query, s, h, heads: heads), k = headSlice(key, s, h, heads: heads)
            let v = headSlice(value, s, h, heads: heads), dO = headSlice(gradOutput, s, h, heads: heads)
            let p = probabilities64(q, k, scale: scale)
            for i in 0..<l {
                let dp = (0..<lk).map { j in (0..<dh).reduce(0) { $0 + dO[i][$1] * v[j][$1] } }
                let rowDot = (0..<lk).reduce(0) { $0 + p[i][$1] * dp[$1] }
                for j in 0..<lk {
                    let ds = p[i][j] * (dp[j] - rowDot)
                    for d in 0..<dh {
                        dv.values[s * lk * c + j * c + h * dh + d] += p[i][j] * dO[i][d]
                        dq.values[s * l * c + i * c + h * dh + d] += scale * ds * k[j][d]
                        dk.values[s * lk * c + j * c + h * dh + d] += scale * ds * q[i][d]
                    }
                }
            }
        }
    }
    return (dq, dk, dv)
}
