// ONNX ModelProto -> canonical PySlowFast tensors (`sfnet convert --from onnx`).
//
// Names come from the graph, never from initializer names (exporters rename them,
// `onnx::Conv_123`). Each pathway is followed by data flow from its graph input
// (`slow`/`fast`, or the only input): stem conv, then blocks (a -> b -> c, with
// branch1 when the block input feeds a second conv whose output goes straight
// into the residual Add), and on the fast pathway the fusion convs whose output
// is concatenated onto the slow pathway. A block with branch1 starts a new stage.
// The head is the one Gemm (or MatMul + Add) with a constant weight. X3D graphs (a stem conv feeding a
// channel-wise conv) are walked by OnnxImportX3D.swift, VideoMAE / TimeSformer graphs by OnnxImportTransformer.swift.
//
// BatchNormalization after a conv is taken as that conv's BN. A conv with a bias
// and no BN (torch.onnx.export folds BN into the conv in eval mode) becomes the
// conv weight plus an identity BN carrying the bias: running_mean 0, weight 1,
// running_var the float32 nearest to 1 - eps, so var + eps == 1 exactly in float32
// and weight / sqrt(var + eps) rounds to exactly 1 in float64 (both checked).

import Families
import Foundation
import Formats
import Convert

public enum OnnxImport {
    /// PyTorch's (and sfnet's) BatchNorm epsilon.
    static let eps: Float = 1e-5

    /// running_var of the identity BN: var + eps is exactly 1 in float32 arithmetic.
    public static let identityVar: Float = Float(1.0 - Double(eps))

    /// True when the identity BN is exact under both float32 and float64 folding.
    public static var identityIsExact: Bool {
        let f32 = (identityVar + eps).squareRoot() == 1
        let f64 = Float(1.0 / (Double(identityVar) + Double(eps)).squareRoot()) == 1
        return f32 && f64
    }

