// `sfnet export --to onnx` for the video transformers: the graph TransformerNetwork runs, at opset 17+
// (LayerNormalization). Input `input` is sfnet's (N, 3, T, H, W) clip; outputs `logits` and
// `probabilities`. Linear layers are Gemm (transB 1) on tokens flattened to rows, so every weight is
// an initializer under its canonical name with the native bytes; heads are Reshape / Transpose;
// attention is MatMul, Mul by head_dim^-1/2, Softmax, MatMul; GELU is Erf-based (or the tanh form);
// VideoMAE's fixed sinusoid table is an initializer (it is in no weight file); mean pooling is
// ReduceMean. Token orders are Hugging Face's: VideoMAE (t, h, w); TimeSformer the class token,
// then patch-major (h, w, t), regrouped per position for temporal and per frame for spatial attention.

import Families
import Foundation
import Formats

enum OnnxTransformerGraph {
    static func build(arch: ArchConfig, weights: TensorMap, opset: Int, batch: Int?, foldBN: Bool) throws -> OnnxModel {
        try arch.validate()
        guard arch.model.isTransformer, let t = arch.transformer else { throw OnnxExportError("\(arch.model.rawValue) is not a video transformer") }
        guard opset >= 17 else {
            throw OnnxExportError("\(arch.model.rawValue) needs opset 17 or later (LayerNormalization); opset \(opset) was asked for")
        }
        if foldBN { throw OnnxExportError("--fold-bn: \(arch.model.rawValue) has no BatchNormalization to fold") }
        var g = TransformerGraph(b: OnnxGraphBuilder.Builder(weights: weights, foldBN: false, opset: opset),
                                 layout: TransformerLayout(arch: arch), t: t, arch: arch)
        let n: OnnxDim = batch.map { .value($0) } ?? .param("N")
        g.b.inputs = [OnnxValueInfo(name: "input", dims: [n, .value(3), .value(arch.numFrames), .value(arch.trainCrop), .value(arch.trainCrop)])]
        try g.constants()
        let pooled = arch.model == .videomae ? try g.videomae() : try g.timesformer()
        try g.head(pooled)
        let k = OnnxDim.value(arch.numClasses)
        g.b.outputs = [OnnxValueInfo(name: "logits", dims: [n, k]), OnnxValueInfo(name: "probabilities", dims: [n, k])]
        return OnnxModel(irVersion: OnnxExporter.irVersion(opset: opset), opset: opset, graphName: "sfnet_\(arch.model.rawValue)",
                         nodes: g.b.nodes, initializers: g.b.initializers, inputs: g.b.inputs, outputs: g.b.outputs)
    }
}

/// The graph under construction; every helper returns the name of the value it made.
struct TransformerGraph {
    var b: OnnxGraphBuilder.Builder
    let layout: TransformerLayout
    let t: TransformerConfig
    let arch: ArchConfig
    var d: Int { t.hiddenSize }

    /// Names of constants shared by the graph (none is a weight: all start with "sfnet.").
    static let one = "sfnet.const.one", half = "sfnet.const.half", sqrt2 = "sfnet.const.sqrt2", scale = "sfnet.const.attention_scale"
    static let tanhCoefficient = "sfnet.const.gelu_tanh_c", tanhScale = "sfnet.const.sqrt_2_over_pi", zeroIndex = "sfnet.const.index0"

    mutating func constants() throws {
        b.initializers.append(.floats(Self.one, dims: [], [1]))
        b.initializers.append(.floats(Self.half, dims: [], [0.5]))
        b.initializers.append(.floats(Self.scale, dims: [], [Float(1 / Double(t.headDim).squareRoot())]))
        if t.geluTanh {
            b.initializers.append(.floats(Self.tanhCoefficient, dims: [], [0.044715]))
            b.initializers.append(.floats(Self.tanhScale, dims: [], [Float((2 / Double.pi).squareRoot())]))
        } else {
            b.initializers.append(.floats(Self.sqrt2, dims: [], [Float(2.0.squareRoot())]))
        }
    }

    /// The scalar int64 index 0 (Gather's index that drops the axis), added on first use.
    mutating func index0() -> String {
        if !b.initializers.contains(where: { $0.name == Self.zeroIndex }) {
            let zero = Int64(0).littleEndian
            b.initializers.append(OnnxInitializer(name: Self.zeroIndex, dataType: OnnxInitializer.int64, dims: [],
                                                  rawData: withUnsafeBytes(of: zero) { OwnedBuffer(copying: $0).bytes }))
        }
        return Self.zeroIndex
    }

    // MARK: Building blocks

    /// A named int64 shape / index list (one initializer per distinct use).
    mutating func ints(_ name: String, _ values: [Int]) -> String {
        if b.initializers.contains(where: { $0.name == name }) { return name }
        b.initializers.append(.int64s(name, values))
        return name
    }

