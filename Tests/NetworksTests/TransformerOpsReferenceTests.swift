// The transformer ops against real PyTorch (fixtures/ops/transformer_ops.safetensors, made by
// fixtures/ops/generate_transformer_ops.py): F.layer_norm (eps 1e-12 and 1e-6), F.gelu (both forms),
// scaled-dot-product attention on a fused qkv and on separate q/k/v (each backward path), and the tubelet (conv3d) and
// per-frame (conv2d on (b t) c h w) patch embeddings, forward and the gradients of sum(out * R). The truth
// is PyTorch in float64; each sfnet result must be as close to it as PyTorch float32 is (the fixture's
// per-tensor `sfnet.torch_f32_gap`, worst of PyTorch's paths): relative L2 at most `factor` x that gap, or
// `floor` (~16 float32 roundings) when PyTorch happens to be closer (STYLE 14).

import Foundation
import XCTest
@testable import Formats
@testable import Networks

final class TransformerOpsReferenceTests: XCTestCase {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/ops/transformer_ops.safetensors").path
    static let factor = 2.0
    static let floor = 1e-6

    private var ck: Checkpoint!
    private var gaps: [String: Double] = [:]
    private var checked: Set<String> = []

    override func setUpWithError() throws {
        ck = try CheckpointReader.read(path: Self.path)
        gaps = try JSONDecoder().decode([String: Double].self, from: Data(try XCTUnwrap(ck.metadataValue("sfnet.torch_f32_gap")).utf8))
    }

    private func float(_ name: String) throws -> FloatTensor {
        let t = try XCTUnwrap(ck.tensors[name], "no \(name) in the fixture")
        XCTAssertEqual(t.dtype, .f32, name)
        return FloatTensor(shape: t.shape, values: t.floats())
    }

