// Options shared by `finetune` and `experiment`: the study's recipe as defaults, every
// hyperparameter overridable.

import ArgumentParser
import Finetune
import Foundation
import Train
import Video

extension LossKind: ExpressibleByArgument {}
extension InitKind: ExpressibleByArgument {}
extension BadVideoPolicy: ExpressibleByArgument {}

/// `--views SxT`: spatial crops x temporal clips (the study's test views: 3x10).
struct Views: ExpressibleByArgument {
    var spatial: Int
    var temporal: Int
    init(spatial: Int, temporal: Int) { (self.spatial, self.temporal) = (spatial, temporal) }
    init?(argument: String) {
        let p = argument.lowercased().split(separator: "x").compactMap { Int($0) }
        guard p.count == 2, p[0] >= 1, p[0] <= 3, p[1] >= 1, p[1] <= 100 else { return nil }
        (spatial, temporal) = (p[0], p[1])
    }
    var defaultValueDescription: String { "\(spatial)x\(temporal)" }
}

extension EnsembleMethod: ExpressibleByArgument {}

/// `--lr-steps 0:1 41:0.1 49:0.01`: epoch where each relative LR starts, and the factor.
struct LRStep: ExpressibleByArgument {
    var epoch: Double
    var factor: Double
    init?(argument: String) {
        let p = argument.split(separator: ":").compactMap { Double($0) }
        guard p.count == 2, p[0] >= 0, p[1] >= 0 else { return nil }
        (epoch, factor) = (p[0], p[1])
    }
}

