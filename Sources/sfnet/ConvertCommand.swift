// `sfnet convert INPUT [-o OUTPUT] ...`

import Families
import ArgumentParser
import Convert
import Foundation
import Formats
import Keras
import ONNX

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a checkpoint or a Hugging Face model folder into sfnet's native weights (safetensors with canonical names).",
        discussion: """
        The naming (pyslowfast, pytorchvideo, mmaction2, caffe2, detectron, torchvision; for the video
        transformers VideoMAE and TimeSformer: huggingface, videomae-original, timesformer-original,
        mmaction2-videomae, mmaction2-timesformer) and the architecture are detected from the tensors;
        every tensor must match the architecture unless --allow-partial. An existing output is never replaced
        without --force, and the output appears atomically only when complete.

        Video transformers keep Hugging Face's names (transformers 5). huggingface reads both generations of
        VideoMAE's attention biases (attention.attention.q_bias / v_bias, which save_pretrained still writes,
        and query.bias / value.bias); videomae-original is MCG-NJU/VideoMAE's .pth ({"model"} or {"module"};
        blocks.N.attn.qkv.weight is split into query, key and value); timesformer-original is
        facebookresearch/TimeSformer's .pyth ({"model_state"}, model.blocks.N..., temporal_attn, temporal_fc).
        mmaction2-videomae / mmaction2-timesformer read mmaction2's {"state_dict"} (backbone.blocks.N.attn.qkv,
        mlp.layers.0.0; backbone.transformer_layers.layers.N.attentions.0/1.attn.in_proj_weight, ffns.0;
        cls_head.fc_cls) with the original code's eps 1e-6; VideoMAE's pos_embed buffer must be the fixed
        sinusoid (it is left out: sfnet computes it), and layer scale (gamma_1/gamma_2) is refused.
        An ONNX file of either (torch.onnx.export or sfnet export) is mapped from its graph, architecture included.

        INPUT may be a Hugging Face model folder as save_pretrained writes it: config.json beside
        model.safetensors, or model.safetensors.index.json and its shards, or pytorch_model.bin. The
        architecture then comes from config.json, read as data with limits (model_type videomae|timesformer,
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, patch_size, tubelet_size,
        image_size, num_frames, layer_norm_eps, hidden_act, qv_bias/qkv_bias, use_mean_pooling,
        attention_type, id2label or num_labels); auto_map and trust_remote_code are noted, never run or
        followed. A config.json that disagrees with the tensors is an error naming both. Shards must be plain
        file names inside the folder (no '..', absolute path or symlink), each tensor where the index says.
        An original .pth/.pyth has no config: the heads are taken as hidden / 64, VideoMAE's clip as 16x224
        and the eps as the original code's (1e-6; Hugging Face's VideoMAE uses 1e-12 in the blocks and 1e-5
        in fc_norm): pass --arch or --arch-json to be exact.
        Examples:
          sfnet convert SLOWFAST_8x8_R50.pyth
          sfnet convert mmaction2_slowfast.pth -o slowfast.safetensors --num-classes 9
          sfnet convert model.pth --arch slowfast-r50-4x16 --dtype f16 --force
          sfnet convert SLOWFAST_8x8_R50.pkl                      # Caffe2 pickle from the PySlowFast model zoo
          sfnet convert resnet50.pth --arch slowfast-r50-8x8 --inflate center   # ImageNet 2D -> 3D
          sfnet convert slowfast.onnx --from onnx                 # torch.onnx.export output (BN folded)
          sfnet convert resnet50_weights_tf_dim_ordering_tf_kernels.h5 --from keras   # Keras ResNet50 (HDF5)
          sfnet convert videomae-base-finetuned-kinetics/ -o videomae-b.safetensors   # a Hugging Face folder
          sfnet convert timesformer-k400/ -o ts.safetensors --num-classes 9   # fresh classifier for 9 classes
          sfnet convert TimeSformer_divST_8x32_224_K400.pyth --arch timesformer-b   # the original repository's file
        """
    )

    @Argument(help: "The checkpoint to convert, or a Hugging Face model folder (config.json beside its weights).")
    var input: String

    @Option(name: .shortAndLong, help: "Output file (default: the input's name with .safetensors).")
    var output: String?

    @Option(name: .customLong("from"), help: "Source format: \(FormatChoice.allValueStrings.joined(separator: "|")).")
    var from: FormatChoice = .auto

    @Option(help: "Source naming: \(Naming.allValueStrings.joined(separator: "|")) (default: detected).")
    var naming: Naming?

    @Option(help: "Architecture preset: \(ArchConfig.presetNames.joined(separator: "|")) (default: detected from the shapes).")
    var arch: String?

    @Option(name: .customLong("arch-json"), help: "A JSON file with a custom architecture config.")
    var archJSON: String?

    @Option(help: "Dtype of floating-point tensors: \(DTypePolicy.allValueStrings.joined(separator: "|")).")
    var dtype: DTypePolicy = .f32

    @Option(help: "Inflate 2D ImageNet kernels to a 3D --arch: mean (repeat(w, T)/T, default) or center (the 2D kernel in the middle slice).")
    var inflate: InflateMode?

    @Option(name: .customLong("num-classes"), help: "Replace the head with a fresh one of N classes (N(0, 0.01) weights, zero bias).")
    var numClasses: Int?

    @Option(help: "Transformers: the frames of the clip the converted network is for (default: the checkpoint's). TimeSformer's time table is resized (nearest, as transformers and the original code do).")
    var frames: Int?

    @Option(help: "Transformers: the crop of the clip the converted network is for (default: the checkpoint's). TimeSformer's position table is resized (nearest).")
    var crop: Int?

    @Flag(name: .customLong("allow-partial"), help: "Initialize missing or mis-shaped tensors fresh and drop unused ones (all recorded) instead of failing.")
    var allowPartial = false

    @Option(help: "Seed for fresh initializations.")
    var seed: UInt64 = 0

    @Option(name: .customLong("keras-bn-epsilon"), help: "BatchNorm epsilon of a Keras source (default: from the naming generation: 1.001e-5 for keras.applications names, 1e-3 for Keras 2.2 names).")
    var kerasBNEpsilon: Double?

    @Flag(help: "Replace an existing output file.")
    var force = false

    @Flag(name: .shortAndLong, help: "Print the per-tensor report.")
    var verbose = false

    func validate() throws {
        if let n = numClasses, n < 1 { throw ValidationError("--num-classes must be at least 1") }
        if arch != nil && archJSON != nil { throw ValidationError("give either --arch or --arch-json, not both") }
        if let e = kerasBNEpsilon, !(e.isFinite && e >= 0) { throw ValidationError("--keras-bn-epsilon must be a non-negative number") }
        if let a = arch, ArchConfig.preset(named: a) == nil {
            throw ValidationError("unknown --arch '\(a)'; presets: \(ArchConfig.presetNames.joined(separator: ", "))")
        }
    }

    func run() throws {
        var config: ArchConfig?
        if let a = arch { config = ArchConfig.preset(named: a) }
        if let path = archJSON {
            guard let data = FileManager.default.contents(atPath: path) else { throw InputError(description: "\(path): cannot read the architecture JSON") }
            do { config = try ArchConfig.fromJSON(String(decoding: data, as: UTF8.self)) } catch {
                throw InputError(description: "\(path): not a valid architecture config: \(error)")
            }
        }
        var options = ConvertOptions(naming: naming, arch: config, dtype: dtype, numClasses: numClasses,
                                     allowPartial: allowPartial, seed: seed)
        options.inflate = inflate
        (options.clipFrames, options.clipCrop) = (frames, crop)
        let request = ConvertRequest(input: input, output: output, from: from.sourceFormat, options: options, force: force)
        let bar = Terminal.Progress("writing")
        let onProgress: (String, Int, Int) -> Void = { stage, done, total in
            if stage == "write" { bar.update(done, total) }
        }
        // ONNX graphs are mapped to canonical names by the importer, then converted as usual;
        // Keras HDF5 files are read by a worker process. Both are also detected by content.
        let detected = from == .auto ? CheckpointReader.detect(path: input) : nil
        let onnx = from == .onnx || detected == .onnx
        let keras = from == .keras || detected == .hdf5
        let summary = onnx ? try OnnxImport.convert(request, progress: onProgress)
                    : keras ? try KerasImport.convert(request, executable: HDF5Worker.currentExecutable, bnEpsilon: kerasBNEpsilon, progress: onProgress)
                    : try ConvertPipeline.run(request, progress: onProgress)
        bar.finish()
        let r = summary.result
        let c = r.counts
        var out = "converted \(input) (\(onnx ? "onnx" : keras ? "keras hdf5" : summary.sourceFormat.rawValue), \(r.naming.rawValue) naming) -> \(summary.output)\n"
        out += "  arch:    \(r.arch.preset ?? "custom") (\(r.arch.familyName), \(r.arch.numClasses) classes)\n"
        out += "  tensors: \(c.tensors) (\(c.parameters) parameters), \(c.renamed) renamed, \(c.cast) cast, \(c.initialized) initialized fresh, \(c.dropped) dropped\n"
        if !summary.checkpoint.otherEntries.isEmpty {
            out += "  kept out of the weights: " + summary.checkpoint.otherEntries.map(\.key).joined(separator: ", ") + " (listed in sfnet.source)\n"
        }
        for n in r.notes { out += "  note: \(n)\n" }
        for d in r.dropped { out += "  dropped \(d.name): \(d.reason)\n" }
        if verbose { for e in r.report { out += "  \(e.name): \(e.action)\n" } }
        out += String(format: "  wrote %.1f MB in %.2f s\n", Double(summary.bytesWritten) / 1_048_576, summary.seconds)
        Terminal.write(out)
    }

}
