// `sfnet export --to huggingface | videomae-original | timesformer-original`: a native VideoMAE or
// TimeSformer file back in the layouts these families are published in. A Hugging Face folder
// (config.json + model.safetensors, as transformers 5.25's save_pretrained writes them, for
// `AutoModelForVideoClassification.from_pretrained`), MCG-NJU/VideoMAE's `{"model": state_dict}`
// (timm names, q/k/v fused into `blocks.N.attn.qkv.weight`), facebookresearch/TimeSformer's
// `{"model_state": state_dict}` (`model.` prefix). The name tables are the inverses of the ones
// `TransformerConvert` reads, so convert -> export -> convert gives the same tensors bit for bit.
// Everything is checked before anything is written; the folder and the files are atomic.

import Families
import Foundation
import Formats

/// Where a video transformer's export goes.
public enum TransformerExportTarget: String, CaseIterable, Sendable, Codable {
    /// A Hugging Face folder: config.json + model.safetensors (transformers 5.25's save_pretrained).
    case huggingface
    /// MCG-NJU/VideoMAE's fine-tuning checkpoint: `{"model": state_dict}`, timm-style names.
    case videomaeOriginal = "videomae-original"
    /// facebookresearch/TimeSformer's checkpoint: `{"model_state": state_dict}`, `model.` prefix.
    case timesformerOriginal = "timesformer-original"

    /// The one family an original layout holds (nil: either).
    public var family: ModelKind? {
        switch self {
        case .huggingface: return nil
        case .videomaeOriginal: return .videomae
        case .timesformerOriginal: return .timesformer
        }
    }

    /// The naming `sfnet convert` reads the export back with.
    public var naming: Naming {
        switch self {
        case .huggingface: return .huggingface
        case .videomaeOriginal: return .videomaeOriginal
        case .timesformerOriginal: return .timesformerOriginal
        }
    }
}

public struct TransformerExportRequest: Sendable {
    /// A native sfnet safetensors file of a VideoMAE or TimeSformer.
    public var input: String
    /// The folder (huggingface) or checkpoint file to write.
    public var output: String
    public var target: TransformerExportTarget
    /// Replace an existing output.
    public var force: Bool

    public init(input: String, output: String, target: TransformerExportTarget, force: Bool = false) {
        self.input = input
        self.output = output
        self.target = target
        self.force = force
    }
}

public struct TransformerExportSummary: Sendable {
    public var output: String
    public var target: TransformerExportTarget
    public var arch: ArchConfig
    /// The files written (inside the folder for huggingface).
    public var files: [String]
    public var tensors: Int
    public var bytesWritten: Int
    /// What the target computes differently or what was done beyond renaming.
    public var notes: [String]
}

public enum TransformerExportError: Error, CustomStringConvertible, LocalizedError {
    /// The weights have no expression in the target.
    case notExpressible(TransformerExportTarget, reason: String, hint: String?)

    public var description: String {
        switch self {
        case let .notExpressible(target, reason, hint):
            return "cannot export to \(target.rawValue): \(reason)" + (hint.map { "\nhint: \($0)" } ?? "")
        }
    }

    public var errorDescription: String? { description }
}

/// One tensor of an original layout: a canonical tensor renamed, or q, k, v stacked by rows.
enum OriginalEntry {
    case copy(original: String, canonical: String)
    case fuse(original: String, canonical: [String])
}