/// The recipe: the study's values unless a PySlowFast --config sets them, and the command line over both.
/// Options are optional so that only those given on the command line override the config.
struct RecipeOptions: ParsableArguments {
    @Option(help: "Recipe whose values are the defaults below (only 'study': the paper's fine-tuning recipe).")
    var recipe = "study"
    @Option(help: "PySlowFast YAML config (e.g. AK's configs/AK/SLOWFAST_8x8_R50.yaml): architecture and recipe; the options given here override it.")
    var config: String?
    @Flag(name: .customLong("print-config"), help: "Print the effective settings and where each came from (default / PySlowFast default / file KEY / command line), then exit.")
    var printConfig = false
    @Option(help: "Epochs (default 20).") var epochs: Int?
    @Option(help: "Clips per batch (default 8).") var batch: Int?
    @Option(help: "Base learning rate after warm-up (default 0.0375 for batch 8, scaled by batch/8 for another --batch: the linear scaling rule).") var lr: Double?
    @Option(name: .customLong("warmup-epochs"), help: "Linear warm-up length in epochs, per iteration (default 5).") var warmupEpochs: Double?
    @Option(name: .customLong("warmup-start-lr"), help: "Learning rate at the start of warm-up (default 0.00085 for batch 8, scaled like --lr).") var warmupStartLR: Double?
    @Option(help: "After warm-up: constant (default), cosine (to 0 at the last epoch) or steps (--lr-steps).") var schedule: String?
    @Option(name: .customLong("lr-steps"), parsing: .upToNextOption, help: "Steps schedule: EPOCH:FACTOR ... (the first at epoch 0), e.g. 0:1 41:0.1.")
    var lrSteps: [LRStep] = []
    @Option(help: "sgd (the study's; default for the CNN families) or adamw (the transformers' published recipe; their default).") var optimizer: String?
    @Option(name: .customLong("layer-decay"), help: "Layer-wise LR decay of a transformer: each layer below the classifier trains at this factor of the one above (default 1; the transformer recipe 0.75).") var layerDecay: Double?
    @Option(name: .customLong("drop-path"), help: "Stochastic depth rate of a transformer's last layer, linear from 0 (default 0; the transformer recipe 0.1).") var dropPath: Double?
    @Option(name: .customLong("label-smoothing"), help: "Label smoothing: CE (1-e) onehot + e/classes, BCE t (1-e) + e/2 (default 0; the transformer recipe 0.1).") var labelSmoothing: Double?
    @Option(help: "SGD momentum (default 0.9).") var momentum: Float?
    @Flag(inversion: .prefixedNo, help: "Nesterov momentum (default on).") var nesterov: Bool?
    @Option(name: .customLong("weight-decay"), help: "L2 weight decay, none on BN parameters and biases (default 1e-4).") var weightDecay: Float?
    @Option(name: .customLong("clip-grad"), help: "Clip the global gradient norm to this value.") var clipGrad: Float?
    @Option(help: "Dropout before the head (default 0.5).") var dropout: Double?
    @Option(help: "bce (sigmoid, multi-label; the study; default) or ce (softmax, single-label).") var loss: LossKind?
    @Option(help: "Frames per clip: fast pathway; the slow one gets frames/alpha (default 8).") var frames: Int?
    @Option(name: .customLong("sampling-rate"), help: "Frame stride on the 30 fps timeline (default 2).") var samplingRate: Int?
    @Option(help: "Training crop (and the network's train_crop): a multiple of 32 for SlowFast, Slow-only and ResNet, at least 32 for X3D (default 256, or the preset's).") var crop: Int?
    @Option(parsing: .upToNextOption, help: "Short-side scale jitter MIN MAX (default 256 340).") var jitter: [Int] = []
    @Flag(inversion: .prefixedNo, help: "Draw the jitter scale inverse-uniformly (PySlowFast INV_UNIFORM_SAMPLE; default off).") var inverseUniformJitter: Bool?
    @Flag(inversion: .prefixedNo, help: "Feed the network BGR (PySlowFast REVERSE_INPUT_CHANNEL; default off).") var bgr: Bool?
    @Option(name: .customLong("val-views"), help: "Validation views SxT, spatial x temporal (default 1x1).") var valViews: Views?
    @Option(name: .customLong("test-views"), help: "Views of the final test evaluation SxT (default: the validation views).") var testViews: Views?
    @Option(name: .customLong("test-crop"), help: "Crop of the final test views (default: the training crop).") var testCrop: Int?
    @Option(help: "How a video's views combine: sum, max or mean (default: max for sigmoid heads, mean for softmax).") var ensemble: EnsembleMethod?
    @Option(help: "Parameters to keep fixed (glob on canonical names; repeatable), e.g. --freeze 's*' trains the head only.")
    var freeze: [String] = []
    @Flag(name: .customLong("freeze-bn-stats"), help: "Keep BN running statistics fixed (with the backbone frozen too, the head trains on cached features).") var freezeBNStats = false
    @Flag(name: .customLong("head-only"), help: "Train only the head's projection (every other parameter and the BN statistics fixed) on features cached once: the pooled features, or X3D's lin_5 output.") var headOnly = false
    @Option(name: .customLong("precise-bn"), help: "Precise BN statistics: after each epoch, before validation, every BN's running statistics become the average over this many training batches (PySlowFast BN.NUM_BATCHES_PRECISE); 0: off (default 0).")
    var preciseBN: Int?
    @Option(name: .customLong("cache-views"), help: "Head-only training on cached features: augmented views cached per clip.") var cacheViews = 4
    @Option(help: "Compute threads (default 2).") var threads: Int?
    @Option(help: "Video loading threads, run beside the compute (default 1).") var workers: Int?
    @Option(name: .customLong("frame-cache-mb"), help: ArgumentHelp(
        "MiB of decoded frames kept for the run, so each video is decoded once, not every epoch (default: a quarter of physical memory, at most 4096); 0: decode every clip.",
        discussion: "Clips made from kept frames are bit for bit those decoding gives; videos that do not fit are decoded each time."))
    var frameCacheMB: Int?
    @Option(help: "Seed for initialisation, sampling, augmentation and dropout (default 0).") var seed: UInt64?
    @Option(name: .customLong("on-bad-video"), help: "skip (report and leave out) or fail.") var onBadVideo = BadVideoPolicy.skip
    @Option(help: "Class list: one name per line, or an .xlsx such as Animal Kingdom's df_action.xlsx (default: classes.txt beside the train manifest).")
    var classes: String?
    @Option(name: .customLong("class-column"), help: "The .xlsx class list's column, by its header (default: a header like action/name, else the first text column).")
    var classColumn: String?
    @Option(name: .customLong("frame-root"), help: "Folder the frame lists' frame paths are relative to (PySlowFast's PATH_PREFIX; default: each list's folder).")
    var frameRoot: String?

