// `sfnet export WEIGHTS --to onnx`: the network SlowFastModel runs, built from
// the file's `sfnet.arch` as an ONNX graph (Conv, BatchNormalization or BN
// folded into the convs, Relu, MaxPool, Concat slow-first, Add, AveragePool
// with the head's fixed kernels, Flatten + Gemm or a per-position projection
// averaged over the head's grid), initializers as float32 raw_data, written
// atomically. Everything is checked before anything is written.

import Families
import Convert
import Foundation
import Formats

public struct OnnxExportRequest: Sendable {
    public var input: String
    public var output: String
    /// Default-domain opset (13...22).
    public var opset: Int
    /// nil = dynamic batch (`dim_param: "N"`), else a fixed batch size.
    public var batch: Int?
    /// Fold each BatchNormalization into its convolution (weights scaled, bias added).
    public var foldBN: Bool
    /// Initializers of 1 KiB and more go to a page-aligned data file beside the model.
    public var externalData: Bool
    public var force: Bool

    public init(input: String, output: String, opset: Int = 17, batch: Int? = nil, foldBN: Bool = false,
                externalData: Bool = false, force: Bool = false) {
        self.input = input
        self.output = output
        self.opset = opset
        self.batch = batch
        self.foldBN = foldBN
        self.externalData = externalData
        self.force = force
    }
}

public struct OnnxExportSummary: Sendable {
    public var output: String
    public var arch: ArchConfig
    public var nodes: Int
    public var initializers: Int
    public var bytesWritten: Int
    public var inputs: [OnnxValueInfo]
    /// The external data file (a sibling of `output`), when written.
    public var dataFile: String?
    public var notes: [String]
}

public enum OnnxExporter {
    public static let supportedOpsets = 13...22
    /// BatchNorm epsilon of PySlowFast / pytorchvideo (BatchNorm3d default).
    public static let bnEpsilon: Float = 1e-5

    /// The IR version that goes with an opset (onnx's VERSION_TABLE).
    public static func irVersion(opset: Int) -> Int {
        switch opset {
        case ...14: return 7
        case 15...18: return 8
        case 19...20: return 9
        case 21...22: return 10
        default: return 11
        }
    }

    public static func export(_ req: OnnxExportRequest) throws -> OnnxExportSummary {
        guard supportedOpsets.contains(req.opset) else {
            throw OnnxExportError("opset \(req.opset) is not supported (\(supportedOpsets.lowerBound)...\(supportedOpsets.upperBound))")
        }
        if let b = req.batch, b < 1 { throw OnnxExportError("batch size must be >= 1, is \(b)") }
        let (arch, tensors, file) = try readNative(req.input)

        // Outputs: refuse before building anything.
        let url = URL(fileURLWithPath: req.output).standardizedFileURL
        if url == URL(fileURLWithPath: req.input).standardizedFileURL { throw FormatError(.io, "output is the input file", file: req.output) }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.deletingLastPathComponent().path, isDirectory: &isDir), isDir.boolValue else {
            throw FormatError(.io, "the output directory does not exist", file: req.output)
        }
        if FileManager.default.fileExists(atPath: req.output, isDirectory: &isDir) {
            if isDir.boolValue { throw FormatError(.io, "output path is a directory", file: req.output) }
            if !req.force { throw FormatError(.io, "output already exists; use --force to replace it", file: req.output) }
        }

