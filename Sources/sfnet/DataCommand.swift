// `sfnet data split` and `sfnet data synth`: thin wrappers over Video.DataSplit and
// Video.SyntheticData.

import ArgumentParser
import Finetune
import Foundation
import Video

extension SyntheticTask: ExpressibleByArgument {}
extension SyntheticAppearance: ExpressibleByArgument {}

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Prepare data sets: reproducible splits of a manifest, and the synthetic demo set.",
        subcommands: [DataSplitCommand.self, DataSynthCommand.self])
}

struct DataSplitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "split",
        abstract: "Choose classes and sample N train / M val / K test clips per class with a seed; writes train.csv, val.csv, test.csv, classes.txt.",
        discussion: """
        Input: a CSV manifest (path,labels[,animals]) or an Animal Kingdom / Charades frame list, told apart by the
        frame list's header line (--manifest and --frame-list take either). A frame list is split into frame lists:
        the chosen videos' rows in their original order, frame paths exactly as the input gave them, so they stay
        relative to the same frame root: read the outputs back with the same --frame-root (or PySlowFast's same
        PATH_PREFIX). Labels are written as ids in the output's classes.txt. --class-list takes a one-name-per-line
        file or an .xlsx (Animal Kingdom's df_action.xlsx).
        Clips with more than one label (or, when the manifest says, more than one animal) are left out unless
        --keep-multi-label / --keep-multi-animal, as the study did.
        Examples:
          sfnet data split --manifest all.csv --classes walking,running,eating --train 100 --val 10 --test 10 -o data/
          sfnet data split --frame-list ak_train.csv --frame-root frames/ --class-list df_action.xlsx --train 10 --val 10 --test 10 --seed 3 -o data10/
          sfnet finetune --train data10/train.csv --val data10/val.csv --frame-root frames/ ...
        """)

    @Option(help: "Data set: CSV manifest or frame list.") var manifest: String?
    @Option(name: .customLong("frame-list"), help: "Animal Kingdom / Charades frame list (same as --manifest).") var frameList: String?
    @Option(name: .customLong("frame-root"), help: "Folder the frame list's paths are relative to (default: the list's folder).") var frameRoot: String?
    @Option(name: .customLong("class-list"), help: "Class list: names in id order, one per line, or an .xlsx.") var classList: String?
    @Option(name: .customLong("class-column"), help: "The .xlsx class list's column, by its header.") var classColumn: String?
    @Option(help: "Comma-separated classes to keep (default: all).") var classes: String?
    @Option(help: "Train clips per class.") var train: Int
    @Option(help: "Validation clips per class.") var val: Int
    @Option(help: "Test clips per class.") var test: Int
    @Option(help: "Seed.") var seed: UInt64 = 0
    @Flag(name: .customLong("keep-multi-label")) var keepMultiLabel = false
    @Flag(name: .customLong("keep-multi-animal")) var keepMultiAnimal = false
    @Option(name: .shortAndLong, help: "Output folder.") var output: String

    func validate() throws {
        if (manifest == nil) == (frameList == nil) { throw ValidationError("give exactly one of --manifest and --frame-list") }
        if train < 0 || val < 0 || test < 0 { throw ValidationError("--train/--val/--test must be >= 0") }
    }

    func run() throws {
        let list = try classList.map { try ClassList.load($0, column: classColumn) }
        let input = manifest ?? frameList!
        try Manifest.checkFrameRoot(frameRoot, for: [input])
        let ds = try Manifest.load(input, frameRoot: frameRoot, classes: list)
        let chosen = classes?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let r = try DataSplit.split(ds, SplitRequest(classes: chosen, train: train, val: val, test: test, seed: seed,
                                                     singleLabel: !keepMultiLabel, singleAnimal: !keepMultiAnimal))
        let paths = try DataSplit.write(r, to: output)
        var out = "split \(ds.samples.count) clips (\(ds.classes.count) classes) -> \(output): train \(r.train.samples.count), val \(r.val.samples.count), test \(r.test.samples.count) (\(r.train.classes.count) classes, seed \(seed))\n"
        out += "  \(paths.train)\n  \(paths.val)\n  \(paths.test)\n  \(paths.classes)\n"
        for s in r.shortfalls { out += "  note: \(s)\n" }
        if ds.samples.contains(where: { $0.listRows != nil }) {
            let root = frameRoot ?? URL(fileURLWithPath: input).deletingLastPathComponent().path
            out += "  frame lists: paths relative to \(root); read them back with --frame-root \(root)\n"
        }
        Terminal.write(out)
    }
}

