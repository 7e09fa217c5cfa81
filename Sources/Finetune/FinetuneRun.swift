// `sfnet finetune`: the training loop. Start weights (verified, or fresh with --init
// scratch), the head replaced when the data set's classes differ, SGD with the study's
// schedule per iteration, validation mAP per epoch, an atomic checkpoint per epoch
// (weights + optimizer + schedule + run state) and best.safetensors by val mAP,
// metrics.json / metrics.csv / report.html kept current, and --resume from the last
// complete checkpoint of a killed run.

import Families
import Convert
import Foundation
import Formats
import Report
import Networks
import Train
import Verify
import Video

public enum FinetuneEvent {
    case note(String)
    case step(epoch: Int, step: Int, steps: Int, loss: Double, lr: Double, clipsPerSecond: Double, etaSeconds: Double)
    case validating(done: Int, total: Int)
    case epoch(Report.EpochRecord, dataWaitFraction: Double, best: Bool)
    /// The end of this invocation's epochs: where the run's time went, over all its epochs.
    case totals(PhaseSeconds, epochs: Int, backgroundWrites: Double)
}

public struct FinetuneSummary {
    public var runDirectory: String
    public var record: RunRecord
    public var best: String
    /// The epoch best.safetensors holds and its validation mAP (nil without validation).
    public var bestEpoch: Int?
    public var bestMAP: Double?
    public var lastCheckpoint: String
    public var resumedFrom: String?
}

public final class FinetuneRun {
    public let options: FinetuneOptions
    let onEvent: (FinetuneEvent) -> Void

    public init(_ options: FinetuneOptions, onEvent: @escaping (FinetuneEvent) -> Void = { _ in }) {
        var options = options
        if options.headOnly { options.freezeBNStats = true }
        self.options = options
        self.onEvent = onEvent
    }

    static let keepCheckpoints = 2

    /// The class list: --classes, else classes.txt beside the train manifest, else the manifest's own labels.
    static func classList(_ o: FinetuneOptions) throws -> ClassList {
        if let c = o.classes { return try ClassList.load(c, column: o.classColumn) }
        let beside = URL(fileURLWithPath: o.train).deletingLastPathComponent().appendingPathComponent("classes.txt").path
        if FileManager.default.fileExists(atPath: beside) { return try ClassList.load(beside) }
        return try Manifest.load(o.train, frameRoot: o.frameRoot).classes
    }

    /// A preset name, or a JSON file in the `sfnet.arch` format.
    static func architecture(_ spec: String) throws -> ArchConfig {
        if let a = ArchConfig.preset(named: spec) { return a }
        if spec.hasSuffix(".json") {
            guard let data = FileManager.default.contents(atPath: spec) else { throw FinetuneError("cannot read the architecture file \(spec)") }
            return try ArchConfig.fromJSON(String(decoding: data, as: UTF8.self))
        }
        throw FinetuneError("unknown --arch \(spec)", hint: "a preset (\(ArchConfig.presetNames.joined(separator: ", "))) or a .json file in the sfnet.arch format")
    }

    /// The crops a family can take. SlowFast, Slow-only and ResNet fix their head's pool kernel at crop / 32
    /// (PySlowFast's floor), so their training crop is a multiple of 32; X3D's kernel is ceil(crop / 32), so any
    /// crop from 32 up works (PySlowFast's X3D-L trains at 312). A test crop may differ from the training crop:
    /// the head then averages its grid, as PySlowFast's does (X3D-S tests at 182).
    static func checkCrops(_ o: FinetuneOptions, arch: ArchConfig, start: String) throws {
        if arch.model != .x3d && !arch.model.isTransformer && o.crop % 32 != 0 {
            throw FinetuneError("--crop \(o.crop) is not a multiple of 32: \(start) is a \(arch.model.rawValue) network, whose head pools the "
                                + "training crop / 32", hint: "pick a crop such as \(max(32, o.crop / 32 * 32)) or \(o.crop / 32 * 32 + 32)")
        }
    }

