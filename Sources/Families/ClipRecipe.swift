// The clip a family's preset was trained on: frames, sampling rate, training crop and scale jitter,
// test crop (PySlowFast's X3D_XS/S/M/L configs: DATA.NUM_FRAMES, SAMPLING_RATE, TRAIN_CROP_SIZE,
// TRAIN_JITTER_SCALES, TEST_CROP_SIZE). Fine-tuning takes them as its defaults for such a preset.

import Foundation

public struct ClipRecipe: Equatable, Sendable {
    public var frames: Int
    public var samplingRate: Int
    public var trainCrop: Int
    public var jitter: (min: Int, max: Int)
    public var testCrop: Int

    public static func == (a: ClipRecipe, b: ClipRecipe) -> Bool {
        (a.frames, a.samplingRate, a.trainCrop, a.jitter.min, a.jitter.max, a.testCrop)
            == (b.frames, b.samplingRate, b.trainCrop, b.jitter.min, b.jitter.max, b.testCrop)
    }

    /// One line: "13 frames at sampling rate 6, crop 160, jitter [182, 228], test crop 182".
    public var summary: String {
        "\(frames) frames at sampling rate \(samplingRate), crop \(trainCrop), jitter [\(jitter.min), \(jitter.max)], test crop \(testCrop)"
    }
}

extension ArchConfig {
    /// The clip the preset `name` was trained on, when the family has its own (X3D); nil for the SlowFast
    /// family, whose defaults are the study's recipe.
    public static func clipRecipe(preset name: String) -> ClipRecipe? {
        switch name {
        case "x3d-xs": return ClipRecipe(frames: 4, samplingRate: 12, trainCrop: 160, jitter: (182, 228), testCrop: 182)
        case "x3d-s": return ClipRecipe(frames: 13, samplingRate: 6, trainCrop: 160, jitter: (182, 228), testCrop: 182)
        case "x3d-m": return ClipRecipe(frames: 16, samplingRate: 5, trainCrop: 224, jitter: (256, 320), testCrop: 256)
        case "x3d-l": return ClipRecipe(frames: 16, samplingRate: 5, trainCrop: 312, jitter: (356, 446), testCrop: 356)
        // VideoMAE's Kinetics fine-tuning (16 frames at sampling rate 4) and TimeSformer's (8 frames at 32); both crop 224
        // of a short side jittered in [256, 320] and test on 224.
        case "videomae-s", "videomae-b": return ClipRecipe(frames: 16, samplingRate: 4, trainCrop: 224, jitter: (256, 320), testCrop: 224)
        case "timesformer-b": return ClipRecipe(frames: 8, samplingRate: 32, trainCrop: 224, jitter: (256, 320), testCrop: 224)
        default: return nil
        }
    }
}
