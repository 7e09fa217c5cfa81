// A video transformer (VideoMAE, TimeSformer) in eval mode, run from its `TransformerLayout`:
// the tubelet / patch embedding as one GEMM over gathered patches, pre-norm encoder layers (LayerNorm,
// one fused q/k/v GEMM, blocked softmax attention, output projection, GELU MLP, residual adds), then
// the family's pooling and the classifier. Tokens are rows of a [N, L, D] buffer in Hugging Face's
// order: VideoMAE (t, h, w); TimeSformer the class token, then patch-major (h, w, t).

import Families
import Foundation
import Formats

/// The eval-mode executor of a video transformer.
public final class TransformerNetwork: ClipNetwork {
    public let config: ArchConfig
    public let layout: TransformerLayout
    let t: TransformerConfig
    let family: ModelKind

    /// One encoder layer's tensors: q/k/v (VideoMAE's separate projections stacked at load) as one
    /// [3D, D] projection with its bias (k's zero), the rest as stored.
    struct Layer {
        var normBefore: (FloatTensor, FloatTensor)
        var qkv: (FloatTensor, FloatTensor)
        var attentionOutput: (FloatTensor, FloatTensor)
        var temporal: (norm: (FloatTensor, FloatTensor), qkv: (FloatTensor, FloatTensor),
                       output: (FloatTensor, FloatTensor), dense: (FloatTensor, FloatTensor))?
        var normAfter: (FloatTensor, FloatTensor)
        var mlpIn: (FloatTensor, FloatTensor)
        var mlpOut: (FloatTensor, FloatTensor)
    }

    let patchWeight: FloatTensor, patchBias: FloatTensor
    let layers: [Layer]
    let finalNorm: (FloatTensor, FloatTensor)
    let classifier: (FloatTensor, FloatTensor)
    /// TimeSformer: class token [D], position table [1 + hw, D], time table [T, D]; VideoMAE: the sinusoid [L, D].
    let classToken: FloatTensor?, positionTable: FloatTensor, timeTable: FloatTensor?

    /// Builds the network, checking `weights` (canonical names) strictly against the layout: every tensor
    /// present with its exact shape, nothing else; any float dtype.
    public init(config: ArchConfig, weights: TensorMap) throws {
        do { try config.validate() } catch { throw ModelError.invalidConfig("\(error)") }
        guard config.model.isTransformer, let t = config.transformer else {
            throw ModelError.invalidConfig("\(config.model.rawValue) is not a transformer family")
        }
        let layout = TransformerLayout(arch: config)
        let w = try ModelWeights(config: config, map: weights)
        self.config = config
        self.layout = layout
        self.t = t
        family = config.model
        let d = t.hiddenSize
        func pair(_ module: String) -> (FloatTensor, FloatTensor) { (w[module + ".weight"], w[module + ".bias"]) }
        func maybeBias(_ module: String, _ count: Int) -> FloatTensor {
            t.qkvBias ? w[module + ".bias"] : FloatTensor(zeros: [count])
        }
        let kernel = w[layout.patchEmbedding + ".weight"]
        // [D, 3, tubelet, p, p] (TimeSformer's per-frame [D, 3, p, p] with tubelet 1).
        patchWeight = FloatTensor(shape: [d, 3, t.tubeletSize, t.patchSize, t.patchSize], copying: kernel.pointer)
        patchBias = w[layout.patchEmbedding + ".bias"]
        var layers: [Layer] = []
        for i in 0 ..< t.layers {
            let n = layout.layer(i)
            let qkv: (FloatTensor, FloatTensor)
            if let fused = n.qkv {
                qkv = (w[fused + ".weight"], maybeBias(fused, 3 * d))
            } else {
                let weight = FloatTensor(uninitialized: [3 * d, d]), bias = FloatTensor(zeros: [3 * d])
                for (k, module) in [n.query!, n.key!, n.value!].enumerated() {
                    (weight.pointer + k * d * d).update(from: w[module + ".weight"].pointer, count: d * d)
                    if t.qkvBias, module != n.key { (bias.pointer + k * d).update(from: w[module + ".bias"].pointer, count: d) }
                }
                qkv = (weight, bias)
            }
            var temporal: (norm: (FloatTensor, FloatTensor), qkv: (FloatTensor, FloatTensor),
                           output: (FloatTensor, FloatTensor), dense: (FloatTensor, FloatTensor))?
            if let tn = n.temporalNorm, let tq = n.temporalQKV, let to = n.temporalOutput, let td = n.temporalDense {
                temporal = (pair(tn), (w[tq + ".weight"], maybeBias(tq, 3 * d)), pair(to), pair(td))
            }
            layers.append(Layer(normBefore: pair(n.normBefore), qkv: qkv, attentionOutput: pair(n.attentionOutput), temporal: temporal,
                                normAfter: pair(n.normAfter), mlpIn: pair(n.mlpIn), mlpOut: pair(n.mlpOut)))
        }
        self.layers = layers
        finalNorm = pair(layout.finalNorm)
        classifier = pair(layout.classifier)
        if family == .timesformer {
            let cls = w[layout.classToken!], pos = w[layout.positionEmbeddings!], time = w[layout.timeEmbeddings!]
            classToken = FloatTensor(shape: [d], copying: cls.pointer)
            positionTable = FloatTensor(shape: [pos.count / d, d], copying: pos.pointer)
            timeTable = FloatTensor(shape: [time.count / d, d], copying: time.pointer)
        } else {
            classToken = nil
            timeTable = nil
            let tokens = layout.patchTokens
            let table = TransformerLayout.sinusoidTable(tokens: tokens, width: d)
            positionTable = table.withUnsafeBufferPointer { FloatTensor(shape: [tokens, d], copying: $0.baseAddress!) }
        }
    }

