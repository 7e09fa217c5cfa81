// TimeSformer's pieces for the ONNX transformer walk (OnnxImportTransformer.swift): the embeddings (class token,
// position and time tables told apart by where they are added: the time table after the tokens are regrouped
// per patch position), each layer's patch slice x[:, 1:], the temporal branch's norm and temporal_dense reached
// through reshapes, and the divided space-time regrouping between the temporal and spatial attention, walked
// from the LayerNorm back to the layer's values and matched by its Transposes against the producers sfnet knows.

import Foundation
import Formats

extension OnnxImport {
    /// x[:, 1:] (the patch tokens) when `x` is a TimeSformer layer's input: a Slice on axis 1 from 1 whose tokens reach a LayerNorm.
    static func patchSlice(_ x: String, _ g: OnnxTransformerWalk, mark: Bool = true) -> String? {
        for k in g.readers(x) {
            let n = g.nodes[k]
            guard n.opType == "Slice", n.inputs.count >= 4, n.inputs[0] == x, g.intList(n.inputs[1]) == [1], g.intList(n.inputs[3]) == [1],
                  n.inputs.count < 5 || g.intList(n.inputs[4]) == [1], let end = g.intList(n.inputs[2]), end.count == 1, end[0] > 1 else { continue }
            if mark {
                g.visited.insert(k)
                for i in n.inputs.dropFirst() { g.takeScalar(i) }
            }
            return n.outputs[0]
        }
        return nil
    }

    /// The LayerNorm reading `v` or a reshape of it (keeping the width): the temporal attention's tokens regrouped per position.
    static func layerNormNear(_ v: String, width: Int, what: String, _ g: OnnxTransformerWalk) throws -> OnnxLayerNorm {
        var frontier = [v], found: OnnxLayerNorm?
        var steps = 0
        while let x = frontier.popLast(), steps <= g.nodes.count {
            steps += 1
            if let ln = try g.layerNorm(reading: x, width: width) {
                guard found == nil else { throw g.fail("\(what): two LayerNorms read '\(v)'") }
                found = ln
                continue
            }
            for k in g.readers(x) where g.isTokenReshape(k, width: width) && g.nodes[k].opType == "Reshape" {
                g.visited.insert(k)
                frontier.append(g.nodes[k].outputs[0])
            }
        }
        guard let found else { throw g.fail("\(what): no LayerNorm reads '\(v)'") }
        return found
    }

    /// The linear reading `v` or a reshape of it: temporal_dense after the temporal attention's output projection.
    static func linearNear(_ v: String, width: Int, what: String, _ g: OnnxTransformerWalk) throws -> OnnxLinear {
        let x = g.throughReshapes(v, width: width)
        let ls = g.linears(reading: x)
        guard ls.count == 1 else { throw g.fail("\(what): '\(x)' feeds \(ls.count) linear layers, expected temporal_dense") }
        let l = try g.linear(ls[0])
        guard l.inFeatures == width, l.outFeatures == width else { throw g.fail("\(what): \(g.describe(l.node)) is \(l.weight.shape)") }
        return l
    }

    static let regroupOps: Set<String> = ["Reshape", "Transpose", "Concat", "Expand", "Tile", "Unsqueeze", "Squeeze", "Gather", "Slice", "Identity", "Cast"]

    /// From `sources[0]` forward through token regrouping ops (and, for the spatial output, the residual sums and the class
    /// token's mean over frames) to the first LayerNorm; then the region between that LayerNorm and `sources`, for checkRegrouping.
    static func glueToLayerNorm(from sources: [String], width: Int, what: String, allowSums: Bool = false, _ g: OnnxTransformerWalk) throws
        -> (OnnxLayerNorm, [Int]) {
        var ops = regroupOps
        if allowSums { ops.formUnion(["Add", "ReduceMean"]) }
        var frontier = [sources[0]], seen = Set<String>(), found: OnnxLayerNorm?
        while let x = frontier.popLast() {
            guard seen.insert(x).inserted, seen.count <= g.nodes.count else { continue }
            if x != sources[0], let ln = try g.layerNorm(reading: x, width: width) {
                guard found == nil || found!.input == x else { throw g.fail("\(what): two LayerNorms follow '\(sources[0])'") }
                found = ln
                continue
            }
            for k in g.readers(x) where ops.contains(g.nodes[k].opType) && !g.visited.contains(k) { frontier += g.nodes[k].outputs }
        }
        guard let found else { throw g.fail("\(what): no LayerNorm follows '\(sources[0])'") }
        let (region, reached) = try glueRegion(back: found.input, to: Set(sources), ops: ops, what: what, g)
        guard reached == Set(sources) else {
            throw g.unsupported("\(what): the LayerNorm's input is built from \(reached.sorted()), expected \(sources)")
        }
        return (found, region)
    }

