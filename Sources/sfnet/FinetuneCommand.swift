// `sfnet finetune`: thin wrapper over Finetune.FinetuneRun.

import ArgumentParser
import Families
import Finetune
import Formats
import Foundation

struct FinetuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Fine-tune converted, verified weights (or a fresh network) on a video data set.",
        discussion: """
        Defaults are the study's recipe: batch 8, 20 epochs, SGD momentum 0.9 (Nesterov), weight decay 1e-4
        (none on BN and biases), dropout 0.5, sigmoid + binary cross-entropy, learning rate warmed up from
        0.00085 to 0.0375 over 5 epochs then constant, 8 frames at sampling rate 2, jitter [256, 340], crop 256.
        The run directory gets checkpoint-epochNNN.safetensors each epoch (weights, optimizer, schedule, state;
        written atomically; the last two kept), best.safetensors (by val mAP; native weights with class names),
        metrics.json, metrics.csv and report.html; the files of an epoch are written in the background while the
        next one trains. Each epoch line says where its time went (data, step, validation, checkpoint). Each video
        is decoded once and its frames kept for the run, within --frame-cache-mb. A killed run continues with --resume. When the data set's
        classes differ from the weights' head, the head is replaced (fresh) and the run records it. Weights
        without a passing `sfnet verify` record are refused unless --skip-verify.
        Data sets are CSV manifests (path,labels with names or ids, ';' for several; paths relative to the manifest)
        or Charades / Animal Kingdom frame lists (header 'original_vido_id video_id frame_id path labels', told by
        that header; frame paths relative to --frame-root, default the list's folder), sampled by PySlowFast's
        Charades rule. --classes takes a one-name-per-line file or an .xlsx (Animal Kingdom's df_action.xlsx).
        Examples:
          sfnet finetune --weights k400.safetensors --train data/train.csv --val data/val.csv --test data/test.csv --out runs/k400
          sfnet finetune --init scratch --arch slowfast-r50-8x8 --train train.csv --val val.csv --out runs/scratch --epochs 40
          sfnet finetune --weights k400.safetensors --train train.csv --val val.csv --out runs/head --freeze 's*' --lr 0.1
          sfnet finetune --weights k400.safetensors --train train.csv --val val.csv --out runs/k400 --resume
          sfnet finetune --weights k400.safetensors --train train.csv --val val.csv --out runs/k400 --frame-cache-mb 2048
          sfnet finetune --config configs/AK/SLOWFAST_8x8_R50.yaml --weights k400.safetensors --out runs/ak --epochs 5
          sfnet finetune --config configs/AK/SLOWFAST_8x8_R50.yaml --init scratch --print-config
        A PySlowFast --config supplies the architecture and the recipe (README "sfnet finetune --config" lists the
        keys used, ignored and refused); options given on the command line override it.
          sfnet finetune --weights k400.safetensors --train AK/annotation/train.csv --val AK/annotation/val.csv \\
              --frame-root AK/dataset/image --classes AK/annotation/df_action.xlsx --out runs/ak
        """)

    @Option(help: "Start weights (native, from `sfnet convert`).") var weights: String?
    @Option(name: .customLong("init"), help: "weights (from --weights) or scratch (fresh --arch).") var initKind = InitKind.weights
    @Option(help: "Architecture preset (or sfnet.arch JSON) for --init scratch (default slowfast-r50-8x8, or the --config's).") var arch: String?
    @Option(help: "Training data: CSV manifest or frame list (default with --config: DATA.PATH_TO_DATA_DIR/train.csv).") var train: String?
    @Option(help: "Validation data (CSV manifest or frame list); val mAP per epoch picks best.safetensors.") var val: String?
    @Option(help: "Test data (CSV manifest or frame list): the best weights are evaluated on it at the end.") var test: String?
    @Option(help: "Run directory.") var out: String?
    @Flag(help: "Continue the run in --out from its last complete checkpoint.") var resume = false
    @Flag(name: .customLong("skip-verify"), help: "Accept weights without a passing verification record (recorded in the run).") var skipVerify = false
    @Option(name: .customLong("stop-after"), help: .hidden) var stopAfter: Int?
    @OptionGroup var recipe: RecipeOptions

    func validate() throws {
        if initKind == .weights && weights == nil { throw ValidationError("--weights is required (or --init scratch)") }
        if initKind == .scratch && weights != nil { throw ValidationError("--init scratch takes no --weights") }
        if out == nil && !recipe.printConfig { throw ValidationError("--out is required") }
    }

    /// The effective options and where each came from.
    func options() throws -> (FinetuneOptions, SettingSources) {
        var o = FinetuneOptions(train: "", out: out ?? "")
        o.weights = weights; o.initKind = initKind; o.resume = resume; o.skipVerify = skipVerify; o.maxEpochsThisRun = stopAfter
        var given = ["init"] + (weights == nil ? [] : ["weights"])
        if let arch { o.arch = arch; o.architecture = nil; given.append("arch") }
        var sources = try recipe.resolve(into: &o, commandLine: given)
        if let arch { o.arch = arch; o.architecture = nil }
        if let train { o.train = train; sources.set("train", "command line") }
        if let val { o.val = val; sources.set("val", "command line") }
        if let test { o.test = test; sources.set("test", "command line") }
        applyPresetClip(&o, &sources)
        applyFamilyRecipe(&o, &sources)
        return (o, sources)
    }

    /// The architecture the run starts from, when known before the run: --arch's preset, or the weights' sfnet.arch.
    func startArchitecture() -> ArchConfig? {
        if let arch, let preset = ArchConfig.preset(named: arch) { return preset }
        if let weights, let ck = try? CheckpointReader.read(path: weights) { return (try? NativeMetadata.architecture(in: ck)) ?? nil }
        return nil
    }

    /// A transformer starts with the recipe VideoMAE and TimeSformer are fine-tuned with (FinetuneOptions.transformerRecipe)
    /// for every setting the user (or a config) did not set, and the network's own clip (its position tables' grid).
    func applyFamilyRecipe(_ o: inout FinetuneOptions, _ sources: inout SettingSources) {
        guard let a = startArchitecture(), a.model.isTransformer else { return }
        o.applyTransformerRecipe(arch: a, sources: &sources)
    }

    /// A preset with its own training clip (X3D's): its frames, sampling rate, crop, jitter and test crop
    /// for every one of them the user (or a config) did not set. The preset comes from --arch, or from the
    /// weights' sfnet.arch.
    func applyPresetClip(_ o: inout FinetuneOptions, _ sources: inout SettingSources) {
        var preset = arch.flatMap { ArchConfig.preset(named: $0) != nil ? $0 : nil }
        if preset == nil, let weights, let ck = try? CheckpointReader.read(path: weights) {
            preset = (try? NativeMetadata.architecture(in: ck))??.preset
        }
        guard let preset, let clip = ArchConfig.clipRecipe(preset: preset) else { return }
        let origin = "the \(preset) preset"
        if sources["frames"] == "default" { o.frames = clip.frames; sources.set("frames", origin) }
        if sources["sampling-rate"] == "default" { o.samplingRate = clip.samplingRate; sources.set("sampling-rate", origin) }
        if sources["crop"] == "default" { o.crop = clip.trainCrop; sources.set("crop", origin) }
        if sources["jitter"] == "default" {
            (o.jitterMin, o.jitterMax) = (max(clip.jitter.min, o.crop), max(clip.jitter.max, o.crop))
            sources.set("jitter", origin)
        }
        if sources["test-crop"] == "default" { o.testCrop = clip.testCrop; sources.set("test-crop", origin) }
    }

    func run() throws {
        let (o, sources) = try options()
        if recipe.printConfig { Terminal.write(o.printedConfig(sources: sources)); return }
        guard !o.train.isEmpty else { throw ValidationError("--train is required (or a --config with DATA.PATH_TO_DATA_DIR)") }
        let console = FinetuneConsole(epochs: o.epochs)
        let s = try FinetuneRun(o, onEvent: console.handle).run()
        var text = ""
        if let epoch = s.bestEpoch, let mAP = s.bestMAP, FileManager.default.fileExists(atPath: s.best) {
            text += String(format: "best val mAP %.1f%% at epoch %d -> %@\n", mAP * 100, epoch, s.best)
        }
        else if FileManager.default.fileExists(atPath: s.best) { text += "weights of the last epoch -> \(s.best)\n" }
        if let e = s.record.evaluation {
            text += String(format: "test: mAP %@, top-1 %.1f%%, top-5 %.1f%% on %d clips\n", e.mAP.map { String(format: "%.1f%%", $0 * 100) } ?? "n/a", e.top1 * 100, e.top5 * 100, e.clips)
        }
        text += "report: \(URL(fileURLWithPath: s.runDirectory).appendingPathComponent("report.html").path)\n"
        Terminal.write(text)
    }
}
