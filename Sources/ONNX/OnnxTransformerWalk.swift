// The pieces of a video transformer's ONNX graph, recognised by data flow as torch.onnx.export writes them
// (TorchScript exporter, opsets 14-20, static or dynamic batch, constant folding on or off) and as sfnet's own
// export does: linear layers (MatMul with a constant [in, out] weight or a Transpose of a constant [out, in];
// Gemm) with their bias Add; LayerNormalization, or its decomposed form below opset 17 (ReduceMean, Sub, Pow,
// ReduceMean, Add eps, Sqrt, Div, Mul, Add); the GELU between an MLP's linears (erf or tanh form); and the
// constant folding they need (Constant nodes, Unsqueeze/Concat shape lists, Sqrt/Cast of a scalar).
// The attention subgraph is in OnnxTransformerAttention.swift, the family walks in OnnxImportTransformer.swift.
// Every walk is bounded by the node count; a value that is not where the pattern needs it is an error naming it.

import Foundation
import Formats

/// A linear layer found in the graph; `weight` in PyTorch's [out, in] layout.
struct OnnxLinear {
    var node: Int
    var weight: Tensor
    var bias: Tensor?
    var input: String
    /// The value after the bias Add (the MatMul's output when there is no bias).
    var output: String
    /// Where the weight and bias came from, for the report.
    var weightNote: String
    var biasNote: String?
    var outFeatures: Int { weight.shape[0] }
    var inFeatures: Int { weight.shape[1] }
}

struct OnnxLayerNorm {
    var weight: Tensor
    var bias: Tensor
    var eps: Double
    var input: String
    var output: String
    var note: String
}

/// Graph indexes and the walk's bookkeeping: nodes reached, constants mapped to tensors.
final class OnnxTransformerWalk {
    let nodes: [OnnxNode]
    let opset: Int
    let producer: [String: Int]
    let consumers: [String: [Int]]
    let inits: [String: OnnxInitializer]
    let alias: [String: String]
    let file: String
    /// Static shapes and small integer values (OnnxShapes.swift).
    let shapes: OnnxShapes
    /// Nodes a recogniser has taken as part of a block.
    var visited = Set<Int>()
    /// Float constants (initializer or Constant output names) mapped to a tensor or checked by value.
    var usedConstants = Set<String>()

    init(model: OnnxModel, producer: [String: Int], consumers: [String: [Int]], inits: [String: OnnxInitializer],
         alias: [String: String], file: String) {
        nodes = model.nodes
        opset = model.opset
        self.producer = producer
        self.consumers = consumers
        self.inits = inits
        self.alias = alias
        self.file = file
        shapes = OnnxShapes(model: model, inits: inits)
    }

    func fail(_ msg: String) -> FormatError { FormatError(.malformed, "ONNX graph: " + msg, file: file) }
    func unsupported(_ msg: String) -> FormatError { FormatError(.unsupported, "ONNX graph: " + msg, file: file) }

    /// The nodes that read `v` as data (a Shape node reads only its shape: torch's dynamic reshapes).
    func readers(_ v: String) -> [Int] { (consumers[v] ?? []).filter { nodes[$0].opType != "Shape" } }
    func made(_ v: String) -> OnnxNode? { producer[v].map { nodes[$0] } }
    func describe(_ k: Int) -> String { "'\(nodes[k].name)' (\(nodes[k].opType))" }

    // MARK: Constants

    /// The constant behind `v`: an initializer (also behind torch's de-duplicating Identity) or a Constant node's tensor.
    func constant(_ v: String) -> OnnxInitializer? {
        if let i = inits[v] ?? alias[v].flatMap({ inits[$0] }) { return i }
        guard let k = producer[v] else { return nil }
        let n = nodes[k]
        if n.opType == "Constant" { return n.tensorValue }
        if n.opType == "Identity", n.inputs.count == 1, let i = inits[n.inputs[0]] { return i }
        return nil
    }

