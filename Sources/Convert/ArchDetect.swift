// Derives an ArchConfig from canonical tensor names and shapes: pathways from the
// stems, block counts from the keys, widths and kernels from the conv weights.
// What the weights cannot show (alpha, frames, crop, dropout, strides) comes from
// the matching preset or documented defaults, and every such guess is a note.

import Families
import Foundation
import Formats

/// A derived config and what was assumed on the way.
public struct ArchDetection: Sendable {
    public var config: ArchConfig
    public var notes: [String]
}

public enum ArchDetect {
    /// Derives the architecture from the canonical tensors of `tensors`.
    public static func detect(_ tensors: TensorMap, numClassesFallback: Int? = nil) throws -> ArchDetection {
        var shapes: [String: [Int]] = [:]
        for (name, tensor) in tensors.ordered { shapes[name] = tensor.shape }
        return try detect(shapes: shapes, numClassesFallback: numClassesFallback)
    }

    /// Derives the architecture from canonical names -> shapes. `numClassesFallback`
    /// stands in for the class count when the file has no head.
    public static func detect(shapes: [String: [Int]], numClassesFallback: Int? = nil) throws -> ArchDetection {
        if looksLikeX3D(shapes) { return try detectX3D(shapes: shapes, numClassesFallback: numClassesFallback) }
        var notes: [String] = []
        func require(_ key: String, rank: Int) throws -> [Int] {
            guard let shape = shapes[key] else { throw ConvertError.archUndetectable("no tensor \(key)") }
            guard shape.count == rank else {
                let extra = rank == 5 && shape.count == 4 ? " (2D weights: they need inflating to 3D)" : ""
                throw ConvertError.archUndetectable("\(key) has shape \(Tensor.shapeString(shape)), expected \(rank) dimensions\(extra)")
            }
            return shape
        }

        // Pathways and widths from the stems.
        let slowStem = try require("s1.pathway0_stem.conv.weight", rank: 5)
        let pathways = shapes["s1.pathway1_stem.conv.weight"] == nil ? 1 : 2
        if shapes["s1.pathway2_stem.conv.weight"] != nil {
            throw ConvertError.archUndetectable("more than two pathways (s1.pathway2_stem.conv.weight)")
        }
        let width = slowStem[0]
        var config = ArchConfig(model: .slowfast, depth: 50, stageDepths: [3, 4, 6, 3], widthPerGroup: width,
                                temporalKernels: [], numClasses: 1, numFrames: 32)
        var stemKernels = [slowStem[2]]
        if pathways == 2 {
            let fastStem = try require("s1.pathway1_stem.conv.weight", rank: 5)
            guard fastStem[0] > 0, width % fastStem[0] == 0 else {
                throw ConvertError.archUndetectable("slow stem width \(width) is not a multiple of fast stem width \(fastStem[0])")
            }
            config.betaInv = width / fastStem[0]
            stemKernels.append(fastStem[2])
        }

        // Stage depths from the block indices.
        var blocks = [[Int]](repeating: [Int](repeating: 0, count: pathways), count: 4)
        let blockKey = try! NSRegularExpression(pattern: #"^s([2-5])\.pathway(\d+)_res(\d+)\."#)
        for key in shapes.keys {
            guard let m = blockKey.firstMatch(in: key, range: NSRange(key.startIndex..., in: key)) else { continue }
            let group = { (i: Int) in Range(m.range(at: i), in: key).flatMap { Int(key[$0]) } ?? 0 }
            let (stage, pathway, index) = (group(1), group(2), group(3))
            guard pathway < pathways else { continue }
            blocks[stage - 2][pathway] = max(blocks[stage - 2][pathway], index + 1)
        }
        config.stageDepths = blocks.map { $0[0] }
        if let empty = config.stageDepths.firstIndex(of: 0) {
            throw ConvertError.archUndetectable("no blocks for res\(empty + 2) (s\(empty + 2).pathway0_res0.*)")
        }
        if pathways == 2, blocks.map({ $0[1] }) != config.stageDepths {
            throw ConvertError.archUndetectable("fast pathway has \(blocks.map { $0[1] }) blocks per stage, slow \(config.stageDepths)")
        }
        config.depth = 2 + 3 * config.stageDepths.reduce(0, +)

        // Groups of the 3x3 conv (ResNeXt) from res2's first block.
        if let b = shapes["s2.pathway0_res0.branch2.b.weight"], b.count == 5, b[1] > 0, b[0] % b[1] == 0 {
            config.numGroups = b[0] / b[1]
        }

        // Temporal kernels: stem conv, then branch2.a of each stage's first block.
        var kernels = [stemKernels]
        for stage in 2 ... 5 {
            kernels.append(try (0 ..< pathways).map { try require("s\(stage).pathway\($0)_res0.branch2.a.weight", rank: 5)[2] })
        }
        config.temporalKernels = kernels

        // Fusion conv: [fast * ratio, fast, kernel, 1, 1].
        if pathways == 2 {
            let fuse = try require("s1_fuse.conv_f2s.weight", rank: 5)
            guard fuse[1] > 0, fuse[0] % fuse[1] == 0 else {
                throw ConvertError.archUndetectable("s1_fuse.conv_f2s.weight \(Tensor.shapeString(fuse)): output channels not a multiple of input channels")
            }
            config.fusionConvChannelRatio = fuse[0] / fuse[1]
            config.fusionKernel = fuse[2]
            config.fusionNorm = shapes["s1_fuse.bn.weight"] != nil
            switch config.fusionKernel {
            case 5:
                config.alpha = 8
                notes.append("alpha is not stored in the weights: took 8 because the fusion kernel is 5 (the 4x16 checkpoints' convention)")
            case 7:
                config.alpha = 4
                notes.append("alpha is not stored in the weights: took 4 because the fusion kernel is 7 (the 8x8 checkpoints' convention)")
            default:
                config.alpha = 4
                notes.append("alpha is not stored in the weights and fusion kernel \(config.fusionKernel) matches no published variant: took 4; pass --arch to set it")
            }
        }

        // Classes from the head.
        if let head = shapes["head.projection.weight"], head.count == 2 {
            config.numClasses = head[0]
        } else if let fallback = numClassesFallback {
            config.numClasses = fallback
        } else {
            throw ConvertError.archUndetectable("no head.projection.weight to read the class count from; pass --num-classes N")
        }

        if pathways == 1 {
            config.model = config.temporalKernels.joined().allSatisfy { $0 == 1 } ? .resnet : .slow
        }

        // Fields the weights do not show: from the preset with the same backbone, else defaults.
        if let match = config.presetWithSameBackbone() {
            config.numFrames = match.config.numFrames
            config.trainCrop = match.config.trainCrop
            config.dropout = match.config.dropout
            config.headActivation = match.config.headActivation
            config.spatialStrides = match.config.spatialStrides
            config.stride1x1 = match.config.stride1x1
            if config.numClasses == match.config.numClasses {
                config.preset = match.name
                notes.append("architecture matches preset \(match.name)")
            } else {
                config.preset = nil
                notes.append("architecture is preset \(match.name) with \(config.numClasses) classes (the preset has \(match.config.numClasses))")
            }
        } else {
            config.numFrames = config.model == .slowfast ? 32 : config.model == .slow ? 8 : 1
            notes.append("frames, crop, dropout, head activation and spatial strides are not stored in the weights: "
                + "took \(config.numFrames) frames, crop \(config.trainCrop), dropout \(config.dropout), "
                + "\(config.headActivation.rawValue), strides \(config.spatialStrides)")
        }
        try config.validate()
        return ArchDetection(config: config, notes: notes)
    }
}
