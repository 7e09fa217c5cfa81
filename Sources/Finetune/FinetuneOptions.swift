// Every setting of `sfnet finetune`, with the study's recipe as the defaults (DESIGN.md
// "Training"): batch 8, 20 epochs, SGD momentum 0.9 nesterov, weight decay 1e-4 (none on
// BN and biases), dropout 0.5, sigmoid + BCE, LR warmed up 0.00085 -> 0.0375 over 5 epochs
// then constant, 8 frames at sampling rate 2, jitter [256, 340], crop 256.

import Families
import Convert
import Foundation
import Train
import Video

public enum InitKind: String, Codable, Sendable, CaseIterable {
    /// Start from `--weights` (converted, verified).
    case weights
    /// Fresh PySlowFast init of `--arch` (no weights needed).
    case scratch
}

public struct FinetuneOptions: Codable, Sendable, Equatable {
    public var weights: String?
    public var initKind: InitKind = .weights
    /// Preset (or arch JSON) for `--init scratch`.
    public var arch: String = "slowfast-r50-8x8"
    public var train: String
    public var val: String?
    public var test: String?
    /// Class list file (one name per line, or an .xlsx such as Animal Kingdom's df_action.xlsx); default:
    /// `classes.txt` beside the train manifest, else the manifest's labels.
    public var classes: String?
    /// Folder the frame lists' frame paths are relative to (PySlowFast's PATH_PREFIX, from --frame-root or a
    /// --config's DATA.PATH_PREFIX); default: each list's folder.
    public var frameRoot: String?
    /// The .xlsx class list's column, by its header (default: Spreadsheet.classNames' choice).
    public var classColumn: String?
    public var out: String
    public var epochs = 20
    public var batch = 8
    public var lr = 0.0375
    /// How the learning rate was chosen when the linear scaling rule changed it (printed and recorded).
    public var lrScaling: String?
    public var warmupEpochs = 5.0
    public var warmupStartLR = 0.00085
    /// After warm-up: constant, cosine or steps (PySlowFast steps_with_relative_lrs with `lrSteps`/`lrRelative`).
    public var schedule = "constant"
    /// SOLVER.STEPS (epochs, the first 0) and SOLVER.LRS (factors of the base LR) of the steps schedule.
    public var lrSteps: [Double] = []
    public var lrRelative: [Double] = []
    /// SOLVER.COSINE_END_LR and COSINE_AFTER_WARMUP of the cosine schedule (sfnet's default starts it after warm-up).
    public var cosineEndLR = 0.0
    public var cosineAfterWarmup = true
    /// "sgd" (the study's; default) or "adamw" (the transformers' published fine-tuning recipe).
    public var optimizer = "sgd"
    /// AdamW's betas.
    public var adamBeta1 = 0.9
    public var adamBeta2 = 0.999
    /// Layer-wise learning-rate decay (transformers): the classifier at the base LR, each encoder layer below
    /// it one factor smaller, the embeddings smallest; 1: off.
    public var layerDecay = 1.0
    /// Stochastic depth (drop path) rate of the last transformer layer, linear from 0 at the first; 0: off.
    public var dropPath = 0.0
    /// Label smoothing: CE targets (1 - e) onehot + e / classes; BCE targets t (1 - e) + e / 2.
    public var labelSmoothing = 0.0
    public var momentum: Float = 0.9
    public var nesterov = true
    public var weightDecay: Float = 1e-4
    public var clipGradNorm: Float?
    public var dropout = 0.5
    public var loss = LossKind.bce
    public var frames = 8
    public var samplingRate = 2
    public var crop = 256
    public var jitterMin = 256
    public var jitterMax = 340
    /// Draw the jitter scale as 1 / uniform(1/max, 1/min) (DATA.INV_UNIFORM_SAMPLE).
    public var inverseUniformJitter = false
    /// Feed the network BGR (DATA.REVERSE_INPUT_CHANNEL).
    public var reverseChannels = false
    /// Per-channel normalisation after /255 (DATA.MEAN / DATA.STD, RGB order).
    public var mean: [Double] = [0.45, 0.45, 0.45]
    public var std: [Double] = [0.225, 0.225, 0.225]
    /// Crop of the final test views (DATA.TEST_CROP_SIZE); nil: the training crop.
    public var testCrop: Int?
    /// Views of the final test evaluation (TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS); nil: the validation views.
    public var testTemporalViews: Int?
    public var testSpatialCrops: Int?
    /// How a video's views combine in validation and test (DATA.ENSEMBLE_METHOD); nil: max for sigmoid, mean for softmax.
    public var ensemble: EnsembleMethod?
    /// Validation views per clip: temporal x spatial (the study: 1 x 1 during training is enough; eval uses 10 x 3).
    public var valTemporalViews = 1
    public var valSpatialCrops = 1
    /// Glob patterns of parameters that stay fixed (`--freeze 's*'` trains the head only).
    public var freeze: [String] = []
    /// Keep BN running statistics fixed (BN in eval mode inside the train step).
    public var freezeBNStats = false
    /// Train only the head's projection: every other parameter frozen and the BN statistics fixed (implies
    /// `freezeBNStats`), so the projection trains on features cached once (what feeds it: the pooled features,
    /// or X3D's lin_5 + ReLU output).
    public var headOnly = false
    /// Precise BN statistics (PySlowFast BN.USE_PRECISE_STATS / NUM_BATCHES_PRECISE): after each epoch's
    /// training, before validation and the checkpoint, every BN's running statistics become the average
    /// over this many training batches of the batch statistics; 0: off.
    public var preciseBN = 0
    /// With the whole backbone and its BN statistics frozen, the head trains on pooled features
    /// cached once for this many augmented views of each clip (epoch e uses view e mod N).
    public var cacheViews = 4
    public var threads = 2
    public var workers = 1
    /// MiB of decoded frames kept for the run, so each video is decoded once (`FrameCache`); nil: the
    /// default (a quarter of physical memory, at most 4 GiB); 0: decode every clip afresh.
    public var frameCacheMB: Int?
    public var seed: UInt64 = 0
    public var skipVerify = false
    public var resume = false
    public var onBadVideo = BadVideoPolicy.skip
    /// Stop after this many epochs in this invocation (tests of kill/resume); nil: run to the end.
    public var maxEpochsThisRun: Int?
    /// Examples of test clips in the report.
    public var reportExamples = 12
    /// Architecture from a PySlowFast config (MODEL, RESNET, SLOWFAST): built for --init scratch, checked against --weights.
    public var architecture: ArchConfig?
    /// The PySlowFast config the run was given, the settings taken from it and the keys it ignored.
    public var configFile: String?
    public var fromConfig: [ConfigSetting] = []
    public var ignoredConfigKeys: [ConfigSetting] = []

