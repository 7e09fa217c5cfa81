// Multi-head softmax attention in a video transformer's ONNX graph, found from the LayerNorm output that feeds
// it: the q/k/v projections (three linears, or one fused [3D] linear), the Softmax they reach, the score MatMul
// before it and the MatMul with v after it. Each operand of those two MatMuls is traced back to its projection
// through the head split (Reshape to [B, L, H, hd], or [B, L, 3, H, hd] for a fused projection), Transposes,
// the chunk of a fused projection (Gather on the "3" axis as torch writes `qkv[0]`, Split as in `chunk(3)` or
// sfnet's export, a Slice of the last axis) and scalar scales. Axis labels (b, l, h, d, c) are carried through
// so q and v must arrive as [b, h, l, d] and k as [b, h, d, l]; the scales on q, k and the scores must multiply
// to head_dim^-0.5 (torch decomposes SDPA into q and k each times head_dim^-0.25; transformers' eager
// TimeSformer scales the scores). After the second MatMul the heads are merged back ([b, l, h, d] -> D) into
// the output projection.

import Foundation
import Formats

struct OnnxAttention {
    /// q, k, v in PyTorch's [D, D_in] layout with their biases (nil where the projection has none).
    var q: (weight: Tensor, bias: Tensor?), k: (weight: Tensor, bias: Tensor?), v: (weight: Tensor, bias: Tensor?)
    /// The graph computes q, k, v with one linear (chunks in `chunkOrder`: q's, k's, v's chunk index).
    var fused: Bool
    var chunkOrder: [Int]
    var heads: Int, headDim: Int
    /// Tokens per sequence where a Reshape states it.
    var sequence: Int?
    var output: OnnxLinear
    var scale: Double
    var notes: [String: String]
}

extension OnnxTransformerWalk {
    private enum Step {
        case transpose([Int]), reshape([Int?]), gather(axis: Int, index: Int, drops: Bool), split(axis: Int, index: Int, sizes: [Int]?)
        case slice(axis: Int, start: Int, end: Int), squeeze([Int]?), scale(Double), pass
    }

    private struct Operand {
        var projection: Int
        var chunk: Int?
        var scale: Double
        var heads: Int
        var headDim: Int
        var sequence: Int?
        var labels: [Character]
    }

