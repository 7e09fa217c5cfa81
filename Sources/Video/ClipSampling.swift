// Which frames a clip takes: PySlowFast's temporal sampling (decoder.get_start_end_idx +
// decoder.temporal_sampling) on a 30 fps timeline for videos and frame folders, its Charades rule
// (datasets/charades.py get_seq_frames) on the listed frames for Charades / Animal Kingdom frame lists,
// and the slow pathway's subset (utils.pack_pathway_output: torch.linspace(0, T-1, T // alpha).long()).

import Foundation

/// How the slow pathway picks its T/alpha frames out of the fast pathway's T.
public enum SlowFrameRule: String, Codable, Sendable, CaseIterable {
    /// PySlowFast: `linspace(0, T-1, T/alpha)` truncated (T=32: 0,4,8,13,17,22,26,31).
    case pyslowfast
    /// mmaction2 / pytorchvideo pipelines: every alpha-th frame (0, alpha, 2 alpha, ...).
    case stride
}

public enum ClipSampling {
    /// `torch.linspace(start, end, steps)` in float32 as ATen's CPU kernel computes it: the first half
    /// counts up from `start`, the second half down from `end`, each value one fused multiply-add (GCC
    /// contracts `start + step * i` when it builds ATen). Checked bit for bit against torch 2.15 by SamplingTests.
    public static func torchLinspace(_ start: Double, _ end: Double, _ steps: Int) -> [Float] {
        guard steps > 1 else { return steps == 1 ? [Float(start)] : [] }
        let s = Float(start), e = Float(end)
        let step = (e - s) / Float(steps - 1)
        let halfway = steps / 2
        return (0..<steps).map { i in
            i < halfway ? s.addingProduct(step, Float(i)) : e.addingProduct(-step, Float(steps - i - 1))
        }
    }

    /// PySlowFast `get_start_end_idx`: a window of `clipSize` source frames in a video of `videoSize`.
    /// `clipIndex` -1 draws the start uniformly in [0, delta] from `uniform` (in [0, 1)); otherwise view
    /// `clipIndex` of `numClips` evenly spaced ones (`delta * clipIndex / numClips`).
    public static func startEnd(videoSize: Int, clipSize: Double, clipIndex: Int, numClips: Int,
                                uniform: Double = 0) -> (start: Double, end: Double) {
        let delta = max(Double(videoSize) - clipSize, 0)
        let start = clipIndex == -1 ? delta * uniform : delta * Double(clipIndex) / Double(max(numClips, 1))
        return (start, start + clipSize - 1)
    }

    /// PySlowFast `temporal_sampling`: `numSamples` indices from linspace(start, end), clamped, truncated.
    public static func temporalIndices(start: Double, end: Double, numSamples: Int, frameCount: Int) -> [Int] {
        torchLinspace(start, end, numSamples).map { Int(min(max($0, 0), Float(frameCount - 1))) }
    }

    /// Source-frame indices of a clip of `numFrames` frames `samplingRate` apart on a `targetFPS`
    /// timeline, from a video of `frameCount` frames at `fps` (the window spans
    /// `samplingRate * numFrames / targetFPS` seconds, as PySlowFast decodes Kinetics).
    public static func clipIndices(frameCount: Int, fps: Double, numFrames: Int, samplingRate: Int, targetFPS: Double,
                                   clipIndex: Int, numClips: Int, uniform: Double = 0) -> [Int] {
        let clipSize = Double(samplingRate * numFrames) / targetFPS * fps
        let (s, e) = startEnd(videoSize: frameCount, clipSize: clipSize, clipIndex: clipIndex, numClips: numClips, uniform: uniform)
        return temporalIndices(start: s, end: e, numSamples: numFrames, frameCount: frameCount)
    }

    /// PySlowFast's Charades rule (`get_seq_frames`), on the frames of a frame list in their listed order:
    /// a clip spans `(numFrames - 1) * samplingRate + 1` listed frames, every `samplingRate`-th taken.
    /// `temporalIndex` -1 (training): the start is `random.randint(lo, hi)` with lo..hi = 0...L-clip, or
    /// L-clip...0 when the clip is longer than the video, the draw made explicit as `uniform` in [0, 1)
    /// (start = lo + floor(uniform * (hi - lo + 1))). Otherwise test view `temporalIndex` of `views`:
    /// start = round(gap * index) with gap = max(L - clip, 0) / (views - 1), Python's round (half to even);
    /// with one view PySlowFast divides by zero, sfnet takes the middle (round(max(L - clip, 0) / 2)).
    /// Indices are clamped to 0...L-1. (`utils.get_random_sampling_rate` returns SAMPLING_RATE unless
    /// multigrid's LONG_CYCLE_SAMPLING_RATE is set, which sfnet does not implement.)
    public static func charadesIndices(videoLength: Int, numFrames: Int, samplingRate: Int, temporalIndex: Int,
                                       views: Int, uniform: Double = 0) -> [Int] {
        let clipLength = (numFrames - 1) * samplingRate + 1
        let start: Int
        if temporalIndex == -1 {
            let (lo, hi) = clipLength > videoLength ? (videoLength - clipLength, 0) : (0, videoLength - clipLength)
            start = lo + min(Int((uniform * Double(hi - lo + 1)).rounded(.down)), hi - lo)
        } else if views > 1 {
            let gap = Double(max(videoLength - clipLength, 0)) / Double(views - 1)
            start = Int((gap * Double(temporalIndex)).rounded(.toNearestOrEven))
        } else {
            start = Int((Double(max(videoLength - clipLength, 0)) / 2).rounded(.toNearestOrEven))
        }
        return (0..<numFrames).map { max(min(start + $0 * samplingRate, videoLength - 1), 0) }
    }

    /// Positions (0..<T) of the slow pathway's frames within the fast pathway's T.
    public static func slowPositions(fastFrames t: Int, alpha: Int, rule: SlowFrameRule) -> [Int] {
        let n = max(t / max(alpha, 1), 1)
        switch rule {
        case .pyslowfast: return torchLinspace(0, Double(t - 1), n).map { Int($0) }
        case .stride: return (0..<n).map { $0 * alpha }
        }
    }
}
