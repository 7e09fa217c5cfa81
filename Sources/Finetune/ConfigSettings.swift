// Where each fine-tuning setting came from (sfnet default, PySlowFast default, config file key,
// command line) and the effective settings as `--print-config` lists them.

import Families
import Foundation

/// One config key as the run took it: the key, its value as written, its line, and the sfnet
/// setting it set (for an ignored key: the reason it was ignored).
public struct ConfigSetting: Codable, Sendable, Equatable {
    public var key: String
    public var value: String
    public var line: Int
    public var setting: String
    public init(key: String, value: String, line: Int, setting: String) {
        (self.key, self.value, self.line, self.setting) = (key, value, line, setting)
    }
}

/// setting name (as the command-line option is spelled) -> where its value came from.
public struct SettingSources: Sendable, Equatable {
    public var origin: [String: String] = [:]
    public init() {}
    public subscript(_ setting: String) -> String { origin[setting] ?? "default" }
    public mutating func set(_ setting: String, _ source: String) { origin[setting] = source }
}

extension FinetuneOptions {
    /// Every setting `--print-config` shows, in order, with its value as text.
    public var effectiveSettings: [(setting: String, value: String)] {
        func list<T>(_ xs: [T]) -> String { "[" + xs.map { "\($0)" }.joined(separator: ", ") + "]" }
        var s: [(String, String)] = [
            ("train", train.isEmpty ? "(none)" : train), ("val", val ?? "(none)"), ("test", test ?? "(none)"),
            ("frame-root", frameRoot ?? "(beside the list)"), ("classes", classes ?? "(classes.txt beside --train, else the manifest's labels)"),
            ("init", initKind.rawValue), ("weights", weights ?? "(none)"),
        ]
        if let a = architecture {
            s.append(("arch", a.summary))
        } else {
            s.append(("arch", initKind == .scratch ? arch : "(the weights')"))
        }
        s += [
            ("epochs", "\(epochs)"), ("batch", "\(batch)"), ("lr", "\(lr)"), ("schedule", schedule),
            ("lr-steps", schedule == "steps" ? zip(lrSteps, lrRelative).map { "\($0):\($1)" }.joined(separator: " ") : "(not used)"),
            ("cosine-end-lr", schedule == "cosine" ? "\(cosineEndLR)" : "(not used)"),
            ("cosine-after-warmup", schedule == "cosine" ? "\(cosineAfterWarmup)" : "(not used)"),
            ("warmup-epochs", "\(warmupEpochs)"), ("warmup-start-lr", "\(warmupStartLR)"),
            ("optimizer", optimizer), ("momentum", optimizer == "sgd" ? "\(momentum)" : "(not used)"),
            ("nesterov", optimizer == "sgd" ? "\(nesterov)" : "(not used)"),
            ("adam-betas", optimizer == "adamw" ? "\(adamBeta1) \(adamBeta2)" : "(not used)"), ("weight-decay", "\(weightDecay)"),
            ("layer-decay", "\(layerDecay)"), ("drop-path", "\(dropPath)"), ("label-smoothing", "\(labelSmoothing)"),
            ("dropout", "\(dropout)"), ("loss", loss == .bce ? "bce (sigmoid head)" : "ce (softmax head)"),
            ("frames", "\(frames)"), ("sampling-rate", "\(samplingRate)"), ("crop", "\(crop)"),
            ("jitter", "\(jitterMin) \(jitterMax)"), ("inverse-uniform-jitter", "\(inverseUniformJitter)"),
            ("bgr", "\(reverseChannels)"), ("mean", list(mean)), ("std", list(std)),
            ("val-views", "\(valSpatialCrops)x\(valTemporalViews)"),
            ("test-views", "\(testSpatialCrops ?? valSpatialCrops)x\(testTemporalViews ?? valTemporalViews)"),
            ("test-crop", "\(testCrop ?? crop)"),
            ("ensemble", ensemble?.rawValue ?? "\(EnsembleMethod.byHead(multiLabel: loss == .bce).rawValue) (by head)"),
            ("precise-bn", preciseBN > 0 ? "\(preciseBN) batches" : "0 (off)"),
            ("seed", "\(seed)"), ("threads", "\(threads)"), ("workers", "\(workers)"),
        ]
        return s.map { (setting: $0.0, value: $0.1) }
    }

