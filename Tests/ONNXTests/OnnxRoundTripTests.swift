// Issue 5, parts 2-3: `--external-data` exports (page-aligned data file named by its
// content, read back bit-exact by sfnet's own importer with SECURITY.md 23-24 checks)
// and ONNX -> native -> ONNX: torch.onnx.export's tiny SlowFast, converted and
// exported again with --fold-bn, carries every float initializer bit for bit.

import Families
import Convert
import Foundation
import Formats
@testable import ONNX
import XCTest

final class OnnxRoundTripTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures")

    func fixture(_ rel: String) -> String { Self.fixtures.appendingPathComponent(rel).path }

    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-onnx-rt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func referenceArch(_ name: String) throws -> ArchConfig {
        let ck = try CheckpointReader.read(path: fixture("reference/\(name)"))
        return try ArchConfig.fromJSON(XCTUnwrap(ck.metadataValue("sfnet.arch")))
    }

    func dataFiles(_ dir: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".data") }.sorted()
    }

    func testExternalDataExportIsAlignedNamedByContentAndReadsBackBitExact() throws {
        let dir = try tempDir()
        let w = dir.appendingPathComponent("w.safetensors").path
        _ = try ConvertPipeline.run(ConvertRequest(input: fixture("torch/tiny_pyslowfast.pyth"), output: w,
                                                   options: ConvertOptions(arch: referenceArch("tiny_slowfast_8x8_ref.safetensors"))))
        let out = dir.appendingPathComponent("m.onnx").path
        let s = try OnnxExporter.export(OnnxExportRequest(input: w, output: out, externalData: true))
        let dataFile = try XCTUnwrap(s.dataFile)
        let name = URL(fileURLWithPath: dataFile).lastPathComponent
        XCTAssertTrue(name.hasPrefix("m.onnx.") && name.hasSuffix(".data") && name.count == "m.onnx.".count + 12 + 5, name)
        XCTAssertEqual(try dataFiles(dir), [name])

        // The model itself holds only the small initializers; the large ones point into the data file.
        let raw = try OnnxModel.read(path: out)
        let external = raw.initializers.filter { $0.external != nil }
        XCTAssertGreaterThan(external.count, 50)
        let dataSize = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: dataFile)[.size] as? Int)
        for i in raw.initializers {
            if let e = i.external {
                XCTAssertEqual(e.location, name)
                XCTAssertEqual(e.offset % 4096, 0, i.name)
                XCTAssertLessThanOrEqual(e.offset + e.length, dataSize, i.name)
                XCTAssertEqual(i.rawData.count, 0, i.name)
            } else {
                XCTAssertLessThan(i.rawData.count, 1024, i.name)
            }
        }
        // The model file lost exactly the external bytes (plus under 96 bytes of location entries per initializer).
        let inlineOut = dir.appendingPathComponent("inline.onnx").path
        _ = try OnnxExporter.export(OnnxExportRequest(input: w, output: inlineOut))
        let size = { (p: String) in try XCTUnwrap(FileManager.default.attributesOfItem(atPath: p)[.size] as? Int) }
        let moved = external.reduce(0) { $0 + $1.external!.length }
        XCTAssertLessThan(try size(out), try size(inlineOut) - moved + external.count * 96)
        try FileManager.default.removeItem(atPath: inlineOut)

        // Read back through the importer (external data resolved with the SECURITY.md checks): every tensor bit-exact.
        let native = try CheckpointReader.read(path: w)
        let back = try OnnxImport.read(path: out)
        for (n, t) in native.tensors.ordered where t.dtype.isFloatingPoint {
            XCTAssertEqual(back.tensors[n]?.data.array, t.data.array, n)
        }

        // Same content again: same data file, nothing else. New content (--fold-bn): the old data file goes
        // only after the new model is in place.
        _ = try OnnxExporter.export(OnnxExportRequest(input: w, output: out, externalData: true, force: true))
        XCTAssertEqual(try dataFiles(dir), [name])
        let folded = try OnnxExporter.export(OnnxExportRequest(input: w, output: out, foldBN: true, externalData: true, force: true))
        let foldedName = URL(fileURLWithPath: try XCTUnwrap(folded.dataFile)).lastPathComponent
        XCTAssertNotEqual(foldedName, name)
        XCTAssertEqual(try dataFiles(dir), [foldedName])
        // A data file of another model in the same folder is never touched.
        try Data([1, 2, 3]).write(to: dir.appendingPathComponent("other.onnx.0123456789ab.data"))
        _ = try OnnxExporter.export(OnnxExportRequest(input: w, output: out, externalData: true, force: true))
        XCTAssertEqual(try dataFiles(dir), [name, "other.onnx.0123456789ab.data"].sorted())
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".sfnet-tmp-") }
        XCTAssertEqual(leftovers, [])
    }

    /// The weight and bias of every Conv and of the head as float32 bytes, head weights as [out, in]
    /// (torch.onnx.export writes the projection as MatMul with a [in, out] weight plus Add, sfnet as Gemm
    /// with [out, in] and transB 1).
    func parameters(_ m: OnnxModel) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        for n in m.nodes where ["Conv", "Gemm", "MatMul", "Add"].contains(n.opType) {
            for (k, input) in n.inputs.enumerated() {
                guard let t = m.initializer(input) else { continue }
                XCTAssertEqual(t.dataType, OnnxInitializer.float)
                if (n.opType == "Gemm" && k == 1 && n.attribute("transB") != .int(1)) || (n.opType == "MatMul" && k == 1) {
                    let (rows, cols) = (t.dims[0], t.dims[1])
                    let f = t.rawData.array.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                    var tr = [Float](repeating: 0, count: f.count)
                    for r in 0 ..< rows { for c in 0 ..< cols { tr[c * rows + r] = f[r * cols + c] } }
                    out.append(tr.withUnsafeBytes { Array($0) })
                } else {
                    out.append(t.rawData.array)
                }
            }
        }
        return out.sorted { $0.lexicographicallyPrecedes($1) }
    }

    func testOnnxToNativeToOnnxKeepsEveryInitializerBitExact() throws {
        let dir = try tempDir()
        let source = fixture("onnx/tiny_slowfast_8x8.onnx")
        let w = dir.appendingPathComponent("w.safetensors").path
        _ = try OnnxImport.convert(ConvertRequest(input: source, output: w,
                                                  options: ConvertOptions(arch: referenceArch("tiny_slowfast_8x8_ref.safetensors"))))
        let out = dir.appendingPathComponent("again.onnx").path
        _ = try OnnxExporter.export(OnnxExportRequest(input: w, output: out, foldBN: true))
        let original = try OnnxModel.read(path: source)
        let again = try OnnxModel.read(path: out)
        XCTAssertEqual(original.nodes.filter { $0.opType == "Conv" }.count, again.nodes.filter { $0.opType == "Conv" }.count)
        XCTAssertEqual(again.nodes.filter { $0.opType == "BatchNormalization" }.count, 0)
        let a = try parameters(original), b = try parameters(again)
        XCTAssertGreaterThan(a.count, 100)
        XCTAssertEqual(a.count, b.count)
        let differing = zip(a, b).filter { $0 != $1 }.count
        XCTAssertEqual(differing, 0, "\(differing) of \(a.count) conv/head tensors are not bit-exact after ONNX -> native -> ONNX")
        // And the float initializers hold nothing else (no stray constants in either graph).
        XCTAssertEqual(original.initializers.filter { $0.dataType == OnnxInitializer.float }.count, a.count)
        XCTAssertEqual(again.initializers.filter { $0.dataType == OnnxInitializer.float }.count, b.count)
    }
}