        var model = try OnnxGraphBuilder.build(arch: arch, weights: tensors, opset: req.opset, batch: req.batch, foldBN: req.foldBN)
        model.producerVersion = sfnetVersion
        model.docString = "\(arch.summary), exported by sfnet \(sfnetVersion) from \(file)\(req.foldBN ? " (BN folded)" : "")"
        model.metadata = [("sfnet.arch", try arch.jsonString()), ("sfnet.source", file)]
        var dataFile: String?
        var dataBytes = 0
        if req.externalData {
            let written = try OnnxExternalWriter.write(&model, beside: req.output)
            (dataFile, dataBytes) = (written.path, written.bytes)
        }
        let bytes = try model.serialized()
        try AtomicFile.write(to: req.output, overwrite: req.force) { out in
            try bytes.withUnsafeBytes { try out.write($0) }
        }
        if let dataFile { OnnxExternalWriter.removeStaleDataFiles(beside: req.output, keeping: dataFile) }
        var notes: [String] = []
        if let dataFile {
            notes.append("external data: \(URL(fileURLWithPath: dataFile).lastPathComponent) "
                + "(\(model.initializers.filter { $0.external != nil }.count) initializers, 4096-byte aligned; keep it beside the model)")
        }
        if req.foldBN { notes.append("BatchNormalization folded into the convolutions (eps \(bnEpsilon))") }
        if arch.model == .resnet { notes.append("2D ResNet: input x is (N, 3, H, W), unsqueezed to (N, 3, 1, H, W) inside the graph") }
        return OnnxExportSummary(output: req.output, arch: arch, nodes: model.nodes.count, initializers: model.initializers.count,
                                 bytesWritten: bytes.count + dataBytes, inputs: model.inputs, dataFile: dataFile, notes: notes)
    }

    /// Reads a native sfnet file and checks its tensors against its `sfnet.arch`.
    static func readNative(_ path: String) throws -> (ArchConfig, TensorMap, String) {
        let ckpt = try CheckpointReader.read(path: path)
        let file = URL(fileURLWithPath: path).lastPathComponent
        guard ckpt.format == .safetensors else { throw ExportError.notNative(file, reason: "it is a \(ckpt.format.rawValue) file") }
        guard ckpt.metadataValue("sfnet.format") == "1" else { throw ExportError.notNative(file, reason: "no sfnet.format \"1\" metadata") }
        if let naming = ckpt.metadataValue("sfnet.naming"), naming != "pyslowfast" {
            throw ExportError.notNative(file, reason: "sfnet.naming is '\(naming)', expected 'pyslowfast'")
        }
        guard let archText = ckpt.metadataValue("sfnet.arch") else { throw ExportError.notNative(file, reason: "no sfnet.arch metadata") }
        let arch = try ArchConfig.fromJSON(archText)
        var problems: [String] = []
        let expected = arch.expectedParameters()
        for e in expected where e.dtype.isFloatingPoint {
            guard let t = ckpt.tensors[e.name] else { problems.append("\(e.name): missing, expected \(Tensor.shapeString(e.shape))"); continue }
            if t.shape != e.shape { problems.append("\(e.name): file has \(Tensor.shapeString(t.shape)), arch expects \(Tensor.shapeString(e.shape))") }
            if !t.dtype.isFloatingPoint { problems.append("\(e.name): dtype \(t.dtype.shortName), expected a float") }
        }
        let names = Set(expected.map(\.name))
        for name in ckpt.tensors.names where !names.contains(name) { problems.append("\(name): not in the architecture") }
        if !problems.isEmpty { throw ExportError.inconsistent(file, problems: problems) }
        return (arch, ckpt.tensors, file)
    }
}

public struct OnnxExportError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "cannot export to onnx: \(message)" }
    public var errorDescription: String? { description }
}