    /// The attention block whose projections read `normed` (tokens of width `width`).
    func attention(reading normed: String, width: Int, what: String) throws -> OnnxAttention {
        let projections = try linears(reading: normed).map { try linear($0) }
        let fused = projections.count == 1
        guard projections.count == 3 || fused else {
            throw fail("\(what): '\(normed)' feeds \(projections.count) linear layers, expected q, k, v (3) or a fused qkv (1)")
        }
        for p in projections where p.inFeatures != width || p.outFeatures != (fused ? 3 * width : width) {
            throw fail("\(what): projection \(describe(p.node)) is \(p.weight.shape), expected [\(fused ? 3 * width : width), \(width)]")
        }

        // The one Softmax the projections reach (not looking past linears or layer norms).
        var softmaxes = Set<Int>(), seen = Set<String>(), frontier = projections.map(\.output)
        while let v = frontier.popLast() {
            guard seen.insert(v).inserted, seen.count <= nodes.count else { continue }
            for k in readers(v) {
                let op = nodes[k].opType
                if op == "Softmax" { softmaxes.insert(k); continue }
                if isLinear(k) || op == "LayerNormalization" || op == "ReduceMean" { continue }
                frontier += nodes[k].outputs
            }
        }
        guard softmaxes.count == 1, let sm = softmaxes.first else {
            throw fail("\(what): the projections of '\(normed)' reach \(softmaxes.count) Softmax nodes, expected one")
        }
        let axisDefault = opset >= 13 ? -1 : 1
        var axis = axisDefault
        if case let .int(a)? = nodes[sm].attribute("axis") { axis = a }
        guard axis == -1 || axis == 3 else { throw unsupported("\(what): Softmax \(describe(sm)) over axis \(axis), not the keys' (the last)") }
        visited.insert(sm)

        // Scores: MatMul(q, k^T), then scalar Mul / Div.
        var scoreScale = 1.0, v = nodes[sm].inputs.first ?? "", steps = 0
        while let k = producer[v], ["Mul", "Div"].contains(nodes[k].opType), steps < 8 {
            guard let (data, s) = scalarOperand(k) else { throw unsupported("\(what): the scores go through \(describe(k)) with a non-constant operand (a mask or bias?)") }
            scoreScale = nodes[k].opType == "Mul" ? scoreScale * s : scoreScale / s
            visited.insert(k)
            takeScalar(nodes[k].inputs[data == nodes[k].inputs[0] ? 1 : 0])
            v = data
            steps += 1
        }
        guard let qk = producer[v], nodes[qk].opType == "MatMul", nodes[qk].inputs.count == 2, !isLinear(qk) else {
            throw unsupported("\(what): the Softmax reads '\(v)', not the q k^T MatMul (an additive mask or bias is not supported)")
        }
        visited.insert(qk)
        // Probabilities: MatMul(p, v).
        var p = nodes[sm].outputs[0]
        steps = 0
        while readers(p).count == 1, case let k = readers(p)[0], ["Dropout", "Identity", "Cast"].contains(nodes[k].opType), steps < 8 {
            visited.insert(k)
            p = nodes[k].outputs[0]
            steps += 1
        }
        guard readers(p).count == 1, case let pv = readers(p)[0], nodes[pv].opType == "MatMul", nodes[pv].inputs.count == 2, nodes[pv].inputs[0] == p else {
            throw fail("\(what): the attention probabilities '\(p)' do not go into one MatMul with v")
        }
        visited.insert(pv)

        let q = try operand(nodes[qk].inputs[0], projections, fused: fused, width: width, want: "bhld", what: "\(what) q")
        let k = try operand(nodes[qk].inputs[1], projections, fused: fused, width: width, want: "bhdl", what: "\(what) k")
        let vv = try operand(nodes[pv].inputs[1], projections, fused: fused, width: width, want: "bhld", what: "\(what) v")
        guard q.heads == k.heads, k.heads == vv.heads, q.headDim == k.headDim, k.headDim == vv.headDim else {
            throw fail("\(what): q, k and v split into different heads (\(q.heads)x\(q.headDim), \(k.heads)x\(k.headDim), \(vv.heads)x\(vv.headDim))")
        }
        let scale = q.scale * k.scale * scoreScale, expected = 1 / Double(q.headDim).squareRoot()
        guard abs(vv.scale - 1) <= 1e-6, abs(scale - expected) <= 1e-5 * expected else {
            throw unsupported("\(what): the attention scales q k^T by \(scale) (v by \(vv.scale)); sfnet's attention computes head_dim^-0.5 = \(expected) "
                              + "with head_dim \(q.headDim)")
        }
        var notes: [String: String] = [:]
        var parts: [(weight: Tensor, bias: Tensor?)] = []
        var chunks: [Int] = []
        if fused {
            guard let cq = q.chunk, let ck = k.chunk, let cv = vv.chunk, Set([cq, ck, cv]) == [0, 1, 2] else {
                throw fail("\(what): q, k and v do not take the three chunks of the fused projection (\(q.chunk as Any), \(k.chunk as Any), \(vv.chunk as Any))")
            }
            chunks = [cq, ck, cv]
            let w = try TransformerSplit.rows(projections[0].weight, into: 3)
            let b = try projections[0].bias.map { try TransformerSplit.rows($0, into: 3) }
            parts = chunks.map { (w[$0], b?[$0]) }
        } else {
            guard Set([q.projection, k.projection, vv.projection]) == [0, 1, 2] else {
                throw fail("\(what): q, k and v do not come from three different projections")
            }
            parts = [q, k, vv].map { (projections[$0.projection].weight, projections[$0.projection].bias) }
            for (role, o) in zip(["q", "k", "v"], [q, k, vv]) {
                let l = projections[o.projection]
                notes[role] = "\(l.weightNote)" + (l.biasNote.map { ", bias \($0)" } ?? "")
            }
        }
        if fused { notes["qkv"] = projections[0].weightNote + (projections[0].biasNote.map { ", bias \($0)" } ?? "") + ", chunks q \(chunks[0]) k \(chunks[1]) v \(chunks[2])" }
        let sequence = q.sequence ?? k.sequence ?? vv.sequence
        let out = try mergeHeads(nodes[pv].outputs[0], heads: q.heads, headDim: q.headDim, sequence: sequence, width: width, what: what)
        return OnnxAttention(q: parts[0], k: parts[1], v: parts[2], fused: fused, chunkOrder: chunks, heads: q.heads, headDim: q.headDim,
                             sequence: sequence, output: out, scale: scale, notes: notes)
    }

