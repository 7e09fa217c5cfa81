// Wall-time accounting of forward passes: per op kind (convolutions by kernel
// class, pooling, fusion, head), per stage and per layer, accumulated over as
// many passes as are run with the same profile.

import Foundation

/// Accumulates wall time of forward passes. Pass one to `EvalNetwork.forward`.
public final class ForwardProfile: @unchecked Sendable {
    public struct Entry: Sendable {
        public var seconds: Double = 0
        public var calls: Int = 0
        public var multiplyAdds: Int = 0
    }

    /// Op kind -> time ("conv 1x1x1", "conv Tx1x1", "conv 1x3x3", "conv stem", "pool", "fuse/concat", "head", ...).
    public private(set) var kinds: [String: Entry] = [:]
    /// Stage ("s1" ... "s5", "head") -> time.
    public private(set) var stages: [String: Entry] = [:]
    /// Layer (canonical module name) -> time.
    public private(set) var layers: [String: Entry] = [:]
    /// Forward passes recorded.
    public private(set) var passes = 0
    /// Wall time of whole passes.
    public private(set) var totalSeconds: Double = 0
    private var kindOrder: [String] = [], stageOrder: [String] = []
    private let lock = NSLock()

    public init() {}

    /// Adds one timed op.
    public func record(kind: String, stage: String, layer: String, seconds: Double, multiplyAdds: Int = 0) {
        lock.lock()
        defer { lock.unlock() }
        if kinds[kind] == nil { kindOrder.append(kind) }
        if stages[stage] == nil { stageOrder.append(stage) }
        for key in [0, 1, 2] {
            let name = key == 0 ? kind : key == 1 ? stage : layer
            var e = (key == 0 ? kinds[name] : key == 1 ? stages[name] : layers[name]) ?? Entry()
            e.seconds += seconds
            e.calls += 1
            e.multiplyAdds += multiplyAdds
            switch key {
            case 0: kinds[name] = e
            case 1: stages[name] = e
            default: layers[name] = e
            }
        }
    }

    func finishPass(seconds: Double) {
        lock.lock()
        passes += 1
        totalSeconds += seconds
        lock.unlock()
    }

    /// Clears everything.
    public func reset() {
        lock.lock()
        (kinds, stages, layers, passes, totalSeconds, kindOrder, stageOrder) = ([:], [:], [:], 0, 0, [], [])
        lock.unlock()
    }

    /// A table per kind, per stage and the slowest layers; times are per pass.
    public func report(topLayers: Int = 12) -> String {
        lock.lock()
        defer { lock.unlock() }
        let n = Double(max(passes, 1))
        let total = totalSeconds / n
        func line(_ name: String, _ e: Entry) -> String {
            let s = e.seconds / n
            let share = total > 0 ? 100 * s / total : 0
            let gflops = e.multiplyAdds > 0 && e.seconds > 0 ? String(format: "%7.1f", 2 * Double(e.multiplyAdds) / e.seconds / 1e9) : "       "
            return name.padding(toLength: 34, withPad: " ", startingAt: 0)
                + String(format: "%9.2f ms %6.1f%%  ", s * 1000, share) + gflops + " GFLOP/s"
        }
        var out = [String(format: "forward: %.2f ms per pass over %d pass%@", total * 1000, passes, passes == 1 ? "" : "es")]
        out.append("by op kind:")
        for k in kindOrder.sorted(by: { kinds[$0]!.seconds > kinds[$1]!.seconds }) { out.append("  " + line(k, kinds[k]!)) }
        let accounted = kinds.values.reduce(0) { $0 + $1.seconds } / n
        out.append("  " + "(unaccounted)".padding(toLength: 34, withPad: " ", startingAt: 0)
                   + String(format: "%9.2f ms", (total - accounted) * 1000))
        out.append("by stage:")
        for s in stageOrder { out.append("  " + line(s, stages[s]!)) }
        out.append("slowest layers:")
        for l in layers.keys.sorted(by: { layers[$0]!.seconds > layers[$1]!.seconds }).prefix(topLayers) {
            out.append("  " + line(l, layers[l]!))
        }
        return out.joined(separator: "\n")
    }
}

/// Times `body` into `profile` when there is one.
@inline(__always)
func timed<T>(_ profile: ForwardProfile?, kind: String, stage: String, layer: String, macs: Int = 0,
              _ body: () throws -> T) rethrows -> T {
    guard let profile else { return try body() }
    let start = DispatchTime.now().uptimeNanoseconds
    let result = try body()
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    profile.record(kind: kind, stage: stage, layer: layer, seconds: seconds, multiplyAdds: macs)
    return result
}
