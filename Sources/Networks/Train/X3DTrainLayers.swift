// X3D's training-mode pieces: squeeze-excitation and Swish inside a residual block, each
// keeping from its forward only what its backward reads.

import Foundation

/// Squeeze-excitation (operators.SE): y = x * sigmoid(fc2(relu(fc1(mean_THW(x))))), fc1 and
/// fc2 1x1x1 convolutions with bias, run as linear maps on the (N, C) channel means.
final class TrainSqueezeExcite {
    /// Module name: `<name>.fc1.weight` [r, C, 1, 1, 1], `.fc1.bias`, `.fc2.weight` [C, r, 1, 1, 1], `.fc2.bias`.
    let name: String
    private var input: FloatTensor?, means: FloatTensor?, hidden: FloatTensor?, gate: FloatTensor?

    init(name: String) { self.name = name }

    var parameterNames: [String] { ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"].map { name + "." + $0 } }

    /// The 1x1x1 weight as a [rows, cols] matrix sharing its memory, for the duration of `body`.
    private func matrix<R>(_ t: FloatTensor?, _ body: (FloatTensor?) -> R) -> R {
        guard let t else { return body(nil) }
        let shape = t.shape
        t.reshape([shape[0], shape[1]])
        defer { t.reshape(shape) }
        return body(t)
    }

    func forward(_ x: FloatTensor, _ ctx: TrainContext) -> FloatTensor {
        let store = ctx.store
        let (n, c) = (x.shape[0], x.shape[1])
        let plane = x.count / max(1, n * c)
        let means = FloatTensor(uninitialized: [n, c])
        let xp = x.pointer
        parallelFor(n * c, work: plane) { nc in
            var sum: Double = 0
            let p = xp + nc * plane
            for i in 0..<plane { sum += Double(p[i]) }
            means.pointer[nc] = Float(sum / Double(plane))
        }
        let hidden = matrix(store.value(required: name + ".fc1.weight")) {
            reluForward(linearForward(means, weight: $0!, bias: store.value(required: name + ".fc1.bias")), inPlace: true)
        }
        let gate = matrix(store.value(required: name + ".fc2.weight")) {
            sigmoidForward(linearForward(hidden, weight: $0!, bias: store.value(required: name + ".fc2.bias")))
        }
        let y = ctx.pool.take(x.shape)
        let yp = y.pointer, gp = gate.pointer
        parallelFor(n * c, work: plane) { nc in
            let g = gp[nc]
            let (src, dst) = (xp + nc * plane, yp + nc * plane)
            for i in 0..<plane { dst[i] = src[i] * g }
        }
        if ctx.keepForBackward { (input, self.means, self.hidden, self.gate) = (x, means, hidden, gate) }
        return y
    }

    /// dL/dy -> dL/dx, adding the four parameter gradients (when trainable).
    func backward(_ grad: FloatTensor, _ ctx: TrainContext) -> FloatTensor {
        guard let x = input, let means, let hidden, let gate else { preconditionFailure("\(name): backward without forward") }
        defer { input = nil; self.means = nil; self.hidden = nil; self.gate = nil }
        let store = ctx.store
        let (n, c) = (x.shape[0], x.shape[1])
        let plane = x.count / max(1, n * c)
        // y = x * g: dL/dg = sum over the plane of dy * x, then through the sigmoid.
        let dz = FloatTensor(uninitialized: [n, c])
        let xp = x.pointer, dp = grad.pointer, gp = gate.pointer
        parallelFor(n * c, work: plane) { nc in
            var s: Double = 0
            let (a, b) = (xp + nc * plane, dp + nc * plane)
            for i in 0..<plane { s += Double(a[i]) * Double(b[i]) }
            let g = gp[nc]
            dz.pointer[nc] = Float(s) * g * (1 - g)
        }
        let dHidden = matrix(store.value(required: name + ".fc2.weight")) { w in
            matrix(store.gradient(name + ".fc2.weight")) { gw in
                linearBackward(hidden, weight: w!, gradOutput: dz, gradWeight: gw, gradBias: store.gradient(name + ".fc2.bias"))!
            }
        }
        _ = reluBackward(output: hidden, gradOutput: dHidden)
        let dMeans = matrix(store.value(required: name + ".fc1.weight")) { w in
            matrix(store.gradient(name + ".fc1.weight")) { gw in
                linearBackward(means, weight: w!, gradOutput: dHidden, gradWeight: gw, gradBias: store.gradient(name + ".fc1.bias"))!
            }
        }
        // dL/dx = dy * g + dL/dmean / plane.
        let dx = ctx.pool.take(x.shape)
        let op = dx.pointer, mp = dMeans.pointer
        parallelFor(n * c, work: plane) { nc in
            let (g, m) = (gp[nc], mp[nc] / Float(plane))
            let (src, dst) = (dp + nc * plane, op + nc * plane)
            for i in 0..<plane { dst[i] = src[i] * g + m }
        }
        return dx
    }
}

/// Swish, y = x * sigmoid(x), keeping its input for the backward.
final class TrainSwish {
    private var input: FloatTensor?

    func forward(_ x: FloatTensor, _ ctx: TrainContext) -> FloatTensor {
        let y = ctx.pool.take(x.shape)
        let (xp, yp) = (x.pointer, y.pointer)
        parallelRanges(x.count, minPerThread: 1 << 15) { range in
            for i in range { let v = xp[i]; yp[i] = v / (1 + Foundation.exp(-v)) }
        }
        if ctx.keepForBackward { input = x }
        return y
    }

    /// dL/dx = dL/dy * s (1 + x (1 - s)), s = sigmoid(x); written over `grad`.
    func backward(_ grad: FloatTensor) -> FloatTensor {
        guard let x = input else { preconditionFailure("swish backward without forward") }
        input = nil
        let (xp, gp) = (x.pointer, grad.pointer)
        parallelRanges(x.count, minPerThread: 1 << 15) { range in
            for i in range {
                let v = xp[i]
                let s = 1 / (1 + Foundation.exp(-v))
                gp[i] *= s * (1 + v * (1 - s))
            }
        }
        return grad
    }
}
