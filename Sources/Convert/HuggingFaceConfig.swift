// The config.json of a Hugging Face VideoMAE / TimeSformer folder, written from an sfnet architecture
// as transformers 5.25's `save_pretrained` writes it: `to_diff_dict()` (every model-specific field,
// the base class's only where they differ from its defaults), `architectures` and `dtype` added by
// the model, then `json.dumps(indent=2, sort_keys=True)` + "\n" (ASCII only, Python float repr,
// id2label in numeric key order). The inverse of `TransformerConvert.architecture(fromHFConfig:)`.

import Families
import Foundation
import Formats

public enum HuggingFaceConfig {
    /// The transformers version whose `save_pretrained` output the folder follows.
    public static let transformersVersion = "5.25.0"

    /// transformers' `hidden_act` for sfnet's activation.
    static let hiddenAct = ["gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"]

    /// config.json's entries for `arch` (unordered: `text` sorts them). `labels` are the class names in
    /// head order; `dtype` the weights' torch dtype name ("float32").
    static func entries(_ arch: ArchConfig, labels: [String], dtype: String) -> [(String, JSONValue)] {
        let t = arch.transformer!
        let videomae = arch.model == .videomae
        var e: [(String, JSONValue)] = [
            ("architectures", .array([.string(videomae ? "VideoMAEForVideoClassification" : "TimesformerForVideoClassification")])),
            ("model_type", .string(videomae ? "videomae" : "timesformer")),
            ("attention_probs_dropout_prob", .double(0)),
            ("dtype", .string(dtype)),
            ("hidden_act", .string(hiddenAct[t.hiddenAct] ?? t.hiddenAct)),
            ("hidden_dropout_prob", .double(0)),
            ("hidden_size", .int(t.hiddenSize)),
            ("image_size", .int(arch.trainCrop)),
            ("initializer_range", .double(0.02)),
            ("intermediate_size", .int(t.intermediateSize)),
            ("layer_norm_eps", .double(t.layerNormEps)),
            ("num_attention_heads", .int(t.heads)),
            ("num_channels", .int(3)),
            ("num_frames", .int(arch.numFrames)),
            ("num_hidden_layers", .int(t.layers)),
            ("patch_size", .int(t.patchSize)),
            ("transformers_version", .string(transformersVersion)),
            // id2label with integer keys sorts numerically in Python; kept in head order here.
            ("id2label", .object(labels.enumerated().map { (String($0.offset), .string($0.element)) })),
            ("label2id", .object(labels.enumerated().sorted { codePointLess($0.element, $1.element) }
                .map { ($0.element, .int($0.offset)) })),
        ]
        if videomae {
            // VideoMAEConfig's pretraining-decoder defaults: written by save_pretrained, unused by the classifier.
            e += [("decoder_hidden_size", .int(384)), ("decoder_intermediate_size", .int(1536)),
                  ("decoder_num_attention_heads", .int(6)), ("decoder_num_hidden_layers", .int(4)),
                  ("norm_pix_loss", .bool(true)), ("qv_bias", .bool(t.qkvBias)), ("tubelet_size", .int(t.tubeletSize)),
                  ("use_mean_pooling", .bool(t.meanPooling))]
        } else {
            e += [("attention_type", .string("divided_space_time")), ("drop_path_rate", .int(0)), ("qkv_bias", .bool(t.qkvBias))]
        }
        if arch.headActivation == .sigmoid { e.append(("problem_type", .string("multi_label_classification"))) }
        return e
    }

    /// The file's text: keys sorted by code point, two-space indent, a final newline.
    public static func text(_ arch: ArchConfig, labels: [String], dtype: String) -> String {
        let sorted = entries(arch, labels: labels, dtype: dtype).sorted { codePointLess($0.0, $1.0) }
        return pythonJSON(.object(sorted), indent: 0) + "\n"
    }

    /// Python's string order (code points), which `sort_keys` uses.
    static func codePointLess(_ a: String, _ b: String) -> Bool {
        a.unicodeScalars.map(\.value).lexicographicallyPrecedes(b.unicodeScalars.map(\.value))
    }

    /// `json.dumps(value, indent=2)` with its defaults (ensure_ascii, ", " / ": " separators, float repr).
    static func pythonJSON(_ value: JSONValue, indent: Int) -> String {
        let pad = String(repeating: " ", count: indent + 2), close = String(repeating: " ", count: indent)
        switch value {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case let .number(d, isInt, i):
            if isInt, let i { return String(i) }
            return pythonFloat(d)
        case .string(let s): return pythonString(s)
        case .array(let xs):
            if xs.isEmpty { return "[]" }
            return "[\n" + xs.map { pad + pythonJSON($0, indent: indent + 2) }.joined(separator: ",\n") + "\n" + close + "]"
        case .object(let kv):
            if kv.isEmpty { return "{}" }
            return "{\n" + kv.map { pad + pythonString($0.0) + ": " + pythonJSON($0.1, indent: indent + 2) }.joined(separator: ",\n")
                + "\n" + close + "}"
        }
    }

    /// Python's `repr(float)` for the values a config holds (eps, dropout, init range: [0, 1)): Swift's
    /// description prints the same shortest round-trip digits ("0.0", "0.02", "1e-05", "1e-12").
    /// (Outside [1e-300, 1e15] the two spell exponents differently; no config value gets there.)
    static func pythonFloat(_ d: Double) -> String {
        guard d.isFinite else { return d.isNaN ? "NaN" : (d < 0 ? "-Infinity" : "Infinity") }
        return "\(d)"
    }

    /// A JSON string as Python's json module writes it with ensure_ascii.
    static func pythonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || u.value > 0x7F {
                    for unit in String(u).utf16 { out += String(format: "\\u%04x", unit) }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
