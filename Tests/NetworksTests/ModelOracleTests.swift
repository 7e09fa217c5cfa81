// The whole network against a second statement of it: PySlowFast's forward
// written out here with the naive op oracles (double-precision loops, BN
// unfolded), reading the same canonical weights. Covers SlowFast, plain
// fusions (fusion_norm false), stride_1x1, Slow-only, the 2D ResNet and the
// head's grid averaging for inputs larger than the training crop.

import Families
import Convert
import Formats
import XCTest
@testable import Networks

/// Small configs shared by the model tests.
enum TinyConfigs {
    /// SlowFast R50 depths, width 4, beta_inv 4, 5 classes, 8 fast frames, crop 32.
    static var slowFast: ArchConfig {
        var c = ArchConfig.preset(named: "slowfast-r50-8x8")!
        c.widthPerGroup = 4
        c.betaInv = 4
        c.numClasses = 5
        c.numFrames = 8
        c.trainCrop = 32
        c.preset = nil
        return c
    }

    /// Slow-only, width 4, 4 frames, crop 32, sigmoid head.
    static var slow: ArchConfig {
        var c = ArchConfig.preset(named: "slow-r50-8x8")!
        c.widthPerGroup = 4
        c.stageDepths = [2, 2, 2, 2]
        c.numClasses = 6
        c.numFrames = 4
        c.trainCrop = 32
        c.headActivation = .sigmoid
        c.preset = nil
        return c
    }

    /// 2D ResNet-50 layout, width 4, crop 32.
    static var resnet: ArchConfig {
        var c = ArchConfig.preset(named: "resnet50")!
        c.widthPerGroup = 4
        c.numClasses = 7
        c.trainCrop = 32
        c.preset = nil
        return c
    }
}

/// PySlowFast's eval forward from the naive op oracles.
struct ReferenceNetwork {
    let config: ArchConfig
    let weights: TensorMap

    func w(_ name: String) -> FloatTensor {
        guard let t = weights[name] else { fatalError("reference: no tensor \(name)") }
        return FloatTensor(shape: t.shape, values: t.floats())
    }

    func bn(_ x: FloatTensor, _ module: String, relu: Bool) -> FloatTensor {
        batchNormEvalNaive(x, weight: w(module + ".weight"), bias: w(module + ".bias"),
                           runningMean: w(module + ".running_mean"), runningVar: w(module + ".running_var"), relu: relu)
    }

    func conv(_ x: FloatTensor, _ module: String, stride: Size3 = 1, padding: Size3 = 0, groups: Int = 1) -> FloatTensor {
        conv3dForwardNaive(x, weight: w(module + ".weight"),
                           config: Conv3dConfig(stride: stride, padding: padding, groups: groups))
    }

    func block(_ x: FloatTensor, stage: Int, pathway p: Int, index i: Int) -> FloatTensor {
        let name = "s\(stage).pathway\(p)_res\(i)"
        let kT = config.temporalKernels[stage - 1][p]
        let s = i == 0 ? config.spatialStrides[stage - 2] : 1
        let (sa, sb) = config.stride1x1 ? (s, 1) : (1, s)
        var y = conv(x, name + ".branch2.a", stride: Size3(1, sa, sa), padding: Size3(kT / 2, 0, 0))
        y = bn(y, name + ".branch2.a_bn", relu: true)
        y = conv(y, name + ".branch2.b", stride: Size3(1, sb, sb), padding: Size3(0, 1, 1), groups: config.numGroups)
        y = bn(y, name + ".branch2.b_bn", relu: true)
        y = bn(conv(y, name + ".branch2.c"), name + ".branch2.c_bn", relu: false)
        let shortcut = weights[name + ".branch1.weight"] != nil
            ? bn(conv(x, name + ".branch1", stride: Size3(1, s, s)), name + ".branch1_bn", relu: false) : x
        let out = FloatTensor(uninitialized: y.shape)
        for i in 0..<y.count { out.pointer[i] = max(y.pointer[i] + shortcut.pointer[i], 0) }
        return out
    }

    func fuse(_ slow: FloatTensor, _ fast: FloatTensor, stage: Int) -> FloatTensor {
        var f = conv(fast, "s\(stage)_fuse.conv_f2s", stride: Size3(config.alpha, 1, 1),
                     padding: Size3(config.fusionKernel / 2, 0, 0))
        if config.fusionNorm { f = bn(f, "s\(stage)_fuse.bn", relu: true) }
        return concatChannelsNaive([slow, f])
    }

