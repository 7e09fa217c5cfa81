// `sfnet verify`: run the native network on a reference's inputs, compare every
// output it holds, find where a failure starts, and on a pass write the
// verification record that `finetune` requires.

import Families
import Convert
import Formats
import Foundation
import Networks

public struct VerifyReport {
    public var weights: String
    public var weightsSHA256: String
    public var reference: String
    public var referenceSHA256: String
    public var producedBy: String?
    public var arch: ArchConfig
    public var tolerance: Double
    public var comparisons: [Comparison]
    public var seconds: Double
    /// Weight tensors holding NaN or Inf (named so the user knows where the poison is).
    public var nonFiniteWeights: [String] = []
    /// What was compared and why (boring-video frames left out, the inflation mode found).
    public var notes: [String] = []
    /// The dtype(s) the reference stores its expected values in ("float32", "float64", ...).
    public var referenceDType: String = "float32"
    public var passed: Bool { !comparisons.isEmpty && comparisons.allSatisfy(\.passed) && nonFiniteWeights.isEmpty }

    /// The first stage output (in execution order) that fails, with the error just before it:
    /// where the computation starts to diverge.
    public var divergence: String? {
        guard !passed else { return nil }
        let stages = comparisons.filter { $0.name.hasPrefix("activation.") }
        guard let i = stages.firstIndex(where: { !$0.passed }) else {
            return comparisons.first { !$0.passed }.map { "every stage output passes; \($0.name) fails" }
        }
        let before = i > 0 ? String(format: " (previous output %@: rel L2 %.2e)", stages[i - 1].name, stages[i - 1].relativeL2) : ""
        let c = stages[i]
        if let bad = c.firstNonFinite { return "first failing stage: \(c.name): non-finite value at flat index \(bad)\(before)" }
        return String(format: "first failing stage: %@: rel L2 %.2e%@", c.name, c.relativeL2, before)
    }

    public func text() -> String {
        var lines = ["verify \(weights) against \(reference)\(producedBy.map { " (made by \($0))" } ?? "")",
                     "  arch: \(arch.preset ?? "custom") \(arch.familyName), tolerance rel L2 <= \(tolerance)",
                     "  reference dtype: \(referenceDType)"]
        lines.append("  " + "output".padding(toLength: 26, withPad: " ", startingAt: 0) + "  max abs     rel L2      cosine        top-1  top-5  verdict")
        let shown = comparisons.count <= 30 ? comparisons
            : comparisons.filter { !$0.passed || !$0.name.hasPrefix("grad.") && !$0.name.hasPrefix("running.") }
        for c in shown {
            var l = "  " + c.name.padding(toLength: 26, withPad: " ", startingAt: 0)
            l += String(format: "  %-10.3e  %-10.3e  %-12.9f", c.maxAbsError, c.relativeL2, c.cosine)
            l += c.top1Agreement.map { String(format: "  %5.1f%%", $0 * 100) } ?? "       "
            l += c.top5Agreement.map { String(format: "  %5.1f%%", $0 * 100) } ?? "       "
            l += c.passed ? "  ok" : (c.firstNonFinite != nil ? "  FAIL (NaN/Inf)" : "  FAIL")
            lines.append(l)
        }
        if shown.count < comparisons.count {
            let rest = comparisons.filter { c in !shown.contains { $0.name == c.name } }
            lines.append("  ... and \(rest.count) more (\(rest.filter(\.passed).count) ok): gradients and running statistics; --json lists each")
        }
        if let d = divergence { lines.append("  " + d) }
        for n in notes { lines.append("  note: " + n) }
        if !nonFiniteWeights.isEmpty {
            lines.append("  weights with NaN/Inf: " + nonFiniteWeights.prefix(10).joined(separator: ", ") + (nonFiniteWeights.count > 10 ? ", ..." : ""))
        }
        lines.append(String(format: "  %@ in %.2f s", passed ? "PASSED" : "FAILED", seconds))
        return lines.joined(separator: "\n")
    }

