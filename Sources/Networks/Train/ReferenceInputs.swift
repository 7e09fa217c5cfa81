// The network inputs stored in a PyTorch reference file (fixtures/generate*.py):
// `pixels.fast` / `pixels.x` as uint8 (normalised (x/255 - 0.45)/0.225, the slow
// pathway's frames picked by PySlowFast's linspace rule) or float `input.*`.

import Families
import Formats

public enum ReferenceInputs {
    public static func load(_ ref: Checkpoint, config: ArchConfig) throws -> [FloatTensor] {
        func normalized(_ t: Formats.Tensor) -> FloatTensor {
            let bytes = [UInt8](t.data.raw)
            return FloatTensor(shape: t.shape, values: bytes.map { Float((Double($0) / 255 - 0.45) / 0.225) })
        }
        if let x = ref.tensors["pixels.x"] { return [normalized(x)] }
        if let fast = ref.tensors["pixels.fast"] {
            let f = normalized(fast)
            let s = f.shape5D
            let slowT = s.t / config.alpha
            let slow = FloatTensor(uninitialized: [s.n, s.c, slowT, s.h, s.w])
            let frame = s.h * s.w
            for nc in 0 ..< (s.n * s.c) {
                for i in 0 ..< slowT {
                    // floor(linspace(0, T - 1, T / alpha)[i])
                    let src = slowT == 1 ? 0 : Int((Double(i) * Double(s.t - 1) / Double(slowT - 1)).rounded(.down))
                    (slow.pointer + (nc * slowT + i) * frame).update(from: f.pointer + (nc * s.t + src) * frame, count: frame)
                }
            }
            return [slow, f]
        }
        let names = config.pathways == 2 ? ["input.slow", "input.fast"] : ["input.x"]
        return try names.map { n in
            guard let t = ref.tensors[n] else { throw ModelError.badInput("the reference holds no \(n) (nor pixels.*)") }
            let c = DTypeCast.cast(t, to: .f32)
            let out = FloatTensor(uninitialized: c.shape)
            withExtendedLifetime(c.data.owner) {   // byte copy: the entry may not be 4-byte aligned
                if c.byteCount > 0, let src = c.data.raw.baseAddress {
                    UnsafeMutableRawPointer(out.pointer).copyMemory(from: src, byteCount: c.byteCount)
                }
            }
            return out
        }
    }
}