/// Builds the ONNX graph of an architecture, mirroring SlowFastModel's forward.
public enum OnnxGraphBuilder {
    public static func build(arch: ArchConfig, weights: TensorMap, opset: Int = 17, batch: Int? = nil,
                             foldBN: Bool = false) throws -> OnnxModel {
        try arch.validate()
        var b = Builder(weights: weights, foldBN: foldBN, opset: opset)
        let n: OnnxDim = batch.map { .value($0) } ?? .param("N")
        let crop = arch.trainCrop
        let twoPath = arch.model == .slowfast

        // Inputs: the training clip, batch dynamic or fixed.
        var x: [String]
        var frames: [Int]
        switch arch.model {
        case .slowfast:
            guard arch.numFrames % arch.alpha == 0 else {
                throw OnnxExportError("num_frames \(arch.numFrames) is not a multiple of alpha \(arch.alpha)")
            }
            frames = [arch.numFrames / arch.alpha, arch.numFrames]
            b.inputs = [OnnxValueInfo(name: "slow", dims: [n, .value(3), .value(frames[0]), .value(crop), .value(crop)]),
                        OnnxValueInfo(name: "fast", dims: [n, .value(3), .value(frames[1]), .value(crop), .value(crop)])]
            x = ["slow", "fast"]
        case .slow:
            frames = [arch.numFrames]
            b.inputs = [OnnxValueInfo(name: "x", dims: [n, .value(3), .value(frames[0]), .value(crop), .value(crop)])]
            x = ["x"]
        case .resnet:
            frames = [1]
            b.inputs = [OnnxValueInfo(name: "x", dims: [n, .value(3), .value(crop), .value(crop)])]
            b.initializers.append(.int64s("x.unsqueeze_axes", [2]))
            b.node("Unsqueeze", name: "x.unsqueeze", inputs: ["x", "x.unsqueeze_axes"], output: "x.5d")
            x = ["x.5d"]
        }
        // Spatial size through the trunk (for the head's grid).
        var size = (crop + 2 * 3 - 7) / 2 + 1           // stem conv
        size = (size + 2 * 1 - 3) / 2 + 1               // stem max pool

        // s1: stems + max pools, then the first fusion.
        for p in 0..<arch.pathways {
            let kT = arch.temporalKernel(stageIndex: 0, pathway: p)
            let y = try b.conv(x[p], "s1.pathway\(p)_stem.conv", bn: "s1.pathway\(p)_stem.bn", kernel: [kT, 7, 7],
                               stride: [1, 2, 2], pads: [kT / 2, 3, 3], relu: true)
            b.node("MaxPool", name: "s1.pathway\(p)_stem.pool", inputs: [y], output: "s1.pathway\(p)",
                   attributes: [("kernel_shape", .ints([1, 3, 3])), ("strides", .ints([1, 2, 2])), ("pads", .ints([0, 1, 1, 0, 1, 1]))])
            x[p] = "s1.pathway\(p)"
        }
        func fuse(_ stage: Int) throws {
            guard twoPath else { return }
            let f = try b.conv(x[1], "s\(stage)_fuse.conv_f2s", bn: arch.fusionNorm ? "s\(stage)_fuse.bn" : nil,
                               kernel: [arch.fusionKernel, 1, 1], stride: [arch.alpha, 1, 1], pads: [arch.fusionKernel / 2, 0, 0],
                               relu: arch.fusionNorm)
            b.node("Concat", name: "s\(stage)_fuse.concat", inputs: [x[0], f], output: "s\(stage)_fuse", attributes: [("axis", .int(1))])
            x[0] = "s\(stage)_fuse"
        }
        try fuse(1)

        // res2...res5, fusions after res2...res4.
        for stage in 2...5 {
            let stride = arch.spatialStrides[stage - 2]
            size = (size - 1) / stride + 1  // 3x3 pad 1 (or 1x1) with this stride
            for p in 0..<arch.pathways {
                let kT = arch.temporalKernel(stageIndex: stage - 1, pathway: p)
                for i in 0..<arch.stageDepths[stage - 2] {
                    let block = "s\(stage).pathway\(p)_res\(i)"
                    let s = i == 0 ? stride : 1
                    let (sa, sb) = arch.stride1x1 ? (s, 1) : (1, s)
                    let input = x[p]
                    let ya = try b.conv(input, block + ".branch2.a", bn: block + ".branch2.a_bn", kernel: [kT, 1, 1],
                                        stride: [1, sa, sa], pads: [kT / 2, 0, 0], relu: true)
                    let yb = try b.conv(ya, block + ".branch2.b", bn: block + ".branch2.b_bn", kernel: [1, 3, 3],
                                        stride: [1, sb, sb], pads: [0, 1, 1], groups: arch.numGroups, relu: true)
                    let yc = try b.conv(yb, block + ".branch2.c", bn: block + ".branch2.c_bn", kernel: [1, 1, 1],
                                        stride: [1, 1, 1], pads: [0, 0, 0], relu: false)
                    var shortcut = input
                    if weights[block + ".branch1.weight"] != nil {
                        shortcut = try b.conv(input, block + ".branch1", bn: block + ".branch1_bn", kernel: [1, 1, 1],
                                              stride: [1, s, s], pads: [0, 0, 0], relu: false)
                    }
                    b.node("Add", name: block + ".add", inputs: [shortcut, yc], output: block + ".sum")
                    b.node("Relu", name: block + ".relu", inputs: [block + ".sum"], output: block)
                    x[p] = block
                }
            }
            if stage < 5 { try fuse(stage) }
        }

        // Head: fixed-kernel average pool per pathway (stride 1), concat slow first.
        let s = arch.trainCrop / 32
        let kernels: [[Int]]
        switch arch.model {
        case .slowfast: kernels = [[arch.numFrames / arch.alpha, s, s], [arch.numFrames, s, s]]
        case .slow: kernels = [[arch.numFrames, s, s]]
        case .resnet: kernels = [[1, s, s]]
        }
        var grids: [[Int]] = []
        for p in 0..<arch.pathways {
            let k = kernels[p]
            let f = [frames[p], size, size]
            guard k.allSatisfy({ $0 >= 1 }), zip(k, f).allSatisfy({ $0 <= $1 }) else {
                throw OnnxExportError("the head's pool kernel \(k) (num_frames \(arch.numFrames), train_crop \(arch.trainCrop)) does not fit res5's \(f)")
            }
            grids.append(zip(f, k).map { $0 - $1 + 1 })
            b.node("AveragePool", name: "head.pathway\(p)_avgpool", inputs: [x[p]], output: "head.pool.pathway\(p)",
                   attributes: [("kernel_shape", .ints(k)), ("strides", .ints([1, 1, 1]))])
        }
        guard grids.allSatisfy({ $0 == grids[0] }) else { throw OnnxExportError("the head's pooled grids differ between pathways: \(grids)") }
        var pooled = "head.pool.pathway0"
        if arch.pathways == 2 {
            b.node("Concat", name: "head.concat", inputs: ["head.pool.pathway0", "head.pool.pathway1"], output: "head.pool", attributes: [("axis", .int(1))])
            pooled = "head.pool"
        }
        try b.addFloat("head.projection.weight")
        try b.addFloat("head.projection.bias")
        let act = arch.headActivation == .softmax ? "Softmax" : "Sigmoid"
        let actAttrs: [(name: String, value: OnnxAttributeValue)] = arch.headActivation == .softmax ? [("axis", .int(-1))] : []
        if grids[0] == [1, 1, 1] {
            // One grid position: (N, C, 1, 1, 1) -> (N, C) -> projection.
            b.node("Flatten", name: "head.flatten", inputs: [pooled], output: "head.features", attributes: [("axis", .int(1))])
            b.node("Gemm", name: "head.projection", inputs: ["head.features", "head.projection.weight", "head.projection.bias"],
                   output: "logits", attributes: [("transB", .int(1))])
            b.node(act, name: "head.act", inputs: ["logits"], output: "probabilities", attributes: actAttrs)
        } else {
            // Per grid position: (N, C, t, h, w) -> (N, t, h, w, C) @ W^T + b -> mean over (t, h, w).
            b.node("Transpose", name: "head.to_channels_last", inputs: [pooled], output: "head.rows", attributes: [("perm", .ints([0, 2, 3, 4, 1]))])
            b.node("Transpose", name: "head.projection.weight_t", inputs: ["head.projection.weight"], output: "head.projection.weight_t",
                   attributes: [("perm", .ints([1, 0]))])
            b.node("MatMul", name: "head.projection.matmul", inputs: ["head.rows", "head.projection.weight_t"], output: "head.projected.nobias")
            b.node("Add", name: "head.projection", inputs: ["head.projected.nobias", "head.projection.bias"], output: "head.projected")
            b.node(act, name: "head.act", inputs: ["head.projected"], output: "head.activated", attributes: actAttrs)
            b.mean(over: [1, 2, 3], "head.projected", output: "logits", name: "head.mean")
            b.mean(over: [1, 2, 3], "head.activated", output: "probabilities", name: "head.act_mean")
        }
        let k = OnnxDim.value(arch.numClasses)
        b.outputs = [OnnxValueInfo(name: "logits", dims: [n, k]), OnnxValueInfo(name: "probabilities", dims: [n, k])]
        return OnnxModel(irVersion: OnnxExporter.irVersion(opset: opset), opset: opset, graphName: "sfnet_\(arch.model.rawValue)",
                         nodes: b.nodes, initializers: b.initializers, inputs: b.inputs, outputs: b.outputs)
    }

