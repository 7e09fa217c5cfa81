// `sfnet eval` and the validation of `finetune`: ensembled video scores through Train's
// metrics (mAP as sklearn's average_precision_score, per-class AP, top-1/5, confusion).

import Convert
import Foundation
import Report
import Networks
import Train
import Video

public struct Evaluation {
    public var scores: VideoScores
    public var labels: [[Int]]
    public var evaluation: Metrics.Evaluation

    public static func run(model: any ClipNetwork, dataset: VideoDataset, clip: ClipConfig, batch: Int, workers: Int,
                           onBadVideo: BadVideoPolicy, multiLabel: Bool, ensemble: EnsembleMethod? = nil, frameCache: FrameCache? = nil,
                           progress: ((Int, Int) -> Void)? = nil) throws -> Evaluation {
        guard model.config.numClasses == dataset.classes.count else {
            throw FinetuneError("the weights have \(model.config.numClasses) classes, the data set \(dataset.classes.count)",
                                hint: "evaluate with the class list the model was fine-tuned on")
        }
        let s = try Scoring.score(model: model, dataset: dataset, config: clip, batch: batch, workers: workers, onBadVideo: onBadVideo,
                                  ensemble: ensemble ?? .byHead(multiLabel: multiLabel), frameCache: frameCache, progress: progress)
        guard !s.samples.isEmpty else {
            // Each unreadable view is recorded; name each distinct problem once (a few of them).
            var seen = Set<String>(), reasons: [String] = []
            for e in s.skipped where seen.insert(e.description).inserted { reasons.append(e.description) }
            let shown = reasons.prefix(5).map { "\n  " + $0 }.joined() + (reasons.count > 5 ? "\n  ... and \(reasons.count - 5) more" : "")
            throw FinetuneError("no clip of the data set could be read (\(dataset.samples.count) clips skipped):" + shown)
        }
        let labels = s.samples.map { dataset.samples[$0].labels }
        let ev = try Metrics.evaluate(scores: s.scores, labels: labels, classes: s.classes)
        return Evaluation(scores: s, labels: labels, evaluation: ev)
    }

    public func record(split: String) -> EvaluationRecord {
        EvaluationRecord(split: split, clips: evaluation.clips, mAP: evaluation.meanAP.mAP, perClassAP: evaluation.meanAP.perClass,
                         top1: evaluation.top1, top5: evaluation.top5, confusion: evaluation.confusion ?? [])
    }

    /// Up to `count` clips, spread over the set, with their top-3 predictions.
    public func examples(dataset: VideoDataset, classes: [String], count: Int) -> [ExampleClip] {
        guard count > 0, !scores.samples.isEmpty else { return [] }
        let stride = max(1, scores.samples.count / count)
        // Paths shown relative to the folder all the data set's videos share.
        let dirs = dataset.samples.map { URL(fileURLWithPath: $0.path).deletingLastPathComponent().pathComponents }
        var common = dirs.first ?? []
        for d in dirs.dropFirst() { common = Array(zip(common, d).prefix { $0 == $1 }.map(\.0)) }
        func shown(_ path: String) -> String {
            let parts = URL(fileURLWithPath: path).pathComponents
            return common.count > 1 && parts.starts(with: common) ? parts.dropFirst(common.count).joined(separator: "/") : path
        }
        return Swift.stride(from: 0, to: scores.samples.count, by: stride).prefix(count).map { k in
            let row = scores.row(k)
            let top = Metrics.ranking(row).prefix(3).map { ExampleClip.Prediction(label: classes[$0], score: Double(row[row.startIndex + $0])) }
            return ExampleClip(path: shown(dataset.samples[scores.samples[k]].path), truth: labels[k].map { classes[$0] }, predictions: Array(top))
        }
    }
}
