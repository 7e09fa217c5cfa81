// Fuzz bodies for the text-format readers (issue 18 item 3; SECURITY.md 33-37): the JSON parser,
// a Hugging Face folder's config.json and shard index, PySlowFast YAML configs, .xlsx class lists,
// CSV manifests and frame lists. The dataset readers take paths only, so each input is written to one
// scratch file per process first (their parse-from-bytes cores are internal; the file is what sfnet meets).

import Convert
import Families
import Finetune
import Foundation
import Formats
import Video

extension FuzzTargets {
    static func runText(_ f: () throws -> Void) -> FuzzOutcome {
        do {
            try f()
            return .accepted
        } catch let e as JSONParser.Failure {
            return .refused(e.description)
        } catch let e as YAMLError {
            return .refused(e.description)
        } catch let e as FinetuneError {
            return .refused(e.description)
        } catch let e as DatasetError {
            return .refused(e.description)
        } catch {
            return .untyped("\(type(of: error)): \(error)")
        }
    }

    /// JSON as configs and index files are read (depth limit 64, the parser's default).
    public static let json: Body = { raw in
        runText { _ = try JSONParser.parse(raw) }
    }

    /// A Hugging Face folder's JSON as the folder reader and convert take it (SECURITY 33 and 37), every input
    /// both ways: as config.json (size and JSON limits, an object, then the architecture it describes and that
    /// architecture's tensor layout, which convert checks the tensors against) and as model.safetensors.index.json
    /// (size, JSON and count limits, weight_map, the plain-name rule for shards). Accepted when either accepts;
    /// refused with both reasons otherwise.
    public static let hfConfig: Body = { raw in
        let asConfig = run {
            let config = try HuggingFaceFolder.parseConfig(raw, file: "config.json")
            let (arch, _) = try TransformerConvert.architecture(fromHFConfig: config)
            _ = TransformerLayout(arch: arch).parameters
        }
        let asIndex = run { _ = try HuggingFaceFolder.shardPlan(indexBytes: raw, file: "model.safetensors.index.json") }
        switch (asConfig, asIndex) {
        case (.untyped, _): return asConfig
        case (_, .untyped): return asIndex
        case (.accepted, _), (_, .accepted): return .accepted
        case let (.refused(c), .refused(i)): return .refused("as config.json: \(c); as an index: \(i)")
        }
    }

    /// The data-only YAML reader (pre-scan, Yams, the tree walk) and the flattening into PySlowFast keys.
    public static let yaml: Body = { raw in
        runText {
            let file = "fuzz.yaml"
            _ = try PySlowFastConfig(file: file, root: YAMLData.parse(Data(raw), file: file))
        }
    }

    /// A PySlowFast config applied to the options: the key table and its typed values. Split from `yaml`
    /// because `apply` parses PySlowFast's defaults (a YAML text) on every call, which costs more than
    /// reading a fuzz input: the reader alone runs many times faster.
    public static let pyslowfastConfig: Body = { raw in
        runText {
            let file = "fuzz.yaml"
            let config = try PySlowFastConfig(file: file, root: YAMLData.parse(Data(raw), file: file))
            var o = FinetuneOptions(train: "", out: "")
            var sources = SettingSources()
            try config.apply(to: &o, sources: &sources)
        }
    }

    /// An .xlsx class list: zip, workbook, relationships, shared strings, first sheet, class names.
    public static let xlsx: Body = { raw in
        runText { _ = try ClassList(names: Spreadsheet.classNames(ScratchFile.shared.store(raw, "classes.xlsx"))) }
    }

    /// A CSV manifest (RFC 4180 records, header, labels as names or ids).
    public static let csv: Body = { raw in
        runText { _ = try Manifest.loadCSV(ScratchFile.shared.store(raw, "manifest.csv")) }
    }

    /// A Charades / Animal Kingdom frame list (space-separated rows, header optional).
    public static let frameList: Body = { raw in
        runText { _ = try FrameList.load(ScratchFile.shared.store(raw, "frames.csv")) }
    }
}

/// One scratch folder per process for the path-based readers (libFuzzer runs inputs one at a time), in
/// /dev/shm where there is one, written with a plain open/write: FileManager's atomic write (a temporary
/// file and a rename on disk) cost more than the parse and held the text targets near 500 inputs/s.
final class ScratchFile: @unchecked Sendable {
    static let shared = ScratchFile()
    let dir: String
    private let lock = NSLock()

    init() {
        let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : FileManager.default.temporaryDirectory.path
        dir = base + "/sfnet-fuzz-text-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    /// Writes `raw` to `<dir>/<name>` and returns the path.
    func store(_ raw: UnsafeRawBufferPointer, _ name: String) -> String {
        lock.lock(); defer { lock.unlock() }
        let path = dir + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { return path }
        defer { close(fd) }
        var done = 0
        while done < raw.count {
            let n = write(fd, raw.baseAddress! + done, raw.count - done)
            if n <= 0 { break }
            done += n
        }
        return path
    }
}
