// A video transformer in training mode: the eval network's computation with everything the
// backward needs saved (each block's input, LayerNorm statistics and outputs, the fused q/k/v, the
// attention's row statistics — the probabilities are recomputed in the backward, never stored —
// and the MLP's pre-activation), stochastic depth (drop path) on every residual branch as Hugging
// Face places it, and the backward of the whole network into the parameter store's gradients.

import Families
import Foundation
import Formats

/// A family's network in training mode, as fine-tuning, verify's train-step check and the
/// train-step benchmark drive it.
public protocol TrainableClipNetwork: AnyObject {
    var config: ArchConfig { get }
    var store: ParameterStore { get }
    /// Logits (N, classes) of a training forward (dropout / drop path active), saving what `backward` needs.
    func forward(_ inputs: [FloatTensor]) throws -> FloatTensor
    /// Accumulates the gradients of dL/dlogits into the store.
    func backward(_ gradLogits: FloatTensor) throws
    func zeroGradients()
    /// Drops what the last forward saved.
    func releaseSaved()
    func exportWeights() -> TensorMap
    /// The eval-mode network of the current weights.
    func makeEvalNetwork() throws -> any ClipNetwork
    /// Bytes held for the backward after a forward (activations).
    var activationBytes: Int { get }
    /// A plain SGD update p -= lr * grad of every trained parameter (benchmarks).
    func sgdStep(learningRate: Float)
    /// Restarts the generator of the dropout / drop-path masks from `seed` (fine-tuning reseeds it at every
    /// epoch from the run's seed and the epoch, so a resumed run draws the masks an uninterrupted one does).
    func reseed(_ seed: UInt64)
}

extension TrainableNetwork: TrainableClipNetwork {
    public func makeEvalNetwork() throws -> any ClipNetwork { try evalModel() }
}

/// The training-mode network of `config`'s family from canonical `weights` (checked strictly): frozen
/// parameters, dropout (CNN heads) and the seed from `options`; `dropPathRate` for the transformers.
public func makeTrainableNetwork(config: ArchConfig, weights: TensorMap, options: TrainOptions = TrainOptions(),
                                 dropPathRate: Double = 0) throws -> any TrainableClipNetwork {
    if config.model.isTransformer {
        return try TrainableTransformer(config: config, weights: weights, frozen: options.frozen, dropPathRate: dropPathRate, seed: options.seed)
    }
    return try TrainableNetwork(config: config, weights: weights, options: options)
}

public final class TrainableTransformer: TrainableClipNetwork {
    public let config: ArchConfig
    public let store: ParameterStore
    public let layout: TransformerLayout
    let t: TransformerConfig
    let family: ModelKind
    /// Drop-path rate of each layer (Hugging Face: linearly from 0 to the rate over the layers).
    let dropPath: [Double]
    var rng: SplitMix64
    /// Whether forward saves for the backward and applies drop path (false: eval-mode math).
    public var training = true

    /// What one attention block (LN -> qkv -> attention -> output projection) saved.
    struct AttentionSave {
        var input: FloatTensor
        var lnStats: LayerNormStatistics
        var normed: FloatTensor
        var qkv: FloatTensor
        var attStats: AttentionStatistics
        var attended: FloatTensor
        /// The q/k/v projection's weight the forward used (VideoMAE's stacked from three tensors): the backward's too.
        var qkvWeight: FloatTensor
    }

    /// What one layer saved.
    struct LayerSave {
        var attention: AttentionSave
        /// TimeSformer: the temporal block, its drop-path output (temporal_dense's input) and the patch tokens before it.
        var temporal: AttentionSave?
        var temporalDropped: FloatTensor?
        /// The MLP's input (after the attention residual), LN statistics and output, pre- and post-GELU.
        var mlpInput: FloatTensor
        var mlpStats: LayerNormStatistics
        var mlpNormed: FloatTensor
        var preGELU: FloatTensor
        var postGELU: FloatTensor
        /// Per-sample drop-path scales (0 or 1/keep) of the attention branch (TimeSformer: spatial),
        /// the temporal branch and the MLP branch; nil when not dropping.
        var attentionMask: [Float]?, temporalMask: [Float]?, mlpMask: [Float]?
    }

