// VideoMAE and TimeSformer graphs for `sfnet convert --from onnx`: the family told by the patch embedding
// (the graph's one Conv, kernel = stride: 3D on the input itself is VideoMAE's tubelet, 2D on frames after a
// Transpose/Reshape is TimeSformer's), then the residual stream walked by data flow as OnnxImport.swift walks a
// SlowFast: per layer, LayerNorm -> attention (OnnxTransformerAttention.swift) -> output projection -> residual
// Add, and (TimeSformer) temporal attention + temporal_dense first, the spatial attention on the class token and
// each frame's patches next; LayerNorm -> linear -> GELU -> linear -> residual Add; then the head (mean pooling
// + fc_norm, or the final layernorm and the first token) and the classifier. Every initializer lands under its
// canonical (Hugging Face) name with Linear weights back in [out, in]; the architecture comes from the graph:
// width and MLP size from the weights, heads from the head-split Reshape, patch/tubelet from the Conv, frames
// and crop from the input shape, eps from the LayerNorms, GELU form, pooling. VideoMAE's position table is a
// constant in the graph and must be the fixed sinusoid sfnet computes; TimeSformer's token regroupings between
// blocks are matched against the Transposes torch's export of transformers' TimeSformer and sfnet's own export
// write. Anything else is an error naming the node.

import Families
import Foundation
import Formats

extension OnnxImport {
    /// A video transformer's graph: one Conv (the patch embedding) and an attention Softmax.
    static func isTransformerGraph(_ nodes: [OnnxNode]) -> Bool {
        nodes.lazy.filter { $0.opType == "Conv" }.count == 1 && nodes.contains { $0.opType == "Softmax" }
            && nodes.contains { $0.opType == "MatMul" }
    }

