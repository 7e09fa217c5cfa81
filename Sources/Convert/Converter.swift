// Checkpoint tensors -> canonical SlowFast weights: detect the naming, map the keys,
// derive (or take) the architecture, check every tensor strictly against the
// model's expected state_dict, then apply head replacement and the dtype policy.
// Tensors that need no change keep pointing at the source bytes.

import Families
import Foundation
import Formats

/// How to convert.
public struct ConvertOptions: Sendable {
    /// The source naming; nil = detect from the keys.
    public var naming: Naming?
    /// The architecture; nil = derive from the tensor shapes.
    public var arch: ArchConfig?
    /// Output dtype of floating-point tensors.
    public var dtype: DTypePolicy
    /// Replace `head.projection` with a fresh head of this many classes.
    public var numClasses: Int?
    /// Initialize missing or mis-shaped tensors fresh and drop unused ones instead of failing.
    public var allowPartial: Bool
    /// Seed of every fresh initialization.
    public var seed: UInt64
    /// How 2D ImageNet kernels fill a 3D target's temporal axis; nil = `.mean` when the
    /// source is 2D (torchvision, Detectron) and the target is not `resnet`.
    public var inflate: InflateMode?
    /// The (preloaded, canonically named) tensors come from a 2D ImageNet network — an ONNX or
    /// Keras ResNet-50 graph — so a 3D target inflates them as it does torchvision/Detectron sources.
    public var sourceIs2D = false
    /// Where the source puts a bottleneck's spatial stride when its convention is known (Keras:
    /// on the first 1x1 conv, true); nil keeps the architecture's (given or detected) setting.
    public var stride1x1: Bool?
    /// A Hugging Face folder's config.json (the transformers' architecture, read as data).
    public var hfConfig: JSONValue?
    /// A transformer's clip (frames, crop) other than the checkpoint's: its token grid; TimeSformer's learned
    /// position and time tables are resized to it (nearest, as transformers and the original code do).
    public var clipFrames: Int?
    public var clipCrop: Int?

    public init(naming: Naming? = nil, arch: ArchConfig? = nil, dtype: DTypePolicy = .f32,
                numClasses: Int? = nil, allowPartial: Bool = false, seed: UInt64 = 0, inflate: InflateMode? = nil) {
        self.inflate = inflate
        self.naming = naming
        self.arch = arch
        self.dtype = dtype
        self.numClasses = numClasses
        self.allowPartial = allowPartial
        self.seed = seed
    }
}

/// Tallies of a conversion. `fromFile + initialized == tensors`; renamed, cast and
/// reordered count subsets of `fromFile`.
public struct ConversionCounts: Sendable, Equatable {
    /// Output tensors.
    public var tensors = 0
    /// Learnable elements of the output (BN running statistics and counters excluded).
    public var parameters = 0
    /// Floating-point elements of the output (parameters plus BN running statistics).
    public var elements = 0
    /// Output tensors taken from the file.
    public var fromFile = 0
    /// ... of which renamed, cast, with reordered columns.
    public var renamed = 0, cast = 0, reordered = 0
    /// Output tensors initialized fresh (or zero/one-filled).
    public var initialized = 0
    /// File tensors not in the output.
    public var dropped = 0
}

/// The canonical weights and what happened to each.
public struct ConversionResult: Sendable {
    /// Canonical names in `arch.expectedParameters()` order.
    public var tensors: TensorMap
    public var arch: ArchConfig
    public var naming: Naming
    /// Per output tensor: "copied", "renamed from X", "renamed from X; cast bf16->f32", ...
    public var report: [(name: String, action: String)]
    /// File tensors left out (names as in the file) and why.
    public var dropped: [(name: String, reason: String)]
    /// Assumptions and decisions (detected naming, guessed alpha, matched preset).
    public var notes: [String]
    public var counts: ConversionCounts