    /// The nodes between `end` and `sources`, walked back through `ops` (their data inputs followed, shape and index
    /// inputs taken as constants). A float constant on the way goes to `table` (the embeddings' tables), or is an error.
    static func glueRegion(back end: String, to sources: Set<String>, ops: Set<String>, what: String, _ g: OnnxTransformerWalk,
                           table: ((Int, String) throws -> Void)? = nil) throws -> (nodes: [Int], reached: Set<String>) {
        var region: [Int] = [], reached = Set<String>(), stack = [end], seen = Set<String>()
        while let v = stack.popLast() {
            guard seen.insert(v).inserted else { continue }
            if sources.contains(v) { reached.insert(v); continue }
            guard let k = g.producer[v], seen.count <= g.nodes.count else { throw g.fail("\(what): '\(v)' is not computed from the layer's tokens") }
            let n = g.nodes[k]
            guard ops.contains(n.opType) else { throw g.unsupported("\(what): the tokens go through \(g.describe(k))") }
            region.append(k)
            g.visited.insert(k)
            let data = ["Concat", "Add"].contains(n.opType) ? n.inputs.indices.map { $0 } : [0]
            for (j, i) in n.inputs.enumerated() where !i.isEmpty {
                if !data.contains(j) { g.takeScalar(i); continue }
                if !sources.contains(i), let c = g.constant(i), OnnxImport.dtype(c.dataType) != nil {
                    guard let table else { throw g.unsupported("\(what): \(g.describe(k)) adds the constant '\(i)' to the tokens") }
                    try table(k, i)
                    continue
                }
                // A Slice of a table (sfnet's export slices the position table).
                if !sources.contains(i), let table, let p = g.producer[i], g.nodes[p].opType == "Slice", let c = g.nodes[p].inputs.first,
                   let t = g.constant(c), OnnxImport.dtype(t.dataType) != nil {
                    g.visited.insert(p)
                    for s in g.nodes[p].inputs.dropFirst() where !s.isEmpty { g.takeScalar(s) }
                    try table(k, c)
                    continue
                }
                stack.append(i)
            }
        }
        return (region, reached)
    }

    /// Divided space-time regrouping between the temporal and spatial attention, matched by its Transposes against
    /// the two producers sfnet knows (their Reshapes are consistent with them): torch's export of transformers'
    /// TimesformerLayer ([0, 3, 1, 2, 4] into frames, [0, 2, 3, 1, 4] back, the class token's ReduceMean over frames)
    /// and sfnet's own export ([0, 2, 1, 3] both ways).
    static func checkRegrouping(input: [Int], output: [Int], what: String, _ g: OnnxTransformerWalk) throws {
        func perms(_ region: [Int]) -> [[Int]] {
            region.sorted().compactMap { k in
                guard g.nodes[k].opType == "Transpose", case let .ints(p)? = g.nodes[k].attribute("perm") else { return nil }
                return p
            }
        }
        let pin = perms(input), pout = perms(output), means = output.filter { g.nodes[$0].opType == "ReduceMean" }.count
        let known: [(String, [[Int]], [[Int]])] = [("torch.onnx.export of transformers' TimeSformer", [[0, 3, 1, 2, 4]], [[0, 2, 3, 1, 4]]),
                                                 ("sfnet's export", [[0, 2, 1, 3]], [[0, 2, 1, 3]])]
        guard means == 1, known.contains(where: { $0.1 == pin && $0.2 == pout }) else {
            throw g.unsupported("\(what): the divided space-time regrouping (Transposes \(pin) into frames, \(pout) back, \(means) class-token means) is not "
                                + "one sfnet knows (\(known.map { "\($0.0): \($0.1), \($0.2)" }.joined(separator: "; ")))")
        }
    }

