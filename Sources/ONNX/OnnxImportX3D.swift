// X3D graphs for `sfnet convert --from onnx`: the single pathway followed by data flow, as for SlowFast
// (OnnxImport.swift), with X3D's own pieces told apart by where values go:
//   stem: conv_xy (1x3x3, no BN) feeding a channel-wise conv (group = channels) + BN + ReLU;
//   block: a (+BN, ReLU) -> b (channel-wise, +BN) -> [squeeze-excitation: a pool (ReduceMean or
//          GlobalAveragePool) -> Conv fc1 (bias) -> Relu -> Conv fc2 (bias) -> Sigmoid -> Mul with b's
//          output] -> Swish (Sigmoid + Mul with its input; or Relu) -> c (+BN) -> Add shortcut -> ReLU;
//          a conv beside `a` whose output goes straight into the Add is the shortcut (a new stage);
//   head: conv_5 (+BN, ReLU) -> the clip pool -> lin_5 (1x1x1; a bias or a BN after it is lin_5's BN) -> ReLU,
//         then the projection the SlowFast walk finds (the one Gemm/MatMul).
// torch.onnx.export folds every BN into its conv (a bias: an identity BN carrying it, as for SlowFast).

import Foundation
import Formats

extension OnnxImport {
    /// What the X3D walk needs from `importModel`'s graph indexes and unit recorder.
    struct X3DWalk {
        let nodes: [OnnxNode]
        let consumers: [String: [Int]]
        /// Follows a value through single-consumer parameter-free ops (Relu, Identity, Dropout...).
        let forward: (String) -> String
        /// Conv nodes that take the value as their data input.
        let convConsumers: (String) -> [Int]
        /// Records conv node k as `conv` with its BN as `bn` (folded: an identity BN carrying the bias) and returns the
        /// unit's output; `bn` nil records the conv alone, with its own bias if it has one, and returns its output.
        let unit: (Int, String, String?) throws -> String
        let fail: (String) -> FormatError
    }

    /// The X3D result: the value after lin_5's ReLU (the projection's input), res2..res5 depths, and whether the
    /// blocks' activation after the 3x3x3 is Swish (false: ReLU).
    struct X3DTrunk {
        var end: String
        var depths: [Int]
        var swish: Bool
    }

    static let poolOps: Set<String> = ["ReduceMean", "GlobalAveragePool", "AveragePool"]

    /// Whether the stem conv `k` is X3D's: its output goes straight into one channel-wise conv.
    static func isX3DStem(_ k: Int, nodes: [OnnxNode], consumers: [String: [Int]]) -> Bool {
        guard let cs = consumers[nodes[k].outputs[0]], cs.count == 1, nodes[cs[0]].opType == "Conv" else { return false }
        if case let .int(g)? = nodes[cs[0]].attribute("group"), g > 1 { return true }
        return false
    }

