// The Hugging Face folder reader (SECURITY.md 33): the committed tiny VideoMAE folders read as one source
// (single file, sharded, pytorch_model.bin), and folders built at test time from them with one defect each.
// Each hostile test names the check it guards: without that check the folder would be read (or refused
// with another message), so the test would fail.

import Foundation
import XCTest
@testable import Formats

final class HuggingFaceFolderTests: XCTestCase {
    static let transformers = Fixtures.dir.appendingPathComponent("transformers")
    static let shard1 = "model-00001-of-00003.safetensors", shard2 = "model-00002-of-00003.safetensors"
    static let shard3 = "model-00003-of-00003.safetensors", index = "model.safetensors.index.json"

    var scratch: URL!

    override func setUpWithError() throws {
        scratch = try Fixtures.tempDir()
        let dir = scratch!
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
    }

    /// A copy of fixtures/transformers/<name> inside the scratch folder (as `as`).
    func copy(_ name: String, as copyName: String? = nil) throws -> String {
        let to = scratch.appendingPathComponent(copyName ?? name).path
        try FileManager.default.copyItem(atPath: Self.transformers.appendingPathComponent(name).path, toPath: to)
        return to
    }

    /// The index's weight_map of `folder`, in file order.
    func weightMap(_ folder: String) throws -> [(String, String)] {
        let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + Self.index))
        guard case .object(let map)? = try data.withUnsafeBytes({ try JSONParser.parse($0) })["weight_map"] else {
            throw XCTSkip("the fixture index has no weight_map")
        }
        return map.map { ($0.0, $0.1.stringValue!) }
    }

    /// Writes `folder`'s index with `map` as its weight_map (entries in this order, duplicates kept).
    func writeIndex(_ folder: String, _ map: [(String, String)]) throws {
        let rows = map.map { "    \(JSONValue.quote($0.0)): \(JSONValue.quote($0.1))" }.joined(separator: ",\n")
        try "{\n  \"metadata\": {\"total_size\": 76436},\n  \"weight_map\": {\n\(rows)\n  }\n}\n"
            .write(toFile: folder + "/" + Self.index, atomically: false, encoding: .utf8)
    }

    func assertRefused(_ folder: String, _ kind: FormatError.Kind, _ phrase: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try HuggingFaceFolder.read(folder: folder), file: file, line: line) { error in
            guard let e = error as? FormatError else { return XCTFail("not a FormatError: \(error)", file: file, line: line) }
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            XCTAssertTrue(e.message.contains(phrase), "expected '\(phrase)' in: \(e)", file: file, line: line)
        }
    }

    func assertSameTensors(_ a: Checkpoint, _ b: Checkpoint, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Set(a.tensors.names), Set(b.tensors.names), file: file, line: line)
        for (name, t) in a.tensors.ordered {
            guard let u = b.tensors[name] else { continue }
            assertSameTensor(t, u, name, file: file, line: line)
        }
    }

    // MARK: Good folders

    func testSingleFileFolderReadsConfigAndEveryTensor() throws {
        let folder = Self.transformers.appendingPathComponent("tiny_videomae").path
        let c = try HuggingFaceFolder.read(folder: folder)
        XCTAssertEqual(c.config["model_type"]?.stringValue, "videomae")
        XCTAssertEqual(c.config["hidden_size"]?.intValue, 24)
        XCTAssertEqual(c.files, ["config.json", "model.safetensors"])
        XCTAssertEqual(c.notes, [])
        XCTAssertEqual(c.checkpoint.tensors.count, 36)
        XCTAssertNotNil(c.checkpoint.tensors["videomae.encoder.layer.1.attention.attention.q_bias"], "transformers' on-disk name kept")
        assertSameTensors(c.checkpoint, try CheckpointReader.read(path: folder + "/model.safetensors"))
    }

    func testShardedFolderReadsEveryShardToTheSameTensors() throws {
        let c = try HuggingFaceFolder.read(folder: Self.transformers.appendingPathComponent("tiny_videomae_sharded").path)
        // Shards in the order the index first names them (classifier.bias, in shard 2, comes first).
        XCTAssertEqual(c.files, ["config.json", Self.index, Self.shard2, Self.shard1, Self.shard3])
        XCTAssertEqual(c.notes, ["3 shards listed by model.safetensors.index.json"])
        XCTAssertEqual(c.checkpoint.format, .safetensors)
        assertSameTensors(c.checkpoint, try HuggingFaceFolder.read(folder: Self.transformers.appendingPathComponent("tiny_videomae").path).checkpoint)
    }

    func testPytorchModelBinFolderReadsTheSameTensors() throws {
        let c = try HuggingFaceFolder.read(folder: Self.transformers.appendingPathComponent("tiny_videomae_bin").path)
        XCTAssertEqual(c.files, ["config.json", "pytorch_model.bin"])
        XCTAssertEqual(c.checkpoint.format, .torchZip)
        assertSameTensors(c.checkpoint, try HuggingFaceFolder.read(folder: Self.transformers.appendingPathComponent("tiny_videomae").path).checkpoint)
    }

    func testFolderWithTwoWeightFilesReadsSafetensorsAndSaysSo() throws {
        let folder = try copy("tiny_videomae")
        try FileManager.default.copyItem(atPath: Self.transformers.appendingPathComponent("tiny_videomae_bin/pytorch_model.bin").path,
                                         toPath: folder + "/pytorch_model.bin")
        let c = try HuggingFaceFolder.read(folder: folder)
        XCTAssertEqual(c.files, ["config.json", "model.safetensors"])
        XCTAssertEqual(c.notes, ["read model.safetensors (also present, not read: pytorch_model.bin)"])
    }

    // MARK: Shard names (checkPlainName, resolve)

    /// Guards checkPlainName's '/' rule: the '..' shard exists and holds exactly the tensors the index maps to it.
    func testShardNameWithDotDotIsRefusedEvenWhenTheShardExists() throws {
        let folder = try copy("tiny_videomae_sharded")
        try FileManager.default.copyItem(atPath: folder + "/" + Self.shard1, toPath: scratch.appendingPathComponent("outside.safetensors").path)
        try FileManager.default.removeItem(atPath: folder + "/" + Self.shard1)
        try writeIndex(folder, try weightMap(folder).map { ($0.0, $0.1 == Self.shard1 ? "../outside.safetensors" : $0.1) })
        assertRefused(folder, .disallowed, "shard name '../outside.safetensors' must be a plain file name inside the model folder")
    }

    /// Guards checkPlainName's '/' rule for an absolute name (the real absolute path of a valid shard).
    func testAbsoluteShardNameIsRefused() throws {
        let folder = try copy("tiny_videomae_sharded")
        let elsewhere = scratch.appendingPathComponent("elsewhere.safetensors").path
        try FileManager.default.moveItem(atPath: folder + "/" + Self.shard1, toPath: elsewhere)
        try writeIndex(folder, try weightMap(folder).map { ($0.0, $0.1 == Self.shard1 ? elsewhere : $0.1) })
        assertRefused(folder, .disallowed, "shard name '\(elsewhere.prefix(80))' must be a plain file name")
    }

    /// Guards checkPlainName's '/' rule for a subfolder inside the model folder.
    func testShardInASubfolderIsRefused() throws {
        let folder = try copy("tiny_videomae_sharded")
        try FileManager.default.createDirectory(atPath: folder + "/sub", withIntermediateDirectories: false)
        try FileManager.default.moveItem(atPath: folder + "/" + Self.shard3, toPath: folder + "/sub/" + Self.shard3)
        try writeIndex(folder, try weightMap(folder).map { ($0.0, $0.1 == Self.shard3 ? "sub/" + Self.shard3 : $0.1) })
        assertRefused(folder, .disallowed, "shard name 'sub/\(Self.shard3)' must be a plain file name")
    }

    /// Guards resolve's lstat regular-file test: the symlink points at the original, valid shard.
    func testSymlinkedShardIsRefused() throws {
        let folder = try copy("tiny_videomae_sharded")
        try FileManager.default.removeItem(atPath: folder + "/" + Self.shard3)
        try FileManager.default.createSymbolicLink(atPath: folder + "/" + Self.shard3,
                                                   withDestinationPath: Self.transformers.appendingPathComponent("tiny_videomae_sharded/" + Self.shard3).path)
        assertRefused(folder, .disallowed, "shard '\(Self.shard3)' is a symlink or not a regular file")
    }

    /// Guards the same test for config.json and for a single weights file.
    func testSymlinkedConfigAndWeightsAreRefused() throws {
        let folder = try copy("tiny_videomae")
        try FileManager.default.removeItem(atPath: folder + "/config.json")
        try FileManager.default.createSymbolicLink(atPath: folder + "/config.json",
                                                   withDestinationPath: Self.transformers.appendingPathComponent("tiny_videomae/config.json").path)
        assertRefused(folder, .disallowed, "config.json 'config.json' is a symlink or not a regular file")

        let second = try copy("tiny_videomae", as: "weights_link")
        try FileManager.default.removeItem(atPath: second + "/model.safetensors")
        try FileManager.default.createSymbolicLink(atPath: second + "/model.safetensors",
                                                   withDestinationPath: Self.transformers.appendingPathComponent("tiny_videomae/model.safetensors").path)
        // A symlinked model.safetensors is not a candidate weights file at all.
        assertRefused(second, .malformed, "no weights: the folder has config.json but none of model.safetensors")
    }

    func testMissingShardIsRefused() throws {
        let folder = try copy("tiny_videomae_sharded")
        try FileManager.default.removeItem(atPath: folder + "/" + Self.shard3)
        assertRefused(folder, .io, "shard '\(Self.shard3)' cannot be opened")
    }

    // MARK: Every tensor where the index says

    /// Guards the "index maps a tensor the shard does not hold" check: shard 2 is read first and lacks the tensor
    /// (without the check the folder reads without it: shard 1 held only that tensor, and a shard the index no
    /// longer names is never opened).
    func testTensorIndexedToTheWrongShardIsRefused() throws {
        let folder = try copy("tiny_videomae_sharded")
        let map = try weightMap(folder)
        let moved = try XCTUnwrap(map.first { $0.1 == Self.shard1 }?.0)
        try writeIndex(folder, map.map { ($0.0, $0.0 == moved ? Self.shard2 : $0.1) })
        assertRefused(folder, .malformed, "the index maps '\(moved)' to shard '\(Self.shard2)', which does not hold it")
    }

    /// Guards the same check for a tensor no shard holds (without it, the folder would read without that tensor).
    func testIndexedTensorMissingFromItsShardIsRefused() throws {
        let folder = try copy("tiny_videomae_sharded")
        try writeIndex(folder, try weightMap(folder) + [("videomae.extra.weight", Self.shard3)])
        assertRefused(folder, .malformed, "the index maps 'videomae.extra.weight' to shard '\(Self.shard3)', which does not hold it")
    }

    /// Guards "shard holds a tensor the index does not map to it": a tensor left out of the index would otherwise
    /// be read anyway.
    func testTensorTheIndexDoesNotListIsRefused() throws {
        let folder = try copy("tiny_videomae_sharded")
        let map = try weightMap(folder)
        let dropped = try XCTUnwrap(map.first { $0.1 == Self.shard3 }?.0)
        try writeIndex(folder, map.filter { $0.0 != dropped })
        assertRefused(folder, .malformed, "shard '\(Self.shard3)' holds tensor '\(dropped)', which the index does not map to it")
    }

    /// A tensor stored in two shards (with other values in the second): refused by the same check, whichever
    /// shard is read first, so no reader order can pick a copy. ("appears in two shards" behind it cannot fire:
    /// the index cannot map one name to two shards, its JSON refuses duplicate keys.)
    func testTensorInTwoShardsIsRefused() throws {
        let folder = try copy("tiny_videomae_sharded")
        let map = try weightMap(folder)
        let name = try XCTUnwrap(map.first { $0.1 == Self.shard1 }?.0)
        let s3 = try CheckpointReader.read(path: folder + "/" + Self.shard3)
        var items = s3.tensors.ordered.map { SafetensorsWriter.Item(name: $0.name, tensor: $0.tensor) }
        let copyOf = try XCTUnwrap(try CheckpointReader.read(path: folder + "/" + Self.shard1).tensors[name])
        let other = OwnedBuffer(count: copyOf.byteCount)
        other.pointer.initializeMemory(as: UInt8.self, repeating: 0x3F, count: copyOf.byteCount)
        items.append(SafetensorsWriter.Item(name: name, tensor: Tensor(dtype: copyOf.dtype, shape: copyOf.shape, data: other.bytes)))
        try SafetensorsWriter.write(items, metadata: [("format", "pt")], to: folder + "/" + Self.shard3, overwrite: true)
        assertRefused(folder, .malformed, "shard '\(Self.shard3)' holds tensor '\(name)', which the index does not map to it")
    }

    /// Guards JSONParser's duplicate-key refusal for the index: one name mapped to two shards.
    func testIndexNamingATensorTwiceIsRefused() throws {
        let folder = try copy("tiny_videomae_sharded")
        let map = try weightMap(folder)
        try writeIndex(folder, map + [(map[0].0, Self.shard1)])
        assertRefused(folder, .malformed, "not valid JSON: duplicate key '\(map[0].0)'")
    }

    func testIndexWithoutAWeightMapOrWithANonStringShardIsRefused() throws {
        let folder = try copy("tiny_videomae_sharded")
        try #"{"metadata": {"total_size": 1}}"#.write(toFile: folder + "/" + Self.index, atomically: false, encoding: .utf8)
        assertRefused(folder, .malformed, #"no "weight_map" object"#)
        try #"{"weight_map": {"classifier.bias": 3}}"#.write(toFile: folder + "/" + Self.index, atomically: false, encoding: .utf8)
        assertRefused(folder, .malformed, "weight_map entry 'classifier.bias' is not a file name")
        try #"{"weight_map": {}}"#.write(toFile: folder + "/" + Self.index, atomically: false, encoding: .utf8)
        assertRefused(folder, .malformed, "weight_map is empty")
    }

    // MARK: config.json

    /// Guards JSONParser's duplicate-key refusal as the folder reader uses it.
    func testDuplicateKeysInConfigAreRefused() throws {
        let folder = try copy("tiny_videomae")
        var text = try String(contentsOfFile: folder + "/config.json", encoding: .utf8)
        text = text.replacingOccurrences(of: "\"hidden_size\": 24,", with: "\"hidden_size\": 24,\n  \"hidden_size\": 48,")
        try text.write(toFile: folder + "/config.json", atomically: false, encoding: .utf8)
        assertRefused(folder, .malformed, "not valid JSON: duplicate key 'hidden_size'")
    }

    /// Guards maxJSONDepth (32, not the parser's default 64): 32 levels read, 33 refused.
    func testConfigNestingLimitIsExactly32Levels() throws {
        let folder = try copy("tiny_videomae")
        func write(arrays: Int) throws {
            let deep = String(repeating: "[", count: arrays) + String(repeating: "]", count: arrays)
            try "{\"model_type\": \"videomae\", \"x\": \(deep)}".write(toFile: folder + "/config.json", atomically: false, encoding: .utf8)
        }
        try write(arrays: HuggingFaceFolder.maxJSONDepth - 1)
        XCTAssertNoThrow(try HuggingFaceFolder.read(folder: folder))
        try write(arrays: HuggingFaceFolder.maxJSONDepth)
        assertRefused(folder, .malformed, "nesting deeper than 32")
    }

    /// Guards maxConfigBytes: exactly 1 MiB reads, one byte more is refused before parsing.
    func testConfigSizeLimitIsExactly1MiB() throws {
        XCTAssertEqual(HuggingFaceFolder.maxConfigBytes, 1 << 20)
        let folder = try copy("tiny_videomae")
        let path = folder + "/config.json"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes.append(Data(repeating: 0x20, count: HuggingFaceFolder.maxConfigBytes - bytes.count))
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try HuggingFaceFolder.read(folder: folder).config["hidden_size"]?.intValue, 24)
        bytes.append(0x20)
        try bytes.write(to: URL(fileURLWithPath: path))
        assertRefused(folder, .limit, "1048577 bytes, more than 1048576")
    }

    /// Guards maxIndexBytes: a 64 MiB + 1 (sparse) index is refused on its size, before a byte of it is parsed.
    func testIndexSizeLimitRefusesBeforeParsing() throws {
        let folder = try copy("tiny_videomae_sharded")
        let path = folder + "/" + Self.index
        XCTAssertEqual(truncate(path, off_t(HuggingFaceFolder.maxIndexBytes + 1)), 0)
        assertRefused(folder, .limit, "\(HuggingFaceFolder.maxIndexBytes + 1) bytes, more than \(HuggingFaceFolder.maxIndexBytes)")
    }

    func testConfigThatIsNotAnObjectIsRefused() throws {
        let folder = try copy("tiny_videomae")
        try "[\"videomae\"]".write(toFile: folder + "/config.json", atomically: false, encoding: .utf8)
        assertRefused(folder, .malformed, "config.json is not a JSON object")
    }

    func testFolderWithoutWeightsOrWithoutConfigIsRefused() throws {
        let folder = try copy("tiny_videomae")
        try FileManager.default.removeItem(atPath: folder + "/model.safetensors")
        assertRefused(folder, .malformed, "no weights: the folder has config.json but none of model.safetensors, "
                      + "model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json")
        let bare = try copy("tiny_videomae", as: "no_config")
        try FileManager.default.removeItem(atPath: bare + "/config.json")
        assertRefused(bare, .io, "is a directory without config.json, not a Hugging Face model folder")
    }

    // MARK: The index on bytes (what the hf-config fuzz target runs)

    func plan(_ json: String) throws -> [(shard: String, names: [String])] {
        var text = json
        return try text.withUTF8 { try HuggingFaceFolder.shardPlan(indexBytes: UnsafeRawBufferPointer($0), file: "index.json") }
    }

    /// Guards maxShards: 4096 distinct shards plan, 4097 are refused.
    func testShardCountLimitIsExactly4096() throws {
        func index(_ n: Int) -> String {
            "{\"weight_map\": {" + (0 ..< n).map { "\"t\($0)\": \"s\($0).safetensors\"" }.joined(separator: ",") + "}}"
        }
        XCTAssertEqual(try plan(index(HuggingFaceFolder.maxShards)).count, 4096)
        XCTAssertThrowsError(try plan(index(HuggingFaceFolder.maxShards + 1))) {
            XCTAssertEqual(($0 as? FormatError)?.kind, .limit)
            XCTAssertTrue("\($0)".contains("more than 4096 shards"), "\($0)")
        }
    }

    /// Guards every clause of checkPlainName on its own: length, '/', '\\', NUL, '.', '..', empty.
    func testShardNameRuleOnBytes() throws {
        let ok = String(repeating: "a", count: 249) + ".bin"
        XCTAssertEqual(try plan("{\"weight_map\": {\"w\": \"\(ok)x\"}}").first?.shard.utf8.count, 254)
        XCTAssertEqual(try plan("{\"weight_map\": {\"w\": \"\(ok)xy\"}}").first?.shard.utf8.count, 255)
        for bad in [ok + "xyz", "a/b.safetensors", "/etc/passwd", "..\\\\x.bin", "x\\u0000.bin", ".", "..", ""] {
            XCTAssertThrowsError(try plan("{\"weight_map\": {\"w\": \"\(bad)\"}}"), bad) {
                XCTAssertEqual(($0 as? FormatError)?.kind, .disallowed, "\($0)")
                XCTAssertTrue("\($0)".contains("must be a plain file name inside the model folder"), "\($0)")
            }
        }
        // First-mention order, names grouped by shard.
        let p = try plan(#"{"weight_map": {"a": "2.st", "b": "1.st", "c": "2.st"}}"#)
        XCTAssertEqual(p.map(\.shard), ["2.st", "1.st"])
        XCTAssertEqual(p.map(\.names), [["a", "c"], ["b"]])
    }

    /// config.json on bytes: the same limits as the folder reader (`parseConfig`, what hf-config fuzzes).
    func testConfigBytesEntryPointKeepsTheFolderLimits() throws {
        func parse(_ s: String) throws -> JSONValue {
            var t = s
            return try t.withUTF8 { try HuggingFaceFolder.parseConfig(UnsafeRawBufferPointer($0), file: "config.json") }
        }
        XCTAssertEqual(try parse(#"{"model_type": "timesformer"}"#)["model_type"]?.stringValue, "timesformer")
        XCTAssertThrowsError(try parse(#"{"a": 1, "a": 2}"#)) { XCTAssertTrue("\($0)".contains("duplicate key 'a'"), "\($0)") }
        XCTAssertThrowsError(try parse("3")) { XCTAssertTrue("\($0)".contains("is not a JSON object"), "\($0)") }
        XCTAssertThrowsError(try parse("{\"x\": " + String(repeating: "[", count: 32) + String(repeating: "]", count: 32) + "}")) {
            XCTAssertTrue("\($0)".contains("nesting deeper than 32"), "\($0)")
        }
        XCTAssertThrowsError(try parse("{}" + String(repeating: " ", count: HuggingFaceFolder.maxConfigBytes - 1))) {
            XCTAssertTrue("\($0)".contains("more than 1048576"), "\($0)")
        }
    }
}

extension HuggingFaceFolderTests {
    /// Guards maxIndexEntries: 2^20 weight_map entries plan, 2^20 + 1 are refused (short names keep the JSON at 15 MB).
    func testIndexEntryLimitIsExactly2Pow20() throws {
        func index(_ n: Int) -> String {
            var s = "{\"weight_map\": {"
            s.reserveCapacity(n * 16)
            for i in 0 ..< n { s += (i == 0 ? "\"" : ",\"") + String(i, radix: 36) + "\":\"s\"" }
            return s + "}}"
        }
        let start = Date()
        XCTAssertEqual(try plan(index(HuggingFaceFolder.maxIndexEntries)).first?.names.count, 1 << 20)
        XCTAssertThrowsError(try plan(index(HuggingFaceFolder.maxIndexEntries + 1))) {
            XCTAssertEqual(($0 as? FormatError)?.kind, .limit)
            XCTAssertTrue("\($0)".contains("weight_map has 1048577 entries, more than 1048576"), "\($0)")
        }
        print("2 x 2^20-entry index parsed in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
    }
}
