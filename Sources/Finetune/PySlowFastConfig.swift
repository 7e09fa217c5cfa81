// A PySlowFast config (yacs YAML, slowfast/config/defaults.py keys) as fine-tuning settings.
// Every key is used (it sets an sfnet setting), ignored (it does not change results, or only
// where a refused key would), or refused (it would change results in a way sfnet does not
// implement) — one table, one line per key or section. Keys the file leaves out take PySlowFast's
// defaults, as a PySlowFast run would. Scalars are typed as PyYAML (YAML 1.1) + yacs read them:
// `True`/`False`/`yes`/`no`/`on`/`off` are booleans, `1e-4` is a number (yacs' literal_eval).

import Families
import Convert
import Foundation

public struct PySlowFastConfig {
    public let file: String
    /// The file's leaf keys ("SOLVER.BASE_LR") in file order, with their values.
    public let entries: [(key: String, value: YAMLNode)]

    public static func load(_ path: String) throws -> PySlowFastConfig {
        try PySlowFastConfig(file: path, root: YAMLData.load(path))
    }

    public init(file: String, root: YAMLNode) throws {
        self.file = file
        guard case .mapping = root else {
            throw YAMLError(.notAMapping, file: file, line: root.line, "a PySlowFast config is a mapping of sections (TRAIN:, DATA:, SOLVER:, ...)")
        }
        entries = Self.flatten(root, prefix: "")
    }

    /// Leaf keys: a mapping's entries recursively; sequences and scalars are values.
    static func flatten(_ node: YAMLNode, prefix: String) -> [(key: String, value: YAMLNode)] {
        guard case .mapping(let es, _) = node else { return [(prefix, node)] }
        return es.flatMap { flatten($0.value, prefix: prefix.isEmpty ? $0.key : prefix + "." + $0.key) }
    }

    /// PySlowFast's defaults (slowfast/config/defaults.py) for the keys sfnet uses: what a run of a
    /// config that leaves them out gets.
    static let pyslowfastDefaults = """
    TRAIN: {DATASET: kinetics, BATCH_SIZE: 64}
    DATA: {PATH_TO_DATA_DIR: "", PATH_PREFIX: "", NUM_FRAMES: 8, SAMPLING_RATE: 8, MEAN: [0.45, 0.45, 0.45], STD: [0.225, 0.225, 0.225],
           TRAIN_JITTER_SCALES: [256, 320], TRAIN_CROP_SIZE: 224, TEST_CROP_SIZE: 256, INV_UNIFORM_SAMPLE: False,
           ENSEMBLE_METHOD: sum, REVERSE_INPUT_CHANNEL: False}
    SOLVER: {BASE_LR: 0.1, LR_POLICY: cosine, COSINE_END_LR: 0.0, COSINE_AFTER_WARMUP: False, STEPS: [], LRS: [], MAX_EPOCH: 300,
             MOMENTUM: 0.9, NESTEROV: True, WEIGHT_DECAY: 1e-4, WARMUP_EPOCHS: 0.0, WARMUP_START_LR: 0.01}
    MODEL: {ARCH: slowfast, NUM_CLASSES: 400, LOSS_FUNC: cross_entropy, HEAD_ACT: softmax, DROPOUT_RATE: 0.5}
    RESNET: {DEPTH: 50, NUM_GROUPS: 1, WIDTH_PER_GROUP: 64, STRIDE_1X1: False, SPATIAL_STRIDES: [[1], [2], [2], [2]],
             NUM_BLOCK_TEMP_KERNEL: [[3], [4], [6], [3]]}
    SLOWFAST: {ALPHA: 8, BETA_INV: 8, FUSION_CONV_CHANNEL_RATIO: 2, FUSION_KERNEL_SZ: 5}
    TEST: {NUM_ENSEMBLE_VIEWS: 10, NUM_SPATIAL_CROPS: 3}
    BN: {USE_PRECISE_STATS: False, NUM_BATCHES_PRECISE: 200}
    RNG_SEED: 1
    """

