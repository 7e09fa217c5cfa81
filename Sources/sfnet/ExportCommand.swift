// `sfnet export WEIGHTS --to pyslowfast|pytorchvideo|mmaction2 -o OUT`

import ArgumentParser
import Convert
import Foundation

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write native weights as a PyTorch checkpoint for PySlowFast, pytorchvideo or mmaction2.",
        discussion: """
        The file is laid out as torch.save lays it out (stored, 64-byte aligned entries) and names only the
        globals torch.load(weights_only=True) accepts. PySlowFast gets {"model_state", "epoch": -1} and a
        YAML config beside it (--cfg); pytorchvideo {"model_state"} with its names; mmaction2
        {"state_dict", "meta"} with its names and the head's fast-first column order.
        Examples:
          sfnet export slowfast.safetensors --to pyslowfast -o SLOWFAST_8x8_R50_wildlife.pyth
          sfnet export slowfast.safetensors --to mmaction2 -o slowfast_mmaction2.pth --force
        """
    )

    @Argument(help: "Native weights (from `sfnet convert`).")
    var weights: String

    @Option(name: .customLong("to"), help: "Target: \(ExportTarget.allValueStrings.joined(separator: "|")).")
    var target: ExportTarget

    @Option(name: .shortAndLong, help: "Output checkpoint.")
    var output: String

    @Option(help: "PySlowFast YAML config path (default: the output with .yaml).")
    var cfg: String?

    @Flag(name: .customLong("lateral-norm"), help: "mmaction2: write the fusion BN as *_lateral.bn (a backbone built with lateral_norm=True).")
    var lateralNorm = false

    @Flag(help: "Replace existing output files.")
    var force = false

    func run() throws {
        let s = try Exporter.export(ExportRequest(input: weights, output: output, target: target, force: force,
                                                  cfgPath: cfg, lateralNorm: lateralNorm))
        var out = "exported \(weights) -> \(s.output) (\(s.target.rawValue), \(s.tensors) tensors, \(String(format: "%.1f MB", Double(s.bytesWritten) / 1_048_576)))\n"
        if let c = s.cfg { out += "  config: \(c)\n" }
        for n in s.notes { out += "  note: \(n)\n" }
        Terminal.write(out)
    }
}
