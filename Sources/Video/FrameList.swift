// The Charades / Animal Kingdom frame list (SLOWFAST.md; PySlowFast slowfast/datasets/utils.py
// load_image_lists): a header `original_vido_id video_id frame_id path labels`, then one row per frame,
// space-separated, labels comma-separated class ids ("" for none). A video's frames are taken in the
// order the list gives them, as PySlowFast does (AK lists them in frame_id order); its labels are the
// union over its rows. Written back row for row, so a split of AK's list is again an AK list.

import Foundation

/// One row of a frame list, as written (the path relative to the frame root, not resolved).
public struct FrameListRow: Sendable, Equatable {
    public var videoID: String
    public var frameID: Int
    public var path: String
}

public enum FrameList {
    public static let header = "original_vido_id video_id frame_id path labels"

    /// Reads a frame list; frame paths are relative to `frameRoot` (default: the list's folder), absolute
    /// paths in the list are kept as the user wrote them.
    public static func load(_ path: String, frameRoot: String? = nil, classes: ClassList? = nil,
                            limits: TextLimits = .default) throws -> VideoDataset {
        let root = URL(fileURLWithPath: frameRoot ?? URL(fileURLWithPath: path).deletingLastPathComponent().path)
        var order: [String] = []
        var videos: [String: (frames: [String], rows: [FrameListRow], labels: Set<Int>, line: Int)] = [:]
        var sawHeader = false
        for record in try TextRecords.read(path, mode: .lines, limits: limits) {
            let lineNo = record.line
            let fields = record.text.split(maxSplits: limits.maxFields, whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if fields.count > limits.maxFields {
                throw DatasetError.badLine(path: path, line: lineNo, reason: "more than \(limits.maxFields) fields (field limit)")
            }
            if !sawHeader && order.isEmpty && fields[0].hasPrefix("original_vid") { sawHeader = true; continue }
            guard fields.count == 5 || fields.count == 4 else {
                throw DatasetError.badLine(path: path, line: lineNo, reason: "expected '\(header)', found \(fields.count) fields")
            }
            guard let frameID = Int(fields[2]) else {
                throw DatasetError.badLine(path: path, line: lineNo, reason: "frame_id '\(fields[2])' is not an integer")
            }
            var labels = Set<Int>()
            if fields.count == 5 && fields[4] != "\"\"" {
                for l in fields[4].replacingOccurrences(of: "\"", with: "").split(separator: ",") {
                    guard let id = Int(l), id >= 0 else {
                        throw DatasetError.badLine(path: path, line: lineNo, reason: "label '\(l)' is not a class id")
                    }
                    if let classes, id >= classes.count {
                        throw DatasetError.badLine(path: path, line: lineNo, reason: "class id \(id) outside 0..<\(classes.count) (the class list's size)")
                    }
                    labels.insert(id)
                }
            }
            let key = fields[0]
            if videos[key] == nil { order.append(key); videos[key] = ([], [], [], lineNo) }
            let framePath = fields[3].hasPrefix("/") ? fields[3] : root.appendingPathComponent(fields[3]).path
            videos[key]!.frames.append(framePath)
            videos[key]!.rows.append(FrameListRow(videoID: fields[1], frameID: frameID, path: fields[3]))
            videos[key]!.labels.formUnion(labels)
        }
        guard !order.isEmpty else { throw DatasetError.empty(path: path, what: "frames") }
        let maxID = videos.values.flatMap(\.labels).max() ?? 0
        // As Manifest.loadCSV: ids name the classes 0...max, bounded (`0...Int.max` trapped; fuzz finding,
        // Fuzz/regressions/frame-list/crash-label-int-max).
        if classes == nil, maxID >= Manifest.maxNumericClasses, let v = order.first(where: { videos[$0]!.labels.contains(maxID) }) {
            throw DatasetError.badLine(path: path, line: videos[v]!.line,
                                       reason: "class id \(maxID) makes \(maxID) + 1 classes, more than the limit \(Manifest.maxNumericClasses) (pass a class list for sparse ids)")
        }
        let list = try classes ?? ClassList(names: (0...maxID).map(String.init))
        let samples = order.map { key -> VideoSample in
            let v = videos[key]!
            return VideoSample(path: key, frames: v.frames, labels: v.labels.sorted(), listRows: v.rows)
        }
        return VideoDataset(samples: samples, classes: list)
    }

    /// Writes the rows of `dataset`'s videos in their original order with the header; paths exactly as the
    /// input list gave them (relative to the same frame root: read the output back with the same
    /// `--frame-root`, or PySlowFast's same PATH_PREFIX). Each row's labels are its video's labels as ids in
    /// `dataset.classes` (a split renumbers the chosen classes).
    public static func write(_ dataset: VideoDataset, to path: String) throws {
        var text = header + "\n"
        for s in dataset.samples {
            guard let rows = s.listRows else {
                throw DatasetError.writeFailed(path: path, reason: "'\(s.path)' is a video file or folder, not a frame-list video; write a CSV manifest")
            }
            let labels = s.labels.isEmpty ? "\"\"" : s.labels.map(String.init).joined(separator: ",")
            for r in rows { text += "\(s.path) \(r.videoID) \(r.frameID) \(r.path) \(labels)\n" }
        }
        try writeText(text, to: path)
    }
}
