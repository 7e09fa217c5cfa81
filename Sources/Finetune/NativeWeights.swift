// Native weights in and out of fine-tuning: read `sfnet.arch` and the class names
// (`sfnet.classes`), gate on the verification record, and write a run's weights as a
// native file every other command (eval, predict, export, verify) reads.

import Families
import Convert
import Foundation
import Formats
import Verify

public struct NativeWeights {
    public var path: String
    public var arch: ArchConfig
    public var tensors: TensorMap
    /// Class names in head order, when the file records them (fine-tuned weights do).
    public var classes: [String]?
    public var metadata: [(key: String, value: String)]

    public static let classesKey = NativeMetadata.classesKey

    public static func load(_ path: String) throws -> NativeWeights {
        let ck = try CheckpointReader.read(path: path)
        let arch: ArchConfig
        do { arch = try NativeMetadata.requireNative(ck) } catch FamilyError.notNative(let reason) {
            throw FinetuneError("\(path): not native sfnet weights (\(reason))",
                                hint: "convert it first: sfnet convert \(URL(fileURLWithPath: path).lastPathComponent)")
        }
        var classes: [String]?
        if let c = ck.metadataValue(classesKey) {
            guard let j = try? JSONParser.parse(c), case .array(let xs) = j else { throw FinetuneError("\(path): \(classesKey) is not a JSON array of names") }
            classes = xs.compactMap(\.stringValue)
            guard classes!.count == arch.numClasses else {
                throw FinetuneError("\(path): \(classesKey) names \(classes!.count) classes, the head has \(arch.numClasses)")
            }
        }
        var tensors = TensorMap()
        for (n, t) in ck.tensors.ordered where !n.hasPrefix("optimizer.") { tensors.set(n, t) }
        return NativeWeights(path: path, arch: arch, tensors: tensors, classes: classes, metadata: ck.metadata)
    }

    /// The class name of head index `i` ("class 17" when the weights carry no names).
    public func className(_ i: Int) -> String { classes.map { $0[i] } ?? "class \(i)" }

    /// The verification record that gates fine-tuning, or an error saying what to run.
    public static func requireVerified(_ path: String) throws -> JSONValue {
        guard let record = Verifier.passingRecord(for: path) else {
            throw FinetuneError("\(path) has no passing verification record (\(Verifier.recordPath(for: path)) missing, failed, or for other bytes)",
                                hint: "run `sfnet verify \(path) --reference REF.safetensors` first, or pass --skip-verify (recorded in the run)")
        }
        return record
    }

    /// Writes `tensors` as a native file (what `sfnet convert` writes, plus class names and provenance).
    public static func write(_ tensors: [(name: String, tensor: Tensor)], arch: ArchConfig, classes: [String], source: [(String, JSONValue)],
                             to path: String) throws {
        let meta: [(String, String)] = try NativeMetadata.header(arch) + [
            (classesKey, JSONValue.array(classes.map { .string($0) }).serialized),
            (NativeMetadata.sourceKey, JSONValue.object(source).serialized),
        ]
        try SafetensorsWriter.write(tensors.map { SafetensorsWriter.Item(name: $0.name, tensor: $0.tensor) }, metadata: meta,
                                    to: path, overwrite: true)
    }
}