    /// The LR schedule these settings give.
    public var lrSchedule: LRSchedule {
        let policy: LRSchedule.Policy
        switch schedule {
        case "cosine": policy = .cosine(endLR: cosineEndLR, afterWarmup: cosineAfterWarmup)
        case "steps": policy = .steps(boundaries: lrSteps, relativeLRs: lrRelative)
        default: policy = .constant
        }
        return LRSchedule(baseLR: lr, warmupEpochs: warmupEpochs, warmupStartLR: warmupStartLR, maxEpochs: Double(epochs), policy: policy)
    }

    public init(train: String, out: String) {
        self.train = train
        self.out = out
    }

    /// The study's recipe with `overrides` applied by the caller (`--recipe study`).
    public static let recipes = ["study"]

    /// The batch the study's learning rates (0.0375 after warm-up from 0.00085) were set for.
    public static let recipeBatch = 8

    /// The linear scaling rule (Goyal et al. 2017, as PySlowFast's configs apply it across batch sizes):
    /// the recipe's base and warm-up-start LRs are for `recipeBatch`; for another batch they scale by
    /// batch / recipeBatch. Applied when the learning rates are the recipe's defaults (no --lr,
    /// --warmup-start-lr or config BASE_LR given); returns the line that says so, or nil.
    public mutating func scaleLearningRateForBatch() -> String? {
        guard batch != Self.recipeBatch else { return nil }
        let f = Double(batch) / Double(Self.recipeBatch)
        let (base, start) = (lr, warmupStartLR)
        lr = base * f
        warmupStartLR = start * f
        return String(format: "learning rate scaled for batch %d (linear scaling rule; the recipe's rates are for batch %d): "
            + "base %g x %d/%d = %g, warm-up start %g -> %g; --lr sets it yourself", batch, Self.recipeBatch, base, batch,
            Self.recipeBatch, lr, start, warmupStartLR)
    }

