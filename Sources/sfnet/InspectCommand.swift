// `sfnet inspect FILE [--json]`

import ArgumentParser
import Convert
import Formats

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show what a weights file holds: format, container entries, naming, architecture and tensors.",
        discussion: """
        Works on PyTorch checkpoints (zip and legacy), sfnet native / safetensors files, .npy/.npz and pickles, and
        on Hugging Face model folders (config.json with model.safetensors, its sharded index, or pytorch_model.bin):
        the folder's files, the architecture config.json describes (read as data; auto_map is never followed).
        Examples:
          sfnet inspect SLOWFAST_8x8_R50.pyth
          sfnet inspect videomae-base-finetuned-kinetics/       # a save_pretrained folder
          sfnet inspect weights.safetensors --json > tensors.json
        """
    )

    @Argument(help: "The file to inspect, or a Hugging Face model folder (config.json beside its weights).")
    var file: String

    @Option(name: .customLong("from"), help: "Read as this format instead of detecting it (\(FormatChoice.allValueStrings.joined(separator: "|"))).")
    var from: FormatChoice = .auto

    @Flag(help: "Print JSON, with the SHA-256 of every tensor's bytes.")
    var json = false

    func run() throws {
        let report = try Inspector.inspect(path: file, as: from.sourceFormat)
        Terminal.write((json ? report.json() : report.text()) + "\n")
    }
}
