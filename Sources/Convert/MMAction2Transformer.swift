// mmaction2's VideoMAE and TimeSformer checkpoints (`{"state_dict"}`, `backbone.` + `cls_head.` keys) -> canonical
// Hugging Face names. The names are read from mmaction2's and mmcv's source (mmaction2 is not installed here):
//   VideoMAE, mmaction/models/backbones/vit_mae.py `VisionTransformer`: mmcv PatchEmbed (`patch_embed.projection`,
//     Conv3d), `pos_embed` (the sinusoid table as a registered buffer, so it is in the file; a Parameter when
//     use_learnable_pos_emb), `blocks.N.{norm1, attn.q_bias, attn.v_bias, attn.qkv (no bias), attn.proj, norm2}`,
//     the MLP an mmcv FFN (`mlp.layers.0.0` Linear + GELU, `mlp.layers.1` Linear), layer scale `gamma_1/gamma_2`
//     when init_values > 0, `fc_norm` (mean pooling) or `norm` (token 0);
//   TimeSformer, mmaction/models/backbones/timesformer.py with mmcv's BaseTransformerLayer /
//     TransformerLayerSequence (`transformer_layers.layers.N.{attentions, ffns}`) and mmaction/models/common/
//     transformer.py: `attentions.0` DividedTemporalAttentionWithNorm (`norm`, `attn` an nn.MultiheadAttention:
//     `in_proj_weight` [3D, D] = q; k; v stacked, as transformers' qkv, `in_proj_bias`, `out_proj`; `temporal_fc`),
//     `attentions.1` DividedSpatialAttentionWithNorm (`norm`, `attn`), `ffns.0` FFNWithNorm (`norm`, `layers.0.0`,
//     `layers.1`); `cls_token`, `pos_embed`, `time_embed`, `patch_embed.projection` (Conv2d per frame), `norm`;
//   head, mmaction/models/heads/timesformer_head.py `TimeSformerHead` (both models' configs): `cls_head.fc_cls`.
// What these modules compute is transformers' network with the original code's eps (1e-6 in every LayerNorm,
// fc_norm included), the same token orders, head split and head_dim^-0.5 scale; layer scale is not in sfnet's
// VideoMAE and is refused; VideoMAE's position buffer is checked against the fixed sinusoid and not kept.

import Families
import Foundation
import Formats