    /// The canonical tensors of a VideoMAE or TimeSformer graph; `onnx.arch` holds the architecture it implies.
    /// `arch`, when given, supplies a clip the graph leaves symbolic.
    static func importTransformer(_ model: OnnxModel, _ g: OnnxTransformerWalk, arch given: ArchConfig?) throws -> Checkpoint {
        let nodes = g.nodes
        let inputs = model.inputs.filter { g.inits[$0.name] == nil }
        guard inputs.count == 1 else { throw g.fail("a video transformer takes one input (N, 3, T, H, W), the graph has \(inputs.count)") }
        let input = inputs[0]

        // Patch embedding.
        let convK = nodes.indices.first { nodes[$0].opType == "Conv" }!
        let conv = nodes[convK]
        guard conv.inputs.count >= 2 else { throw g.fail("the patch embedding \(g.describe(convK)) has no weight") }
        let kernel = try g.floatTensor(conv.inputs[1], what: "patch embedding weight")
        guard kernel.shape.count == 5 || kernel.shape.count == 4, kernel.shape[1] == 3, kernel.shape[0] > 0 else {
            throw g.fail("the patch embedding \(g.describe(convK)) has weight \(kernel.shape), expected [D, 3, t, p, p] or [D, 3, p, p]")
        }
        let family: ModelKind = kernel.shape.count == 5 ? .videomae : .timesformer
        let d = kernel.shape[0], p = kernel.shape[kernel.shape.count - 1], tubelet = family == .videomae ? kernel.shape[2] : 1
        let window = Array(kernel.shape.dropFirst(2))
        guard kernel.shape[kernel.shape.count - 2] == p else { throw g.unsupported("the patch embedding's patches are \(window), not square") }
        for (attr, want) in [("kernel_shape", window), ("strides", window), ("pads", [Int](repeating: 0, count: 2 * window.count)),
                             ("dilations", [Int](repeating: 1, count: window.count))] {
            if case let .ints(v)? = conv.attribute(attr), v != want {
                throw g.unsupported("the patch embedding \(g.describe(convK)) has \(attr) \(v); a patch embedding has kernel = stride \(window), no padding")
            }
            if attr == "strides", conv.attribute(attr) == nil { throw g.unsupported("the patch embedding \(g.describe(convK)) has stride 1, not its kernel \(window)") }
        }
        if case let .int(gr)? = conv.attribute("group"), gr != 1 { throw g.unsupported("the patch embedding \(g.describe(convK)) has group \(gr)") }
        g.visited.insert(convK)
        var tensors: [(String, Tensor, String)] = []
        var convBias: Tensor
        if conv.inputs.count >= 3, !conv.inputs[2].isEmpty {
            convBias = g.flat(try g.floatTensor(conv.inputs[2], what: "patch embedding bias"))
            guard convBias.numel == d else { throw g.fail("the patch embedding bias has \(convBias.numel) values for \(d) channels") }
        } else {
            convBias = OnnxImport.floats([Float](repeating: 0, count: d), [d])
        }
        try checkConvInput(conv.inputs[0], from: input.name, family: family, g)

        // The clip: (N, 3, T, H, W) from the input's shape (or the given architecture where the graph leaves it symbolic).
        var frames: Int?, crop: Int?
        if input.dims.count == 5, case .value(let c) = input.dims[1], c == 3 {
            if case .value(let t) = input.dims[2] { frames = t }
            if case .value(let h) = input.dims[3], case .value(let w) = input.dims[4] {
                guard h == w else { throw g.unsupported("the input is \(h)x\(w): sfnet's transformers take square crops") }
                crop = h
            }
        } else if !input.dims.isEmpty {
            throw g.fail("the input '\(input.name)' is \(input.dims), expected (N, 3, T, H, W)")
        }

        let tokens = try patchTokens(g.nodes[convK].outputs[0], width: d, g)
        var notes: [String: String] = [:]
        func put(_ name: String, _ t: Tensor, _ note: String) { tensors.append((name, t, note)) }

        var blocks: [LayerWeights] = []
        var pooled: (value: String, norm: OnnxLayerNorm, mean: Bool)
        var embeddings: [(String, Tensor, String)] = []
        if family == .videomae {
            // The fixed sinusoid table, a constant added to the tokens.
            let adds = g.readers(tokens).filter { nodes[$0].opType == "Add" }
            guard adds.count == 1, let table = nodes[adds[0]].inputs.first(where: { $0 != tokens }), g.constant(table) != nil else {
                throw g.fail("VideoMAE's tokens '\(tokens)' get no position table (an Add of a constant)")
            }
            g.visited.insert(adds[0])
            let positions = try g.floatTensor(table, what: "position table")
            guard positions.numel % d == 0, positions.shape.last == d else { throw g.fail("the position table is \(positions.shape), the tokens \(d) wide") }
            try checkSinusoid(positions, rows: positions.numel / d, width: d, name: table, g)
            notes["position table"] = "'\(table)' \(positions.shape): the fixed sinusoid table"
            var x = g.throughReshapes(nodes[adds[0]].outputs[0], width: d)
            while let ln = try g.layerNorm(reading: x, width: d) {
                if g.linears(reading: ln.output).isEmpty { break }  // the final layernorm (no mean pooling)
                let what = "layer \(blocks.count)"
                let att = try g.attention(reading: ln.output, width: d, what: "\(what) attention")
                let h = g.throughReshapes(try residual(att.output.output, x, width: d, what: "\(what) attention", g), width: d)
                let (ln2, mlp, out) = try mlpBlock(h, width: d, what: what, g)
                x = g.throughReshapes(out, width: d)
                blocks.append(LayerWeights(before: ln, attention: att, after: ln2, mlp: mlp))
            }
            pooled = try head(x, width: d, meanPooling: true, g)
        } else {
            let emb = try timesformerEmbeddings(tokens, width: d, g)
            embeddings = emb.tensors
            var x = emb.output
            while let xs = patchSlice(x, g) {
                let what = "layer \(blocks.count)"
                let lnT = try layerNormNear(xs, width: d, what: "\(what) temporal", g)
                let attT = try g.attention(reading: lnT.output, width: d, what: "\(what) temporal attention")
                let dense = try linearNear(attT.output.output, width: d, what: "\(what) temporal_dense", g)
                let xt = try residual(dense.output, xs, width: d, what: "\(what) temporal", g)
                let (lnS, spatialIn) = try glueToLayerNorm(from: [xt, x], width: d, what: "\(what) spatial attention input", g)
                let attS = try g.attention(reading: lnS.output, width: d, what: "\(what) spatial attention")
                let (h, spatialOut) = try glueToLayerNorm(from: [attS.output.output, xt, x], width: d, what: "\(what) spatial attention output",
                                                          allowSums: true, g)
                try checkRegrouping(input: spatialIn, output: spatialOut, what: what, g)
                if let l = attT.sequence, let f = frames, l != f { throw g.fail("\(what): temporal attention over \(l) tokens, the clip has \(f) frames") }
                let (ln2, mlp, out) = try mlpBlock(h.input, width: d, what: what, g, norm: h)
                x = g.throughReshapes(out, width: d)
                blocks.append(LayerWeights(before: lnS, attention: attS, after: ln2, mlp: mlp, temporalNorm: lnT, temporal: attT, temporalDense: dense))
            }
            pooled = try head(x, width: d, meanPooling: false, g)
            if frames == nil { frames = emb.frames }
            if crop == nil { crop = emb.side * p }
            guard emb.frames == frames, emb.side * p == crop else {
                throw g.fail("the time table (\(emb.frames) frames) and position table (\(emb.side)x\(emb.side) patches of \(p)) do not fit the input \(input.dims)")
            }
        }
        guard !blocks.isEmpty else { throw g.fail("no transformer layer found after the embeddings") }

        // Classifier and its activation.
        let heads = g.linears(reading: pooled.value)
        guard heads.count == 1 else { throw g.fail("the pooled tokens '\(pooled.value)' feed \(heads.count) linear layers, expected the classifier") }
        let classifier = try g.linear(heads[0])
        guard classifier.inFeatures == d else { throw g.fail("the classifier is \(classifier.weight.shape) on \(d) channels") }
        var activation = HeadActivation.softmax
        if g.readers(classifier.output).contains(where: { nodes[$0].opType == "Sigmoid" }) { activation = .sigmoid }
        for k in g.readers(classifier.output) where ["Softmax", "Sigmoid"].contains(nodes[k].opType) { g.visited.insert(k) }

        // One architecture for every block.
        let first = blocks[0]
        let eps = first.before.eps, act = first.mlp.act, intermediate = first.mlp.inner.outFeatures
        let attention = first.attention
        for (i, b) in blocks.enumerated() {
            let norms = [b.before, b.after] + (b.temporalNorm.map { [$0] } ?? [])
            guard norms.allSatisfy({ abs($0.eps - eps) <= 1e-6 * eps }) else {
                throw g.unsupported("layer \(i)'s LayerNorms have eps \(norms.map(\.eps)), layer 0's \(eps): sfnet's transformers use one layer_norm_eps")
            }
            guard b.mlp.act == act, b.mlp.inner.outFeatures == intermediate else { throw g.unsupported("layer \(i)'s MLP differs from layer 0's") }
            for a in [b.attention] + (b.temporal.map { [$0] } ?? []) where a.heads != attention.heads {
                throw g.unsupported("layer \(i) has \(a.heads) heads, layer 0 \(attention.heads)")
            }
        }
        if !pooled.mean, abs(pooled.norm.eps - eps) > 1e-6 * eps {
            throw g.unsupported("the final layernorm's eps \(pooled.norm.eps) differs from the layers' \(eps): sfnet's transformers use one layer_norm_eps")
        }
        // The clip within what sfnet's architectures take (before any grid arithmetic on it).
        if let f = frames, !(1 ... 4096).contains(f) { throw g.unsupported("the input has \(f) frames; sfnet takes 1...4096") }
        if let c = crop, !(1 ... 8192).contains(c) { throw g.unsupported("the input is \(c) pixels wide; sfnet takes 1...8192") }
        guard let frames, let crop else {
            guard given != nil else {
                throw g.unsupported("the input '\(input.name)' is \(input.dims): the frames and crop are not fixed in the graph; pass --arch-json")
            }
            return try finish()
        }
        return try finish(frames: frames, crop: crop)

        func finish(frames: Int? = nil, crop: Int? = nil) throws -> Checkpoint {
            let qkvBias = first.attention.q.bias != nil
            let t = TransformerConfig(hiddenSize: d, layers: blocks.count, heads: attention.heads, intermediateSize: intermediate, patchSize: p,
                                      tubeletSize: tubelet, layerNormEps: eps, hiddenAct: act, qkvBias: qkvBias, meanPooling: pooled.mean,
                                      fcNormEps: pooled.mean ? pooled.norm.eps : 1e-5, attention: family == .videomae ? .joint : .dividedSpaceTime)
            var arch = ArchConfig(transformer: t, family: family, numClasses: classifier.outFeatures, numFrames: frames ?? given!.numFrames,
                                  trainCrop: crop ?? given!.trainCrop, headActivation: activation).withPresetName()
            do { try arch.validate() } catch let e as FamilyError { throw g.unsupported("the graph's architecture: \(e)") }
            arch = arch.withPresetName()
            let layout = TransformerLayout(arch: arch)
            if family == .videomae, let l = first.attention.sequence, l != layout.patchTokens {
                throw g.fail("the attention runs over \(l) tokens, the clip \(arch.numFrames)x\(arch.trainCrop)² makes \(layout.patchTokens)")
            }
            var out = TensorMap()
            var report: [String: [String]] = [:]
            func set(_ name: String, _ tensor: Tensor, _ note: String) throws {
                guard out[name] == nil else { throw g.fail("'\(name)' mapped twice") }
                out.set(name, tensor)
                report[name] = ["from ONNX: " + note]
            }
            for (name, tensor, note) in embeddings { try set(name, tensor, note) }
            try set(layout.patchEmbedding + ".weight", kernel, "Conv '\(conv.name)' input '\(conv.inputs[1])'")
            try set(layout.patchEmbedding + ".bias", convBias, conv.inputs.count >= 3 && !conv.inputs[2].isEmpty ? "Conv '\(conv.name)' input '\(conv.inputs[2])'" : "the Conv has no bias: zero")
            for (i, b) in blocks.enumerated() {
                let n = layout.layer(i)
                try setNorm(n.normBefore, b.before)
                try setNorm(n.normAfter, b.after)
                if family == .videomae {
                    let a = b.attention
                    guard (a.q.bias != nil) == qkvBias, (a.v.bias != nil) == qkvBias else {
                        throw g.unsupported("layer \(i): q and v biases \(a.q.bias != nil ? "present" : "absent") / \(a.v.bias != nil ? "present" : "absent"), "
                                            + "layer 0's \(qkvBias ? "present" : "absent"): VideoMAE has both or neither")
                    }
                    if let kb = a.k.bias, kb.floats().contains(where: { $0 != 0 }) {
                        throw g.unsupported("layer \(i): the key projection has a non-zero bias; VideoMAE's key has none (a ViT with qkv biases is not a VideoMAE)")
                    }
                    let src = a.fused ? a.notes["qkv"]! : ""
                    for (role, part, name) in [("q", a.q, n.query!), ("k", a.k, n.key!), ("v", a.v, n.value!)] {
                        let note = a.fused ? "rows of \(role) in the fused projection \(src)" : a.notes[role]!
                        try set(name + ".weight", part.weight, note)
                        if role != "k", let bias = part.bias { try set(name + ".bias", bias, note + " (bias)") }
                    }
                } else {
                    try setNorm(n.temporalNorm!, b.temporalNorm!)
                    try setAttention(n.qkv!, n.attentionOutput, b.attention, layer: i)
                    try setAttention(n.temporalQKV!, n.temporalOutput!, b.temporal!, layer: i)
                    try setLinear(n.temporalDense!, b.temporalDense!)
                }
                if family == .videomae { try setLinear(n.attentionOutput, b.attention.output) }
                try setLinear(n.mlpIn, b.mlp.inner)
                try setLinear(n.mlpOut, b.mlp.outer)
            }
            try setNorm(layout.finalNorm, pooled.norm)
            try setLinear(layout.classifier, classifier)

            func setNorm(_ name: String, _ ln: OnnxLayerNorm) throws {
                try set(name + ".weight", ln.weight, ln.note)
                try set(name + ".bias", ln.bias, ln.note)
            }
            func setLinear(_ name: String, _ l: OnnxLinear) throws {
                try set(name + ".weight", l.weight, "\(g.nodes[l.node].opType) '\(g.nodes[l.node].name)' weight \(l.weightNote)")
                if let b = l.bias { try set(name + ".bias", b, "\(g.nodes[l.node].opType) '\(g.nodes[l.node].name)' bias \(l.biasNote ?? "")") }
            }
            func setAttention(_ qkv: String, _ output: String, _ a: OnnxAttention, layer i: Int) throws {
                let biases = [a.q.bias, a.k.bias, a.v.bias].compactMap { $0 }
                guard biases.isEmpty || biases.count == 3, (biases.count == 3) == qkvBias else {
                    throw g.unsupported("layer \(i): \(biases.count) of q, k, v have a bias; TimeSformer's qkv has a bias on all three or none (as layer 0: \(qkvBias))")
                }
                let note = a.fused ? "the fused projection \(a.notes["qkv"]!)" : "q \(a.notes["q"]!), k \(a.notes["k"]!), v \(a.notes["v"]!) stacked"
                try set(qkv + ".weight", TransformerSplit.stack([a.q.weight, a.k.weight, a.v.weight]), note)
                if qkvBias { try set(qkv + ".bias", TransformerSplit.stack(biases), note + " (bias)") }
                try setLinear(output, a.output)
            }

            // Nothing the walk did not explain: every weight-sized constant mapped, every compute node in a block.
            // (A shape whose element count overflows is no scalar either.)
            func weightSized(_ dims: [Int]) -> Bool { OnnxShapes.product(dims).map { $0 > 1 } ?? true }
            for (name, i) in g.inits.sorted(by: { $0.key < $1.key }) where OnnxImport.dtype(i.dataType) != nil && weightSized(i.dims) {
                if !g.usedConstants.contains(name) && !g.alias.contains(where: { $0.value == name && g.usedConstants.contains($0.key) }) {
                    throw g.unsupported("initializer '\(name)' \(i.dims) is not part of any block sfnet recognised in this \(family.rawValue) graph")
                }
            }
            let compute: Set<String> = ["MatMul", "Gemm", "Conv", "LayerNormalization", "Softmax", "Erf", "Tanh", "Sigmoid", "Relu", "Gelu", "ReduceMean", "Pow", "Sqrt"]
            for (k, n) in nodes.enumerated() where !g.visited.contains(k) {
                if compute.contains(n.opType) { throw g.unsupported("\(g.describe(k)) is not part of any block sfnet recognised in this \(family.rawValue) graph") }
                if n.opType == "Constant", let t = n.tensorValue, OnnxImport.dtype(t.dataType) != nil, weightSized(t.dims),
                   !n.outputs.contains(where: g.usedConstants.contains) {
                    throw g.unsupported("constant \(g.describe(k)) \(t.dims) is not part of any block sfnet recognised")
                }
            }

            var ckpt = Checkpoint(format: .onnx, tensors: out)
            ckpt.reportActions = report
            ckpt.notes = report.mapValues { $0.joined(separator: "; ") }
            let archJSON = try arch.jsonString()
            ckpt.metadata = [
                ("onnx.producer", "\(model.producerName) \(model.producerVersion)"),
                ("onnx.opset", String(model.opset)),
                ("onnx.family", family.rawValue),
                ("onnx.layers", String(blocks.count)),
                ("onnx.heads", String(attention.heads)),
                ("onnx.layer_norm_eps", String(eps)),
                ("onnx.hidden_act", act),
                ("onnx.pooling", pooled.mean ? "mean+fc_norm(eps \(pooled.norm.eps))" : family == .videomae ? "layernorm+first_token" : "layernorm+cls_token"),
                ("onnx.attention", attention.fused ? "fused qkv" : "separate q/k/v"),
                ("onnx.clip", frames == nil ? "from --arch-json" : "from the input shape"),
                ("onnx.arch", archJSON),
            ]
            return ckpt
        }
    }

