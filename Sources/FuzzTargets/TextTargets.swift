// Fuzz bodies for the text-format readers (issue 18 item 3; SECURITY.md 33-36): the JSON parser,
// PySlowFast YAML configs, .xlsx class lists, CSV manifests and frame lists. The dataset readers
// take paths only, so each input is written to one scratch file per process first (their
// parse-from-bytes cores are internal; the file is what sfnet meets).

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
