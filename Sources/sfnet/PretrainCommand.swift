// `sfnet pretrain`: thin wrapper over Finetune.Pretrain.

import ArgumentParser
import Finetune
import Foundation

struct PretrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pretrain",
        abstract: "Train a network from scratch on a source task and keep it as native weights that record what they were pretrained on.",
        discussion: """
        The training is a `finetune --init scratch` run (same options, same recipe defaults) in --run; the kept epoch
        (best source val mAP, or the last without --val) is written to -o with sfnet.source saying what it is: for a
        set made by `sfnet data synth --task source`, "\(Pretrain.syntheticSourceDescription)", with the
        generator's settings (synthetic.json), the manifests' sha256, the architecture, recipe, seed and epochs, and the
        source val mAP. Fine-tune such weights with --skip-verify: sfnet trained them itself, there is no producer to
        verify against. --reuse keeps an existing output made from the same request (same data, architecture, recipe,
        seed) instead of training again.
        Example:
          sfnet data synth -o source-task --task source --train-per-class 40 --val-per-class 4 --test-per-class 0 --seed 101
          sfnet pretrain --train source-task/train.csv --val source-task/val.csv --arch examples/demo/tiny_slowfast.json \\
              -o pretrained.safetensors --run runs/pretrain --epochs 8 --batch 8 --crop 64 --jitter 64 72 --seed 101
          sfnet finetune --weights pretrained.safetensors --skip-verify --train data/train.csv --val data/val.csv --out runs/ft
        """)

    @Option(help: "Source-task training data (CSV manifest or frame list).") var train: String
    @Option(help: "Source-task validation data: picks the kept epoch and is recorded.") var val: String?
    @Option(help: "Architecture preset or sfnet.arch JSON (the head gets the source task's classes).") var arch: String
    @Option(name: .shortAndLong, help: "Native weights to write.") var output: String
    @Option(name: .customLong("run"), help: "Run directory of the training (default: OUTPUT without extension, plus -run).") var runDirectory: String?
    @Flag(help: "Keep an existing output made from the same request instead of training again.") var reuse = false
    @Flag(help: "Replace an existing output.") var force = false
    @OptionGroup var recipe: RecipeOptions

    func run() throws {
        var o = FinetuneOptions(train: train, out: runDirectory ?? (output.hasSuffix(".safetensors") ? String(output.dropLast(12)) : output) + "-run")
        o.initKind = .scratch
        var sources = try recipe.resolve(into: &o, commandLine: ["init", "arch"])
        o.arch = arch; o.architecture = nil
        o.val = val; sources.set("val", "command line")
        if recipe.printConfig { Terminal.write(o.printedConfig(sources: sources)); return }
        let console = FinetuneConsole(epochs: o.epochs)
        let s = try Pretrain.run(o, output: output, reuse: reuse, force: force, onEvent: console.handle)
        let map = s.sourceValMAP.map { String(format: ", source val mAP %.1f%%", $0 * 100) } ?? ""
        if s.reused {
            Terminal.write("reused \(s.weights): made earlier from the same request (\(s.description)\(map)); delete it to train again\n")
        } else {
            Terminal.write("pretrained in \(String(format: "%.0f", s.seconds)) s -> \(s.weights)\n  \(s.description)\(s.epoch.map { ", epoch \($0)" } ?? "")\(map)\n")
        }
    }
}