    struct LayerWeights {
        var before: OnnxLayerNorm
        var attention: OnnxAttention
        var after: OnnxLayerNorm
        var mlp: (inner: OnnxLinear, act: String, outer: OnnxLinear)
        var temporalNorm: OnnxLayerNorm? = nil
        var temporal: OnnxAttention? = nil
        var temporalDense: OnnxLinear? = nil
    }

    // MARK: Pieces of the walk

    /// The Conv's input comes from the graph input: directly or through Transposes that cancel (VideoMAE); through
    /// the (N, 3, T) -> (N, T, 3) Transpose and a Reshape to frames (N * T, 3, H, W) (TimeSformer).
    static func checkConvInput(_ v: String, from input: String, family: ModelKind, _ g: OnnxTransformerWalk) throws {
        var ops: [OnnxNode] = [], x = v
        while x != input {
            guard let k = g.producer[x], ops.count < 8 else { throw g.fail("the patch embedding does not read the graph input '\(input)'") }
            let n = g.nodes[k]
            guard ["Transpose", "Reshape", "Identity"].contains(n.opType), n.inputs.count >= 1 else {
                throw g.unsupported("the patch embedding reads the input through \(g.describe(k))")
            }
            g.visited.insert(k)
            ops.insert(n, at: 0)
            x = n.inputs[0]
        }
        var perm = [0, 1, 2, 3, 4], reshaped = false
        for n in ops {
            if n.opType == "Transpose" {
                guard !reshaped, case let .ints(p)? = n.attribute("perm"), p.sorted() == perm.indices.map({ $0 }) else {
                    throw g.unsupported("the input reaches the patch embedding through \(n.opType) '\(n.name)'")
                }
                perm = p.map { perm[$0] }
            } else if n.opType == "Reshape" {
                guard family == .timesformer, !reshaped, n.inputs.count == 2, let k = g.producer[n.outputs[0]], let s = g.reshapeDims(k), s.count == 4, s[1] == 3 || s[1] == nil else {
                    throw g.unsupported("the input reaches the patch embedding through Reshape '\(n.name)'")
                }
                reshaped = true
            }
        }
        if family == .videomae, perm != [0, 1, 2, 3, 4] || reshaped {
            throw g.unsupported("VideoMAE's tubelet Conv reads the input permuted \(perm); sfnet's input is (N, 3, T, H, W)")
        }
        if family == .timesformer, perm != [0, 2, 1, 3, 4] || !reshaped {
            throw g.unsupported("TimeSformer's patch Conv reads the input permuted \(perm)\(reshaped ? "" : " without a reshape to frames"); "
                                + "expected (N, 3, T, H, W) -> (N, T, 3, H, W) -> (N * T, 3, H, W)")
        }
    }

