// `sfnet pretrain`: train a network from scratch on a source task and keep it as native weights
// whose provenance says exactly what they are — the demo's stand-in for a published K400
// checkpoint, which cannot be downloaded where the demo runs. The training is an ordinary
// `finetune --init scratch` run; what this adds is the record (sfnet.source: what the weights
// were pretrained on, the source task's generator settings from synthetic.json, the recipe, seed
// and epochs, the source validation mAP) and reuse of an earlier result made from the same request.

import Convert
import Families
import Foundation
import Formats
import Video

public struct PretrainSummary {
    /// The native weights written (or reused).
    public var weights: String
    /// True when an existing file made from the same request was kept instead of training again.
    public var reused: Bool
    /// What sfnet.source says the weights are.
    public var description: String
    /// The source task's validation mAP of the kept epoch (nil without validation data).
    public var sourceValMAP: Double?
    public var epoch: Int?
    public var seconds: Double
}

public enum Pretrain {
    /// What a synthetic source task's weights are said to be.
    public static let syntheticSourceDescription = "pretrained on a synthetic source task, standing in for K400"

    /// Trains `options` (an `--init scratch` run; `options.out` is the run directory) and writes the kept
    /// epoch's weights to `output` with their provenance. With `reuse`, an existing `output` whose recorded
    /// request equals this one is kept (nothing is trained); otherwise an existing `output` needs `force`.
    public static func run(_ options: FinetuneOptions, output: String, reuse: Bool = false, force: Bool = false,
                           onEvent: @escaping (FinetuneEvent) -> Void = { _ in }) throws -> PretrainSummary {
        guard options.initKind == .scratch else { throw FinetuneError("pretraining starts from scratch (--init scratch, --arch)") }
        let start = Date()
        let request = try self.request(options)
        let fm = FileManager.default
        if fm.fileExists(atPath: output) {
            if reuse, let earlier = try? recordedSource(output), earlier["request"] == request {
                return PretrainSummary(weights: output, reused: true, description: earlier["description"]?.stringValue ?? "?",
                                       sourceValMAP: number(earlier["source_val_map"]), epoch: earlier["epoch"]?.intValue,
                                       seconds: Date().timeIntervalSince(start))
            }
            guard force || reuse else {
                throw FinetuneError("\(output) exists", hint: "--force replaces it; --reuse keeps it when it was made from the same request")
            }
        }
        // Training again (--force, or --reuse of another request): the earlier run's files in the run directory go first,
        // and nothing else in it.
        if force || reuse, let names = try? fm.contentsOfDirectory(atPath: options.out) {
            for n in names where (n.hasPrefix("checkpoint-epoch") && n.hasSuffix(".safetensors"))
                || ["best.safetensors", "metrics.json", "metrics.csv", "report.html"].contains(n) {
                try fm.removeItem(atPath: URL(fileURLWithPath: options.out).appendingPathComponent(n).path)
            }
        }
        let summary = try FinetuneRun(options, onEvent: onEvent).run()
        let kept = try NativeWeights.load(summary.best)
        let epoch = summary.bestEpoch ?? summary.record.epochs.last?.epoch
        let description = request["description"]?.stringValue ?? "?"
        let train = try SHA256.hex(file: options.train)
        var source: [(String, JSONValue)] = [
            ("description", .string(description)),
            // What `sfnet inspect` shows on its source line.
            ("file", .string(options.train)), ("format", .string("sfnet pretrain")), ("naming", .string("pyslowfast")), ("sha256", .string(train)),
            ("tool", .string("sfnet \(sfnetVersion) pretrain")),
        ]
        if case .object(let entries) = request {
            for (k, v) in entries where k != "description" && k != "tool" { source.append((k, v)) }
        }
        source += [
            ("epoch", epoch.map { .int($0) } ?? .null),
            ("source_val_map", summary.bestMAP.map { .double($0) } ?? .null),
            ("run", .string(options.out)),
            ("request", request),
        ]
        try NativeWeights.write(kept.tensors.ordered.map { (name: $0.name, tensor: $0.tensor) }, arch: kept.arch,
                                classes: kept.classes ?? [], source: source, to: output)
        return PretrainSummary(weights: output, reused: false, description: description, sourceValMAP: summary.bestMAP, epoch: epoch,
                               seconds: Date().timeIntervalSince(start))
    }

    /// Everything that decides the weights: what the data is (synthetic.json beside the train manifest, when
    /// sfnet made it), the manifests' hashes, the architecture, the recipe and the seed.
    public static func request(_ o: FinetuneOptions) throws -> JSONValue {
        let folder = URL(fileURLWithPath: o.train).deletingLastPathComponent()
        var task: JSONValue = .null
        if let data = FileManager.default.contents(atPath: folder.appendingPathComponent("synthetic.json").path) {
            task = try data.withUnsafeBytes { try JSONParser.parse($0) }
        }
        let description: String
        switch task["task"]?.stringValue {
        case "source"?: description = syntheticSourceDescription
        case _ where task != .null: description = "pretrained on synthetic data (sfnet data synth)"
        default: description = "pretrained by sfnet on \(o.train)"
        }
        let arch = try o.architecture ?? FinetuneRun.architecture(o.arch)
        let recipe: [(String, JSONValue)] = [
            ("epochs", .int(o.epochs)), ("batch", .int(o.batch)), ("lr", .double(o.lr)), ("warmup_epochs", .double(o.warmupEpochs)),
            ("warmup_start_lr", .double(o.warmupStartLR)), ("schedule", .string(o.schedule)), ("momentum", .double(Double(o.momentum))),
            ("nesterov", .bool(o.nesterov)), ("weight_decay", .double(Double(o.weightDecay))), ("dropout", .double(o.dropout)),
            ("loss", .string(o.loss.rawValue)), ("frames", .int(o.frames)), ("sampling_rate", .int(o.samplingRate)), ("crop", .int(o.crop)),
            ("jitter", .array([.int(o.jitterMin), .int(o.jitterMax)])), ("seed", .string(String(o.seed))),
        ]
        return .object([
            ("description", .string(description)),
            ("tool", .string("sfnet \(sfnetVersion) pretrain")),
            ("source_task", task),
            ("train", .string(o.train)), ("train_sha256", .string(try SHA256.hex(file: o.train))),
            ("val", o.val.map { .string($0) } ?? .null), ("val_sha256", try o.val.map { .string(try SHA256.hex(file: $0)) } ?? .null),
            ("arch", try JSONParser.parse(arch.jsonString())),
            ("init", .string("scratch, PySlowFast init, seed \(o.seed)")),
            ("seed", .string(String(o.seed))), ("epochs", .int(o.epochs)),
            ("recipe", .object(recipe)),
        ])
    }

    static func number(_ v: JSONValue?) -> Double? {
        if case .number(let d, _, _)? = v { return d }
        return nil
    }

    /// The sfnet.source of a native file, parsed.
    public static func recordedSource(_ path: String) throws -> JSONValue {
        let w = try NativeWeights.load(path)
        guard let s = w.metadata.first(where: { $0.key == "sfnet.source" })?.value else { throw FinetuneError("\(path) has no sfnet.source") }
        return try JSONParser.parse(s)
    }
}