    /// Multiply-adds of one forward pass over inputs of these shapes.
    public func multiplyAdds(forInputs shapes: [[Int]]) throws -> Int {
        guard let s = shapes.first, s.count == 5 else { throw ModelError.badInput("expected one (N, 3, T, H, W) input, got \(shapes)") }
        let g = t.grid(frames: s[2], crop: s[3])
        let (n, d, i) = (s[0], t.hiddenSize, t.intermediateSize)
        let patches = g.t * g.h * g.w, patchMACs = patches * d * (3 * t.tubeletSize * t.patchSize * t.patchSize)
        var perLayer: Int
        if family == .videomae {
            perLayer = patches * (4 * d * d + 2 * d * i) + 2 * patches * patches * d
        } else {
            let frames = g.t, spatial = 1 + g.h * g.w
            let temporal = patches * 5 * d * d + 2 * patches * frames * d
            let space = frames * spatial * 4 * d * d + frames * 2 * spatial * spatial * d
            perLayer = temporal + space + (patches + 1) * 2 * d * i
        }
        return n * (patchMACs + t.layers * perLayer + d * config.numClasses)
    }

    public func forward(_ inputs: [FloatTensor], capture: Bool = false, profile: ForwardProfile? = nil) throws -> ForwardOutput {
        guard inputs.count == 1, let x = inputs.first, x.rank == 5, x.shape[1] == 3 else {
            throw ModelError.badInput("\(config.model.rawValue) takes one (N, 3, T, H, W) clip, got \(inputs.map(\.shape))")
        }
        let (n, frames, height, width) = (x.shape[0], x.shape[2], x.shape[3], x.shape[4])
        guard frames == config.numFrames, height == config.trainCrop, width == config.trainCrop else {
            throw ModelError.badInput("\(config.model.rawValue) \(config.preset ?? "weights") take \(config.numFrames) frames of "
                                        + "\(config.trainCrop)x\(config.trainCrop) (its position tables' grid), got \(frames) of \(height)x\(width)")
        }
        var activations: [(name: String, value: FloatTensor)] = []
        let d = t.hiddenSize
        let g = t.grid(frames: frames, crop: height)
        let patches = g.t * g.h * g.w
        let embedded = patchEmbedForward(x, weight: patchWeight, bias: patchBias, order: .timeMajor)
        var hidden: FloatTensor
        if family == .videomae {
            hidden = embedded
            hidden.reshape([n, patches, d])
            TokenOps.addPositions(positionTable.pointer, to: hidden)
        } else {
            hidden = TokenOps.timesformerEmbeddings(embedded, n: n, frames: g.t, spatial: g.h * g.w, width: d, cls: classToken!.pointer,
                                                    pos: positionTable.pointer, time: timeTable!.pointer)
        }
        if capture { activations.append(("embeddings", hidden.copy())) }
        for (i, layer) in layers.enumerated() {
            hidden = family == .videomae ? jointLayer(hidden, layer) : dividedLayer(hidden, layer, n: n, grid: g)
            if capture { activations.append(("layer.\(i)", hidden.copy())) }
        }
        let pooled = TokenOps.pool(hidden, mean: t.meanPooling)
        _ = layerNormForward(pooled, gamma: finalNorm.0, beta: finalNorm.1, eps: t.meanPooling ? t.fcNormEps : t.layerNormEps,
                             saveStatistics: false, into: pooled)
        if capture { activations.append(("pooled", pooled.copy())) }
        let logits = linearForward(pooled, weight: classifier.0, bias: classifier.1)
        let probabilities = config.headActivation == .softmax ? softmaxForward(logits) : sigmoidForward(logits)
        return ForwardOutput(logits: logits, probabilities: probabilities, activations: activations)
    }

