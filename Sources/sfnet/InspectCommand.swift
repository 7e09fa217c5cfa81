// `sfnet inspect FILE [--json]`

import ArgumentParser
import Convert
import Formats

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show what a weights file holds: format, container entries, naming, architecture and tensors.",
        discussion: """
        Works on PyTorch checkpoints (zip and legacy), sfnet native / safetensors files, .npy/.npz and pickles.
        Examples:
          sfnet inspect SLOWFAST_8x8_R50.pyth
          sfnet inspect weights.safetensors --json > tensors.json
        """
    )

    @Argument(help: "The file to inspect.")
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
