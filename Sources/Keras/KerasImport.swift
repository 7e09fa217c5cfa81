// Keras ResNet weights -> tensors the `keras` key map renames to canonical names
// (`sfnet convert --from keras`).
//
// Keras layouts differ from PyTorch's in ways a rename cannot express, so this
// importer does them first and records each in the report:
// - conv kernels [kh, kw, in, out] -> [out, in, kh, kw]; the Dense kernel [in, out] -> [out, in];
// - Keras convs carry a bias and the canonical ones do not: each bias is folded exactly
//   into the BN that follows, whose running mean absorbs it (mean' = mean - bias);
// - BN epsilon: canonical BN uses 1e-5; a Keras BN with epsilon e is reproduced exactly by
//   var' = var + e - 1e-5. The model config (which holds e) is never read (SECURITY.md 27), so
//   e comes from the naming generation (table below) unless given (`--keras-bn-epsilon`);
// - Keras puts a bottleneck's stride on its first 1x1 conv: the result has `stride_1x1`.
// Weights are taken by position, as Keras's own loader does (a `.weights.h5` has no weight
// names at all): conv/Dense kernel, bias; BN gamma, beta, moving_mean, moving_variance.
// Names in a Keras 1/2 file are checked against that order where they are recognisable.

import Convert
import Foundation
import Formats

public enum KerasImport {
    /// sfnet's (PyTorch's) BatchNorm epsilon.
    public static let canonicalEpsilon = 1e-5

    /// Naming generations of Keras ResNet50, recognised by their layer names, and the BN
    /// epsilon each one's model code used.
    public static let generations: [(name: String, pattern: String, epsilon: Double, source: String)] = [
        ("keras.applications ResNet50 names (conv1_conv, convS_blockB_N_conv/_bn)", #"^(conv1_conv|conv1_bn|conv\d_block\d+_\d_(conv|bn))$"#,
         1.001e-5, "keras.applications resnet.py: BatchNormalization(epsilon=1.001e-5)"),
        ("Keras 2.2 ResNet50 names (conv1, bn_conv1, res2a_branch2a, bn2a_branch2a)", #"^(bn_conv1|res\d[a-z]_branch(1|2[abc])|bn\d[a-z]_branch(1|2[abc]))$"#,
         1e-3, "keras_applications resnet50.py: BatchNormalization() with Keras's default epsilon 1e-3"),
    ]

    /// The generation `layers` use (nil when no layer name is one of theirs).
    static func generation(_ layers: [String]) throws -> (name: String, pattern: String, epsilon: Double, source: String)? {
        let hits = generations.filter { g in
            let re = try! NSRegularExpression(pattern: g.pattern)
            return layers.contains { re.firstMatch(in: $0, range: NSRange($0.startIndex..., in: $0)) != nil }
        }
        if hits.count > 1 { throw FormatError(.malformed, "the layer names mix both Keras ResNet naming generations") }
        return hits.first
    }

    /// Canonical conv module -> the BN module that follows it.
    static func bnModule(following conv: String) -> String {
        conv.hasSuffix("_stem.conv") ? String(conv.dropLast("conv".count)) + "bn" : conv + "_bn"
    }

    static func isBN(_ module: String) -> Bool { module.hasSuffix("_bn") || module.hasSuffix(".bn") }

    /// A BN layer's weights in Keras's order.
    static let bnFields = ["gamma", "beta", "moving_mean", "moving_variance"]

    /// Weight-name spellings of the Keras generations -> field (Keras 1 wrote `conv1_W:0`,
    /// `bn_conv1_running_std:0`, whose "std" held the variance; Keras 2 `conv1/kernel:0`; Keras 3 `conv1/kernel`).
    static let fieldAliases: [String: String] = [
        "kernel": "kernel", "W": "kernel", "bias": "bias", "b": "bias", "gamma": "gamma", "beta": "beta",
        "moving_mean": "moving_mean", "running_mean": "moving_mean", "moving_variance": "moving_variance", "running_std": "moving_variance",
    ]

    /// The field a weight name spells (`conv1_conv/kernel:0` -> kernel, `bn_conv1_running_std:0` -> moving_variance); nil when unrecognised.
    static func fieldName(_ weightName: String, layer: String) -> String? {
        var f = String(weightName.split(separator: "/").last ?? Substring(weightName))
        if let colon = f.lastIndex(of: ":"), f[f.index(after: colon)...].allSatisfy(\.isNumber) { f = String(f[..<colon]) }
        if f.hasPrefix(layer + "_") { f = String(f.dropFirst(layer.count + 1)) }
        return fieldAliases[f]
    }