    /// Applies the config to `o`: PySlowFast's default for every used key the file lacks, then the
    /// file's keys; records each in `o.fromConfig` / `o.ignoredConfigKeys` and in `sources`.
    public func apply(to o: inout FinetuneOptions, sources: inout SettingSources) throws {
        var draft = Draft()
        let defaults = try PySlowFastConfig(file: "PySlowFast defaults", root: YAMLData.parse(Data(Self.pyslowfastDefaults.utf8), file: "PySlowFast defaults"))
        let given = Set(entries.map(\.key))
        // Refused and unknown keys first, so that an error names the key before any setting is taken.
        var used: [(ConfigValue, Use)] = []
        for (key, node) in entries {
            let v = ConfigValue(key: key, node: node, file: file)
            switch Self.rule(for: key) {
            case .use(let u)?: used.append((v, u))
            case .ignore(let reason)?:
                o.ignoredConfigKeys.append(ConfigSetting(key: key, value: v.text, line: v.line, setting: reason))
            case .refuse(let allowed, let reason)?:
                guard try allowed(v) else { throw v.refused(reason) }
                o.ignoredConfigKeys.append(ConfigSetting(key: key, value: v.text, line: v.line, setting: "matches sfnet (other values are refused: \(reason))"))
            case nil:
                throw FinetuneError("\(file):\(v.line): \(key) is not a PySlowFast config key",
                                    hint: "PySlowFast would refuse it too; check the spelling against slowfast/config/defaults.py")
            }
        }
        for (key, node) in defaults.entries where !given.contains(key) {
            guard case .use(let u)? = Self.rule(for: key) else { continue }
            let v = ConfigValue(key: key, node: node, file: defaults.file)
            try u.apply(v, &draft, &o)
            for s in u.settings { sources.set(s, "PySlowFast default \(key)") }
        }
        for (v, u) in used {
            try u.apply(v, &draft, &o)
            for s in u.settings { sources.set(s, "file \(v.key) (line \(v.line))") }
            o.fromConfig.append(ConfigSetting(key: v.key, value: v.text, line: v.line, setting: u.settings.joined(separator: ", ")))
        }
        try draft.finish(into: &o, file: file)
        o.configFile = file
    }

    // MARK: the key table

    struct Use: Sendable {
        var settings: [String]
        var apply: @Sendable (ConfigValue, inout Draft, inout FinetuneOptions) throws -> Void
    }

    enum Rule: Sendable {
        case use(Use)
        case ignore(String)
        /// Accepted (and listed as ignored) only where `allowed`; otherwise an error with the reason.
        case refuse(allowed: @Sendable (ConfigValue) throws -> Bool, String)
    }

    static func use(_ settings: String..., apply: @escaping @Sendable (ConfigValue, inout Draft, inout FinetuneOptions) throws -> Void) -> Rule {
        .use(Use(settings: settings, apply: apply))
    }
    static func refuse(unless allowed: @escaping @Sendable (ConfigValue) throws -> Bool, _ reason: String) -> Rule { .refuse(allowed: allowed, reason) }
    static func falseOnly(_ reason: String) -> Rule { refuse(unless: { try !$0.bool() }, reason) }

    /// The rule of a key: the exact key first, then its section's `SECTION.*` line.
    static func rule(for key: String) -> Rule? {
        if let r = table[key] { return r }
        var parts = key.split(separator: ".").map(String.init)
        while parts.count > 1 {
            parts.removeLast()
            if let r = table[parts.joined(separator: ".") + ".*"] { return r }
        }
        return nil
    }

    static let oneProcess = "sfnet trains in one process; TRAIN.BATCH_SIZE is the whole batch, as in PySlowFast"
    static let notUsedHere = "read only by parts of PySlowFast that a refused key would turn on"