    /// The float64 truth, read exactly.
    private func truth(_ name: String) throws -> Tensor64 {
        let t = try XCTUnwrap(ck.tensors[name + ".f64"], "no \(name).f64 in the fixture")
        XCTAssertEqual(t.dtype, .f64, name)
        let values = withExtendedLifetime(t.data.owner) {
            (0..<t.numel).map { t.data.raw.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) }
        }
        return Tensor64(shape: t.shape, values: values)
    }

    private func judge(_ got: FloatTensor?, _ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let want = try truth(name)
        let got = try XCTUnwrap(got, "\(name): not computed", file: file, line: line)
        XCTAssertEqual(got.shape, want.shape, name, file: file, line: line)
        guard got.shape == want.shape else { return }
        var diff = 0.0, norm = 0.0
        for i in 0..<want.count {
            let d = Double(got.pointer[i]) - want.values[i]
            diff += d * d
            norm += want.values[i] * want.values[i]
        }
        let err = norm > 0 ? (diff / norm).squareRoot() : diff.squareRoot()
        let gap = try XCTUnwrap(gaps[name], "no PyTorch float32 gap for \(name)")
        let allowed = max(Self.factor * gap, Self.floor)
        XCTAssertLessThanOrEqual(err, allowed, "\(name): relative L2 to float64 \(err), PyTorch float32's \(gap)", file: file, line: line)
        print(String(format: "  %@: sfnet %.2e, PyTorch float32 %.2e (%.2fx)", name, err, gap, gap > 0 ? err / gap : 0))
        checked.insert(name)
    }

    private func ints(_ v: JSONValue?) -> [Int] {
        guard case .array(let xs)? = v else { return [] }
        return xs.compactMap { $0.intValue }
    }

    func testTransformerOpsMatchPyTorchAsCloselyAsPyTorchFloat32() throws {
        guard case .array(let cases) = try JSONParser.parse(try XCTUnwrap(ck.metadataValue("sfnet.transformer_ops"))) else {
            return XCTFail("sfnet.transformer_ops is not a list")
        }
        XCTAssertEqual(cases.count, 11)
        print("OpenBLAS kernel \(Threading.blasCoreName), \(Threading.threads) threads")
        // Each build of the element-wise kernels (GELU, Swish, the attention softmax rows) this CPU runs.
        try forEachKernelBuild { kernels in
            print("element-wise kernels \(kernels)")
            for op in cases {
                let name = try XCTUnwrap(op["name"]?.stringValue)
                let r = try float(name + ".grad_output")
                switch op["op"]?.stringValue {
                case "layer_norm":
                    guard case .number(let eps, _, _)? = op["eps"] else { return XCTFail("\(name): no eps") }
                    let x = try float(name + ".input"), w = try float(name + ".weight"), b = try float(name + ".bias")
                    let (y, stats) = layerNormForward(x, gamma: w, beta: b, eps: eps)
                    try judge(y, name + ".output")
                    let dw = FloatTensor(zeros: w.shape), db = FloatTensor(zeros: b.shape)
                    let dx = layerNormBackward(x, gamma: w, statistics: stats, eps: eps, gradOutput: r, gradGamma: dw, gradBeta: db)
                    try judge(dx, name + ".grad_input")
                    try judge(dw, name + ".grad_weight")
                    try judge(db, name + ".grad_bias")
                case "gelu":
                    let form = try XCTUnwrap(GELUApproximation(rawValue: op["approximate"]?.stringValue ?? ""))
                    let x = try float(name + ".input")
                    try judge(geluForward(x, approximate: form), name + ".output")
                    try judge(geluBackward(input: x, gradOutput: r, approximate: form, inPlace: false), name + ".grad_input")
                case "attention":
                    let heads = try XCTUnwrap(op["heads"]?.intValue)
                    // Each of the backward's paths: P recomputed (rowsum(P dP) summed, or dO . O from the output),
                    // P kept by the forward.
                    for (keep, giveOutput) in [(false, false), (false, true), (true, true)] {
                        if op["layout"]?.stringValue == "fused" {
                            let qkv = try float(name + ".qkv")
                            let (y, stats) = fusedAttentionForward(qkv: qkv, heads: heads, keepProbabilities: keep)
                            try judge(y, name + ".output")
                            try judge(fusedAttentionBackward(qkv: qkv, output: giveOutput ? y : nil, statistics: stats, gradOutput: r,
                                                             heads: heads), name + ".grad_qkv")
                        } else {
                            let q = try float(name + ".query"), k = try float(name + ".key"), v = try float(name + ".value")
                            let (y, stats) = attentionForward(query: q, key: k, value: v, heads: heads, keepProbabilities: keep)
                            try judge(y, name + ".output")
                            let g = attentionBackward(query: q, key: k, value: v, output: giveOutput ? y : nil, statistics: stats,
                                                      gradOutput: r, heads: heads)
                            try judge(g.query, name + ".grad_query")
                            try judge(g.key, name + ".grad_key")
                            try judge(g.value, name + ".grad_value")
                        }
                    }
                case "patch_embed":
                    let x = try float(name + ".input"), w = try float(name + ".weight"), b = try float(name + ".bias")
                    let p = ints(op["patch"])
                    // TimeSformer's Conv2d weight [D, C, ph, pw] is the t = 1 tubelet [D, C, 1, ph, pw]; its (b t) (h w)
                    // tokens are the time-major order.
                    let w5 = w.copy()
                    w5.reshape([w.shape[0], w.shape[1], p[0], p[1], p[2]])
                    let y = patchEmbedForward(x, weight: w5, bias: b, order: .timeMajor)
                    try judge(y, name + ".output")
                    let dw = FloatTensor(zeros: w5.shape), db = FloatTensor(zeros: b.shape)
                    let dx = patchEmbedBackward(x, weight: w5, gradOutput: r, gradWeight: dw, gradBias: db, order: .timeMajor)
                    dw.reshape(w.shape)
                    try judge(dx, name + ".grad_input")
                    try judge(dw, name + ".grad_weight")
                    try judge(db, name + ".grad_bias")
                default:
                    XCTFail("\(name): unknown op \(String(describing: op["op"]))")
                }
            }
        }
        XCTAssertEqual(checked, Set(gaps.keys), "every reference tensor checked")
    }
}