    // MARK: Layers

    /// VideoMAE's layer: x += attention(LN(x)); x += MLP(LN(x)).
    func jointLayer(_ x: FloatTensor, _ layer: Layer) -> FloatTensor {
        let attended = attentionBlock(x, norm: layer.normBefore, qkv: layer.qkv, output: layer.attentionOutput)
        TokenOps.add(attended, into: x)
        mlp(x, layer)
        return x
    }

    /// TimeSformer's divided space-time layer (Hugging Face's TimesformerLayer, divided_space_time).
    func dividedLayer(_ x: FloatTensor, _ layer: Layer, n: Int, grid g: (t: Int, h: Int, w: Int)) -> FloatTensor {
        let d = t.hiddenSize, frames = g.t, spatial = g.h * g.w
        let temporal = layer.temporal!
        // Temporal: the patch tokens of each (clip, position) attend over the frames ([n * hw, T, D], contiguous
        // in patch-major order); temporal_embedding = x[:, 1:] + temporal_dense(attention).
        let patchTokens = TokenOps.patchSequences(x, n: n, frames: frames, spatial: spatial, width: d)
        let residual = attentionBlock(patchTokens, norm: temporal.norm, qkv: temporal.qkv, output: temporal.output)
        TokenOps.add(linearForward(residual, weight: temporal.dense.0, bias: temporal.dense.1), into: patchTokens)
        // Spatial: per (clip, frame) the class token and the frame's patches, [n * T, 1 + hw, D].
        let spatialIn = TokenOps.spatialSequences(classTokensOf: x, patches: patchTokens, n: n, frames: frames, spatial: spatial, width: d)
        let spatialOut = attentionBlock(spatialIn, norm: layer.normBefore, qkv: layer.qkv, output: layer.attentionOutput)
        let out = TokenOps.dividedOutput(classTokensOf: x, patches: patchTokens, spatialOut: spatialOut, n: n, frames: frames,
                                         spatial: spatial, width: d)
        mlp(out, layer)
        return out
    }

    /// output-projection(attention(qkv-projection(LN(x)))) for `x` [S, L, D].
    func attentionBlock(_ x: FloatTensor, norm: (FloatTensor, FloatTensor), qkv: (FloatTensor, FloatTensor),
                        output: (FloatTensor, FloatTensor)) -> FloatTensor {
        let normed = layerNormForward(x, gamma: norm.0, beta: norm.1, eps: t.layerNormEps, saveStatistics: false).output
        let projected = linearForward(normed, weight: qkv.0, bias: qkv.1)
        let attended = fusedAttentionForward(qkv: projected, heads: t.heads).output
        return linearForward(attended, weight: output.0, bias: output.1)
    }

    /// x += output(GELU(intermediate(LN(x)))).
    func mlp(_ x: FloatTensor, _ layer: Layer) {
        let normed = layerNormForward(x, gamma: layer.normAfter.0, beta: layer.normAfter.1, eps: t.layerNormEps, saveStatistics: false).output
        let inner = geluForward(linearForward(normed, weight: layer.mlpIn.0, bias: layer.mlpIn.1),
                                approximate: t.geluTanh ? .tanh : .none, inPlace: true)
        TokenOps.add(linearForward(inner, weight: layer.mlpOut.0, bias: layer.mlpOut.1), into: x)
    }
}
