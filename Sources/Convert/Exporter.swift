// The `export` job as a library call: read a native sfnet file, check it
// against its architecture, rename its tensors into the target ecosystem's
// naming, and write a PyTorch zip checkpoint in that ecosystem's container
// (plus, for PySlowFast, the `--cfg` YAML that builds the matching model).
// Everything is checked before anything is written; each file is atomic.

import Families
import Foundation
import Formats

/// Where an export goes.
public enum ExportTarget: String, CaseIterable, Sendable, Codable {
    /// `{"model_state": OrderedDict, "epoch": -1}` with canonical names, plus a `--cfg` YAML.
    case pyslowfast
    /// `{"model_state": OrderedDict}` with `slowfast_r50` / `slow_r50` / `create_x3d` names.
    case pytorchvideo
    /// `{"state_dict": OrderedDict, "meta": {...}}` with mmaction2 names (SlowFast: head columns fast-first; X3D: X3D + X3DHead).
    case mmaction2

    /// The naming whose forward table reads this target's names back.
    public var naming: Naming {
        switch self {
        case .pyslowfast: return .pyslowfast
        case .pytorchvideo: return .pytorchvideo
        case .mmaction2: return .mmaction2
        }
    }
}

public struct ExportRequest: Sendable {
    /// A native sfnet safetensors file.
    public var input: String
    /// The checkpoint to write.
    public var output: String
    public var target: ExportTarget
    /// Replace existing outputs (the checkpoint and the YAML).
    public var force: Bool
    /// PySlowFast only: where to write the config; nil = the output path with extension `.yaml`.
    public var cfgPath: String?
    /// mmaction2 only: write the fusion BN as lateral `.bn` tensors (a config with
    /// `lateral_norm=True`) instead of refusing weights that have fusion BN.
    public var lateralNorm: Bool

    public init(input: String, output: String, target: ExportTarget, force: Bool = false,
                cfgPath: String? = nil, lateralNorm: Bool = false) {
        self.input = input
        self.output = output
        self.target = target
        self.force = force
        self.cfgPath = cfgPath
        self.lateralNorm = lateralNorm
    }
}

public struct ExportSummary: Sendable {
    public var output: String
    /// The YAML written beside a PySlowFast export.
    public var cfg: String?
    public var target: ExportTarget
    public var arch: ArchConfig
    public var tensors: Int
    public var bytesWritten: Int
    /// What was done beyond renaming (reordered head, counters written as 0).
    public var notes: [String]
}

public enum ExportError: Error, CustomStringConvertible, LocalizedError {
    /// The input is not a native sfnet file (or lacks its metadata).
    case notNative(String, reason: String)
    /// The weights' architecture has no expression in the target.
    case notExpressible(ExportTarget, reason: String, hint: String?)
    /// The tensors disagree with the file's own `sfnet.arch`.
    case inconsistent(String, problems: [String])

    public var description: String {
        switch self {
        case let .notNative(file, reason):
            return "\(file): not a native sfnet file: \(reason). Convert it first with `sfnet convert`."
        case let .notExpressible(target, reason, hint):
            return "cannot export to \(target.rawValue): \(reason)" + (hint.map { "\nhint: \($0)" } ?? "")
        case let .inconsistent(file, problems):
            return "\(file): the tensors do not match the file's sfnet.arch: " + problems.prefix(10).joined(separator: "; ")
                + (problems.count > 10 ? "; ... and \(problems.count - 10) more" : "")
        }
    }

    public var errorDescription: String? { description }
}

public enum Exporter {
    /// The YAML path for a PySlowFast export at `output`.
    public static func defaultCfgPath(for output: String) -> String {
        URL(fileURLWithPath: output).deletingPathExtension().path + ".yaml"
    }