extension KeyMap {
    /// mmaction2 VideoMAE (`VisionTransformer`); `backbone.blocks.N.attn.qkv.weight` is split by TransformerConvert.
    public static let mmaction2VideoMAE = KeyMap([
        KeyRule(#"^backbone\.patch_embed\.projection\.(weight|bias)$"#, "videomae.embeddings.patch_embeddings.projection.$1"),
        KeyRule(#"^backbone\.blocks\.(\d+)\.norm1\.(weight|bias)$"#, "videomae.encoder.layer.$1.layernorm_before.$2"),
        KeyRule(#"^backbone\.blocks\.(\d+)\.norm2\.(weight|bias)$"#, "videomae.encoder.layer.$1.layernorm_after.$2"),
        KeyRule(#"^backbone\.blocks\.(\d+)\.attn\.q_bias$"#, "videomae.encoder.layer.$1.attention.attention.query.bias"),
        KeyRule(#"^backbone\.blocks\.(\d+)\.attn\.v_bias$"#, "videomae.encoder.layer.$1.attention.attention.value.bias"),
        KeyRule(#"^backbone\.blocks\.(\d+)\.attn\.proj\.(weight|bias)$"#, "videomae.encoder.layer.$1.attention.output.dense.$2"),
        KeyRule(#"^backbone\.blocks\.(\d+)\.mlp\.layers\.0\.0\.(weight|bias)$"#, "videomae.encoder.layer.$1.intermediate.dense.$2"),
        KeyRule(#"^backbone\.blocks\.(\d+)\.mlp\.layers\.1\.(weight|bias)$"#, "videomae.encoder.layer.$1.output.dense.$2"),
        KeyRule(#"^backbone\.fc_norm\.(weight|bias)$"#, "fc_norm.$1"),
        KeyRule(#"^backbone\.norm\.(weight|bias)$"#, "videomae.layernorm.$1"),
        KeyRule(#"^cls_head\.fc_cls\.(weight|bias)$"#, "classifier.$1"),
    ])

    /// mmaction2 TimeSformer, divided space-time (`attentions.0` temporal, `attentions.1` spatial, `ffns.0`).
    public static let mmaction2TimeSformer = KeyMap([
        KeyRule(#"^backbone\.cls_token$"#, "timesformer.embeddings.cls_token"),
        KeyRule(#"^backbone\.pos_embed$"#, "timesformer.embeddings.position_embeddings"),
        KeyRule(#"^backbone\.time_embed$"#, "timesformer.embeddings.time_embeddings"),
        KeyRule(#"^backbone\.patch_embed\.projection\.(weight|bias)$"#, "timesformer.embeddings.patch_embeddings.projection.$1"),
        KeyRule(#"^backbone\.transformer_layers\.layers\.(\d+)\.attentions\.0\.norm\.(weight|bias)$"#, "timesformer.encoder.layer.$1.temporal_layernorm.$2"),
        KeyRule(#"^backbone\.transformer_layers\.layers\.(\d+)\.attentions\.0\.attn\.in_proj_(weight|bias)$"#, "timesformer.encoder.layer.$1.temporal_attention.attention.qkv.$2"),
        KeyRule(#"^backbone\.transformer_layers\.layers\.(\d+)\.attentions\.0\.attn\.out_proj\.(weight|bias)$"#, "timesformer.encoder.layer.$1.temporal_attention.output.dense.$2"),
        KeyRule(#"^backbone\.transformer_layers\.layers\.(\d+)\.attentions\.0\.temporal_fc\.(weight|bias)$"#, "timesformer.encoder.layer.$1.temporal_dense.$2"),
        KeyRule(#"^backbone\.transformer_layers\.layers\.(\d+)\.attentions\.1\.norm\.(weight|bias)$"#, "timesformer.encoder.layer.$1.layernorm_before.$2"),
        KeyRule(#"^backbone\.transformer_layers\.layers\.(\d+)\.attentions\.1\.attn\.in_proj_(weight|bias)$"#, "timesformer.encoder.layer.$1.attention.attention.qkv.$2"),
        KeyRule(#"^backbone\.transformer_layers\.layers\.(\d+)\.attentions\.1\.attn\.out_proj\.(weight|bias)$"#, "timesformer.encoder.layer.$1.attention.output.dense.$2"),
        KeyRule(#"^backbone\.transformer_layers\.layers\.(\d+)\.ffns\.0\.norm\.(weight|bias)$"#, "timesformer.encoder.layer.$1.layernorm_after.$2"),
        KeyRule(#"^backbone\.transformer_layers\.layers\.(\d+)\.ffns\.0\.layers\.0\.0\.(weight|bias)$"#, "timesformer.encoder.layer.$1.intermediate.dense.$2"),
        KeyRule(#"^backbone\.transformer_layers\.layers\.(\d+)\.ffns\.0\.layers\.1\.(weight|bias)$"#, "timesformer.encoder.layer.$1.output.dense.$2"),
        KeyRule(#"^backbone\.norm\.(weight|bias)$"#, "timesformer.layernorm.$1"),
        KeyRule(#"^cls_head\.fc_cls\.(weight|bias)$"#, "classifier.$1"),
    ])
}

enum MMAction2Transformer {
    /// mmaction2-videomae / mmaction2-timesformer by the backbone's own keys, nil otherwise (mmaction2's CNNs,
    /// and its MViT / Swin whose blocks have `mlp.fc1`, are not these).
    static func detect(_ keys: [String]) -> Naming? {
        if keys.contains(where: { $0.hasPrefix("backbone.transformer_layers.layers.") }), keys.contains("backbone.time_embed") || keys.contains("backbone.cls_token") {
            return .mmaction2TimeSformer
        }
        if keys.contains(where: { $0.hasPrefix("backbone.blocks.") && $0.hasSuffix(".attn.qkv.weight") }),
           keys.contains(where: { $0.hasPrefix("backbone.blocks.") && $0.hasSuffix(".mlp.layers.0.0.weight") }) {
            return .mmaction2VideoMAE
        }
        return nil
    }

    /// N for mmaction2's fused `backbone.blocks.N.attn.qkv.weight`.
    static func qkvLayer(_ name: String) -> Int? {
        guard name.hasPrefix("backbone.") else { return nil }
        return TransformerConvert.qkvLayer(String(name.dropFirst(9)))
    }

    /// What TransformerConvert does with a tensor that has no canonical name: a reason to leave it out (VideoMAE's
    /// sinusoid buffer, checked), nil when the key map decides, or an error for what sfnet's network cannot compute.
    static func setAside(_ name: String, _ tensor: Tensor, naming: Naming) throws -> String? {
        guard naming == .mmaction2VideoMAE || naming == .mmaction2TimeSformer else { return nil }
        let stripped = name.hasPrefix("backbone.") ? String(name.dropFirst(9)) : name
        if naming == .mmaction2VideoMAE, stripped == "pos_embed" {
            guard tensor.shape.count == 3, tensor.shape[0] == 1, tensor.shape[1] >= 1, tensor.shape[1] <= 1 << 20, tensor.shape[2] >= 1,
                  tensor.dtype.isFloatingPoint else {
                throw ConvertError.invalidConfig(["\(name) is \(Tensor.shapeString(tensor.shape)), expected [1, tokens, hidden]"])
            }
            let want = TransformerLayout.sinusoidTable(tokens: tensor.shape[1], width: tensor.shape[2]), got = tensor.floats()
            var worst = 0.0
            for i in got.indices {
                let d = Double(abs(got[i] - want[i]))
                guard d <= 1e-6 else {
                    throw ConvertError.invalidConfig(["\(name) is not the fixed sinusoid table (row \(i / tensor.shape[2]), column \(i % tensor.shape[2]): "
                                                      + "\(got[i]) vs \(want[i])): a learned pos_embed (use_learnable_pos_emb) is not what sfnet's VideoMAE computes"])
                }
                worst = max(worst, d)
            }
            return "the fixed sinusoid table (\(tensor.shape[1]) tokens), a buffer sfnet computes itself (largest difference \(String(format: "%.1e", worst)))"
        }
        if stripped.hasPrefix("blocks."), stripped.hasSuffix(".gamma_1") || stripped.hasSuffix(".gamma_2") || stripped.contains(".gamma2.")
            || stripped.hasPrefix("transformer_layers.") && stripped.contains(".gamma") {
            throw ConvertError.invalidConfig(["\(name): layer scale (init_values > 0) multiplies each residual branch; sfnet's \(naming == .mmaction2VideoMAE ? "VideoMAE" : "TimeSformer") has none"])
        }
        if naming == .mmaction2TimeSformer, stripped.hasPrefix("transformer_layers.layers."), stripped.contains(".norms.") {
            throw ConvertError.invalidConfig(["\(name): a TimeSformer with separate norms (space_only / joint_space_time, or an image ViT before mmaction2 renames "
                                              + "norms.0/1); sfnet runs divided_space_time with each attention's own norm"])
        }
        return nil
    }
}
