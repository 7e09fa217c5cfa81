// Times sfnet's X3D ops (channel-wise Conv3d forward / backward, squeeze-excitation forward /
// backward, Swish forward / backward) on the shapes Benchmarks/x3d_ops_bench.py passes as JSON
// on stdin; prints one JSON object per case with every repeat's seconds. Random inputs, one
// warm-up call per op; gradients accumulate into buffers allocated once, as in training.
import Foundation
import Networks

struct Case: Decodable {
    let name: String, op: String, shape: [Int]
    let kernel: [Int]?, stride: [Int]?, padding: [Int]?, reduced: Int?
}
struct Request: Decodable { let threads: Int, repeats: Int, cases: [Case] }

func random(_ shape: [Int], scale: Float = 1) -> FloatTensor {
    var g = SystemRandomNumberGenerator()
    let t = FloatTensor(uninitialized: shape)
    for i in 0..<t.count { t.pointer[i] = Float.random(in: -scale...scale, using: &g) }
    return t
}

func time(_ repeats: Int, _ body: () -> Void) -> [Double] {
    body()
    return (0..<repeats).map { _ in
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }
}

let request = try JSONDecoder().decode(Request.self, from: FileHandle.standardInput.readDataToEndOfFile())
Threading.setThreads(request.threads)
let ws = Workspace()
for c in request.cases {
    let x = random(c.shape)
    var result: [String: [Double]] = [:]
    switch c.op {
    case "conv":
        let k = c.kernel!, s = c.stride!, p = c.padding!
        let config = Conv3dConfig(stride: Size3(s[0], s[1], s[2]), padding: Size3(p[0], p[1], p[2]), groups: c.shape[1])
        let w = random([c.shape[1], 1, k[0], k[1], k[2]], scale: 0.3)
        let out = conv3dForward(x, weight: w, config: config)
        result["forward"] = time(request.repeats) { _ = conv3dForward(x, weight: w, config: config, workspace: ws, into: out) }
        let dy = random(out.shape), dx = FloatTensor(zeros: x.shape), dw = FloatTensor(zeros: w.shape)
        result["backward"] = time(request.repeats) {
            conv3dBackward(x, weight: w, gradOutput: dy, config: config, gradInput: dx, gradWeight: dw, workspace: ws)
        }
    case "se":
        let ch = c.shape[1], r = c.reduced!
        let w1 = random([r, ch, 1, 1, 1], scale: 0.3), b1 = random([r]), w2 = random([ch, r, 1, 1, 1], scale: 0.3), b2 = random([ch])
        result["forward"] = time(request.repeats) { _ = squeezeExciteForward(x, fc1Weight: w1, fc1Bias: b1, fc2Weight: w2, fc2Bias: b2) }
        let (_, saved) = squeezeExciteForward(x, fc1Weight: w1, fc1Bias: b1, fc2Weight: w2, fc2Bias: b2)
        let dy = random(c.shape)
        let g = [w1, b1, w2, b2].map { FloatTensor(zeros: $0.shape) }
        result["backward"] = time(request.repeats) {
            _ = squeezeExciteBackward(x, gradOutput: dy, fc1Weight: w1, fc2Weight: w2, saved: saved,
                                      gradFc1Weight: g[0], gradFc1Bias: g[1], gradFc2Weight: g[2], gradFc2Bias: g[3])
        }
    case "swish":
        result["forward"] = time(request.repeats) { _ = swishForward(x) }
        let dy = random(c.shape)
        result["backward"] = time(request.repeats) { _ = swishBackward(input: x, gradOutput: dy, inPlace: false) }
    default:
        fatalError("unknown op \(c.op)")
    }
    let line = try JSONSerialization.data(withJSONObject: ["name": c.name, "times": result], options: [.sortedKeys])
    print(String(decoding: line, as: UTF8.self))
}
