// What the Caffe2, Detectron and torchvision namings need beyond their key maps:
// blobs that are training state rather than weights (dropped with a reason), the
// Caffe2-vs-Detectron decision, and which namings hold 2D (4-D kernel) weights.

import Foundation

extension Naming {
    /// Whether the source network is a 2D ImageNet ResNet (4-D conv kernels).
    public var is2D: Bool { self == .detectron || self == .torchvision || self == .keras }

    /// Whether the file may hold affine-only BN (scale and bias, no running statistics).
    var mayHaveAffineBN: Bool { self == .caffe2 || self == .detectron }

    /// Blobs of this naming that are not weights, and why they are left out.
    var ignoredBlobs: [(pattern: NSRegularExpression, reason: String)] {
        switch self {
        case .caffe2, .detectron: return Naming.caffe2Ignored
        default: return []
        }
    }

    /// Why `key` is left out of the conversion, or nil when it is a weight.
    public func ignoredReason(_ key: String) -> String? {
        let range = NSRange(key.startIndex..., in: key)
        return ignoredBlobs.first { $0.pattern.firstMatch(in: key, range: range) != nil }?.reason
    }

    private static let caffe2Ignored: [(pattern: NSRegularExpression, reason: String)] = [
        (#"_momentum$"#, "optimizer momentum (Caffe2 training state)"),                     // res2_0_branch2a_w_momentum
        (#"^model_iter$"#, "training iteration counter (Caffe2 training state)"),           // model_iter
        (#"^(lr|.*_lr)$"#, "learning rate (Caffe2 training state)"),                        // lr
        (#"^conv1_b$"#, "stem conv bias: the model's stem conv has none (it feeds BN)"),    // conv1_b (Detectron)
    ].map { (try! NSRegularExpression(pattern: $0.0), $0.1) }

    /// Caffe2 video blobs or Detectron ImageNet blobs, from the key set alone: a fast
    /// pathway (`t_`), a video head (`pred_`) or running statistics (`_rm`) say Caffe2;
    /// an ImageNet classifier (`fc1000_`) or affine-only BN say Detectron.
    static func caffe2Flavor(_ keys: [String]) -> Naming {
        if keys.contains(where: { $0.hasPrefix("t_") || $0.hasPrefix("pred_") }) { return .caffe2 }
        if keys.contains(where: { $0.hasPrefix("fc1000_") }) { return .detectron }
        return keys.contains(where: { $0.hasSuffix("_bn_rm") || $0.hasSuffix("_bn_riv") }) ? .caffe2 : .detectron
    }
}