    /// Conv output (N, D, ...) -> tokens (N, L, D): flatten(2) (Reshape [N, D, -1] or Flatten) then Transpose [0, 2, 1].
    static func patchTokens(_ convOut: String, width d: Int, _ g: OnnxTransformerWalk) throws -> String {
        guard g.readers(convOut).filter({ g.nodes[$0].opType != "Shape" }).count == 1,
              let k = g.readers(convOut).first(where: { g.nodes[$0].opType != "Shape" }) else {
            throw g.fail("the patch embedding's output '\(convOut)' does not go into one Reshape")
        }
        let n = g.nodes[k]
        if n.opType == "Reshape" {
            guard let s = n.inputs.count == 2 ? g.reshapeDims(k) : nil, s.count == 3, s[1] == d || s[1] == 0 || s[1] == nil, s[2] == -1 || s[2] == nil || s[2]! > 0 else {
                throw g.unsupported("the patch embedding's output is reshaped by \(g.describe(k)), not flattened to [N, D, L]")
            }
        } else if n.opType == "Flatten" {
            throw g.unsupported("the patch embedding's output is flattened by \(g.describe(k)) (Flatten keeps 2 axes); expected a Reshape to [N, D, L]")
        } else {
            throw g.unsupported("the patch embedding's output goes into \(g.describe(k)), not a flattening Reshape")
        }
        g.visited.insert(k)
        for s in g.readers(convOut) where g.nodes[s].opType == "Shape" { g.visited.insert(s) }
        guard g.readers(n.outputs[0]).count == 1, case let t = g.readers(n.outputs[0])[0], g.nodes[t].opType == "Transpose",
              case .ints([0, 2, 1])? = g.nodes[t].attribute("perm") else {
            throw g.unsupported("the flattened patches are not transposed [0, 2, 1] into tokens")
        }
        g.visited.insert(t)
        return g.nodes[t].outputs[0]
    }