    /// The report as the `sfnet.report` metadata JSON: tensors, dropped and notes, in order.
    public func reportJSON() throws -> String {
        struct Entry: Encodable { var name: String; var action: String }
        struct Drop: Encodable { var name: String; var reason: String }
        struct Report: Encodable { var tensors: [Entry]; var dropped: [Drop]; var notes: [String] }
        let value = Report(tensors: report.map { Entry(name: $0.name, action: $0.action) },
                           dropped: dropped.map { Drop(name: $0.name, reason: $0.reason) }, notes: notes)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

/// Converts the tensors of `checkpoint` to canonical SlowFast weights.
/// `progress(done, total)` is called once per output tensor.
public func convertTensors(_ checkpoint: Checkpoint, options: ConvertOptions,
                           progress: ((Int, Int) -> Void)? = nil) throws -> ConversionResult {
    let source = checkpoint.tensors
    guard source.count > 0 else { throw ConvertError.noTensors }
    if options.naming?.isTransformer == true || options.arch?.model.isTransformer == true
        || (options.naming == nil && TransformerConvert.detectNaming(source.names) != nil) {
        return try TransformerConvert.convert(checkpoint, naming: options.naming, hfConfig: options.hfConfig, options: options)
    }
    var notes: [String] = []

    // 1. Naming.
    let naming: Naming
    if let given = options.naming {
        naming = given
    } else if Naming.pyslowfast.score(source.names) == 1 {
        // Every key is already canonical: no other table can explain more (and scoring them all costs time).
        naming = .pyslowfast
        notes.append("naming pyslowfast detected (every key is a canonical PySlowFast name)")
    } else {
        let scores = Naming.scores(source.names)
        naming = try Naming.detect(source.names, scores: scores)
        notes.append("naming \(naming.rawValue) detected ("
            + scores.map { "\($0.naming.rawValue) \(String(format: "%.2f", $0.score))" }.joined(separator: ", ") + ")")
    }

    // 2. Canonical names. Training-state blobs are left out; 2D kernels get a unit temporal axis.
    var mapped: [String: (source: String, tensor: Tensor)] = [:]
    var mappedOrder: [String] = []
    var derivedActions: [String: [String]] = [:]
    var dropped: [(name: String, reason: String)] = []
    for (name, original) in source.ordered {
        if let reason = naming.ignoredReason(name) {
            dropped.append((name, reason))
            continue
        }
        let canonical = naming.canonicalName(name).name
        var tensor = original
        if naming.is2D, original.shape.count == 4, canonical.hasSuffix(".weight") {
            tensor = Inflate.addTemporalAxis(original)
        }
        if naming == .mmaction2, canonical == "head.lin_5.weight", original.shape.count == 2 {
            // mmaction2's X3DHead.fc1 is a Linear; PySlowFast's lin_5 the same map as a 1x1x1 Conv3d.
            tensor.shape += [1, 1, 1]
            derivedActions[canonical] = ["trailing unit dims appended \(Tensor.shapeString(original.shape))->\(Tensor.shapeString(tensor.shape)) (X3DHead's fc1 is a Linear)"]
        }
        if let first = mapped[canonical] {
            throw ConvertError.duplicateKey(canonical: canonical, sources: [first.source, name])
        }
        mapped[canonical] = (name, tensor)
        mappedOrder.append(canonical)
    }

    // 3. Architecture.
    var arch: ArchConfig
    if let given = options.arch {
        try given.validate()
        arch = given.withPresetName()   // a `preset` field that no longer fits is cleared
    } else {
        var shapes: [String: [Int]] = [:]
        for (name, entry) in mapped where Naming.isCanonical(name) { shapes[name] = entry.tensor.shape }
        let detection = try ArchDetect.detect(shapes: shapes, numClassesFallback: options.numClasses)
        arch = detection.config
        notes += detection.notes
    }
    if let classes = options.numClasses {
        guard classes > 0 else { throw ConvertError.invalidConfig(["--num-classes must be >= 1, is \(classes)"]) }
        let before = arch.preset
        arch.numClasses = classes
        arch = arch.withPresetName()
        if let before, arch.preset == nil { notes.append("--num-classes \(classes): the output is preset \(before) with \(classes) classes") }
    }

    if let s = options.stride1x1, arch.stride1x1 != s {
        arch.stride1x1 = s
        arch = arch.withPresetName()
        notes.append(s ? "stride_1x1 true: the source puts each bottleneck's spatial stride on its first 1x1 conv (branch2.a), not on the 3x3"
                       : "stride_1x1 false: the source puts each bottleneck's spatial stride on the 3x3 conv (branch2.b)")
    }

    // 3b. Inflation: 2D ImageNet weights into a 3D target.
    let inflation: InflateMode?
    let source2D = naming.is2D || options.sourceIs2D
    if source2D && arch.model != .resnet {
        inflation = options.inflate ?? .mean
        notes.append("inflating 2D \(options.sourceIs2D ? "ImageNet graph" : naming.rawValue) weights into \(arch.summary) (\(inflation!.rawValue)); fast pathway, fusions and head start fresh (PySlowFast init, seed \(options.seed))")
    } else {
        inflation = nil
        if let mode = options.inflate {
            notes.append("--inflate \(mode.rawValue) ignored: \(source2D ? "the target is 2D" : "the source naming \(naming.rawValue) is not a 2D ImageNet network")")
        }
    }

    // 4. Match every expected tensor against the file.
    let expected = arch.expectedParameters()
    let fileFloat = dominantFloatDType(source)
    var plan = [PlannedTensor]()
    var offenders = [TensorMismatch]()
    for entry in expected {
        let inFile = mapped[entry.name]
        if let classes = options.numClasses, entry.name.hasPrefix("head.projection.") {
            if let inFile {
                dropped.append((inFile.source, "replaced by a fresh head (--num-classes \(classes)); file has \(Tensor.shapeString(inFile.tensor.shape))"))
            }
            plan.append(.fresh(entry.name, entry.shape, reason: "--num-classes \(classes)"))
            continue
        }
        if let mode = inflation {
            if !Inflate.takesFrom2D(entry.name) {
                if let inFile {
                    dropped.append((inFile.source, "2D ImageNet tensor \(Tensor.shapeString(inFile.tensor.shape)) not used by \(arch.summary); initialized fresh instead"))
                }
                plan.append(.fresh(entry.name, entry.shape, reason: "PySlowFast init", zeroFinalBN: true))
                continue
            }
            if let inFile, inFile.tensor.shape != entry.shape,
               let (tensor, actions) = Inflate.fit(inFile.tensor, to: entry.shape, mode: mode) {
                plan.append(.file(entry.name, tensor, renamedFrom: inFile.source == entry.name ? nil : inFile.source, actions: actions))
                continue
            }
        }
        guard var inFile else {
            if naming == .pytorchvideo, arch.model == .x3d, let field = identityShortcutBNField(entry.name, mapped: mapped) {
                // pytorchvideo's create_res_block gives a shortcut a BN only when the channels change; PySlowFast's
                // ResBlock always has one. The identity in eval (and where BN statistics are kept frozen).
                plan.append(.file(entry.name, identityBN(field, entry.shape),
                                  renamedFrom: nil, actions: ["identity BN: pytorchvideo has no BN on this shortcut (\(field) \(identityValue(field)))"]))
                continue
            }
            if entry.name.hasSuffix(".num_batches_tracked") {
                // PyTorch's BatchNorm loads older state_dicts without it the same way.
                plan.append(.fresh(entry.name, entry.shape, reason: "not in file"))
            } else if naming.mayHaveAffineBN, entry.name.hasSuffix(".running_mean") || entry.name.hasSuffix(".running_var"),
                      mapped[moduleName(entry.name) + ".weight"] != nil {
                // Detectron-style affine BN: the scale and shift are the whole normalization.
                plan.append(.fresh(entry.name, entry.shape, reason: "affine-only BN in file (no running statistics)"))
            } else {
                offenders.append(TensorMismatch(kind: .missing, name: entry.name, modelShape: entry.shape))
                plan.append(.fresh(entry.name, entry.shape, reason: "missing from file"))
            }
            continue
        }
        let renamedFrom = inFile.source == entry.name ? nil : inFile.source
        var actions: [String] = []
        let fileShape = inFile.tensor.shape
        if naming == .caffe2, fileShape.count < entry.shape.count, Array(entry.shape.prefix(fileShape.count)) == fileShape,
           entry.shape.dropFirst(fileShape.count).allSatisfy({ $0 == 1 }) {
            // c2_model_loading.py: a blob with fewer dims than the model tensor gets trailing 1s.
            inFile.tensor.shape = entry.shape
            actions.append("trailing unit dims appended \(Tensor.shapeString(fileShape))->\(Tensor.shapeString(entry.shape))")
        }
        actions += derivedActions[entry.name] ?? []
        if source2D, fileShape.count == 5, fileShape[2] == 1, inFile.tensor.shape == entry.shape, entry.shape.count == 5 {
            actions.append("temporal axis added (2D kernel, T=1)")
        }
        if inFile.tensor.shape != entry.shape {
            offenders.append(TensorMismatch(kind: .misshaped, name: entry.name, sourceName: renamedFrom,
                                            fileShape: inFile.tensor.shape, modelShape: entry.shape))
            dropped.append((inFile.source, "shape \(Tensor.shapeString(inFile.tensor.shape)) does not fit the model's \(Tensor.shapeString(entry.shape)); initialized fresh instead"))
            plan.append(.fresh(entry.name, entry.shape, reason: "file has \(Tensor.shapeString(inFile.tensor.shape)), model expects \(Tensor.shapeString(entry.shape))"))
        } else if entry.dtype.isFloatingPoint && !inFile.tensor.dtype.isFloatingPoint {
            offenders.append(TensorMismatch(kind: .wrongDType, name: entry.name, sourceName: renamedFrom,
                                            fileShape: inFile.tensor.shape, modelShape: entry.shape,
                                            fileDType: inFile.tensor.dtype.shortName))
            dropped.append((inFile.source, "dtype \(inFile.tensor.dtype.shortName) is not floating point; initialized fresh instead"))
            plan.append(.fresh(entry.name, entry.shape, reason: "file has dtype \(inFile.tensor.dtype.shortName)"))
        } else {
            plan.append(.file(entry.name, inFile.tensor, renamedFrom: renamedFrom, actions: actions))
        }
    }
    let expectedNames = Set(expected.map(\.name))
    for name in mappedOrder where !expectedNames.contains(name) {
        let entry = mapped[name]!
        offenders.append(TensorMismatch(kind: .unused, name: name, sourceName: entry.source == name ? nil : entry.source,
                                        fileShape: entry.tensor.shape))
        dropped.append((entry.source, "not in the model (\(arch.summary))"))
    }
    if !offenders.isEmpty && !options.allowPartial {
        throw strictError(offenders, arch: arch, naming: naming)
    }
    if !offenders.isEmpty {
        notes.append("--allow-partial: \(offenders.count) tensor\(offenders.count == 1 ? "" : "s") did not fit the model")
    }

    // 5. Build the output: reorder, cast, initialize.
    var result = ConversionResult(tensors: TensorMap(), arch: arch, naming: naming, report: [], dropped: dropped,
                                  notes: notes, counts: ConversionCounts())
    let freshFloat = options.dtype == .keep ? (fileFloat ?? .f32) : options.dtype.target(for: .f32)
    for (index, item) in plan.enumerated() {
        var actions: [String] = []
        var tensor: Tensor
        let name: String
        switch item {
        case let .file(canonical, fileTensor, renamedFrom, derived):
            name = canonical
            tensor = fileTensor
            result.counts.fromFile += 1
            if let renamedFrom {
                actions.append("renamed from \(renamedFrom)")
                result.counts.renamed += 1
            }
            actions += checkpoint.reportActions[renamedFrom ?? canonical] ?? []
            actions += derived
            if naming == .mmaction2, canonical == "head.projection.weight", arch.pathways == 2 {
                tensor = reorderColumns(tensor, leadingColumns: arch.outChannels(stage: 5, pathway: 1))
                actions.append("columns reordered fast-first -> slow-first (mmaction2 head)")
                result.counts.reordered += 1
            }
            let (cast, castAction) = options.dtype.apply(tensor)
            tensor = cast
            if let castAction {
                actions.append(castAction)
                result.counts.cast += 1
            }
            if actions.isEmpty { actions.append("copied") }
        case let .fresh(canonical, shape, reason, zeroFinalBN):
            name = canonical
            var fresh = FreshInit.tensor(name: canonical, shape: shape, seed: options.seed)
            if zeroFinalBN && FreshInit.isZeroInitFinalBN(canonical) {
                fresh = (FreshInit.zeros(shape), "initialized 0 (zero-init final BN)")
            }
            tensor = fresh.tensor.dtype.isFloatingPoint ? DTypePolicy.cast(fresh.tensor, to: freshFloat) : fresh.tensor
            actions.append("\(fresh.action) (\(reason))")
            result.counts.initialized += 1
        }
        result.tensors.set(name, tensor)
        result.report.append((name, actions.joined(separator: "; ")))
        if tensor.dtype.isFloatingPoint { result.counts.elements += tensor.numel }
        if ArchConfig.isLearnable(name) { result.counts.parameters += tensor.numel }
        progress?(index + 1, plan.count)
    }
    result.counts.tensors = result.tensors.count
    result.counts.dropped = result.dropped.count
    return result
}

/// One output tensor: taken from the file, or initialized fresh (and why).
private enum PlannedTensor {
    /// `actions`: what was done to the file's tensor besides renaming and casting.
    case file(String, Tensor, renamedFrom: String?, actions: [String] = [])
    case fresh(String, [Int], reason: String, zeroFinalBN: Bool = false)
}

/// `name` without its field: "s1.pathway0_stem.bn.running_var" -> "s1.pathway0_stem.bn".
private func moduleName(_ name: String) -> String {
    name.lastIndex(of: ".").map { String(name[..<$0]) } ?? name
}

/// The floating-point dtype most of the file's tensors use (fresh tensors follow it under `.keep`).
private func dominantFloatDType(_ tensors: TensorMap) -> DType? {
    var counts: [DType: Int] = [:]
    for (_, t) in tensors.ordered where t.dtype.isFloatingPoint { counts[t.dtype, default: 0] += 1 }
    return counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key.rawValue > $1.key.rawValue) }?.key
}