    /// Traces `value` back to one of `projections` and replays the path forward with axis labels.
    private func operand(_ value: String, _ projections: [OnnxLinear], fused: Bool, width: Int, want: String, what: String) throws -> Operand {
        var path: [Step] = [], v = value
        var found: Int?
        for _ in 0 ... nodes.count {
            if let i = projections.firstIndex(where: { $0.output == v }) { found = i; break }
            guard let k = producer[v] else { throw fail("\(what): '\(value)' does not come from a q/k/v projection (reached '\(v)')") }
            let n = nodes[k]
            guard n.inputs.count >= 1 else { throw fail("\(what): \(describe(k)) has no inputs") }
            switch n.opType {
            case "Transpose":
                guard case let .ints(perm)? = n.attribute("perm") else { throw unsupported("\(what): \(describe(k)) without perm") }
                path.append(.transpose(perm))
            case "Reshape":
                guard n.inputs.count == 2, let s = reshapeDims(k) else { throw unsupported("\(what): \(describe(k)) with a shape sfnet cannot read") }
                path.append(.reshape(s))
            case "Mul", "Div":
                guard let (data, s) = scalarOperand(k), data == n.inputs[0] || n.opType == "Mul" else {
                    throw unsupported("\(what): \(describe(k)) with a non-constant operand")
                }
                takeScalar(n.inputs[data == n.inputs[0] ? 1 : 0])
                path.append(.scale(n.opType == "Mul" ? s : 1 / s))
                visited.insert(k)
                v = data
                continue
            case "Gather":
                guard n.inputs.count == 2, let c = constant(n.inputs[1]), let idx = constantInts(n.inputs[1]), idx.count == 1 else {
                    throw unsupported("\(what): \(describe(k)) with an index sfnet cannot read")
                }
                var a = 0
                if case let .int(x)? = n.attribute("axis") { a = x }
                path.append(.gather(axis: a, index: idx[0], drops: c.dims.isEmpty))
            case "Split":
                guard let o = n.outputs.firstIndex(of: v) else { throw fail("\(what): \(describe(k)) does not output '\(v)'") }
                var a = 0
                if case let .int(x)? = n.attribute("axis") { a = x }
                var sizes: [Int]?
                if case let .ints(s)? = n.attribute("split") { sizes = s } else if n.inputs.count >= 2, !n.inputs[1].isEmpty { sizes = intList(n.inputs[1]) }
                guard n.outputs.count == 3, sizes == nil || sizes!.count == 3 else { throw unsupported("\(what): \(describe(k)) is not a split in three") }
                path.append(.split(axis: a, index: o, sizes: sizes))
            case "Slice":
                guard n.inputs.count >= 3, let st = intList(n.inputs[1]), let en = intList(n.inputs[2]), st.count == 1, en.count == 1 else {
                    throw unsupported("\(what): \(describe(k)) with bounds sfnet cannot read")
                }
                let axes = n.inputs.count >= 4 ? intList(n.inputs[3]) : [0]
                if n.inputs.count >= 5, intList(n.inputs[4]) != [1] { throw unsupported("\(what): \(describe(k)) with a step") }
                guard let axes, axes.count == 1 else { throw unsupported("\(what): \(describe(k)) with axes sfnet cannot read") }
                path.append(.slice(axis: axes[0], start: st[0], end: en[0]))
            case "Squeeze":
                var axes: [Int]?
                if case let .ints(a)? = n.attribute("axes") { axes = a } else if n.inputs.count >= 2 { axes = intList(n.inputs[1]) }
                path.append(.squeeze(axes))
            case "Identity", "Cast", "Dropout":
                path.append(.pass)
            default:
                throw unsupported("\(what): '\(value)' comes through \(describe(k)), not a head split, transpose, chunk or scale")
            }
            visited.insert(k)
            v = n.inputs[0]
        }
        guard let found else { throw fail("\(what): '\(value)' does not come from a q/k/v projection") }

        // Forward from the projection: chunk (before the head split), head split, transposes, chunk on the "3" axis.
        var labels: [Character]?, chunk: Int?, scale = 1.0, heads = 0, headDim = 0, sequence: Int?
        func resolve(_ h: Int?, _ d: Int?, _ total: Int) throws -> (Int, Int) {
            let hh = h.flatMap { $0 > 0 ? $0 : nil }, dd = d.flatMap { $0 > 0 ? $0 : nil }
            if let hh, let dd, case let (p, o) = hh.multipliedReportingOverflow(by: dd), !o, p == total { return (hh, dd) }
            if let hh, dd == nil, d == -1 || d == nil, hh > 0, total % hh == 0 { return (hh, total / hh) }
            if let dd, hh == nil, h == -1 || h == nil, dd > 0, total % dd == 0 { return (total / dd, dd) }
            throw unsupported("\(what): the head split [\(h.map(String.init) ?? "?"), \(d.map(String.init) ?? "?")] does not divide \(total) channels")
        }
        for step in path.reversed() {
            switch step {
            case .pass: continue
            case let .scale(s): scale *= s
            case let .split(axis, index, sizes) where labels == nil:
                guard fused, chunk == nil, sizes == nil || sizes! == [width, width, width], axis != 0 else {
                    throw unsupported("\(what): a Split of the projection that is not its q, k, v thirds")
                }
                chunk = index
            case let .slice(axis, start, end) where labels == nil:
                guard fused, chunk == nil, axis == -1 || axis >= 1, start >= 0, end >= start, end - start == width, start % width == 0, start / width < 3 else {
                    throw unsupported("\(what): a Slice of the projection that is not one of its q, k, v thirds")
                }
                chunk = start / width
            case let .reshape(s) where labels == nil:
                if fused && chunk == nil {
                    guard s.count == 5, s[2] == 3 else { throw unsupported("\(what): the fused projection's head split \(s.map { $0.map(String.init) ?? "?" }) is not [B, L, 3, H, hd]") }
                    (heads, headDim) = try resolve(s[3], s[4], width)
                    labels = ["b", "l", "c", "h", "d"]
                } else {
                    guard s.count == 4 else { throw unsupported("\(what): the head split \(s.map { $0.map(String.init) ?? "?" }) is not [B, L, H, hd]") }
                    (heads, headDim) = try resolve(s[2], s[3], width)
                    labels = ["b", "l", "h", "d"]
                }
                if let l = s[1], l > 0 { sequence = l }
            case let .reshape(s):
                // A reshape that keeps every axis (torch writes some); anything else is not a head layout sfnet knows.
                guard s.count == labels!.count, zip(s, labels!).allSatisfy({ dim, label in
                    guard let dim, dim > 0 else { return true }
                    switch label { case "h": return dim == heads; case "d": return dim == headDim; case "l": return sequence == nil || dim == sequence
                    case "c": return dim == 3; default: return true }
                }) else { throw unsupported("\(what): a second reshape \(s.map { $0.map(String.init) ?? "?" }) inside the attention") }
            case let .transpose(perm):
                guard let l = labels, perm.sorted() == Array(0 ..< l.count) else { throw unsupported("\(what): a transpose \(perm) before the head split") }
                labels = perm.map { l[$0] }
            case let .gather(axis, index, drops):
                guard var l = labels, case let a = axis < 0 ? axis + l.count : axis, a >= 0, a < l.count, l[a] == "c", chunk == nil, (0 ..< 3).contains(index) else {
                    throw unsupported("\(what): a Gather that does not pick q, k or v from the fused projection")
                }
                chunk = index
                if drops { l.remove(at: a) } else { l[a] = "1" }
                labels = l
            case let .split(axis, index, sizes):
                guard var l = labels, case let a = axis < 0 ? axis + l.count : axis, a >= 0, a < l.count, l[a] == "c", chunk == nil,
                      sizes == nil || sizes! == [1, 1, 1] else {
                    throw unsupported("\(what): a Split that does not pick q, k or v from the fused projection")
                }
                chunk = index
                l[a] = "1"
                labels = l
            case let .squeeze(axes):
                guard var l = labels else { throw unsupported("\(what): a Squeeze before the head split") }
                let drop = (axes ?? l.indices.filter { l[$0] == "1" }).map { $0 < 0 ? $0 + l.count : $0 }
                guard !drop.isEmpty, drop.allSatisfy({ (0 ..< l.count).contains($0) && l[$0] == "1" }) else {
                    throw unsupported("\(what): a Squeeze of an axis that is not the picked chunk's")
                }
                for a in drop.sorted(by: >) { l.remove(at: a) }
                labels = l
            case .slice:
                throw unsupported("\(what): a Slice after the head split")
            }
        }
        guard let labels, String(labels) == want else {
            throw unsupported("\(what): arrives at the MatMul as [\(labels.map { $0.map(String.init).joined(separator: ", ") } ?? "no head split")], "
                              + "expected [\(want.map(String.init).joined(separator: ", "))] (batch, head, token, channel)")
        }
        if fused && chunk == nil { throw fail("\(what): no chunk of the fused projection is picked") }
        return Operand(projection: found, chunk: chunk, scale: scale, heads: heads, headDim: headDim, sequence: sequence, labels: labels)
    }

