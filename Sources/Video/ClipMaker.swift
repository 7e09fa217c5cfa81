// One video -> one clip tensor, PySlowFast's Kinetics pipeline in its order: temporal sampling on the
// 30 fps timeline (frame lists: its Charades rule on the listed frames), short-side scale (jitter when training), crop (random / 3 uniform positions),
// horizontal flip, /255, PCA lighting (slowfast/datasets/transform.py lighting_jitter), mean/std
// normalisation; RGB, channels first: [3, T, crop, crop] for the fast pathway and
// [3, T/alpha, crop, crop] for the slow one.

import Families
import Convert
import Foundation

public struct Clip: Sendable {
    /// Fast pathway (all T frames), CTHW float32. Single-pathway models take this one.
    public var fast: [Float]
    /// Slow pathway (T/alpha frames chosen by the config's rule), CTHW float32.
    public var slow: [Float]
    public let frames: Int
    public let slowFrames: Int
    /// Crop side.
    public let size: Int
    /// Source frame indices the fast pathway shows.
    public let sourceIndices: [Int]
    /// What was drawn (scale, crop offsets, flip, lighting), for tests and logs.
    public let augmentation: Augmentation
}

public struct Augmentation: Sendable, Equatable {
    public var scaledWidth: Int
    public var scaledHeight: Int
    public var cropX: Int
    public var cropY: Int
    public var flipped: Bool
    /// Value added to each channel (R, G, B) in 0...1 units before normalisation.
    public var lighting: [Float]
}

public struct ClipMaker: Sendable {
    public let config: ClipConfig

    public init(config: ClipConfig) { self.config = config }