    /// VideoMAE's position constant must be transformers' fixed table (a learned `pos_embed` is another network).
    static func checkSinusoid(_ table: Tensor, rows: Int, width: Int, name: String, _ g: OnnxTransformerWalk) throws {
        guard rows <= OnnxLimits.maxPositionRows else { throw g.fail("the position table has \(rows) rows (the limit is \(OnnxLimits.maxPositionRows))") }
        let want = TransformerLayout.sinusoidTable(tokens: rows, width: width), got = table.floats()
        for i in got.indices where !(abs(got[i] - want[i]) <= 1e-6) {
            throw g.unsupported("the position table '\(name)' is not VideoMAE's fixed sinusoid table (row \(i / width), column \(i % width): \(got[i]), "
                                + "the sinusoid \(want[i])); a learned pos_embed is not what sfnet's VideoMAE computes")
        }
    }

    /// The Add that sums `branch` with the residual `x` (each possibly behind reshapes that keep the tokens' width).
    static func residual(_ branch: String, _ x: String, width: Int, what: String, _ g: OnnxTransformerWalk) throws -> String {
        let b = g.throughReshapes(branch, width: width)
        let adds = g.readers(b).filter { g.nodes[$0].opType == "Add" && g.nodes[$0].inputs.count == 2 }
        let root = g.rootThroughReshapes(x, width: width)
        guard adds.count == 1, case let a = adds[0], let other = g.nodes[a].inputs.first(where: { $0 != b }),
              g.rootThroughReshapes(other, width: width) == root else {
            throw g.fail("\(what): the branch output '\(b)' is not added to the block input '\(x)'")
        }
        g.visited.insert(a)
        return g.nodes[a].outputs[0]
    }

