// `sfnet export WEIGHTS --to onnx`: the network EvalNetwork runs, built from
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

        var model = arch.model.isTransformer  // VideoMAE / TimeSformer: OnnxTransformerExport.swift
            ? try OnnxTransformerGraph.build(arch: arch, weights: tensors, opset: req.opset, batch: req.batch, foldBN: req.foldBN)
            : try OnnxGraphBuilder.build(arch: arch, weights: tensors, opset: req.opset, batch: req.batch, foldBN: req.foldBN)
        model.producerVersion = sfnetVersion
        model.docString = "\(arch.summary), exported by sfnet \(sfnetVersion) from \(file)\(req.foldBN ? " (BN folded)" : "")"
        model.metadata = [(NativeMetadata.archKey, try arch.jsonString()), (NativeMetadata.sourceKey, file)]
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
        if arch.model.isTransformer {
            notes.append("input is sfnet's (N, 3, T, H, W) clip (transformers' pixel_values permuted (0, 2, 1, 3, 4)); outputs logits and \(arch.headActivation == .softmax ? "softmax" : "sigmoid") probabilities")
        }
        return OnnxExportSummary(output: req.output, arch: arch, nodes: model.nodes.count, initializers: model.initializers.count,
                                 bytesWritten: bytes.count + dataBytes, inputs: model.inputs, dataFile: dataFile, notes: notes)
    }

    /// Reads a native sfnet file and checks its tensors against its `sfnet.arch`.
    static func readNative(_ path: String) throws -> (ArchConfig, TensorMap, String) {
        let ckpt = try CheckpointReader.read(path: path)
        let file = URL(fileURLWithPath: path).lastPathComponent
        let arch: ArchConfig
        do { arch = try NativeMetadata.requireNative(ckpt) } catch FamilyError.notNative(let reason) {
            throw ExportError.notNative(file, reason: reason)
        }
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

/// Builds the ONNX graph of an architecture, mirroring EvalNetwork's forward.
public enum OnnxGraphBuilder {
    public static func build(arch: ArchConfig, weights: TensorMap, opset: Int = 17, batch: Int? = nil,
                             foldBN: Bool = false) throws -> OnnxModel {
        try arch.validate()
        var b = Builder(weights: weights, foldBN: foldBN, opset: opset)
        let n: OnnxDim = batch.map { .value($0) } ?? .param("N")
        let crop = arch.trainCrop
        let graph = arch.graph()

        // Inputs: the training clip per lane, batch dynamic or fixed; a 2D lane takes (N, 3, H, W).
        if arch.model == .slowfast, arch.numFrames % arch.alpha != 0 {
            throw OnnxExportError("num_frames \(arch.numFrames) is not a multiple of alpha \(arch.alpha)")
        }
        var x: [String] = []
        let frames = graph.inputs.map(\.frames)
        for input in graph.inputs {
            if input.accepts2D && input.frames == 1 {
                b.inputs.append(OnnxValueInfo(name: input.name, dims: [n, .value(3), .value(crop), .value(crop)]))
                b.initializers.append(.int64s(input.name + ".unsqueeze_axes", [2]))
                b.node("Unsqueeze", name: input.name + ".unsqueeze", inputs: [input.name, input.name + ".unsqueeze_axes"],
                       output: input.name + ".5d")
                x.append(input.name + ".5d")
            } else {
                b.inputs.append(OnnxValueInfo(name: input.name, dims: [n, .value(3), .value(input.frames), .value(crop), .value(crop)]))
                x.append(input.name)
            }
        }
        // The trunk: the graph's nodes in order, tracking each lane's (t, h, w) for the head's grid.
        var extent: [[Int]] = frames.map { [$0, crop, crop] }
        func through(_ lane: Int, kernel: Triple, stride: Triple, padding: Triple) {
            extent[lane] = (0..<3).map { (extent[lane][$0] + 2 * padding.array[$0] - kernel.array[$0]) / stride.array[$0] + 1 }
        }
        func unit(_ input: String, _ u: ConvUnit) throws -> String {
            guard u.activation != .swish else { throw OnnxExportError("\(u.name): swish units are not exported yet") }
            return try b.conv(input, u.name, bn: u.norm, kernel: u.kernel.array, stride: u.stride.array, pads: u.padding.array,
                              groups: u.groups, relu: u.activation == .relu)
        }
        for node in graph.nodes {
            switch node {
            case let .unit(u, lane):
                x[lane] = try unit(x[lane], u)
                through(lane, kernel: u.kernel, stride: u.stride, padding: u.padding)
            case let .maxPool(name, window, lane):
                let pads = window.padding.array
                b.node("MaxPool", name: name, inputs: [x[lane]], output: name,
                       attributes: [("kernel_shape", .ints(window.kernel.array)), ("strides", .ints(window.stride.array)), ("pads", .ints(pads + pads))])
                x[lane] = name
                through(lane, kernel: window.kernel, stride: window.stride, padding: window.padding)
            case let .bottleneck(block, lane):
                let input = x[lane]
                // b stops at its norm; X3D's squeeze-excitation, then b's activation (ReLU or Swish), follow it.
                var bUnit = block.b
                bUnit.activation = .none
                var yb = try unit(try unit(input, block.a), bUnit)
                if let se = block.se { yb = try b.squeezeExcite(yb, se) }
                switch block.b.activation {
                case .relu:
                    b.node("Relu", name: block.b.name + ".relu", inputs: [yb], output: block.b.name + ".relu")
                    yb = block.b.name + ".relu"
                case .swish: yb = b.swish(yb, name: block.b.name + ".swish")
                case .none: break
                }
                let yc = try unit(yb, block.c)
                let shortcut = try block.shortcut.map { try unit(input, $0) } ?? input
                b.node("Add", name: block.name + ".add", inputs: [shortcut, yc], output: block.name + ".sum")
                b.node("Relu", name: block.name + ".relu", inputs: [block.name + ".sum"], output: block.name)
                x[lane] = block.name
                for u in [block.a, block.b, block.c] { through(lane, kernel: u.kernel, stride: u.stride, padding: u.padding) }
            case let .fuse(u, from, into, stage):
                let f = try unit(x[from], u)
                b.node("Concat", name: stage + ".concat", inputs: [x[into], f], output: stage, attributes: [("axis", .int(1))])
                x[into] = stage
            case .stageEnd:
                break
            }
        }

        // Head: fixed-kernel average pool per lane (stride 1), concat in lane order.
        let kernels = graph.head.poolKernels.map(\.array)
        var grids: [[Int]] = []
        for p in 0..<graph.lanes {
            let k = kernels[p]
            let f = extent[p]
            guard k.allSatisfy({ $0 >= 1 }), zip(k, f).allSatisfy({ $0 <= $1 }) else {
                throw OnnxExportError("the head's pool kernel \(k) (num_frames \(arch.numFrames), train_crop \(arch.trainCrop)) does not fit the trunk's \(f)")
            }
            grids.append(zip(f, k).map { $0 - $1 + 1 })
            b.node("AveragePool", name: "head.pathway\(p)_avgpool", inputs: [x[p]], output: "head.pool.pathway\(p)",
                   attributes: [("kernel_shape", .ints(k)), ("strides", .ints([1, 1, 1]))])
        }
        guard grids.allSatisfy({ $0 == grids[0] }) else { throw OnnxExportError("the head's pooled grids differ between pathways: \(grids)") }
        var pooled = "head.pool.pathway0"
        if graph.lanes > 1 {
            b.node("Concat", name: "head.concat", inputs: (0..<graph.lanes).map { "head.pool.pathway\($0)" }, output: "head.pool",
                   attributes: [("axis", .int(1))])
            pooled = "head.pool"
        }
        if let hidden = graph.head.hidden {
            // X3D's lin_5: a 1x1x1 conv (+ BN) + ReLU at each pooled position.
            pooled = try unit(pooled, hidden)
        }
        let projection = graph.head.projection
        try b.addFloat(projection + ".weight")
        try b.addFloat(projection + ".bias")
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

        /// Swish as Sigmoid + Mul; returns the output name.
        mutating func swish(_ input: String, name: String) -> String {
            node("Sigmoid", name: name + ".sigmoid", inputs: [input], output: name + ".sigmoid")
            node("Mul", name: name, inputs: [input, name + ".sigmoid"], output: name)
            return name
        }

        /// Squeeze-excitation: ReduceMean over (T, H, W) kept, Conv fc1 (bias) + Relu, Conv fc2 (bias) + Sigmoid,
        /// Mul with the input; returns the output name.
        mutating func squeezeExcite(_ input: String, _ se: SqueezeExcite) throws -> String {
            let pooled = se.name + ".pool"
            if opset >= 18 {
                initializers.append(.int64s(pooled + ".axes", [2, 3, 4]))
                node("ReduceMean", name: pooled, inputs: [input, pooled + ".axes"], output: pooled, attributes: [("keepdims", .int(1))])
            } else {
                node("ReduceMean", name: pooled, inputs: [input], output: pooled, attributes: [("axes", .ints([2, 3, 4])), ("keepdims", .int(1))])
            }
            var x = pooled
            for (fc, act) in [("fc1", "Relu"), ("fc2", "Sigmoid")] {
                let module = se.name + "." + fc
                try addFloat(module + ".weight")
                try addFloat(module + ".bias")
                node("Conv", name: module, inputs: [x, module + ".weight", module + ".bias"], output: module,
                     attributes: [("kernel_shape", .ints([1, 1, 1])), ("strides", .ints([1, 1, 1])), ("pads", .ints([0, 0, 0, 0, 0, 0]))])
                node(act, name: module + "." + act.lowercased(), inputs: [module], output: module + "." + act.lowercased())
                x = module + "." + act.lowercased()
            }
            node("Mul", name: se.name, inputs: [input, x], output: se.name)
            return se.name
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