    /// The tensors of `weights` named `<layer>/<field>` for the `keras` key map, with
    /// kernels transposed, conv biases folded and BN epsilons compensated; notes for the report.
    public static func checkpoint(_ weights: KerasWeights, bnEpsilon: Double? = nil, file: String) throws -> (Checkpoint, [String]) {
        func fail(_ m: String) -> FormatError { FormatError(.malformed, "Keras weights: " + m, file: file) }
        let gen = try generation(weights.layers.map(\.name))
        let eps = bnEpsilon ?? gen?.epsilon ?? 1.001e-5
        guard eps.isFinite, eps >= 0 else { throw fail("BN epsilon \(eps) is not a non-negative number") }
        var notes: [String] = []
        notes.append("read from Keras \(weights.layout.rawValue) \(URL(fileURLWithPath: file).lastPathComponent) by the HDF5 worker: \(weights.layers.count) layers with weights, \(weights.weightlessLayers) without; the model config was not read")
        if let bnEpsilon {
            notes.append("Keras BN epsilon \(bnEpsilon) (given)")
        } else if let gen {
            notes.append("Keras BN epsilon \(gen.epsilon) assumed from the naming (\(gen.name); \(gen.source)); override with --keras-bn-epsilon")
        }

        // 1. Each layer's weights by field, in PyTorch layout.
        struct Unit { var layer: String; var fields: [(field: String, tensor: Tensor)] }
        var units: [(module: String?, unit: Unit)] = []
        var moduleOfLayer: [String: String] = [:]
        var out = TensorMap()
        var actions: [String: [String]] = [:]
        for layer in weights.layers {
            let module = KeyMap.kerasModule(ofLayer: layer.name)
            // Keras itself loads a layer's weights by position (`set_weights` in `weight_names`
            // order), so position decides; recognisable names are checked against it.
            let order = module.map { isBN($0) } == true ? bnFields : ["kernel", "bias"]
            if let module, isBN(module) ? layer.weights.count != 4 : !(1 ... 2).contains(layer.weights.count) {
                throw fail("layer '\(layer.name)' has \(layer.weights.count) weights, expected \(isBN(module) ? "4 (gamma, beta, moving_mean, moving_variance)" : "a kernel and a bias")")
            }
            var fields: [(field: String, tensor: Tensor)] = []
            for (i, w) in layer.weights.enumerated() {
                guard module != nil else { fields.append((String(i), w.tensor)); continue }
                if weights.layout == .layerNames, let named = fieldName(w.name, layer: layer.name), named != order[i] {
                    throw fail("layer '\(layer.name)' weight \(i) is named '\(w.name)'; Keras's order puts \(order[i]) there")
                }
                fields.append((order[i], w.tensor))
            }
            guard let module else {
                // Not a ResNet layer: passed on as it is, so the strict check names it (or --allow-partial drops it).
                for (f, t) in fields { out.set("\(layer.name)/\(f)", t) }
                continue
            }
            if let other = moduleOfLayer.first(where: { $0.value == module }) {
                throw fail("layers '\(other.key)' and '\(layer.name)' both map to \(module)")
            }
            moduleOfLayer[layer.name] = module
            units.append((module, Unit(layer: layer.name, fields: fields)))
        }
        let unitByModule = Dictionary(units.map { ($0.module!, $0.unit) }, uniquingKeysWith: { a, _ in a })

        // 2. Which conv bias folds into which BN.
        var biasOfBN: [String: (layer: String, bias: [Float])] = [:]
        for (module, unit) in units {
            guard let module, !isBN(module), module != "head.projection" else { continue }
            guard let bias = unit.fields.first(where: { $0.field == "bias" })?.tensor else { continue }
            let bn = bnModule(following: module)
            guard let bnUnit = unitByModule[bn] else {
                throw fail("conv layer '\(unit.layer)' has a bias but no BN layer follows it (\(bn)); a bias cannot be represented without one")
            }
            biasOfBN[bn] = ("\(unit.layer)/bias", bias.floats())
            _ = bnUnit
        }

        // 3. The tensors.
        var folded = 0
        for (module, unit) in units {
            guard let module else { continue }
            let fieldNames = unit.fields.map(\.field)
            if isBN(module) {
                guard Set(fieldNames) == ["gamma", "beta", "moving_mean", "moving_variance"], fieldNames.count == 4 else {
                    throw fail("BN layer '\(unit.layer)' has weights \(fieldNames), expected gamma, beta, moving_mean, moving_variance")
                }
                let c = unit.fields[0].tensor.shape
                guard c.count == 1, unit.fields.allSatisfy({ $0.tensor.shape == c }) else {
                    throw fail("BN layer '\(unit.layer)' has shapes \(unit.fields.map { Tensor.shapeString($0.tensor.shape) })")
                }
                for (f, t) in unit.fields {
                    let key = "\(unit.layer)/\(f)"
                    var values = t.floats()
                    var did: [String] = []
                    if f == "moving_mean", let (biasName, bias) = biasOfBN[module] {
                        guard bias.count == values.count else { throw fail("\(biasName) has \(bias.count) values, '\(unit.layer)' \(values.count) channels") }
                        values = zip(values, bias).map { Float(Double($0) - Double($1)) }
                        did.append("minus the conv bias \(biasName) (folded: mean' = mean - bias)")
                        folded += 1
                    }
                    if f == "moving_variance", eps != canonicalEpsilon {
                        values = try values.map { v -> Float in
                            let w = Float(Double(v) + eps - canonicalEpsilon)
                            guard w.isFinite, w > 0 else { throw fail("\(key): variance \(v) + \(eps) - 1e-5 is not positive") }
                            return w
                        }
                        did.append("plus \(eps) - 1e-05 (Keras BN epsilon \(eps) -> 1e-05: var' = var + eps_keras - eps)")
                    }
                    out.set(key, did.isEmpty ? t : floats(values, t.shape))
                    if !did.isEmpty { actions[key] = did }
                }
                continue
            }
            let head = module == "head.projection"
            guard let kernel = unit.fields.first(where: { $0.field == "kernel" })?.tensor,
                  Set(fieldNames).isSubset(of: ["kernel", "bias"]) else {
                throw fail("layer '\(unit.layer)' has weights \(fieldNames), expected kernel\(head ? " and bias" : " (and bias)")")
            }
            let rank = head ? 2 : 4
            guard kernel.shape.count == rank else {
                throw fail("\(unit.layer)/kernel has shape \(Tensor.shapeString(kernel.shape)), expected \(head ? "[in, out]" : "[kh, kw, in, out]")")
            }
            let outC = kernel.shape[rank - 1]
            if let b = unit.fields.first(where: { $0.field == "bias" })?.tensor, b.shape != [outC] {
                throw fail("\(unit.layer)/bias has shape \(Tensor.shapeString(b.shape)), the kernel has \(outC) outputs")
            }
            let key = "\(unit.layer)/kernel"
            out.set(key, moveLastAxisFirst(kernel))
            actions[key] = [head ? "transposed [in,out]=\(Tensor.shapeString(kernel.shape)) -> [out,in]"
                                 : "transposed [kh,kw,in,out]=\(Tensor.shapeString(kernel.shape)) -> [out,in,kh,kw]"]
            if head, let b = unit.fields.first(where: { $0.field == "bias" }) { out.set("\(unit.layer)/bias", b.tensor) }
        }
        if folded > 0 { notes.append("\(folded) Keras conv biases folded exactly into the BN that follows each (running_mean - bias)") }
        if eps != canonicalEpsilon { notes.append("BN epsilon \(eps) -> 1e-05 compensated exactly: running_var + \(eps) - 1e-05") }
        var ckpt = Checkpoint(format: .hdf5, tensors: out)
        ckpt.reportActions = actions
        ckpt.metadata = [("keras.layout", weights.layout.rawValue), ("keras.bn_epsilon", String(eps))]
        return (ckpt, notes)
    }