    /// The float tensor `v` holds, checked as OnnxImport checks initializers (float dtype, dims, byte count).
    func floatTensor(_ v: String, what: String) throws -> Tensor {
        guard let i = constant(v) else { throw fail("\(what) '\(v)' is not an initializer or constant") }
        let t = try OnnxLimits.parameter(i, what: "\(what) '\(v)'", file: file)
        usedConstants.insert(v)
        return t
    }

    /// The integers of a small int64/int32 constant (at most 64), nil otherwise.
    func constantInts(_ v: String) -> [Int]? {
        guard let i = constant(v), i.dims.allSatisfy({ $0 >= 0 && $0 <= 64 }) else { return nil }
        let size = i.dataType == 7 ? 8 : i.dataType == 6 ? 4 : 0
        guard size > 0, let n = OnnxShapes.product(i.dims), n <= 64, i.rawData.count == n * size else { return nil }
        return withExtendedLifetime(i.rawData.owner) {
            (0 ..< n).map { j in
                size == 8 ? Int(Int64(littleEndian: i.rawData.raw.loadUnaligned(fromByteOffset: j * 8, as: Int64.self)))
                          : Int(Int32(littleEndian: i.rawData.raw.loadUnaligned(fromByteOffset: j * 4, as: Int32.self)))
            }
        }
    }

    /// The dimensions a Reshape (node k) produces: its output's static shape, or its target list as written.
    func reshapeDims(_ k: Int) -> [Int?]? {
        if let s = shapes.shapes[nodes[k].outputs[0]] { return s.map { $0 } }
        return nodes[k].inputs.count == 2 ? shapeList(nodes[k].inputs[1]) : nil
    }

    /// Small integer lists written as constants or folded from Unsqueeze / Concat of constants (torch without constant folding).
    func intList(_ v: String) -> [Int]? {
        guard let l = shapeList(v), l.allSatisfy({ $0 != nil }) else { return nil }
        return l.map { $0! }
    }

    /// An integer list: a constant, or one the shape arithmetic computes (OnnxShapes.swift).
    func shapeList(_ v: String) -> [Int?]? {
        (constantInts(v) ?? shapes.ints[v]).map { $0.map { $0 } }
    }

    /// A scalar constant, folded through Sqrt / Cast / Reciprocal / Neg and arithmetic on scalars
    /// (torch without constant folding writes the attention scale as Cast(Sqrt(c))).
    func scalar(_ v: String, depth: Int = 0) -> Double? {
        if let i = constant(v) {
            guard i.dims.allSatisfy({ $0 == 1 }) else { return nil }  // one element, any rank
            if let dt = OnnxImport.dtype(i.dataType), i.rawData.count == dt.size {
                return Double(DTypeCast.loadFloat(i.rawData.raw, index: 0, dtype: dt))
            }
            return constantInts(v).flatMap { $0.count == 1 ? Double($0[0]) : nil }
        }
        guard depth < 8, let k = producer[v] else { return nil }
        let n = nodes[k]
        func arg(_ j: Int) -> Double? { j < n.inputs.count ? scalar(n.inputs[j], depth: depth + 1) : nil }
        switch n.opType {
        case "Cast", "Identity", "Unsqueeze", "Squeeze": return arg(0)
        case "Sqrt": return arg(0).map { $0.squareRoot() }
        case "Reciprocal": return arg(0).map { 1 / $0 }
        case "Neg": return arg(0).map { -$0 }
        case "Mul": return arg(0).flatMap { a in arg(1).map { a * $0 } }
        case "Div": return arg(0).flatMap { a in arg(1).map { a / $0 } }
        case "Add": return arg(0).flatMap { a in arg(1).map { a + $0 } }
        case "Sub": return arg(0).flatMap { a in arg(1).map { a - $0 } }
        case "Pow": return arg(0).flatMap { a in arg(1).map { Foundation.pow(a, $0) } }
        default: return nil
        }
    }

    /// Marks the scalar `v` and the nodes that computed it as taken.
    func takeScalar(_ v: String) {
        var stack = [v], steps = 0
        while let x = stack.popLast(), steps <= nodes.count {
            steps += 1
            guard let k = producer[x], !visited.contains(k) else { continue }
            visited.insert(k)
            stack += nodes[k].inputs.filter { !$0.isEmpty }
        }
    }

