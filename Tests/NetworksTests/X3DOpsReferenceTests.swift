// X3D's ops against real PyTorch (fixtures/ops/x3d_ops.safetensors, made by
// fixtures/ops/generate_x3d_ops.py): channel-wise conv3d, pytorchvideo's Swish and fvcore's
// SqueezeExcitation, forward and the gradients of sum(out * R). The truth is PyTorch in float64;
// each sfnet result must be as close to it as PyTorch float32 is (the fixture's per-tensor
// `sfnet.torch_f32_gap`, worst of oneDNN on/off at 1 and 2 threads): relative L2 at most
// `factor` x that gap, or `floor` (~16 float32 roundings) when PyTorch happens to be closer (STYLE 14).

import Foundation
import XCTest
@testable import Formats
@testable import Networks

final class X3DOpsReferenceTests: XCTestCase {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/ops/x3d_ops.safetensors").path
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

    private func size3(_ v: JSONValue?) -> Size3 {
        guard case .array(let xs)? = v else { return 1 }
        return Size3(xs[0].intValue!, xs[1].intValue!, xs[2].intValue!)
    }

    func testX3DOpsMatchPyTorchAsCloselyAsPyTorchFloat32() throws {
        guard case .array(let cases) = try JSONParser.parse(try XCTUnwrap(ck.metadataValue("sfnet.x3d_ops"))) else {
            return XCTFail("sfnet.x3d_ops is not a list")
        }
        XCTAssertEqual(cases.count, 9)
        // Each build of the element-wise kernels (GELU, Swish, the attention softmax rows) this CPU runs.
        try forEachKernelBuild { kernels in
            print("element-wise kernels \(kernels)")
            for op in cases {
                let name = try XCTUnwrap(op["name"]?.stringValue)
                let x = try float(name + ".input"), r = try float(name + ".grad_output")
                switch op["op"]?.stringValue {
                case "channelwise_conv":
                    let w = try float(name + ".weight"), b = try float(name + ".bias")
                    let config = Conv3dConfig(stride: size3(op["stride"]), padding: size3(op["padding"]),
                                              dilation: size3(op["dilation"]), groups: x.shape[1])
                    try judge(conv3dForward(x, weight: w, bias: b, config: config), name + ".output")
                    let dx = FloatTensor(zeros: x.shape), dw = FloatTensor(zeros: w.shape), db = FloatTensor(zeros: b.shape)
                    conv3dBackward(x, weight: w, gradOutput: r, config: config, gradInput: dx, gradWeight: dw, gradBias: db)
                    try judge(dx, name + ".grad_input")
                    try judge(dw, name + ".grad_weight")
                    try judge(db, name + ".grad_bias")
                case "swish":
                    try judge(swishForward(x), name + ".output")
                    try judge(swishBackward(input: x, gradOutput: r, inPlace: false), name + ".grad_input")
                case "squeeze_excite":
                    let w1 = try float(name + ".fc1_weight"), b1 = try float(name + ".fc1_bias")
                    let w2 = try float(name + ".fc2_weight"), b2 = try float(name + ".fc2_bias")
                    let (y, saved) = squeezeExciteForward(x, fc1Weight: w1, fc1Bias: b1, fc2Weight: w2, fc2Bias: b2)
                    try judge(y, name + ".output")
                    let g = [w1, b1, w2, b2].map { FloatTensor(zeros: $0.shape) }
                    let dx = squeezeExciteBackward(x, gradOutput: r, fc1Weight: w1, fc2Weight: w2, saved: saved,
                                                   gradFc1Weight: g[0], gradFc1Bias: g[1], gradFc2Weight: g[2], gradFc2Bias: g[3])
                    try judge(dx, name + ".grad_input")
                    for (t, suffix) in zip(g, ["fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"]) {
                        try judge(t, name + ".grad_" + suffix)
                    }
                default:
                    XCTFail("\(name): unknown op \(String(describing: op["op"]))")
                }
            }
        }
        XCTAssertEqual(checked, Set(gaps.keys), "every reference tensor checked")
    }
}