    /// LayerNorm -> linear -> GELU -> linear -> residual Add on `h` (or the given norm); returns the block's output.
    static func mlpBlock(_ h: String, width d: Int, what: String, _ g: OnnxTransformerWalk, norm: OnnxLayerNorm? = nil)
        throws -> (OnnxLayerNorm, (inner: OnnxLinear, act: String, outer: OnnxLinear), String) {
        guard let ln = try norm ?? g.layerNorm(reading: h, width: d) else { throw g.fail("\(what): no LayerNorm before the MLP reads '\(h)'") }
        let inner = g.linears(reading: ln.output)
        guard inner.count == 1 else { throw g.fail("\(what): the MLP's LayerNorm feeds \(inner.count) linear layers, expected 1") }
        let l1 = try g.linear(inner[0])
        guard l1.inFeatures == d else { throw g.fail("\(what): MLP linear \(g.describe(l1.node)) is \(l1.weight.shape)") }
        let (act, x) = try g.gelu(from: l1.output)
        let outer = g.linears(reading: x)
        guard outer.count == 1 else { throw g.fail("\(what): the MLP activation feeds \(outer.count) linear layers") }
        let l2 = try g.linear(outer[0])
        guard l2.inFeatures == l1.outFeatures, l2.outFeatures == d else { throw g.fail("\(what): MLP linear \(g.describe(l2.node)) is \(l2.weight.shape)") }
        return (ln, (l1, act, l2), try residual(l2.output, ln.input, width: d, what: "\(what) MLP", g))
    }