    struct Builder {
        let weights: TensorMap
        let foldBN: Bool
        let opset: Int
        var nodes: [OnnxNode] = []
        var initializers: [OnnxInitializer] = []
        var inputs: [OnnxValueInfo] = []
        var outputs: [OnnxValueInfo] = []

        init(weights: TensorMap, foldBN: Bool, opset: Int) {
            self.weights = weights
            self.foldBN = foldBN
            self.opset = opset
        }

        mutating func node(_ op: String, name: String, inputs: [String], output: String,
                           attributes: [(name: String, value: OnnxAttributeValue)] = []) {
            nodes.append(OnnxNode(op, name: name, inputs: inputs, outputs: [output], attributes: attributes))
        }

        func tensor(_ name: String) throws -> Tensor {
            guard let t = weights[name] else { throw OnnxExportError("missing tensor \(name)") }
            return t
        }

        /// Adds a native tensor as a float32 initializer under its canonical name (bytes
        /// shared when already little-endian f32, else converted).
        mutating func addFloat(_ name: String) throws {
            let t = try tensor(name)
            if t.dtype == .f32 {
                initializers.append(OnnxInitializer(name: name, dataType: OnnxInitializer.float, dims: t.shape, rawData: t.data))
            } else {
                initializers.append(.floats(name, dims: t.shape, t.floats()))
            }
        }