    static func x3dTrunk(stem: Int, _ w: X3DWalk) throws -> X3DTrunk {
        let nodes = w.nodes
        func only(_ value: String, _ ops: Set<String>, _ what: String) throws -> Int {
            guard let cs = w.consumers[value], cs.count == 1, ops.contains(nodes[cs[0]].opType) else {
                let found = (w.consumers[value] ?? []).map { nodes[$0].opType }
                throw w.fail("\(what): expected one \(ops.sorted().joined(separator: "/")) after '\(value)', found \(found)")
            }
            return cs[0]
        }
        func oneConv(_ value: String, _ what: String) throws -> Int {
            let cs = w.convConsumers(value)
            guard cs.count == 1 else { throw w.fail("\(what): '\(value)' feeds \(cs.count) convs, expected 1") }
            return cs[0]
        }

        let xy = try w.unit(stem, "s1.pathway0_stem.conv_xy", nil)
        var v = w.forward(try w.unit(try oneConv(xy, "X3D stem"), "s1.pathway0_stem.conv", "s1.pathway0_stem.bn"))
        var depths: [Int] = [], stage = 1, block = 0, swish: Bool?
        var conv5: Int?
        while conv5 == nil {
            var a: Int?, b1: Int?
            for k in w.convConsumers(v) {
                var y = nodes[k].outputs[0]
                if let cs = w.consumers[y], cs.count == 1, nodes[cs[0]].opType == "BatchNormalization" { y = nodes[cs[0]].outputs[0] }
                let dest = (w.consumers[w.forward(y)] ?? []).map { nodes[$0].opType }
                if dest == ["Add"] { guard b1 == nil else { throw w.fail("two shortcut convs at one value") }; b1 = k }
                else if dest == ["Conv"] { guard a == nil else { throw w.fail("two block convs at one value") }; a = k }
                else if dest.count == 1, poolOps.contains(dest[0]) { guard conv5 == nil else { throw w.fail("two head convs") }; conv5 = k }
                else { throw w.fail("conv '\(nodes[k].name)' feeds \(dest), not an X3D block, shortcut or head") }
            }
            guard let ka = a else {
                if conv5 == nil { throw w.fail("the X3D trunk ends at '\(v)' without conv_5 and the head's pool") }
                if b1 != nil { throw w.fail("a shortcut conv beside the head's conv_5") }
                break
            }
            if conv5 != nil { throw w.fail("the head's conv_5 beside a block at '\(v)'") }
            if b1 != nil || stage == 1 { stage += 1; block = 0; depths.append(0) }
            guard stage <= 5 else { throw w.fail("more than four X3D stages") }
            let pre = "s\(stage).pathway0_res\(block)"
            let shortcut = try b1.map { try w.unit($0, "\(pre).branch1", "\(pre).branch1_bn") } ?? v
            let aOut = w.forward(try w.unit(ka, "\(pre).branch2.a", "\(pre).branch2.a_bn"))
            var x = try w.unit(try oneConv(aOut, "\(pre).branch2.a"), "\(pre).branch2.b", "\(pre).branch2.b_bn")
            // Squeeze-excitation: a pool and a Mul read b's output.
            let readers = (w.consumers[x] ?? []).map { nodes[$0] }
            if let pool = readers.first(where: { poolOps.contains($0.opType) }) {
                let fc1 = try w.unit(try oneConv(pool.outputs[0], "\(pre) squeeze-excitation"), "\(pre).branch2.se.fc1", nil)
                let relu = nodes[try only(fc1, ["Relu"], "\(pre).branch2.se.fc1")].outputs[0]
                let fc2 = try w.unit(try oneConv(relu, "\(pre) squeeze-excitation"), "\(pre).branch2.se.fc2", nil)
                let gate = nodes[try only(fc2, ["Sigmoid"], "\(pre).branch2.se.fc2")].outputs[0]
                let mul = nodes[try only(gate, ["Mul"], "\(pre).branch2.se gate")]
                guard Set(mul.inputs) == [x, gate] else { throw w.fail("\(pre): the squeeze-excitation gate does not scale b's output") }
                x = mul.outputs[0]
            }
            // Swish (x * sigmoid(x)) or ReLU after the 3x3x3.
            let after = (w.consumers[x] ?? []).map { nodes[$0] }
            if after.count == 2, let s = after.first(where: { $0.opType == "Sigmoid" }), let m = after.first(where: { $0.opType == "Mul" }),
               Set(m.inputs) == [x, s.outputs[0]] {
                guard swish != false else { throw w.fail("\(pre): Swish after the 3x3x3 where earlier blocks have ReLU") }
                swish = true
                x = m.outputs[0]
            } else if after.count == 1, after[0].opType == "Relu" {
                guard swish != true else { throw w.fail("\(pre): ReLU after the 3x3x3 where earlier blocks have Swish") }
                swish = false
                x = after[0].outputs[0]
            } else {
                throw w.fail("\(pre): b's output goes to \(after.map(\.opType)), not Swish (Sigmoid, Mul) or Relu")
            }
            let cOut = try w.unit(try oneConv(x, "\(pre).branch2.b"), "\(pre).branch2.c", "\(pre).branch2.c_bn")
            let add = nodes[try only(cOut, ["Add"], "\(pre).branch2.c")]
            guard Set(add.inputs) == [cOut, shortcut] else { throw w.fail("\(pre): branch2 output is not added to the shortcut") }
            v = w.forward(add.outputs[0])
            block += 1
            depths[depths.count - 1] = block
        }
        guard let k5 = conv5 else { throw w.fail("the X3D trunk has no head conv_5") }
        let out5 = w.forward(try w.unit(k5, "head.conv_5", "head.conv_5_bn"))
        let pool = nodes[try only(out5, poolOps, "head.conv_5")]
        let lin = try oneConv(pool.outputs[0], "the head's pool")
        let lin5Norm = nodes[lin].inputs.count >= 3 && !nodes[lin].inputs[2].isEmpty
            || (w.consumers[nodes[lin].outputs[0]] ?? []).map({ nodes[$0].opType }) == ["BatchNormalization"]
        let end = w.forward(try w.unit(lin, "head.lin_5", lin5Norm ? "head.lin_5_bn" : nil))
        return X3DTrunk(end: end, depths: depths, swish: swish ?? true)
    }
}