    struct Saved {
        var input: FloatTensor
        var layers: [LayerSave] = []
        var tokens: FloatTensor
        var pooledRaw: FloatTensor
        var poolStats: LayerNormStatistics
        var pooled: FloatTensor
        var n: Int
    }
    var saved: Saved?
    /// VideoMAE's sinusoid table of the clip's grid, made once.
    var positionTable: [Float]?

    public init(config: ArchConfig, weights: TensorMap, frozen: [String] = [], dropPathRate: Double = 0, seed: UInt64 = 0) throws {
        do { try config.validate() } catch { throw ModelError.invalidConfig("\(error)") }
        guard config.model.isTransformer, let t = config.transformer else {
            throw ModelError.invalidConfig("\(config.model.rawValue) is not a transformer family")
        }
        guard (0 ..< 1).contains(dropPathRate) else { throw ModelError.invalidConfig("drop path rate \(dropPathRate) outside [0, 1)") }
        self.config = config
        self.t = t
        family = config.model
        layout = TransformerLayout(arch: config)
        store = try ParameterStore(config: config, weights: weights, frozen: frozen)
        dropPath = (0 ..< t.layers).map { t.layers > 1 ? dropPathRate * Double($0) / Double(t.layers - 1) : 0 }
        rng = SplitMix64(seed: seed ^ 0x5EED_D809)
    }

    public func reseed(_ seed: UInt64) { rng = SplitMix64(seed: seed ^ 0x5EED_D809) }

    public func zeroGradients() { store.zeroGradients() }
    public func releaseSaved() { saved = nil }

    public func sgdStep(learningRate: Float) {
        for name in store.trainableNames {
            guard let p = store.value(name), let gr = store.gradient(name) else { continue }
            withExtendedLifetime((p, gr)) {
                parallelRanges(p.count, minPerThread: 1 << 16) { range in for j in range { p.pointer[j] -= learningRate * gr.pointer[j] } }
            }
        }
    }
    public func exportWeights() -> TensorMap { store.exportWeights() }
    public func makeEvalNetwork() throws -> any ClipNetwork { try TransformerNetwork(config: config, weights: exportWeights()) }

    public var activationBytes: Int {
        guard let s = saved else { return 0 }
        func bytes(_ a: AttentionSave) -> Int { 4 * (a.input.count + a.normed.count + a.qkv.count + a.attended.count) }
        return s.layers.reduce(4 * s.input.count) { total, l in
            total + bytes(l.attention) + (l.temporal.map(bytes) ?? 0) + 4 * ((l.temporalDropped?.count ?? 0) + l.mlpInput.count
                + l.mlpNormed.count + l.preGELU.count + l.postGELU.count)
        }
    }

    func v(_ name: String) -> FloatTensor { store.value(required: name) }
    func g(_ name: String) -> FloatTensor? { store.gradient(name) }

    // MARK: Forward

    public func forward(_ inputs: [FloatTensor]) throws -> FloatTensor {
        guard inputs.count == 1, let x = inputs.first, x.rank == 5, x.shape[1] == 3,
              x.shape[2] == config.numFrames, x.shape[3] == config.trainCrop, x.shape[4] == config.trainCrop else {
            throw ModelError.badInput("\(config.model.rawValue) trains on one (N, 3, \(config.numFrames), \(config.trainCrop), \(config.trainCrop)) clip, got \(inputs.map(\.shape))")
        }
        let n = x.shape[0], d = t.hiddenSize
        let g = t.grid(frames: x.shape[2], crop: x.shape[3])
        let embedded = patchEmbedForward(x, weight: patchWeight(), bias: v(layout.patchEmbedding + ".bias"), order: .timeMajor)
        var hidden: FloatTensor
        if family == .videomae {
            hidden = embedded
            if positionTable == nil { positionTable = TransformerLayout.sinusoidTable(tokens: g.t * g.h * g.w, width: d) }
            positionTable!.withUnsafeBufferPointer { TokenOps.addPositions($0.baseAddress!, to: hidden) }
        } else {
            hidden = TokenOps.timesformerEmbeddings(embedded, n: n, frames: g.t, spatial: g.h * g.w, width: d,
                                                    cls: v(layout.classToken!).pointer, pos: v(layout.positionEmbeddings!).pointer,
                                                    time: v(layout.timeEmbeddings!).pointer)
        }
        var layers: [LayerSave] = []
        for i in 0 ..< t.layers {
            let (out, save) = family == .videomae ? jointLayer(hidden, i, n: n) : dividedLayer(hidden, i, n: n, grid: g)
            layers.append(save)
            hidden = out
        }
        let raw = TokenOps.pool(hidden, mean: t.meanPooling)
        let (pooled, stats) = layerNormForward(raw, gamma: v(layout.finalNorm + ".weight"), beta: v(layout.finalNorm + ".bias"),
                                               eps: t.meanPooling ? t.fcNormEps : t.layerNormEps)
        let logits = linearForward(pooled, weight: v(layout.classifier + ".weight"), bias: v(layout.classifier + ".bias"))
        saved = training ? Saved(input: x, layers: layers, tokens: hidden, pooledRaw: raw, poolStats: stats!, pooled: pooled, n: n) : nil
        return logits
    }

