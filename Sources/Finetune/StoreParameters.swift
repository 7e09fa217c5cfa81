// The trainable network's parameter store seen through Train's `TrainableParameters`,
// so the optimizer updates the network's own buffers in place (no copies per step).

import Networks
import Train

public final class StoreParameters: TrainableParameters {
    let store: ParameterStore
    let names: [String]
    private var scratch: [Int: FloatTensor] = [:]

    public init(_ store: ParameterStore) {
        self.store = store
        self.names = store.parameterNames
    }

    public var parameterCount: Int { names.count }
    public func parameterName(at i: Int) -> String { names[i] }
    public func parameterShape(at i: Int) -> [Int] { store.value(names[i])!.shape }
    public func parameterIsTrainable(at i: Int) -> Bool { store.isTrainable(names[i]) }
    /// From the graph's parameter roles, not from the name.
    public func parameterIsNorm(at i: Int) -> Bool { store.role(names[i])?.isNorm ?? false }

    public func withParameter<R>(at i: Int, _ body: (UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        let v = store.value(names[i])!
        // Frozen parameters have no gradient buffer; the optimizer skips them, but hand it zeros if asked.
        let g = store.gradient(names[i]) ?? scratch[i] ?? {
            let z = FloatTensor(shape: v.shape, repeating: 0)
            scratch[i] = z
            return z
        }()
        return try body(UnsafeMutableBufferPointer(start: v.pointer, count: v.count), UnsafeMutableBufferPointer(start: g.pointer, count: g.count))
    }
}
