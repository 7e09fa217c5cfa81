// The weights of a Keras file as the worker hands them to the parent: layers in
// file order, each with its weights (name as in the file, float32 tensor in
// Keras layout). Also the bounds every reader of such a file applies, and the
// framing between worker and parent: a safetensors file whose tensors are named
// `L/W` (layer and weight index) and whose metadata lists the names.

import Foundation
import Formats

/// Which of the two Keras weight layouts a file uses.
public enum KerasLayout: String, Sendable {
    /// Keras 1/2 (and Keras 3 legacy `.h5`): `layer_names` on the root or on
    /// `model_weights`, each layer group listing `weight_names`.
    case layerNames = "keras2-h5"
    /// Keras 3 `.weights.h5`: `layers/<group>/vars/0..n`, the layer's name in the
    /// `name` attribute of `vars`.
    case weightsH5 = "keras3-weights-h5"
}

public struct KerasLayer: Sendable {
    /// The Keras layer name (`conv2_block1_1_conv`).
    public var name: String
    /// Weights in file order: the file's weight name (`conv2_block1_1_conv/kernel:0`,
    /// or the var index `0` in a `.weights.h5`) and the tensor.
    public var weights: [(name: String, tensor: Tensor)]
}

public struct KerasWeights: Sendable {
    public var layout: KerasLayout
    /// Layers that hold weights, in file order (layers without weights are left out).
    public var layers: [KerasLayer]
    /// Layers listed without weights (activations, padding, pooling): their count.
    public var weightlessLayers: Int
}

/// Bounds on what a Keras file may declare (SECURITY.md: bounded work and memory).
public struct KerasLimits: Sendable {
    public var maxLayers = 10_000
    public var maxWeightsPerLayer = 64
    public var maxNameBytes = 1024
    public var maxRank = 8
    public var maxElements = 1 << 30
    /// Total tensor bytes; `forFile` scales it with the file size.
    public var maxTotalBytes = 1 << 32

    public init() {}

    /// Limits for a file of `size` bytes: tensors may hold at most 8x the file plus 64 MiB
    /// (Keras weights are stored uncompressed; a compressed or unallocated dataset that
    /// claims more is refused before it is read).
    public static func forFile(size: Int) -> KerasLimits {
        var l = KerasLimits()
        l.maxTotalBytes = size >= 1 << 31 ? 1 << 34 : min(1 << 34, size * 8 + (64 << 20))   // no overflow for any size
        return l
    }
}

/// Worker <-> parent framing.
enum KerasFraming {
    static let layoutKey = "sfnet.keras.layout"
    static let layersKey = "sfnet.keras.layers"
    static let weightlessKey = "sfnet.keras.weightless_layers"

    static func key(_ layer: Int, _ weight: Int) -> String { "\(layer)/\(weight)" }

    /// Metadata and tensors for the safetensors file the worker writes.
    static func encode(_ w: KerasWeights) -> (items: [SafetensorsWriter.Item], metadata: [(String, String)]) {
        var items: [SafetensorsWriter.Item] = []
        var layers: [JSONValue] = []
        for (li, layer) in w.layers.enumerated() {
            layers.append(.array([.string(layer.name), .array(layer.weights.map { .string($0.name) })]))
            for (wi, weight) in layer.weights.enumerated() {
                items.append(SafetensorsWriter.Item(name: key(li, wi), tensor: weight.tensor))
            }
        }
        let metadata = [(layoutKey, w.layout.rawValue), (layersKey, JSONValue.array(layers).serialized),
                        (weightlessKey, String(w.weightlessLayers))]
        return (items, metadata)
    }

    /// The weights in a worker's output, every claim checked against `limits`: the layer
    /// list must name exactly the tensors present, each float32 of a bounded rank and size.
    static func decode(_ c: Checkpoint, limits: KerasLimits) throws -> KerasWeights {
        func bad(_ m: String) -> FormatError { FormatError(.malformed, "worker output: " + m) }
        guard c.format == .safetensors else { throw bad("not a safetensors file") }
        guard let layoutText = c.metadataValue(layoutKey), let layout = KerasLayout(rawValue: layoutText) else {
            throw bad("no or unknown \(layoutKey)")
        }
        guard let weightless = c.metadataValue(weightlessKey).flatMap({ Int($0) }), weightless >= 0 else {
            throw bad("no or invalid \(weightlessKey)")
        }
        guard weightless <= limits.maxLayers else { throw bad("\(weightless) weightless layers, limit \(limits.maxLayers) layers") }
        guard let text = c.metadataValue(layersKey), case .array(let list)? = try? JSONParser.parse(text) else {
            throw bad("no or invalid \(layersKey)")
        }
        guard list.count <= limits.maxLayers else { throw bad("\(list.count) layers, limit \(limits.maxLayers) layers") }
        var layers: [KerasLayer] = []
        var total = 0
        var seen = Set<String>()
        for (li, entry) in list.enumerated() {
            guard case .array(let pair) = entry, pair.count == 2, case .string(let name) = pair[0], case .array(let names) = pair[1],
                  !name.isEmpty, !names.isEmpty else {
                throw bad("layer entry \(li) is not [name, [weight names]]")
            }
            guard name.utf8.count <= limits.maxNameBytes else {
                throw bad("layer entry \(li): name of \(name.utf8.count) bytes, name limit \(limits.maxNameBytes)")
            }
            guard names.count <= limits.maxWeightsPerLayer else {
                throw bad("layer '\(name)': \(names.count) weights, limit \(limits.maxWeightsPerLayer)")
            }
            guard seen.insert(name).inserted else { throw bad("layer '\(name)' listed twice") }
            var weights: [(name: String, tensor: Tensor)] = []
            for (wi, n) in names.enumerated() {
                guard case .string(let wname) = n else { throw bad("weight \(wi) of layer '\(name)' has no valid name") }
                guard wname.utf8.count <= limits.maxNameBytes else {
                    throw bad("weight \(wi) of layer '\(name)': name of \(wname.utf8.count) bytes, name limit \(limits.maxNameBytes)")
                }
                guard let t = c.tensors[key(li, wi)] else { throw bad("tensor \(key(li, wi)) of layer '\(name)' missing") }
                guard t.dtype == .f32 else { throw bad("tensor \(key(li, wi)) has dtype \(t.dtype.shortName), expected f32") }
                guard t.shape.count <= limits.maxRank else {
                    throw bad("tensor \(key(li, wi)) has rank \(t.shape.count), rank limit \(limits.maxRank)")
                }
                guard !t.shape.isEmpty, t.shape.allSatisfy({ $0 > 0 }), t.byteCount == t.numel * 4 else {
                    throw bad("tensor \(key(li, wi)) has shape \(Tensor.shapeString(t.shape))")
                }
                guard t.numel <= limits.maxElements else {
                    throw bad("tensor \(key(li, wi)) has \(t.numel) elements, limit \(limits.maxElements)")
                }
                total += t.byteCount
                guard total <= limits.maxTotalBytes else { throw bad("tensors exceed \(limits.maxTotalBytes) bytes") }
                weights.append((wname, t))
            }
            layers.append(KerasLayer(name: name, weights: weights))
        }
        let listed = layers.reduce(0) { $0 + $1.weights.count }
        guard listed == c.tensors.count else { throw bad("\(c.tensors.count) tensors, the layer list names \(listed)") }
        return KerasWeights(layout: layout, layers: layers, weightlessLayers: weightless)
    }
}
