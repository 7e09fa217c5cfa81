// `sfnet predict`: the top classes of each video with their confidence, class names from
// the weights' metadata or a class list file. Each video is scored over the test views (ensembled as in eval).

import Convert
import Foundation
import Networks
import Train
import Video

public struct VideoPrediction {
    public var path: String
    /// Best first: class name and score (sigmoid or softmax probability, ensembled over views).
    public var top: [(label: String, score: Double)]
    /// Why the video could not be read, when it could not.
    public var error: String?
}

public enum Predictor {
    public static func run(weights: String, videos: [String], topK: Int, frames: Int?, samplingRate: Int, crop: Int?,
                           temporalViews: Int, spatialCrops: Int, threads: Int, workers: Int,
                           classNames: [String]? = nil) throws -> [VideoPrediction] {
        Threading.setThreads(threads)
        let w = try NativeWeights.load(weights)
        var arch = w.arch
        if let frames { arch.numFrames = frames }
        if let crop { arch.trainCrop = crop }
        let model = try makeEvalNetwork(config: arch, weights: w.tensors)
        if let given = classNames, given.count != arch.numClasses {
            throw FinetuneError("the class list has \(given.count) names but \(weights) has \(arch.numClasses) classes",
                                hint: "give one name per line, in class id order, for every class of the weights")
        }
        let names = classNames ?? (0 ..< arch.numClasses).map(w.className)
        // A throwaway data set: one sample per video, no labels.
        let classes = try ClassList(names: names)
        let dataset = VideoDataset(samples: videos.map { VideoSample(path: $0, labels: []) }, classes: classes)
        let clip = Scoring.clipConfig(arch: arch, frames: arch.numFrames, samplingRate: samplingRate, crop: arch.trainCrop,
                                      temporalViews: temporalViews, spatialCrops: spatialCrops)
        let s = try Scoring.score(model: model, dataset: dataset, config: clip, batch: max(1, min(8, temporalViews * spatialCrops)),
                                  workers: workers, onBadVideo: .skip, ensemble: .byHead(multiLabel: arch.headActivation == .sigmoid))
        var out: [VideoPrediction] = []
        for (i, path) in videos.enumerated() {
            if let k = s.samples.firstIndex(of: i) {
                let row = s.row(k)
                let top = Metrics.ranking(row).prefix(topK).map { (label: names[$0], score: Double(row[row.startIndex + $0])) }
                out.append(VideoPrediction(path: path, top: top, error: nil))
            } else {
                let why = s.skipped.first { "\($0)".contains(path) }.map { "\($0)" } ?? "could not be read"
                out.append(VideoPrediction(path: path, top: [], error: why))
            }
        }
        return out
    }
}