    /// [D, 3, tubelet, p, p] view of the patch embedding's weight (TimeSformer stores [D, 3, p, p]).
    func patchWeight() -> FloatTensor {
        let w = v(layout.patchEmbedding + ".weight")
        if w.rank == 5 { return w }
        let view = FloatTensor(shape: [w.shape[0], 3, 1, t.patchSize, t.patchSize], copying: w.pointer)
        return view
    }

    /// The layer's q/k/v as one [3D, D] projection and [3D] bias (VideoMAE's stacked from the store).
    func qkvProjection(_ layer: Int, temporal: Bool = false) -> (FloatTensor, FloatTensor) {
        let n = layout.layer(layer), d = t.hiddenSize
        if let fused = temporal ? n.temporalQKV : n.qkv {
            return (v(fused + ".weight"), t.qkvBias ? v(fused + ".bias") : FloatTensor(zeros: [3 * d]))
        }
        let weight = FloatTensor(uninitialized: [3 * d, d]), bias = FloatTensor(zeros: [3 * d])
        for (k, module) in [n.query!, n.key!, n.value!].enumerated() {
            (weight.pointer + k * d * d).update(from: v(module + ".weight").pointer, count: d * d)
            if t.qkvBias, module != n.key { (bias.pointer + k * d).update(from: v(module + ".bias").pointer, count: d) }
        }
        return (weight, bias)
    }

    /// output-projection(attention(qkv(LN(x)))) for `x` [S, L, D], with what the backward needs.
    func attentionBlock(_ x: FloatTensor, norm: String, qkv: (FloatTensor, FloatTensor), output: String) -> (FloatTensor, AttentionSave) {
        let (normed, stats) = layerNormForward(x, gamma: v(norm + ".weight"), beta: v(norm + ".bias"), eps: t.layerNormEps)
        let projected = linearForward(normed, weight: qkv.0, bias: qkv.1)
        let (attended, attStats) = fusedAttentionForward(qkv: projected, heads: t.heads)
        let out = linearForward(attended, weight: v(output + ".weight"), bias: v(output + ".bias"))
        return (out, AttentionSave(input: x, lnStats: stats!, normed: normed, qkv: projected, attStats: attStats, attended: attended,
                                   qkvWeight: qkv.0))
    }

    /// Per-sample drop-path scales for `n` samples at `rate` (nil when nothing drops).
    func dropMask(_ rate: Double, n: Int) -> [Float]? {
        guard training, rate > 0 else { return nil }
        let keep = 1 - rate
        return (0 ..< n).map { _ in rng.nextUnit() < keep ? Float(1 / keep) : 0 }
    }

    /// `x` with each sample's rows multiplied by its scale: a copy when dropping, `x` itself otherwise
    /// (a branch's gradient is only read).
    func scaledCopy(_ x: FloatTensor, _ mask: [Float]?) -> FloatTensor {
        guard mask != nil else { return x }
        let y = x.copy()
        scaleSamples(y, mask)
        return y
    }