    func validate() throws {
        guard recipe == "study" else { throw ValidationError("--recipe: only 'study' is defined") }
        guard jitter.isEmpty || jitter.count == 2 else { throw ValidationError("--jitter takes two values: MIN MAX") }
    }

    /// The config (if any) into `o`, then the options given here over it; returns where each setting came from.
    func resolve(into o: inout FinetuneOptions, commandLine given: [String] = []) throws -> SettingSources {
        var src = SettingSources()
        if let config { try PySlowFastConfig.load(config).apply(to: &o, sources: &src) }
        for g in given { src.set(g, "command line") }
        func take<T>(_ v: T?, _ name: String, _ set: (T) -> Void) { if let v { set(v); src.set(name, "command line") } }
        take(epochs, "epochs") { o.epochs = $0 }
        take(batch, "batch") { o.batch = $0 }
        take(lr, "lr") { o.lr = $0 }
        take(warmupEpochs, "warmup-epochs") { o.warmupEpochs = $0 }
        take(warmupStartLR, "warmup-start-lr") { o.warmupStartLR = $0 }
        take(schedule, "schedule") { o.schedule = $0 }
        if !lrSteps.isEmpty { o.lrSteps = lrSteps.map(\.epoch); o.lrRelative = lrSteps.map(\.factor); src.set("lr-steps", "command line") }
        take(optimizer, "optimizer") { o.optimizer = $0 }
        take(layerDecay, "layer-decay") { o.layerDecay = $0 }
        take(dropPath, "drop-path") { o.dropPath = $0 }
        take(labelSmoothing, "label-smoothing") { o.labelSmoothing = $0 }
        take(momentum, "momentum") { o.momentum = $0 }
        take(nesterov, "nesterov") { o.nesterov = $0 }
        take(weightDecay, "weight-decay") { o.weightDecay = $0 }
        o.clipGradNorm = clipGrad
        take(dropout, "dropout") { o.dropout = $0 }
        take(loss, "loss") { o.loss = $0 }
        take(frames, "frames") { o.frames = $0 }
        take(samplingRate, "sampling-rate") { o.samplingRate = $0 }
        take(crop, "crop") { o.crop = $0 }
        if jitter.count == 2 { (o.jitterMin, o.jitterMax) = (jitter[0], jitter[1]); src.set("jitter", "command line") }
        take(inverseUniformJitter, "inverse-uniform-jitter") { o.inverseUniformJitter = $0 }
        take(bgr, "bgr") { o.reverseChannels = $0 }
        take(valViews, "val-views") { o.valSpatialCrops = $0.spatial; o.valTemporalViews = $0.temporal }
        take(testViews, "test-views") { o.testSpatialCrops = $0.spatial; o.testTemporalViews = $0.temporal }
        take(testCrop, "test-crop") { o.testCrop = $0 }
        take(ensemble, "ensemble") { o.ensemble = $0 }
        take(threads, "threads") { o.threads = $0 }
        take(workers, "workers") { o.workers = $0 }
        take(frameCacheMB, "frame-cache-mb") { o.frameCacheMB = $0 }
        take(preciseBN, "precise-bn") { o.preciseBN = $0 }
        take(seed, "seed") { o.seed = $0 }
        take(classes, "classes") { o.classes = $0 }
        take(classColumn, "class-column") { o.classColumn = $0 }
        take(frameRoot, "frame-root") { o.frameRoot = $0 }
        o.freeze = freeze; o.freezeBNStats = freezeBNStats || headOnly; o.headOnly = headOnly; o.cacheViews = cacheViews; o.onBadVideo = onBadVideo
        // The recipe's learning rates are for batch 8: scaled for another batch unless the user chose them
        // (--lr / --warmup-start-lr, or a config's BASE_LR, which PySlowFast pairs with its own BATCH_SIZE).
        if src["lr"] == "default" && src["warmup-start-lr"] == "default", let line = o.scaleLearningRateForBatch() {
            o.lrScaling = line
            src.set("lr", "default, scaled for batch \(o.batch)")
            src.set("warmup-start-lr", "default, scaled for batch \(o.batch)")
        }
        // The architecture from the config follows the recipe's frames, crop, dropout and loss.
        if var a = o.architecture {
            a.numFrames = o.frames; a.trainCrop = o.crop; a.dropout = o.dropout; a.headActivation = o.loss == .bce ? .sigmoid : .softmax
            o.architecture = a
        }
        return src
    }
}

