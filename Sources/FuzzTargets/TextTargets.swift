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

    /// A PySlowFast config: the data-only YAML reader, the key table, and applying it to the options.
    public static let yaml: Body = { raw in
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
        runText { _ = try ClassList(names: Spreadsheet.classNames(ScratchFile.shared.write(raw, "classes.xlsx"))) }
    }

    /// A CSV manifest (RFC 4180 records, header, labels as names or ids).
    public static let csv: Body = { raw in
        runText { _ = try Manifest.loadCSV(ScratchFile.shared.write(raw, "manifest.csv")) }
    }

    /// A Charades / Animal Kingdom frame list (space-separated rows, header optional).
    public static let frameList: Body = { raw in
        runText { _ = try FrameList.load(ScratchFile.shared.write(raw, "frames.csv")) }
    }
}

/// One scratch folder per process for the path-based readers (libFuzzer runs inputs one at a time).
final class ScratchFile: @unchecked Sendable {
    static let shared = ScratchFile()
    let dir: URL
    private let lock = NSLock()

    init() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-fuzz-text-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    /// Writes `raw` to `<dir>/<name>` and returns the path.
    func write(_ raw: UnsafeRawBufferPointer, _ name: String) -> String {
        lock.lock(); defer { lock.unlock() }
        let path = dir.appendingPathComponent(name).path
        FileManager.default.createFile(atPath: path, contents: Data(raw))
        return path
    }
}
