// Seeded randomness for clips: every (seed, epoch, sample, view) gets its own SplitMix64 stream, so a
// clip's augmentation does not depend on which thread made it or in what order.

import Families
import Convert
import Foundation

public enum ClipRandom {
    /// The generator for one clip.
    public static func generator(seed: UInt64, epoch: Int, sample: Int, view: Int = 0) -> SplitMix64 {
        var mix = SplitMix64(seed: seed ^ 0x5646_4E45_5456_4944)   // "VIDEOTNF"-ish salt: distinct from weight init streams
        var state = mix.next()
        for value in [UInt64(bitPattern: Int64(epoch)), UInt64(bitPattern: Int64(sample)), UInt64(bitPattern: Int64(view))] {
            var g = SplitMix64(seed: state ^ value &* 0x9E37_79B9_7F4A_7C15)
            state = g.next()
        }
        return SplitMix64(seed: state)
    }
}

extension SplitMix64 {
    /// Uniform in [low, high).
    mutating func uniform(_ low: Double, _ high: Double) -> Double { low + (high - low) * nextUnit() }

    /// Integer in [low, high) (numpy `randint`); `low` when the range is empty.
    mutating func integer(_ low: Int, _ high: Int) -> Int {
        high <= low ? low : low + Int(next() % UInt64(high - low))
    }

    /// A N(0, std) draw (Box-Muller).
    mutating func normal(std: Double) -> Double {
        let u1 = 1 - nextUnit(), u2 = nextUnit()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2) * std
    }
}
