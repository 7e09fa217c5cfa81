// Data sets as manifests: the CSV manifest `path,labels[,animals]` (labels class names or 0-based ids,
// ';'-separated for multi-label; paths relative to the manifest's folder; an optional header line;
// RFC 4180 quoting, records found by TextRecords and split into fields by yaslab/CSV.swift),
// and the Charades / Animal Kingdom frame list (SLOWFAST.md): space-separated, a header
// `original_vido_id video_id frame_id path labels`, one row per frame, labels comma-separated ids.

import CSV
import Foundation

/// One labelled video: a file, a frame folder, or an explicit list of frame images.
public struct VideoSample: Sendable, Equatable {
    /// Absolute path of the video file or frame folder (for frame lists: the video id, used in messages).
    public var path: String
    /// Frame image paths when the sample comes from a frame list.
    public var frames: [String]?
    /// Class ids.
    public var labels: [Int]
    /// Animals in the clip, when the annotations say (the split's single-animal filter reads it).
    public var animals: Int?
    /// The frame list's rows of this video as written (frame lists only), so a split writes them back.
    public var listRows: [FrameListRow]?

    public init(path: String, frames: [String]? = nil, labels: [Int], animals: Int? = nil, listRows: [FrameListRow]? = nil) {
        self.path = path; self.frames = frames; self.labels = labels; self.animals = animals; self.listRows = listRows
    }

    /// The frames of this sample.
    public func open(limits: VideoLimits = .default, folderFPS: Double = 30) throws -> FrameSource {
        if let frames { return try FrameFolder(files: frames, name: path, fps: folderFPS, limits: limits) }
        return try VideoSource.open(path, limits: limits, folderFPS: folderFPS)
    }
}

public struct VideoDataset: Sendable, Equatable {
    public var samples: [VideoSample]
    public var classes: ClassList

    public init(samples: [VideoSample], classes: ClassList) { self.samples = samples; self.classes = classes }

    /// Multi-hot label rows, [samples x classes].
    public func labelMatrix() -> [Float] {
        var m = [Float](repeating: 0, count: samples.count * classes.count)
        for (i, s) in samples.enumerated() { for l in s.labels { m[i * classes.count + l] = 1 } }
        return m
    }
}

public enum Manifest {
    /// Most rows a manifest or frame list may have (TextLimits.maxRows).
    public static var maxRows: Int { TextLimits.default.maxRows }

    /// Any data set file: a Charades / Animal Kingdom frame list (its first non-blank line starts with
    /// `original_vido_id`; frame paths relative to `frameRoot`, default the list's folder, as PySlowFast's
    /// PATH_PREFIX) or else a CSV manifest (paths relative to its own folder; `frameRoot` does not apply).
    /// Every command that takes a data set calls this.
    public static func load(_ path: String, frameRoot: String? = nil, classes: ClassList? = nil,
                            limits: TextLimits = .default) throws -> VideoDataset {
        if try isFrameList(path) { return try FrameList.load(path, frameRoot: frameRoot, classes: classes, limits: limits) }
        return try loadCSV(path, classes: classes, limits: limits)
    }

    /// Refuses a `--frame-root` that no data set would use (all of `paths` are CSV manifests).
    public static func checkFrameRoot(_ frameRoot: String?, for paths: [String]) throws {
        guard let frameRoot else { return }
        if try !paths.contains(where: { try isFrameList($0) }) {
            throw DatasetError.invalidRequest("--frame-root \(frameRoot) is for frame lists, and \(paths.joined(separator: ", ")) "
                + (paths.count == 1 ? "is a CSV manifest" : "are CSV manifests")
                + " (paths relative to the manifest's folder; a frame list starts with the header '\(FrameList.header)')")
        }
    }

