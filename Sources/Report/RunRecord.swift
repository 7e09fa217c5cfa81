// What a fine-tuning run leaves behind for people: the per-iteration and per-epoch
// figures, the final evaluation, and example predictions, written as metrics.json
// (everything), metrics.csv (one row per epoch) and report.html (ReportHTML.swift).

import Foundation

/// One optimisation step: the loss of the batch and the learning rate it used.
public struct IterationRecord: Codable, Equatable, Sendable {
    public var iteration: Int
    /// Fractional epoch at the end of the step (iteration / iterations per epoch).
    public var epoch: Double
    public var loss: Double
    public var lr: Double

    public init(iteration: Int, epoch: Double, loss: Double, lr: Double) {
        (self.iteration, self.epoch, self.loss, self.lr) = (iteration, epoch, loss, lr)
    }
}

/// One epoch: mean train loss, validation figures, throughput.
public struct EpochRecord: Codable, Equatable, Sendable {
    public var epoch: Int
    public var trainLoss: Double
    /// Validation mAP (nil when the run has no validation set or it was skipped).
    public var valMAP: Double?
    public var valTop1: Double?
    public var lr: Double
    public var seconds: Double
    public var clipsPerSecond: Double
    /// Seconds of the precise-BN pass before validation (nil when it did not run).
    public var preciseBNSeconds: Double?
    /// Where the epoch's time went (nil in records written before these were kept).
    public var phases: PhaseSeconds?

    public init(epoch: Int, trainLoss: Double, valMAP: Double?, valTop1: Double?, lr: Double, seconds: Double, clipsPerSecond: Double,
                preciseBNSeconds: Double? = nil, phases: PhaseSeconds? = nil) {
        (self.epoch, self.trainLoss, self.valMAP, self.valTop1, self.lr, self.seconds, self.clipsPerSecond, self.preciseBNSeconds)
            = (epoch, trainLoss, valMAP, valTop1, lr, seconds, clipsPerSecond, preciseBNSeconds)
        self.phases = phases
    }
}

/// Seconds spent in each part of a training epoch (or summed over a run).
public struct PhaseSeconds: Codable, Equatable, Sendable {
    /// The training step waiting for the clip loader (decoding and augmentation not hidden behind the step).
    public var data: Double
    /// Forward, backward and the optimizer (everything of the training loop but the wait for data).
    public var step: Double
    /// Validation, precise BN included.
    public var validation: Double
    /// best.safetensors, the checkpoint and the reports: the time the loop spent on them (taking the
    /// snapshot, waiting for the previous epoch's files); the writes themselves run in the background.
    public var checkpoint: Double

    public init(data: Double = 0, step: Double = 0, validation: Double = 0, checkpoint: Double = 0) {
        (self.data, self.step, self.validation, self.checkpoint) = (data, step, validation, checkpoint)
    }

    public var total: Double { data + step + validation + checkpoint }

    public static func + (a: PhaseSeconds, b: PhaseSeconds) -> PhaseSeconds {
        PhaseSeconds(data: a.data + b.data, step: a.step + b.step, validation: a.validation + b.validation, checkpoint: a.checkpoint + b.checkpoint)
    }

    /// "data 0.2 s, step 4.1 s, validation 0.9 s, checkpoint 0.3 s"
    public var summary: String {
        String(format: "data %.1f s, step %.1f s, validation %.1f s, checkpoint %.1f s", data, step, validation, checkpoint)
    }
}

/// The decoded-frame cache of a run: its budget and what it held and served.
public struct FrameCacheRecord: Codable, Equatable, Sendable {
    public var budgetMB: Int
    public var videos: Int
    public var frames: Int
    public var megabytes: Double
    /// Clips made from cached frames / clips that decoded.
    public var hits: Int
    public var misses: Int
    /// Videos or frame images left to decoding because they did not fit.
    public var overBudget: Int

    public init(budgetMB: Int, videos: Int, frames: Int, megabytes: Double, hits: Int, misses: Int, overBudget: Int) {
        (self.budgetMB, self.videos, self.frames, self.megabytes, self.hits, self.misses, self.overBudget)
            = (budgetMB, videos, frames, megabytes, hits, misses, overBudget)
    }
}