    /// Multiplies each sample's rows (`rowsPerSample` rows of `width`) by its scale.
    func scaleSamples(_ x: FloatTensor, _ mask: [Float]?) {
        guard let mask else { return }
        let per = x.count / mask.count
        for (b, s) in mask.enumerated() where s != 1 { for j in 0 ..< per { x.pointer[b * per + j] *= s } }
    }

    /// x + MLP(LN(x)) with drop path, in the MLP output's buffer (x is saved, unchanged); fills the save.
    func mlp(_ x: FloatTensor, _ i: Int, n: Int, into save: inout LayerSave) -> FloatTensor {
        let names = layout.layer(i)
        let (normed, stats) = layerNormForward(x, gamma: v(names.normAfter + ".weight"), beta: v(names.normAfter + ".bias"), eps: t.layerNormEps)
        let pre = linearForward(normed, weight: v(names.mlpIn + ".weight"), bias: v(names.mlpIn + ".bias"))
        let post = geluForward(pre, approximate: t.geluTanh ? .tanh : .none)
        let out = linearForward(post, weight: v(names.mlpOut + ".weight"), bias: v(names.mlpOut + ".bias"))
        let mask = dropMask(dropPath[i], n: n)
        scaleSamples(out, mask)
        TokenOps.add(x, into: out)
        (save.mlpInput, save.mlpStats, save.mlpNormed, save.preGELU, save.postGELU, save.mlpMask) = (x, stats!, normed, pre, post, mask)
        return out
    }

    func jointLayer(_ x: FloatTensor, _ i: Int, n: Int) -> (FloatTensor, LayerSave) {
        let names = layout.layer(i)
        let (attended, attSave) = attentionBlock(x, norm: names.normBefore, qkv: qkvProjection(i), output: names.attentionOutput)
        let mask = dropMask(dropPath[i], n: n)
        scaleSamples(attended, mask)
        TokenOps.add(x, into: attended)
        let out = attended
        var save = LayerSave(attention: attSave, mlpInput: out, mlpStats: attSave.lnStats, mlpNormed: out, preGELU: out, postGELU: out,
                             attentionMask: mask)
        return (mlp(out, i, n: n, into: &save), save)
    }

    func dividedLayer(_ x: FloatTensor, _ i: Int, n: Int, grid g: (t: Int, h: Int, w: Int)) -> (FloatTensor, LayerSave) {
        let names = layout.layer(i)
        let d = t.hiddenSize, frames = g.t, spatial = g.h * g.w
        let patchTokens = TokenOps.patchSequences(x, n: n, frames: frames, spatial: spatial, width: d)
        let (temporalOut, temporalSave) = attentionBlock(patchTokens, norm: names.temporalNorm!, qkv: qkvProjection(i, temporal: true),
                                                         output: names.temporalOutput!)
        // Drop path draws per row of the branch's first dimension, as Hugging Face's: (clip, patch) here,
        // (clip, frame) on the spatial branch, the clip on the MLP.
        let temporalMask = dropMask(dropPath[i], n: n * spatial)
        scaleSamples(temporalOut, temporalMask)
        let dense = linearForward(temporalOut, weight: v(names.temporalDense! + ".weight"), bias: v(names.temporalDense! + ".bias"))
        let te = patchTokens.copy()   // temporal_embedding = x[:, 1:] + temporal_dense(drop_path(attention))
        TokenOps.add(dense, into: te)
        let spatialIn = TokenOps.spatialSequences(classTokensOf: x, patches: te, n: n, frames: frames, spatial: spatial, width: d)
        let (spatialOut, spatialSave) = attentionBlock(spatialIn, norm: names.normBefore, qkv: qkvProjection(i), output: names.attentionOutput)
        let spatialMask = dropMask(dropPath[i], n: n * frames)
        scaleSamples(spatialOut, spatialMask)
        let out = TokenOps.dividedOutput(classTokensOf: x, patches: te, spatialOut: spatialOut, n: n, frames: frames, spatial: spatial, width: d)
        var save = LayerSave(attention: spatialSave, temporal: temporalSave, temporalDropped: temporalOut, mlpInput: out,
                             mlpStats: spatialSave.lnStats, mlpNormed: out, preGELU: out, postGELU: out,
                             attentionMask: spatialMask, temporalMask: temporalMask)
        return (mlp(out, i, n: n, into: &save), save)
    }