    public func json() -> JSONValue {
        func num(_ d: Double) -> JSONValue { d.isFinite ? .double(d) : .null }
        return .object([
            ("passed", .bool(passed)),
            ("weights", .string(weights)), ("weights_sha256", .string(weightsSHA256)),
            ("reference", .string(reference)), ("reference_sha256", .string(referenceSHA256)),
            ("reference_made_by", producedBy.map { .string($0) } ?? .null),
            ("tolerance", .double(tolerance)),
            ("reference_dtype", .string(referenceDType)),
            ("arch", (try? JSONParser.parse(try arch.jsonString())) ?? .null),
            ("outputs", .array(comparisons.map { c in
                .object([("name", .string(c.name)), ("shape", .array(c.shape.map { .int($0) })),
                         ("max_abs_error", num(c.maxAbsError)), ("relative_l2", num(c.relativeL2)), ("cosine", num(c.cosine)),
                         ("top1_agreement", c.top1Agreement.map { .double($0) } ?? .null),
                         ("top5_agreement", c.top5Agreement.map { .double($0) } ?? .null),
                         ("first_non_finite", c.firstNonFinite.map { .int($0) } ?? .null),
                         ("passed", .bool(c.passed))])
            })),
            ("divergence", divergence.map { .string($0) } ?? .null),
            ("non_finite_weights", .array(nonFiniteWeights.map { .string($0) })),
            ("notes", .array(notes.map { .string($0) })),
            ("seconds", .double(seconds)),
            ("tool", .string("sfnet \(sfnetVersion)")),
        ])
    }
}


public enum Verifier {
    /// The record's path for a weights file.
    public static func recordPath(for weights: String) -> String { weights + ".verified.json" }

    public static func run(weights: String, reference: String, tolerance: Double = 1e-5) throws -> VerifyReport {
        let start = Date()
        let refFile = try CheckpointReader.read(path: reference)
        let ck = try CheckpointReader.read(path: weights)
        var (config, notes) = try resolveArch(reference: reference, refFile, weights: weights, ck)
        if TrainStepCheck.isTrainReference(refFile) {
            return try TrainStepCheck.run(weights: weights, ck: ck, reference: reference, ref: refFile, config: config, archNotes: notes,
                                          tolerance: tolerance, start: start)
        }
        let ref = try Reference.load(path: reference, arch: config)
        if !ref.expected.contains(where: { ["output.logits", "activation.head.pool"].contains($0.name) }) {
            // Nothing of the head is compared: pool over the whole res5 of these inputs, whatever clip the arch records.
            let fitted = fitHead(config, to: ref.inputs)
            if fitted != config {
                notes.append("no head output in the reference: the head pool is sized to the inputs (num_frames \(fitted.numFrames), "
                             + "train_crop \(fitted.trainCrop)); it does not affect the stage outputs compared")
                config = fitted
            }
        }
        let model = try makeEvalNetwork(config: config, weights: ck.tensors)
        if let frames = ref.boringVideoFrames, let model = model as? EvalNetwork {
            var report = try boringVideo(model, ref, frames: frames, weights: weights, ck: ck, tolerance: tolerance, start: start)
            report.notes = notes + report.notes
            return report
        }
        let out = try model.forward(ref.inputs, capture: ref.expected.contains { $0.name != "output.logits" })
        var comparisons: [Comparison] = []
        for expected in ref.expected {
            let name = expected.name
            let got: FloatTensor?
            if name == "output.logits" { got = out.logits } else {
                let key = String(name.dropFirst("activation.".count))
                got = out.activations.first { $0.name == key }?.value
            }
            guard let g = got else {
                throw VerifyError.badReference(reference, "\(name) is not an output of this architecture (\(config.model.rawValue))")
            }
            comparisons.append(Comparison.compare(name, got: g, expected: expected, tolerance: tolerance, isLogits: name == "output.logits"))
        }
        var report = VerifyReport(weights: weights, weightsSHA256: try SHA256.hex(file: weights), reference: reference,
                                  referenceSHA256: ref.sha256, producedBy: ref.producedBy, arch: config, tolerance: tolerance,
                                  comparisons: comparisons, seconds: Date().timeIntervalSince(start))
        report.nonFiniteWeights = ck.tensors.nonFiniteNames
        if !report.passed, inflationMode(ck) == "mean" {
            notes.append("the weights are mean-inflated: if the reference repeats one image in time, the frames within \(temporalBorder(config)) of "
                         + "each end see the clip's zero padding and differ from the 2D network; a boring-video reference "
                         + "(sfnet.boring_video) leaves them out")
        }
        report.notes = notes
        report.referenceDType = ref.dtypeDescription
        return report
    }