    public func run() throws -> FinetuneSummary {
        let o = options
        let problems = o.problems()
        guard problems.isEmpty else { throw FinetuneError(problems.joined(separator: "; ")) }
        Threading.setThreads(o.threads)
        let fm = FileManager.default
        try fm.createDirectory(atPath: o.out, withIntermediateDirectories: true)
        let scan = TrainCheckpoint.scan(in: o.out)
        let existing = scan.latest
        if existing == nil, let newest = scan.damaged.first {
            // Checkpoints that all fail to read: never start over on top of them silently.
            throw FinetuneError("\(o.out) holds \(scan.damaged.count) checkpoint file(s) and none reads back; the newest, \(newest.name): \(newest.reason)",
                                hint: "move the damaged checkpoint files out of the folder to start the run again, or choose another --out")
        }
        if existing != nil && !o.resume {
            throw FinetuneError("\(o.out) already holds a run (\(URL(fileURLWithPath: existing!.path).lastPathComponent))",
                                hint: "add --resume to continue it, or choose another --out")
        }

        // Data.
        let classes = try Self.classList(o)
        try Manifest.checkFrameRoot(o.frameRoot, for: [o.train] + [o.val, o.test].compactMap { $0 })
        let train = try Manifest.load(o.train, frameRoot: o.frameRoot, classes: classes)
        let val = try o.val.map { try Manifest.load($0, frameRoot: o.frameRoot, classes: classes) }
        let test = try o.test.map { try Manifest.load($0, frameRoot: o.frameRoot, classes: classes) }
        guard !train.samples.isEmpty else { throw FinetuneError("\(o.train) lists no clips") }

        // Start weights and architecture.
        var notes: [String] = []
        if let line = o.lrScaling { notes.append(line) }
        if o.resume && existing == nil { notes.append("--resume: no checkpoint in \(o.out) yet, starting the run") }
        var arch: ArchConfig
        var tensors: TensorMap
        var startDescription: String
        if let resumed = existing?.loaded {
            guard let a = resumed.metadata.first(where: { $0.key == NativeMetadata.archKey })?.value else {
                throw FinetuneError("\(existing!.path) has no sfnet.arch; it was not written by sfnet finetune")
            }
            arch = try ArchConfig.fromJSON(a)
            tensors = resumed.weights
            startDescription = "resumed from \(URL(fileURLWithPath: existing!.path).lastPathComponent)"
            for d in scan.damaged {
                notes.append("skipped \(d.name), which does not read back (\(d.reason)); the epochs after \(resumed.state.epoch) run again")
            }
        } else if o.initKind == .scratch {
            arch = try o.architecture ?? Self.architecture(o.arch)
            arch.numClasses = classes.count
            try arch.validate()   // a config's architecture is data: bounded before any size is computed from it
            tensors = freshWeights(for: arch, seed: o.seed)
            startDescription = "scratch (\(o.architecture == nil ? o.arch : "the config's architecture"), PySlowFast init, seed \(o.seed))"
            notes.append("started from scratch: \(arch.summary) with PySlowFast's init (seed \(o.seed))")
        } else {
            let w = try NativeWeights.load(o.weights!)
            if o.skipVerify {
                notes.append("verification skipped (--skip-verify): \(o.weights!) was not required to pass sfnet verify")
            } else {
                let record = try NativeWeights.requireVerified(o.weights!)
                notes.append("start weights verified against \(record["reference"]?.stringValue ?? "a reference") (\(record["tolerance"].map { "relative L2 <= \($0.serialized)" } ?? "tolerance not recorded"))")
            }
            arch = w.arch
            tensors = w.tensors
            if let wanted = o.architecture {
                let diff = Self.structuralDifferences(wanted, arch)
                guard diff.isEmpty else {
                    throw FinetuneError("\(o.configFile ?? "the config") describes another network than \(o.weights!): " + diff.joined(separator: "; "),
                                        hint: "start from weights converted for that architecture, or --init scratch")
                }
            }
            startDescription = w.path
            if arch.numClasses != classes.count || (w.classes != nil && w.classes! != classes.names) {
                if arch.model.isTransformer {
                    arch.numClasses = classes.count
                    replaceClassifier(&tensors, arch: arch, seed: o.seed)
                    notes.append("classifier replaced: \(w.arch.numClasses) -> \(classes.count) classes (fresh N(0, 0.02) truncated, bias 0)")
                } else {
                    replaceHead(&tensors, inputChannels: arch.graph().head.projectionInputs, classes: classes.count, seed: o.seed)
                    notes.append("head replaced: \(arch.numClasses) -> \(classes.count) classes (fresh N(0, 0.01), bias 0)")
                    arch.numClasses = classes.count
                }
            }
        }
        if let wanted = o.architecture?.numClasses, wanted != classes.count {
            throw FinetuneError("MODEL.NUM_CLASSES is \(wanted) in \(o.configFile ?? "the config") but the data set has \(classes.count) classes",
                                hint: "set MODEL.NUM_CLASSES to the class list's length, or pass the class list the config was written for (--classes)")
        }
        // Poisoned start weights (NaN/Inf) would poison every step and checkpoint: refuse them by name.
        let poisoned = tensors.nonFiniteNames
        if !poisoned.isEmpty {
            throw FinetuneError("the start weights (\(startDescription)) hold NaN or infinite values in \(poisoned.count) tensor(s): " +
                                poisoned.prefix(5).joined(separator: ", ") + (poisoned.count > 5 ? ", ..." : ""),
                                hint: "sfnet verify names them too; convert the source again or start from other weights")
        }
        if arch.model == .timesformer, o.frames != arch.numFrames || o.crop != arch.trainCrop {
            throw FinetuneError("\(startDescription) is a TimeSformer for \(arch.numFrames) frames of \(arch.trainCrop)² (its learned position and time "
                                + "tables); --frames \(o.frames) --crop \(o.crop) would need them interpolated, which sfnet does not do yet",
                                hint: "leave --frames and --crop at the network's (the default for a transformer)")
        }
        try Self.checkCrops(o, arch: arch, start: startDescription)
        arch.numFrames = o.frames
        arch.trainCrop = o.crop
        arch.dropout = o.dropout
        arch.headActivation = o.loss == .bce ? .sigmoid : .softmax
        arch.preset = nil
        arch = arch.withPresetName()

        // --head-only: every parameter but the projection's (a transformer's classifier), by name.
        let projection = arch.model.isTransformer ? TransformerLayout(arch: arch).classifier : arch.graph().head.projection
        let frozen = o.freeze + (o.headOnly ? arch.parameterSpecs.filter { $0.role.isLearnable && !$0.name.hasPrefix(projection + ".") }.map(\.name) : [])
        let model = try makeTrainableNetwork(config: arch, weights: tensors,
                                             options: TrainOptions(frozen: frozen, freezeBatchNormStatistics: o.freezeBNStats,
                                                                   dropout: o.dropout, seed: o.seed),
                                             dropPathRate: o.dropPath)
        if !frozen.isEmpty {
            let trainable = model.store.trainableNames.count
            notes.append("frozen: \(model.store.parameterNames.count - trainable) of \(model.store.parameterNames.count) parameter tensors "
                + (o.headOnly ? "(--head-only: all but \(projection))" : "match --freeze \(o.freeze.joined(separator: " "))"))
        }
        let params = StoreParameters(model.store)
        // The head's own parameters (after the pool): the trunk's (X3D's head.conv_5 included) all frozen.
        let headNames: Set<String> = arch.model.isTransformer
            ? [model.store.headProjection + ".weight", model.store.headProjection + ".bias"]
            : Set(arch.graph().head.parameters.map(\.name))
        let backboneFrozen = model.store.trainableNames.allSatisfy(headNames.contains)
        // What the cache holds is what feeds the trained part: the pooled features when only the head's parameters train
        // and it has no hidden unit; the hidden unit's output (X3D's lin_5 + ReLU) when only the projection trains. A hidden
        // unit that trains itself (lin_5 unfrozen) needs the full forward (FeatureCache.swift). A transformer has no BN
        // statistics: its classifier alone training is enough (its final norm frozen).
        let headGraph = arch.model.isTransformer ? nil : arch.graph()
        let hiddenFrozen = headGraph?.head.hidden.map { h in h.parameters.allSatisfy { !model.store.isTrainable($0.name) } } ?? true
        let useCache = backboneFrozen && (arch.model.isTransformer || (o.freezeBNStats && hiddenFrozen))
        if backboneFrozen && !o.freezeBNStats && !arch.model.isTransformer {
            notes.append("only the head trains, but BN statistics still update every step; add --freeze-bn-stats to train the head on cached features (much faster)")
        } else if backboneFrozen && !hiddenFrozen, let hidden = headGraph?.head.hidden {
            notes.append("\(hidden.name) trains, so every step runs the full forward; freeze it too (--head-only, or --freeze '\(hidden.name)*') "
                + "to train \(projection) on cached \(hidden.name) features (much faster)")
        } else if !backboneFrozen && o.freezeBNStats && !arch.model.isTransformer, model.store.trainableNames.allSatisfy({ headNames.contains($0) || $0.hasPrefix("head.") }) {
            notes.append("head units before the pool train (\(model.store.trainableNames.filter { !headNames.contains($0) }.prefix(2).joined(separator: ", "))...), "
                + "so every step runs the full forward; --head-only trains \(projection) on cached features")
        }
        if o.preciseBN > 0 && o.freezeBNStats {
            notes.append("--precise-bn \(o.preciseBN) does nothing with --freeze-bn-stats: the BN statistics stay as loaded")
        }
        let itersPerEpoch = (train.samples.count + o.batch - 1) / o.batch
        let schedule = o.lrSchedule
        let sgdConfig = SGDConfig(momentum: o.momentum, nesterov: o.nesterov, weightDecay: WeightDecayPolicy(weightDecay: o.weightDecay),
                                  clipGradNorm: o.clipGradNorm)
        let config = TrainConfig(epochs: o.epochs, batchSize: o.batch, itersPerEpoch: itersPerEpoch, loss: o.loss, sgd: sgdConfig,
                                 schedule: schedule, seed: o.seed)
        try config.validate()
        let sgd: any Optimizer = o.optimizer == "adamw"
            ? try AdamW(config: AdamWConfig(beta1: o.adamBeta1, beta2: o.adamBeta2, clipGradNorm: o.clipGradNorm),
                        groups: Self.adamWGroups(arch: arch, store: model.store, weightDecay: o.weightDecay, layerDecay: o.layerDecay))
            : try SGD(config: sgdConfig)
        sgd.threads = o.threads
        if o.optimizer == "adamw" {
            notes.append(String(format: "AdamW (%g, %g), weight decay %g (none on biases, norms and embeddings)", o.adamBeta1, o.adamBeta2, o.weightDecay)
                + (arch.model.isTransformer && o.layerDecay < 1 ? String(format: ", layer-wise LR decay %g (embeddings at %.3g of the base LR)",
                                                                      o.layerDecay, Foundation.pow(o.layerDecay, Double((arch.transformer?.layers ?? 0) + 1))) : "")
                + (o.dropPath > 0 ? String(format: ", drop path %g", o.dropPath) : "") + (o.labelSmoothing > 0 ? String(format: ", label smoothing %g", o.labelSmoothing) : ""))
        }
        var state = TrainState(config: config)
        var record = RunRecord(name: URL(fileURLWithPath: o.out).lastPathComponent, classes: classes.names)
        if let resumed = existing?.loaded {
            try resumed.restoreOptimizer(sgd, params: params)
            state = resumed.state
            state.config.epochs = o.epochs
            let metrics = URL(fileURLWithPath: o.out).appendingPathComponent("metrics.json").path
            if let data = fm.contents(atPath: metrics), let r = try? RunRecord.decode(data) {
                record = r
                record.iterations = r.iterations.filter { $0.iteration <= state.iteration }
                record.epochs = r.epochs.filter { $0.epoch <= state.epoch }
            }
            // Epochs the checkpoint holds but metrics.json missed (killed between the two writes).
            for h in state.history where !record.epochs.contains(where: { $0.epoch == h.epoch }) {
                record.epochs.append(Report.EpochRecord(epoch: h.epoch, trainLoss: h.trainLoss, valMAP: h.valMAP, valTop1: h.valTop1,
                                                        lr: h.lr, seconds: h.seconds, clipsPerSecond: 0))
            }
            record.epochs.sort { $0.epoch < $1.epoch }
            record.notes.append("resumed after epoch \(state.epoch) from \(URL(fileURLWithPath: existing!.path).lastPathComponent)")
            record.notes += notes
            onEvent(.note("resuming after epoch \(state.epoch) of \(o.epochs) (iteration \(state.iteration))"))
        } else {
            record.notes = notes
        }
        // Decoded frames kept across epochs (and validations): each video decoded once while the budget lasts.
        let cacheMB = o.frameCacheMB ?? FrameCache.defaultBudgetMB()
        let frameCache = cacheMB > 0 ? FrameCache(budgetMB: cacheMB) : nil
        let cacheLine = frameCache == nil ? "frame cache off (--frame-cache-mb 0): every clip decodes its video"
            : "frame cache: up to \(cacheMB) MiB of decoded frames" + (o.frameCacheMB == nil
                ? " (the default: a quarter of physical memory, at most 4096 MiB; --frame-cache-mb sets it, 0 turns it off)" : " (--frame-cache-mb)")
        onEvent(.note(cacheLine))
        for n in notes { onEvent(.note(n)) }
        /// The cache's figures for the run record.
        func cacheRecord() -> FrameCacheRecord? {
            guard let s = frameCache?.statistics else { return nil }
            return FrameCacheRecord(budgetMB: cacheMB, videos: s.videos, frames: s.frames, megabytes: Double(s.bytes) / Double(1 << 20),
                                    hits: s.hits, misses: s.misses, overBudget: s.overBudget)
        }
        let firstEpochThisRun = state.epoch
        let writer = EpochWriter()
        defer { writer.drain() }   // no exit (an error included) leaves an epoch's files half-written
        record.settings = settings(arch: arch, start: startDescription, train: train, val: val, test: test, itersPerEpoch: itersPerEpoch)

        var clip = Scoring.clipConfig(arch: arch, frames: o.frames, samplingRate: o.samplingRate, crop: o.crop,
                                      temporalViews: o.valTemporalViews, spatialCrops: o.valSpatialCrops)
        clip.mean = o.mean
        clip.std = o.std
        clip.reverseChannels = o.reverseChannels
        var trainClip = clip
        trainClip.jitterMin = o.jitterMin
        trainClip.jitterMax = o.jitterMax
        trainClip.inverseUniformJitter = o.inverseUniformJitter
        let runURL = URL(fileURLWithPath: o.out)
        let bestPath = runURL.appendingPathComponent("best.safetensors").path
        var lastCheckpoint = existing?.path ?? ""
        /// best.safetensors: the weights of `epoch`, with class names and where they came from.
        func writeBest(_ weights: [(name: String, tensor: Tensor)], epoch: Int, valMAP: Double?) throws {
            try NativeWeights.write(weights, arch: arch, classes: classes.names,
                                    source: [("finetuned_from", .string(startDescription)), ("run", .string(o.out)), ("epoch", .int(epoch)),
                                             ("val_map", valMAP.map { .double($0) } ?? .null)],
                                    to: bestPath)
        }
        AtomicFile.cleanStaleTemporaries(inDirectory: o.out)
        if let resumed = existing?.loaded, let bestEpoch = state.bestEpoch, !fm.fileExists(atPath: bestPath) {
            if bestEpoch == state.epoch {
                // The checkpoint resumed from is the best epoch: its weights are the best weights.
                try writeBest(resumed.weights.ordered.map { (name: $0.name, tensor: $0.tensor) }, epoch: bestEpoch, valMAP: state.bestMAP)
                onEvent(.note("best.safetensors was missing; rewritten from \(URL(fileURLWithPath: resumed.path).lastPathComponent) (epoch \(bestEpoch), the best)"))
            } else {
                onEvent(.note("best.safetensors (epoch \(bestEpoch)) is missing; the best of the remaining epochs will be kept instead"))
                record.notes.append("best.safetensors of epoch \(bestEpoch) was missing at resume; best kept among the later epochs")
                state.bestMAP = nil
                state.bestEpoch = nil
            }
        }
        let lastEpoch = min(o.epochs, o.maxEpochsThisRun.map { state.epoch + $0 } ?? o.epochs)

        /// Validation, the checkpoint, best weights and reports after epoch `e` (both training paths).
        /// `trainSeconds` is the training loop, `waited` the part of it the step waited for the loader.
        func finishEpoch(e: Int, t0: Date, trainSeconds: Double, lossMean: Double, clips: Int, lr: Double, waited: Double,
                         preciseBNSeconds: Double? = nil) throws {
            // A loss that blows up stops the run before this epoch is validated or kept.
            if let why = Self.blowUp(lossMean: lossMean, loss: o.loss, classes: classes.count) {
                throw Self.diverged(epoch: e + 1, what: why, lr: lr, kept: lastCheckpoint)
            }
            // Validation.
            let v0 = Date()
            var valMAP: Double?, valTop1: Double?
            if let val, !val.samples.isEmpty {
                let ev = try evaluate(try model.makeEvalNetwork(), val, clip: clip, frameCache: frameCache,
                                      progress: { self.onEvent(.validating(done: $0, total: $1)) })
                valMAP = ev.evaluation.meanAP.mAP
                valTop1 = ev.evaluation.top1
            }
            var phases = PhaseSeconds(data: waited, step: max(trainSeconds - waited, 0),
                                      validation: Date().timeIntervalSince(v0) + (preciseBNSeconds ?? 0))
            var epochRecord = Report.EpochRecord(epoch: e + 1, trainLoss: lossMean, valMAP: valMAP, valTop1: valTop1,
                                                 lr: lr, seconds: Date().timeIntervalSince(t0), clipsPerSecond: Double(clips) / max(trainSeconds, 1e-9),
                                                 preciseBNSeconds: preciseBNSeconds)
            state.epoch = e + 1
            state.history.append(Train.EpochRecord(epoch: e + 1, trainLoss: epochRecord.trainLoss, lr: lr, valMAP: valMAP, valTop1: valTop1,
                                                   seconds: epochRecord.seconds))
            let isBest = valMAP.map { m in state.bestMAP.map { m > $0 } ?? true } ?? true
            if isBest {
                state.bestMAP = valMAP
                state.bestEpoch = e + 1
            }

            // Checkpoint, best weights, reports: each written atomically, and never poisoned. The
            // weights and optimizer state are copied here; the files are written in the background
            // while the next epoch trains (EpochWriter), after the previous epoch's are complete.
            let c0 = Date()
            try writer.wait()
            let exported = model.exportWeights()
            let poisoned = exported.nonFiniteNames
            if !poisoned.isEmpty {
                throw Self.diverged(epoch: e + 1, what: "the weights hold NaN or infinite values (\(poisoned.prefix(3).joined(separator: ", ")))", lr: lr,
                                    kept: lastCheckpoint)
            }
            let weights = exported.ordered.map { (name: $0.name, tensor: $0.tensor) }
            let meta: [(String, String)] = try NativeMetadata.header(arch)
                + [(NativeWeights.classesKey, JSONValue.array(classes.names.map { .string($0) }).serialized)]
            let optimizerState = TrainCheckpoint.OptimizerSnapshot(sgd)
            let stateNow = state
            let ckpt = runURL.appendingPathComponent(TrainCheckpoint.fileName(epoch: e + 1)).path
            let superseded = e + 1 - Self.keepCheckpoints >= 1
                ? runURL.appendingPathComponent(TrainCheckpoint.fileName(epoch: e + 1 - Self.keepCheckpoints)) : nil
            phases.checkpoint = Date().timeIntervalSince(c0)
            epochRecord.phases = phases
            epochRecord.seconds = Date().timeIntervalSince(t0)
            record.epochs.append(epochRecord)
            record.phaseTotals = record.epochs.compactMap(\.phases).reduce(PhaseSeconds(), +)
            record.frameCache = cacheRecord()
            record.checkpointWriteSeconds = writer.backgroundSeconds
            let recordNow = record
            try writer.submit { [self] in
                // The best weights go first: a checkpoint whose state names epoch e as the best is only
                // ever written after best.safetensors holds epoch e (a kill between the two leaves the
                // previous checkpoint, and the resumed run repeats epoch e and writes both again).
                if isBest {
                    try writeBest(weights, epoch: e + 1, valMAP: valMAP)
                }
                try TrainCheckpoint.write(to: ckpt, weights: weights, optimizer: optimizerState, state: stateNow, metadata: meta)
                if let superseded { try? FileManager.default.removeItem(at: superseded) }
                try self.writeReports(recordNow, to: runURL)
            }
            lastCheckpoint = ckpt
            onEvent(.epoch(epochRecord, dataWaitFraction: waited / max(trainSeconds, 1e-9), best: isBest))
            if e == firstEpochThisRun, let c = record.frameCache {
                onEvent(.note(String(format: "frame cache after epoch %d: %d videos, %d frames, %.1f of %d MiB; %d clips from cache, %d decoded",
                                     e + 1, c.videos, c.frames, c.megabytes, c.budgetMB, c.hits, c.misses)
                              + (c.overBudget > 0 ? ", \(c.overBudget) left to decoding (over budget)" : "")))
            }
        }

        var cache: FeatureCache?
        if useCache && state.epoch < lastEpoch {
            let what = headGraph?.head.hidden.map { "\($0.name) features (after its ReLU)" } ?? "pooled features"
            onEvent(.note("\(arch.model.isTransformer ? "backbone frozen" : "backbone and BN statistics frozen"): computing the \(what) of \(train.samples.count) clips x \(o.cacheViews) augmented views once"))
            let c0 = Date()
            cache = try FeatureCache.build(model: try model.makeEvalNetwork(), dataset: train, clip: trainClip, views: o.cacheViews, batch: o.batch,
                                           workers: o.workers, seed: o.seed, onBadVideo: o.onBadVideo,
                                           progress: { self.onEvent(.validating(done: $0, total: $1)) })
            record.notes.append(String(format: "head trained on cached features (%d views per clip, computed in %.1f s)", o.cacheViews, Date().timeIntervalSince(c0)))
        }

        while state.epoch < lastEpoch {
            let e = state.epoch
            let t0 = Date()
            if let cache {
                // Head-only epoch on cached features: the samples in a seeded order, view e mod views.
                let view = e % cache.views
                var rng = TrainRNG(seed: o.seed &+ 0x9E37_79B9 &* UInt64(e + 1))
                let order = (0 ..< train.samples.count).filter { cache.features[view][$0] != nil }.shuffled(using: &rng)
                var lossSum = 0.0, step = 0, lr = 0.0
                for start in Swift.stride(from: 0, to: order.count, by: o.batch) {
                    let idx = Array(order[start ..< min(start + o.batch, order.count)])
                    let rows = idx.map { cache.features[view][$0]! }
                    let eps = o.loss == .bce ? Float(o.labelSmoothing) : 0
                    let targets = idx.flatMap { cache.labels[$0] }.map { eps == 0 ? $0 : $0 * (1 - eps) + eps / 2 }
                    lr = schedule.lr(epoch: e, iteration: step, itersPerEpoch: itersPerEpoch)
                    let loss = try FeatureCache.headStep(rows, targets: targets, store: model.store, dropout: o.dropout, loss: o.loss, rng: &rng)
                    guard loss.isFinite else {
                        throw Self.diverged(epoch: e + 1, what: "the loss is \(loss.isNaN ? "NaN" : "infinite") at step \(step + 1)", lr: lr, kept: lastCheckpoint)
                    }
                    do { _ = try sgd.step(params, lr: lr) } catch let error as TrainError where error.message.contains("not finite") {
                        throw Self.diverged(epoch: e + 1, what: "the gradient is not finite at step \(step + 1)", lr: lr, kept: lastCheckpoint)
                    }
                    step += 1
                    state.iteration += 1
                    lossSum += Double(loss) * Double(idx.count)
                    record.iterations.append(IterationRecord(iteration: state.iteration, epoch: Double(e) + Double(step) / Double(itersPerEpoch),
                                                             loss: Double(loss), lr: lr))
                    onEvent(.step(epoch: e + 1, step: step, steps: itersPerEpoch, loss: Double(loss), lr: lr,
                                  clipsPerSecond: Double(start + idx.count) / max(Date().timeIntervalSince(t0), 1e-9), etaSeconds: 0))
                }
                guard !order.isEmpty else { throw FinetuneError("no training clip could be read from \(o.train)") }
                try finishEpoch(e: e, t0: t0, trainSeconds: Date().timeIntervalSince(t0), lossMean: lossSum / Double(order.count), clips: order.count,
                                lr: lr, waited: 0)
                continue
            }
            // The masks of dropout / drop path come from (seed, epoch), as the data order does: a run resumed after
            // epoch e draws what the uninterrupted run draws in epoch e + 1.
            model.reseed(o.seed &+ UInt64(e))
            let loader = try ClipLoader(dataset: train, config: trainClip,
                                        options: LoaderOptions(batchSize: o.batch, workers: o.workers, training: true, seed: o.seed, onBadVideo: o.onBadVideo,
                                                               frameCache: frameCache),
                                        epoch: e)
            var lossSum = 0.0, lossCount = 0, clips = 0, step = 0
            var waited = 0.0
            var lr = 0.0
            while true {
                let w0 = Date()
                guard let b = try loader.next() else { break }
                waited += Date().timeIntervalSince(w0)
                for s in b.skipped { onEvent(.note("skipped: \(s)")) }
                guard b.count > 0 else { continue }
                model.zeroGradients()
                lr = schedule.lr(epoch: e, iteration: step, itersPerEpoch: itersPerEpoch)
                let logits = try model.forward(Scoring.inputs(b, arch: arch))
                let k = arch.numClasses
                let l = Array(UnsafeBufferPointer(start: logits.pointer, count: logits.count))
                let result: LossResult
                switch o.loss {
                case .bce:
                    let eps = Float(o.labelSmoothing)
                    let targets = eps == 0 ? b.labels : b.labels.map { $0 * (1 - eps) + eps / 2 }
                    result = try Loss.bceWithLogits(logits: l, targets: targets, batch: b.count, classes: k)
                case .ce:
                    let labels = (0 ..< b.count).map { i in (0 ..< k).max { b.labels[i * k + $0] < b.labels[i * k + $1] }! }
                    result = try Loss.softmaxCrossEntropy(logits: l, labels: labels, batch: b.count, classes: k, labelSmoothing: Float(o.labelSmoothing))
                }
                guard result.loss.isFinite else {
                    throw Self.diverged(epoch: e + 1, what: "the loss is \(result.loss.isNaN ? "NaN" : "infinite") at step \(step + 1)", lr: lr, kept: lastCheckpoint)
                }
                try model.backward(FloatTensor(shape: [b.count, k], values: result.dLogits))
                do { _ = try sgd.step(params, lr: lr) } catch let error as TrainError where error.message.contains("not finite") {
                    throw Self.diverged(epoch: e + 1, what: "the gradient is not finite at step \(step + 1)", lr: lr, kept: lastCheckpoint)
                }
                step += 1
                state.iteration += 1
                lossSum += Double(result.loss) * Double(b.count)
                lossCount += b.count
                clips += b.count
                record.iterations.append(IterationRecord(iteration: state.iteration, epoch: Double(e) + Double(step) / Double(itersPerEpoch),
                                                         loss: Double(result.loss), lr: lr))
                let elapsed = Date().timeIntervalSince(t0)
                let rate = Double(clips) / max(elapsed, 1e-9)
                let remaining = Double(itersPerEpoch - step) * elapsed / Double(step) + Double(lastEpoch - e - 1) * elapsed / Double(step) * Double(itersPerEpoch)
                onEvent(.step(epoch: e + 1, step: step, steps: itersPerEpoch, loss: Double(result.loss), lr: lr, clipsPerSecond: rate, etaSeconds: remaining))
            }
            model.releaseSaved()
            let trainSeconds = Date().timeIntervalSince(t0)
            guard lossCount > 0 else { throw FinetuneError("epoch \(e + 1): no clip could be read from \(o.train)") }
            var preciseSeconds: Double?
            if o.preciseBN > 0 && !o.freezeBNStats, let model = model as? TrainableNetwork {
                let p0 = Date()
                try preciseBN(model, train: train, clip: trainClip, arch: arch, epoch: e, frameCache: frameCache)
                preciseSeconds = Date().timeIntervalSince(p0)
            }

            try finishEpoch(e: e, t0: t0, trainSeconds: trainSeconds, lossMean: lossSum / Double(lossCount), clips: clips, lr: lr, waited: waited,
                            preciseBNSeconds: preciseSeconds)
        }

        // The last epoch's files: its write was not hidden behind training, so its wait counts as checkpoint time.
        let w0 = Date()
        try writer.wait()
        if state.epoch > firstEpochThisRun, var totals = record.phaseTotals {
            totals.checkpoint += Date().timeIntervalSince(w0)
            record.phaseTotals = totals
            record.checkpointWriteSeconds = writer.backgroundSeconds
            record.frameCache = cacheRecord()
            try writeReports(record, to: runURL)
            onEvent(.totals(totals, epochs: record.epochs.filter { $0.phases != nil }.count, backgroundWrites: writer.backgroundSeconds))
        }

        // Final evaluation of the best weights on the test set.
        if state.epoch >= o.epochs, let test, !test.samples.isEmpty, fm.fileExists(atPath: bestPath) {
            let best = try NativeWeights.load(bestPath)
            var testClip = Scoring.clipConfig(arch: best.arch, frames: o.frames, samplingRate: o.samplingRate, crop: o.testCrop ?? o.crop,
                                              temporalViews: o.testTemporalViews ?? o.valTemporalViews,
                                              spatialCrops: o.testSpatialCrops ?? o.valSpatialCrops)
            testClip.mean = o.mean
            testClip.std = o.std
            testClip.reverseChannels = o.reverseChannels
            let eval = try evaluate(try makeEvalNetwork(config: best.arch, weights: best.tensors), test, clip: testClip,
                                    progress: { self.onEvent(.validating(done: $0, total: $1)) })
            record.evaluation = eval.record(split: "test")
            record.examples = eval.examples(dataset: test, classes: classes.names, count: o.reportExamples)
            try writeReports(record, to: runURL)
        }
        return FinetuneSummary(runDirectory: o.out, record: record, best: bestPath, bestEpoch: state.bestEpoch, bestMAP: state.bestMAP,
                               lastCheckpoint: lastCheckpoint,
                               resumedFrom: existing?.path)
    }

