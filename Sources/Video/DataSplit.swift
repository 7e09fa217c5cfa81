// Subsetting a data set as the study did: choose classes, keep clips with a single label (and a
// single animal, when the annotations record it), sample N train / M val / K test clips per class
// with a seed, write the manifests and the class list. `sfnet data split` is a thin wrapper.

import Convert
import Foundation

public struct SplitRequest: Sendable, Equatable {
    /// Classes to keep, by name, in the order they get ids (nil: all of the data set's classes).
    public var classes: [String]?
    public var trainPerClass: Int
    public var valPerClass: Int
    public var testPerClass: Int
    public var seed: UInt64
    /// Keep only clips with exactly one label (over all of the data set's classes).
    public var singleLabel = true
    /// Keep only clips annotated with exactly one animal (clips without the annotation are kept).
    public var singleAnimal = true

    public init(classes: [String]? = nil, train: Int, val: Int, test: Int, seed: UInt64 = 0,
                singleLabel: Bool = true, singleAnimal: Bool = true) {
        self.classes = classes; trainPerClass = train; valPerClass = val; testPerClass = test
        self.seed = seed; self.singleLabel = singleLabel; self.singleAnimal = singleAnimal
    }
}

public struct SplitResult: Sendable, Equatable {
    public var train: VideoDataset
    public var val: VideoDataset
    public var test: VideoDataset
    /// Classes with fewer clips than asked for: "class: had H, wanted W".
    public var shortfalls: [String]
}

public enum DataSplit {
    public static func split(_ dataset: VideoDataset, _ request: SplitRequest) throws -> SplitResult {
        guard request.trainPerClass >= 0, request.valPerClass >= 0, request.testPerClass >= 0 else {
            throw DatasetError.invalidRequest("per-class counts must be >= 0")
        }
        let chosen = request.classes ?? dataset.classes.names
        guard !chosen.isEmpty else { throw DatasetError.invalidRequest("no classes chosen") }
        var newID: [Int: Int] = [:]
        for (i, name) in chosen.enumerated() {
            guard let old = dataset.classes.id(of: name) else {
                throw DatasetError.invalidRequest("class '\(name)' is not in the data set's \(dataset.classes.count) classes")
            }
            if newID[old] != nil { throw DatasetError.invalidRequest("class '\(name)' chosen twice") }
            newID[old] = i
        }
        let classes = try ClassList(names: chosen)
        // Pool per class: each clip goes to its first label among the chosen classes.
        var pools = [[VideoSample]](repeating: [], count: chosen.count)
        for s in dataset.samples {
            if request.singleLabel && s.labels.count != 1 { continue }
            if request.singleAnimal, let a = s.animals, a != 1 { continue }
            let kept = s.labels.compactMap { newID[$0] }
            guard let owner = kept.min() else { continue }
            var copy = s
            copy.labels = kept.sorted()
            pools[owner].append(copy)
        }
        var train: [VideoSample] = [], val: [VideoSample] = [], test: [VideoSample] = []
        var shortfalls: [String] = []
        let want = request.trainPerClass + request.valPerClass + request.testPerClass
        for (c, pool) in pools.enumerated() {
            // Sort first so the input order does not matter, then shuffle with this class's own stream.
            var items = pool.sorted { $0.path < $1.path }
            var rng = ClipRandom.generator(seed: request.seed, epoch: -1, sample: c)
            for i in stride(from: items.count - 1, to: 0, by: -1) { items.swapAt(i, rng.integer(0, i + 1)) }
            if items.count < want { shortfalls.append("\(chosen[c]): had \(items.count), wanted \(want)") }
            let nTrain = min(request.trainPerClass, items.count)
            let nVal = min(request.valPerClass, items.count - nTrain)
            let nTest = min(request.testPerClass, items.count - nTrain - nVal)
            train += items[0..<nTrain]
            val += items[nTrain..<(nTrain + nVal)]
            test += items[(nTrain + nVal)..<(nTrain + nVal + nTest)]
        }
        if dataset.samples.contains(where: { $0.listRows != nil }) {
            // A frame list keeps its videos in the input's order (PySlowFast reads lists top to bottom).
            let position = Dictionary(dataset.samples.enumerated().map { ($1.path, $0) }, uniquingKeysWith: { a, _ in a })
            train.sort { position[$0.path]! < position[$1.path]! }
            val.sort { position[$0.path]! < position[$1.path]! }
            test.sort { position[$0.path]! < position[$1.path]! }
        }
        return SplitResult(train: VideoDataset(samples: train, classes: classes), val: VideoDataset(samples: val, classes: classes),
                           test: VideoDataset(samples: test, classes: classes), shortfalls: shortfalls)
    }

    /// Writes train.csv, val.csv, test.csv and classes.txt into `folder`; returns their paths. A split of a
    /// frame list is written as frame lists (FrameList.write: the chosen videos' rows in their original
    /// order, paths as the input gave them, relative to the same frame root); else CSV manifests.
    @discardableResult
    public static func write(_ result: SplitResult, to folder: String) throws -> (train: String, val: String, test: String, classes: String) {
        let frameList = [result.train, result.val, result.test].contains { $0.samples.contains { $0.listRows != nil } }
        func put(_ d: VideoDataset, _ path: String) throws {
            if frameList { try FrameList.write(d, to: path) } else { try Manifest.writeCSV(d, to: path) }
        }
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
            throw DatasetError.writeFailed(path: folder, reason: error.localizedDescription)
        }
        let f = URL(fileURLWithPath: folder)
        let paths = (f.appendingPathComponent("train.csv").path, f.appendingPathComponent("val.csv").path,
                     f.appendingPathComponent("test.csv").path, f.appendingPathComponent("classes.txt").path)
        try put(result.train, paths.0)
        try put(result.val, paths.1)
        try put(result.test, paths.2)
        try result.train.classes.write(to: paths.3)
        return paths
    }
}