/// A `[rows, cols]` matrix with its first `leadingColumns` columns moved to the end:
/// mmaction2's head sees [fast, slow], PySlowFast's [slow, fast].
func reorderColumns(_ t: Tensor, leadingColumns: Int) -> Tensor {
    precondition(t.shape.count == 2 && leadingColumns <= t.shape[1])
    let (rows, cols, size) = (t.shape[0], t.shape[1], t.dtype.size)
    let out = OwnedBuffer(count: t.byteCount)
    guard let src = t.data.raw.baseAddress else { return t }
    let rowBytes = cols * size, lead = leadingColumns * size
    for r in 0 ..< rows {
        let from = src + r * rowBytes, to = out.pointer + r * rowBytes
        to.copyMemory(from: from + lead, byteCount: rowBytes - lead)
        (to + (rowBytes - lead)).copyMemory(from: from, byteCount: lead)
    }
    return Tensor(dtype: t.dtype, shape: t.shape, data: out.bytes)
}

/// The strict-check error: up to 10 offenders (mis-shaped first), the total, and a hint.
private func strictError(_ all: [TensorMismatch], arch: ArchConfig, naming: Naming) -> ConvertError {
    let rank: [TensorMismatch.Kind: Int] = [.misshaped: 0, .wrongDType: 1, .missing: 2, .unused: 3]
    let sorted = all.enumerated().sorted { (rank[$0.element.kind]!, $0.offset) < (rank[$1.element.kind]!, $1.offset) }.map(\.element)
    return .mismatch(offenders: Array(sorted.prefix(10)), total: all.count, config: arch.summary,
                     hint: mismatchHint(all, arch: arch, naming: naming))
}