    public func problems() -> [String] {
        var p: [String] = []
        if initKind == .weights && weights == nil { p.append("--weights is required unless --init scratch") }
        if epochs < 1 { p.append("--epochs must be >= 1") }
        if batch < 1 { p.append("--batch must be >= 1") }
        if !(lr > 0) { p.append("--lr must be > 0") }
        if !["sgd", "adamw"].contains(optimizer) { p.append("--optimizer must be sgd or adamw, is \(optimizer)") }
        if !(layerDecay > 0 && layerDecay <= 1) { p.append("--layer-decay must be in (0, 1], is \(layerDecay)") }
        if !(dropPath >= 0 && dropPath < 1) { p.append("--drop-path must be in [0, 1), is \(dropPath)") }
        if !(labelSmoothing >= 0 && labelSmoothing < 1) { p.append("--label-smoothing must be in [0, 1), is \(labelSmoothing)") }
        if !(adamBeta1 >= 0 && adamBeta1 < 1 && adamBeta2 >= 0 && adamBeta2 < 1) { p.append("AdamW betas must be in [0, 1)") }
        if warmupEpochs < 0 { p.append("--warmup-epochs must be >= 0") }
        if !(0 ..< 1).contains(dropout) { p.append("--dropout must be in [0, 1)") }
        if frames < 1 || samplingRate < 1 { p.append("--frames and --sampling-rate must be >= 1") }
        // The network's stride is 32; whether the crop must also be a multiple of it depends on the family
        // (FinetuneRun.checkCrops, once the architecture is known).
        if crop < 32 { p.append("--crop must be at least 32 (the network's stride)") }
        if jitterMin < crop || jitterMax < jitterMin { p.append("--jitter MIN MAX needs crop <= MIN <= MAX") }
        if threads < 1 || workers < 1 { p.append("--threads and --workers must be >= 1") }
        if cacheViews < 1 { p.append("--cache-views must be >= 1") }
        if preciseBN < 0 { p.append("--precise-bn must be >= 0 (0: off)") }
        if !["constant", "cosine", "steps"].contains(schedule) { p.append("--schedule must be constant, cosine or steps") }
        if schedule == "steps" && (lrSteps.isEmpty || lrSteps.count != lrRelative.count) {
            p.append("the steps schedule needs as many step epochs as relative LRs (--lr-steps E:F ...)")
        }
        if let c = testCrop, c < 32 { p.append("the test crop must be at least 32 (the network's stride)") }
        if mean.count != 3 || std.count != 3 || std.contains(where: { !($0 > 0) }) { p.append("mean and std take 3 values each, std > 0") }
        // Upper bounds: values from a config file or the command line must not overflow the clip, batch and
        // buffer arithmetic downstream (a crafted YAML with BATCH_SIZE 2^63-1 trapped before these).
        func atMost(_ v: Int, _ limit: Int, _ what: String) { if v > limit { p.append("\(what) is \(v), at most \(limit)") } }
        atMost(epochs, 100_000, "--epochs (SOLVER.MAX_EPOCH)")
        atMost(batch, 4096, "--batch (TRAIN.BATCH_SIZE)")
        atMost(frames, 512, "--frames (DATA.NUM_FRAMES)")
        atMost(samplingRate, 1024, "--sampling-rate (DATA.SAMPLING_RATE)")
        atMost(crop, 4096, "--crop (DATA.TRAIN_CROP_SIZE)")
        atMost(jitterMax, 4096, "--jitter MAX (DATA.TRAIN_JITTER_SCALES)")
        atMost(testCrop ?? 0, 4096, "the test crop (DATA.TEST_CROP_SIZE)")
        atMost(threads, 1024, "--threads")
        atMost(workers, 256, "--workers")
        if let mb = frameCacheMB {
            if mb < 0 { p.append("--frame-cache-mb must be >= 0 (0: no cache)") }
            atMost(mb, 1 << 30, "--frame-cache-mb")
        }
        atMost(cacheViews, 1000, "--cache-views")
        atMost(preciseBN, 1_000_000, "--precise-bn (BN.NUM_BATCHES_PRECISE)")
        atMost(valSpatialCrops, 3, "validation spatial crops")
        atMost(valTemporalViews, 100, "validation temporal views")
        atMost(testSpatialCrops ?? 1, 3, "test spatial crops (TEST.NUM_SPATIAL_CROPS)")
        atMost(testTemporalViews ?? 1, 100, "test temporal views (TEST.NUM_ENSEMBLE_VIEWS)")
        if !(warmupEpochs <= 100_000) { p.append("--warmup-epochs (SOLVER.WARMUP_EPOCHS) must be at most 100000") }
        if lrSteps.contains(where: { !($0 >= 0 && $0 <= 100_000) }) { p.append("LR step epochs (SOLVER.STEPS) must be in 0...100000") }
        return p
    }
}
