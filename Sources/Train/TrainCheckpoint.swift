// Training checkpoints: weights, optimizer state, schedule and RNG state in
// one safetensors file, written atomically (temporary file, fsync, rename),
// with the run state as JSON in `sfnet.train_state`, read back for --resume.

import Foundation
import Formats

public enum TrainCheckpoint {
    /// Reads a safetensors file, turning Formats' errors into TrainErrors naming the file.
    static func readSafetensors(_ path: String) throws -> Checkpoint {
        do {
            let c = try CheckpointReader.read(path: path, as: .safetensors)
            return c
        } catch let e as FormatError {
            throw TrainError(e.kind == .io ? .io : .malformed, e.message, file: path, at: e.location, hint: e.hint)
        }
    }
}

extension TrainCheckpoint {
    public static let stateKey = "sfnet.train_state"

    /// `checkpoint-epoch007.safetensors` for the state after 7 completed epochs.
    public static func fileName(epoch: Int) -> String { String(format: "checkpoint-epoch%03d.safetensors", epoch) }

    /// Writes weights (parameters and BN buffers, canonical names), the optimizer's buffers and
    /// metadata, and `state` into one safetensors file, atomically: the path holds either the
    /// previous file or the complete new one. `metadata` adds entries (`sfnet.arch`, class names...).
    public static func write(to path: String, weights: [(name: String, tensor: Tensor)], optimizer: any Optimizer, state: TrainState,
                             metadata: [(String, String)] = [], overwrite: Bool = true) throws {
        try write(to: path, weights: weights, optimizer: OptimizerSnapshot(optimizer), state: state, metadata: metadata, overwrite: overwrite)
    }

    /// The optimizer's state taken at one moment (its buffers copied), so the file can be written
    /// later, on another thread, while the optimizer moves on.
    public struct OptimizerSnapshot: @unchecked Sendable {
        let tensors: [(name: String, tensor: Tensor)]
        let metadata: (key: String, value: String)
        public init(_ optimizer: any Optimizer) {
            tensors = optimizer.stateTensors()
            metadata = optimizer.stateMetadata()
        }
    }

    /// As `write(to:weights:optimizer:...)`, from an optimizer snapshot.
    public static func write(to path: String, weights: [(name: String, tensor: Tensor)], optimizer: OptimizerSnapshot, state: TrainState,
                             metadata: [(String, String)] = [], overwrite: Bool = true) throws {
        var items: [SafetensorsWriter.Item] = []
        for (name, t) in weights {
            guard !name.hasPrefix("optimizer.") else {
                throw TrainError(.invalidArgument, "weight names may not start with 'optimizer.' (reserved for optimizer state)", at: "tensor '\(name)'")
            }
            items.append(SafetensorsWriter.Item(name: name, tensor: t))
        }
        items += optimizer.tensors.map { SafetensorsWriter.Item(name: $0.name, tensor: $0.tensor) }
        var meta: [(String, String)] = [("sfnet.format", "1")]
        meta += metadata.filter { m in ![stateKey, SGD.metadataKey, "sfnet.format"].contains(m.0) }
        meta.append(optimizer.metadata)
        meta.append((stateKey, state.json()))
        do {
            try SafetensorsWriter.write(items, metadata: meta, to: path, overwrite: overwrite)
        } catch let e as FormatError {
            throw TrainError(.io, e.message, file: path, at: e.location, hint: e.hint)
        }
    }

    /// A checkpoint read back: weights without the optimizer entries, the run state, all metadata.
    public struct Loaded {
        public var path: String
        public var weights: TensorMap
        public var state: TrainState
        public var metadata: [(key: String, value: String)]
        let file: Checkpoint

        /// Restores the momentum buffers and step count into `optimizer` (checked against `params`).
        public func restoreOptimizer(_ optimizer: any Optimizer, params: TrainableParameters? = nil) throws {
            do { try optimizer.restore(tensors: file.tensors, metadata: file.metadata, params: params) } catch let e as TrainError { throw e.inFile(path) }
        }

        /// A new optimizer with the checkpoint's configuration and state.
        public func makeOptimizer(params: TrainableParameters? = nil) throws -> SGD {
            let sgd = try SGD(config: state.config.sgd)
            try restoreOptimizer(sgd, params: params)
            return sgd
        }
    }

    public static func read(_ path: String) throws -> Loaded {
        let c = try readSafetensors(path)
        guard let text = c.metadata.first(where: { $0.key == stateKey })?.value else {
            throw TrainError(.missing, "not a training checkpoint: no '\(stateKey)' metadata", file: path,
                             hint: "a plain weights file starts a new run (--weights), it cannot be resumed")
        }
        let state: TrainState
        do { state = try TrainState.decode(json: text) } catch let e as TrainError { throw e.inFile(path) }
        var weights = TensorMap()
        for (name, t) in c.tensors.ordered where !name.hasPrefix("optimizer.") { weights.set(name, t) }
        return Loaded(path: path, weights: weights, state: state,
                      metadata: c.metadata.filter { $0.key != "data offset" }, file: c)
    }

    /// The checkpoint of the most epochs in `directory` that reads back as one (for --resume);
    /// nil when there is none. Files that fail to read are skipped, newest first.
    public static func latest(in directory: String) -> (path: String, loaded: Loaded)? {
        scan(in: directory).latest
    }

    /// What --resume finds in `directory`: the newest checkpoint that reads back, and the newer
    /// ones that do not (newest first, each with the reason), which a resume skips and reports.
    public static func scan(in directory: String) -> (latest: (path: String, loaded: Loaded)?, damaged: [(name: String, reason: String)]) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return (nil, []) }
        let numbered = names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("checkpoint-epoch"), name.hasSuffix(".safetensors") else { return nil }
            let digits = name.dropFirst("checkpoint-epoch".count).dropLast(".safetensors".count)
            guard !digits.isEmpty, digits.allSatisfy(\.isNumber), let n = Int(digits) else { return nil }
            return (n, name)
        }
        var damaged: [(name: String, reason: String)] = []
        for (_, name) in numbered.sorted(by: { $0.0 > $1.0 }) {
            let p = (directory as NSString).appendingPathComponent(name)
            do {
                return ((p, try read(p)), damaged)
            } catch {
                var reason = "\(error)"
                for prefix in [p + ": ", p] where reason.hasPrefix(prefix) { reason.removeFirst(prefix.count); break }
                damaged.append((name, reason))
            }
        }
        return (nil, damaged)
    }
}