        /// Conv (+ BatchNormalization, or BN folded into weight and bias) (+ Relu); returns the output name.
        mutating func conv(_ input: String, _ module: String, bn: String?, kernel: [Int], stride: [Int], pads: [Int],
                           groups: Int = 1, relu: Bool) throws -> String {
            let weight = module + ".weight"
            let w = try tensor(weight)
            guard w.shape.count == 5, Array(w.shape[2...]) == kernel else {
                throw OnnxExportError("\(weight) has shape \(Tensor.shapeString(w.shape)), the network needs kernel \(kernel)")
            }
            var attrs: [(name: String, value: OnnxAttributeValue)] = [
                ("kernel_shape", .ints(kernel)), ("strides", .ints(stride)), ("pads", .ints(pads + pads)),
                ("dilations", .ints([1, 1, 1])),
            ]
            if groups != 1 { attrs.append(("group", .int(groups))) }
            let convOut = module
            var result = convOut
            if let bn, foldBN {
                let (fw, fb) = try folded(w, bn: bn)
                initializers.append(.floats(weight, dims: w.shape, fw))
                initializers.append(.floats(module + ".bias", dims: [w.shape[0]], fb))
                node("Conv", name: module, inputs: [input, weight, module + ".bias"], output: convOut, attributes: attrs)
            } else {
                try addFloat(weight)
                node("Conv", name: module, inputs: [input, weight], output: convOut, attributes: attrs)
                if let bn {
                    for f in ["weight", "bias", "running_mean", "running_var"] { try addFloat(bn + "." + f) }
                    result = bn
                    node("BatchNormalization", name: bn, inputs: [convOut] + ["weight", "bias", "running_mean", "running_var"].map { bn + "." + $0 },
                         output: result, attributes: [("epsilon", .float(OnnxExporter.bnEpsilon))])
                }
            }
            if relu {
                node("Relu", name: module + ".relu", inputs: [result], output: module + ".relu")
                result = module + ".relu"
            }
            return result
        }

        /// w' = w * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps), in double.
        func folded(_ w: Tensor, bn: String) throws -> ([Float], [Float]) {
            let gamma = try tensor(bn + ".weight").floats(), beta = try tensor(bn + ".bias").floats()
            let mean = try tensor(bn + ".running_mean").floats(), variance = try tensor(bn + ".running_var").floats()
            let out = w.shape[0]
            guard [gamma.count, beta.count, mean.count, variance.count].allSatisfy({ $0 == out }) else {
                throw OnnxExportError("\(bn) does not have \(out) channels")
            }
            var weights = w.floats()
            let per = weights.count / out
            var bias = [Float](repeating: 0, count: out)
            for o in 0..<out {
                let scale = Double(gamma[o]) / (Double(variance[o]) + Double(OnnxExporter.bnEpsilon)).squareRoot()
                for j in 0..<per { weights[o * per + j] = Float(Double(weights[o * per + j]) * scale) }
                bias[o] = Float(Double(beta[o]) - Double(mean[o]) * scale)
            }
            return (weights, bias)
        }

        /// ReduceMean over `axes` without keeping them (axes an attribute before opset 18, an input from 18).
        mutating func mean(over axes: [Int], _ input: String, output: String, name: String) {
            if opset >= 18 {
                let axesName = name + ".axes"
                initializers.append(.int64s(axesName, axes))
                node("ReduceMean", name: name, inputs: [input, axesName], output: output, attributes: [("keepdims", .int(0))])
            } else {
                node("ReduceMean", name: name, inputs: [input], output: output, attributes: [("axes", .ints(axes)), ("keepdims", .int(0))])
            }
        }
    }
}
