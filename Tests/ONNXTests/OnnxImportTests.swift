// `sfnet convert --from onnx` (issue 4, part 2): torch.onnx.export outputs of the tiny
// SlowFast 8x8 and the tiny 2D ResNet (fixtures/generate_onnx.py: eval, BN folded,
// default `onnx::Conv_N` names) mapped to canonical names from the graph, converted,
// and verified against the PyTorch references at relative L2 <= 1e-5.

import Families
import Convert
import Foundation
import Formats
@testable import ONNX
import Verify
import XCTest

final class OnnxImportTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures")

    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-onnx-import-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func fixture(_ rel: String) -> String { Self.fixtures.appendingPathComponent(rel).path }

    func referenceArch(_ name: String) throws -> ArchConfig {
        let ck = try CheckpointReader.read(path: fixture("reference/\(name)"))
        return try ArchConfig.fromJSON(XCTUnwrap(ck.metadataValue("sfnet.arch")))
    }

    func testIdentityBatchNormIsExact() {
        XCTAssertTrue(OnnxImport.identityIsExact)
        XCTAssertEqual(OnnxImport.identityVar + OnnxImport.eps, 1)
        // (x - 0) / sqrt(var + eps) * 1 + b == x + b for any x, b in float32.
        let scale = 1 / (OnnxImport.identityVar + OnnxImport.eps).squareRoot()
        for (x, b) in [(Float(0.3), Float(-1.7)), (1e-30, 3), (-12345.678, 0.001)] {
            XCTAssertEqual((x - 0) * scale * 1 + b, x + b)
        }
    }

    func testSlowFastGraphMapsToCanonicalNames() throws {
        let arch = try referenceArch("tiny_slowfast_8x8_ref.safetensors")
        let ck = try OnnxImport.read(path: fixture("onnx/tiny_slowfast_8x8.onnx"), arch: arch)
        XCTAssertTrue(ck.tensors.names.allSatisfy { Naming.isCanonical($0) || $0.hasPrefix("head.") })
        XCTAssertEqual(ck.metadataValue("onnx.pathways"), "2")
        XCTAssertEqual(ck.metadataValue("onnx.stage_depths"), "3,4,6,3")
        XCTAssertEqual(ck.metadataValue("onnx.fusions"), "4")
        XCTAssertEqual(ck.metadataValue("onnx.folded_bn"), "110")
        XCTAssertEqual(ck.tensors["s2.pathway1_res0.branch1.weight"]?.shape, [4, 1, 1, 1, 1])
        XCTAssertEqual(ck.tensors["head.projection.weight"]?.shape, [5, 160])
        XCTAssertEqual(ck.notes["s1.pathway0_stem.bn.bias"]?.hasPrefix("folded BN represented as identity BN carrying the conv bias"), true)
    }

    func convertAndVerify(_ onnx: String, reference: String) throws {
        let arch = try referenceArch(reference)
        let dir = try tempDir()
        let out = dir.appendingPathComponent("w.safetensors").path
        let summary = try OnnxImport.convert(ConvertRequest(input: fixture(onnx), output: out, options: ConvertOptions(arch: arch)))
        XCTAssertEqual(summary.result.counts.initialized, 0)
        XCTAssertTrue(summary.result.notes.contains("folded BN represented as identity BN carrying the conv bias"))
        let report = try Verifier.run(weights: out, reference: fixture("reference/\(reference)"))
        for c in report.comparisons where !c.passed { XCTFail("\(onnx): \(c)") }
        XCTAssertTrue(report.passed)
    }

    func testSlowFastOnnxConvertsAndVerifies() throws {
        try convertAndVerify("onnx/tiny_slowfast_8x8.onnx", reference: "tiny_slowfast_8x8_ref.safetensors")
    }

    func testResNet2DOnnxConvertsAndVerifies() throws {
        try convertAndVerify("onnx/tiny_resnet2d.onnx", reference: "tiny_resnet2d_ref.safetensors")
    }

    func testArchDetectedWithoutArchJSON() throws {
        let dir = try tempDir()
        let out = dir.appendingPathComponent("w.safetensors").path
        let summary = try OnnxImport.convert(ConvertRequest(input: fixture("onnx/tiny_slowfast_8x8.onnx"), output: out))
        XCTAssertEqual(summary.result.arch.model.rawValue, "slowfast")
        XCTAssertEqual(summary.result.arch.numClasses, 5)
    }

    func testTruncatedAndGarbageRefused() throws {
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: fixture("onnx/tiny_slowfast_8x8.onnx"))))
        let dir = try tempDir()
        var cases: [(String, [UInt8])] = [("empty", []), ("garbage", Array("not an onnx model at all".utf8))]
        for n in [1, 17, 1000, bytes.count / 2, bytes.count - 1] { cases.append(("truncated \(n)", Array(bytes.prefix(n)))) }
        for (label, data) in cases {
            let p = dir.appendingPathComponent("bad.onnx").path
            try Data(data).write(to: URL(fileURLWithPath: p))
            XCTAssertThrowsError(try OnnxImport.read(path: p), label) { e in
                XCTAssertTrue(e is FormatError, "\(label): \(e)")
            }
        }
    }

    /// Truncation and bit-flip sweeps over an ONNX fixture (as CorruptionSweepTests does for the
    /// Formats readers): each damaged model is read or refused with a FormatError, never a crash.
    func testTruncationAndBitFlipSweep() throws {
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: fixture("onnx/tiny_resnet2d.onnx"))))
        let dir = try tempDir()
        let p = dir.appendingPathComponent("damaged.onnx").path
        var read = 0, refused = 0
        func check(_ data: [UInt8], _ label: String) throws {
            try Data(data).write(to: URL(fileURLWithPath: p))
            do { _ = try OnnxImport.read(path: p); read += 1 } catch is FormatError { refused += 1 } catch {
                XCTFail("\(label): unexpected error type \(type(of: error)): \(error)")
            }
        }
        var cuts = Set(0 ..< 160)
        cuts.formUnion((bytes.count - 160) ..< bytes.count)
        for k in 0 ..< 48 { cuts.insert(bytes.count * k / 48) }
        for cut in cuts.sorted() { try check(Array(bytes[..<cut]), "cut at \(cut)") }
        var s: UInt64 = 0x9E3779B97F4A7C15
        func next() -> UInt64 { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s }
        for trial in 0 ..< 200 {
            var b = bytes
            for _ in 0 ..< 1 + Int(next() % 4) {
                // Half the flips in the first 4 KB and the last 4 KB, where the graph's messages are.
                let i = trial % 2 == 0 ? Int(next() % 4096) : (trial % 4 == 1 ? b.count - 1 - Int(next() % 4096) : Int(next() % UInt64(b.count)))
                b[i] ^= UInt8(1 << (next() % 8))
            }
            try check(b, "trial \(trial)")
        }
        XCTAssertGreaterThan(refused, 0)
        print("ONNX sweep: \(cuts.count) truncations and 200 bit-flipped models: \(read) read, \(refused) refused, no crash")
    }

    func testShapeMismatchWithArchRefused() throws {
        var arch = try referenceArch("tiny_slowfast_8x8_ref.safetensors")
        arch.numClasses = 7
        XCTAssertThrowsError(try OnnxImport.read(path: fixture("onnx/tiny_slowfast_8x8.onnx"), arch: arch)) { e in
            XCTAssertTrue("\(e)".contains("head.projection"), "\(e)")
        }
    }

    /// A hand-built one-block graph: explicit BatchNormalization after the stem, a folded
    /// c conv, branch1 without bias, and a Gemm head with transB 1 or 0.
    func oneBlock(transB: Int) -> OnnxModel {
        func f(_ n: String, _ d: [Int], _ base: Float) -> OnnxInitializer {
            .floats(n, dims: d, (0..<d.reduce(1, *)).map { base + Float($0) * 0.01 })
        }
        var m = OnnxModel(irVersion: 8, opset: 17, graphName: "g")
        m.inputs = [OnnxValueInfo(name: "x", dims: [.value(1), .value(3), .value(1), .value(8), .value(8)])]
        m.initializers = [f("w0", [4, 3, 1, 7, 7], 0), f("g0", [4], 1), f("b0", [4], 2), f("m0", [4], 3), f("v0", [4], 4),
                          f("wa", [2, 4, 1, 1, 1], 5), f("wb", [2, 2, 1, 3, 3], 6), f("wc", [8, 2, 1, 1, 1], 7), f("bc", [8], 8),
                          f("w1", [8, 4, 1, 1, 1], 9), f("wh", transB == 1 ? [5, 8] : [8, 5], 10), f("bh", [5], 11)]
        m.nodes = [
            OnnxNode("Conv", name: "c0", inputs: ["x", "w0"], outputs: ["s"]),
            OnnxNode("BatchNormalization", name: "bn0", inputs: ["s", "g0", "b0", "m0", "v0"], outputs: ["sb"]),
            OnnxNode("Relu", name: "r0", inputs: ["sb"], outputs: ["r0"]),
            OnnxNode("MaxPool", name: "p0", inputs: ["r0"], outputs: ["p0"]),
            OnnxNode("Conv", name: "ca", inputs: ["p0", "wa"], outputs: ["a"]),
            OnnxNode("Relu", name: "ra", inputs: ["a"], outputs: ["ra"]),
            OnnxNode("Conv", name: "cb", inputs: ["ra", "wb"], outputs: ["b"]),
            OnnxNode("Relu", name: "rb", inputs: ["b"], outputs: ["rb"]),
            OnnxNode("Conv", name: "cc", inputs: ["rb", "wc", "bc"], outputs: ["c"]),
            OnnxNode("Conv", name: "c1", inputs: ["p0", "w1"], outputs: ["sc"]),
            OnnxNode("Add", name: "add", inputs: ["sc", "c"], outputs: ["sum"]),
            OnnxNode("Relu", name: "r", inputs: ["sum"], outputs: ["r"]),
            OnnxNode("GlobalAveragePool", name: "gap", inputs: ["r"], outputs: ["g"]),
            OnnxNode("Flatten", name: "fl", inputs: ["g"], outputs: ["fl"]),
            OnnxNode("Gemm", name: "fc", inputs: ["fl", "wh", "bh"], outputs: ["y"], attributes: [("transB", .int(transB))]),
        ]
        return m
    }

    func testHandBuiltGraphBatchNormAndGemm() throws {
        for transB in [1, 0] {
            let m = oneBlock(transB: transB)
            let ck = try OnnxImport.importModel(m)
            XCTAssertEqual(ck.metadataValue("onnx.stage_depths"), "1")
            XCTAssertEqual(ck.metadataValue("onnx.batchnorm"), "1")
            XCTAssertEqual(ck.metadataValue("onnx.folded_bn"), "4")
            XCTAssertEqual(ck.tensors["s1.pathway0_stem.bn.running_var"]?.floats(), m.initializer("v0").map { Tensor(dtype: .f32, shape: [4], data: $0.rawData).floats() })
            XCTAssertEqual(ck.tensors["s2.pathway0_res0.branch2.c_bn.bias"]?.floats(), (0..<8).map { 8 + Float($0) * 0.01 })
            XCTAssertEqual(ck.tensors["s2.pathway0_res0.branch1_bn.bias"]?.floats(), [Float](repeating: 0, count: 8))
            XCTAssertEqual(ck.tensors["s2.pathway0_res0.branch1.weight"]?.shape, [8, 4, 1, 1, 1])
            let w = try XCTUnwrap(ck.tensors["head.projection.weight"])
            XCTAssertEqual(w.shape, [5, 8])
            let src = (0..<40).map { 10 + Float($0) * 0.01 }
            // [out, in][o][i] = transB 1 ? src[o * 8 + i] : src[i * 5 + o]
            XCTAssertEqual(w.floats()[1 * 8 + 2], transB == 1 ? src[1 * 8 + 2] : src[2 * 5 + 1])
        }
        // A raw_data length that does not match the dims is refused.
        var bad = oneBlock(transB: 1)
        bad.initializers[0].dims = [4, 3, 1, 7, 8]
        XCTAssertThrowsError(try OnnxImport.importModel(bad)) { XCTAssertTrue("\($0)".contains("bytes"), "\($0)") }
    }

    func testExternalDataConvertsAndVerifies() throws {
        let inline = try OnnxImport.read(path: fixture("onnx/tiny_resnet2d.onnx"))
        let ext = try OnnxImport.read(path: fixture("onnx/tiny_resnet2d_external.onnx"))
        XCTAssertEqual(inline.tensors.names, ext.tensors.names)
        for (name, t) in inline.tensors.ordered { XCTAssertEqual(ext.tensors[name]?.data.array, t.data.array, name) }
        try convertAndVerify("onnx/tiny_resnet2d_external.onnx", reference: "tiny_resnet2d_ref.safetensors")
    }

    /// SECURITY.md 23-24 on one-conv models: the good one loads its 16 bytes at offset 16.
    func testHostileExternalDataRefused() throws {
        let okBytes = try Array(Data(contentsOf: URL(fileURLWithPath: fixture("onnx/hostile/ext_ok.onnx"))))
        let ok = try okBytes.withUnsafeBytes { try OnnxExternalData.inline($0, modelPath: fixture("onnx/hostile/ext_ok.onnx")) }
        XCTAssertNotNil(ok)
        let m = try XCTUnwrap(ok).withUnsafeBytes { try OnnxModel.parse($0) }
        XCTAssertEqual(m.initializer("w")?.rawData.array, Array(16 ..< 32))
        let cases = ["ext_dotdot": "..", "ext_absolute": "absolute", "ext_past_end": "past the end", "ext_negative": "non-negative",
                     "ext_huge": "non-negative", "ext_unknown_key": "unknown external-data key", "ext_missing": "cannot be opened"]
        for (file, words) in cases {
            XCTAssertThrowsError(try OnnxImport.read(path: fixture("onnx/hostile/\(file).onnx")), file) { e in
                XCTAssertTrue(e is FormatError, "\(file): \(e)")
                XCTAssertTrue("\(e)".contains(words), "\(file): \(e)")
            }
        }
        // A symlinked data file (pointing at the good one) is refused too.
        let dir = try tempDir()
        let fm = FileManager.default
        try fm.copyItem(atPath: fixture("onnx/hostile/ext_ok.onnx"), toPath: dir.appendingPathComponent("m.onnx").path)
        try fm.createSymbolicLink(atPath: dir.appendingPathComponent("ext_small.bin").path, withDestinationPath: fixture("onnx/hostile/ext_small.bin"))
        XCTAssertThrowsError(try OnnxImport.read(path: dir.appendingPathComponent("m.onnx").path)) { e in
            XCTAssertTrue("\(e)".contains("symlink"), "\(e)")
        }
    }
}
