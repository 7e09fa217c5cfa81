// A Hugging Face model folder as `save_pretrained` writes it: `config.json` beside the weights,
// which are one `model.safetensors`, or shards listed by `model.safetensors.index.json`, or the
// older `pytorch_model.bin` (and its sharded index). The folder is a container like a zip: this
// reader knows its files, never what the config means (Convert reads the architecture from it).
//
// Hostile folders (SECURITY.md cases 33 and 37): config.json and the index are read by the strict
// JSON parser (duplicate keys refused, nesting, size and count limits); a shard name must be a plain
// file name inside the folder (no '/', '..', absolute path or symlink); every tensor must be where
// the index says, and every indexed tensor present. Custom code (`auto_map`, `trust_remote_code`) is
// data here: nothing named in a file is run, imported or fetched.

import Foundation

public enum HuggingFaceFolder {
    /// Limits on the folder's JSON files and shards.
    public static let maxConfigBytes = 1 << 20
    public static let maxIndexBytes = 64 << 20
    public static let maxJSONDepth = 32
    public static let maxShards = 4096
    public static let maxIndexEntries = 1 << 20

    /// What the folder holds.
    public struct Contents: Sendable {
        /// config.json, parsed (strict JSON).
        public var config: JSONValue
        /// Tensors of every weight file, in index order (shard by shard).
        public var checkpoint: Checkpoint
        /// The files read, relative to the folder, config.json first.
        public var files: [String]
        /// What was chosen and why ("model.safetensors (pytorch_model.bin also present, not read)").
        public var notes: [String]
    }