    /// `x op c` with `c` a scalar: the other operand and c (Div only with the scalar second).
    func scalarOperand(_ k: Int) -> (data: String, value: Double)? {
        let n = nodes[k]
        guard n.inputs.count == 2 else { return nil }
        if let s = scalar(n.inputs[1]) { return (n.inputs[0], s) }
        if n.opType != "Div", n.opType != "Sub", let s = scalar(n.inputs[0]) { return (n.inputs[1], s) }
        return nil
    }

    // MARK: Linear layers

    /// The [out, in] weight behind a MatMul's second input: a constant [in, out] (transposed back) or a
    /// Transpose (perm [1, 0]) of a constant [out, in] (torch without constant folding).
    private func matmulWeight(_ v: String) throws -> (Tensor, String, Int?)? {
        if constant(v) != nil {
            let w = try floatTensor(v, what: "linear weight")
            guard w.shape.count == 2 else { throw fail("linear weight '\(v)' has shape \(w.shape)") }
            return (OnnxImport.transpose2D(w), "'\(v)' transposed to [out, in]", nil)
        }
        if let k = producer[v], nodes[k].opType == "Transpose", nodes[k].inputs.count == 1, constant(nodes[k].inputs[0]) != nil {
            guard case let .ints(perm)? = nodes[k].attribute("perm"), perm == [1, 0] else { throw fail("\(describe(k)) on a weight is not perm [1, 0]") }
            let w = try floatTensor(nodes[k].inputs[0], what: "linear weight")
            guard w.shape.count == 2 else { throw fail("linear weight '\(nodes[k].inputs[0])' has shape \(w.shape)") }
            return (w, "'\(nodes[k].inputs[0])' (behind a Transpose)", k)
        }
        return nil
    }

    /// Whether node k is a MatMul/Gemm reading `v` as its data with a constant weight.
    func isLinear(_ k: Int, reading v: String? = nil) -> Bool {
        let n = nodes[k]
        guard n.opType == "MatMul" || n.opType == "Gemm", n.inputs.count >= 2 else { return false }
        if let v, n.inputs[0] != v { return false }
        let w = n.inputs[1]
        if constant(w) != nil { return true }
        if let p = producer[w], nodes[p].opType == "Transpose", nodes[p].inputs.count == 1, constant(nodes[p].inputs[0]) != nil { return true }
        return false
    }

    /// The linear layer at node k (and its bias Add), its nodes marked taken.
    func linear(_ k: Int) throws -> OnnxLinear {
        let n = nodes[k]
        guard !visited.contains(k) else { throw fail("linear \(describe(k)) reached twice") }
        var weight: Tensor, note: String, bias: Tensor?, biasNote: String?
        if n.opType == "Gemm" {
            if case let .int(t)? = n.attribute("transA"), t != 0 { throw unsupported("Gemm \(describe(k)) with transA") }
            if case let .float(a)? = n.attribute("alpha"), a != 1 { throw unsupported("Gemm \(describe(k)) with alpha \(a)") }
            if case let .float(b)? = n.attribute("beta"), b != 1, n.inputs.count >= 3 { throw unsupported("Gemm \(describe(k)) with beta \(b)") }
            var transB = false
            if case let .int(t)? = n.attribute("transB") { transB = t != 0 }
            let w = try floatTensor(n.inputs[1], what: "weight of \(n.name)")
            guard w.shape.count == 2 else { throw fail("Gemm \(describe(k)) weight has shape \(w.shape)") }
            weight = transB ? w : OnnxImport.transpose2D(w)
            note = "'\(n.inputs[1])'" + (transB ? "" : " transposed to [out, in]")
            if n.inputs.count >= 3, !n.inputs[2].isEmpty {
                bias = try floatTensor(n.inputs[2], what: "bias of \(n.name)")
                biasNote = "'\(n.inputs[2])'"
            }
        } else {
            guard let (w, wNote, t) = try matmulWeight(n.inputs[1]) else { throw fail("MatMul \(describe(k)) has no constant weight") }
            weight = w
            note = wNote
            if let t { visited.insert(t) }
        }
        visited.insert(k)
        var output = n.outputs[0]
        if bias == nil, readers(output).count == 1, case let a = readers(output)[0], nodes[a].opType == "Add", nodes[a].inputs.count == 2,
           let b = nodes[a].inputs.first(where: { $0 != output && constant($0) != nil }) {
            bias = try floatTensor(b, what: "bias of \(n.name)")
            biasNote = "'\(b)'"
            visited.insert(a)
            output = nodes[a].outputs[0]
        }
        if let b = bias {
            guard b.numel == weight.shape[0], b.shape.count <= 2 else { throw fail("bias \(biasNote!) of \(describe(k)) has shape \(b.shape), the weight \(weight.shape)") }
            bias = Tensor(dtype: b.dtype, shape: [weight.shape[0]], data: b.data)
        }
        return OnnxLinear(node: k, weight: weight, bias: bias, input: n.inputs[0], output: output, weightNote: note, biasNote: biasNote)
    }

