// Evaluation metrics: average precision exactly as scikit-learn's
// average_precision_score (step-wise: sum over distinct score thresholds,
// highest first, of precision x recall increment; tied scores form one
// threshold), mAP as the unweighted mean over classes with at least one
// positive (DESIGN.md), top-k accuracy and the confusion matrix.

import Foundation

public enum Metrics {
    /// Average precision of one class: `sum_k (R_k - R_(k-1)) P_k` over the distinct scores
    /// in decreasing order, P and R counted over every clip scoring at least that much.
    /// nil when there is no positive (sklearn warns and the class is left out of mAP).
    public static func averagePrecision(scores: [Float], positives: [Bool]) throws -> Double? {
        guard scores.count == positives.count else {
            throw TrainError(.invalidArgument, "\(scores.count) scores but \(positives.count) labels", at: "average precision")
        }
        if let i = scores.firstIndex(where: { !$0.isFinite }) {
            throw TrainError(.invalidArgument, "score \(scores[i]) of clip \(i) is not finite", at: "average precision")
        }
        let totalPositives = positives.reduce(0) { $0 + ($1 ? 1 : 0) }
        guard totalPositives > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] > scores[$1] }
        var tp = 0, seen = 0
        var ap = 0.0, lastRecall = 0.0
        var k = 0
        while k < order.count {
            // All clips with this score enter together (one threshold).
            let s = scores[order[k]]
            while k < order.count && scores[order[k]] == s {
                if positives[order[k]] { tp += 1 }
                seen += 1
                k += 1
            }
            let recall = Double(tp) / Double(totalPositives)
            ap += (recall - lastRecall) * (Double(tp) / Double(seen))
            lastRecall = recall
        }
        return ap
    }

    /// Per-class AP and their mean over the classes that have a positive.
    public struct MeanAP: Codable, Sendable, Equatable {
        /// Unweighted mean of `perClass` over the non-nil entries; nil when no class has a positive.
        public var mAP: Double?
        /// AP per class; nil for a class without positives in the labels.
        public var perClass: [Double?]
        /// How many classes have a positive (the mean's denominator).
        public var classesWithPositives: Int
    }

    /// `scores` and `targets` are [clips, classes], row-major; a target > 0.5 is a positive.
    public static func meanAveragePrecision(scores: [Float], targets: [Float], classes: Int) throws -> MeanAP {
        let clips = try checkMatrix(scores.count, classes, what: "mAP")
        guard targets.count == scores.count else {
            throw TrainError(.invalidArgument, "\(targets.count) targets for \(clips) clips x \(classes) classes", at: "mAP")
        }
        var perClass: [Double?] = []
        for c in 0 ..< classes {
            let s = (0 ..< clips).map { scores[$0 * classes + c] }
            let p = (0 ..< clips).map { targets[$0 * classes + c] > 0.5 }
            perClass.append(try averagePrecision(scores: s, positives: p))
        }
        let present = perClass.compactMap { $0 }
        return MeanAP(mAP: present.isEmpty ? nil : present.reduce(0, +) / Double(present.count), perClass: perClass,
                      classesWithPositives: present.count)
    }

    /// mAP with one integer label per clip (one-hot targets).
    public static func meanAveragePrecision(scores: [Float], labels: [Int], classes: Int) throws -> MeanAP {
        try meanAveragePrecision(scores: scores, targets: try oneHot(labels, classes: classes, clips: scores.count / max(classes, 1)), classes: classes)
    }

    /// The classes of one clip ranked by score, highest first; ties keep the lower class index first.
    public static func ranking(_ row: ArraySlice<Float>) -> [Int] {
        let base = row.startIndex
        return row.indices.sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }.map { $0 - base }
    }

    /// Fraction of clips with one of their positive classes among the `k` highest scores
    /// (ties broken toward the lower class index). Clips without a label count as misses.
    public static func topKAccuracy(scores: [Float], labels: [[Int]], classes: Int, k: Int) throws -> Double {
        let clips = try checkMatrix(scores.count, classes, what: "top-\(k) accuracy")
        guard labels.count == clips else { throw TrainError(.invalidArgument, "\(labels.count) label lists for \(clips) clips", at: "top-\(k) accuracy") }
        guard k >= 1 else { throw TrainError(.invalidArgument, "k must be at least 1", at: "top-\(k) accuracy") }
        var hits = 0
        for i in 0 ..< clips {
            let top = ranking(scores[i * classes ..< (i + 1) * classes]).prefix(k)
            if labels[i].contains(where: { top.contains($0) }) { hits += 1 }
        }
        return Double(hits) / Double(clips)
    }

    public static func topKAccuracy(scores: [Float], labels: [Int], classes: Int, k: Int) throws -> Double {
        try topKAccuracy(scores: scores, labels: labels.map { [$0] }, classes: classes, k: k)
    }

    /// counts[true][predicted], the prediction being the highest-scoring class (lowest index on ties).
    public static func confusionMatrix(scores: [Float], labels: [Int], classes: Int) throws -> [[Int]] {
        let clips = try checkMatrix(scores.count, classes, what: "confusion matrix")
        guard labels.count == clips else { throw TrainError(.invalidArgument, "\(labels.count) labels for \(clips) clips", at: "confusion matrix") }
        var m = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for i in 0 ..< clips {
            let y = labels[i]
            guard y >= 0 && y < classes else { throw TrainError(.invalidArgument, "label \(y) of clip \(i) is not a class index in 0..<\(classes)", at: "confusion matrix") }
            m[y][ranking(scores[i * classes ..< (i + 1) * classes])[0]] += 1
        }
        return m
    }

    /// Everything `sfnet eval` reports about a set of clip scores.
    public struct Evaluation: Codable, Sendable, Equatable {
        public var clips: Int
        public var classes: Int
        public var meanAP: MeanAP
        public var top1: Double
        public var top5: Double
        /// Only when every clip has exactly one label.
        public var confusion: [[Int]]?
    }

    /// Scores [clips, classes] (sigmoid probabilities or softmax, ensembled per clip) and each clip's label ids.
    public static func evaluate(scores: [Float], labels: [[Int]], classes: Int) throws -> Evaluation {
        let clips = try checkMatrix(scores.count, classes, what: "evaluation")
        let targets = try Loss.multiHotTargets(labels, classes: classes)
        guard targets.count == scores.count else { throw TrainError(.invalidArgument, "\(labels.count) label lists for \(clips) clips", at: "evaluation") }
        let single = labels.allSatisfy { $0.count == 1 }
        return Evaluation(
            clips: clips, classes: classes,
            meanAP: try meanAveragePrecision(scores: scores, targets: targets, classes: classes),
            top1: try topKAccuracy(scores: scores, labels: labels, classes: classes, k: 1),
            top5: try topKAccuracy(scores: scores, labels: labels, classes: classes, k: min(5, classes)),
            confusion: single ? try confusionMatrix(scores: scores, labels: labels.map { $0[0] }, classes: classes) : nil)
    }

    static func oneHot(_ labels: [Int], classes: Int, clips: Int) throws -> [Float] {
        guard labels.count == clips else { throw TrainError(.invalidArgument, "\(labels.count) labels for \(clips) clips", at: "mAP") }
        return try Loss.multiHotTargets(labels.map { [$0] }, classes: classes)
    }

    static func checkMatrix(_ count: Int, _ classes: Int, what: String) throws -> Int {
        guard classes > 0 else { throw TrainError(.invalidArgument, "classes must be positive, not \(classes)", at: what) }
        guard count % classes == 0 else {
            throw TrainError(.invalidArgument, "\(count) scores is not a whole number of rows of \(classes) classes", at: what)
        }
        return count / classes
    }
}