    static func floats(_ v: [Float], _ shape: [Int]) -> Tensor {
        Tensor(dtype: .f32, shape: shape, data: v.withUnsafeBytes { OwnedBuffer(copying: $0).bytes })
    }

    /// [d0, ..., dn-2, out] -> [out, in, kh, kw] for 4-D ([kh,kw,in,out]) and [out, in] for 2-D ([in,out]).
    static func moveLastAxisFirst(_ t: Tensor) -> Tensor {
        let s = t.shape
        let src = t.floats()
        var dst = [Float](repeating: 0, count: src.count)
        if s.count == 2 {
            let (i, o) = (s[0], s[1])
            for a in 0 ..< i { for b in 0 ..< o { dst[b * i + a] = src[a * o + b] } }
            return floats(dst, [o, i])
        }
        let (kh, kw, ci, co) = (s[0], s[1], s[2], s[3])
        for y in 0 ..< kh { for x in 0 ..< kw { for c in 0 ..< ci { for o in 0 ..< co {
            dst[((o * ci + c) * kh + y) * kw + x] = src[((y * kw + x) * ci + c) * co + o]
        } } } }
        return floats(dst, [co, ci, kh, kw])
    }
}

extension KerasImport {
    /// `sfnet convert --from keras`: the worker (`executable _hdf5-worker`) reads the file,
    /// this importer prepares the tensors, and the ordinary pipeline maps them with the
    /// `keras` key map (arch detection, inflation, dtype policy, provenance, report), with
    /// `stride_1x1` set.
    public static func convert(_ req: ConvertRequest, executable: String, bnEpsilon: Double? = nil,
                               limits: HDF5WorkerLimits? = nil, progress: ((String, Int, Int) -> Void)? = nil) throws -> ConvertSummary {
        let output = req.output ?? ConvertPipeline.defaultOutput(for: req.input)
        if FileManager.default.fileExists(atPath: output), !req.force {
            throw FormatError(.io, "output already exists; use --force to replace it", file: output)
        }
        let weights = try HDF5Worker.read(path: req.input, executable: executable, limits: limits)
        let (ckpt, notes) = try checkpoint(weights, bnEpsilon: bnEpsilon, file: req.input)
        var r = req
        r.output = output
        r.options.naming = .keras
        r.options.stride1x1 = true
        r.preloaded = ckpt
        r.importNotes = notes
        return try ConvertPipeline.run(r, progress: progress)
    }
}
