// Families' plain descriptions as the ops' types.

import Families

extension Size3 {
    public init(_ triple: Triple) { self.init(triple.t, triple.h, triple.w) }
}

extension Pool3dConfig {
    public init(_ window: PoolWindow) {
        self.init(kernel: Size3(window.kernel), stride: Size3(window.stride), padding: Size3(window.padding))
    }
}

/// Copies a view's channels into another view of the same shape.
func copyChannels(_ x: Act, into out: Act) {
    precondition(x.shape == out.shape)
    let size = x.shape.c * x.plane
    withExtendedLifetime((x.buffer, out.buffer)) {
        for n in 0..<x.shape.n { out.sample(n).update(from: x.sample(n), count: size) }
    }
}