    /// TimeSformer's embeddings from the per-frame tokens to the first layer's input: the class token [1, 1, D], the
    /// position table [1, 1 + h * w, D] (both before the regrouping per patch position) and the time table [1, T, D]
    /// (added after it) are the float constants read there.
    static func timesformerEmbeddings(_ tokens: String, width d: Int, _ g: OnnxTransformerWalk) throws
        -> (output: String, tensors: [(String, Tensor, String)], frames: Int, side: Int) {
        // The first layer's input: the value whose Slice [1:] leads to a LayerNorm.
        var frontier = [tokens], seen = Set<String>(), start: String?
        let ops = regroupOps.union(["Add"])
        while let x = frontier.popLast() {
            guard seen.insert(x).inserted, seen.count <= g.nodes.count else { continue }
            if let s = patchSlice(x, g, mark: false), reachesLayerNorm(s, width: d, g) {
                guard start == nil || start == x else { throw g.fail("TimeSformer embeddings: two first layers") }
                start = x
                continue
            }
            for k in g.readers(x) where ops.contains(g.nodes[k].opType) { frontier += g.nodes[k].outputs }
        }
        guard let start else { throw g.fail("TimeSformer embeddings: no layer follows the patch tokens") }
        var found: [(node: Int, name: String)] = []
        let (region, reached) = try glueRegion(back: start, to: [tokens], ops: ops, what: "TimeSformer embeddings", g) { k, name in
            if !found.contains(where: { $0.node == k && $0.name == name }) { found.append((k, name)) }
        }
        guard reached == [tokens] else { throw g.fail("TimeSformer embeddings: the first layer's input does not come from the patch tokens") }
        // The time table is added after the tokens are regrouped per patch position (the Transpose [0, 2, 1, 3]).
        let transposes = region.filter { g.nodes[$0].opType == "Transpose" }
        let perms = transposes.sorted().compactMap { k -> [Int]? in if case let .ints(p)? = g.nodes[k].attribute("perm") { return p }; return nil }
        guard perms == [[0, 2, 1, 3]] else {
            throw g.unsupported("TimeSformer embeddings: the patch tokens are regrouped for the time table by Transposes \(perms), expected [[0, 2, 1, 3]]")
        }
        var after = Set(g.nodes[transposes[0]].outputs), grew = true
        while grew {
            grew = false
            for k in region where g.nodes[k].inputs.contains(where: after.contains) && !g.nodes[k].outputs.allSatisfy(after.contains) {
                after.formUnion(g.nodes[k].outputs)
                grew = true
            }
        }
        var cls: (String, Tensor)?, pos: (String, Tensor)?, time: (String, Tensor)?
        for (k, name) in found {
            let t = try g.floatTensor(name, what: "TimeSformer embedding")
            guard t.shape.count == 3, t.shape[0] == 1, t.shape[2] == d, t.shape[1] >= 1 else {
                throw g.unsupported("TimeSformer embeddings: the constant '\(name)' \(t.shape) is not a [1, n, \(d)] table")
            }
            func assign(_ slot: inout (String, Tensor)?, _ what: String) throws {
                if let s = slot, s.0 != name { throw g.fail("TimeSformer embeddings: two \(what)s ('\(s.0)', '\(name)')") }
                slot = (name, t)
            }
            if g.nodes[k].inputs.contains(where: after.contains) { try assign(&time, "time table") }
            else if t.shape[1] == 1 { try assign(&cls, "class token") }
            else { try assign(&pos, "position table") }
        }
        guard let cls, let pos, let time else {
            throw g.fail("TimeSformer embeddings: expected a class token [1, 1, \(d)], a position table [1, 1 + h*w, \(d)] and a time table [1, T, \(d)] "
                         + "(found \(found.map(\.name)))")
        }
        let side = Int(Double(pos.1.shape[1] - 1).squareRoot().rounded())
        guard side > 0, side * side == pos.1.shape[1] - 1 else { throw g.unsupported("TimeSformer embeddings: the position table \(pos.1.shape) is not a class row and a square grid") }
        let prefix = "timesformer.embeddings."
        return (start, [(prefix + "cls_token", cls.1, "'\(cls.0)'"), (prefix + "position_embeddings", pos.1, "'\(pos.0)'"),
                        (prefix + "time_embeddings", time.1, "'\(time.0)'")], time.1.shape[1], side)
    }

    /// Whether `v`, or a reshape of it keeping the width, is read by a LayerNorm (either form); marks nothing.
    static func reachesLayerNorm(_ v: String, width: Int, _ g: OnnxTransformerWalk) -> Bool {
        var frontier = [v], steps = 0
        while let x = frontier.popLast(), steps <= g.nodes.count {
            steps += 1
            for k in g.readers(x) {
                let n = g.nodes[k]
                if n.opType == "LayerNormalization" && n.inputs.first == x || n.opType == "ReduceMean" && g.isLastAxisMean(k) { return true }
                if n.opType == "Reshape", g.isTokenReshape(k, width: width) { frontier.append(n.outputs[0]) }
            }
        }
        return false
    }
}