    /// The pooled value the classifier reads: mean over tokens then fc_norm, or the final layernorm and token 0
    /// (LayerNorm then Gather, or Gather then LayerNorm: per-token norms commute with picking a token).
    static func head(_ x: String, width d: Int, meanPooling allowed: Bool, _ g: OnnxTransformerWalk) throws -> (value: String, norm: OnnxLayerNorm, mean: Bool) {
        let nodes = g.nodes
        func firstToken(_ v: String) -> Int? {
            g.readers(v).first { k in
                let n = nodes[k]
                var axis = 0
                if case let .int(a)? = n.attribute("axis") { axis = a }
                return n.opType == "Gather" && n.inputs.count == 2 && n.inputs[0] == v && axis == 1 && g.constantInts(n.inputs[1]) == [0]
                    && g.constant(n.inputs[1])?.dims == []
            }
        }
        let means = g.readers(x).filter { k in
            let n = nodes[k]
            guard n.opType == "ReduceMean" else { return false }
            if case let .int(keep)? = n.attribute("keepdims"), keep != 0 { return false }
            if case let .ints(axes)? = n.attribute("axes") { return axes == [1] }
            return n.inputs.count == 2 && g.intList(n.inputs[1]) == [1]
        }
        if let m = means.first, means.count == 1, allowed {
            g.visited.insert(m)
            guard let ln = try g.layerNorm(reading: nodes[m].outputs[0], width: d) else { throw g.fail("the mean-pooled tokens get no fc_norm") }
            return (ln.output, ln, true)
        }
        if let ln = try g.layerNorm(reading: x, width: d) {
            guard let k = firstToken(ln.output) else { throw g.unsupported("after the final layernorm the graph does not take token 0 (Gather axis 1, index 0)") }
            g.visited.insert(k)
            return (nodes[k].outputs[0], ln, false)
        }
        if let k = firstToken(x) {
            g.visited.insert(k)
            guard let ln = try g.layerNorm(reading: nodes[k].outputs[0], width: d) else { throw g.fail("token 0 gets no final layernorm") }
            return (ln.output, ln, false)
        }
        throw g.unsupported("the tokens after the last layer ('\(x)') are neither mean-pooled (ReduceMean over axis 1) nor normed and cut to token 0")
    }
}
