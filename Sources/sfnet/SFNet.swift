// The sfnet command line: a root command listing subcommands. Exit codes:
// 0 success, 1 invalid or hostile input, 2 usage errors.

import Families
import ArgumentParser
import Convert
import Foundation
import Formats
import Keras
import Networks
import ONNX
import Train
import Verify
import Video
import Finetune

struct SFNet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sfnet",
        abstract: "Convert, verify, fine-tune, evaluate and export SlowFast / ResNet video action-recognition weights.",
        discussion: """
        Typical use:
          sfnet inspect SLOWFAST_8x8_R50.pyth
          sfnet convert SLOWFAST_8x8_R50.pyth -o slowfast_r50.safetensors
          sfnet verify slowfast_r50.safetensors --reference slowfast_r50_ref.safetensors
          sfnet finetune --weights slowfast_r50.safetensors --train train.csv --val val.csv --test test.csv --out runs/k400
          sfnet predict --weights runs/k400/best.safetensors clip.mp4
        Exit codes: 0 success, 1 invalid or hostile input, 2 usage error.
        """,
        version: sfnetVersion,
        subcommands: [InspectCommand.self, ConvertCommand.self, VerifyCommand.self, FinetuneCommand.self, EvalCommand.self, PredictCommand.self,
                      ExperimentCommand.self, DataCommand.self, PretrainCommand.self, BenchCommand.self, ExportCommand.self]
    )
}

@main
enum Main {
    static func main() {
        // The HDF5 worker (a re-execution of this binary by the Keras importer) runs before
        // anything else, and never re-executes itself for OpenBLAS.
        if let status = HDF5Worker.runIfRequested(CommandLine.arguments) { exit(status) }
        BlasKernel.selectForThisCPU()
        AllocatorPolicy.applyForThisCommand()
        do {
            var command = try SFNet.parseAsRoot()
            try command.run()
        } catch let e as ExitCode {
            exit(e.rawValue)
        } catch let e where isInputError(e) {
            // Invalid or hostile input: the message names the file and what was expected.
            Terminal.error("\(e)")
            exit(1)
        } catch {
            let code = SFNet.exitCode(for: error)
            if code == .success {
                SFNet.exit(withError: error)
            }
            // Usage errors (bad flags, validation) print the parser's message and exit 2.
            Terminal.write(SFNet.fullMessage(for: error) + "\n", to: .stderr)
            exit(2)
        }
    }
}

/// The library's typed errors about the user's input (exit 1); anything else is a usage error (exit 2).
func isInputError(_ e: Error) -> Bool {
    e is FormatError || e is ConvertError || e is FamilyError || e is VerifyError || e is ModelError || e is ExportError || e is TransformerExportError || e is OnnxExportError || e is InputError
        || e is FinetuneError || e is TrainError || e is VideoError || e is DatasetError || e is YAMLError
}

/// A runtime problem with the user's input that is not a format error (exit 1).
struct InputError: Error, CustomStringConvertible {
    let description: String
}
