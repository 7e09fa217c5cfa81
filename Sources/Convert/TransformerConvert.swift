// Video transformers (VideoMAE, TimeSformer) -> canonical Hugging Face names (transformers 5):
// detect the source's naming (Hugging Face of either generation, the original repositories'
// timm-style names), map the keys, split fused projections where the source fuses what the
// canonical layout keeps apart, take the architecture from config.json (a Hugging Face folder)
// or from the tensor shapes, and check every tensor strictly against the family's layout.

import Families
import Foundation
import Formats

extension Naming {
    /// The namings of the transformer families.
    public var isTransformer: Bool {
        [.huggingface, .videomaeOriginal, .timesformerOriginal, .mmaction2VideoMAE, .mmaction2TimeSformer].contains(self)
    }
}

extension KeyMap {
    /// Hugging Face names of both generations: older VideoMAE checkpoints keep the attention's
    /// biases as `q_bias` / `v_bias` beside the projections; transformers 5 writes `query.bias` / `value.bias`.
    public static let huggingface = KeyMap([
        KeyRule(#"^(.*\.attention\.attention\.)q_bias$"#, "$1query.bias"),
        KeyRule(#"^(.*\.attention\.attention\.)v_bias$"#, "$1value.bias"),
    ])

    /// MCG-NJU/VideoMAE's modeling_finetune.py (timm style). `blocks.N.attn.qkv.weight` is split into
    /// query / key / value by `TransformerConvert` (it has no single canonical name).
    public static let videomaeOriginal = KeyMap([
        KeyRule(#"^patch_embed\.proj\.(weight|bias)$"#, "videomae.embeddings.patch_embeddings.projection.$1"),
        KeyRule(#"^blocks\.(\d+)\.norm1\.(weight|bias)$"#, "videomae.encoder.layer.$1.layernorm_before.$2"),
        KeyRule(#"^blocks\.(\d+)\.norm2\.(weight|bias)$"#, "videomae.encoder.layer.$1.layernorm_after.$2"),
        KeyRule(#"^blocks\.(\d+)\.attn\.q_bias$"#, "videomae.encoder.layer.$1.attention.attention.query.bias"),
        KeyRule(#"^blocks\.(\d+)\.attn\.v_bias$"#, "videomae.encoder.layer.$1.attention.attention.value.bias"),
        KeyRule(#"^blocks\.(\d+)\.attn\.proj\.(weight|bias)$"#, "videomae.encoder.layer.$1.attention.output.dense.$2"),
        KeyRule(#"^blocks\.(\d+)\.mlp\.fc1\.(weight|bias)$"#, "videomae.encoder.layer.$1.intermediate.dense.$2"),
        KeyRule(#"^blocks\.(\d+)\.mlp\.fc2\.(weight|bias)$"#, "videomae.encoder.layer.$1.output.dense.$2"),
        KeyRule(#"^fc_norm\.(weight|bias)$"#, "fc_norm.$1"),
        KeyRule(#"^norm\.(weight|bias)$"#, "videomae.layernorm.$1"),
        KeyRule(#"^head\.(weight|bias)$"#, "classifier.$1"),
    ])

    /// facebookresearch/TimeSformer's vit.py (`model_state`, after the `model.` prefix).
    public static let timesformerOriginal = KeyMap([
        KeyRule(#"^(model\.)?cls_token$"#, "timesformer.embeddings.cls_token"),
        KeyRule(#"^(model\.)?pos_embed$"#, "timesformer.embeddings.position_embeddings"),
        KeyRule(#"^(model\.)?time_embed$"#, "timesformer.embeddings.time_embeddings"),
        KeyRule(#"^(model\.)?patch_embed\.proj\.(weight|bias)$"#, "timesformer.embeddings.patch_embeddings.projection.$2"),
        KeyRule(#"^(model\.)?blocks\.(\d+)\.norm1\.(weight|bias)$"#, "timesformer.encoder.layer.$2.layernorm_before.$3"),
        KeyRule(#"^(model\.)?blocks\.(\d+)\.norm2\.(weight|bias)$"#, "timesformer.encoder.layer.$2.layernorm_after.$3"),
        KeyRule(#"^(model\.)?blocks\.(\d+)\.attn\.qkv\.(weight|bias)$"#, "timesformer.encoder.layer.$2.attention.attention.qkv.$3"),
        KeyRule(#"^(model\.)?blocks\.(\d+)\.attn\.proj\.(weight|bias)$"#, "timesformer.encoder.layer.$2.attention.output.dense.$3"),
        KeyRule(#"^(model\.)?blocks\.(\d+)\.temporal_norm1\.(weight|bias)$"#, "timesformer.encoder.layer.$2.temporal_layernorm.$3"),
        KeyRule(#"^(model\.)?blocks\.(\d+)\.temporal_attn\.qkv\.(weight|bias)$"#, "timesformer.encoder.layer.$2.temporal_attention.attention.qkv.$3"),
        KeyRule(#"^(model\.)?blocks\.(\d+)\.temporal_attn\.proj\.(weight|bias)$"#, "timesformer.encoder.layer.$2.temporal_attention.output.dense.$3"),
        KeyRule(#"^(model\.)?blocks\.(\d+)\.temporal_fc\.(weight|bias)$"#, "timesformer.encoder.layer.$2.temporal_dense.$3"),
        KeyRule(#"^(model\.)?blocks\.(\d+)\.mlp\.fc1\.(weight|bias)$"#, "timesformer.encoder.layer.$2.intermediate.dense.$3"),
        KeyRule(#"^(model\.)?blocks\.(\d+)\.mlp\.fc2\.(weight|bias)$"#, "timesformer.encoder.layer.$2.output.dense.$3"),
        KeyRule(#"^(model\.)?norm\.(weight|bias)$"#, "timesformer.layernorm.$2"),
        KeyRule(#"^(model\.)?head\.(weight|bias)$"#, "classifier.$2"),
    ])
}

public enum TransformerConvert {
    /// The transformer naming of `keys`, or nil when they are not a video transformer's.
    public static func detectNaming(_ keys: [String]) -> Naming? {
        if let mmaction2 = MMAction2Transformer.detect(keys) { return mmaction2 }
        if keys.contains(where: { $0.hasPrefix("videomae.") || $0.hasPrefix("timesformer.") }) { return .huggingface }
        let stripped = keys.map { $0.hasPrefix("model.") ? String($0.dropFirst(6)) : $0 }
        if stripped.contains(where: { $0.hasPrefix("blocks.") && $0.contains(".temporal_attn.") }) || stripped.contains("time_embed") {
            return .timesformerOriginal
        }
        if stripped.contains(where: { $0.hasPrefix("blocks.") && $0.contains(".attn.qkv.") }), stripped.contains(where: { $0.hasPrefix("patch_embed.") }) {
            return .videomaeOriginal
        }
        return nil
    }

    /// The family a naming's keys belong to.
    static func family(_ naming: Naming, keys: [String]) -> ModelKind {
        switch naming {
        case .timesformerOriginal, .mmaction2TimeSformer: return .timesformer
        case .videomaeOriginal, .mmaction2VideoMAE: return .videomae
        default: return keys.contains { $0.hasPrefix("timesformer.") } ? .timesformer : .videomae
        }
    }

    /// Converts `checkpoint` (with `hfConfig`, a Hugging Face folder's config.json, when there is one).
    public static func convert(_ checkpoint: Checkpoint, naming given: Naming?, hfConfig: JSONValue?, options: ConvertOptions,
                               notes initial: [String] = []) throws -> ConversionResult {
        let source = checkpoint.tensors
        guard source.count > 0 else { throw ConvertError.noTensors }
        var notes = initial
        guard let naming = given ?? detectNaming(source.names) else {
            throw ConvertError.archUndetectable("the tensors are not a VideoMAE or TimeSformer checkpoint's (no videomae.*, timesformer.*, "
                                                + "blocks.N.attn.qkv or time_embed keys)")
        }
        if given == nil { notes.append("naming \(naming.rawValue) detected") }
        let family = family(naming, keys: source.names)

        // 1. Canonical names; the original VideoMAE's fused qkv weight split into query, key, value.
        var mapped: [String: (source: String, tensor: Tensor, action: String?)] = [:]
        var order: [String] = []
        var dropped: [(name: String, reason: String)] = []
        func put(_ name: String, _ from: String, _ tensor: Tensor, _ action: String? = nil) throws {
            if let first = mapped[name] { throw ConvertError.duplicateKey(canonical: name, sources: [first.source, from]) }
            mapped[name] = (from, tensor, action)
            order.append(name)
        }
        for (name, tensor) in source.ordered {
            if let reason = try MMAction2Transformer.setAside(name, tensor, naming: naming) {
                dropped.append((name, reason))
                notes.append("\(name): \(reason)")
                continue
            }
            if let layer = naming == .videomaeOriginal ? qkvLayer(name) : naming == .mmaction2VideoMAE ? MMAction2Transformer.qkvLayer(name) : nil {
                guard tensor.shape.count == 2, tensor.shape[0] % 3 == 0 else {
                    throw ConvertError.invalidConfig(["\(name) is \(Tensor.shapeString(tensor.shape)), expected [3 x hidden, hidden]"])
                }
                let parts = try splitRows(tensor, into: 3)
                let prefix = "videomae.encoder.layer.\(layer).attention.attention."
                for (part, field) in zip(parts, ["query", "key", "value"]) {
                    try put(prefix + field + ".weight", name, part, "split from \(name) (rows of \(field))")
                }
                continue
            }
            let canonical = naming.canonicalName(name).name
            // Layer scale (VideoMAE's init_values > 0: x + gamma * branch) changes what every block computes; the
            // Hugging Face network has none, so dropping it would change the numbers silently.
            if naming == .videomaeOriginal, name.hasPrefix("blocks."), name.hasSuffix(".gamma_1") || name.hasSuffix(".gamma_2") {
                throw ConvertError.invalidConfig(["\(name): a layer-scale VideoMAE (init_values > 0) scales each block's branches by "
                    + "gamma_1 / gamma_2, which the Hugging Face network sfnet runs does not have; it cannot be converted without changing its outputs"])
            }
            let canonicalRoots = ["videomae.", "timesformer.", "fc_norm.", "classifier."]
            if naming != .huggingface, !canonicalRoots.contains(where: { canonical.hasPrefix($0) }) {
                dropped.append((name, "not a tensor of the \(family.rawValue) network (no \(naming.rawValue) rule maps it)"))
                continue
            }
            try put(canonical, name, tensor)
        }

        // 2. Architecture: given, from config.json, or from the shapes.
        var arch: ArchConfig
        var result0Notes: [String] = []
        if let a = options.arch {
            try a.validate()
            arch = a.withPresetName()
        } else if let hfConfig {
            let (a, configNotes) = try architecture(fromHFConfig: hfConfig)
            guard a.model == family else {
                throw ConvertError.invalidConfig(["config.json describes \(a.model.rawValue), but the tensors are \(family.rawValue)'s"])
            }
            arch = a
            notes += configNotes
        } else {
            let detected = try architecture(shapes: mapped.mapValues(\.tensor.shape), family: family, naming: naming)
            arch = detected.arch
            notes += detected.notes
        }
        if let classes = options.numClasses {
            guard classes > 0 else { throw ConvertError.invalidConfig(["--num-classes must be >= 1, is \(classes)"]) }
            arch.numClasses = classes
            arch = arch.withPresetName()
        }

        // 2b. Another clip: the grid changes; TimeSformer's learned tables are resized after the strict check.
        let sourceArch = arch
        let newClip = options.clipFrames != nil || options.clipCrop != nil
        if newClip {
            let clip = (frames: options.clipFrames ?? arch.numFrames, crop: options.clipCrop ?? arch.trainCrop)
            arch.numFrames = clip.frames
            arch.trainCrop = clip.crop
            arch = arch.withPresetName()
            do { try arch.validate() } catch let e as FamilyError { throw ConvertError.invalidConfig(["--frames/--crop: \(e)"]) }
            if family == .videomae {
                result0Notes.append("clip \(clip.frames)x\(clip.crop)² (the checkpoint's \(sourceArch.numFrames)x\(sourceArch.trainCrop)²): "
                                    + "VideoMAE's position table is the fixed sinusoid of the new grid; no tensor changes")
            }
        }

        // 3. Every expected tensor, strictly.
        let layout = TransformerLayout(arch: arch)
        if family == .timesformer, newClip {
            let before = TransformerLayout(arch: sourceArch)
            for (name, wanted) in [(before.positionEmbeddings!, layout.parameters.first { $0.name == layout.positionEmbeddings! }!.shape),
                                   (before.timeEmbeddings!, layout.parameters.first { $0.name == layout.timeEmbeddings! }!.shape)] {
                guard let entry = mapped[name], entry.tensor.shape.count == 3, entry.tensor.shape != wanted else { continue }
                let resized = try resizeTable(entry.tensor, to: wanted, spatial: name == before.positionEmbeddings!)
                mapped[name] = (entry.source, resized, [entry.action, "resized (nearest) \(Tensor.shapeString(entry.tensor.shape)) -> "
                                                          + "\(Tensor.shapeString(wanted))"].compactMap { $0 }.joined(separator: "; "))
            }
            result0Notes.append("clip \(arch.numFrames)x\(arch.trainCrop)² (the checkpoint's \(sourceArch.numFrames)x\(sourceArch.trainCrop)²): "
                                + "position and time tables resized by nearest neighbour, as transformers and TimeSformer's load_pretrained do")
        }
        var result = ConversionResult(tensors: TensorMap(), arch: arch, naming: naming, report: [], dropped: dropped, notes: notes + result0Notes,
                                      counts: ConversionCounts())
        var offenders: [TensorMismatch] = []
        let expected = layout.parameters
        for spec in expected {
            var actions: [String] = []
            var tensor: Tensor
            if let classes = options.numClasses, spec.name.hasPrefix(layout.classifier + ".") {
                if let inFile = mapped[spec.name] {
                    result.dropped.append((inFile.source, "replaced by a fresh classifier (--num-classes \(classes)); file has \(Tensor.shapeString(inFile.tensor.shape))"))
                }
                let fresh = FreshInit.transformerTensor(spec, seed: options.seed)
                tensor = fresh.tensor
                actions.append("\(fresh.action) (--num-classes \(classes))")
                result.counts.initialized += 1
            } else if let inFile = mapped[spec.name], inFile.tensor.shape == spec.shape, inFile.tensor.dtype.isFloatingPoint {
                tensor = inFile.tensor
                result.counts.fromFile += 1
                if inFile.source != spec.name {
                    actions.append(inFile.action ?? "renamed from \(inFile.source)")
                    result.counts.renamed += 1
                } else if let action = inFile.action {
                    actions.append(action)
                }
                actions += checkpoint.reportActions[inFile.source] ?? []
            } else {
                if let inFile = mapped[spec.name] {
                    offenders.append(TensorMismatch(kind: inFile.tensor.dtype.isFloatingPoint ? .misshaped : .wrongDType, name: spec.name,
                                                    sourceName: inFile.source == spec.name ? nil : inFile.source,
                                                    fileShape: inFile.tensor.shape, modelShape: spec.shape,
                                                    fileDType: inFile.tensor.dtype.shortName))
                    result.dropped.append((inFile.source, "shape \(Tensor.shapeString(inFile.tensor.shape)) does not fit the model's \(Tensor.shapeString(spec.shape)); initialized fresh instead"))
                } else {
                    offenders.append(TensorMismatch(kind: .missing, name: spec.name, modelShape: spec.shape))
                }
                let fresh = FreshInit.transformerTensor(spec, seed: options.seed)
                tensor = fresh.tensor
                actions.append("\(fresh.action) (not in file)")
                result.counts.initialized += 1
            }
            let (cast, castAction) = options.dtype.apply(tensor)
            tensor = cast
            if let castAction { actions.append(castAction); result.counts.cast += 1 }
            if actions.isEmpty { actions.append("copied") }
            result.tensors.set(spec.name, tensor)
            result.report.append((spec.name, actions.joined(separator: "; ")))
            if tensor.dtype.isFloatingPoint { result.counts.elements += tensor.numel }
            if spec.role.isLearnable { result.counts.parameters += tensor.numel }
        }
        let expectedNames = Set(expected.map(\.name))
        for name in order where !expectedNames.contains(name) {
            let entry = mapped[name]!
            offenders.append(TensorMismatch(kind: .unused, name: name, sourceName: entry.source == name ? nil : entry.source,
                                            fileShape: entry.tensor.shape))
            result.dropped.append((entry.source, "not in the model (\(arch.summary))"))
        }
        if !offenders.isEmpty && !options.allowPartial {
            var hint: String? = hfConfig != nil ? "config.json describes \(arch.summary); its tensors do not match it" : nil
            if offenders.allSatisfy({ $0.name.hasPrefix(layout.classifier + ".") }) {
                hint = (hfConfig != nil ? "config.json describes \(arch.numClasses) labels; " : "")
                    + "the file's classifier does not fit \(arch.numClasses) classes: pass --num-classes to start a fresh one"
            }
            throw ConvertError.mismatch(offenders: Array(offenders.prefix(10)), total: offenders.count, config: arch.summary, hint: hint)
        }
        if !offenders.isEmpty { result.notes.append("--allow-partial: \(offenders.count) tensor(s) did not fit the model") }
        result.counts.tensors = result.tensors.count
        result.counts.dropped = result.dropped.count
        return result
    }

    /// TimeSformer's position table [1, 1 + h*w, D] (class row kept, the h x w grid resized) or time table
    /// [1, T, D], resized by nearest neighbour as torch's F.interpolate(mode="nearest"): source index
    /// floor(dst * (in / out)) computed in float32.
    static func resizeTable(_ t: Tensor, to shape: [Int], spatial: Bool) throws -> Tensor {
        let d = t.shape[2]
        guard shape.count == 3, shape[2] == d else { throw ConvertError.invalidConfig(["cannot resize \(Tensor.shapeString(t.shape)) to \(Tensor.shapeString(shape))"]) }
        let src = t.floats()
        func nearest(_ dst: Int, _ inSize: Int, _ outSize: Int) -> Int {
            min(Int((Float(dst) * (Float(inSize) / Float(outSize))).rounded(.down)), inSize - 1)
        }
        var out = [Float](repeating: 0, count: shape[1] * d)
        if spatial {
            let inSide = Int(Double(t.shape[1] - 1).squareRoot().rounded()), outSide = Int(Double(shape[1] - 1).squareRoot().rounded())
            guard inSide * inSide == t.shape[1] - 1, outSide * outSide == shape[1] - 1 else {
                throw ConvertError.invalidConfig(["position table \(Tensor.shapeString(t.shape)) is not a class row plus a square grid"])
            }
            for j in 0 ..< d { out[j] = src[j] }
            for y in 0 ..< outSide {
                for x in 0 ..< outSide {
                    let from = 1 + nearest(y, inSide, outSide) * inSide + nearest(x, inSide, outSide)
                    for j in 0 ..< d { out[(1 + y * outSide + x) * d + j] = src[from * d + j] }
                }
            }
        } else {
            for f in 0 ..< shape[1] {
                let from = nearest(f, t.shape[1], shape[1])
                for j in 0 ..< d { out[f * d + j] = src[from * d + j] }
            }
        }
        let buffer = OwnedBuffer(count: out.count * 4)
        out.withUnsafeBytes { buffer.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return Tensor(dtype: .f32, shape: shape, data: buffer.bytes)
    }

    /// N for `blocks.N.attn.qkv.weight`.
    static func qkvLayer(_ name: String) -> Int? {
        guard name.hasPrefix("blocks."), name.hasSuffix(".attn.qkv.weight") else { return nil }
        return Int(name.dropFirst(7).dropLast(16))
    }

    /// A [rows, cols] tensor split into `parts` consecutive row blocks (each a copy, same dtype).
    static func splitRows(_ t: Tensor, into parts: Int) throws -> [Tensor] {
        let rows = t.shape[0] / parts, rowBytes = t.shape.dropFirst().reduce(1, *) * t.dtype.size
        guard let base = t.data.raw.baseAddress else { return [] }
        return (0 ..< parts).map { p in
            let buffer = OwnedBuffer(count: rows * rowBytes)
            buffer.pointer.copyMemory(from: base + p * rows * rowBytes, byteCount: rows * rowBytes)
            return Tensor(dtype: t.dtype, shape: [rows] + t.shape.dropFirst(), data: buffer.bytes)
        }
    }

    // MARK: Architecture

    /// The architecture a Hugging Face config.json describes (read as data: only the fields below;
    /// `auto_map` and custom code are never followed).
    public static func architecture(fromHFConfig json: JSONValue) throws -> (ArchConfig, [String]) {
        var problems: [String] = []
        var notes: [String] = []
        func int(_ key: String, _ fallback: Int?) -> Int? {
            guard let v = json[key] else { return fallback }
            guard case .number(let d, _, _) = v, d == d.rounded(), abs(d) <= 1e9 else {
                problems.append("config.json \(key) must be an integer, is \(v.serialized.prefix(40))")
                return nil
            }
            return Int(d)
        }
        func double(_ key: String, _ fallback: Double) -> Double {
            guard let v = json[key] else { return fallback }
            guard case .number(let d, _, _) = v, d.isFinite else {
                problems.append("config.json \(key) must be a number, is \(v.serialized.prefix(40))")
                return fallback
            }
            return d
        }
        func bool(_ key: String, _ fallback: Bool) -> Bool {
            guard let v = json[key] else { return fallback }
            guard case .bool(let b) = v else { problems.append("config.json \(key) must be true or false"); return fallback }
            return b
        }
        func string(_ key: String) -> String? { json[key]?.stringValue }
        let modelType = string("model_type")
        let family: ModelKind
        switch modelType {
        case "videomae": family = .videomae
        case "timesformer": family = .timesformer
        default:
            throw ConvertError.invalidConfig(["config.json model_type is \(modelType.map { "\"\($0.prefix(40))\"" } ?? "missing"); "
                                              + "sfnet reads \"videomae\" and \"timesformer\" folders"])
        }
        if json["auto_map"] != nil || json["trust_remote_code"] != nil {
            notes.append("config.json names custom code (auto_map): not run or followed; the network is sfnet's own \(family.rawValue)")
        }
        if let channels = int("num_channels", 3), channels != 3 { problems.append("config.json num_channels must be 3, is \(channels)") }
        let classes: Int? = {
            if case .object(let labels)? = json["id2label"], !labels.isEmpty { return labels.count }
            return int("num_labels", nil)
        }()
        let hidden = int("hidden_size", 768), layers = int("num_hidden_layers", 12), heads = int("num_attention_heads", 12)
        let intermediate = int("intermediate_size", 3072), patch = int("patch_size", 16), image = int("image_size", 224)
        let frames = int("num_frames", family == .videomae ? 16 : 8)
        let tubelet = family == .videomae ? int("tubelet_size", 2) : 1
        var act = string("hidden_act") ?? "gelu"
        if let canonical = TransformerConfig.activations[act] { act = canonical } else {
            problems.append("config.json hidden_act \"\(act.prefix(40))\" is not a GELU sfnet runs (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast)")
        }
        let eps = double("layer_norm_eps", family == .videomae ? 1e-12 : 1e-6)
        let qkvBias = family == .videomae ? bool("qkv_bias", bool("qv_bias", true)) : bool("qkv_bias", true)
        let meanPooling = family == .videomae ? bool("use_mean_pooling", true) : false
        if family == .timesformer, let type = string("attention_type"), type != "divided_space_time" {
            problems.append("config.json attention_type \"\(type.prefix(40))\": sfnet runs divided_space_time TimeSformers only")
        }
        guard problems.isEmpty, let hidden, let layers, let heads, let intermediate, let patch, let image, let frames, let tubelet else {
            throw ConvertError.invalidConfig(problems)
        }
        guard let classes else { throw ConvertError.invalidConfig(["config.json has neither id2label nor num_labels"]) }
        let t = TransformerConfig(hiddenSize: hidden, layers: layers, heads: heads, intermediateSize: intermediate, patchSize: patch,
                                  tubeletSize: tubelet, layerNormEps: eps, hiddenAct: act, qkvBias: qkvBias, meanPooling: meanPooling,
                                  fcNormEps: 1e-5, attention: family == .videomae ? .joint : .dividedSpaceTime)
        let arch = ArchConfig(transformer: t, family: family, numClasses: classes, numFrames: frames, trainCrop: image).withPresetName()
        do { try arch.validate() } catch let e as FamilyError { throw ConvertError.invalidConfig(["config.json: \(e)"]) }
        notes.append("architecture from config.json: \(arch.summary)")
        return (arch, notes)
    }

    /// The architecture the canonical shapes imply. Heads and (for VideoMAE) the clip cannot be read
    /// from tensors: heads are hidden / 64 (every published VideoMAE and TimeSformer), the clip 16x224
    /// (VideoMAE); the norms' eps are the producer's.
    static func architecture(shapes: [String: [Int]], family: ModelKind, naming: Naming) throws -> (arch: ArchConfig, notes: [String]) {
        let root = family == .videomae ? "videomae" : "timesformer"
        guard let kernel = shapes["\(root).embeddings.patch_embeddings.projection.weight"],
              kernel.count == (family == .videomae ? 5 : 4) else {
            throw ConvertError.archUndetectable("no \(root) patch embedding of the expected rank")
        }
        let hidden = kernel[0], patch = kernel[kernel.count - 1]
        let tubelet = family == .videomae ? kernel[2] : 1
        var layers = 0
        while shapes["\(root).encoder.layer.\(layers).intermediate.dense.weight"] != nil { layers += 1 }
        guard layers > 0, let mlp = shapes["\(root).encoder.layer.0.intermediate.dense.weight"], mlp.count == 2 else {
            throw ConvertError.archUndetectable("no encoder layers (\(root).encoder.layer.0.intermediate.dense.weight)")
        }
        let classes = shapes["classifier.weight"]?.first ?? 400
        var notes: [String] = []
        let heads = max(1, hidden / 64)
        notes.append("\(heads) attention heads assumed (hidden \(hidden) / 64, as every published \(family.rawValue)): the tensors cannot show them; "
                     + "convert a Hugging Face folder or pass --arch-json to be exact")
        var frames = family == .videomae ? 16 : 8, crop = 224
        let original = naming != .huggingface
        let eps = original ? 1e-6 : (family == .videomae ? 1e-12 : 1e-6)
        let t: TransformerConfig
        if family == .videomae {
            let meanPooling = shapes["fc_norm.weight"] != nil
            t = TransformerConfig(hiddenSize: hidden, layers: layers, heads: heads, intermediateSize: mlp[0], patchSize: patch,
                                  tubeletSize: tubelet, layerNormEps: eps, qkvBias: shapes["\(root).encoder.layer.0.attention.attention.query.bias"] != nil,
                                  meanPooling: meanPooling, fcNormEps: original ? 1e-6 : 1e-5, attention: .joint)
            notes.append("clip \(frames)x\(crop)² assumed (VideoMAE's position table is fixed, not in the file); layer_norm_eps \(eps)"
                         + (meanPooling ? ", fc_norm eps \(original ? 1e-6 : 1e-5)" : "") + " (\(original ? "the original code's" : "Hugging Face's default"))")
        } else {
            if let time = shapes["timesformer.embeddings.time_embeddings"], time.count == 3 { frames = time[1] }
            if let pos = shapes["timesformer.embeddings.position_embeddings"], pos.count == 3 {
                let side = Int(Double(pos[1] - 1).squareRoot().rounded())
                if side * side == pos[1] - 1 { crop = side * patch }
            }
            t = TransformerConfig(hiddenSize: hidden, layers: layers, heads: heads, intermediateSize: mlp[0], patchSize: patch,
                                  tubeletSize: 1, layerNormEps: eps, qkvBias: shapes["\(root).encoder.layer.0.attention.attention.qkv.bias"] != nil,
                                  meanPooling: false, attention: .dividedSpaceTime)
            notes.append("clip \(frames)x\(crop)² from the time and position tables")
        }
        let arch = ArchConfig(transformer: t, family: family, numClasses: classes, numFrames: frames, trainCrop: crop).withPresetName()
        do { try arch.validate() } catch let e as FamilyError { throw ConvertError.invalidConfig(["\(e)"]) }
        if let preset = arch.preset { notes.append("matches preset \(preset)") }
        return (arch, notes)
    }
}
