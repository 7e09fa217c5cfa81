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

struct RecipeOptions: ParsableArguments {
    @Option(help: "Recipe whose values are the defaults below (only 'study': the paper's fine-tuning recipe).")
    var recipe = "study"
    @Option(help: "Epochs.") var epochs = 20
    @Option(help: "Clips per batch.") var batch = 8
    @Option(help: "Base learning rate (after warm-up).") var lr = 0.0375
    @Option(name: .customLong("warmup-epochs"), help: "Linear warm-up length in epochs (per iteration).") var warmupEpochs = 5.0
    @Option(name: .customLong("warmup-start-lr"), help: "Learning rate at the start of warm-up.") var warmupStartLR = 0.00085
    @Option(help: "After warm-up: constant or cosine (to 0 at the last epoch).") var schedule = "constant"
    @Option(help: "SGD momentum.") var momentum: Float = 0.9
    @Flag(name: .customLong("no-nesterov"), help: "Plain momentum instead of Nesterov.") var noNesterov = false
    @Option(name: .customLong("weight-decay"), help: "L2 weight decay (none on BN parameters and biases).") var weightDecay: Float = 1e-4
    @Option(name: .customLong("clip-grad"), help: "Clip the global gradient norm to this value.") var clipGrad: Float?
    @Option(help: "Dropout before the head.") var dropout = 0.5
    @Option(help: "bce (sigmoid, multi-label; the study) or ce (softmax, single-label).") var loss = LossKind.bce
    @Option(help: "Frames per clip (fast pathway; the slow one gets frames/alpha).") var frames = 8
    @Option(name: .customLong("sampling-rate"), help: "Frame stride on the 30 fps timeline.") var samplingRate = 2
    @Option(help: "Training crop (and the network's train_crop); a multiple of 32.") var crop = 256
    @Option(parsing: .upToNextOption, help: "Short-side scale jitter MIN MAX.") var jitter: [Int] = [256, 340]
    @Option(name: .customLong("val-views"), help: "Validation views SxT (spatial x temporal).") var valViews = Views(spatial: 1, temporal: 1)
    @Option(help: "Parameters to keep fixed (glob on canonical names; repeatable), e.g. --freeze 's*' trains the head only.")
    var freeze: [String] = []
    @Flag(name: .customLong("freeze-bn-stats"), help: "Keep BN running statistics fixed (with the backbone frozen too, the head trains on cached features).") var freezeBNStats = false
    @Option(name: .customLong("cache-views"), help: "Head-only training on cached features: augmented views cached per clip.") var cacheViews = 4
    @Option(help: "Compute threads.") var threads = 2
    @Option(help: "Video loading threads (run beside the compute).") var workers = 1
    @Option(help: "Seed for initialisation, sampling, augmentation and dropout.") var seed: UInt64 = 0
    @Option(name: .customLong("on-bad-video"), help: "skip (report and leave out) or fail.") var onBadVideo = BadVideoPolicy.skip
    @Option(help: "Class list: one name per line, or an .xlsx such as Animal Kingdom's df_action.xlsx (default: classes.txt beside the train manifest).")
    var classes: String?
    @Option(name: .customLong("class-column"), help: "The .xlsx class list's column, by its header (default: a header like action/name, else the first text column).")
    var classColumn: String?
    @Option(name: .customLong("frame-root"), help: "Folder the frame lists' frame paths are relative to (PySlowFast's PATH_PREFIX; default: each list's folder).")
    var frameRoot: String?

    func validate() throws {
        guard recipe == "study" else { throw ValidationError("--recipe: only 'study' is defined") }
        guard jitter.count == 2 else { throw ValidationError("--jitter takes two values: MIN MAX") }
    }

    func apply(to o: inout FinetuneOptions) {
        o.epochs = epochs; o.batch = batch; o.lr = lr; o.warmupEpochs = warmupEpochs; o.warmupStartLR = warmupStartLR
        o.schedule = schedule; o.momentum = momentum; o.nesterov = !noNesterov; o.weightDecay = weightDecay; o.clipGradNorm = clipGrad
        o.dropout = dropout; o.loss = loss; o.frames = frames; o.samplingRate = samplingRate; o.crop = crop
        o.jitterMin = jitter[0]; o.jitterMax = jitter[1]; o.valSpatialCrops = valViews.spatial; o.valTemporalViews = valViews.temporal
        o.freeze = freeze; o.freezeBNStats = freezeBNStats; o.cacheViews = cacheViews; o.threads = threads; o.workers = workers; o.seed = seed
        o.onBadVideo = onBadVideo; o.classes = classes; o.classColumn = classColumn; o.frameRoot = frameRoot
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
            line += "  data wait \(String(format: "%.0f%%", wait * 100))\(best ? "  *best" : "")\n"
            Terminal.write(line)
        }
    }
}
