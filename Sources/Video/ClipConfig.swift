// Clip sampling and augmentation settings: the study's defaults (DESIGN.md "Training", SLOWFAST.md
// "Data constants"), every one overridable.

/// How frames are resized.
public enum ResizeMethod: String, Codable, Sendable, CaseIterable {
    /// libswscale SWS_BILINEAR, fused with the YUV -> RGB conversion (fast; see Resize.swift for how it differs).
    case swscale
    /// PySlowFast's `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` on float frames.
    case exact
}

public struct ClipConfig: Codable, Sendable, Equatable {
    /// Frames of the fast pathway (T). The study: 8; the K400 checkpoints: 32.
    public var numFrames = 8
    /// Distance between sampled frames on the target timeline.
    public var samplingRate = 2
    /// The timeline clips are sampled on (PySlowFast: videos treated as 30 fps).
    public var targetFPS = 30.0
    /// Rate of frame folders (Charades / Animal Kingdom frame lists), which carry no timestamps.
    public var folderFPS = 30.0
    /// Slow pathway gets T / alpha frames.
    public var alpha = 4
    /// Which frames the slow pathway takes.
    public var slowRule = SlowFrameRule.pyslowfast
    /// Training short-side scale jitter range (pixels).
    public var jitterMin = 256
    public var jitterMax = 340
    /// Draw the scale as 1 / uniform(1/max, 1/min) (PySlowFast INVERSE_UNIFORM_SAMPLING).
    public var inverseUniformJitter = false
    /// Square crop side (train: random position; test: short side scaled to it, 3 positions).
    public var crop = 256
    /// Horizontal flip probability at training time.
    public var flipProbability = 0.5
    /// PCA lighting jitter std (0 disables); eigenvalues and eigenvectors as PySlowFast's config lists them.
    public var lightingStd = 0.1
    public var lightingEigenvalues: [Double] = [0.225, 0.224, 0.229]
    public var lightingEigenvectors: [[Double]] = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]
    /// Per-channel (RGB) normalisation after /255.
    public var mean: [Double] = [0.45, 0.45, 0.45]
    public var std: [Double] = [0.225, 0.225, 0.225]
    /// Hand the network BGR planes (PySlowFast DATA.REVERSE_INPUT_CHANNEL): channels reversed after
    /// normalisation, which (like lighting) is applied in RGB order.
    public var reverseChannels = false
    public var resize = ResizeMethod.swscale
    /// Test-time views: temporal positions x spatial crops (1 or 3).
    public var testTemporalViews = 10
    public var testSpatialCrops = 3

    public init() {}

    /// The study's defaults with `numFrames` fast frames.
    public static func study(frames: Int = 8) -> ClipConfig { var c = ClipConfig(); c.numFrames = frames; return c }

    public var slowFrames: Int { ClipSampling.slowPositions(fastFrames: numFrames, alpha: alpha, rule: slowRule).count }

    /// Problems with the settings, as sentences (empty when usable).
    public func problems() -> [String] {
        var p: [String] = []
        if numFrames < 1 || numFrames > 512 { p.append("frames \(numFrames): expected 1...512") }
        if samplingRate < 1 { p.append("sampling rate \(samplingRate): expected >= 1") }
        if !(targetFPS > 0) || !(folderFPS > 0) { p.append("frame rates must be positive") }
        if alpha < 1 || alpha > numFrames { p.append("alpha \(alpha): expected 1...\(numFrames)") }
        if crop < 8 || crop > 2048 { p.append("crop \(crop): expected 8...2048") }
        if jitterMin < crop || jitterMax < jitterMin || jitterMax > 4096 {
            p.append("jitter [\(jitterMin), \(jitterMax)]: expected crop (\(crop)) <= min <= max <= 4096")
        }
        if !(0...1).contains(flipProbability) { p.append("flip probability \(flipProbability): expected 0...1") }
        if lightingStd < 0 || lightingEigenvalues.count != 3 || lightingEigenvectors.count != 3 || lightingEigenvectors.contains(where: { $0.count != 3 }) {
            p.append("lighting: std >= 0, 3 eigenvalues and a 3x3 eigenvector matrix expected")
        }
        if mean.count != 3 || std.count != 3 || std.contains(where: { !($0 > 0) }) { p.append("mean/std: 3 values each, std > 0") }
        if testTemporalViews < 1 || ![1, 3].contains(testSpatialCrops) { p.append("test views: temporal >= 1, spatial 1 or 3") }
        return p
    }
}

/// Which view of a video a clip is.
public enum ClipView: Sendable, Equatable, Hashable {
    /// Random temporal position, scale jitter, random crop, flip, lighting.
    case train
    /// Temporal view `temporal` of `temporalCount` evenly spaced, spatial crop `spatial` (0 left/top,
    /// 1 centre, 2 right/bottom; with one spatial crop, the centre), short side scaled to the crop.
    case test(temporal: Int, temporalCount: Int, spatial: Int)

    /// Every test view of one video, temporal-major (PySlowFast's order).
    public static func testViews(_ config: ClipConfig) -> [ClipView] {
        (0..<config.testTemporalViews).flatMap { t in
            (0..<config.testSpatialCrops).map { s in
                ClipView.test(temporal: t, temporalCount: config.testTemporalViews, spatial: config.testSpatialCrops == 1 ? 1 : s)
            }
        }
    }
}