    mutating func op(_ type: String, _ name: String, _ inputs: [String], _ attributes: [(name: String, value: OnnxAttributeValue)] = []) -> String {
        b.node(type, name: name, inputs: inputs, output: name, attributes: attributes)
        return name
    }

    mutating func reshape(_ x: String, _ shape: [Int], _ name: String) -> String {
        op("Reshape", name, [x, ints("sfnet.shape." + shape.map { $0 < 0 ? "m" : String($0) }.joined(separator: "_"), shape)])
    }

    mutating func transpose(_ x: String, _ perm: [Int], _ name: String) -> String {
        op("Transpose", name, [x], [("perm", .ints(perm))])
    }

    mutating func slice(_ x: String, axis: Int, from: Int, to: Int, _ name: String) -> String {
        op("Slice", name, [x, ints("sfnet.index.\(from)", [from]), ints("sfnet.index.\(to)", [to]), ints("sfnet.index.\(axis)", [axis])])
    }

    /// ReduceMean over `axes` (an attribute before opset 18, an input from 18).
    mutating func mean(_ x: String, axes: [Int], keep: Bool, _ name: String) -> String {
        if b.opset >= 18 {
            return op("ReduceMean", name, [x, ints("sfnet.axes." + axes.map(String.init).joined(separator: "_"), axes)], [("keepdims", .int(keep ? 1 : 0))])
        }
        return op("ReduceMean", name, [x], [("axes", .ints(axes)), ("keepdims", .int(keep ? 1 : 0))])
    }

    /// Rows [R, in] -> [R, out]: Gemm with the canonical [out, in] weight (transB) and its bias when it has one.
    mutating func linear(_ x: String, _ module: String, bias: Bool = true) throws -> String {
        try b.addFloat(module + ".weight")
        var inputs = [x, module + ".weight"]
        if bias { try b.addFloat(module + ".bias"); inputs.append(module + ".bias") }
        return op("Gemm", module, inputs, [("transB", .int(1))])
    }

    mutating func layerNorm(_ x: String, _ module: String, eps: Double) throws -> String {
        try b.addFloat(module + ".weight")
        try b.addFloat(module + ".bias")
        return op("LayerNormalization", module, [x, module + ".weight", module + ".bias"], [("axis", .int(-1)), ("epsilon", .float(Float(eps)))])
    }

    /// GELU: 0.5 x (1 + erf(x / sqrt 2)), or 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
    mutating func gelu(_ x: String, _ name: String) -> String {
        let inner: String
        if t.geluTanh {
            let cube = op("Mul", name + ".x3", [op("Mul", name + ".x2", [x, x]), x])
            let poly = op("Add", name + ".poly", [x, op("Mul", name + ".cx3", [cube, Self.tanhCoefficient])])
            inner = op("Tanh", name + ".tanh", [op("Mul", name + ".scaled", [poly, Self.tanhScale])])
        } else {
            inner = op("Erf", name + ".erf", [op("Div", name + ".div", [x, Self.sqrt2])])
        }
        let gate = op("Add", name + ".add1", [inner, Self.one])
        return op("Mul", name, [op("Mul", name + ".mul", [x, gate]), Self.half])
    }

    /// Multi-head softmax attention over sequences of `length` tokens; q, k, v and the result are rows [B * length, D].
    mutating func attention(_ q: String, _ k: String, _ v: String, length: Int, _ name: String) -> String {
        let split = [-1, length, t.heads, t.headDim]
        let qh = transpose(reshape(q, split, name + ".q_heads"), [0, 2, 1, 3], name + ".q")
        let kh = transpose(reshape(k, split, name + ".k_heads"), [0, 2, 3, 1], name + ".k_t")
        let vh = transpose(reshape(v, split, name + ".v_heads"), [0, 2, 1, 3], name + ".v")
        let scores = op("Mul", name + ".scores", [op("MatMul", name + ".qk", [qh, kh]), Self.scale])
        let probabilities = op("Softmax", name + ".softmax", [scores], [("axis", .int(-1))])
        let context = transpose(op("MatMul", name + ".context", [probabilities, vh]), [0, 2, 1, 3], name + ".context_t")
        return reshape(context, [-1, d], name + ".merged")
    }

    /// Fused [3D, D] projection split into q, k, v rows.
    mutating func splitQKV(_ x: String, _ module: String) throws -> (String, String, String) {
        let projected = try linear(x, module, bias: t.qkvBias)
        let outs = [module + ".q", module + ".k", module + ".v"]
        b.nodes.append(OnnxNode("Split", name: module + ".split", inputs: [projected, ints("sfnet.split_qkv", [d, d, d])], outputs: outs,
                                attributes: [("axis", .int(1))]))
        return (outs[0], outs[1], outs[2])
    }