    /// From the probabilities-times-v MatMul ([b, h, l, d]) through Transposes and Reshapes to the output projection.
    private func mergeHeads(_ start: String, heads: Int, headDim: Int, sequence: Int?, width: Int, what: String) throws -> OnnxLinear {
        var labels: [Character] = ["b", "h", "l", "d"], v = start, merged = false
        for _ in 0 ... nodes.count {
            let rs = readers(v)
            guard rs.count == 1 else { throw fail("\(what): the attention output '\(v)' has \(rs.count) readers before the output projection") }
            let k = rs[0], n = nodes[k]
            if merged, isLinear(k, reading: v) {
                let out = try linear(k)
                guard out.inFeatures == width, out.outFeatures == width else { throw fail("\(what): output projection \(describe(k)) is \(out.weight.shape)") }
                return out
            }
            switch n.opType {
            case "Transpose" where !merged:
                guard case let .ints(perm)? = n.attribute("perm"), perm.sorted() == Array(0 ..< labels.count) else {
                    throw unsupported("\(what): \(describe(k)) after the attention is not a permutation of its axes")
                }
                labels = perm.map { labels[$0] }
            case "Reshape":
                guard n.inputs.count == 2, n.inputs[0] == v, let s = reshapeDims(k) else { throw unsupported("\(what): \(describe(k)) with a shape sfnet cannot read") }
                if merged {
                    guard s.last == width else { throw unsupported("\(what): \(describe(k)) after merging the heads changes the channels") }
                } else if s.count == labels.count {
                    let keeps = zip(s, labels).allSatisfy { dim, label in
                        guard let dim, dim > 0 else { return true }
                        return label == "h" ? dim == heads : label == "d" ? dim == headDim : label == "l" ? (sequence == nil || dim == sequence) : true
                    }
                    guard keeps else { throw unsupported("\(what): \(describe(k)) regroups the attention output") }
                } else {
                    // Merging the heads: [b, l, h, d] -> [b, l, D] (or rows [b * l, D]).
                    guard String(labels) == "blhd", s.last == width || (s.last == -1 && s.count == 3), s.count == 3 || s.count == 2 else {
                        throw unsupported("\(what): the heads are merged from [\(labels.map(String.init).joined(separator: ", "))] by \(s.map { $0.map(String.init) ?? "?" }), "
                                          + "not from [b, l, h, d] into \(width) channels")
                    }
                    merged = true
                }
            case "Identity", "Dropout", "Cast":
                break
            default:
                throw unsupported("\(what): the attention output goes through \(describe(k)) before the output projection")
            }
            visited.insert(k)
            v = n.outputs[0]
        }
        throw fail("\(what): no output projection after '\(start)'")
    }
}