    /// Seed salt of the precise-BN loader: its own shuffle and augmentation, as PySlowFast's separate loader.
    static let preciseBNSeedSalt: UInt64 = 0x7072_6563_6973_6542

    /// PySlowFast's `calculate_and_update_precise_bn` after epoch `epoch`'s training: the first
    /// min(--precise-bn, full batches) batches of a fresh shuffled, augmented pass over the training
    /// set (drop_last, as its train loader; a set smaller than one batch gives its one batch), each
    /// BN's running statistics replaced by the average of their batch statistics.
    func preciseBN(_ model: TrainableNetwork, train: VideoDataset, clip: ClipConfig, arch: ArchConfig, epoch: Int, frameCache: FrameCache? = nil) throws {
        let o = options
        let loader = try ClipLoader(dataset: train, config: clip,
                                    options: LoaderOptions(batchSize: o.batch, workers: o.workers, training: true,
                                                           dropLast: train.samples.count >= o.batch, seed: o.seed ^ Self.preciseBNSeedSalt,
                                                           onBadVideo: o.onBadVideo, frameCache: frameCache),
                                    epoch: epoch)
        let used = try model.preciseBNStatistics(batches: o.preciseBN) { () throws -> [FloatTensor]? in
            while let b = try loader.next() {
                if b.count > 0 { return Scoring.inputs(b, arch: arch) }
            }
            return nil
        }
        guard used > 0 else { throw FinetuneError("epoch \(epoch + 1): precise BN read no clip from \(o.train)") }
    }

