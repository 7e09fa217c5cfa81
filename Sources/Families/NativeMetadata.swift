// The native weight file's metadata: the one owner of its keys, of what a native file
// must carry, and of reading the architecture back. Writers start their metadata with
// `header(_:)`; readers go through `requireNative(_:)` (strict: a file sfnet wrote) or
// `architecture(in:)` (any checkpoint that carries `sfnet.arch`, e.g. a reference).

import Foundation
import Formats

public enum NativeMetadata {
    /// The native format's version: `sfnet.format` = "1".
    public static let formatKey = "sfnet.format"
    public static let version = "1"
    /// The architecture as `ArchConfig` JSON (sorted keys).
    public static let archKey = "sfnet.arch"
    /// The naming scheme of the tensors: the family's canonical one.
    public static let namingKey = "sfnet.naming"
    /// Where the weights came from (JSON).
    public static let sourceKey = "sfnet.source"
    /// Class names in head order (JSON array), written by fine-tuning.
    public static let classesKey = "sfnet.classes"

    /// The entries every native file begins with: format, architecture, naming.
    public static func header(_ arch: ArchConfig) throws -> [(String, String)] {
        [(formatKey, version), (archKey, try arch.jsonString()), (namingKey, arch.canonicalNaming)]
    }

    /// The architecture a checkpoint's `sfnet.arch` describes, nil when it carries none; a value that
    /// is not a valid architecture throws `FamilyError.invalidConfig`.
    public static func architecture(in checkpoint: Checkpoint) throws -> ArchConfig? {
        guard let text = checkpoint.metadataValue(archKey) else { return nil }
        return try ArchConfig.fromJSON(text)
    }

    /// Why `checkpoint` is not a native file sfnet wrote (safetensors, `sfnet.format` "1", `sfnet.arch`, the
    /// family's naming), or nil when it is.
    public static func notNativeReason(_ checkpoint: Checkpoint) -> String? {
        guard checkpoint.format == .safetensors else { return "it is a \(checkpoint.format.rawValue) file" }
        guard checkpoint.metadataValue(formatKey) == version else { return "no \(formatKey) \"\(version)\" metadata" }
        guard let text = checkpoint.metadataValue(archKey) else { return "no \(archKey) metadata" }
        guard let arch = try? ArchConfig.fromJSON(text) else { return nil }  // requireNative reports the config's problems
        if let naming = checkpoint.metadataValue(namingKey), naming != arch.canonicalNaming {
            return "\(namingKey) is '\(naming)', expected '\(arch.canonicalNaming)'"
        }
        return nil
    }

    /// The architecture of a native file; throws `FamilyError.notNative` saying what is missing, or
    /// `FamilyError.invalidConfig` for an `sfnet.arch` that describes no network.
    public static func requireNative(_ checkpoint: Checkpoint) throws -> ArchConfig {
        if let reason = notNativeReason(checkpoint) { throw FamilyError.notNative(reason) }
        guard let arch = try architecture(in: checkpoint) else { throw FamilyError.notNative("no \(archKey) metadata") }
        return arch
    }
}

extension ArchConfig {
    /// The naming scheme of this family's canonical tensor names (`sfnet.naming`).
    /// PySlowFast's names for the CNN families, Hugging Face's (transformers 5) for the transformers.
    public var canonicalNaming: String { model.isTransformer ? "huggingface" : "pyslowfast" }
}