    /// x + output.dense(GELU(intermediate.dense(layernorm_after(x)))) on rows [R, D].
    mutating func mlp(_ x: String, _ n: TransformerLayerNames, _ name: String) throws -> String {
        let normed = try layerNorm(x, n.normAfter, eps: t.layerNormEps)
        let inner = gelu(try linear(normed, n.mlpIn), n.mlpIn + ".gelu")
        return op("Add", name, [x, try linear(inner, n.mlpOut)])
    }

    // MARK: Families

    /// VideoMAE: tubelet Conv3d, the sinusoid table, joint attention layers on rows [N * L, D]; returns the pooled [N, D].
    mutating func videomae() throws -> String {
        let tokens = layout.patchTokens, kernel = [t.tubeletSize, t.patchSize, t.patchSize]
        try b.addFloat(layout.patchEmbedding + ".weight")
        try b.addFloat(layout.patchEmbedding + ".bias")
        let conv = op("Conv", layout.patchEmbedding, ["input", layout.patchEmbedding + ".weight", layout.patchEmbedding + ".bias"],
                      [("kernel_shape", .ints(kernel)), ("strides", .ints(kernel)), ("pads", .ints([0, 0, 0, 0, 0, 0])), ("dilations", .ints([1, 1, 1]))])
        let seq = transpose(reshape(conv, [0, d, -1], "videomae.embeddings.flatten"), [0, 2, 1], "videomae.embeddings.tokens")
        let table = "videomae.embeddings.position_embeddings"
        b.initializers.append(.floats(table, dims: [1, tokens, d], TransformerLayout.sinusoidTable(tokens: tokens, width: d)))
        var x = reshape(op("Add", "videomae.embeddings", [seq, table]), [-1, d], "videomae.embeddings.rows")
        for i in 0 ..< t.layers {
            let n = layout.layer(i), name = "videomae.encoder.layer.\(i)"
            let normed = try layerNorm(x, n.normBefore, eps: t.layerNormEps)
            let q = try linear(normed, n.query!, bias: t.qkvBias), k = try linear(normed, n.key!, bias: false)
            let v = try linear(normed, n.value!, bias: t.qkvBias)
            let attended = try linear(attention(q, k, v, length: tokens, name + ".attention"), n.attentionOutput)
            x = try mlp(op("Add", name + ".attention.residual", [x, attended]), n, name)
        }
        let sequences = reshape(x, [-1, tokens, d], "videomae.encoder.output")
        if t.meanPooling {
            return try layerNorm(mean(sequences, axes: [1], keep: false, "videomae.pool.mean"), layout.finalNorm, eps: t.fcNormEps)
        }
        let first = op("Gather", "videomae.pool.first_token", [sequences, index0()], [("axis", .int(1))])
        return try layerNorm(first, layout.finalNorm, eps: t.layerNormEps)
    }