    /// Training stopped before a poisoned checkpoint: what happened, what is kept, what to try.
    /// The blow-up rule: an epoch whose mean training loss exceeds `blowUpFactor` times the loss of
    /// predicting nothing (all logits 0: ln 2 per class for BCE, ln K for softmax cross-entropy) has
    /// diverged. Learning runs seen: near 1x (fine-tuning, scratch), up to 3-4x for a head trained on a
    /// random backbone's large features while its val mAP still rises; the study's LR at too small a
    /// batch climbs to 10-25x (BCE losses of 7-18). Returns the reason, or nil.
    public static let blowUpFactor = 8.0
    public static func blowUp(lossMean: Double, loss: LossKind, classes: Int) -> String? {
        let chance = loss == .bce ? log(2.0) : log(Double(max(2, classes)))
        guard lossMean > blowUpFactor * chance else { return nil }
        return String(format: "the mean training loss is %.3g, above %.0fx the loss of predicting nothing (%.3g)", lossMean, blowUpFactor, chance)
    }

    static func diverged(epoch: Int, what: String, lr: Double, kept: String) -> FinetuneError {
        FinetuneError("training diverged in epoch \(epoch): \(what); stopped without writing a checkpoint for this epoch" +
                      (kept.isEmpty ? "" : "; the last good one is \(URL(fileURLWithPath: kept).lastPathComponent)"),
                      hint: String(format: "lower --lr (the rate was %g here), add --clip-grad-norm, or check the data", lr))
    }

