// `sfnet export WEIGHTS --to pyslowfast|pytorchvideo|mmaction2|huggingface|videomae-original|timesformer-original|onnx -o OUT`

import ArgumentParser
import Convert
import Foundation
import ONNX

/// `--to`: a PyTorch ecosystem of the CNN families (ExportTarget), a video transformer's layout
/// (TransformerExportTarget), or an ONNX graph.
enum ExportDestination: ExpressibleByArgument, Equatable {
    case torch(ExportTarget)
    case transformer(TransformerExportTarget)
    case onnx

    init?(argument: String) {
        if argument == "onnx" {
            self = .onnx
        } else if let t = ExportTarget(rawValue: argument) {
            self = .torch(t)
        } else if let t = TransformerExportTarget(rawValue: argument) {
            self = .transformer(t)
        } else {
            return nil
        }
    }

    static var allValueStrings: [String] { ExportTarget.allValueStrings + TransformerExportTarget.allCases.map(\.rawValue) + ["onnx"] }
}

/// `--batch`: dynamic or a fixed size.
enum BatchDim: ExpressibleByArgument {
    case dynamic
    case fixed(Int)

    init?(argument: String) {
        if argument == "dynamic" { self = .dynamic } else if let n = Int(argument), n >= 1 { self = .fixed(n) } else { return nil }
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write native weights as a PyTorch checkpoint for PySlowFast, pytorchvideo or mmaction2, a Hugging Face folder or original checkpoint of a video transformer, or an ONNX model.",
        discussion: """
        The file is laid out as torch.save lays it out (stored, 64-byte aligned entries) and names only the
        globals torch.load(weights_only=True) accepts. PySlowFast gets {"model_state", "epoch": -1} and a
        YAML config beside it (--cfg); pytorchvideo {"model_state"} with its names; mmaction2
        {"state_dict", "meta"} with its names and the head's fast-first column order.
        VideoMAE and TimeSformer weights: --to huggingface writes a folder (-o DIR) with config.json and
        model.safetensors as transformers' save_pretrained writes them (AutoModelForVideoClassification
        .from_pretrained(DIR) loads it; id2label from the file's class names); --to videomae-original writes
        MCG-NJU/VideoMAE's {"model"} checkpoint (q/k/v fused into blocks.N.attn.qkv.weight), --to
        timesformer-original facebookresearch/TimeSformer's {"model_state"} (model.* names).
        --to onnx writes the whole network of the file's sfnet.arch as an ONNX graph (inputs slow and fast,
        or x; outputs logits (pre-activation) and probabilities), with the batch dimension dynamic ("N")
        unless --batch N; --fold-bn folds each BatchNormalization into its convolution; --external-data
        puts the weights in MODEL.<content hash>.data beside the model (4096-byte aligned).
        Examples:
          sfnet export slowfast.safetensors --to pyslowfast -o SLOWFAST_8x8_R50_wildlife.pyth
          sfnet export slowfast.safetensors --to mmaction2 -o slowfast_mmaction2.pth --force
          sfnet export slowfast.safetensors --to onnx -o slowfast.onnx --opset 17 --fold-bn
          sfnet export slowfast.safetensors --to onnx -o slowfast.onnx --external-data
          sfnet export videomae.safetensors --to huggingface -o videomae-wildlife/
          sfnet export videomae.safetensors --to videomae-original -o videomae_wildlife.pth
        """
    )

    @Argument(help: "Native weights (from `sfnet convert`).")
    var weights: String

    @Option(name: .customLong("to"), help: "Target: \(ExportDestination.allValueStrings.joined(separator: "|")).")
    var target: ExportDestination

    @Option(name: .shortAndLong, help: "Output checkpoint (or .onnx model, or folder for --to huggingface).")
    var output: String

    @Option(help: "PySlowFast YAML config path (default: the output with .yaml).")
    var cfg: String?

    @Flag(name: .customLong("lateral-norm"), help: "mmaction2: write the fusion BN as *_lateral.bn (a backbone built with lateral_norm=True).")
    var lateralNorm = false

    @Option(help: "ONNX: default-domain opset (\(OnnxExporter.supportedOpsets.lowerBound)...\(OnnxExporter.supportedOpsets.upperBound)).")
    var opset: Int = 17

    @Option(help: "ONNX: batch dimension, 'dynamic' (dim_param N) or a fixed size.")
    var batch: BatchDim = .dynamic

    @Flag(name: .customLong("fold-bn"), help: "ONNX: fold BatchNormalization into the convolutions' weights and bias.")
    var foldBN = false

    @Flag(name: .customLong("external-data"),
          help: "ONNX: store initializers of 1 KiB and more in a page-aligned data file beside the model (MODEL.<hash>.data); needed above protobuf's 2 GB limit.")
    var externalData = false

    @Flag(help: "Replace existing output files.")
    var force = false

    func validate() throws {
        if target != .onnx {
            if opset != 17 || foldBN || externalData { throw ValidationError("--opset, --fold-bn and --external-data apply to --to onnx only") }
            if case .fixed = batch { throw ValidationError("--batch applies to --to onnx only") }
            if case .transformer = target, cfg != nil || lateralNorm {
                throw ValidationError("--cfg and --lateral-norm apply to --to pyslowfast and mmaction2 only")
            }
        } else if !OnnxExporter.supportedOpsets.contains(opset) {
            throw ValidationError("--opset \(opset) is not supported (\(OnnxExporter.supportedOpsets.lowerBound)...\(OnnxExporter.supportedOpsets.upperBound))")
        }
    }

    func run() throws {
        if case let .transformer(target) = target { return try runTransformer(target) }
        guard case let .torch(target) = target else { return try runONNX() }
        let s = try Exporter.export(ExportRequest(input: weights, output: output, target: target, force: force,
                                                  cfgPath: cfg, lateralNorm: lateralNorm))
        var out = "exported \(weights) -> \(s.output) (\(s.target.rawValue), \(s.tensors) tensors, \(String(format: "%.1f MB", Double(s.bytesWritten) / 1_048_576)))\n"
        if let c = s.cfg { out += "  config: \(c)\n" }
        for n in s.notes { out += "  note: \(n)\n" }
        Terminal.write(out)
    }

    func runTransformer(_ target: TransformerExportTarget) throws {
        let s = try TransformerExport.export(TransformerExportRequest(input: weights, output: output, target: target, force: force))
        var out = "exported \(weights) -> \(s.output) (\(s.target.rawValue), \(s.tensors) tensors, "
            + "\(String(format: "%.1f MB", Double(s.bytesWritten) / 1_048_576)))\n"
        if target == .huggingface { out += "  files: \(s.files.joined(separator: ", "))\n" }
        for n in s.notes { out += "  note: \(n)\n" }
        Terminal.write(out)
    }

    func runONNX() throws {
        var fixed: Int?
        if case let .fixed(n) = batch { fixed = n }
        let s = try OnnxExporter.export(OnnxExportRequest(input: weights, output: output, opset: opset, batch: fixed,
                                                          foldBN: foldBN, externalData: externalData, force: force))
        let inputs = s.inputs.map { "\($0.name) (\($0.dims.map(\.description).joined(separator: ", ")))" }.joined(separator: ", ")
        var out = "exported \(weights) -> \(s.output) (onnx opset \(opset), \(s.nodes) nodes, \(s.initializers) initializers, "
            + "\(String(format: "%.1f MB", Double(s.bytesWritten) / 1_048_576)))\n  inputs: \(inputs); outputs: logits, probabilities\n"
        for n in s.notes { out += "  note: \(n)\n" }
        Terminal.write(out)
    }
}