    /// The linear layers that read `v` (MatMul/Gemm with a constant weight), in graph order.
    func linears(reading v: String) -> [Int] { readers(v).filter { isLinear($0, reading: v) }.sorted() }

    /// Follows `v` through Reshapes that keep the last axis `width` (rows [N * L, D] <-> tokens [N, L, D] keep the
    /// row-major order of tokens) and Identity/Dropout/Cast, when each is `v`'s only reader.
    func throughReshapes(_ v: String, width: Int) -> String {
        var v = v, steps = 0
        while steps <= nodes.count, readers(v).count == 1, case let k = readers(v)[0], isTokenReshape(k, width: width) {
            visited.insert(k)
            v = nodes[k].outputs[0]
            steps += 1
        }
        return v
    }

    /// The value `v` comes from, back through the same Reshapes / passthroughs.
    func rootThroughReshapes(_ v: String, width: Int) -> String {
        var v = v, steps = 0
        while steps <= nodes.count, let k = producer[v], isTokenReshape(k, width: width) {
            v = nodes[k].inputs[0]
            steps += 1
        }
        return v
    }

    func isTokenReshape(_ k: Int, width: Int) -> Bool {
        let n = nodes[k]
        if ["Identity", "Dropout", "Cast"].contains(n.opType) { return n.inputs.count >= 1 }
        guard n.opType == "Reshape", n.inputs.count == 2, let s = reshapeDims(k), let last = s.last else { return false }
        return last == width
    }

    // MARK: LayerNorm