public enum TransformerExport {
    /// On-disk names of a Hugging Face folder: transformers 5.25's save_pretrained writes VideoMAE's
    /// attention biases under their transformers 4 names (the inverse of `KeyMap.huggingface`).
    public static let huggingfaceOnDisk = KeyMap([
        KeyRule(#"^(videomae\.encoder\.layer\.\d+\.attention\.attention\.)query\.bias$"#, "$1q_bias"),  // videomae.encoder.layer.0.attention.attention.query.bias -> ...attention.attention.q_bias
        KeyRule(#"^(videomae\.encoder\.layer\.\d+\.attention\.attention\.)value\.bias$"#, "$1v_bias"),  // videomae.encoder.layer.3.attention.attention.value.bias -> ...attention.attention.v_bias
    ])

    /// MCG-NJU/VideoMAE modeling_finetune.py, one block, in its state_dict order (a module's own
    /// parameters, q_bias and v_bias, before its children's). Inverse of `KeyMap.videomaeOriginal`.
    static func videomaeOriginalBlock(_ i: Int, qkvBias: Bool) -> [OriginalEntry] {
        let o = "blocks.\(i).", h = "videomae.encoder.layer.\(i)."
        var e: [OriginalEntry] = [.copy(original: o + "norm1.weight", canonical: h + "layernorm_before.weight"),
                                  .copy(original: o + "norm1.bias", canonical: h + "layernorm_before.bias")]
        if qkvBias {
            e += [.copy(original: o + "attn.q_bias", canonical: h + "attention.attention.query.bias"),
                  .copy(original: o + "attn.v_bias", canonical: h + "attention.attention.value.bias")]
        }
        e.append(.fuse(original: o + "attn.qkv.weight", canonical: ["query", "key", "value"].map { h + "attention.attention.\($0).weight" }))
        for (orig, canonical) in [("attn.proj", "attention.output.dense"), ("norm2", "layernorm_after"),
                                  ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense")] {
            for p in ["weight", "bias"] { e.append(.copy(original: o + orig + "." + p, canonical: h + canonical + "." + p)) }
        }
        return e
    }

    /// facebookresearch/TimeSformer vit.py's Block in its state_dict order: (original, canonical) module
    /// names. Inverse of `KeyMap.timesformerOriginal` (the `model.` prefix is added by the caller).
    static let timesformerOriginalBlock: [(original: String, canonical: String)] = [
        ("norm1", "layernorm_before"),                                  // model.blocks.0.norm1.weight <- timesformer.encoder.layer.0.layernorm_before.weight
        ("attn.qkv", "attention.attention.qkv"),                        // model.blocks.0.attn.qkv.bias <- ...layer.0.attention.attention.qkv.bias
        ("attn.proj", "attention.output.dense"),                        // model.blocks.0.attn.proj.weight <- ...layer.0.attention.output.dense.weight
        ("temporal_norm1", "temporal_layernorm"),                       // model.blocks.1.temporal_norm1.bias <- ...layer.1.temporal_layernorm.bias
        ("temporal_attn.qkv", "temporal_attention.attention.qkv"),      // model.blocks.1.temporal_attn.qkv.weight <- ...layer.1.temporal_attention.attention.qkv.weight
        ("temporal_attn.proj", "temporal_attention.output.dense"),      // model.blocks.1.temporal_attn.proj.bias <- ...layer.1.temporal_attention.output.dense.bias
        ("temporal_fc", "temporal_dense"),                              // model.blocks.1.temporal_fc.weight <- ...layer.1.temporal_dense.weight
        ("norm2", "layernorm_after"),                                   // model.blocks.2.norm2.weight <- ...layer.2.layernorm_after.weight
        ("mlp.fc1", "intermediate.dense"),                              // model.blocks.2.mlp.fc1.bias <- ...layer.2.intermediate.dense.bias
        ("mlp.fc2", "output.dense"),                                    // model.blocks.2.mlp.fc2.weight <- ...layer.2.output.dense.weight
    ]

    /// Every tensor of the original layout of `arch`, in the original model's state_dict order.
    static func originalEntries(_ arch: ArchConfig) -> [OriginalEntry] {
        let t = arch.transformer!
        var e: [OriginalEntry] = []
        func pair(_ original: String, _ canonical: String) -> [OriginalEntry] {
            ["weight", "bias"].map { .copy(original: original + "." + $0, canonical: canonical + "." + $0) }
        }
        if arch.model == .videomae {
            e += pair("patch_embed.proj", "videomae.embeddings.patch_embeddings.projection")
            for i in 0 ..< t.layers { e += videomaeOriginalBlock(i, qkvBias: t.qkvBias) }
            e += t.meanPooling ? pair("fc_norm", "fc_norm") : pair("norm", "videomae.layernorm")
            e += pair("head", "classifier")
        } else {
            let emb = "timesformer.embeddings."
            e += [.copy(original: "model.cls_token", canonical: emb + "cls_token"),
                  .copy(original: "model.pos_embed", canonical: emb + "position_embeddings"),
                  .copy(original: "model.time_embed", canonical: emb + "time_embeddings")]
            e += pair("model.patch_embed.proj", emb + "patch_embeddings.projection")
            for i in 0 ..< t.layers {
                for (o, c) in timesformerOriginalBlock {
                    let biased = t.qkvBias || !o.hasSuffix("qkv")
                    e.append(.copy(original: "model.blocks.\(i).\(o).weight", canonical: "timesformer.encoder.layer.\(i).\(c).weight"))
                    if biased { e.append(.copy(original: "model.blocks.\(i).\(o).bias", canonical: "timesformer.encoder.layer.\(i).\(c).bias")) }
                }
            }
            e += pair("model.norm", "timesformer.layernorm") + pair("model.head", "classifier")
        }
        return e
    }

    // MARK: Export

    public static func export(_ req: TransformerExportRequest) throws -> TransformerExportSummary {
        // 1. Read and check the native file.
        let ckpt = try CheckpointReader.read(path: req.input)
        let file = URL(fileURLWithPath: req.input).lastPathComponent
        let arch: ArchConfig
        do { arch = try NativeMetadata.requireNative(ckpt) } catch FamilyError.notNative(let reason) {
            throw ExportError.notNative(file, reason: reason)
        }
        guard arch.model.isTransformer, arch.transformer != nil else {
            throw TransformerExportError.notExpressible(req.target, reason: "\(req.target.rawValue) is a layout of video transformers "
                + "(VideoMAE, TimeSformer); these weights are \(arch.summary)",
                hint: "export \(arch.model.rawValue) weights with --to pyslowfast, pytorchvideo, mmaction2 or onnx")
        }
        if let family = req.target.family, family != arch.model {
            let other = TransformerExportTarget.allCases.first { $0.family == arch.model }!
            throw TransformerExportError.notExpressible(req.target, reason: "\(req.target.rawValue) holds \(family.rawValue) weights; these are \(arch.summary)",
                                                        hint: "export them with --to \(other.rawValue) or --to huggingface")
        }
        let tensors = try checkedTensors(ckpt, arch: arch, file: file)
        let classes = try classNames(ckpt, arch: arch, file: file)
        var notes = try expressibility(arch, req.target)

        // 2. The output: refuse before writing anything.
        try checkOutput(req)

        // 3. Write.
        let written: (files: [String], tensors: Int, bytes: Int)
        if req.target == .huggingface {
            written = try writeFolder(tensors, arch: arch, classes: classes, req: req, notes: &notes)
        } else {
            written = try writeOriginal(tensors, arch: arch, req: req)
            if classes != nil { notes.append("class names (sfnet.classes) have no place in the original layout: not written") }
        }
        return TransformerExportSummary(output: req.output, target: req.target, arch: arch, files: written.files, tensors: written.tensors,
                                        bytesWritten: written.bytes, notes: notes)
    }

    /// The file's tensors, strictly against the family's layout: each present with its shape and a
    /// float dtype, nothing else.
    static func checkedTensors(_ ckpt: Checkpoint, arch: ArchConfig, file: String) throws -> TensorMap {
        var problems: [String] = []
        var tensors = TensorMap()
        let expected = TransformerLayout(arch: arch).parameters
        for e in expected {
            guard let t = ckpt.tensors[e.name] else { problems.append("\(e.name): missing, expected \(Tensor.shapeString(e.shape))"); continue }
            if t.shape != e.shape { problems.append("\(e.name): file has \(Tensor.shapeString(t.shape)), arch expects \(Tensor.shapeString(e.shape))") }
            if !t.dtype.isFloatingPoint { problems.append("\(e.name): dtype \(t.dtype.shortName), expected a float") }
            tensors.set(e.name, t)
        }
        let names = Set(expected.map(\.name))
        for name in ckpt.tensors.names where !names.contains(name) { problems.append("\(name): not in the architecture") }
        if !problems.isEmpty { throw ExportError.inconsistent(file, problems: problems) }
        return tensors
    }

    /// `sfnet.classes` when the file has it (a JSON array of distinct names, one per class).
    static func classNames(_ ckpt: Checkpoint, arch: ArchConfig, file: String) throws -> [String]? {
        guard let text = ckpt.metadataValue(NativeMetadata.classesKey) else { return nil }
        guard let json = try? JSONParser.parse(text), case .array(let xs) = json, xs.allSatisfy({ $0.stringValue != nil }) else {
            throw ExportError.inconsistent(file, problems: ["\(NativeMetadata.classesKey) is not a JSON array of names"])
        }
        let names = xs.compactMap(\.stringValue)
        guard names.count == arch.numClasses else {
            throw ExportError.inconsistent(file, problems: ["\(NativeMetadata.classesKey) names \(names.count) classes, the classifier has \(arch.numClasses)"])
        }
        var seen = Set<String>()
        if let dup = names.first(where: { !seen.insert($0).inserted }) {
            throw ExportError.inconsistent(file, problems: ["\(NativeMetadata.classesKey) names '\(dup)' twice: label2id needs distinct names"])
        }
        return names
    }

    /// Throws what the target cannot compute; returns what it computes differently from sfnet.
    static func expressibility(_ arch: ArchConfig, _ target: TransformerExportTarget) throws -> [String] {
        let t = arch.transformer!
        var notes: [String] = []
        switch target {
        case .huggingface:
            if t.meanPooling && t.fcNormEps != 1e-5 {
                notes.append("fc_norm eps: transformers builds VideoMAE's fc_norm as nn.LayerNorm(hidden_size) and computes it with eps 1e-5 "
                    + "whatever config.json says; these weights were run with \(t.fcNormEps) (the original code's), so transformers' pooled "
                    + "features differ slightly (by about (1e-5 - \(t.fcNormEps)) / (2 var) relative), as in every Hub conversion of an original checkpoint")
            }
            if arch.headActivation == .sigmoid {
                notes.append("head activation sigmoid: config.json says problem_type multi_label_classification (transformers' loss); the model still returns logits")
            }
            notes.append("transformers takes pixel_values as (N, T, 3, H, W); sfnet's clips are (N, 3, T, H, W): permute(0, 2, 1, 3, 4)")
        case .videomaeOriginal, .timesformerOriginal:
            if t.geluTanh {
                throw TransformerExportError.notExpressible(target, reason: "the weights' MLP runs GELU's tanh form (hidden_act gelu_tanh), "
                    + "but the original repository's blocks use nn.GELU (exact, erf)", hint: "export to huggingface (hidden_act gelu_pytorch_tanh) or onnx")
            }
            var eps = ["layer_norm_eps \(t.layerNormEps)"]
            if t.meanPooling { eps.append("fc_norm eps \(t.fcNormEps)") }
            if t.layerNormEps != 1e-6 || (t.meanPooling && t.fcNormEps != 1e-6) {
                notes.append("the original code computes every LayerNorm with eps 1e-6; these weights were run with " + eps.joined(separator: ", "))
            }
            notes.append("build the model with " + originalBuilder(arch))
        }
        return notes
    }

    /// The original repository's constructor call that builds a model these tensors load into (strict).
    static func originalBuilder(_ arch: ArchConfig) -> String {
        let t = arch.transformer!
        let ratio = Double(t.intermediateSize) / Double(t.hiddenSize)
        var args = ["img_size=\(arch.trainCrop)", "patch_size=\(t.patchSize)", "embed_dim=\(t.hiddenSize)", "depth=\(t.layers)",
                    "num_heads=\(t.heads)", "mlp_ratio=\(ratio)", "qkv_bias=\(t.qkvBias ? "True" : "False")", "num_classes=\(arch.numClasses)"]
        if arch.model == .videomae {
            args += ["all_frames=\(arch.numFrames)", "tubelet_size=\(t.tubeletSize)", "use_mean_pooling=\(t.meanPooling ? "True" : "False")",
                     "norm_layer=partial(nn.LayerNorm, eps=1e-6)"]
            return "modeling_finetune.VisionTransformer(" + args.joined(separator: ", ") + ") and load checkpoint[\"model\"]"
        }
        args += ["num_frames=\(arch.numFrames)", "attention_type='divided_space_time'", "norm_layer=partial(nn.LayerNorm, eps=1e-6)"]
        return "vit.VisionTransformer(" + args.joined(separator: ", ") + ") held as `.model` (vit_base_patch16_224) and load checkpoint[\"model_state\"]"
    }

    static func checkOutput(_ req: TransformerExportRequest) throws {
        let out = URL(fileURLWithPath: req.output).standardizedFileURL
        let input = URL(fileURLWithPath: req.input).standardizedFileURL.resolvingSymlinksInPath()
        if out == URL(fileURLWithPath: req.input).standardizedFileURL || out.resolvingSymlinksInPath() == input {
            throw FormatError(.io, "output is the input file", file: req.output)
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: out.deletingLastPathComponent().path, isDirectory: &isDir), isDir.boolValue else {
            throw FormatError(.io, "the output directory does not exist", file: req.output)
        }
        if req.target == .huggingface {
            let folder = out.resolvingSymlinksInPath().path
            if input.path.hasPrefix(folder + "/") {
                throw FormatError(.io, "the input \(req.input) is inside the output folder, which the export would replace", file: req.output)
            }
            try AtomicFolder.refuseExisting(out.path, overwrite: req.force)
        } else {
            try AtomicFile.refuseExisting(req.output, overwrite: req.force)
        }
    }

    // MARK: Writers

    /// config.json + model.safetensors in a folder published atomically.
    static func writeFolder(_ tensors: TensorMap, arch: ArchConfig, classes: [String]?, req: TransformerExportRequest,
                            notes: inout [String]) throws -> (files: [String], tensors: Int, bytes: Int) {
        let dtypes = Set(tensors.names.map { tensors[$0]!.dtype })
        let dtype: DType = dtypes.count == 1 ? dtypes.first! : .f32
        if dtypes.count > 1 {
            notes.append("the tensors mix \(dtypes.map(\.shortName).sorted().joined(separator: ", ")): written as float32")
        }
        let torchNames: [DType: String] = [.f32: "float32", .f16: "float16", .bf16: "bfloat16", .f64: "float64"]
        let labels = classes ?? (0 ..< arch.numClasses).map { "LABEL_\($0)" }
        let config = HuggingFaceConfig.text(arch, labels: labels, dtype: torchNames[dtype] ?? "float32")
        // safetensors' own writer orders tensors by name (all of one dtype here); transformers reads any order.
        var items: [SafetensorsWriter.Item] = []
        for name in tensors.names {
            items.append(SafetensorsWriter.Item(name: huggingfaceOnDisk.map(name).name, tensor: tensors[name]!, dtype: dtype))
        }
        items.sort { HuggingFaceConfig.codePointLess($0.name, $1.name) }
        try AtomicFolder.write(to: req.output, overwrite: req.force) { dir in
            try AtomicFile.write(to: dir + "/config.json", overwrite: false) { out in
                try Array(config.utf8).withUnsafeBytes { try out.write($0) }
            }
            try SafetensorsWriter.write(items, metadata: [("format", "pt")], to: dir + "/model.safetensors", overwrite: false)
        }
        let folder = URL(fileURLWithPath: req.output)
        let size = { (name: String) in (try? FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(name).path)[.size] as? Int) ?? 0 }
        if classes == nil { notes.append("no class names in the file (sfnet.classes): id2label LABEL_0 ... LABEL_\(arch.numClasses - 1)") }
        return (["config.json", "model.safetensors"], items.count, size("config.json") + size("model.safetensors"))
    }

    /// The original repository's checkpoint: its names, q/k/v fused for VideoMAE, its container.
    static func writeOriginal(_ tensors: TensorMap, arch: ArchConfig, req: TransformerExportRequest) throws -> (files: [String], tensors: Int, bytes: Int) {
        var storages = TorchWriter.Storages()
        var state: [(String, PickleWriter.Value)] = []
        var used = Set<String>()
        for entry in originalEntries(arch) {
            switch entry {
            case let .copy(original, canonical):
                guard let t = tensors[canonical] else { throw ExportError.inconsistent(req.input, problems: ["\(canonical): missing"]) }
                state.append((original, try storages.value(t)))
                used.insert(canonical)
            case let .fuse(original, canonical):
                let parts = try canonical.map { name -> Tensor in
                    guard let t = tensors[name] else { throw ExportError.inconsistent(req.input, problems: ["\(name): missing"]) }
                    return t
                }
                state.append((original, try storages.value(stackRows(parts))))
                used.formUnion(canonical)
            }
        }
        // Every canonical tensor has exactly one place (the tables are checked against the layout by the tests).
        let unused = tensors.names.filter { !used.contains($0) }
        guard unused.isEmpty else {
            throw TransformerExportError.notExpressible(req.target, reason: "no original name for \(unused.prefix(5).joined(separator: ", "))", hint: nil)
        }
        let key = arch.model == .videomae ? "model" : "model_state"
        try TorchWriter.write(.dict([(.string(key), .orderedDict(state))]), storages: storages, to: req.output, overwrite: req.force)
        let size = (try? FileManager.default.attributesOfItem(atPath: req.output)[.size] as? Int) ?? 0
        return ([URL(fileURLWithPath: req.output).lastPathComponent], state.count, size)
    }

    /// `torch.cat(parts)` along rows: one [sum rows, cols] tensor (float32 when the parts' dtypes differ).
    static func stackRows(_ parts: [Tensor]) throws -> Tensor {
        let dtype = Set(parts.map(\.dtype)).count == 1 ? parts[0].dtype : DType.f32
        let cols = Array(parts[0].shape.dropFirst())
        guard parts.allSatisfy({ Array($0.shape.dropFirst()) == cols }) else {
            throw FormatError(.malformed, "cannot stack shapes \(parts.map { Tensor.shapeString($0.shape) })")
        }
        let rows = parts.reduce(0) { $0 + $1.shape[0] }
        let buffer = OwnedBuffer(count: parts.reduce(0) { $0 + $1.numel } * dtype.size)
        var offset = 0
        for p in parts {
            if p.dtype == dtype {
                p.data.raw.baseAddress.map { (buffer.pointer + offset).copyMemory(from: $0, byteCount: p.byteCount) }
            } else {
                DTypeCast.convert(p.data.raw.baseAddress!, from: p.dtype, buffer.pointer + offset, to: dtype, count: p.numel)
            }
            offset += p.numel * dtype.size
        }
        return Tensor(dtype: dtype, shape: [rows] + cols, data: buffer.bytes)
    }
}