    static let table: [String: Rule] = [
        // TRAIN
        "TRAIN.DATASET": use("train", "val") { v, d, _ in
            let s = try v.string()
            guard ["charades", "kinetics"].contains(s.lowercased()) else { throw v.refused("sfnet reads Charades-style frame lists and CSV manifests (charades, kinetics)") }
            d.dataset = s.lowercased()
        },
        "TRAIN.BATCH_SIZE": use("batch") { v, _, o in o.batch = try v.int() },
        "TRAIN.ENABLE": .ignore("`sfnet finetune` always trains; evaluation alone is `sfnet eval`"),
        "TRAIN.EVAL_PERIOD": .ignore("sfnet validates every epoch (training is not affected)"),
        "TRAIN.CHECKPOINT_PERIOD": .ignore("sfnet writes a checkpoint every epoch and keeps the last two"),
        "TRAIN.AUTO_RESUME": .ignore("resuming is --resume"),
        "TRAIN.CHECKPOINT_FILE_PATH": .ignore("start weights are --weights (convert the checkpoint with `sfnet convert`)"),
        "TRAIN.CHECKPOINT_TYPE": .ignore("`sfnet convert` reads caffe2 and pytorch checkpoints"),
        "TRAIN.CHECKPOINT_INFLATE": .ignore("inflation is `sfnet convert --inflate`"),
        "TRAIN.CHECKPOINT_EPOCH_RESET": .ignore("a fine-tuning run starts at epoch 0"),
        "TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN": .ignore("key renaming is `sfnet convert`'s"),
        // DATA
        "DATA.PATH_TO_DATA_DIR": use("train", "val") { v, d, _ in d.dataDir = try v.string() },
        "DATA.PATH_PREFIX": use("frame-root") { v, _, o in let s = try v.string(); o.frameRoot = s.isEmpty ? nil : s },
        "DATA.NUM_FRAMES": use("frames") { v, _, o in o.frames = try v.int() },
        "DATA.SAMPLING_RATE": use("sampling-rate") { v, _, o in o.samplingRate = try v.int() },
        "DATA.MEAN": use("mean") { v, _, o in o.mean = try v.doubles(count: 3) },
        "DATA.STD": use("std") { v, _, o in o.std = try v.doubles(count: 3) },
        "DATA.TRAIN_JITTER_SCALES": use("jitter") { v, _, o in let j = try v.ints(count: 2); (o.jitterMin, o.jitterMax) = (j[0], j[1]) },
        "DATA.TRAIN_CROP_SIZE": use("crop") { v, _, o in o.crop = try v.int() },
        "DATA.TEST_CROP_SIZE": use("test-crop") { v, _, o in o.testCrop = try v.int() },
        "DATA.INV_UNIFORM_SAMPLE": use("inverse-uniform-jitter") { v, _, o in o.inverseUniformJitter = try v.bool() },
        "DATA.REVERSE_INPUT_CHANNEL": use("bgr") { v, _, o in o.reverseChannels = try v.bool() },
        "DATA.ENSEMBLE_METHOD": use("ensemble") { v, _, o in
            guard let m = EnsembleMethod(rawValue: try v.string()), m != .mean else { throw v.refused("PySlowFast's methods are sum and max") }
            o.ensemble = m
        },
        "DATA.MULTI_LABEL": .ignore("sfnet reads multi-hot labels and reports mAP and top-1 whatever its value (the loss is MODEL.LOSS_FUNC)"),
        "DATA.PATH_LABEL_SEPARATOR": .ignore("PySlowFast's Kinetics lists only; sfnet reads CSV manifests and Charades frame lists"),
        "DATA.DECODING_BACKEND": .ignore("sfnet decodes with FFmpeg (frame folders with its JPEG decoder)"),
        "DATA.PATH_TO_PRELOAD_IMDB": .ignore("ImageNet data sets only"),
        "DATA.INPUT_CHANNEL_NUM": refuse(unless: { try $0.ints().allSatisfy { $0 == 3 } }, "sfnet's networks take 3-channel frames"),
        "DATA.TARGET_FPS": refuse(unless: { try $0.double() == 30 }, "sfnet samples clips on a 30 fps timeline"),
        "DATA.RANDOM_FLIP": refuse(unless: { try $0.bool() }, "sfnet always flips training clips with p 0.5"),
        "DATA.TRAIN_PCA_EIGVAL": refuse(unless: { try $0.doubles() == [0.225, 0.224, 0.229] }, "sfnet's PCA lighting uses PySlowFast's default eigenvalues"),
        "DATA.TRAIN_PCA_EIGVEC": refuse(unless: { try $0.doubleLists() == [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]] },
                                        "sfnet's PCA lighting uses PySlowFast's default eigenvectors"),
        "DATA.USE_OFFSET_SAMPLING": falseOnly("offset (stride-length) temporal sampling is not implemented"),
        "DATA.TRAIN_JITTER_MOTION_SHIFT": falseOnly("motion-shift jitter is not implemented"),
        "DATA.TRAIN_JITTER_SCALES_RELATIVE": refuse(unless: { try $0.doubles().isEmpty }, "Inception-style area jitter is not implemented"),
        "DATA.TRAIN_JITTER_ASPECT_RELATIVE": refuse(unless: { try $0.doubles().isEmpty }, "Inception-style aspect jitter is not implemented"),
        // SOLVER
        "SOLVER.BASE_LR": use("lr") { v, _, o in o.lr = try v.double() },
        "SOLVER.LR_POLICY": use("schedule") { v, _, o in
            switch try v.string() {
            case "cosine": o.schedule = "cosine"
            case "steps_with_relative_lrs": o.schedule = "steps"
            case "constant": o.schedule = "constant"
            default: throw v.refused("sfnet's LR policies are cosine, steps_with_relative_lrs and constant")
            }
        },
        "SOLVER.STEPS": use("lr-steps") { v, _, o in o.lrSteps = try v.doubles() },
        "SOLVER.LRS": use("lr-steps") { v, _, o in o.lrRelative = try v.doubles() },
        "SOLVER.COSINE_END_LR": use("cosine-end-lr") { v, _, o in o.cosineEndLR = try v.double() },
        "SOLVER.COSINE_AFTER_WARMUP": use("cosine-after-warmup") { v, _, o in o.cosineAfterWarmup = try v.bool() },
        "SOLVER.MAX_EPOCH": use("epochs") { v, _, o in o.epochs = try v.int() },
        "SOLVER.MOMENTUM": use("momentum") { v, _, o in o.momentum = Float(try v.double()) },
        "SOLVER.NESTEROV": use("nesterov") { v, _, o in o.nesterov = try v.bool() },
        "SOLVER.WEIGHT_DECAY": use("weight-decay") { v, _, o in o.weightDecay = Float(try v.double()) },
        "SOLVER.WARMUP_EPOCHS": use("warmup-epochs") { v, _, o in o.warmupEpochs = try v.double() },
        "SOLVER.WARMUP_START_LR": use("warmup-start-lr") { v, _, o in o.warmupStartLR = try v.double() },
        "SOLVER.WARMUP_FACTOR": .ignore("PySlowFast's warm-up starts at WARMUP_START_LR; WARMUP_FACTOR is read by no LR policy"),
        "SOLVER.GAMMA": .ignore("read by no LR policy sfnet accepts"),
        "SOLVER.STEP_SIZE": .ignore("read by no LR policy sfnet accepts"),
        "SOLVER.DAMPENING": refuse(unless: { try $0.double() == 0 }, "sfnet's SGD has no momentum dampening"),
        "SOLVER.OPTIMIZING_METHOD": refuse(unless: { try $0.string() == "sgd" }, "sfnet trains with SGD"),
        "SOLVER.BASE_LR_SCALE_NUM_SHARDS": falseOnly("sfnet runs on one machine: scale SOLVER.BASE_LR yourself"),
        "SOLVER.ZERO_WD_1D_PARAM": .ignore("sfnet never decays BN parameters or biases (ZERO_WD_1D_PARAM True); with False PySlowFast also decays the head's bias"),
        // MODEL
        "MODEL.ARCH": use("arch") { v, d, _ in
            let s = try v.string()
            guard ["slowfast", "slow"].contains(s) else {
                throw v.refused("sfnet builds slowfast and slow (c2d, i3d, x3d, mvit have temporal kernels, pooling or blocks it lacks)")
            }
            d.arch = s
        },
        "MODEL.MODEL_NAME": refuse(unless: { ["SlowFast", "ResNet"].contains(try $0.string()) }, "sfnet builds PySlowFast's SlowFast and ResNet models"),
        "MODEL.NUM_CLASSES": use("arch") { v, d, _ in d.numClasses = try v.int() },
        "MODEL.LOSS_FUNC": use("loss") { v, d, o in
            switch try v.string() {
            case "bce_loss", "bce", "bce_logit": o.loss = .bce
            case "cross_entropy": o.loss = .ce
            default: throw v.refused("sfnet's losses are binary cross-entropy (bce_loss, bce, bce_logit) and cross_entropy")
            }
            d.lossLine = v
        },
        "MODEL.HEAD_ACT": use("loss") { v, d, _ in
            let s = try v.string()
            guard ["sigmoid", "softmax"].contains(s) else { throw v.refused("sfnet's heads are sigmoid and softmax") }
            d.headAct = v
        },
        "MODEL.DROPOUT_RATE": use("dropout") { v, _, o in o.dropout = try v.double() },
        "MODEL.DROPCONNECT_RATE": refuse(unless: { try $0.double() == 0 }, "drop-connect is not implemented"),
        "MODEL.FC_INIT_STD": refuse(unless: { try $0.double() == 0.01 }, "sfnet initialises a new head with std 0.01"),
        "MODEL.SINGLE_PATHWAY_ARCH": .ignore("PySlowFast's list of names"),
        "MODEL.MULTI_PATHWAY_ARCH": .ignore("PySlowFast's list of names"),
        // RESNET
        "RESNET.DEPTH": use("arch") { v, d, _ in d.depth = try v.int() },
        "RESNET.TRANS_FUNC": refuse(unless: { try $0.string() == "bottleneck_transform" }, "sfnet's blocks are bottlenecks"),
        "RESNET.NUM_GROUPS": use("arch") { v, d, _ in d.numGroups = try v.int() },
        "RESNET.WIDTH_PER_GROUP": use("arch") { v, d, _ in d.widthPerGroup = try v.int() },
        "RESNET.STRIDE_1X1": use("arch") { v, d, _ in d.stride1x1 = try v.bool() },
        "RESNET.SPATIAL_STRIDES": use("arch") { v, d, _ in d.spatialStrides = (try v.intLists(), v) },
        "RESNET.NUM_BLOCK_TEMP_KERNEL": use("arch") { v, d, _ in d.blockTempKernel = (try v.intLists(), v) },
        "RESNET.SPATIAL_DILATIONS": refuse(unless: { try $0.intLists().joined().allSatisfy { $0 == 1 } }, "dilated stages are not implemented"),
        "RESNET.INPLACE_RELU": .ignore("memory only"),
        "RESNET.ZERO_INIT_FINAL_BN": .ignore("initialisation only: fine-tuning starts from --weights; --init scratch uses PySlowFast's default init"),
        // SLOWFAST
        "SLOWFAST.ALPHA": use("arch") { v, d, _ in d.alpha = try v.int() },
        "SLOWFAST.BETA_INV": use("arch") { v, d, _ in d.betaInv = try v.int() },
        "SLOWFAST.FUSION_CONV_CHANNEL_RATIO": use("arch") { v, d, _ in d.fusionRatio = try v.int() },
        "SLOWFAST.FUSION_KERNEL_SZ": use("arch") { v, d, _ in d.fusionKernel = try v.int() },
        // TEST
        "TEST.NUM_ENSEMBLE_VIEWS": use("test-views") { v, _, o in o.testTemporalViews = try v.int() },
        "TEST.NUM_SPATIAL_CROPS": use("test-views") { v, _, o in
            let n = try v.int()
            guard [1, 3].contains(n) else { throw v.refused("sfnet takes 1 (centre) or 3 spatial crops") }
            o.testSpatialCrops = n
        },
        "TEST.ENABLE": .ignore("the test set is evaluated when --test is given"),
        "TEST.DATASET": .ignore("the test set is --test (PySlowFast's Charades test reads val.csv)"),
        "TEST.BATCH_SIZE": .ignore("speed only: evaluation batches do not change scores"),
        "TEST.CHECKPOINT_FILE_PATH": .ignore("evaluation weights are `sfnet eval --weights`"),
        "TEST.CHECKPOINT_TYPE": .ignore("`sfnet convert` reads caffe2 and pytorch checkpoints"),
        "TEST.SAVE_RESULTS_PATH": .ignore("`sfnet eval --scores` writes each video's scores"),
        // BN
        "BN.NORM_TYPE": refuse(unless: { ["batchnorm", "sync_batchnorm"].contains(try $0.string()) },
                               "sfnet's BN is batchnorm; sync_batchnorm over one process is the same (sub_batchnorm is not implemented)"),
        "BN.NUM_SYNC_DEVICES": .ignore(oneProcess),
        "BN.NUM_SPLITS": .ignore("sub_batchnorm only, which is refused"),
        "BN.USE_PRECISE_STATS": use("precise-bn") { v, d, _ in d.usePreciseStats = try v.bool() },
        "BN.NUM_BATCHES_PRECISE": use("precise-bn") { v, d, _ in d.preciseBatches = (try v.int(), v) },
        "BN.WEIGHT_DECAY": refuse(unless: { try $0.double() == 0 }, "sfnet never decays BN parameters"),
        // Sections that do not change results, or only with an ENABLE flag that is refused.
        "AUG.ENABLE": falseOnly("RandAugment / random erasing are not implemented"),
        "AUG.*": .ignore(notUsedHere + " (AUG.ENABLE)"),
        "MIXUP.ENABLE": falseOnly("mixup / cutmix are not implemented"),
        "MIXUP.*": .ignore(notUsedHere + " (MIXUP.ENABLE)"),
        "DETECTION.ENABLE": falseOnly("detection (AVA) is not implemented"),
        "DETECTION.*": .ignore(notUsedHere + " (DETECTION.ENABLE)"),
        "AVA.*": .ignore("AVA detection data only"),
        "MULTIGRID.LONG_CYCLE": falseOnly("multigrid training is not implemented"),
        "MULTIGRID.SHORT_CYCLE": falseOnly("multigrid training is not implemented"),
        "MULTIGRID.*": .ignore(notUsedHere + " (MULTIGRID.LONG_CYCLE / SHORT_CYCLE)"),
        "NONLOCAL.LOCATION": refuse(unless: { v in
            // [[[]], [[]], [[]], [[]]] (or [[[], []], ...]): no non-local block anywhere.
            guard case .sequence(let stages, _) = v.node else { return false }
            return stages.allSatisfy { s in
                guard case .sequence(let paths, _) = s else { return false }
                return paths.allSatisfy { if case .sequence(let b, _) = $0 { return b.isEmpty } else { return false } }
            }
        }, "non-local blocks are not implemented"),
        "NONLOCAL.*": .ignore(notUsedHere + " (NONLOCAL.LOCATION)"),
        "X3D.*": .ignore("X3D models only (MODEL.ARCH x3d is refused)"),
        "MVIT.*": .ignore("MViT models only (MODEL.ARCH mvit is refused)"),
        "DATA_LOADER.*": .ignore("loading speed only; sfnet's loader threads are --workers"),
        "TENSORBOARD.*": .ignore("visualisation only"),
        "DEMO.*": .ignore("PySlowFast's demo only"),
        "BENCHMARK.*": .ignore("data-loading benchmark only"),
        "NUM_GPUS": .ignore(oneProcess),
        "NUM_SHARDS": .ignore(oneProcess),
        "SHARD_ID": .ignore(oneProcess),
        "DIST_BACKEND": .ignore(oneProcess),
        "OUTPUT_DIR": .ignore("the run directory is --out"),
        "LOG_PERIOD": .ignore("logging only"),
        "LOG_MODEL_INFO": .ignore("logging only"),
        "RNG_SEED": use("seed") { v, _, o in
            let s = try v.int()
            guard s >= 0 else { throw v.refused("seeds are >= 0") }
            o.seed = UInt64(s)
        },
    ]

    // MARK: the architecture, assembled once every key is in

    struct Draft {
        var dataset = "kinetics"
        var dataDir = ""
        var arch = "slowfast"
        var numClasses = 400
        var depth = 50
        var numGroups = 1
        var widthPerGroup = 64
        var stride1x1 = false
        var spatialStrides: ([[Int]], ConfigValue)?
        var blockTempKernel: ([[Int]], ConfigValue)?
        var alpha = 8, betaInv = 8, fusionRatio = 2, fusionKernel = 5
        var lossLine: ConfigValue?
        var headAct: ConfigValue?
        var usePreciseStats = false
        var preciseBatches: (Int, ConfigValue)?

        func finish(into o: inout FinetuneOptions, file: String) throws {
            // Data: PySlowFast's Charades and Kinetics loaders read train.csv / val.csv under PATH_TO_DATA_DIR.
            if !dataDir.isEmpty {
                o.train = (dataDir as NSString).appendingPathComponent("train.csv")
                o.val = (dataDir as NSString).appendingPathComponent("val.csv")
            }
            // get_step_index reads LRS[0 ..< len(STEPS)] before MAX_EPOCH; PySlowFast configs often list more.
            if o.schedule == "steps" {
                guard o.lrRelative.count >= o.lrSteps.count, !o.lrSteps.isEmpty else {
                    throw FinetuneError("\(file): SOLVER.STEPS has \(o.lrSteps.count) epochs but SOLVER.LRS \(o.lrRelative.count) factors",
                                        hint: "steps_with_relative_lrs needs a factor per step, the first step at epoch 0")
                }
                o.lrRelative = Array(o.lrRelative.prefix(o.lrSteps.count))
            }
            // Precise BN: NUM_BATCHES_PRECISE batches when USE_PRECISE_STATS, else off.
            o.preciseBN = 0
            if usePreciseStats, let (n, v) = preciseBatches {
                guard n >= 1 else { throw v.wrong("an integer >= 1 (BN.USE_PRECISE_STATS is True)") }
                o.preciseBN = n
            }
            // Loss and head: sfnet pairs sigmoid with binary cross-entropy and softmax with cross-entropy.
            let want = (try? headAct?.string()) ?? "softmax"
            let pairs = (o.loss == .bce && want == "sigmoid") || (o.loss == .ce && want == "softmax")
            if !pairs {
                let loss = lossLine.map { "MODEL.LOSS_FUNC \($0.text) (line \($0.line))" } ?? "PySlowFast's default MODEL.LOSS_FUNC cross_entropy"
                let head = headAct.map { $0.file == file ? "MODEL.HEAD_ACT \($0.text) (line \($0.line))" : "PySlowFast's default MODEL.HEAD_ACT softmax" }
                    ?? "MODEL.HEAD_ACT softmax"
                throw FinetuneError("\(file): \(loss) with \(head): sfnet pairs the sigmoid head with binary cross-entropy and the softmax head with cross_entropy",
                                    hint: o.loss == .bce ? "set MODEL.HEAD_ACT: sigmoid" : "set MODEL.HEAD_ACT: softmax")
            }
            // Stage depths, and the temporal kernel basis of each arch (PySlowFast video_model_builder).
            let depths: [Int]
            switch depth {
            case 50: depths = [3, 4, 6, 3]
            case 101: depths = [3, 4, 23, 3]
            case 152: depths = [3, 8, 36, 3]
            default: throw FinetuneError("\(file): RESNET.DEPTH \(depth) is not supported (50, 101 or 152: bottleneck ResNets)")
            }
            let pathways = arch == "slowfast" ? 2 : 1
            let kernels = arch == "slowfast" ? [[1, 5], [1, 3], [1, 3], [3, 3], [3, 3]] : [[1], [1], [1], [3], [3]]
            var strides = [1, 2, 2, 2]
            if let (s, v) = spatialStrides {
                guard s.count == 4, s.allSatisfy({ !$0.isEmpty && Set($0).count == 1 }) else {
                    throw v.refused("4 stages with the same stride on every pathway expected")
                }
                strides = s.map { $0[0] }
            }
            if let (k, v) = blockTempKernel {
                // Blocks past NUM_BLOCK_TEMP_KERNEL[stage][pathway] get temporal kernel 1 in PySlowFast; sfnet's
                // stages use one kernel for all their blocks, so every entry must cover its stage.
                guard k.count == 4, zip(k, depths).allSatisfy({ e, d in e.count >= 1 && e.prefix(pathways).allSatisfy { $0 >= d } }) else {
                    let why = "sfnet gives every block of a stage its temporal kernel: each entry must be >= the stage depth \(depths)"
                    guard v.file == file else {
                        throw FinetuneError("\(file): RESNET.DEPTH \(depth) with PySlowFast's default RESNET.NUM_BLOCK_TEMP_KERNEL \(v.text): \(why)",
                                            hint: "set RESNET.NUM_BLOCK_TEMP_KERNEL, as PySlowFast's R101 configs do")
                    }
                    throw v.refused(why)
                }
            }
            var a = ArchConfig(model: arch == "slowfast" ? .slowfast : .slow, depth: depth, stageDepths: depths, widthPerGroup: widthPerGroup,
                               numGroups: numGroups, alpha: alpha, betaInv: betaInv, fusionConvChannelRatio: fusionRatio, fusionKernel: fusionKernel,
                               temporalKernels: kernels, spatialStrides: strides, stride1x1: stride1x1, numClasses: numClasses,
                               dropout: o.dropout, headActivation: o.loss == .bce ? .sigmoid : .softmax, numFrames: o.frames, trainCrop: o.crop)
            a = a.withPresetName()
            o.architecture = a
        }
    }
}