    public static func read(path: String, arch: ArchConfig? = nil) throws -> Checkpoint {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw FormatError(.io, "cannot read the ONNX file", file: path)
        }
        return try data.withUnsafeBytes { try read(bytes: $0, modelPath: path, arch: arch) }
    }

    /// `read(path:)` on bytes already in memory; external data is resolved beside `modelPath`.
    public static func read(bytes raw: UnsafeRawBufferPointer, modelPath path: String, arch: ArchConfig? = nil) throws -> Checkpoint {
        // External data (SECURITY.md 23-24) and typed f16/bf16/f64 fields are inlined as raw_data first.
        let model: OnnxModel
        if let inlined = try OnnxExternalData.inline(raw, modelPath: path) {
            model = try inlined.withUnsafeBytes { try OnnxModel.parse($0, file: path) }
        } else {
            model = try OnnxModel.parse(raw, file: path)
        }
        return try importModel(model, arch: arch, file: path)
    }

    static func dtype(_ code: Int32) -> DType? {
        switch code {
        case 1: return .f32
        case 10: return .f16
        case 11: return .f64
        case 16: return .bf16
        default: return nil
        }
    }

    static func fail(_ msg: String, _ file: String) -> FormatError {
        FormatError(.malformed, "ONNX graph: " + msg, file: file)
    }

    /// The canonical-name checkpoint of `model` (format reported as safetensors-like
    /// tensors; `metadata` carries `onnx.*` facts and `notes` the per-tensor origin).
    public static func importModel(_ model: OnnxModel, arch: ArchConfig? = nil, file: String = "model.onnx") throws -> Checkpoint {
        var inits: [String: OnnxInitializer] = [:]
        for i in model.initializers { inits[i.name] = i }
        // Constant nodes holding tensors are not modelled by OnnxModel; only initializers count.
        var producer: [String: Int] = [:]
        var consumers: [String: [Int]] = [:]
        let graphInputs = Set(model.inputs.map(\.name))
        for (k, n) in model.nodes.enumerated() {
            // The walk below reads each node's first output (fuzz finding, Fuzz/regressions/onnx/crash-conv-without-outputs).
            guard !n.outputs.isEmpty else { throw fail("node '\(n.name)' (\(n.opType)) has no outputs", file) }
            // ONNX graphs are topologically sorted: a node reads only values defined before it. A node that
            // reads its own output, or a later node's, would make the walks below go round a cycle forever.
            for i in n.inputs where !i.isEmpty && producer[i] == nil && inits[i] == nil && !graphInputs.contains(i) {
                throw fail("node '\(n.name)' (\(n.opType)) reads '\(i)' before any node produces it (the graph is cyclic or not topologically sorted)", file)
            }
            for o in n.outputs where !o.isEmpty {
                if producer[o] != nil { throw fail("value '\(o)' is produced twice", file) }
                if inits[o] != nil || graphInputs.contains(o) {
                    throw fail("node '\(n.name)' (\(n.opType)) output '\(o)' redefines a graph input or initializer", file)
                }
                producer[o] = k
            }
            for i in Set(n.inputs) where !i.isEmpty { consumers[i, default: []].append(k) }
        }
        let nodes = model.nodes
        let passthrough: Set<String> = ["Relu", "MaxPool", "Unsqueeze", "Identity", "Dropout"]
        // torch.onnx.export de-duplicates equal initializers, handing the copies out through Identity nodes.
        var alias: [String: String] = [:]
        for n in nodes where n.opType == "Identity" && n.inputs.count == 1 && inits[n.inputs[0]] != nil && n.outputs.count == 1 {
            alias[n.outputs[0]] = n.inputs[0]
        }
        func constant(_ name: String) -> OnnxInitializer? { inits[name] ?? alias[name].flatMap { inits[$0] } }
        // VideoMAE / TimeSformer (OnnxImportTransformer.swift): one patch-embedding Conv, attention Softmax.
        if isTransformerGraph(nodes) {
            let g = OnnxTransformerWalk(model: model, producer: producer, consumers: consumers, inits: inits, alias: alias, file: file)
            return try importTransformer(model, g, arch: arch)
        }

        func tensor(_ name: String, what: String) throws -> Tensor {
            guard let i = constant(name) else { throw fail("\(what) '\(name)' is not an initializer", file) }
            return try OnnxLimits.parameter(i, what: "\(what) '\(name)'", file: file)
        }
        /// Follows `v` through single-consumer parameter-free ops (and, when
        /// `concat` is set, a Concat it is the sole consumer of).
        func forward(_ v: String, concat: Bool = false) -> String {
            var v = v
            var steps = 0   // a cycle of passthrough ops (a hostile graph) must not spin forever
            while let cs = consumers[v], cs.count == 1, steps <= nodes.count {
                steps += 1
                let n = nodes[cs[0]]
                guard passthrough.contains(n.opType) || (concat && n.opType == "Concat"), n.outputs.count >= 1 else { break }
                v = n.outputs[0]
            }
            return v
        }
        func convConsumers(_ v: String) -> [Int] {
            (consumers[v] ?? []).filter { nodes[$0].opType == "Conv" && nodes[$0].inputs.first == v }
        }

        var out = TensorMap()
        var notes: [String: String] = [:]
        var folded = 0, explicitBN = 0
        var used = Set<Int>()
        var convs2D = 0, convs3D = 0

        /// ONNX graphs carry no BN step counter: 0, as a fresh PyTorch BN.
        func setTracked(_ bnName: String) {
            let zero = [Int64(0)]
            out.set("\(bnName).num_batches_tracked", Tensor(dtype: .i64, shape: [], data: zero.withUnsafeBytes { OwnedBuffer(copying: $0).bytes }))
            notes["\(bnName).num_batches_tracked"] = "not in the ONNX graph: 0"
        }

        /// Records conv node `k` (and its BN) as `prefix`.`conv`/`bn`; returns the unit's output value. With `bn` nil
        /// (X3D's conv_xy, squeeze-excitation and lin_5 without BN) the conv alone, its bias (if any) as `conv`.bias.
        func unit(_ k: Int, conv convName: String, bn bnName: String?, expectOut: Int? = nil) throws -> String {
            let n = nodes[k]
            guard !used.contains(k) else { throw fail("conv '\(n.name)' reached twice", file) }
            used.insert(k)
            guard n.inputs.count >= 2 else { throw fail("conv '\(n.name)' has no weight", file) }
            let w = try tensor(n.inputs[1], what: "weight of \(n.name)")
            guard w.shape.count == 5 || w.shape.count == 4 else { throw fail("conv '\(n.name)' weight has shape \(w.shape)", file) }
            // Channel-wise convs (X3D: group = channels, one input channel per filter) and ordinary ones only.
            if case let .int(g)? = n.attribute("group"), g != 1, !(g == w.shape[0] && w.shape[1] == 1) {
                throw FormatError(.unsupported, "conv '\(n.name)' has group \(g); only group 1 and channel-wise convs are supported", file: file)
            }
            // 2-D convs (a 2D ResNet exported with 4-D weights) get a unit temporal axis.
            if w.shape.count == 4 { convs2D += 1 } else { convs3D += 1 }
            let weight = w.shape.count == 4
                ? Tensor(dtype: w.dtype, shape: [w.shape[0], w.shape[1], 1, w.shape[2], w.shape[3]], data: w.data) : w
            if let e = expectOut, weight.shape[0] != e { throw fail("\(convName) has \(weight.shape[0]) output channels, expected \(e)", file) }
            let cout = weight.shape[0]
            out.set(convName + ".weight", weight)
            notes[convName + ".weight"] = "ONNX Conv '\(n.name)' input '\(n.inputs[1])'"
            let bias = n.inputs.count >= 3 && !n.inputs[2].isEmpty ? try tensor(n.inputs[2], what: "bias of \(n.name)") : nil
            if let b = bias, b.shape != [cout] { throw fail("conv '\(n.name)' bias has shape \(b.shape)", file) }
            let y = n.outputs[0]
            guard let bnName else {
                if let b = bias {
                    out.set(convName + ".bias", b)
                    notes[convName + ".bias"] = "ONNX Conv '\(n.name)' input '\(n.inputs[2])'"
                }
                return y
            }
            if let cs = consumers[y], cs.count == 1, nodes[cs[0]].opType == "BatchNormalization" {
                let bn = nodes[cs[0]]
                guard bn.inputs.count >= 5 else { throw fail("BatchNormalization '\(bn.name)' has \(bn.inputs.count) inputs", file) }
                var parts: [Tensor] = []
                for (i, s) in ["weight", "bias", "running_mean", "running_var"].enumerated() {
                    let t = try tensor(bn.inputs[i + 1], what: "\(s) of \(bn.name)")
                    guard t.shape == [cout] else { throw fail("BatchNormalization '\(bn.name)' \(s) has shape \(t.shape), conv has \(cout) channels", file) }
                    parts.append(t)
                }
                var bnEps: Float = eps
                if case let .float(e)? = bn.attribute("epsilon") { bnEps = e }
                if bias != nil || bnEps != eps {
                    throw FormatError(.unsupported, "BatchNormalization '\(bn.name)' after a conv with a bias or with epsilon \(bnEps) != 1e-5 is not supported", file: file)
                }
                for (i, s) in ["weight", "bias", "running_mean", "running_var"].enumerated() {
                    out.set("\(bnName).\(s)", parts[i])
                    notes["\(bnName).\(s)"] = "ONNX BatchNormalization '\(bn.name)' input '\(bn.inputs[i + 1])'"
                }
                explicitBN += 1
                setTracked(bnName)
                return bn.outputs[0]
            }
            // Folded conv: identity BN carrying the conv bias.
            let ones = [Float](repeating: 1, count: cout), zeros = [Float](repeating: 0, count: cout)
            let vars = [Float](repeating: identityVar, count: cout)
            out.set("\(bnName).weight", floats(ones, [cout]))
            out.set("\(bnName).bias", bias ?? floats(zeros, [cout]))
            out.set("\(bnName).running_mean", floats(zeros, [cout]))
            out.set("\(bnName).running_var", floats(vars, [cout]))
            notes["\(bnName).bias"] = "folded BN represented as identity BN carrying the conv bias" + (bias.map { _ in " ('\(n.inputs[2])')" } ?? " (conv had no bias: zero)")
            folded += 1
            setTracked(bnName)
            return y
        }

        // Graph inputs that are not initializers, in order; slow/fast by name when present.
        var inputs = model.inputs.map(\.name).filter { inits[$0] == nil }
        if inputs.count == 2, Set(inputs) == ["slow", "fast"] { inputs = ["slow", "fast"] }
        guard inputs.count == 1 || inputs.count == 2 else {
            throw fail("expected 1 input (x) or 2 (slow, fast), found \(inputs.count): \(inputs.joined(separator: ", "))", file)
        }
        let pathways = inputs.count

        var stageDepths: [[Int]] = Array(repeating: [], count: pathways)
        var fusions = 0
        var ends: [String] = []
        var x3dInner: String?
        // Fast pathway first would not change anything; slow's walk needs to pass the fusion concats.
        for p in 0..<pathways {
            var v = forward(inputs[p], concat: p == 0)
            let stem = convConsumers(v)
            guard stem.count == 1 else { throw fail("pathway \(p) input feeds \(stem.count) convs, expected the stem conv", file) }
            if pathways == 1, isX3DStem(stem[0], nodes: nodes, consumers: consumers) {
                // X3D (OnnxImportX3D.swift): channel-wise stem and blocks, squeeze-excitation, Swish, conv_5 and lin_5.
                let walk = X3DWalk(nodes: nodes, consumers: consumers, forward: { forward($0) }, convConsumers: convConsumers,
                                   unit: { try unit($0, conv: $1, bn: $2) }, fail: { fail($0, file) })
                let trunk = try x3dTrunk(stem: stem[0], walk)
                stageDepths[p] = trunk.depths
                x3dInner = trunk.swish ? "swish" : "relu"
                ends.append(trunk.end)
                continue
            }
            v = forward(try unit(stem[0], conv: "s1.pathway\(p)_stem.conv", bn: "s1.pathway\(p)_stem.bn"), concat: p == 0)
            var stage = 1, block = 0
            while true {
                let convs = convConsumers(v)
                if convs.isEmpty { break }
                var a: Int?, b1: Int?, fuse: Int?
                for k in convs {
                    // Where the conv's output goes (through its BN and passthrough ops).
                    var y = nodes[k].outputs[0]
                    if let cs = consumers[y], cs.count == 1, nodes[cs[0]].opType == "BatchNormalization" { y = nodes[cs[0]].outputs[0] }
                    let dest = (consumers[forward(y)] ?? []).map { nodes[$0].opType }
                    if dest == ["Concat"] { guard fuse == nil else { throw fail("two fusion convs at one value", file) }; fuse = k }
                    else if dest == ["Add"] { guard b1 == nil else { throw fail("two shortcut convs at one value", file) }; b1 = k }
                    else if dest == ["Conv"] { guard a == nil else { throw fail("two block convs at one value", file) }; a = k }
                    else { throw fail("conv '\(nodes[k].name)' feeds \(dest), not a block, shortcut or fusion", file) }
                }
                if let f = fuse {
                    guard p == 1 else { throw fail("a fusion conv on the slow pathway", file) }
                    _ = try unit(f, conv: "s\(stage)_fuse.conv_f2s", bn: "s\(stage)_fuse.bn")
                    fusions += 1
                }
                guard let ka = a else {
                    if b1 != nil { throw fail("pathway \(p) value after s\(stage) feeds a shortcut but no block", file) }
                    if fuse == nil { break }
                    // The fused value goes on through a parameter-free op (the identity pool after res2).
                    let rest = (consumers[v] ?? []).filter { $0 != fuse! }
                    guard rest.count == 1, passthrough.contains(nodes[rest[0]].opType) else { break }
                    v = forward(nodes[rest[0]].outputs[0])
                    continue
                }
                if b1 != nil || stage == 1 { stage += 1; block = 0; stageDepths[p].append(0) }
                let pre = "s\(stage).pathway\(p)_res\(block)"
                var shortcutOut = v
                if let kb = b1 { shortcutOut = try unit(kb, conv: "\(pre).branch1", bn: "\(pre).branch1_bn") }
                let aOut = forward(try unit(ka, conv: "\(pre).branch2.a", bn: "\(pre).branch2.a_bn"))
                let kb = convConsumers(aOut)
                guard kb.count == 1 else { throw fail("\(pre).branch2.a feeds \(kb.count) convs", file) }
                let bOut = forward(try unit(kb[0], conv: "\(pre).branch2.b", bn: "\(pre).branch2.b_bn"))
                let kc = convConsumers(bOut)
                guard kc.count == 1 else { throw fail("\(pre).branch2.b feeds \(kc.count) convs", file) }
                let cOut = try unit(kc[0], conv: "\(pre).branch2.c", bn: "\(pre).branch2.c_bn")
                guard let adds = consumers[cOut], adds.count == 1, nodes[adds[0]].opType == "Add",
                      Set(nodes[adds[0]].inputs) == [cOut, shortcutOut] else {
                    throw fail("\(pre): branch2 output is not added to the shortcut", file)
                }
                v = forward(nodes[adds[0]].outputs[0], concat: p == 0)
                block += 1
                stageDepths[p][stageDepths[p].count - 1] = block
            }
            ends.append(v)
        }
        if pathways == 2, stageDepths[0] != stageDepths[1] {
            throw fail("the pathways have different stage depths: \(stageDepths[0]) vs \(stageDepths[1])", file)
        }

        // Head: the Gemm / MatMul with a constant weight.
        let heads = nodes.indices.filter { k in
            (nodes[k].opType == "Gemm" || nodes[k].opType == "MatMul") && nodes[k].inputs.count >= 2 && constant(nodes[k].inputs[1]) != nil
        }
        guard heads.count == 1 else { throw fail("expected one Gemm/MatMul projection, found \(heads.count)", file) }
        let h = nodes[heads[0]]
        var hw = try tensor(h.inputs[1], what: "projection weight")
        guard hw.shape.count == 2 else { throw fail("projection weight has shape \(hw.shape)", file) }
        var transposed = h.opType == "MatMul"
        if h.opType == "Gemm" {
            if case let .int(t)? = h.attribute("transA"), t != 0 { throw fail("Gemm '\(h.name)' with transA", file) }
            if case let .int(t)? = h.attribute("transB"), t != 0 { transposed = false } else { transposed = true }
            if case let .float(al)? = h.attribute("alpha"), al != 1 { throw fail("Gemm '\(h.name)' with alpha \(al)", file) }
            if case let .float(be)? = h.attribute("beta"), be != 1 { throw fail("Gemm '\(h.name)' with beta \(be)", file) }
        }
        if transposed { hw = transpose2D(hw) }
        out.set("head.projection.weight", hw)
        notes["head.projection.weight"] = "ONNX \(h.opType) '\(h.name)' input '\(h.inputs[1])'" + (transposed ? ", transposed to [out, in]" : "")
        var biasName: String?
        if h.opType == "Gemm", h.inputs.count >= 3, !h.inputs[2].isEmpty { biasName = h.inputs[2] }
        if h.opType == "MatMul", let cs = consumers[h.outputs[0]], cs.count == 1, nodes[cs[0]].opType == "Add" {
            biasName = nodes[cs[0]].inputs.first { constant($0) != nil }
        }
        if let bn = biasName {
            let b = try tensor(bn, what: "projection bias")
            guard b.shape == [hw.shape[0]] else { throw fail("projection bias has shape \(b.shape)", file) }
            out.set("head.projection.bias", b)
            notes["head.projection.bias"] = "ONNX initializer '\(bn)'"
        } else {
            out.set("head.projection.bias", floats([Float](repeating: 0, count: hw.shape[0]), [hw.shape[0]]))
            notes["head.projection.bias"] = "the projection has no bias: zero"
        }

        let unusedConvs = nodes.indices.filter { nodes[$0].opType == "Conv" && !used.contains($0) }
        if !unusedConvs.isEmpty {
            throw fail("\(unusedConvs.count) conv(s) not reached from the inputs (first: '\(nodes[unusedConvs[0]].name)')", file)
        }

        if let arch {
            let expected = Dictionary(arch.expectedParameters().map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
            for (name, t) in out.ordered {
                guard let shape = expected[name] else { throw fail("'\(name)' is not a parameter of the given architecture", file) }
                if shape != t.shape { throw fail("'\(name)' has shape \(t.shape), the architecture expects \(shape)", file) }
            }
        }

        var ckpt = Checkpoint(format: .onnx, tensors: out)
        ckpt.notes = notes
        ckpt.metadata = [
            ("onnx.producer", "\(model.producerName) \(model.producerVersion)"),
            ("onnx.opset", String(model.opset)),
            ("onnx.pathways", String(pathways)),
            ("onnx.stage_depths", stageDepths[0].map(String.init).joined(separator: ",")),
            ("onnx.fusions", String(fusions)),
            ("onnx.folded_bn", String(folded)),
            ("onnx.batchnorm", String(explicitBN)),
            ("onnx.conv_dims", convs3D == 0 ? "2d" : convs2D == 0 ? "3d" : "mixed"),
        ] + (x3dInner.map { [("onnx.family", "x3d"), ("onnx.x3d_inner", $0)] } ?? [])
        if folded > 0 {
            ckpt.otherEntries.append((key: "onnx folded BN", summary: "\(folded) convs with BN folded in: folded BN represented as identity BN carrying the conv bias"))
        }
        return ckpt
    }

    static func floats(_ v: [Float], _ shape: [Int]) -> Tensor {
        Tensor(dtype: .f32, shape: shape, data: v.withUnsafeBytes { OwnedBuffer(copying: $0).bytes })
    }

    /// [r, c] -> [c, r], element bytes moved as they are (any dtype).
    static func transpose2D(_ t: Tensor) -> Tensor {
        let r = t.shape[0], c = t.shape[1], s = t.dtype.size
        let buf = OwnedBuffer(count: r * c * s)
        withExtendedLifetime(t.data.owner) {
            for i in 0..<r {
                for j in 0..<c {
                    memcpy(buf.pointer + (j * r + i) * s, t.data.raw.baseAddress! + (i * c + j) * s, s)
                }
            }
        }
        return Tensor(dtype: t.dtype, shape: [c, r], data: buf.bytes)
    }
}