    /// Logits (grid mean of the projection), probabilities and the captured activations.
    func forward(_ inputs: [FloatTensor]) -> (logits: FloatTensor, probabilities: FloatTensor, activations: [(String, FloatTensor)]) {
        var acts: [(String, FloatTensor)] = []
        let paths = config.pathways
        var x = inputs.map { t -> FloatTensor in
            t.rank == 4 ? FloatTensor(shape: [t.shape[0], t.shape[1], 1, t.shape[2], t.shape[3]], copying: t.pointer) : t
        }
        for p in 0..<paths {
            let kT = config.temporalKernels[0][p]
            var y = conv(x[p], "s1.pathway\(p)_stem.conv", stride: Size3(1, 2, 2), padding: Size3(kT / 2, 3, 3))
            y = bn(y, "s1.pathway\(p)_stem.bn", relu: true)
            x[p] = pool3dNaive(y, Pool3dConfig(kernel: Size3(1, 3, 3), stride: Size3(1, 2, 2), padding: Size3(0, 1, 1)), max: true)
            acts.append(("s1.pathway\(p)", x[p]))
        }
        if paths == 2 { x[0] = fuse(x[0], x[1], stage: 1) }
        for stage in 2...5 {
            for p in 0..<paths {
                for i in 0..<config.stageDepths[stage - 2] { x[p] = block(x[p], stage: stage, pathway: p, index: i) }
                acts.append(("s\(stage).pathway\(p)", x[p]))
            }
            if paths == 2 && stage < 5 { x[0] = fuse(x[0], x[1], stage: stage) }
        }
        let s = config.trainCrop / 32
        let kernels: [Size3] = config.model == .slowfast
            ? [Size3(config.numFrames / config.alpha, s, s), Size3(config.numFrames, s, s)]
            : [Size3(config.model == .resnet ? 1 : config.numFrames, s, s)]
        let pooled = concatChannelsNaive((0..<paths).map {
            pool3dNaive(x[$0], Pool3dConfig(kernel: kernels[$0], stride: 1), max: false)
        })
        acts.append(("head.pool", pooled))
        let ps = pooled.shape5D
        var rows = [Float](repeating: 0, count: ps.n * ps.plane * ps.c)
        for n in 0..<ps.n { for c in 0..<ps.c { for q in 0..<ps.plane {
            rows[(n * ps.plane + q) * ps.c + c] = pooled.pointer[(n * ps.c + c) * ps.plane + q]
        } } }
        let projected = linearNaive(FloatTensor(shape: [ps.n, ps.plane, ps.c], values: rows),
                                    weight: w("head.projection.weight"), bias: w("head.projection.bias"))
        let activated = config.headActivation == .softmax ? softmaxNaive(projected) : sigmoidNaive(projected)
        let k = config.numClasses
        func mean(_ t: FloatTensor) -> FloatTensor {
            var v = [Float](repeating: 0, count: ps.n * k)
            for n in 0..<ps.n { for j in 0..<k {
                var sum = 0.0
                for q in 0..<ps.plane { sum += Double(t.pointer[(n * ps.plane + q) * k + j]) }
                v[n * k + j] = Float(sum / Double(ps.plane))
            } }
            return FloatTensor(shape: [ps.n, k], values: v)
        }
        return (mean(projected), mean(activated), acts)
    }
}

final class ModelOracleTests: XCTestCase {
    /// Builds a random model, runs it and the reference on random inputs, and compares everything.
    private func compare(_ config: ArchConfig, inputs shapes: [[Int]], seed: UInt64 = 1,
                         file: StaticString = #filePath, line: UInt = #line) throws {
        let weights = EvalNetwork.randomWeights(config: config, seed: seed)
        let model = try EvalNetwork(config: config, weights: weights)
        var rng = SeededGenerator(seed: seed &+ 100)
        let inputs = shapes.map { randomTensor($0, &rng) }
        let out = try model.forward(inputs, capture: true)
        let ref = ReferenceNetwork(config: config, weights: weights).forward(inputs)
        XCTAssertEqual(out.activations.map(\.name), ref.activations.map(\.0), file: file, line: line)
        for ((name, value), (_, expected)) in zip(out.activations, ref.activations) {
            assertClose(value, expected, atol: 1e-4, rtol: 1e-4, name, file: file, line: line)
        }
        assertClose(out.logits, ref.logits, atol: 1e-5, rtol: 1e-4, "logits", file: file, line: line)
        assertClose(out.probabilities, ref.probabilities, atol: 1e-6, rtol: 1e-4, "probabilities", file: file, line: line)
    }

