// Channel concatenation (torch.cat(dim=1)) of tensors that agree on every
// other dimension: SlowFast's lateral fusion (slow first) and the head.
// Backward slices the gradient by the same channel offsets.

import Foundation

/// Concatenates `[N, C_i, ...]` tensors along dimension 1, in order.
public func concatChannels(_ xs: [FloatTensor]) -> FloatTensor {
    precondition(!xs.isEmpty, "concat: no inputs")
    let first = xs[0].shape
    precondition(first.count >= 2, "concat: inputs need a channel dimension, got \(first)")
    for x in xs {
        precondition(x.rank == first.count && x.shape[0] == first[0] && Array(x.shape[2...]) == Array(first[2...]),
                     "concat: \(x.shape) does not match \(first) outside dimension 1")
    }
    let n = first[0]
    let inner = first[2...].reduce(1, *)
    let total = xs.reduce(0) { $0 + $1.shape[1] }
    var shape = first
    shape[1] = total
    let out = FloatTensor(uninitialized: shape)
    // Each (sample, input) block is contiguous on both sides.
    var blocks: [(src: UnsafeMutablePointer<Float>, dst: UnsafeMutablePointer<Float>, count: Int)] = []
    for s in 0..<n {
        var offset = 0
        for x in xs {
            let size = x.shape[1] * inner
            blocks.append((x.pointer + s * size, out.pointer + (s * total + offset) * inner, size))
            offset += x.shape[1]
        }
    }
    parallelFor(blocks.count, work: out.count / max(1, blocks.count)) { i in
        blocks[i].dst.update(from: blocks[i].src, count: blocks[i].count)
    }
    return out
}

/// The oracle: element by element through full indices.
public func concatChannelsNaive(_ xs: [FloatTensor]) -> FloatTensor {
    let n = xs[0].shape[0], inner = xs[0].shape[2...].reduce(1, *)
    let total = xs.reduce(0) { $0 + $1.shape[1] }
    var shape = xs[0].shape
    shape[1] = total
    var values = [Float](repeating: .nan, count: n * total * inner)
    var offset = 0
    for x in xs {
        let c = x.shape[1]
        for s in 0..<n { for ch in 0..<c { for i in 0..<inner {
            values[(s * total + offset + ch) * inner + i] = x.pointer[(s * c + ch) * inner + i]
        } } }
        offset += c
    }
    return FloatTensor(shape: shape, values: values)
}

/// Concat backward: the gradient of `[N, sum(channels), ...]` split back into
/// one `[N, channels[i], ...]` gradient per input.
public func concatChannelsBackward(_ gradOutput: FloatTensor, channels: [Int]) -> [FloatTensor] {
    let shape = gradOutput.shape
    precondition(shape.count >= 2 && channels.reduce(0, +) == shape[1],
                 "concatBackward: gradient \(shape) for channels \(channels)")
    let (n, total) = (shape[0], shape[1])
    let inner = shape[2...].reduce(1, *)
    var outs: [FloatTensor] = []
    var offset = 0
    for c in channels {
        var s = shape
        s[1] = c
        let out = FloatTensor(uninitialized: s)
        for sample in 0..<n {
            (out.pointer + sample * c * inner).update(from: gradOutput.pointer + (sample * total + offset) * inner, count: c * inner)
        }
        outs.append(out)
        offset += c
    }
    return outs
}