    /// Whether `path` is a directory with a config.json (a folder to read with `read`).
    public static func looksLikeFolder(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    public static func read(folder: String, limits: PickleLimits = PickleLimits()) throws -> Contents {
        var st = stat()
        if lstat(folder + "/config.json", &st) != 0, errno == ENOENT {
            throw FormatError(.io, "is a directory without config.json, not a Hugging Face model folder "
                              + "(give a checkpoint file, or a folder that save_pretrained wrote)", file: folder)
        }
        let config = try readSmall(folder, "config.json", max: maxConfigBytes).withUnsafeBytes {
            try parseConfig($0, file: folder + "/config.json")
        }
        var notes: [String] = []
        var files = ["config.json"]
        let candidates = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"]
        let present = candidates.filter { isRegularFile(folder + "/" + $0) }
        guard let chosen = present.first else {
            throw FormatError(.malformed, "no weights: the folder has config.json but none of " + candidates.joined(separator: ", "),
                              file: folder)
        }
        if present.count > 1 {
            notes.append("read \(chosen) (also present, not read: \(present.dropFirst().joined(separator: ", ")))")
        }
        var checkpoint: Checkpoint
        if chosen.hasSuffix(".index.json") {
            let shards = try shardPlan(folder, index: chosen)
            var merged = TensorMap()
            var format: SourceFormat = .safetensors
            for (shard, names) in shards {
                let path = try resolve(folder, shard, what: "shard")
                let part = try CheckpointReader.read(path: path, limits: limits)
                format = part.format
                let expected = Set(names)
                for (name, tensor) in part.tensors.ordered {
                    guard expected.contains(name) else {
                        throw FormatError(.malformed, "shard '\(shard)' holds tensor '\(name)', which the index does not map to it",
                                          file: folder + "/" + chosen)
                    }
                    guard merged[name] == nil else {
                        throw FormatError(.malformed, "tensor '\(name)' appears in two shards", file: folder + "/" + chosen)
                    }
                    merged.set(name, tensor)
                }
                if let missing = names.first(where: { part.tensors[$0] == nil }) {
                    throw FormatError(.malformed, "the index maps '\(missing)' to shard '\(shard)', which does not hold it",
                                      file: folder + "/" + chosen)
                }
                files.append(shard)
            }
            checkpoint = Checkpoint(format: format, tensors: merged)
            notes.append("\(shards.count) shard\(shards.count == 1 ? "" : "s") listed by \(chosen)")
            files.insert(chosen, at: 1)
        } else {
            checkpoint = try CheckpointReader.read(path: try resolve(folder, chosen, what: "weights file"), limits: limits)
            files.append(chosen)
        }
        return Contents(config: config, checkpoint: checkpoint, files: files, notes: notes)
    }

    /// config.json's bytes as `read` takes them: at most `maxConfigBytes`, strict JSON (duplicate keys refused,
    /// nesting at most `maxJSONDepth`), an object. `file` names it in errors. No file is touched (the fuzz
    /// target `hf-config` calls this on its input).
    public static func parseConfig(_ bytes: UnsafeRawBufferPointer, file: String) throws -> JSONValue {
        guard bytes.count <= maxConfigBytes else {
            throw FormatError(.limit, "\(bytes.count) bytes, more than \(maxConfigBytes)", file: file)
        }
        let config = try parseJSON(bytes, file: file)
        guard case .object = config else { throw FormatError(.malformed, "config.json is not a JSON object", file: file) }
        return config
    }

    /// The index's shards in first-mention order, each with the tensor names it must hold.
    static func shardPlan(_ folder: String, index: String) throws -> [(shard: String, names: [String])] {
        try readSmall(folder, index, max: maxIndexBytes).withUnsafeBytes { try shardPlan(indexBytes: $0, file: folder + "/" + index) }
    }

    /// An index file's bytes (`model.safetensors.index.json`) -> its shards in first-mention order, each with the
    /// tensor names it must hold: the size, JSON and count limits and the plain-name rule, before any shard is
    /// opened. `file` names it in errors. No file is touched (the fuzz target `hf-config` calls this on its input).
    public static func shardPlan(indexBytes: UnsafeRawBufferPointer, file: String) throws -> [(shard: String, names: [String])] {
        guard indexBytes.count <= maxIndexBytes else {
            throw FormatError(.limit, "\(indexBytes.count) bytes, more than \(maxIndexBytes)", file: file)
        }
        let json = try parseJSON(indexBytes, file: file)
        guard case .object(let map)? = json["weight_map"] else {
            throw FormatError(.malformed, "no \"weight_map\" object", file: file)
        }
        guard map.count <= maxIndexEntries else {
            throw FormatError(.limit, "weight_map has \(map.count) entries, more than \(maxIndexEntries)", file: file)
        }
        var order: [String] = []
        var byShard: [String: [String]] = [:]
        for (name, value) in map {
            guard let shard = value.stringValue else {
                throw FormatError(.malformed, "weight_map entry '\(name)' is not a file name", file: file)
            }
            try checkPlainName(shard, in: file, what: "shard")
            if byShard[shard] == nil {
                order.append(shard)
                guard order.count <= maxShards else { throw FormatError(.limit, "more than \(maxShards) shards", file: file) }
            }
            byShard[shard, default: []].append(name)
        }
        guard !order.isEmpty else { throw FormatError(.malformed, "weight_map is empty", file: file) }
        return order.map { ($0, byShard[$0]!) }
    }

    static func parseJSON(_ bytes: UnsafeRawBufferPointer, file: String) throws -> JSONValue {
        do {
            return try JSONParser.parse(bytes, maxDepth: maxJSONDepth)
        } catch let e as JSONParser.Failure {
            throw FormatError(.malformed, "not valid JSON: \(e)", file: file)
        }
    }

    /// A plain file name: no directory part, not '.', '..' or hidden-path tricks, no NUL or backslash.
    static func checkPlainName(_ name: String, in file: String, what: String) throws {
        guard !name.isEmpty, name.utf8.count <= 255, !name.contains("/"), !name.contains("\\"), !name.contains("\0"),
              name != ".", name != ".." else {
            throw FormatError(.disallowed, "\(what) name '\(name.prefix(80))' must be a plain file name inside the model folder "
                              + "(no directory, '..' or absolute path)", file: file)
        }
    }

    /// `folder/name` when it is a regular file (not a symlink) directly inside the folder.
    static func resolve(_ folder: String, _ name: String, what: String) throws -> String {
        try checkPlainName(name, in: folder + "/" + name, what: what)
        let path = folder + "/" + name
        var st = stat()
        guard lstat(path, &st) == 0 else { throw FormatError(.io, "\(what) '\(name)' cannot be opened", file: folder) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw FormatError(.disallowed, "\(what) '\(name)' is a symlink or not a regular file", file: folder)
        }
        return path
    }

    static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    static func readSmall(_ folder: String, _ name: String, max: Int) throws -> [UInt8] {
        let path = try resolve(folder, name, what: name == "config.json" ? "config.json" : "index")
        let file = try MappedFile(path: path)
        guard file.bytes.count <= max else {
            throw FormatError(.limit, "\(file.bytes.count) bytes, more than \(max)", file: path)
        }
        return Array(file.bytes.raw)
    }
}