    /// The LayerNorm that reads `x` (LayerNormalization, or the decomposed form), nil when none does.
    func layerNorm(reading x: String, width: Int) throws -> OnnxLayerNorm? {
        let direct = readers(x).filter { nodes[$0].opType == "LayerNormalization" && nodes[$0].inputs.first == x }
        let means = readers(x).filter { nodes[$0].opType == "ReduceMean" && isLastAxisMean($0) }
        guard direct.count + means.count <= 1 else { throw fail("'\(x)' feeds \(direct.count + means.count) layer norms") }
        if let k = direct.first {
            let n = nodes[k]
            guard n.inputs.count >= 3, !n.inputs[2].isEmpty else { throw unsupported("LayerNormalization \(describe(k)) without a bias") }
            if case let .int(axis)? = n.attribute("axis"), axis != -1 { throw unsupported("LayerNormalization \(describe(k)) over axis \(axis), not the last") }
            var eps = 1e-5
            if case let .float(e)? = n.attribute("epsilon") { eps = Self.decimal(e) }
            let w = try floatTensor(n.inputs[1], what: "LayerNorm weight"), b = try floatTensor(n.inputs[2], what: "LayerNorm bias")
            guard w.numel == width, b.numel == width else { throw fail("LayerNormalization \(describe(k)) has \(w.numel) weights, the tokens \(width) channels") }
            visited.insert(k)
            return OnnxLayerNorm(weight: flat(w), bias: flat(b), eps: eps, input: x, output: n.outputs[0],
                                 note: "LayerNormalization '\(n.name)' inputs '\(n.inputs[1])', '\(n.inputs[2])'")
        }
        guard let m1 = means.first else { return nil }
        // x - mean(x); its square's mean + eps; sqrt; divide; scale; shift.
        func one(_ v: String, _ op: String, _ what: String) throws -> Int {
            let rs = readers(v).filter { nodes[$0].opType == op }
            guard rs.count == 1 else { throw fail("decomposed LayerNorm on '\(x)': \(what) expects one \(op) after '\(v)', found \(rs.count)") }
            return rs[0]
        }
        let sub = try one(nodes[m1].outputs[0], "Sub", "x - mean")
        guard nodes[sub].inputs == [x, nodes[m1].outputs[0]] else { throw fail("decomposed LayerNorm on '\(x)': Sub \(describe(sub)) is not x - mean(x)") }
        let centred = nodes[sub].outputs[0]
        let square = readers(centred).filter { k in
            (nodes[k].opType == "Pow" && scalarOperand(k)?.value == 2) || (nodes[k].opType == "Mul" && nodes[k].inputs == [centred, centred])
        }
        guard square.count == 1 else { throw fail("decomposed LayerNorm on '\(x)': no square of x - mean(x)") }
        let m2 = try one(nodes[square[0]].outputs[0], "ReduceMean", "the variance")
        guard isLastAxisMean(m2) else { throw unsupported("decomposed LayerNorm on '\(x)': the variance is not over the last axis") }
        let addEps = try one(nodes[m2].outputs[0], "Add", "variance + eps")
        guard let e = scalarOperand(addEps)?.value, e > 0, e < 1 else { throw fail("decomposed LayerNorm on '\(x)': no eps constant") }
        let eps = Self.decimal(Float(e))
        let sqrt = try one(nodes[addEps].outputs[0], "Sqrt", "the standard deviation")
        let div = try one(nodes[sqrt].outputs[0], "Div", "the normalisation")
        guard nodes[div].inputs == [centred, nodes[sqrt].outputs[0]] else { throw fail("decomposed LayerNorm on '\(x)': \(describe(div)) is not (x - mean) / std") }
        let mul = try one(nodes[div].outputs[0], "Mul", "the scale")
        guard let wName = nodes[mul].inputs.first(where: { $0 != nodes[div].outputs[0] && constant($0) != nil }) else {
            throw fail("decomposed LayerNorm on '\(x)': \(describe(mul)) has no constant weight")
        }
        let add = try one(nodes[mul].outputs[0], "Add", "the shift")
        guard let bName = nodes[add].inputs.first(where: { $0 != nodes[mul].outputs[0] && constant($0) != nil }) else {
            throw unsupported("decomposed LayerNorm on '\(x)': \(describe(add)) has no constant bias")
        }
        let w = try floatTensor(wName, what: "LayerNorm weight"), b = try floatTensor(bName, what: "LayerNorm bias")
        guard w.numel == width, b.numel == width else { throw fail("decomposed LayerNorm on '\(x)' has \(w.numel) weights, the tokens \(width) channels") }
        for k in [m1, sub, square[0], m2, addEps, sqrt, div, mul, add] { visited.insert(k) }
        for k in [square[0], addEps] { takeScalar(nodes[k].inputs[1]) }
        return OnnxLayerNorm(weight: flat(w), bias: flat(b), eps: eps, input: x, output: nodes[add].outputs[0],
                             note: "decomposed LayerNorm ending at '\(nodes[add].name)' inputs '\(wName)', '\(bName)'")
    }

    /// A ReduceMean over the last axis, keeping it (axes as the attribute, or from opset 18 the second input).
    func isLastAxisMean(_ k: Int) -> Bool {
        let n = nodes[k]
        if case let .int(keep)? = n.attribute("keepdims"), keep == 0 { return false }
        if case let .ints(axes)? = n.attribute("axes") { return axes == [-1] }
        return n.inputs.count == 2 && intList(n.inputs[1]) == [-1]
    }