extension OnnxImport {
    /// `sfnet convert --from onnx`: imports `req.input` (tensors mapped from the graph) and
    /// runs the ordinary pipeline on them with naming pyslowfast, so arch detection, dtype
    /// policy, provenance (the .onnx file's name, size and digest) and the report are the usual ones.
    public static func convert(_ req: ConvertRequest, progress: ((String, Int, Int) -> Void)? = nil) throws -> ConvertSummary {
        // A 2D ImageNet graph (4-D conv weights) into a video network: read it as the 2D ResNet it is
        // and let the converter inflate it, exactly as for torchvision and Detectron sources.
        var ckpt = try read(path: req.input, arch: req.options.arch?.model.isTransformer == true ? req.options.arch : nil)
        if let family = ckpt.metadataValue("onnx.family"), family == "videomae" || family == "timesformer" {
            return try convertTransformer(req, ckpt, progress: progress)
        }
        if ckpt.metadataValue("onnx.x3d_inner") == "relu", req.options.arch?.x3d?.swishInner != false {
            // The weights cannot say which activation follows the 3x3x3; the graph can, and detection would take Swish.
            throw FormatError(.unsupported, "ONNX graph: this X3D applies ReLU after its 3x3x3 convolutions, where published X3Ds "
                + "(and sfnet's default) use Swish; pass --arch-json with \"swish_inner\": false to convert it", file: req.input)
        }
        let is2D = ckpt.metadataValue("onnx.conv_dims") == "2d"
        if let arch = req.options.arch, !(is2D && arch.model != .resnet) {
            ckpt = try read(path: req.input, arch: arch)
        }
        var r = req
        r.options.sourceIs2D = is2D
        r.output = req.output ?? ConvertPipeline.defaultOutput(for: req.input)
        r.options.naming = .pyslowfast
        r.preloaded = ckpt
        r.importNotes = ["read from ONNX \(URL(fileURLWithPath: req.input).lastPathComponent): tensors mapped from the graph (\(ckpt.metadata.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")))"]
        if ckpt.metadataValue("onnx.folded_bn") != "0" {
            r.importNotes.append("folded BN represented as identity BN carrying the conv bias")
        }
        return try ConvertPipeline.run(r, progress: progress)
    }

    /// A VideoMAE / TimeSformer graph: its tensors under Hugging Face's names and the architecture the graph
    /// implies (unless --arch-json gives one) through the transformers' strict conversion.
    static func convertTransformer(_ req: ConvertRequest, _ ckpt: Checkpoint, progress: ((String, Int, Int) -> Void)?) throws -> ConvertSummary {
        let graphArch = try ArchConfig.fromJSON(ckpt.metadataValue("onnx.arch") ?? "")
        var r = req
        r.output = req.output ?? ConvertPipeline.defaultOutput(for: req.input)
        r.options.naming = .huggingface
        r.preloaded = ckpt
        let facts = ckpt.metadata.filter { $0.key != "onnx.arch" }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
        r.importNotes = ["read from ONNX \(URL(fileURLWithPath: req.input).lastPathComponent): tensors mapped from the graph (\(facts))"]
        if let given = req.options.arch {
            if given != graphArch { r.importNotes.append("--arch-json replaces the architecture the graph implies (\(graphArch.summary))") }
        } else {
            r.options.arch = graphArch
            r.importNotes.append("architecture from the graph: \(graphArch.summary)")
        }
        return try ConvertPipeline.run(r, progress: progress)
    }
}
