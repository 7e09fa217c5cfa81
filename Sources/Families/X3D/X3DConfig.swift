// X3D (Feichtenhofer, CVPR 2020) as data: the fields PySlowFast's X3D config expands
// (X3D.WIDTH_FACTOR, DEPTH_FACTOR, BOTTLENECK_FACTOR, DIM_C1, DIM_C5, SE ratio, channel-wise
// 3x3x3, Swish inside the block, BN_LIN5, SCALE_RES2) and the widths and depths they imply,
// computed as PySlowFast's video_model_builder.X3D and operators.SE round them.

import Foundation

/// The X3D-specific part of an `ArchConfig` (`"model": "x3d"`).
public struct X3DConfig: Codable, Equatable, Sendable {
    /// Channel multiplier of every stage (X3D.WIDTH_FACTOR; 2.0 for XS, S, M, L).
    public var widthFactor: Double
    /// Block-count multiplier of the stages (X3D.DEPTH_FACTOR; 2.2 for XS, S, M; 5.0 for L).
    public var depthFactor: Double
    /// Inner width of a block over its output width (X3D.BOTTLENECK_FACTOR, 2.25).
    public var bottleneckFactor: Double
    /// Stem width before the width factor (X3D.DIM_C1, 12).
    public var dimC1: Int
    /// Width of the head's `lin_5` (X3D.DIM_C5, 2048).
    public var dimC5: Int
    /// Squeeze-excitation ratio on every other block (0.0625; 0 turns SE off).
    public var seRatio: Double
    /// Channel-wise (depthwise) 3x3x3 convolutions in the blocks (X3D.CHANNELWISE_3x3x3).
    public var channelwise: Bool
    /// Swish after the block's 3x3x3 (true) or ReLU.
    public var swishInner: Bool
    /// BatchNorm after `lin_5` (X3D.BN_LIN5).
    public var bnLin5: Bool
    /// Widen res2 too (X3D.SCALE_RES2).
    public var scaleRes2: Bool
    /// Temporal kernel of the stem's channel-wise conv (5) and of the blocks' 3x3x3 (3).
    public var stemTemporalKernel: Int
    public var blockTemporalKernel: Int

    enum CodingKeys: String, CodingKey {
        case widthFactor = "width_factor", depthFactor = "depth_factor", bottleneckFactor = "bottleneck_factor"
        case dimC1 = "dim_c1", dimC5 = "dim_c5", seRatio = "se_ratio", channelwise, swishInner = "swish_inner"
        case bnLin5 = "bn_lin5", scaleRes2 = "scale_res2"
        case stemTemporalKernel = "stem_temporal_kernel", blockTemporalKernel = "block_temporal_kernel"
    }

    public init(widthFactor: Double = 2.0, depthFactor: Double = 2.2, bottleneckFactor: Double = 2.25, dimC1: Int = 12,
                dimC5: Int = 2048, seRatio: Double = 0.0625, channelwise: Bool = true, swishInner: Bool = true,
                bnLin5: Bool = false, scaleRes2: Bool = false, stemTemporalKernel: Int = 5, blockTemporalKernel: Int = 3) {
        self.widthFactor = widthFactor
        self.depthFactor = depthFactor
        self.bottleneckFactor = bottleneckFactor
        self.dimC1 = dimC1
        self.dimC5 = dimC5
        self.seRatio = seRatio
        self.channelwise = channelwise
        self.swishInner = swishInner
        self.bnLin5 = bnLin5
        self.scaleRes2 = scaleRes2
        self.stemTemporalKernel = stemTemporalKernel
        self.blockTemporalKernel = blockTemporalKernel
    }

    /// Blocks of res2..res5 before the depth factor, and each stage's spatial stride.
    static let blockBasis = [1, 2, 5, 3]
    static let stageStrides = [2, 2, 2, 2]

    /// PySlowFast's `round_width`: width x multiplier to a multiple of 8 (at least 8), never below 90%.
    public static func roundWidth(_ width: Int, _ multiplier: Double, minWidth: Int = 8, divisor: Int = 8) -> Int {
        guard multiplier != 0 else { return width }
        let w = Double(width) * multiplier
        var out = max(minWidth, Int(w + Double(divisor) / 2) / divisor * divisor)
        if Double(out) < 0.9 * w { out += divisor }
        return out
    }

    /// Stem output channels (dim_c1 x width factor).
    public var stemChannels: Int { Self.roundWidth(dimC1, widthFactor) }

    /// Output channels of res2..res5.
    public var stageOutChannels: [Int] {
        var dims: [Int] = []
        var base = scaleRes2 ? Self.roundWidth(dimC1, 2.0) : dimC1
        for _ in 0 ..< 4 {
            dims.append(Self.roundWidth(base, widthFactor))
            base = Self.roundWidth(base, 2.0)
        }
        return dims
    }

    /// Inner (bottleneck) channels of res2..res5: int(bottleneck_factor x out).
    public var stageInnerChannels: [Int] { stageOutChannels.map { Int(bottleneckFactor * Double($0)) } }

    /// Blocks of res2..res5: ceil(depth_factor x basis).
    public var stageDepths: [Int] { Self.blockBasis.map { Int((depthFactor * Double($0)).rounded(.up)) } }

    /// The squeeze-excitation bottleneck width of a block with `channels` inner channels (operators.SE).
    public func seChannels(_ channels: Int) -> Int { Self.roundWidth(channels, seRatio) }

    func problems() -> [String] {
        var p: [String] = []
        if !(0.1 ... 16).contains(widthFactor) { p.append("x3d width_factor must be in 0.1...16, is \(widthFactor)") }
        if !(0.1 ... 32).contains(depthFactor) { p.append("x3d depth_factor must be in 0.1...32, is \(depthFactor)") }
        if !(0.25 ... 16).contains(bottleneckFactor) { p.append("x3d bottleneck_factor must be in 0.25...16, is \(bottleneckFactor)") }
        if !(1 ... 1024).contains(dimC1) { p.append("x3d dim_c1 must be in 1...1024, is \(dimC1)") }
        if !(1 ... 65536).contains(dimC5) { p.append("x3d dim_c5 must be in 1...65536, is \(dimC5)") }
        if !(0 ... 1).contains(seRatio) { p.append("x3d se_ratio must be in [0, 1], is \(seRatio)") }
        for (name, k) in [("stem_temporal_kernel", stemTemporalKernel), ("block_temporal_kernel", blockTemporalKernel)]
        where k < 1 || k % 2 == 0 || k > 31 {
            p.append("x3d \(name) must be odd and in 1...31, is \(k)")
        }
        return p
    }
}