    func evaluate(_ model: any ClipNetwork, _ data: VideoDataset, clip: ClipConfig, frameCache: FrameCache? = nil,
                  progress: ((Int, Int) -> Void)?) throws -> Evaluation {
        try Evaluation.run(model: model, dataset: data, clip: clip, batch: options.batch, workers: options.workers,
                           onBadVideo: options.onBadVideo, multiLabel: options.loss == .bce, ensemble: options.ensemble,
                           frameCache: frameCache, progress: progress)
    }

    /// The fields that decide a network's parameters, where two configs differ ("fusion_kernel: 7 vs 5").
    static func structuralDifferences(_ a: ArchConfig, _ b: ArchConfig) -> [String] {
        var d: [String] = []
        func check<T: Equatable>(_ name: String, _ x: T, _ y: T) { if x != y { d.append("\(name): config \(x), weights \(y)") } }
        check("model", a.model.rawValue, b.model.rawValue)
        check("stage_depths", a.stageDepths, b.stageDepths)
        check("width_per_group", a.widthPerGroup, b.widthPerGroup)
        check("num_groups", a.numGroups, b.numGroups)
        check("temporal_kernels", a.temporalKernels, b.temporalKernels)
        check("spatial_strides", a.spatialStrides, b.spatialStrides)
        check("stride_1x1", a.stride1x1, b.stride1x1)
        if a.model == .slowfast && b.model == .slowfast {
            check("alpha", a.alpha, b.alpha)
            check("beta_inv", a.betaInv, b.betaInv)
            check("fusion_conv_channel_ratio", a.fusionConvChannelRatio, b.fusionConvChannelRatio)
            check("fusion_kernel", a.fusionKernel, b.fusionKernel)
        }
        return d
    }