    /// Fields of sfnet.arch that never change what verify computes: labels (the preset name, `depth`:
    /// the network is built from stage_depths), dropout (off in eval and in the train check) and the
    /// head activation (logits are compared before it).
    static let archLabels: Set<String> = ["preset", "depth", "dropout", "head_activation"]
    /// Fields that describe the clip the head pools over, not the weights (convert cannot read them
    /// from tensors and records a default): the reference's values win.
    static let archClip: Set<String> = ["num_frames", "train_crop"]

    /// The architecture the check runs: the reference's sfnet.arch, the weights', or both when they
    /// agree on every field that changes the computation (a disagreement is an error naming both).
    static func resolveArch(reference: String, _ refFile: Checkpoint, weights: String, _ ck: Checkpoint) throws -> (ArchConfig, [String]) {
        let fromRef: ArchConfig?, fromWeights: ArchConfig?
        do { fromRef = try NativeMetadata.architecture(in: refFile) } catch {
            throw VerifyError.badReference(reference, "\(NativeMetadata.archKey) is not a valid architecture: \(error)")
        }
        do { fromWeights = try NativeMetadata.architecture(in: ck) } catch {
            throw VerifyError.weights(weights, "\(NativeMetadata.archKey) is not a valid architecture: \(error)")
        }
        switch (fromRef, fromWeights) {
        case (nil, nil):
            throw VerifyError.weights(weights, "no architecture: neither the reference nor the weights carry sfnet.arch (convert the weights with `sfnet convert` first)")
        case (let r?, nil): return (r, ["architecture from the reference's sfnet.arch (the weights carry none)"])
        case (nil, let w?): return (w, ["architecture from the weights' sfnet.arch (the reference carries none)"])
        case (let r?, let w?):
            let (rj, wj) = (try archFields(r), try archFields(w))
            let differ = rj.keys.sorted().filter { rj[$0] != wj[$0] && !archLabels.contains($0) }
            let wrong = differ.filter { !archClip.contains($0) }
            func describe(_ a: ArchConfig) -> String { "\(a.preset ?? "custom") (\(a.familyName))" }
            if !wrong.isEmpty {
                let fields = wrong.map { "\($0) \(rj[$0]?.serialized ?? "-") vs \(wj[$0]?.serialized ?? "-")" }.joined(separator: ", ")
                throw VerifyError.archMismatch(reference: reference, weights: weights,
                    "reference sfnet.arch \(describe(r)) disagrees with the weights' \(describe(w)): \(fields) (reference first); "
                    + "convert the weights with the reference's architecture (--arch-json) or use a reference made for this one")
            }
            var config = w
            var notes: [String] = []
            if !differ.isEmpty {
                (config.numFrames, config.trainCrop) = (r.numFrames, r.trainCrop)
                notes.append("the head pools over the reference's clip (num_frames \(r.numFrames), train_crop \(r.trainCrop)); "
                             + "the weights' sfnet.arch records \(w.numFrames) / \(w.trainCrop), which convert cannot read from tensors")
            }
            return (config, notes)
        }
    }

    static func archFields(_ a: ArchConfig) throws -> [String: JSONValue] {
        guard case .object(let pairs) = try JSONParser.parse(try a.jsonString()) else { return [:] }
        return Dictionary(pairs, uniquingKeysWith: { x, _ in x })
    }

    /// The config with the head's pool kernel covering these inputs' whole res5 (for references
    /// that compare no head output).
    static func fitHead(_ a: ArchConfig, to inputs: [FloatTensor]) -> ArchConfig {
        var c = a
        // A transformer's clip fixes its token grid (and TimeSformer's tables): nothing to fit.
        guard !a.model.isTransformer, let slow = inputs.first, slow.rank == 5 || slow.rank == 4 else { return c }
        let h = slow.shape[slow.rank - 2]
        c.trainCrop = 32 * max(1, (h + 31) / 32)   // res5 is ceil(h / 32) wide: the pool covers all of it
        if slow.rank == 5 {
            switch a.model {
            case .slowfast: c.numFrames = slow.shape[2] * a.alpha
            case .slow, .x3d: c.numFrames = slow.shape[2]
            case .resnet, .videomae, .timesformer: break
            }
        }
        return c
    }

    /// The inflation mode recorded in the weights' conversion report ("inflated T=3 (mean)"), if any.
    static func inflationMode(_ ck: Checkpoint) -> String? {
        guard let r = ck.metadataValue("sfnet.report"), let j = try? JSONParser.parse(r), case .array(let ts)? = j["tensors"] else { return nil }
        for t in ts {
            guard let a = t["action"]?.stringValue, a.contains("inflated T=") else { continue }
            for mode in ["mean", "center"] where a.contains("(\(mode))") { return mode }
        }
        return nil
    }