    // MARK: Backward

    public func backward(_ gradLogits: FloatTensor) throws {
        guard let s = saved else { throw ModelError.badInput("backward without a training forward") }
        let n = s.n, d = t.hiddenSize
        guard gradLogits.shape == [n, config.numClasses] else {
            throw ModelError.badInput("gradient of the logits is \(gradLogits.shape), expected [\(n), \(config.numClasses)]")
        }
        let dPooled = linearBackward(s.pooled, weight: v(layout.classifier + ".weight"), gradOutput: gradLogits,
                                     gradWeight: g(layout.classifier + ".weight"), gradBias: g(layout.classifier + ".bias"))!
        let dRaw = layerNormBackward(s.pooledRaw, gamma: v(layout.finalNorm + ".weight"), statistics: s.poolStats,
                                     eps: t.meanPooling ? t.fcNormEps : t.layerNormEps, gradOutput: dPooled,
                                     gradGamma: g(layout.finalNorm + ".weight"), gradBeta: g(layout.finalNorm + ".bias"))!
        let tokens = s.tokens.shape[1]
        var dHidden = FloatTensor(zeros: [n, tokens, d])
        for b in 0 ..< n {
            if t.meanPooling {
                let scale = 1 / Float(tokens)
                for r in 0 ..< tokens { for j in 0 ..< d { dHidden.pointer[(b * tokens + r) * d + j] = dRaw.pointer[b * d + j] * scale } }
            } else {
                (dHidden.pointer + b * tokens * d).update(from: dRaw.pointer + b * d, count: d)
            }
        }
        let g3 = t.grid(frames: config.numFrames, crop: config.trainCrop)
        for i in stride(from: t.layers - 1, through: 0, by: -1) {
            dHidden = family == .videomae ? jointLayerBackward(dHidden, s.layers[i], i) : dividedLayerBackward(dHidden, s.layers[i], i, n: n, grid: g3)
        }
        // Embeddings.
        let dEmbedded: FloatTensor
        if family == .videomae {
            dEmbedded = dHidden
        } else {
            dEmbedded = timesformerEmbeddingsBackward(dHidden, n: n, grid: g3)
        }
        let weightName = layout.patchEmbedding + ".weight"
        if let gw = g(weightName) {
            let gw5 = gw.rank == 5 ? gw : FloatTensor(zeros: [d, 3, 1, t.patchSize, t.patchSize])
            patchEmbedBackward(s.input, weight: patchWeight(), gradOutput: dEmbedded, gradWeight: gw5, gradBias: g(layout.patchEmbedding + ".bias"),
                               order: .timeMajor, needInputGradient: false)
            if gw.rank != 5 { for j in 0 ..< gw.count { gw.pointer[j] += gw5.pointer[j] } }
        } else if let gb = g(layout.patchEmbedding + ".bias") {
            let rows = dEmbedded.count / d
            for r in 0 ..< rows { for j in 0 ..< d { gb.pointer[j] += dEmbedded.pointer[r * d + j] } }
        }
    }

    /// Backward of x -> x + MLP(LN(x)) (with its drop path): dL/dx from dL/dout.
    func mlpBackward(_ dOut: FloatTensor, _ save: LayerSave, _ i: Int) -> FloatTensor {
        let names = layout.layer(i)
        let dBranch = scaledCopy(dOut, save.mlpMask)
        let dPost = linearBackward(save.postGELU, weight: v(names.mlpOut + ".weight"), gradOutput: dBranch,
                                   gradWeight: g(names.mlpOut + ".weight"), gradBias: g(names.mlpOut + ".bias"))!
        let dPre = geluBackward(input: save.preGELU, gradOutput: dPost, approximate: t.geluTanh ? .tanh : .none)
        let dNormed = linearBackward(save.mlpNormed, weight: v(names.mlpIn + ".weight"), gradOutput: dPre,
                                     gradWeight: g(names.mlpIn + ".weight"), gradBias: g(names.mlpIn + ".bias"))!
        let dx = layerNormBackward(save.mlpInput, gamma: v(names.normAfter + ".weight"), statistics: save.mlpStats, eps: t.layerNormEps,
                                   gradOutput: dNormed, gradGamma: g(names.normAfter + ".weight"), gradBeta: g(names.normAfter + ".bias"))!
        TokenOps.add(dOut, into: dx)
        return dx
    }