/// A test clip with its ground truth and the model's best guesses (the study's Table 2).
public struct ExampleClip: Codable, Equatable, Sendable {
    public var path: String
    public var truth: [String]
    /// Top predictions, best first: class name and score (probability).
    public var predictions: [Prediction]

    public struct Prediction: Codable, Equatable, Sendable {
        public var label: String
        public var score: Double
        public init(label: String, score: Double) { (self.label, self.score) = (label, score) }
    }

    public var topIsCorrect: Bool { predictions.first.map { truth.contains($0.label) } ?? false }

    public init(path: String, truth: [String], predictions: [Prediction]) {
        (self.path, self.truth, self.predictions) = (path, truth, predictions)
    }
}

/// The evaluation of a model on a labelled set.
public struct EvaluationRecord: Codable, Equatable, Sendable {
    public var split: String
    public var clips: Int
    /// nil when no class has a positive clip.
    public var mAP: Double?
    /// Per class, in class order; nil for a class without positives (left out of the mAP).
    public var perClassAP: [Double?]
    public var top1: Double
    public var top5: Double
    /// confusion[truth][predicted] over single-label clips (argmax of the scores).
    public var confusion: [[Int]]

    public init(split: String, clips: Int, mAP: Double?, perClassAP: [Double?], top1: Double, top5: Double, confusion: [[Int]]) {
        (self.split, self.clips, self.mAP, self.perClassAP, self.top1, self.top5, self.confusion)
            = (split, clips, mAP, perClassAP, top1, top5, confusion)
    }
}

/// Everything a run reports.
public struct RunRecord: Codable, Equatable, Sendable {
    public var name: String
    public var classes: [String]
    /// Settings worth showing (recipe, start weights, epochs, batch, ...), in order.
    public var settings: [Setting]
    public var iterations: [IterationRecord] = []
    public var epochs: [EpochRecord] = []
    public var evaluation: EvaluationRecord?
    public var examples: [ExampleClip] = []
    /// Decisions the run made on the user's behalf (head replaced, verification skipped, ...).
    public var notes: [String] = []
    /// Where the run's time went, summed over the epochs that recorded it (the wait for the last
    /// epoch's files included in `checkpoint`).
    public var phaseTotals: PhaseSeconds?
    /// Seconds the checkpoint, best-weights and report files took to write in the background,
    /// overlapped with training (what `checkpoint` would be if they were written in the loop).
    public var checkpointWriteSeconds: Double?
    /// The decoded-frame cache (nil when the run had none).
    public var frameCache: FrameCacheRecord?

    public struct Setting: Codable, Equatable, Sendable {
        public var key: String
        public var value: String
        public init(_ key: String, _ value: String) { (self.key, self.value) = (key, value) }
    }

    public init(name: String, classes: [String], settings: [Setting] = []) {
        (self.name, self.classes, self.settings) = (name, classes, settings)
    }

    /// The best validation mAP and its epoch.
    public var best: (epoch: Int, mAP: Double)? {
        epochs.compactMap { e in e.valMAP.map { (e.epoch, $0) } }.max { $0.1 < $1.1 }
    }

    public func json() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try e.encode(self)
    }

    public static func decode(_ data: Data) throws -> RunRecord {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try d.decode(RunRecord.self, from: data)
    }

    /// One row per epoch; empty cells where a figure is absent.
    public func csv() -> String {
        func f(_ x: Double?) -> String { x.map { String(format: "%.6g", $0) } ?? "" }
        var lines = ["epoch,train_loss,val_map,val_top1,lr,seconds,clips_per_second,data_seconds,step_seconds,validation_seconds,checkpoint_seconds"]
        for e in epochs {
            let p = e.phases
            lines.append("\(e.epoch),\(f(e.trainLoss)),\(f(e.valMAP)),\(f(e.valTop1)),\(f(e.lr)),\(f(e.seconds)),\(f(e.clipsPerSecond)),"
                         + "\(f(p?.data)),\(f(p?.step)),\(f(p?.validation)),\(f(p?.checkpoint))")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