    public static func export(_ req: ExportRequest) throws -> ExportSummary {
        // 1. Read and check the native file.
        let ckpt = try CheckpointReader.read(path: req.input)
        let file = URL(fileURLWithPath: req.input).lastPathComponent
        let arch: ArchConfig
        do { arch = try NativeMetadata.requireNative(ckpt) } catch FamilyError.notNative(let reason) {
            throw ExportError.notNative(file, reason: reason)
        }
        let expected = arch.expectedParameters()
        var problems: [String] = []
        var tensors = TensorMap()
        var notes: [String] = []
        var zeroCounters = 0
        for e in expected {
            guard let t = ckpt.tensors[e.name] else {
                if e.name.hasSuffix(".num_batches_tracked") {
                    tensors.set(e.name, Tensor(dtype: .i64, shape: [], data: OwnedBuffer(copying: withUnsafeBytes(of: Int64(0)) { $0 }).bytes))
                    zeroCounters += 1
                } else {
                    problems.append("\(e.name): missing, expected \(Tensor.shapeString(e.shape))")
                }
                continue
            }
            if t.shape != e.shape { problems.append("\(e.name): file has \(Tensor.shapeString(t.shape)), arch expects \(Tensor.shapeString(e.shape))") }
            if e.dtype.isFloatingPoint != t.dtype.isFloatingPoint || (!e.dtype.isFloatingPoint && t.dtype != e.dtype) {
                problems.append("\(e.name): dtype \(t.dtype.shortName), expected \(e.dtype.isFloatingPoint ? "a float" : e.dtype.shortName)")
            }
            tensors.set(e.name, t)
        }
        let expectedNames = Set(expected.map(\.name))
        for name in ckpt.tensors.names where !expectedNames.contains(name) { problems.append("\(name): not in the architecture") }
        if !problems.isEmpty { throw ExportError.inconsistent(file, problems: problems) }
        if zeroCounters > 0 { notes.append("\(zeroCounters) num_batches_tracked counters absent from the file: written as 0") }

        // 2. Can the target express this network?
        try checkExpressible(arch, req)

        // 3. Outputs: refuse before writing anything.
        let cfgPath = req.target == .pyslowfast ? (req.cfgPath ?? defaultCfgPath(for: req.output)) : nil
        var outputs = [req.output]
        if let cfgPath { outputs.append(cfgPath) }
        if let cfgPath, URL(fileURLWithPath: cfgPath).standardizedFileURL == URL(fileURLWithPath: req.output).standardizedFileURL {
            throw FormatError(.io, "the config path is the output path", file: cfgPath)
        }
        for path in outputs {
            let url = URL(fileURLWithPath: path).standardizedFileURL
            if url == URL(fileURLWithPath: req.input).standardizedFileURL { throw FormatError(.io, "output is the input file", file: path) }
            var isDir: ObjCBool = false
            let dir = url.deletingLastPathComponent().path
            guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
                throw FormatError(.io, "the output directory does not exist", file: path)
            }
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
                if isDir.boolValue { throw FormatError(.io, "output path is a directory", file: path) }
                if !req.force { throw FormatError(.io, "output already exists; use --force to replace it", file: path) }
            }
        }

        // 4. Names and container.
        let naming = req.target.naming
        var map = ExportNames.keyMap(req.target, pathways: arch.pathways, lateralNorm: req.lateralNorm)
        var order = tensors.names
        if arch.model == .x3d {
            // X3D's layouts (X3DExport.swift): pytorchvideo's missing shortcut BN, mmaction2's Linear fc1.
            let adapted = try X3DExport.adapt(tensors, arch: arch, target: req.target)
            (tensors, order, map) = (adapted.0, adapted.0.names, X3DExport.keyMap(req.target))
            notes += adapted.1 + [X3DExport.builder(arch, req.target)].compactMap { $0 }
            if naming == .mmaction2 { order = X3DExport.mmaction2Order(order) }
        } else if naming == .mmaction2 { order = ExportNames.mmaction2Order(order) }
        var storages = TorchWriter.Storages()
        var state: [(String, PickleWriter.Value)] = []
        var seen: [String: String] = [:]
        for name in order {
            var t = tensors[name]!
            let exported = map.map(name).name
            if let other = seen[exported] {
                throw ExportError.notExpressible(req.target, reason: "'\(name)' and '\(other)' would both be named '\(exported)'", hint: nil)
            }
            seen[exported] = name
            if naming == .mmaction2, name == "head.projection.weight", arch.pathways == 2 {
                // Canonical [slow, fast] columns -> mmaction2's [fast, slow].
                t = reorderColumns(t, leadingColumns: arch.outChannels(stage: 5, pathway: 0))
                notes.append("head.projection.weight columns reordered slow-first -> fast-first (mmaction2 head)")
            }
            state.append((exported, try storages.value(t)))
        }
        let root: PickleWriter.Value
        switch req.target {
        case .pyslowfast:
            root = .dict([(.string("model_state"), .orderedDict(state)), (.string("epoch"), .int(-1))])
        case .pytorchvideo:
            root = .dict([(.string("model_state"), .orderedDict(state))])
        case .mmaction2:
            let family: [(String, PickleWriter.Value)] = arch.model == .x3d ? X3DExport.mmaction2Meta(arch) : [
                ("backbone", .string(arch.pathways == 2 ? "ResNet3dSlowFast" : "ResNet3dSlowOnly")),
                ("lateral_norm", .bool(req.lateralNorm && arch.fusionNorm && arch.model == .slowfast)),
            ]
            let meta: PickleWriter.Value = .dict([
                (.string("sfnet_version"), .string(sfnetVersion)),
                (.string("sfnet_arch"), .string(try arch.jsonString())),
            ] + family.map { (.string($0.0), $0.1) } + [
                (.string("source"), .string(file)),
            ])
            root = .dict([(.string("state_dict"), .orderedDict(state)), (.string("meta"), meta)])
        }
        let yaml = cfgPath.map { _ in pyslowfastYAML(arch, weights: URL(fileURLWithPath: req.output).lastPathComponent, source: file) }

        // 5. Write: the checkpoint, then the config (removing a new checkpoint if the config fails).
        let existed = FileManager.default.fileExists(atPath: req.output)
        try TorchWriter.write(root, storages: storages, to: req.output, overwrite: req.force)
        if let cfgPath, let yaml {
            do {
                try AtomicFile.write(to: cfgPath, overwrite: req.force) { out in
                    try Array(yaml.utf8).withUnsafeBytes { try out.write($0) }
                }
            } catch {
                if !existed { try? FileManager.default.removeItem(atPath: req.output) }
                throw error
            }
        }
        let written = (try? FileManager.default.attributesOfItem(atPath: req.output)[.size] as? Int) ?? 0
        return ExportSummary(output: req.output, cfg: cfgPath, target: req.target, arch: arch, tensors: state.count,
                             bytesWritten: written, notes: notes)
    }

    /// Throws when `arch` cannot be built by the target's model code under its names.
    static func checkExpressible(_ arch: ArchConfig, _ req: ExportRequest) throws {
        let target = req.target
        if arch.model.isTransformer {
            throw ExportError.notExpressible(target, reason: "\(target.rawValue) holds SlowFast-family CNNs; these weights are \(arch.summary)",
                                             hint: "export video transformers with --to huggingface, videomae-original, timesformer-original or onnx")
        }
        if arch.model == .slowfast && !arch.fusionNorm && target != .mmaction2 {
            throw ExportError.notExpressible(target, reason: "the weights' fusions are plain convolutions (fusion_norm false, as mmaction2's laterals), "
                + "but \(target.rawValue)'s fast-to-slow fusion is conv -> BN -> ReLU",
                hint: "export these weights to mmaction2, or convert a checkpoint that has fusion BN")
        }
        if arch.model == .slowfast && arch.fusionNorm && target == .mmaction2 && !req.lateralNorm {
            throw ExportError.notExpressible(target, reason: "the weights have fusion BN (s1_fuse.bn ... s4_fuse.bn; fusion is conv -> BN -> ReLU), "
                + "but mmaction2's default laterals are a plain conv without BN or ReLU",
                hint: "export with lateral norm to write them as `*_lateral.bn` for an mmaction2 backbone with lateral_norm=True, or export to pyslowfast/pytorchvideo")
        }
        if arch.model == .x3d { return try X3DExport.checkExpressible(arch, target) }
        switch target {
        case .pyslowfast:
            let depths = [50: [3, 4, 6, 3], 101: [3, 4, 23, 3]]
            guard let depth = depths.first(where: { $0.value == arch.stageDepths })?.key else {
                throw ExportError.notExpressible(target, reason: "stage depths \(arch.stageDepths) are not a PySlowFast RESNET.DEPTH (50: [3,4,6,3], 101: [3,4,23,3])", hint: nil)
            }
            if depth != arch.depth {
                throw ExportError.notExpressible(target, reason: "sfnet.arch says depth \(arch.depth) but its stage depths \(arch.stageDepths) are R\(depth)", hint: nil)
            }
            let basis: [[Int]]
            switch arch.model {
            case .slowfast: basis = [[1, 5], [1, 3], [1, 3], [3, 3], [3, 3]]
            case .slow: basis = [[1], [1], [1], [3], [3]]
            case .x3d, .videomae, .timesformer: return
            case .resnet:
                throw ExportError.notExpressible(target, reason: "PySlowFast has no MODEL.ARCH for a 2D ResNet without temporal pooling (its c2d adds a temporal max-pool after res2)", hint: nil)
            }
            if arch.temporalKernels != basis {
                throw ExportError.notExpressible(target, reason: "temporal kernels \(arch.temporalKernels) differ from PySlowFast's \(arch.model.rawValue) basis \(basis)", hint: nil)
            }
        case .pytorchvideo, .mmaction2:
            if arch.model == .resnet && target == .pytorchvideo {
                throw ExportError.notExpressible(target, reason: "pytorchvideo has no hub model for a 2D ResNet in 3D layout", hint: nil)
            }
        }
    }

    /// The PySlowFast `--cfg` YAML that builds the network of `arch` (eval settings; training left at defaults).
    public static func pyslowfastYAML(_ arch: ArchConfig, weights: String, source: String) -> String {
        let p = arch.pathways
        func perPathway(_ xs: [Int]) -> String { "[" + xs.map { x in "[" + Array(repeating: String(x), count: p).joined(separator: ", ") + "]" }.joined(separator: ", ") + "]" }
        func perStage(_ pathways: [String]) -> String { "[" + Array(repeating: "[" + pathways.joined(separator: ", ") + "]", count: 4).joined(separator: ", ") + "]" }
        func bool(_ b: Bool) -> String { b ? "True" : "False" }
        var lines = [
            "# PySlowFast config for \(weights), written by sfnet \(sfnetVersion) from \(source).",
            "# Use: python tools/run_net.py --cfg this.yaml TEST.CHECKPOINT_FILE_PATH \(weights)",
            "TRAIN:",
            "  ENABLE: False",
            "  CHECKPOINT_TYPE: pytorch",
            "TEST:",
            "  ENABLE: True",
            "  CHECKPOINT_FILE_PATH: \(weights)",
            "  CHECKPOINT_TYPE: pytorch",
            "DATA:",
            "  NUM_FRAMES: \(arch.numFrames)",
            "  TRAIN_CROP_SIZE: \(arch.trainCrop)",
            "  TEST_CROP_SIZE: \(arch.trainCrop)",
            "  INPUT_CHANNEL_NUM: \(p == 2 ? "[3, 3]" : "[3]")",
        ]
        if arch.model == .x3d, let x = arch.x3d {
            // PySlowFast's X3D builder (video_model_builder.X3D) reads these; RESNET.* only for ZERO_INIT_FINAL_BN and the transform.
            lines += [
                "X3D:",
                "  WIDTH_FACTOR: \(x.widthFactor)",
                "  DEPTH_FACTOR: \(x.depthFactor)",
                "  BOTTLENECK_FACTOR: \(x.bottleneckFactor)",
                "  DIM_C1: \(x.dimC1)",
                "  DIM_C5: \(x.dimC5)",
                "  SCALE_RES2: \(bool(x.scaleRes2))",
                "  BN_LIN5: \(bool(x.bnLin5))",
                "  CHANNELWISE_3x3x3: \(bool(x.channelwise))",
                "RESNET:",
                "  TRANS_FUNC: x3d_transform",
                "  ZERO_INIT_FINAL_BN: True",
                "MODEL:",
                "  ARCH: x3d",
                "  MODEL_NAME: X3D",
                "  NUM_CLASSES: \(arch.numClasses)",
                "  DROPOUT_RATE: \(arch.dropout)",
                "  HEAD_ACT: \(arch.headActivation.rawValue)",
                "",
            ]
            return lines.joined(separator: "\n")
        }
        if arch.model == .slowfast {
            lines += [
                "SLOWFAST:",
                "  ALPHA: \(arch.alpha)",
                "  BETA_INV: \(arch.betaInv)",
                "  FUSION_CONV_CHANNEL_RATIO: \(arch.fusionConvChannelRatio)",
                "  FUSION_KERNEL_SZ: \(arch.fusionKernel)",
            ]
        }
        lines += [
            "RESNET:",
            "  DEPTH: \(arch.depth)",
            "  WIDTH_PER_GROUP: \(arch.widthPerGroup)",
            "  NUM_GROUPS: \(arch.numGroups)",
            "  STRIDE_1X1: \(bool(arch.stride1x1))",
            "  TRANS_FUNC: bottleneck_transform",
            "  ZERO_INIT_FINAL_BN: True",
            "  NUM_BLOCK_TEMP_KERNEL: \(perPathway(arch.stageDepths))",
            "  SPATIAL_STRIDES: \(perPathway(arch.spatialStrides))",
            "  SPATIAL_DILATIONS: \(perPathway([1, 1, 1, 1]))",
            "NONLOCAL:",
            "  LOCATION: \(perStage(Array(repeating: "[]", count: p)))",
            "  GROUP: \(perStage(Array(repeating: "1", count: p)))",
            "  POOL: \(perStage(Array(repeating: "[1, 2, 2]", count: p)))",
            "MODEL:",
            "  ARCH: \(arch.model == .slowfast ? "slowfast" : "slow")",
            "  MODEL_NAME: \(arch.model == .slowfast ? "SlowFast" : "ResNet")",
            "  NUM_CLASSES: \(arch.numClasses)",
            "  DROPOUT_RATE: \(arch.dropout)",
            "  HEAD_ACT: \(arch.headActivation.rawValue)",
            "",
        ]
        return lines.joined(separator: "\n")
    }
}