    func settings(arch: ArchConfig, start: String, train: VideoDataset, val: VideoDataset?, test: VideoDataset?, itersPerEpoch: Int) -> [RunRecord.Setting] {
        let o = options
        return [
            .init("start", start), .init("architecture", arch.summary),
            .init("data", "train \(train.samples.count) clips\(val.map { ", val \($0.samples.count)" } ?? "")\(test.map { ", test \($0.samples.count)" } ?? ""), \(train.classes.count) classes"),
            .init("epochs x iterations", "\(o.epochs) x \(itersPerEpoch) (batch \(o.batch))"),
            .init("optimizer", (o.optimizer == "adamw"
                    ? "AdamW (\(o.adamBeta1), \(o.adamBeta2)), weight decay \(o.weightDecay) (none on biases, norms and embeddings)"
                        + (arch.model.isTransformer && o.layerDecay < 1 ? ", layer-wise LR decay \(o.layerDecay)" : "")
                    : "SGD momentum \(o.momentum)\(o.nesterov ? " nesterov" : ""), weight decay \(o.weightDecay) (none on BN and biases)")
                  + "\(o.clipGradNorm.map { ", clip \($0)" } ?? "")"),
            .init("learning rate", (o.lrScaling != nil ? "(linear scaling for batch \(o.batch)) " : "")
                  + "\(o.warmupStartLR) -> \(o.lr) over \(o.warmupEpochs) epochs, then \(o.schedule)"
                  + (o.schedule == "steps" ? " " + zip(o.lrSteps, o.lrRelative).map { "\($0):\($1)" }.joined(separator: " ") : "")
                  + (o.schedule == "cosine" ? " to \(o.cosineEndLR)\(o.cosineAfterWarmup ? " after warm-up" : " from epoch 0")" : "")),
            .init("loss", o.loss == .bce ? "sigmoid + binary cross-entropy" : "softmax cross-entropy"),
            .init("clips", "\(o.frames) frames at sampling rate \(o.samplingRate), crop \(o.crop), jitter [\(o.jitterMin), \(o.jitterMax)]"
                  + "\(o.inverseUniformJitter ? " inverse-uniform" : ""), flip, PCA lighting, mean \(o.mean) std \(o.std)\(o.reverseChannels ? ", BGR" : "")"),
            .init("test views", "\(o.testTemporalViews ?? o.valTemporalViews) x \(o.testSpatialCrops ?? o.valSpatialCrops) at crop \(o.testCrop ?? o.crop), "
                  + "ensemble \((o.ensemble ?? .byHead(multiLabel: o.loss == .bce)).rawValue)"),
            .init("precise BN", o.preciseBN > 0 ? "up to \(o.preciseBN) training batches before each validation (PySlowFast BN.USE_PRECISE_STATS)"
                  + (o.freezeBNStats ? "; nothing to do with --freeze-bn-stats" : "") : "off"),
            .init("dropout", "\(o.dropout)"), .init("freeze", o.headOnly ? "all but the head's projection (--head-only), + BN statistics"
                  : o.freeze.isEmpty ? "none" : o.freeze.joined(separator: " ") + (o.freezeBNStats ? " (+ BN statistics)" : "")),
            .init("threads / loader workers", "\(o.threads) / \(o.workers)"), .init("seed", "\(o.seed)"),
            .init("frame cache", (o.frameCacheMB ?? FrameCache.defaultBudgetMB()) == 0 ? "off"
                  : "\(o.frameCacheMB ?? FrameCache.defaultBudgetMB()) MiB of decoded frames\(o.frameCacheMB == nil ? " (default)" : "")"),
        ] + configSettings()
    }

