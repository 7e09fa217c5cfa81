// The canonical tensors of a video transformer, in Hugging Face's `state_dict()` order (the
// registration order of transformers 5's VideoMAEForVideoClassification and
// TimesformerForVideoClassification), and the names the executors look parameters up by.
// What a layer computes is in DESIGN terms the same for both families (pre-norm attention and MLP
// blocks); the layout is the one place that writes down where each family keeps its tensors.

import Foundation
import Formats

/// The names of one encoder layer's tensors (module prefixes; append ".weight" / ".bias").
public struct TransformerLayerNames: Sendable {
    /// `layernorm_before` (pre-attention; TimeSformer: before the spatial attention).
    public var normBefore: String
    /// VideoMAE: separate projections (query and value have a bias with qkv_bias, key never).
    public var query: String?, key: String?, value: String?
    /// TimeSformer: one fused projection [3D, D] (q, k, v stacked).
    public var qkv: String?
    /// The attention's output projection.
    public var attentionOutput: String
    /// TimeSformer's temporal attention: its norm, fused qkv, output projection and `temporal_dense`.
    public var temporalNorm: String?, temporalQKV: String?, temporalOutput: String?, temporalDense: String?
    public var normAfter: String
    /// The MLP: `intermediate.dense` [I, D] then `output.dense` [D, I].
    public var mlpIn: String, mlpOut: String
}

/// Where a transformer family keeps each tensor.
public struct TransformerLayout: Sendable {
    public let family: ModelKind
    public let config: TransformerConfig
    public let frames: Int, crop: Int, classes: Int

    public init(arch: ArchConfig) {
        precondition(arch.model.isTransformer && arch.transformer != nil, "TransformerLayout needs a transformer architecture")
        family = arch.model
        config = arch.transformer!
        frames = arch.numFrames
        crop = arch.trainCrop
        classes = arch.numClasses
    }

    var root: String { family == .videomae ? "videomae" : "timesformer" }

    /// The patch (tubelet) embedding: a convolution with kernel = stride, with bias.
    public var patchEmbedding: String { "\(root).embeddings.patch_embeddings.projection" }
    /// TimeSformer's learned class token [1, 1, D], spatial position table [1, 1 + h*w, D] (class token's
    /// row first) and time table [1, T, D]; nil for VideoMAE (its table is the fixed sinusoid, no tensor).
    public var classToken: String? { family == .timesformer ? "timesformer.embeddings.cls_token" : nil }
    public var positionEmbeddings: String? { family == .timesformer ? "timesformer.embeddings.position_embeddings" : nil }
    public var timeEmbeddings: String? { family == .timesformer ? "timesformer.embeddings.time_embeddings" : nil }
    /// The norm after the encoder: VideoMAE's `fc_norm` on the mean token, or the final `layernorm`
    /// on every token (VideoMAE without mean pooling, TimeSformer).
    public var finalNorm: String { config.meanPooling ? "fc_norm" : "\(root).layernorm" }
    public var classifier: String { "classifier" }

    /// Tokens per clip, without the class token.
    public var patchTokens: Int { let g = config.grid(frames: frames, crop: crop); return g.t * g.h * g.w }

    public func layer(_ i: Int) -> TransformerLayerNames {
        let p = "\(root).encoder.layer.\(i)."
        if family == .videomae {
            return TransformerLayerNames(normBefore: p + "layernorm_before", query: p + "attention.attention.query",
                                         key: p + "attention.attention.key", value: p + "attention.attention.value",
                                         qkv: nil, attentionOutput: p + "attention.output.dense", normAfter: p + "layernorm_after",
                                         mlpIn: p + "intermediate.dense", mlpOut: p + "output.dense")
        }
        return TransformerLayerNames(normBefore: p + "layernorm_before", query: nil, key: nil, value: nil,
                                     qkv: p + "attention.attention.qkv", attentionOutput: p + "attention.output.dense",
                                     temporalNorm: p + "temporal_layernorm", temporalQKV: p + "temporal_attention.attention.qkv",
                                     temporalOutput: p + "temporal_attention.output.dense", temporalDense: p + "temporal_dense",
                                     normAfter: p + "layernorm_after", mlpIn: p + "intermediate.dense", mlpOut: p + "output.dense")
    }

    /// Every canonical tensor in Hugging Face's `state_dict()` order.
    public var parameters: [ParameterSpec] {
        let d = config.hiddenSize, i = config.intermediateSize, p = config.patchSize
        func linear(_ name: String, _ o: Int, _ f: Int, bias: Bool = true) -> [ParameterSpec] {
            [ParameterSpec(name: name + ".weight", shape: [o, f], role: .linearWeight)]
                + (bias ? [ParameterSpec(name: name + ".bias", shape: [o], role: .bias)] : [])
        }
        func norm(_ name: String) -> [ParameterSpec] {
            [ParameterSpec(name: name + ".weight", shape: [d], role: .normScale),
             ParameterSpec(name: name + ".bias", shape: [d], role: .normShift)]
        }
        var out: [ParameterSpec] = []
        let g = config.grid(frames: frames, crop: crop)
        if family == .timesformer {
            out.append(ParameterSpec(name: classToken!, shape: [1, 1, d], role: .embedding))
            out.append(ParameterSpec(name: positionEmbeddings!, shape: [1, 1 + g.h * g.w, d], role: .embedding))
            out.append(ParameterSpec(name: timeEmbeddings!, shape: [1, g.t, d], role: .embedding))
        }
        let kernel = family == .videomae ? [d, 3, config.tubeletSize, p, p] : [d, 3, p, p]
        out.append(ParameterSpec(name: patchEmbedding + ".weight", shape: kernel, role: .convWeight))
        out.append(ParameterSpec(name: patchEmbedding + ".bias", shape: [d], role: .bias))
        for l in 0 ..< config.layers {
            let n = layer(l)
            if family == .videomae {
                out += linear(n.query!, d, d, bias: config.qkvBias) + linear(n.key!, d, d, bias: false)
                    + linear(n.value!, d, d, bias: config.qkvBias)
                out += linear(n.attentionOutput, d, d) + linear(n.mlpIn, i, d) + linear(n.mlpOut, d, i)
                out += norm(n.normBefore) + norm(n.normAfter)
            } else {
                out += linear(n.qkv!, 3 * d, d, bias: config.qkvBias) + linear(n.attentionOutput, d, d)
                out += linear(n.mlpIn, i, d) + linear(n.mlpOut, d, i) + norm(n.normBefore) + norm(n.normAfter)
                out += norm(n.temporalNorm!) + linear(n.temporalQKV!, 3 * d, d, bias: config.qkvBias)
                out += linear(n.temporalOutput!, d, d) + linear(n.temporalDense!, d, d)
            }
        }
        out += norm(finalNorm)
        out += linear(classifier, classes, d)
        return out
    }

    /// VideoMAE's fixed position table (`get_sinusoid_encoding_table`): row `pos`, column j holds
    /// sin (j even) or cos (j odd) of pos / 10000^(2 (j / 2) / D), computed in double and rounded
    /// to float, as Hugging Face does (numpy float64, then torch.FloatTensor). [tokens, D].
    public static func sinusoidTable(tokens: Int, width: Int) -> [Float] {
        var table = [Float](repeating: 0, count: tokens * width)
        for pos in 0 ..< tokens {
            for j in 0 ..< width {
                let angle = Double(pos) / Foundation.pow(10000, Double(2 * (j / 2)) / Double(width))
                table[pos * width + j] = Float(j % 2 == 0 ? Foundation.sin(angle) : Foundation.cos(angle))
            }
        }
        return table
    }
}