    /// TimeSformer: per-frame Conv2d, class token and the learned tables, divided space-time layers on
    /// [N, 1 + S * T, D]; returns the class token after the final layernorm, [N, D].
    mutating func timesformer() throws -> String {
        let (frames, s) = (arch.numFrames, layout.config.grid(frames: arch.numFrames, crop: arch.trainCrop))
        let spatial = s.h * s.w, crop = arch.trainCrop, tokens = 1 + spatial * frames
        let emb = "timesformer.embeddings"
        for name in [layout.patchEmbedding + ".weight", layout.patchEmbedding + ".bias", layout.classToken!, layout.positionEmbeddings!, layout.timeEmbeddings!] {
            try b.addFloat(name)
        }
        let framesFirst = reshape(transpose("input", [0, 2, 1, 3, 4], emb + ".frames_first"), [-1, 3, crop, crop], emb + ".frames")
        let kernel = [t.patchSize, t.patchSize]
        let conv = op("Conv", layout.patchEmbedding, [framesFirst, layout.patchEmbedding + ".weight", layout.patchEmbedding + ".bias"],
                      [("kernel_shape", .ints(kernel)), ("strides", .ints(kernel)), ("pads", .ints([0, 0, 0, 0])), ("dilations", .ints([1, 1]))])
        let perFrame = transpose(reshape(conv, [0, d, -1], emb + ".flatten"), [0, 2, 1], emb + ".tokens")            // [N*T, S, D]
        let positioned = op("Add", emb + ".patches_positioned", [perFrame, slice(layout.positionEmbeddings!, axis: 1, from: 1, to: 1 + spatial, emb + ".position_patches")])
        let patchMajor = transpose(reshape(positioned, [-1, frames, spatial, d], emb + ".per_clip"), [0, 2, 1, 3], emb + ".patch_major")  // [N, S, T, D]
        let timed = reshape(op("Add", emb + ".patches_timed", [patchMajor, layout.timeEmbeddings!]), [-1, spatial * frames, d], emb + ".patches")
        let clsRow = op("Add", emb + ".cls_positioned", [layout.classToken!, slice(layout.positionEmbeddings!, axis: 1, from: 0, to: 1, emb + ".position_cls")])
        let batch = op("Shape", emb + ".batch", ["input"], [("start", .int(0)), ("end", .int(1))])
        let clsShape = op("Concat", emb + ".cls_shape", [batch, ints("sfnet.shape.1_1", [1, 1])], [("axis", .int(0))])
        let cls = op("Expand", emb + ".cls", [clsRow, clsShape])                                                     // [N, 1, D]
        var x = op("Concat", emb, [cls, timed], [("axis", .int(1))])
        for i in 0 ..< t.layers {
            let n = layout.layer(i), name = "timesformer.encoder.layer.\(i)"
            let clsIn = slice(x, axis: 1, from: 0, to: 1, name + ".cls_in")
            let patchRows = reshape(slice(x, axis: 1, from: 1, to: tokens, name + ".patches_in"), [-1, d], name + ".patch_rows")  // (n, s, t) rows
            // Temporal: each position's T tokens attend over the frames; temporal_dense; residual.
            let tnormed = try layerNorm(patchRows, n.temporalNorm!, eps: t.layerNormEps)
            let (tq, tk, tv) = try splitQKV(tnormed, n.temporalQKV!)
            let tout = try linear(try linear(attention(tq, tk, tv, length: frames, name + ".temporal_attention"), n.temporalOutput!), n.temporalDense!)
            let xt = op("Add", name + ".temporal.residual", [patchRows, tout])
            // Spatial: per frame, the layer input's class token and the frame's patches.
            let perFrame = transpose(reshape(xt, [-1, spatial, frames, d], name + ".xt_grid"), [0, 2, 1, 3], name + ".xt_frames")  // [N, T, S, D]
            let clsPerFrame = op("Expand", name + ".cls_per_frame", [reshape(clsIn, [-1, 1, 1, d], name + ".cls_4d"), ints("sfnet.shape.1_\(frames)_1_1", [1, frames, 1, 1])])
            let sequences = reshape(op("Concat", name + ".spatial_in", [clsPerFrame, perFrame], [("axis", .int(2))]), [-1, d], name + ".spatial_rows")
            let snormed = try layerNorm(sequences, n.normBefore, eps: t.layerNormEps)
            let (q, k, v) = try splitQKV(snormed, n.qkv!)
            let sout = reshape(try linear(attention(q, k, v, length: 1 + spatial, name + ".attention"), n.attentionOutput),
                               [-1, frames, 1 + spatial, d], name + ".spatial_out")                                       // [N, T, 1+S, D]
            let clsOut = reshape(mean(slice(sout, axis: 2, from: 0, to: 1, name + ".cls_out_frames"), axes: [1], keep: true, name + ".cls_out_mean"),
                                 [-1, 1, d], name + ".cls_out")
            let patchOut = reshape(transpose(slice(sout, axis: 2, from: 1, to: 1 + spatial, name + ".patch_out_frames"), [0, 2, 1, 3], name + ".patch_out_grid"),
                                   [-1, spatial * frames, d], name + ".patch_out")
            let h = op("Concat", name + ".spatial.residual", [op("Add", name + ".cls_sum", [clsIn, clsOut]),
                                                             op("Add", name + ".patch_sum", [reshape(xt, [-1, spatial * frames, d], name + ".xt_seq"), patchOut])],
                       [("axis", .int(1))])
            x = reshape(try mlp(reshape(h, [-1, d], name + ".rows"), n, name), [-1, tokens, d], name + ".out")
        }
        let first = op("Gather", "timesformer.pool.cls_token", [x, index0()], [("axis", .int(1))])
        return try layerNorm(first, layout.finalNorm, eps: t.layerNormEps)
    }

    /// classifier -> logits; softmax or sigmoid -> probabilities.
    mutating func head(_ pooled: String) throws {
        try b.addFloat(layout.classifier + ".weight")
        try b.addFloat(layout.classifier + ".bias")
        b.node("Gemm", name: layout.classifier, inputs: [pooled, layout.classifier + ".weight", layout.classifier + ".bias"], output: "logits",
               attributes: [("transB", .int(1))])
        if arch.headActivation == .softmax {
            b.node("Softmax", name: "head.act", inputs: ["logits"], output: "probabilities", attributes: [("axis", .int(-1))])
        } else {
            b.node("Sigmoid", name: "head.act", inputs: ["logits"], output: "probabilities")
        }
    }
}