    /// `--print-config`: the effective settings, where each came from, and the config's ignored keys.
    public func printedConfig(sources: SettingSources) -> String {
        let rows = effectiveSettings
        let w0 = rows.map(\.setting.count).max() ?? 0
        let w1 = min(48, rows.map(\.value.count).max() ?? 0)
        var out = configFile.map { "config: \($0)\n" } ?? ""
        for r in rows {
            out += r.setting.padding(toLength: w0, withPad: " ", startingAt: 0) + "  "
                + (r.value.count < w1 ? r.value.padding(toLength: w1, withPad: " ", startingAt: 0) : r.value) + "  " + sources[r.setting] + "\n"
        }
        if !ignoredConfigKeys.isEmpty {
            out += "ignored keys of \(configFile ?? "the config"):\n"
            for k in ignoredConfigKeys { out += "  \(k.key): \(k.value) (line \(k.line)): \(k.setting)\n" }
        }
        return out
    }
}

extension FinetuneOptions {
    /// The fine-tuning recipe VideoMAE is published with (Tong et al. 2022, Kinetics-400 fine-tuning): AdamW
    /// (0.9, 0.999), base LR 5e-4 per 256 clips scaled linearly to the batch, weight decay 0.05 (none on
    /// biases, norms and position/class tables), layer-wise LR decay 0.75, 5 warm-up epochs from 0, then
    /// cosine to 1e-6, drop path 0.1, label smoothing 0.1, no head dropout. sfnet uses it for TimeSformer too.
    public static let transformerRecipeBaseLR = 5e-4
    public static let transformerRecipeBatch = 256

    /// Applies the transformer recipe to every setting whose source is still a default, and the network's own
    /// clip (frames and crop fix its token grid: TimeSformer's learned tables, VideoMAE's sinusoid), noting each.
    public mutating func applyTransformerRecipe(arch a: ArchConfig, sources: inout SettingSources) {
        let origin = "the \(a.model.rawValue) recipe"
        func isDefault(_ k: String) -> Bool { sources[k].hasPrefix("default") }
        if isDefault("optimizer") { optimizer = "adamw"; sources.set("optimizer", origin) }
        if isDefault("lr") && isDefault("warmup-start-lr") {
            lr = Self.transformerRecipeBaseLR * Double(batch) / Double(Self.transformerRecipeBatch)
            warmupStartLR = 0
            lrScaling = String(format: "learning rate from the %@ recipe: base %g per %d clips x %d/%d = %g (linear scaling rule), "
                + "warm-up from 0; --lr sets it yourself", a.model.rawValue, Self.transformerRecipeBaseLR, Self.transformerRecipeBatch,
                batch, Self.transformerRecipeBatch, lr)
            sources.set("lr", origin + ", scaled for batch \(batch)")
            sources.set("warmup-start-lr", origin)
        }
        if isDefault("weight-decay") { weightDecay = 0.05; sources.set("weight-decay", origin) }
        if isDefault("layer-decay") { layerDecay = 0.75; sources.set("layer-decay", origin) }
        if isDefault("drop-path") { dropPath = 0.1; sources.set("drop-path", origin) }
        if isDefault("label-smoothing") { labelSmoothing = 0.1; sources.set("label-smoothing", origin) }
        if isDefault("schedule") {
            schedule = "cosine"
            sources.set("schedule", origin)
            if isDefault("cosine-end-lr") { cosineEndLR = 1e-6; sources.set("cosine-end-lr", origin) }
        }
        if isDefault("warmup-epochs"), warmupEpochs > Double(epochs) / 4 {
            // The recipe warms up for 5 of 75-100 epochs; a short run keeps the first quarter for it.
            warmupEpochs = Double(epochs) / 4
            sources.set("warmup-epochs", origin + " (5, at most a quarter of the epochs)")
        }
        if isDefault("dropout") { dropout = 0; sources.set("dropout", origin + " (no head dropout)") }
        let clip = ArchConfig.clipRecipe(preset: a.preset ?? "")
        if isDefault("frames") { frames = a.numFrames; sources.set("frames", "the network (\(a.numFrames) frames)") }
        if isDefault("crop") { crop = a.trainCrop; sources.set("crop", "the network (\(a.trainCrop)²)") }
        if isDefault("sampling-rate"), let clip { samplingRate = clip.samplingRate; sources.set("sampling-rate", origin) }
        if isDefault("jitter") {
            (jitterMin, jitterMax) = clip.map { (max($0.jitter.min, crop), max($0.jitter.max, crop)) } ?? (crop, crop * 8 / 7)
            sources.set("jitter", clip == nil ? "the network's crop (crop to 8/7 of it)" : origin)
        }
        if isDefault("test-crop") { testCrop = crop; sources.set("test-crop", "the network (\(crop)²)") }
    }
}