    /// Frames at each end of the slow pathway's res5 output whose temporal receptive field reaches
    /// past the clip: every conv with temporal kernel k > 1 on the slow path widens it by k / 2.
    public static func temporalBorder(_ a: ArchConfig) -> Int {
        var border = a.temporalKernels[0][0] / 2
        for (i, depth) in a.stageDepths.enumerated() { border += depth * (a.temporalKernels[i + 1][0] / 2) }
        return border
    }

    /// The boring-video check: res5 of the slow pathway, frame by frame, against the 2D network's.
    static func boringVideo(_ model: EvalNetwork, _ ref: Reference, frames: Int, weights: String, ck: Checkpoint,
                            tolerance: Double, start: Date) throws -> VerifyReport {
        let out = try model.forward(ref.inputs, capture: true)
        guard let got = out.activations.first(where: { $0.name == "s5.pathway0" })?.value else {
            throw VerifyError.badReference(ref.path, "s5.pathway0 is not an output of this architecture")
        }
        let expected = ref.expected[0].value
        let (n, c, t, plane) = (got.shape[0], got.shape[1], got.shape[2], got.shape[3] * got.shape[4])
        guard expected.shape == [n, c, 1, got.shape[3], got.shape[4]] else {
            throw VerifyError.badReference(ref.path, "activation.s5.pathway0 is \(expected.shape), the network's res5 frame is \([n, c, 1, got.shape[3], got.shape[4]])")
        }
        let mode = inflationMode(ck)
        let border = mode == "mean" ? temporalBorder(model.config) : 0
        var notes = ["boring video: one image over \(frames) slow frames; res5 of the slow pathway compared frame by frame with the 2D network's"]
        switch mode {
        case "center"?: notes.append("center inflation (from the weights' report): every frame must match")
        case "mean"?: notes.append("mean inflation (from the weights' report): the \(border) frames at each end see the clip's zero padding through their temporal receptive field and are not compared")
        default: notes.append("the weights' report records no inflation: every frame must match")
        }
        var comparisons: [Comparison] = []
        for f in border ..< max(border, t - border) {
            let frame = FloatTensor(uninitialized: expected.shape)
            for b in 0 ..< n { for ch in 0 ..< c {
                (frame.pointer + (b * c + ch) * plane).update(from: got.pointer + ((b * c + ch) * t + f) * plane, count: plane)
            } }
            comparisons.append(Comparison.compare("activation.s5.pathway0[t=\(f)]", got: frame, expected: expected, tolerance: tolerance, isLogits: false))
        }
        if comparisons.isEmpty {
            comparisons.append(Comparison(name: "activation.s5.pathway0 (no frame inside the clip)", shape: got.shape, maxAbsError: .infinity,
                                          relativeL2: .infinity, cosine: 0, top1Agreement: nil, top5Agreement: nil, firstNonFinite: nil, passed: false))
            notes.append("no frame of \(t) lies outside the border of \(border): use a reference with more than \(2 * border) slow frames")
        }
        var report = VerifyReport(weights: weights, weightsSHA256: try SHA256.hex(file: weights), reference: ref.path,
                                  referenceSHA256: ref.sha256, producedBy: ref.producedBy, arch: model.config, tolerance: tolerance,
                                  comparisons: comparisons, seconds: Date().timeIntervalSince(start))
        report.notes = notes
        report.nonFiniteWeights = ck.tensors.nonFiniteNames
        return report
    }

    /// Writes the passing record beside the weights (atomically; replaces an older record).
    public static func writeRecord(_ report: VerifyReport) throws {
        precondition(report.passed)
        let text = Array((report.json().serialized + "\n").utf8)
        try AtomicFile.write(to: recordPath(for: report.weights), overwrite: true) { out in
            try text.withUnsafeBytes { try out.write($0) }
        }
    }

    /// A passing record for `weights` whose digest matches the file as it is now, if any.
    public static func passingRecord(for weights: String) -> JSONValue? {
        guard let data = FileManager.default.contents(atPath: recordPath(for: weights)),
              let j = try? data.withUnsafeBytes({ try JSONParser.parse($0) }),
              j["passed"] == .bool(true),
              let sha = j["weights_sha256"]?.stringValue,
              let now = try? SHA256.hex(file: weights), now == sha else { return nil }
        return j
    }
}