    /// A float32 attribute as the decimal it was written from (1e-12 stored as 9.99999996e-13 reads back as 1e-12).
    static func decimal(_ f: Float) -> Double { Double(String(describing: f)) ?? Double(f) }

    func flat(_ t: Tensor) -> Tensor { Tensor(dtype: t.dtype, shape: [t.numel], data: t.data) }

    // MARK: GELU

    /// The activation between an MLP's first linear (output `u`) and its second: the nodes from `u` to the value the
    /// next linear reads, each elementwise with scalar constants. Returns sfnet's hidden_act and that value.
    func gelu(from u: String) throws -> (act: String, output: String) {
        var region: [Int] = [], values: Set<String> = [u], frontier = [u], exit: String?
        let elementwise: Set<String> = ["Div", "Mul", "Add", "Sub", "Erf", "Tanh", "Pow", "Cast", "Sigmoid", "Relu", "Gelu"]
        while let v = frontier.popLast() {
            for k in readers(v) where !region.contains(k) {
                if isLinear(k, reading: v) {
                    guard exit == nil || exit == v else { throw fail("the MLP activation after '\(u)' has two outputs") }
                    exit = v
                    continue
                }
                guard elementwise.contains(nodes[k].opType) else {
                    throw unsupported("the MLP activation after '\(u)' reaches \(describe(k)), not a GELU's elementwise op")
                }
                guard region.count < 16 else { throw unsupported("the MLP activation after '\(u)' has more than 16 ops: not a GELU") }
                region.append(k)
                for o in nodes[k].outputs where values.insert(o).inserted { frontier.append(o) }
            }
        }
        // Every operand is the activation's own value or a scalar constant.
        for k in region {
            for i in nodes[k].inputs where !i.isEmpty && !values.contains(i) && scalar(i) == nil {
                throw unsupported("the MLP activation after '\(u)' reads '\(i)' from outside it")
            }
        }
        guard let exit else { throw fail("the MLP activation after '\(u)' reaches no second linear") }
        let ops = region.map { nodes[$0].opType }
        let constants = region.flatMap { k in nodes[k].inputs.compactMap { values.contains($0) ? nil : scalar($0) } }
        func has(_ c: Double) -> Bool { constants.contains { abs($0 - c) <= 1e-6 * max(1, abs(c)) } }
        func only(_ allowed: [Double]) -> Bool { constants.allSatisfy { c in allowed.contains { abs($0 - c) <= 1e-6 * max(1, abs($0)) } } }
        let act: String
        if ops == ["Gelu"] {
            // Opset 20's Gelu op: approximate "none" (erf, the default) or "tanh".
            let approximate = nodes[region[0]].stringAttributes.first { $0.name == "approximate" }?.value ?? "none"
            guard let a = ["none": "gelu", "tanh": "gelu_tanh"][approximate] else {
                throw unsupported("Gelu \(describe(region[0])) with approximate \"\(approximate.prefix(20))\"")
            }
            act = a
        } else if ops.filter({ $0 == "Erf" }).count == 1, !ops.contains("Tanh"), has(0.5), has(1),
                  has(2.0.squareRoot()) || has(0.5.squareRoot()), only([0.5, 1, 2.0.squareRoot(), 0.5.squareRoot()]), region.count <= 6 {
            act = "gelu"
        } else if ops.filter({ $0 == "Tanh" }).count == 1, !ops.contains("Erf"), has(0.5), has(1), has(0.044715),
                  has((2 / Double.pi).squareRoot()), only([0.5, 1, 0.044715, (2 / Double.pi).squareRoot(), 3, 2]), region.count <= 10 {
            act = "gelu_tanh"
        } else {
            throw unsupported("the MLP activation after '\(u)' (\(ops.joined(separator: ", ")), constants \(constants)) is neither GELU form "
                              + "sfnet runs (0.5 x (1 + erf(x / sqrt 2)) or the tanh approximation)")
        }
        for k in region {
            visited.insert(k)
            for i in nodes[k].inputs where !values.contains(i) { takeScalar(i) }
        }
        return (act, exit)
    }
}
