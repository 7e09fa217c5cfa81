// The video transformers (VideoMAE, Tong et al. 2022; TimeSformer, Bertasius et al. 2021) as data:
// the fields of Hugging Face's VideoMAEConfig / TimesformerConfig that decide the network's
// computation and tensors. Their canonical tensor names are Hugging Face's (transformers 5), the
// layout nearly every published checkpoint of these families is shared in (`MCG-NJU/videomae-*`,
// `facebook/timesformer-*`); the original repositories' names and older Hugging Face names are
// source namings that convert maps onto them.

import Foundation

/// How a transformer family mixes tokens in one layer.
public enum TransformerAttention: String, Codable, Sendable, CaseIterable {
    /// VideoMAE: every token attends to every token (space-time jointly), no class token.
    case joint
    /// TimeSformer's divided space-time attention: temporal attention across frames at each patch
    /// (+ `temporal_dense`), then spatial attention within each frame including the class token.
    case dividedSpaceTime = "divided_space_time"
}

/// The transformer-specific part of an `ArchConfig` (`"model"` videomae or timesformer). The clip
/// (frames, crop) is the shared `num_frames` / `train_crop`; the patch grid follows from them.
public struct TransformerConfig: Codable, Equatable, Sendable {
    /// Token width (hidden_size).
    public var hiddenSize: Int
    /// Encoder layers (num_hidden_layers).
    public var layers: Int
    /// Attention heads; hidden_size is a multiple of it.
    public var heads: Int
    /// MLP width (intermediate_size).
    public var intermediateSize: Int
    /// Spatial patch size (patch_size).
    public var patchSize: Int
    /// Frames per token (VideoMAE's tubelet_size; 1 for TimeSformer, whose patches are per frame).
    public var tubeletSize: Int
    /// eps of the encoder's LayerNorms (layer_norm_eps: Hugging Face's VideoMAE default 1e-12, the original code's 1e-6).
    public var layerNormEps: Double
    /// The MLP's activation: "gelu" (exact, erf) or "gelu_tanh" (the tanh approximation: HF's gelu_new,
    /// gelu_pytorch_tanh, gelu_fast).
    public var hiddenAct: String
    /// Biases on the query and value projections (VideoMAE's qkv_bias: q and v, never k) or on the
    /// fused qkv projection (TimeSformer's qkv_bias).
    public var qkvBias: Bool
    /// VideoMAE: mean of all tokens then `fc_norm` (true), or the final `layernorm` then the first token.
    /// TimeSformer: always the class token after the final layernorm (false).
    public var meanPooling: Bool
    /// eps of VideoMAE's `fc_norm` (Hugging Face builds it as nn.LayerNorm(hidden_size): 1e-5; the original 1e-6).
    public var fcNormEps: Double
    public var attention: TransformerAttention

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", layers = "num_hidden_layers", heads = "num_attention_heads"
        case intermediateSize = "intermediate_size", patchSize = "patch_size", tubeletSize = "tubelet_size"
        case layerNormEps = "layer_norm_eps", hiddenAct = "hidden_act", qkvBias = "qkv_bias"
        case meanPooling = "use_mean_pooling", fcNormEps = "fc_norm_eps", attention
    }

    public init(hiddenSize: Int, layers: Int, heads: Int, intermediateSize: Int, patchSize: Int = 16, tubeletSize: Int,
                layerNormEps: Double, hiddenAct: String = "gelu", qkvBias: Bool = true, meanPooling: Bool,
                fcNormEps: Double = 1e-5, attention: TransformerAttention) {
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.heads = heads
        self.intermediateSize = intermediateSize
        self.patchSize = patchSize
        self.tubeletSize = tubeletSize
        self.layerNormEps = layerNormEps
        self.hiddenAct = hiddenAct
        self.qkvBias = qkvBias
        self.meanPooling = meanPooling
        self.fcNormEps = fcNormEps
        self.attention = attention
    }

    /// VideoMAE with Hugging Face's defaults beside the given sizes.
    public static func videoMAE(hidden: Int, layers: Int, heads: Int, intermediate: Int, patch: Int = 16, tubelet: Int = 2,
                                eps: Double = 1e-12, meanPooling: Bool = true) -> TransformerConfig {
        TransformerConfig(hiddenSize: hidden, layers: layers, heads: heads, intermediateSize: intermediate, patchSize: patch,
                          tubeletSize: tubelet, layerNormEps: eps, meanPooling: meanPooling, attention: .joint)
    }

    /// TimeSformer (divided space-time attention) with Hugging Face's defaults beside the given sizes.
    public static func timeSformer(hidden: Int, layers: Int, heads: Int, intermediate: Int, patch: Int = 16,
                                   eps: Double = 1e-6) -> TransformerConfig {
        TransformerConfig(hiddenSize: hidden, layers: layers, heads: heads, intermediateSize: intermediate, patchSize: patch,
                          tubeletSize: 1, layerNormEps: eps, meanPooling: false, attention: .dividedSpaceTime)
    }

    /// Width of one head.
    public var headDim: Int { hiddenSize / max(heads, 1) }

    /// The MLP activation is GELU's tanh form.
    public var geluTanh: Bool { hiddenAct == "gelu_tanh" }

    /// Hugging Face `hidden_act` values and what sfnet runs for them.
    public static let activations: [String: String] = [
        "gelu": "gelu", "gelu_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
        "gelu_fast": "gelu_tanh",
    ]

    /// Token grid (frames / tubelet, crop / patch, crop / patch) of a clip.
    public func grid(frames: Int, crop: Int) -> (t: Int, h: Int, w: Int) {
        (frames / max(tubeletSize, 1), crop / max(patchSize, 1), crop / max(patchSize, 1))
    }

    func problems(family: String, frames: Int, crop: Int) -> [String] {
        var p: [String] = []
        if !(1 ... 8192).contains(hiddenSize) { p.append("\(family) hidden_size must be in 1...8192, is \(hiddenSize)") }
        if !(1 ... 256).contains(layers) { p.append("\(family) num_hidden_layers must be in 1...256, is \(layers)") }
        if !(1 ... 256).contains(heads) || hiddenSize % max(heads, 1) != 0 {
            p.append("\(family) num_attention_heads must be in 1...256 and divide hidden_size \(hiddenSize), is \(heads)")
        }
        if !(1 ... 65536).contains(intermediateSize) { p.append("\(family) intermediate_size must be in 1...65536, is \(intermediateSize)") }
        if !(1 ... 256).contains(patchSize) { p.append("\(family) patch_size must be in 1...256, is \(patchSize)") }
        if !(1 ... 64).contains(tubeletSize) { p.append("\(family) tubelet_size must be in 1...64, is \(tubeletSize)") }
        if !(layerNormEps > 0 && layerNormEps < 1) { p.append("\(family) layer_norm_eps must be in (0, 1), is \(layerNormEps)") }
        if !(fcNormEps > 0 && fcNormEps < 1) { p.append("\(family) fc_norm_eps must be in (0, 1), is \(fcNormEps)") }
        if Self.activations[hiddenAct] != hiddenAct {
            p.append("\(family) hidden_act must be \"gelu\" or \"gelu_tanh\", is \"\(hiddenAct)\"")
        }
        if patchSize > 0, crop % patchSize != 0 { p.append("train_crop \(crop) is not a multiple of patch_size \(patchSize)") }
        if tubeletSize > 0, frames % tubeletSize != 0 { p.append("num_frames \(frames) is not a multiple of tubelet_size \(tubeletSize)") }
        switch attention {
        case .joint:
            if family != "videomae" { p.append("\(family) needs attention divided_space_time") }
        case .dividedSpaceTime:
            if family != "timesformer" { p.append("\(family) needs attention joint") }
            if tubeletSize != 1 { p.append("timesformer patches are per frame: tubelet_size must be 1, is \(tubeletSize)") }
            if meanPooling { p.append("timesformer classifies its class token: use_mean_pooling must be false") }
        }
        let g = grid(frames: frames, crop: crop)
        // Overflow-checked: a hostile --arch-json or graph can give any clip before its own range check runs.
        let (hw, o1) = g.h.multipliedReportingOverflow(by: g.w), (tokens, o2) = g.t.multipliedReportingOverflow(by: hw)
        if o1 || o2 || tokens > 1 << 20 { p.append("the clip makes \(o1 || o2 ? "too many" : String(tokens)) tokens, more than \(1 << 20)") }
        return p
    }
}