/// Renders fine-tuning events: a progress line on stderr, one line per epoch on stdout.
final class FinetuneConsole {
    let epochs: Int
    let prefix: String
    let bar = Terminal.Progress("")
    init(epochs: Int, prefix: String = "") { (self.epochs, self.prefix) = (epochs, prefix) }

    static func duration(_ s: Double) -> String {
        guard s.isFinite else { return "?" }
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
    }

    func handle(_ e: FinetuneEvent) {
        switch e {
        case .note(let n):
            Terminal.write("\(prefix)note: \(n)\n")
        case let .step(epoch, step, steps, loss, lr, rate, eta):
            guard Terminal.stderrIsTerminal else { return }
            let width = 24, filled = steps > 0 ? width * step / steps : 0
            Terminal.write("\r\u{1B}[K\(prefix)epoch \(epoch)/\(epochs) [\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] "
                + "\(step)/\(steps) loss \(String(format: "%.4f", loss)) lr \(String(format: "%.5f", lr)) \(String(format: "%.1f", rate)) clips/s ETA \(Self.duration(eta))",
                to: .stderr)
        case let .validating(done, total):
            guard Terminal.stderrIsTerminal else { return }
            Terminal.write("\r\u{1B}[K\(prefix)validating \(done)/\(total) views", to: .stderr)
        case let .epoch(r, wait, best):
            if Terminal.stderrIsTerminal { Terminal.write("\r\u{1B}[K", to: .stderr) }
            var line = "\(prefix)epoch \(r.epoch)/\(epochs)  train loss \(String(format: "%.4f", r.trainLoss))"
            if let m = r.valMAP { line += "  val mAP \(String(format: "%.1f%%", m * 100))" }
            if let t = r.valTop1 { line += "  top-1 \(String(format: "%.1f%%", t * 100))" }
            line += "  lr \(String(format: r.lr == 0 || (r.lr >= 1e-4 && r.lr < 1e4) ? "%.5f" : "%.3g", r.lr))  \(String(format: "%.1f", r.seconds)) s  \(String(format: "%.1f", r.clipsPerSecond)) clips/s"
            if let p = r.phases {
                line += " (\(p.summary))"
                if let p = r.preciseBNSeconds { line += "  precise BN \(String(format: "%.1f", p)) s of the validation" }
            } else {
                if let p = r.preciseBNSeconds { line += "  precise BN \(String(format: "%.1f", p)) s" }
                line += "  data wait \(String(format: "%.0f%%", wait * 100))"
            }
            line += "\(best ? "  *best" : "")\n"
            Terminal.write(line)
        case let .totals(p, epochs, background):
            Terminal.write(prefix + "time over \(epochs) epoch\(epochs == 1 ? "" : "s"): " + String(format: "%.1f s = ", p.total) + p.summary
                + String(format: " (checkpoint files written in the background, beside training: %.1f s)", background) + "\n")
        }
    }
}