    /// Backward of an attention block from dL/d(its output): dL/d(its input); parameter gradients accumulated.
    func attentionBlockBackward(_ dOut: FloatTensor, _ save: AttentionSave, norm: String,
                                qkvGrad: (weight: FloatTensor?, bias: FloatTensor?), output: String) -> FloatTensor {
        let dAttended = linearBackward(save.attended, weight: v(output + ".weight"), gradOutput: dOut,
                                       gradWeight: g(output + ".weight"), gradBias: g(output + ".bias"))!
        // The output the projection's backward kept: each row's sum of P dP is then dO . O, and the
        // probabilities and dS come out of one pass over the scores (instead of three).
        let dQKV = fusedAttentionBackward(qkv: save.qkv, output: save.attended, statistics: save.attStats, gradOutput: dAttended,
                                          heads: t.heads)
        let dNormed = linearBackward(save.normed, weight: save.qkvWeight, gradOutput: dQKV, gradWeight: qkvGrad.weight, gradBias: qkvGrad.bias)!
        return layerNormBackward(save.input, gamma: v(norm + ".weight"), statistics: save.lnStats, eps: t.layerNormEps,
                                 gradOutput: dNormed, gradGamma: g(norm + ".weight"), gradBeta: g(norm + ".bias"))!
    }

    /// Gradient buffers of the layer's q/k/v projection: the store's own (fused), or scratch ones that
    /// `scatterQKV` adds back into VideoMAE's query / key / value gradients.
    func qkvGradients(_ i: Int, temporal: Bool = false) -> (weight: FloatTensor?, bias: FloatTensor?) {
        let n = layout.layer(i), d = t.hiddenSize
        if let fused = temporal ? n.temporalQKV : n.qkv { return (g(fused + ".weight"), t.qkvBias ? g(fused + ".bias") : nil) }
        let any = [n.query!, n.key!, n.value!].contains { g($0 + ".weight") != nil || g($0 + ".bias") != nil }
        return any ? (FloatTensor(zeros: [3 * d, d]), FloatTensor(zeros: [3 * d])) : (nil, nil)
    }

    func scatterQKV(_ i: Int, _ grads: (weight: FloatTensor?, bias: FloatTensor?)) {
        let n = layout.layer(i), d = t.hiddenSize
        guard n.qkv == nil, let gw = grads.weight, let gb = grads.bias else { return }
        for (k, module) in [n.query!, n.key!, n.value!].enumerated() {
            if let target = g(module + ".weight") { for j in 0 ..< d * d { target.pointer[j] += gw.pointer[k * d * d + j] } }
            if let target = g(module + ".bias") { for j in 0 ..< d { target.pointer[j] += gb.pointer[k * d + j] } }
        }
    }

    func jointLayerBackward(_ dOut: FloatTensor, _ save: LayerSave, _ i: Int) -> FloatTensor {
        let names = layout.layer(i)
        let dMid = mlpBackward(dOut, save, i)
        let grads = qkvGradients(i)
        let dx = attentionBlockBackward(scaledCopy(dMid, save.attentionMask), save.attention, norm: names.normBefore, qkvGrad: grads,
                                        output: names.attentionOutput)
        scatterQKV(i, grads)
        TokenOps.add(dMid, into: dx)
        return dx
    }