/// A likely cause, where the pattern of offenders shows one.
func mismatchHint(_ offenders: [TensorMismatch], arch: ArchConfig, naming: Naming) -> String? {
    func variant(_ kernel: Int) -> String { kernel == 5 ? "4x16" : kernel == 7 ? "8x8" : "fusion-kernel-\(kernel)" }
    for o in offenders where o.kind == .misshaped && o.name.hasSuffix("conv_f2s.weight") {
        if let f = o.fileShape, let m = o.modelShape, f.count == 5, m.count == 5, f[2] != m[2],
           f[0] == m[0], f[1] == m[1] {
            return "fusion kernel \(f[2]) vs \(m[2]): \(variant(f[2])) weights with an \(variant(m[2])) config?"
        }
    }
    let head = offenders.filter { $0.name.hasPrefix("head.projection.") }
    if head.count == offenders.count, let f = head.first?.fileShape, let m = head.first?.modelShape,
       f.count == m.count, f.last == m.last || f.count == 1 {
        return "the file's head has \(f[0]) classes, the config \(m[0]): pass --num-classes \(m[0]) to start a fresh head"
    }
    let foreign = offenders.filter { $0.kind == .unused && !Naming.isCanonical($0.name) }
    if let example = foreign.first {
        return "\(foreign.count) key\(foreign.count == 1 ? "" : "s") have no SlowFast name under naming \(naming.rawValue) (e.g. '\(example.sourceName ?? example.name)'); wrong --naming?"
    }
    let fuseBN = offenders.filter { $0.name.contains("_fuse.bn.") }
    if !fuseBN.isEmpty && fuseBN.count == offenders.count {
        return arch.fusionNorm ? "the file has no fusion BN: use a config with fusion_norm false"
                               : "the file has fusion BN: use a config with fusion_norm true"
    }
    return nil
}