struct DataSynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Generate a synthetic video set (the demo's target task, or its larger source task for pretraining) as real MP4s with manifests.",
        discussion: """
        --task target (default): flat rectangles on gradients moving across, bouncing, spinning or resting.
        --task source: the demo's stand-in for K400 pretraining, other classes with the same low-level structure:
        striped ellipses and diamonds on textured backgrounds drifting sideways or vertically, orbiting, swinging,
        shaking, flashing, growing or darting. --classes picks motions of either list; --appearance overrides the look.
        The folder gets train.csv, val.csv, test.csv, classes.txt and synthetic.json (every setting that made it).
        Examples:
          sfnet data synth -o demo-data --train-per-class 12 --val-per-class 4 --test-per-class 4 --size 64
          sfnet data synth -o source-task --task source --train-per-class 40 --val-per-class 4 --test-per-class 0 --seed 101
        """)

    @Option(name: .shortAndLong, help: "Output folder.") var output: String
    @Option(name: .customLong("train-per-class")) var trainPerClass = 8
    @Option(name: .customLong("val-per-class")) var valPerClass = 2
    @Option(name: .customLong("test-per-class")) var testPerClass = 2
    @Option(help: "Frame width and height.") var size = 64
    @Option(help: "Seconds per clip.") var seconds = 2.0
    @Option(help: "Maximum per-pixel noise (0-255 scale; each clip draws its level in [0, MAX]).") var noise = 12.0
    @Option(name: .customLong("object-scale"), help: "Object size relative to the default (larger: easier).") var objectScale = 1.0
    @Option(help: "target (moving_across,bouncing,spinning,resting; plain look) or source (\(SyntheticTask.source.classes.map(\.rawValue).joined(separator: ",")); textured look).")
    var task = SyntheticTask.target
    @Option(help: "Comma-separated motions (default: the task's; also pulsing).") var classes: String?
    @Option(help: "plain (flat rectangles on gradients) or textured (striped shapes on gratings); default: the task's.") var appearance: SyntheticAppearance?
    @Option(help: "Seed.") var seed: UInt64 = 0

    func validate() throws {
        if trainPerClass < 0 || valPerClass < 0 || testPerClass < 0 { throw ValidationError("clips per class must be >= 0") }
    }

    func run() throws {
        var o = SyntheticOptions(task: task)
        if let appearance { o.appearance = appearance; if appearance != task.appearance { o.task = nil } }
        o.maxNoise = noise
        o.objectScale = objectScale
        if let classes {
            o.classes = try classes.split(separator: ",").map { name in
                guard let m = SyntheticMotion(rawValue: String(name)) else {
                    throw ValidationError("--classes: unknown motion '\(name)' (one of \(SyntheticMotion.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                return m
            }
            if o.classes != task.classes { o.task = nil }
        }
        o.trainPerClass = trainPerClass; o.valPerClass = valPerClass; o.testPerClass = testPerClass
        o.width = size; o.height = size; o.seconds = seconds; o.seed = seed
        let start = Date()
        let s = try SyntheticData.generate(to: output, options: o)
        Terminal.write("wrote \(s.videos) videos in \(String(format: "%.1f", Date().timeIntervalSince(start))) s -> \(output)\n  \(s.train)\n  \(s.val)\n  \(s.test)\n  \(s.classes)\n  \(s.description)\n")
    }
}

struct ExperimentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "experiment",
        abstract: "The study's grid: every start fine-tuned on every training size, evaluated on one test set (Table 1).",
        discussion: """
        --starts lists 'scratch' and NAME=WEIGHTS entries; --per-class the training clips per class (subsets of
        --train drawn once per size with --seed). Each cell is a full `finetune` run under --out/NAME-N with its
        own report; --out/experiment.html links them and shows the table.
        Example:
          sfnet experiment --train data/train.csv --val data/val.csv --test data/test.csv \\
              --starts scratch,k400=k400.safetensors,imagenet=in1k_inflated.safetensors --per-class 10,100 --out runs/study
        """)

    @Option(help: "Training data, CSV manifest or frame list, the pool subsets are drawn from (default with --config: DATA.PATH_TO_DATA_DIR/train.csv).") var train: String?
    @Option(help: "Validation data (CSV manifest or frame list).") var val: String?
    @Option(help: "Test data (CSV manifest or frame list).") var test: String
    @Option(help: "Comma-separated starts: scratch and NAME=WEIGHTS.") var starts: String
    @Option(name: .customLong("per-class"), help: "Comma-separated training clips per class.") var perClass: String
    @Option(help: "Architecture preset for the scratch start (default slowfast-r50-8x8, or the --config's).") var arch: String?
    @Option(help: "Experiment directory.") var out: String
    @Flag(name: .customLong("skip-verify"), help: "Accept start weights without a passing verification record.") var skipVerify = false
    @OptionGroup var recipe: RecipeOptions

    func run() throws {
        let parsedStarts = try starts.split(separator: ",").map { try ExperimentStart(parsing: String($0)) }
        let sizes = perClass.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard sizes.count == perClass.split(separator: ",").count else { throw ValidationError("--per-class takes comma-separated integers") }
        var o = FinetuneOptions(train: "", out: out)
        o.skipVerify = skipVerify
        var sources = try recipe.resolve(into: &o, commandLine: arch == nil ? [] : ["arch"])
        if let arch { o.arch = arch; o.architecture = nil }
        if let train { o.train = train; sources.set("train", "command line") }
        if let val { o.val = val; sources.set("val", "command line") }
        o.test = test; sources.set("test", "command line")
        if recipe.printConfig { Terminal.write(o.printedConfig(sources: sources)); return }
        guard !o.train.isEmpty else { throw ValidationError("--train is required (or a --config with DATA.PATH_TO_DATA_DIR)") }
        var consoles: [String: FinetuneConsole] = [:]
        let r = try Experiment.run(base: o, starts: parsedStarts, perClass: sizes) { name, e in
            let c = consoles[name] ?? FinetuneConsole(epochs: o.epochs, prefix: "[\(name)] ")
            consoles[name] = c
            c.handle(e)
        }
        Terminal.write("\ntest mAP per start and training clips per class:\n\(r.table)report: \(r.report)\n")
    }
}