    func dividedLayerBackward(_ dOut: FloatTensor, _ save: LayerSave, _ i: Int, n: Int, grid g3: (t: Int, h: Int, w: Int)) -> FloatTensor {
        let names = layout.layer(i)
        let d = t.hiddenSize, frames = g3.t, spatial = g3.h * g3.w, tokens = 1 + spatial * frames
        let dMid = mlpBackward(dOut, save, i)     // dL/d(cat(cls, te) + cat(cls_out, spatial))
        // Spatial branch: dL/d(spatial outputs) per (clip, frame) sequence, drop path applied.
        let dSpatialOut = FloatTensor(uninitialized: [n * frames, 1 + spatial, d])
        for b in 0 ..< n {
            for f in 0 ..< frames {
                let seq = dSpatialOut.pointer + (b * frames + f) * (1 + spatial) * d
                for j in 0 ..< d { seq[j] = dMid.pointer[b * tokens * d + j] / Float(frames) }
                for p in 0 ..< spatial { (seq + (1 + p) * d).update(from: dMid.pointer + (b * tokens + 1 + p * frames + f) * d, count: d) }
            }
        }
        if let mask = save.attentionMask { scaleSamples(dSpatialOut, mask) }
        let dSpatialIn = attentionBlockBackward(dSpatialOut, save.attention, norm: names.normBefore,
                                                qkvGrad: qkvGradients(i), output: names.attentionOutput)
        // dL/dte (patch-major [n * hw, T, D]) and dL/dcls.
        let dTE = FloatTensor(uninitialized: [n * spatial, frames, d])
        let dX = FloatTensor(uninitialized: [n, tokens, d])
        for b in 0 ..< n {
            let cls = dX.pointer + b * tokens * d
            cls.update(from: dMid.pointer + b * tokens * d, count: d)
            for f in 0 ..< frames {
                let seq = dSpatialIn.pointer + (b * frames + f) * (1 + spatial) * d
                for j in 0 ..< d { cls[j] += seq[j] }
                for p in 0 ..< spatial {
                    let dst = dTE.pointer + ((b * spatial + p) * frames + f) * d
                    let a = dMid.pointer + (b * tokens + 1 + p * frames + f) * d, s = seq + (1 + p) * d
                    for j in 0 ..< d { dst[j] = a[j] + s[j] }
                }
            }
        }
        // te = patchTokens + temporal_dense(drop_path(temporal attention block(patchTokens))).
        let dDropped = linearBackward(save.temporalDropped!, weight: v(names.temporalDense! + ".weight"), gradOutput: dTE,
                                      gradWeight: g(names.temporalDense! + ".weight"), gradBias: g(names.temporalDense! + ".bias"))!
        scaleSamples(dDropped, save.temporalMask)
        let dPatch = attentionBlockBackward(dDropped, save.temporal!, norm: names.temporalNorm!,
                                            qkvGrad: qkvGradients(i, temporal: true), output: names.temporalOutput!)
        for b in 0 ..< n {
            let dst = dX.pointer + (b * tokens + 1) * d
            let a = dTE.pointer + b * spatial * frames * d, p = dPatch.pointer + b * spatial * frames * d
            for j in 0 ..< spatial * frames * d { dst[j] = a[j] + p[j] }
        }
        return dX
    }

    /// dL/d(patch embeddings) [n, T * hw, D] (frame-major) from dL/d(tokens); accumulates the class
    /// token's, the position table's and the time table's gradients.
    func timesformerEmbeddingsBackward(_ dHidden: FloatTensor, n: Int, grid g3: (t: Int, h: Int, w: Int)) -> FloatTensor {
        let d = t.hiddenSize, frames = g3.t, spatial = g3.h * g3.w, tokens = 1 + spatial * frames
        let dEmbedded = FloatTensor(uninitialized: [n, frames * spatial, d])
        let dCls = g(layout.classToken!), dPos = g(layout.positionEmbeddings!), dTime = g(layout.timeEmbeddings!)
        for b in 0 ..< n {
            let row = dHidden.pointer + b * tokens * d
            for j in 0 ..< d { dCls?.pointer[j] += row[j]; dPos?.pointer[j] += row[j] }
            for p in 0 ..< spatial {
                for f in 0 ..< frames {
                    let src = row + (1 + p * frames + f) * d
                    (dEmbedded.pointer + (b * frames * spatial + f * spatial + p) * d).update(from: src, count: d)
                    for j in 0 ..< d { dPos?.pointer[(1 + p) * d + j] += src[j]; dTime?.pointer[f * d + j] += src[j] }
                }
            }
        }
        return dEmbedded
    }
}