/// For `sK.pathway0_resI.branch1_bn.<field>` whose block has a `branch1` conv in `mapped`: the field.
private func identityShortcutBNField(_ name: String, mapped: [String: (source: String, tensor: Tensor)]) -> String? {
    guard let range = name.range(of: ".branch1_bn.") else { return nil }
    let block = String(name[..<range.lowerBound])
    guard mapped[block + ".branch1.weight"] != nil else { return nil }
    return String(name[range.upperBound...])
}

/// The value of an identity BatchNorm's field: (x - 0) / sqrt((1 - eps) + eps) * 1 + 0 = x.
private func identityValue(_ field: String) -> String {
    switch field {
    case "weight": return "1"
    case "running_var": return "1 - eps"
    case "num_batches_tracked": return "0"
    default: return "0"
    }
}

/// An identity BatchNorm's field of `shape` (f32; the counter i64).
private func identityBN(_ field: String, _ shape: [Int]) -> Tensor {
    if field == "num_batches_tracked" {
        return Tensor(dtype: .i64, shape: [], data: OwnedBuffer(copying: withUnsafeBytes(of: Int64(0)) { $0 }).bytes)
    }
    let value: Float = field == "weight" ? 1 : field == "running_var" ? 1 - 1e-5 : 0
    let values = [Float](repeating: value, count: shape.reduce(1, *))
    let buffer = OwnedBuffer(count: values.count * 4)
    values.withUnsafeBytes { buffer.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    return Tensor(dtype: .f32, shape: shape, data: buffer.bytes)
}