/// Row blocks of a [rows, cols] tensor (q, k, v of a fused projection), each a copy in the same dtype.
enum TransformerSplit {
    static func rows(_ t: Tensor, into parts: Int) throws -> [Tensor] {
        guard t.shape.count >= 1, t.shape[0] % parts == 0 else { throw FormatError(.malformed, "cannot split \(t.shape) in \(parts)") }
        let rows = t.shape[0] / parts, rowBytes = t.shape.dropFirst().reduce(1, *) * t.dtype.size
        return withExtendedLifetime(t.data.owner) {
            (0 ..< parts).map { p in
                let buffer = OwnedBuffer(count: rows * rowBytes)
                if rows * rowBytes > 0 { buffer.pointer.copyMemory(from: t.data.raw.baseAddress! + p * rows * rowBytes, byteCount: rows * rowBytes) }
                return Tensor(dtype: t.dtype, shape: [rows] + t.shape.dropFirst(), data: buffer.bytes)
            }
        }
    }

    /// Row blocks stacked back into one tensor.
    static func stack(_ parts: [Tensor]) -> Tensor {
        let bytes = parts.reduce(0) { $0 + $1.byteCount }
        let buffer = OwnedBuffer(count: bytes)
        var at = 0
        for p in parts {
            withExtendedLifetime(p.data.owner) {
                if p.byteCount > 0 { (buffer.pointer + at).copyMemory(from: p.data.raw.baseAddress!, byteCount: p.byteCount) }
            }
            at += p.byteCount
        }
        return Tensor(dtype: parts[0].dtype, shape: [parts.reduce(0) { $0 + $1.shape[0] }] + parts[0].shape.dropFirst(), data: buffer.bytes)
    }
}