    func testTinySlowFastMatchesNaiveOracleComposition() throws {
        try compare(TinyConfigs.slowFast, inputs: [[2, 3, 2, 32, 32], [2, 3, 8, 32, 32]])
    }

    func testEveryConvolutionPathOnTheWholeNetworkMatchesOracle() throws {
        // Force the row-shift path on the narrow tiny rows, and tiny GEMM tiles.
        let saved = (ModelTuning.rowShiftMinWidth, ModelTuning.smallGemmMacs, ModelTuning.minChunkColumns)
        defer { (ModelTuning.rowShiftMinWidth, ModelTuning.smallGemmMacs, ModelTuning.minChunkColumns) = saved }
        (ModelTuning.rowShiftMinWidth, ModelTuning.smallGemmMacs, ModelTuning.minChunkColumns) = (1, 0, 16)
        var c = TinyConfigs.slowFast
        c.stageDepths = [2, 2, 2, 2]
        try compare(c, inputs: [[1, 3, 2, 32, 32], [1, 3, 8, 32, 32]], seed: 11)
    }

    func testPlainFusionWithoutNormMatchesOracle() throws {
        var c = TinyConfigs.slowFast
        c.fusionNorm = false
        c.stageDepths = [1, 2, 1, 1]
        XCTAssertFalse(c.expectedParameters().contains { $0.name.contains("_fuse.bn") })
        try compare(c, inputs: [[1, 3, 2, 32, 32], [1, 3, 8, 32, 32]], seed: 2)
    }

    func testStrideOnTheOneByOneMatchesOracle() throws {
        var c = TinyConfigs.slowFast
        c.stride1x1 = true
        c.stageDepths = [1, 2, 1, 2]
        try compare(c, inputs: [[1, 3, 2, 32, 32], [1, 3, 8, 32, 32]], seed: 3)
    }

    func testGroupedBottleneckAndFusionKernelFiveMatchOracle() throws {
        var c = TinyConfigs.slowFast
        c.numGroups = 2
        c.alpha = 8
        c.fusionKernel = 5
        c.numFrames = 16
        c.stageDepths = [1, 1, 2, 1]
        try compare(c, inputs: [[1, 3, 2, 32, 32], [1, 3, 16, 32, 32]], seed: 4)
    }

    func testSlowOnlyWithSigmoidHeadMatchesOracle() throws {
        try compare(TinyConfigs.slow, inputs: [[2, 3, 4, 32, 32]], seed: 5)
    }

    func testResNetTakesImagesAsOneFrameClips() throws {
        let config = TinyConfigs.resnet
        try compare(config, inputs: [[2, 3, 32, 32]], seed: 6)
        let model = EvalNetwork.random(config: config, seed: 6)
        var rng = SeededGenerator(seed: 9)
        let image = randomTensor([1, 3, 40, 40], &rng)
        let clip = FloatTensor(shape: [1, 3, 1, 40, 40], copying: image.pointer)
        let a = try model.forward([image]), b = try model.forward([clip])
        XCTAssertEqual(a.logits.values, b.logits.values)
        XCTAssertEqual(image.shape, [1, 3, 40, 40], "the caller's tensor keeps its shape")
    }

    func testInputLargerThanTrainingCropAveragesActivatedGrid() throws {
        // 64x64 with crop 32: res5 is 2x2, the head pools 1x1 windows -> a 1x2x2 grid.
        var c = TinyConfigs.slowFast
        c.stageDepths = [1, 1, 1, 1]
        try compare(c, inputs: [[1, 3, 2, 64, 64], [1, 3, 8, 64, 64]], seed: 7)
        let model = EvalNetwork.random(config: c, seed: 7)
        var rng = SeededGenerator(seed: 8)
        let out = try model.forward([randomTensor([1, 3, 2, 64, 64], &rng), randomTensor([1, 3, 8, 64, 64], &rng)], capture: true)
        let pooled = out.activations.last!.value
        XCTAssertEqual(pooled.shape, [1, c.headInputChannels, 1, 2, 2])
        // Probabilities are the mean of per-position softmaxes, not the softmax of the mean logits.
        let softmaxOfMean = softmaxNaive(out.logits)
        let gap = zip(softmaxOfMean.values, out.probabilities.values).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(gap, 1e-6)
        XCTAssertEqual(out.probabilities.values.reduce(0, +), 1, accuracy: 1e-5)
    }
}
