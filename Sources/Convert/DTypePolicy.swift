// The output dtype policy, and the one place the converter casts tensors
// (so a streaming cast can later replace it without touching the rest).

import Foundation
import Formats

/// What dtype floating-point tensors are written in. Integer tensors (num_batches_tracked) are never cast.
public enum DTypePolicy: String, CaseIterable, Sendable, Codable {
    /// Keep each tensor's dtype.
    case keep
    case f32, f16, bf16

    /// The dtype a floating-point tensor stored as `source` ends up in.
    public func target(for source: DType) -> DType {
        switch self {
        case .keep: return source
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        }
    }

    /// `tensor` under this policy and the report entry ("cast f16->f32"), or the
    /// same tensor — still pointing at the source bytes — and nil when nothing changes.
    public func apply(_ tensor: Tensor) -> (tensor: Tensor, action: String?) {
        guard tensor.dtype.isFloatingPoint else { return (tensor, nil) }
        let to = target(for: tensor.dtype)
        guard to != tensor.dtype else { return (tensor, nil) }
        return (Self.cast(tensor, to: to), "cast \(tensor.dtype.shortName)->\(to.shortName)")
    }

    /// Element conversion with round-to-nearest-even narrowing (allocates the output).
    static func cast(_ tensor: Tensor, to: DType) -> Tensor {
        DTypeCast.cast(tensor, to: to)
    }
}
