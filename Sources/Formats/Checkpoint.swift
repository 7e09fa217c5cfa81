// What every reader returns: the tensors of a file plus what else it held,
// so that nothing in a container is silently dropped.

import Foundation

/// The file formats sfnet detects by content.
public enum SourceFormat: String, Sendable, Codable, CaseIterable {
    case torchZip = "torch-zip"
    case torchLegacy = "torch-legacy"
    case safetensors
    case npy
    case npz
    case pickle          // a bare pickle (e.g. Caffe2 / Detectron `.pkl`)
    case torchScript = "torchscript"
    case onnx            // read by the ONNX module (`sfnet convert --from onnx`), not by CheckpointReader
    case hdf5            // Keras weights, read by the Keras module in a worker process (`sfnet convert --from keras`)
}

/// A file read by one of the readers.
public struct Checkpoint: Sendable {
    /// Detected format.
    public var format: SourceFormat
    /// Tensors in file order, names as in the file (container key and `module.` prefix removed).
    public var tensors: TensorMap
    /// The container key the tensors came from (`model_state`, `state_dict`, `model`), nil for a plain state_dict.
    public var containerKey: String?
    /// A prefix stripped from every tensor name (`module.`), if any.
    public var strippedPrefix: String?
    /// Entries of the container other than the tensors, summarised: key -> description
    /// (`epoch` -> `int 7`, `optimizer_state` -> `dict with 2 entries (12 tensors)`).
    public var otherEntries: [(key: String, summary: String)]
    /// Metadata of a safetensors file (`__metadata__`), or format-specific facts
    /// (`byteorder`, `archive prefix`, `pickle protocol`).
    public var metadata: [(key: String, value: String)]
    /// Groups of tensor names that share one storage in the file.
    public var aliases: [[String]]
    /// Per-tensor notes from reading (`gathered from strides [1,4]`, `byte-swapped from big-endian`).
    public var notes: [String: String]
    /// Integrity checks left to the caller (only when read with `deferIntegrity`); every one
    /// must pass before anything derived from this checkpoint is published.
    public var pendingChecks: PendingChecks?
    /// What an importer already did to a tensor (`transposed [kh,kw,in,out] -> [out,in,kh,kw]`,
    /// a conv bias folded in), keyed by tensor name: the conversion report lists it after the renaming.
    public var reportActions: [String: [String]] = [:]

    public init(format: SourceFormat, tensors: TensorMap = TensorMap(), containerKey: String? = nil,
                strippedPrefix: String? = nil, otherEntries: [(key: String, summary: String)] = [],
                metadata: [(key: String, value: String)] = [], aliases: [[String]] = [],
                notes: [String: String] = [:]) {
        self.format = format
        self.tensors = tensors
        self.containerKey = containerKey
        self.strippedPrefix = strippedPrefix
        self.otherEntries = otherEntries
        self.metadata = metadata
        self.aliases = aliases
        self.notes = notes
    }

    public func metadataValue(_ key: String) -> String? {
        metadata.first { $0.key == key }?.value
    }
}
