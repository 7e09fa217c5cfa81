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