    /// The config file, each setting taken from it ("config DATA.NUM_FRAMES" = "8 (line 12) -> frames"),
    /// and the keys it ignored with the reason.
    func configSettings() -> [RunRecord.Setting] {
        let o = options
        guard let file = o.configFile else { return [] }
        return [.init("config", file)]
            + o.fromConfig.map { .init("config \($0.key)", "\($0.value) (line \($0.line)) -> \($0.setting)") }
            + o.ignoredConfigKeys.map { .init("config \($0.key) (ignored)", "\($0.value) (line \($0.line)): \($0.setting)") }
    }

    func writeReports(_ r: RunRecord, to dir: URL) throws {
        let json = try r.json()
        try AtomicFile.write(to: dir.appendingPathComponent("metrics.json").path, overwrite: true) { out in try json.withUnsafeBytes { try out.write($0) } }
        for (name, text) in [("metrics.csv", r.csv()), ("report.html", ReportHTML.render(r))] {
            let bytes = Array(text.utf8)
            try AtomicFile.write(to: dir.appendingPathComponent(name).path, overwrite: true) { out in try bytes.withUnsafeBytes { try out.write($0) } }
        }
    }
}

extension FinetuneRun {
    /// AdamW's per-parameter multipliers: weight decay on weight matrices and kernels only (no biases, norms
    /// or embeddings, from the parameter roles), and for a transformer the layer-wise LR scale
    /// layer_decay^(layers + 1 - depth) (VideoMAE's LayerDecayValueAssigner).
    static func adamWGroups(arch: ArchConfig, store: ParameterStore, weightDecay: Float, layerDecay: Double) -> [String: ParameterGroup] {
        let layout = arch.model.isTransformer ? TransformerLayout(arch: arch) : nil
        var groups: [String: ParameterGroup] = [:]
        for name in store.parameterNames {
            let role = store.role(name)
            let decay: Float = role == .linearWeight || role == .convWeight ? weightDecay : 0
            var scale: Float = 1
            if let layout, layerDecay < 1 {
                scale = Float(Foundation.pow(layerDecay, Double(layout.config.layers + 1 - layout.depth(of: name))))
            }
            groups[name] = ParameterGroup(lrScale: scale, weightDecay: decay)
        }
        return groups
    }
}