/// One config value with its key and line, typed as PyYAML + yacs would.
struct ConfigValue: Sendable {
    let key: String
    let node: YAMLNode
    let file: String
    var line: Int { node.line }

    /// The value as written ("[256, 340]", "True").
    var text: String {
        switch node {
        case .scalar(let s): return s.plain ? s.text : "\"\(s.text)\""
        case .sequence(let xs, _): return "[" + xs.map { ConfigValue(key: key, node: $0, file: file).text }.joined(separator: ", ") + "]"
        case .mapping: return "{...}"
        }
    }

    func refused(_ reason: String) -> FinetuneError {
        FinetuneError("\(file):\(line): \(key): \(text) is not supported: \(reason)")
    }
    func wrong(_ expected: String) -> FinetuneError {
        FinetuneError("\(file):\(line): \(key): expected \(expected), found \(text)")
    }

    func scalar() throws -> YAMLScalar {
        guard case .scalar(let s) = node else { throw wrong("a single value") }
        return s
    }
    func string() throws -> String { try scalar().text }
    func bool() throws -> Bool {
        let s = try scalar()
        // YAML 1.1 booleans exactly as PyYAML resolves them (PySlowFast writes True / False).
        if s.plain && ["true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"].contains(s.text) { return true }
        if s.plain && ["false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"].contains(s.text) { return false }
        throw wrong("True or False")
    }
    func double() throws -> Double {
        let s = try scalar()
        guard s.plain, let d = Double(s.text.replacingOccurrences(of: "_", with: "")), d.isFinite,
              !s.text.lowercased().contains("inf"), !s.text.lowercased().contains("nan") else { throw wrong("a number") }
        return d
    }
    func int() throws -> Int {
        let s = try scalar()
        guard s.plain, let i = Int(s.text.replacingOccurrences(of: "_", with: "")) else { throw wrong("an integer") }
        return i
    }
    func items() throws -> [ConfigValue] {
        guard case .sequence(let xs, _) = node else { throw wrong("a list") }
        return xs.map { ConfigValue(key: key, node: $0, file: file) }
    }
    func doubles(count: Int? = nil) throws -> [Double] {
        let xs = try items().map { try $0.double() }
        if let count, xs.count != count { throw wrong("\(count) numbers") }
        return xs
    }
    func ints(count: Int? = nil) throws -> [Int] {
        let xs = try items().map { try $0.int() }
        if let count, xs.count != count { throw wrong("\(count) integers") }
        return xs
    }
    func intLists() throws -> [[Int]] { try items().map { try $0.ints() } }
    func doubleLists() throws -> [[Double]] { try items().map { try $0.doubles() } }
}
