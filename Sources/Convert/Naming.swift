// The naming schemes sfnet maps to canonical PySlowFast keys, and their detection
// from a file's key set: each table is scored by how many keys it turns into a
// SlowFast key; the best one wins if it wins clearly.

import Foundation

public enum Naming: String, CaseIterable, Sendable, Codable {
    case pyslowfast, pytorchvideo, mmaction2
    /// Caffe2 blobs of PySlowFast's `.pkl` model zoo (and Detectron's ImageNet `R-50.pkl`).
    case caffe2, detectron
    /// torchvision's ImageNet `resnet50`.
    case torchvision
    /// Keras `ResNet50` layer names (both generations), as the Keras importer names its tensors.
    case keras
    /// Hugging Face transformers' VideoMAE / TimeSformer names (both generations): the transformers' canonical naming.
    case huggingface
    /// MCG-NJU/VideoMAE's timm-style names (`blocks.N.attn.qkv`, `q_bias`, `fc_norm`, `head`).
    case videomaeOriginal = "videomae-original"
    /// facebookresearch/TimeSformer's names (`model.blocks.N.temporal_attn`, `time_embed`, `pos_embed`).
    case timesformerOriginal = "timesformer-original"
    /// mmaction2's VideoMAE (`VisionTransformer`) and divided space-time TimeSformer, with `cls_head.fc_cls` (MMAction2Transformer.swift).
    case mmaction2VideoMAE = "mmaction2-videomae"
    case mmaction2TimeSformer = "mmaction2-timesformer"

    /// The table that maps this naming to canonical keys.
    public var keyMap: KeyMap {
        switch self {
        case .pyslowfast: return .pyslowfast
        case .pytorchvideo: return .pytorchvideo
        case .mmaction2: return .mmaction2
        case .caffe2: return .caffe2
        case .detectron: return .detectron
        case .torchvision: return .torchvision
        case .keras: return .keras
        case .huggingface: return .huggingface
        case .videomaeOriginal: return .videomaeOriginal
        case .timesformerOriginal: return .timesformerOriginal
        case .mmaction2VideoMAE: return .mmaction2VideoMAE
        case .mmaction2TimeSformer: return .mmaction2TimeSformer
        }
    }

    /// `key` in canonical naming, and whether a rule rewrote it.
    public func canonicalName(_ key: String) -> (name: String, changed: Bool) {
        keyMap.map(key)
    }

    /// Whether `key` has the shape of a canonical PySlowFast key (SlowFast, Slow, ResNet, X3D).
    public static func isCanonical(_ key: String) -> Bool {
        let range = NSRange(key.startIndex..., in: key)
        return canonicalPattern.firstMatch(in: key, range: range) != nil
    }

    // stem, fusion, residual block and head modules, then the tensor field.
    private static let canonicalPattern = try! NSRegularExpression(pattern:
        #"^(s1\.pathway\d+_stem\.(conv|conv_xy|bn)|s[1-4]_fuse\.(conv_f2s|bn)"#
        + #"|s[2-5]\.pathway\d+_res\d+\.(branch1|branch1_bn|branch2\.[abc]|branch2\.[abc]_bn|branch2\.se\.fc[12])"#
        + #"|head\.(projection|conv_5|conv_5_bn|lin_5|lin_5_bn))"#
        + #"\.(weight|bias|running_mean|running_var|num_batches_tracked)$"#)

    /// Fraction of `keys` this naming maps to a canonical key. A key counts only if a
    /// rule rewrote it (PySlowFast: if it is canonical already), so a table that leaves
    /// foreign keys untouched does not score on them.
    public func score(_ keys: [String]) -> Double {
        guard !keys.isEmpty else { return 0 }
        let hits = keys.reduce(0) { count, key in
            let (name, changed) = canonicalName(key)
            return count + ((self == .pyslowfast || changed) && Naming.isCanonical(name) ? 1 : 0)
        }
        return Double(hits) / Double(keys.count)
    }

    /// Every naming's score on `keys`, in `allCases` order.
    public static func scores(_ keys: [String]) -> [(naming: Naming, score: Double)] {
        allCases.filter { !$0.isTransformer }.map { (naming: $0, score: $0.score(keys)) }
    }

    /// The naming that explains `keys` best; throws when none scores or two tie.
    public static func detect(_ keys: [String]) throws -> Naming {
        try detect(keys, scores: scores(keys))
    }

    static func detect(_ keys: [String], scores: [(naming: Naming, score: Double)]) throws -> Naming {
        guard let sample = keys.first else { throw ConvertError.noTensors }
        let ranked = scores.sorted { $0.score > $1.score }
        // Caffe2 video blobs and Detectron ImageNet blobs share a naming style: the key set decides.
        if ranked[0].score > 0, ranked.count > 2, ranked[0].score > ranked[2].score,
           Set([ranked[0].naming, ranked[1].naming]) == [.caffe2, .detectron] {
            return ranked[0].score == ranked[1].score ? caffe2Flavor(keys) : ranked[0].naming
        }
        guard ranked[0].score > 0, ranked[0].score > ranked[1].score else {
            // A sample that no table explains says most about what the file is.
            let unexplained = keys.first { key in allCases.allSatisfy { $0.score([key]) == 0 } } ?? sample
            throw ConvertError.namingUndetected(scores: scores, sampleKey: unexplained)
        }
        return ranked[0].naming
    }
}