    /// The clip for `view` of `source`, drawing its random choices from `rng`. `frameList`: the source is a
    /// Charades / Animal Kingdom frame-list video, sampled by PySlowFast's Charades rule on its listed frames.
    public func make(from source: FrameSource, view: ClipView, rng: inout SplitMix64, frameList: Bool = false) throws -> Clip {
        let c = config
        let info = source.info
        // Temporal position.
        let indices: [Int]
        switch view {
        case .train where frameList:
            indices = ClipSampling.charadesIndices(videoLength: info.frameCount, numFrames: c.numFrames, samplingRate: c.samplingRate,
                                                   temporalIndex: -1, views: 1, uniform: rng.nextUnit())
        case let .test(t, count, _) where frameList:
            indices = ClipSampling.charadesIndices(videoLength: info.frameCount, numFrames: c.numFrames, samplingRate: c.samplingRate,
                                                   temporalIndex: t, views: count)
        case .train:
            indices = ClipSampling.clipIndices(frameCount: info.frameCount, fps: info.fps, numFrames: c.numFrames,
                                               samplingRate: c.samplingRate, targetFPS: c.targetFPS, clipIndex: -1,
                                               numClips: 1, uniform: rng.nextUnit())
        case let .test(t, count, _):
            indices = ClipSampling.clipIndices(frameCount: info.frameCount, fps: info.fps, numFrames: c.numFrames,
                                               samplingRate: c.samplingRate, targetFPS: c.targetFPS, clipIndex: t,
                                               numClips: count)
        }
        // Short side: jittered when training, the crop size when testing.
        let shortSide: Int
        if case .train = view {
            if c.inverseUniformJitter {
                shortSide = Int((1 / rng.uniform(1 / Double(c.jitterMax), 1 / Double(c.jitterMin))).rounded())
            } else {
                shortSide = Int(rng.uniform(Double(c.jitterMin), Double(c.jitterMax)).rounded())
            }
        } else {
            shortSide = c.crop
        }
        let scaled = shortSideScaledSize(width: info.width, height: info.height, shortSide: shortSide)
        let (w, h) = (max(scaled.width, c.crop), max(scaled.height, c.crop))
        // Crop position and flip.
        var cropX: Int, cropY: Int, flip = false
        var lighting: [Float] = [0, 0, 0]
        switch view {
        case .train:
            cropY = h > c.crop ? rng.integer(0, h - c.crop) : 0     // numpy randint(0, h - size): upper bound excluded
            cropX = w > c.crop ? rng.integer(0, w - c.crop) : 0
            flip = rng.nextUnit() < c.flipProbability
            if c.lightingStd > 0 {
                let alpha = (0..<3).map { _ in rng.normal(std: c.lightingStd) }
                let rgb = (0..<3).map { r in (0..<3).reduce(0.0) { $0 + c.lightingEigenvectors[r][$1] * alpha[$1] * c.lightingEigenvalues[$1] } }
                lighting = (0..<3).map { Float(rgb[2 - $0]) }   // PySlowFast adds rgb[2 - idx] to channel idx
            }
        case let .test(_, _, spatial):
            cropY = Int((Double(h - c.crop) / 2).rounded(.up))
            cropX = Int((Double(w - c.crop) / 2).rounded(.up))
            if h > w {
                if spatial == 0 { cropY = 0 } else if spatial == 2 { cropY = h - c.crop }
            } else {
                if spatial == 0 { cropX = 0 } else if spatial == 2 { cropX = w - c.crop }
            }
        }
        let augmentation = Augmentation(scaledWidth: w, scaledHeight: h, cropX: cropX, cropY: cropY, flipped: flip, lighting: lighting)

        // Per-channel affine: (p / 255 + light - mean) / std.
        let scale = (0..<3).map { Float(1 / (255 * c.std[$0])) }
        let shift = (0..<3).map { (lighting[$0] - Float(c.mean[$0])) / Float(c.std[$0]) }
        let t = c.numFrames, s = c.crop
        let plane = s * s
        // Every element is written below (all frames, rows, columns and channels): skip the zero fill.
        var fast = [Float](unsafeUninitializedCapacity: 3 * t * plane) { _, n in n = 3 * t * plane }
        let unique = Array(Set(indices)).sorted()
        switch c.resize {
        case .swscale:
            let decoded = try source.frames(at: unique, width: w, height: h)
            let byIndex = Dictionary(uniqueKeysWithValues: zip(unique, decoded))
            fast.withUnsafeMutableBufferPointer { out in
                for (ti, index) in indices.enumerated() {
                    byIndex[index]!.pixels.withUnsafeBufferPointer { px in
                        for y in 0..<s {
                            let row = (y + cropY) * w
                            for x in 0..<s {
                                let sx = flip ? cropX + s - 1 - x : cropX + x
                                let p = (row + sx) * 3
                                let o = ti * plane + y * s + x
                                out[o] = Float(px[p]) * scale[0] + shift[0]
                                out[t * plane + o] = Float(px[p + 1]) * scale[1] + shift[1]
                                out[2 * t * plane + o] = Float(px[p + 2]) * scale[2] + shift[2]
                            }
                        }
                    }
                }
            }
        case .exact:
            let decoded = try source.frames(at: unique, width: nil, height: nil)
            var byIndex: [Int: [Float]] = [:]
            for (i, f) in zip(unique, decoded) { byIndex[i] = bilinearResizeTorch(f, width: w, height: h) }
            for (ti, index) in indices.enumerated() {
                let px = byIndex[index]!
                for y in 0..<s {
                    for x in 0..<s {
                        let sx = flip ? cropX + s - 1 - x : cropX + x
                        let p = ((y + cropY) * w + sx) * 3
                        let o = ti * plane + y * s + x
                        for ch in 0..<3 { fast[ch * t * plane + o] = px[p + ch] * scale[ch] + shift[ch] }
                    }
                }
            }
        }
        if c.reverseChannels {
            // RGB -> BGR after normalisation (PySlowFast: frames[[2, 1, 0]] after tensor_normalize).
            for k in 0..<(t * plane) { fast.swapAt(k, 2 * t * plane + k) }
        }
        let positions = ClipSampling.slowPositions(fastFrames: t, alpha: c.alpha, rule: c.slowRule)
        var slow = [Float](unsafeUninitializedCapacity: 3 * positions.count * plane) { _, n in n = 3 * positions.count * plane }
        for ch in 0..<3 {
            for (k, p) in positions.enumerated() {
                let src = (ch * t + p) * plane, dst = (ch * positions.count + k) * plane
                slow.withUnsafeMutableBufferPointer { o in
                    fast.withUnsafeBufferPointer { f in (o.baseAddress! + dst).update(from: f.baseAddress! + src, count: plane) }
                }
            }
        }
        return Clip(fast: fast, slow: slow, frames: t, slowFrames: positions.count, size: s, sourceIndices: indices,
                    augmentation: augmentation)
    }
}