    /// Whether `path` is a frame list: its first line that is not blank (after a UTF-8 BOM) starts with
    /// `original_vido_id`, as PySlowFast's `load_image_lists` asserts. Reads at most the first 64 KiB.
    public static func isFrameList(_ path: String) throws -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            var isDir: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
            throw DatasetError.unreadable(path: path, reason: exists ? (isDir.boolValue ? "is a directory" : "permission denied") : "no such file")
        }
        defer { try? handle.close() }
        var head = [UInt8]((try? handle.read(upToCount: 65_536)) ?? Data())
        if head.starts(with: [0xEF, 0xBB, 0xBF]) { head.removeFirst(3) }
        let blanks: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0D]
        guard let first = head.firstIndex(where: { !blanks.contains($0) }) else { return false }
        return head[first...].starts(with: Array("original_vido_id".utf8))
    }

    /// Writes `dataset` in the form it came in: a frame list when its samples come from one (FrameList.write),
    /// else a CSV manifest.
    public static func write(_ dataset: VideoDataset, to path: String) throws {
        if !dataset.samples.isEmpty && dataset.samples.allSatisfy({ $0.listRows != nil }) {
            try FrameList.write(dataset, to: path)
        } else {
            try writeCSV(dataset, to: path)
        }
    }

    /// Reads a Charades / Animal Kingdom frame list (FrameList.load).
    public static func loadFrameList(_ path: String, frameRoot: String? = nil, classes: ClassList? = nil,
                                     limits: TextLimits = .default) throws -> VideoDataset {
        try FrameList.load(path, frameRoot: frameRoot, classes: classes, limits: limits)
    }

    /// Reads a CSV manifest. Labels that are names need `classes`; without it, all-numeric labels are
    /// ids (classes named by their id) and names form a class list in sorted order.
    /// Most classes that numeric labels may imply without a class list (0...max id).
    public static let maxNumericClasses = 100_000

    public static func loadCSV(_ path: String, classes: ClassList? = nil, limits: TextLimits = .default) throws -> VideoDataset {
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent()
        var rows: [(line: Int, path: String, labels: [String], animals: Int?)] = []
        for (index, record) in try TextRecords.read(path, mode: .csv, limits: limits).enumerated() {
            let lineNo = record.line
            let fields = try csvFields(record, path: path)
            if index == 0, try isHeader(fields, path: path, line: lineNo) { continue }
            guard fields.count == 2 || fields.count == 3 else {
                throw DatasetError.badLine(path: path, line: lineNo, reason: "expected 'path,labels' or 'path,labels,animals', found \(fields.count) fields")
            }
            let p = fields[0]   // unquoted fields come trimmed; spaces inside quotes are the user's
            guard !p.isEmpty else { throw DatasetError.badLine(path: path, line: lineNo, reason: "empty path") }
            let labels = fields[1].split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !labels.isEmpty else { throw DatasetError.badLine(path: path, line: lineNo, reason: "no labels for '\(p)'") }
            var animals: Int? = nil
            if fields.count == 3 {
                let a = fields[2].trimmingCharacters(in: .whitespaces)
                if !a.isEmpty {
                    guard let n = Int(a), n >= 0 else {
                        throw DatasetError.badLine(path: path, line: lineNo, reason: "animals '\(a)': expected a count >= 0")
                    }
                    animals = n
                }
            }
            let resolved = p.hasPrefix("/") ? p : folder.appendingPathComponent(p).standardized.path
            rows.append((lineNo, resolved, labels, animals))
        }
        guard !rows.isEmpty else { throw DatasetError.empty(path: path, what: "samples") }
        let allNumeric = rows.allSatisfy { $0.labels.allSatisfy { Int($0) != nil } }
        let list: ClassList
        if let classes { list = classes } else if allNumeric {
            // Ids name the classes 0...max: bounded, or `0...Int.max` would trap (and 10^12 exhaust memory).
            let maxID = rows.flatMap { $0.labels.compactMap { Int($0) } }.max() ?? 0
            if maxID >= maxNumericClasses, let row = rows.first(where: { $0.labels.contains { Int($0) == maxID } }) {
                throw DatasetError.badLine(path: path, line: row.line,
                                           reason: "class id \(maxID) makes \(maxID) + 1 classes, more than the limit \(maxNumericClasses) (pass a class list for sparse ids)")
            }
            list = try ClassList(names: (0...max(maxID, 0)).map(String.init))
        } else {
            list = try ClassList(names: Array(Set(rows.flatMap(\.labels))).sorted())
        }
        let samples: [VideoSample] = try rows.map { row in
            let ids: [Int] = try row.labels.map { label in
                if let id = list.id(of: label) { return id }
                if let id = Int(label) {
                    guard id >= 0 && id < list.count else {
                        throw DatasetError.badLine(path: path, line: row.line, reason: "class id \(id) outside 0..<\(list.count)")
                    }
                    return id
                }
                throw DatasetError.unknownClass(path: path, line: row.line, name: label, known: list.count)
            }
            return VideoSample(path: row.path, labels: Array(Set(ids)).sorted(), animals: row.animals)
        }
        return VideoDataset(samples: samples, classes: list)
    }

    /// Writes a CSV manifest with a header, labels as class names, paths relative to the manifest's
    /// folder (so the folder tree can move as a whole).
    public static func writeCSV(_ dataset: VideoDataset, to path: String) throws {
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().standardized.pathComponents
        let hasAnimals = dataset.samples.contains { $0.animals != nil }
        var text = hasAnimals ? "path,labels,animals\n" : "path,labels\n"
        for s in dataset.samples {
            guard s.frames == nil else {
                throw DatasetError.writeFailed(path: path, reason: "'\(s.path)' is a frame-list video; CSV manifests hold files or folders")
            }
            let p = relativePath(s.path, from: folder)
            var row = quoteCSV(p) + "," + s.labels.map { dataset.classes.names[$0] }.joined(separator: ";")
            if hasAnimals { row += "," + (s.animals.map(String.init) ?? "") }
            text += row + "\n"
        }
        try writeText(text, to: path)
    }

    /// `path` relative to the folder with `base` components ("../videos/a.mp4"); absolute when only "/" is shared.
    static func relativePath(_ path: String, from base: [String]) -> String {
        let target = URL(fileURLWithPath: path).standardized.pathComponents
        var common = 0
        while common < min(target.count, base.count) && target[common] == base[common] { common += 1 }
        if common <= 1 { return path }
        return (Array(repeating: "..", count: base.count - common) + target[common...]).joined(separator: "/")
    }

    /// Unquoted fields are trimmed of spaces and tabs (only those: the scan in TextRecords treats the same
    /// characters as blanks, so both agree on where quoted fields start).
    private static let csvBlanks = CharacterSet(charactersIn: " \t")

    /// The fields of one CSV record (RFC 4180: quotes, doubled quotes, line ends inside quotes), split by
    /// yaslab/CSV.swift; TextRecords has already refused what that library would accept silently.
    static func csvFields(_ record: TextRecord, path: String) throws -> [String] {
        let reader: CSVReader
        do { reader = try CSVReader(string: record.text, hasHeaderRow: false, trimFields: true, delimiter: ",", whitespaces: csvBlanks) } catch {
            throw DatasetError.badLine(path: path, line: record.line, reason: "\(error)")
        }
        guard let fields = reader.next(), fields.count == record.fieldCount, reader.next() == nil else {
            throw DatasetError.badLine(path: path, line: record.line, reason: "the CSV reader and the line scan disagree on this record's fields (a bug: please report it with the line)")
        }
        return fields
    }

    /// Whether the first record is the header `path,labels[,animals]` (any case, spaces allowed); a first
    /// record that starts like one but is not is an error rather than a video named "path".
    static func isHeader(_ fields: [String], path: String, line: Int) throws -> Bool {
        let names = fields.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        if names == ["path", "labels"] || names == ["path", "labels", "animals"] { return true }
        if names.count > 1 && (names[0].isEmpty || names[0] == "unnamed: 0") && names[1] == "path" {
            throw DatasetError.badLine(path: path, line: line, reason: "header '\(fields.joined(separator: ","))': the first column has no name, "
                                       + "so this looks like pandas' index; write it with to_csv(..., index=False), or expected 'path,labels[,animals]'")
        }
        if names.first == "path" {
            throw DatasetError.badLine(path: path, line: line, reason: "header '\(fields.joined(separator: ","))': expected 'path,labels' or 'path,labels,animals'")
        }
        return false
    }

    static func quoteCSV(_ s: String) -> String {
        s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}
