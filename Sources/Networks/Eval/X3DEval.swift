// The eval-mode pieces X3D adds to the executor: Swish in place on an activation view and
// squeeze-excitation on a view (per sample: channel means, fc1 + ReLU, fc2 + sigmoid, scale).

import Foundation

/// x * sigmoid(x), in place, on every element of a view (Ops/Swish.swift's vectorised map per sample).
func swishInPlace(_ a: Act) {
    let size = a.shape.c * a.plane
    withExtendedLifetime(a.buffer) {
        for n in 0..<a.shape.n { swishMap(size, a.sample(n), nil, a.sample(n)) }
    }
}

/// Squeeze-excitation with its weights as [reduced, C] and [C, reduced] matrices.
struct EvalSqueezeExcite {
    let name: String
    /// [r, C], [r], [C, r], [C].
    let w1: FloatTensor, b1: FloatTensor, w2: FloatTensor, b2: FloatTensor

    init(name: String, fc1Weight: FloatTensor, fc1Bias: FloatTensor, fc2Weight: FloatTensor, fc2Bias: FloatTensor) {
        let (r, c) = (fc1Weight.shape[0], fc1Weight.shape[1])
        self.name = name
        w1 = FloatTensor(shape: [r, c], copying: fc1Weight.pointer)
        w2 = FloatTensor(shape: [c, r], copying: fc2Weight.pointer)
        (b1, b2) = (fc1Bias, fc2Bias)
    }

    /// The fused form after a channel-wise conv that wrote the per-(n, c) sums of `y` into `sums`
    /// ([N, C]): y = swish(y * gate) (or y * gate, then ReLU when `swish` is false) in one sweep.
    func apply(_ y: Act, sums: FloatTensor, swish: Bool) {
        let (n, c, plane) = (y.shape.n, y.shape.c, y.plane)
        precondition(sums.count == n * c)
        let means = FloatTensor(uninitialized: [n, c])
        let inv = 1 / Double(plane)
        for i in 0..<(n * c) { means.pointer[i] = Float(Double(sums.pointer[i]) * inv) }
        let hidden = reluForward(linearForward(means, weight: w1, bias: b1), inPlace: true)
        let gate = sigmoidForward(linearForward(hidden, weight: w2, bias: b2))
        withExtendedLifetime((y.buffer, gate)) {
            let planes = n * c
            dynamicParts(planes, grain: max((1 << 15) / max(1, plane * 8), planes / (8 * Threading.threads)),
                         maxParts: Threading.threads) { _, range in
                for nc in range {
                    let p = y.sample(nc / c) + (nc % c) * plane
                    let g = gate.pointer[nc]
                    if swish {
                        swishSpan(p, p, count: plane, scale: g)
                    } else {
                        for i in 0..<plane { p[i] = max(p[i] * g, 0) }
                    }
                }
            }
        }
    }

    /// Scales each channel of `y` by sigmoid(fc2(relu(fc1(mean over (T, H, W))))), per sample.
    func apply(_ y: Act) {
        let (n, c, plane) = (y.shape.n, y.shape.c, y.plane)
        let means = FloatTensor(uninitialized: [n, c])
        withExtendedLifetime(y.buffer) {
            parallelFor(n * c, work: plane) { nc in
                let p = y.sample(nc / c) + (nc % c) * plane
                var sum: Double = 0
                for i in 0..<plane { sum += Double(p[i]) }
                means.pointer[nc] = Float(sum / Double(plane))
            }
            let hidden = reluForward(linearForward(means, weight: w1, bias: b1), inPlace: true)
            let gate = sigmoidForward(linearForward(hidden, weight: w2, bias: b2))
            parallelFor(n * c, work: plane) { nc in
                let p = y.sample(nc / c) + (nc % c) * plane
                let g = gate.pointer[nc]
                for i in 0..<plane { p[i] *= g }
            }
        }
    }
}

/// max(x, 0), in place, on every element of a view.
func reluInPlace(_ a: Act) {
    withExtendedLifetime(a.buffer) {
        parallelFor(a.shape.n * a.shape.c, work: a.plane) { nc in
            let p = a.sample(nc / a.shape.c) + (nc % a.shape.c) * a.plane
            for i in 0..<a.plane { p[i] = max(p[i], 0) }
        }
    }
}
