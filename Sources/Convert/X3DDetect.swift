// Derives an X3D config from canonical (PySlowFast) tensor names and shapes: stage depths from
// the block keys, the width factor and the stem width from the channels (searched over PySlowFast's
// round_width), the bottleneck factor from the inner widths, SE from the se keys, lin_5 from the
// head. The clip (frames, crop) is not in the weights: X3D-XS, -S and -M share every shape.

import Families
import Foundation
import Formats

extension ArchDetect {
    /// Whether the names are X3D's (the stem's 1x3x3 `conv_xy`).
    static func looksLikeX3D(_ shapes: [String: [Int]]) -> Bool { shapes["s1.pathway0_stem.conv_xy.weight"] != nil }

    static func detectX3D(shapes: [String: [Int]], numClassesFallback: Int?) throws -> ArchDetection {
        var notes: [String] = []
        func require(_ key: String, rank: Int) throws -> [Int] {
            guard let shape = shapes[key] else { throw ConvertError.archUndetectable("no tensor \(key)") }
            guard shape.count == rank else {
                throw ConvertError.archUndetectable("\(key) has shape \(Tensor.shapeString(shape)), expected \(rank) dimensions")
            }
            return shape
        }
        let stem = try require("s1.pathway0_stem.conv_xy.weight", rank: 5)
        let stemConv = try require("s1.pathway0_stem.conv.weight", rank: 5)
        var depths = [0, 0, 0, 0]
        let blockKey = try! NSRegularExpression(pattern: #"^s([2-5])\.pathway0_res(\d+)\."#)
        for key in shapes.keys {
            guard let m = blockKey.firstMatch(in: key, range: NSRange(key.startIndex..., in: key)),
                  let s = Range(m.range(at: 1), in: key).flatMap({ Int(key[$0]) }),
                  let i = Range(m.range(at: 2), in: key).flatMap({ Int(key[$0]) }) else { continue }
            depths[s - 2] = max(depths[s - 2], i + 1)
        }
        if let empty = depths.firstIndex(of: 0) { throw ConvertError.archUndetectable("no blocks for res\(empty + 2)") }
        let outs = try (2 ... 5).map { try require("s\($0).pathway0_res0.branch2.c.weight", rank: 5)[0] }
        let inners = try (2 ... 5).map { try require("s\($0).pathway0_res0.branch2.a.weight", rank: 5)[0] }
        let b = try require("s2.pathway0_res0.branch2.b.weight", rank: 5)
        let lin5 = try require("head.lin_5.weight", rank: 5)

        // Width: the (dim_c1, width factor, scale_res2) whose round_width gives these channels; without SCALE_RES2
        // (PySlowFast's default) first, so that equivalent readings resolve the way the published ones are written.
        var found: X3DConfig?
        search: for scale in [false, true] {
            for dimC1 in [12, 8, 16, 24, 32] {
                for step in 1 ... 64 {
                    var x = X3DConfig(widthFactor: Double(step) * 0.25, dimC1: dimC1, scaleRes2: scale)
                    if x.stemChannels == stem[0] && x.stageOutChannels == outs {
                        x.bottleneckFactor = Double(inners[0]) / Double(outs[0])
                        found = x
                        break search
                    }
                }
            }
        }
        guard var x = found else {
            throw ConvertError.archUndetectable("no X3D width factor gives stem \(stem[0]) and stage widths \(outs) (PySlowFast's round_width)")
        }
        if x.stageInnerChannels != inners {
            // PySlowFast's int(factor x out) with the published 2.25 first, else the ratio of res2.
            x.bottleneckFactor = 2.25
            if x.stageInnerChannels != inners {
                throw ConvertError.archUndetectable("inner widths \(inners) are no bottleneck factor of the stage widths \(outs)")
            }
        }
        // Depth: the smallest factor (in 0.1 steps) whose ceil(factor x [1, 2, 5, 3]) gives these depths.
        // Depth: the published factors and whole numbers first, then the smallest in 0.1 steps, whose
        // ceil(factor x [1, 2, 5, 3]) gives these depths.
        let factors = [2.2, 5.0] + (1 ... 32).map(Double.init) + (1 ... 320).map { Double($0) / 10 }
        guard let depthFactor = factors.first(where: { X3DConfig(depthFactor: $0).stageDepths == depths }) else {
            throw ConvertError.archUndetectable("stage depths \(depths) are no X3D depth factor of [1, 2, 5, 3]")
        }
        x.depthFactor = depthFactor
        x.channelwise = b[1] == 1
        x.stemTemporalKernel = stemConv[2]
        x.blockTemporalKernel = b[2]
        x.dimC5 = lin5[0]
        x.bnLin5 = shapes["head.lin_5_bn.weight"] != nil
        if let fc1 = shapes["s2.pathway0_res0.branch2.se.fc1.weight"] {
            let reduced = fc1[0]
            // The published ratio first, then the simplest ratio PySlowFast's round_width maps to this width.
            let ratios = [0.0625] + (1 ... 64).map { Double($0) / 64 }
            guard let ratio = ratios.first(where: { X3DConfig.roundWidth(inners[0], $0) == reduced }) else {
                throw ConvertError.archUndetectable("SE width \(reduced) of \(inners[0]) channels is no ratio PySlowFast rounds to")
            }
            x.seRatio = ratio
        } else {
            x.seRatio = 0
        }
        notes.append("Swish inside the blocks is not visible in the weights: took it, as every published X3D")

        let classes: Int
        if let head = shapes["head.projection.weight"], head.count == 2 {
            classes = head[0]
        } else if let fallback = numClassesFallback {
            classes = fallback
        } else {
            throw ConvertError.archUndetectable("no head.projection.weight to read the class count from; pass --num-classes N")
        }
        var config = ArchConfig(x3d: x, numClasses: classes, numFrames: 16, trainCrop: 224)
        if let match = config.presetWithSameBackbone() {
            // X3D-XS, -S and -M share every shape: the clip comes from the largest of them, said in a note.
            let named = ArchConfig.presetNames.compactMap { ArchConfig.preset(named: $0) }
                .filter { $0.model == .x3d && $0.presetWithSameBackbone()?.name == match.name }
            let pick = named.max { $0.numFrames * $0.trainCrop < $1.numFrames * $1.trainCrop } ?? match.config
            config.numFrames = pick.numFrames
            config.trainCrop = pick.trainCrop
            config.dropout = pick.dropout
            config.preset = classes == pick.numClasses ? pick.preset : nil
            let others = named.compactMap(\.preset).filter { $0 != pick.preset }
            notes.append("architecture matches preset \(pick.preset ?? match.name)\(classes == pick.numClasses ? "" : " with \(classes) classes")"
                + (others.isEmpty ? "" : "; \(others.joined(separator: " and ")) have the same tensors and other clips "
                   + "(frames, crop): pass --arch \(others.joined(separator: " or --arch ")) to record \(others.count == 1 ? "its" : "one of theirs")"))
        } else {
            notes.append("frames and crop are not stored in the weights: took \(config.numFrames) frames at \(config.trainCrop)² (X3D-M's clip)")
        }
        try config.validate()
        return ArchDetection(config: config, notes: notes)
    }
}
