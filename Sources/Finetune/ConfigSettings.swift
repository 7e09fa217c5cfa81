// Where each fine-tuning setting came from (sfnet default, PySlowFast default, config file key,
// command line) and the effective settings as `--print-config` lists them.

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
            ("momentum", "\(momentum)"), ("nesterov", "\(nesterov)"), ("weight-decay", "\(weightDecay)"),
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
