// The fast ops against torch.nn.functional (fixtures/reference/ops_ref.safetensors,
// computed by PyTorch in float64): conv3d shapes of the real network, pools, eval BN.

import Foundation
import XCTest
@testable import Formats
@testable import Networks

final class OpsReferenceTests: XCTestCase {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/reference/ops_ref.safetensors").path

    func tensor(_ ck: Checkpoint, _ name: String) -> FloatTensor {
        let t = ck.tensors[name]!
        XCTAssertEqual(t.dtype, .f32, name)
        let out = FloatTensor(uninitialized: t.shape)
        withExtendedLifetime(t.data.owner) {
            UnsafeMutableRawPointer(out.pointer).copyMemory(from: t.data.raw.baseAddress!, byteCount: t.byteCount)
        }
        return out
    }

    func size3(_ v: JSONValue?) -> Size3 {
        guard case .array(let xs)? = v else { return 1 }
        return Size3(xs[0].intValue!, xs[1].intValue!, xs[2].intValue!)
    }

    func assertClose(_ got: FloatTensor, _ want: FloatTensor, _ name: String) {
        XCTAssertEqual(got.shape, want.shape, name)
        guard got.shape == want.shape else { return }
        var worst = 0.0, at = 0
        for i in 0 ..< got.count {
            let d = Double(abs(got.pointer[i] - want.pointer[i])) / (1e-4 + Double(abs(want.pointer[i])))
            if d > worst { worst = d; at = i }
        }
        XCTAssertLessThan(worst, 1e-3, "\(name): worst scaled error \(worst) at \(at): \(got.pointer[at]) vs \(want.pointer[at])")
    }

    func testOpsMatchPyTorch() throws {
        let ck = try CheckpointReader.read(path: Self.path)
        guard case .array(let ops) = try JSONParser.parse(ck.metadataValue("sfnet.ops")!) else { return XCTFail("sfnet.ops") }
        XCTAssertEqual(ops.count, 10)
        for op in ops {
            let name = op["name"]!.stringValue!
            let x = tensor(ck, name + ".input"), want = tensor(ck, name + ".output")
            switch op["op"]!.stringValue! {
            case "conv":
                let config = Conv3dConfig(stride: size3(op["stride"]), padding: size3(op["padding"]),
                                          dilation: size3(op["dilation"]), groups: op["groups"]!.intValue!)
                let bias = ck.tensors[name + ".bias"] != nil ? tensor(ck, name + ".bias") : nil
                assertClose(conv3dForward(x, weight: tensor(ck, name + ".weight"), bias: bias, config: config), want, name)
            case "maxpool":
                let c = Pool3dConfig(kernel: size3(op["kernel"]), stride: size3(op["stride"]), padding: size3(op["padding"]))
                assertClose(maxPool3dForward(x, c), want, name)
            case "avgpool":
                let c = Pool3dConfig(kernel: size3(op["kernel"]), stride: size3(op["stride"]), padding: size3(op["padding"]))
                assertClose(avgPool3dForward(x, c, countIncludePad: true), want, name)
            case "bn":
                let fold = BatchNormFold(weight: tensor(ck, name + ".weight"), bias: tensor(ck, name + ".bias"),
                                         runningMean: tensor(ck, name + ".running_mean"), runningVar: tensor(ck, name + ".running_var"))
                assertClose(batchNormEvalForward(x, fold), want, name)
            default:
                XCTFail("unknown op in \(name)")
            }
        }
    }
}
