// The export job: torch -> native -> torch keeps every tensor bit-exact for each
// target, the export names invert the import tables, and architectures a target
// cannot express are refused with nothing written.

import Families
import Foundation
import XCTest
import Formats
@testable import Convert

final class ExportTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/torch")
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// Converts a fixture to a native file in the temp directory.
    func native(_ fixture: String, arch: ArchConfig? = nil) throws -> String {
        let out = path(fixture + ".safetensors")
        _ = try ConvertPipeline.run(ConvertRequest(input: Self.fixtures.appendingPathComponent(fixture).path, output: out,
                                                   options: ConvertOptions(arch: arch)))
        return out
    }

    /// With SFNET_EXPORT_KEEP=DIR, the round-trip exports are copied to DIR as `name` (and its YAML)
    /// for scripts/interop_torch.py to load with real torch.
    func keep(_ file: String, as name: String) throws {
        guard let keepDir = ProcessInfo.processInfo.environment["SFNET_EXPORT_KEEP"], !keepDir.isEmpty else { return }
        try FileManager.default.createDirectory(atPath: keepDir, withIntermediateDirectories: true)
        for (from, to) in [(file, name), (Exporter.defaultCfgPath(for: file), Exporter.defaultCfgPath(for: name))]
        where FileManager.default.fileExists(atPath: from) {
            let dest = URL(fileURLWithPath: keepDir).appendingPathComponent(URL(fileURLWithPath: to).lastPathComponent).path
            try? FileManager.default.removeItem(atPath: dest)
            try FileManager.default.copyItem(atPath: from, toPath: dest)
        }
    }

    /// Every tensor of `export` equals the tensor of the same name in `original`, in the same order.
    func assertSameCheckpoint(_ export: Checkpoint, _ original: Checkpoint, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(export.tensors.names, original.tensors.names, "names and order", file: file, line: line)
        for (name, t) in original.tensors.ordered {
            Fixtures.assertSameBytes(export.tensors[name], t, name, file: file, line: line)
        }
    }

    func testPySlowFastRoundTripIsBitExactAndWritesTheConfig() throws {
        // The tiny 8x8 of fixtures/generate.py's build_tiny(): fast clip 8 frames, crop 32.
        var arch = Fixtures.tiny
        arch.numFrames = 8
        arch.trainCrop = 32
        let native = try native("tiny_pyslowfast.pyth", arch: arch)
        let out = path("exported.pyth")
        let summary = try Exporter.export(ExportRequest(input: native, output: out, target: .pyslowfast))
        try keep(out, as: "pyslowfast.pyth")
        let back = try CheckpointReader.read(path: out)
        XCTAssertEqual(back.containerKey, "model_state")
        XCTAssertEqual(back.otherEntries.map(\.key), ["epoch"])
        XCTAssertEqual(back.metadataValue("archive prefix"), "exported")
        assertSameCheckpoint(back, try CheckpointReader.read(path: Self.fixtures.appendingPathComponent("tiny_pyslowfast.pyth").path))
        XCTAssertEqual(summary.tensors, 662)
        XCTAssertEqual(summary.cfg, path("exported.yaml"))
        let yaml = try String(contentsOfFile: path("exported.yaml"), encoding: .utf8)
        for line in ["ARCH: slowfast", "NUM_CLASSES: 5", "ALPHA: 4", "BETA_INV: 4", "FUSION_CONV_CHANNEL_RATIO: 2",
                     "FUSION_KERNEL_SZ: 7", "DEPTH: 50", "WIDTH_PER_GROUP: 4", "NUM_GROUPS: 1", "STRIDE_1X1: False",
                     "NUM_FRAMES: 8", "TRAIN_CROP_SIZE: 32"] {
            XCTAssertTrue(yaml.contains("  " + line + "\n"), "YAML lacks '\(line)':\n\(yaml)")
        }
        // Every data entry stored and 64-byte aligned (the reader checked the CRCs).
        let zip = try ZipArchive(try MappedFile(path: out).bytes)
        for e in zip.entries { XCTAssertTrue(e.method == 0 && e.dataOffset % 64 == 0, e.name) }
    }

    func testPytorchvideoRoundTripIsBitExact() throws {
        let native = try native("tiny_pytorchvideo.pyth")
        let out = path("ptv.pyth")
        _ = try Exporter.export(ExportRequest(input: native, output: out, target: .pytorchvideo))
        try keep(out, as: "pytorchvideo.pyth")
        let back = try CheckpointReader.read(path: out)
        XCTAssertEqual(back.containerKey, "model_state")
        XCTAssertTrue(back.otherEntries.isEmpty)
        assertSameCheckpoint(back, try CheckpointReader.read(path: Self.fixtures.appendingPathComponent("tiny_pytorchvideo.pyth").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("ptv.yaml")))
    }

    func testMMAction2RoundTripIsBitExactWithFastFirstHead() throws {
        let native = try native("tiny_mmaction2.pth")
        let out = path("mm.pth")
        let summary = try Exporter.export(ExportRequest(input: native, output: out, target: .mmaction2))
        XCTAssertTrue(summary.notes.contains { $0.contains("fast-first") }, "\(summary.notes)")
        try keep(out, as: "mmaction2.pth")
        let back = try CheckpointReader.read(path: out)
        XCTAssertEqual(back.containerKey, "state_dict")
        XCTAssertEqual(back.otherEntries.map(\.key), ["meta"])
        assertSameCheckpoint(back, try CheckpointReader.read(path: Self.fixtures.appendingPathComponent("tiny_mmaction2.pth").path))
    }

    func testExportNamesInvertTheImportTables() {
        for (arch, twoPathways) in [(Fixtures.tiny, true), (Fixtures.tinySlow, false)] {
            for target in [ExportTarget.pytorchvideo, .mmaction2] {
                let map = ExportNames.keyMap(target, pathways: arch.pathways, lateralNorm: true)
                for e in arch.expectedParameters() {
                    let exported = map.map(e.name).name
                    let independent = target == .pytorchvideo ? Fixtures.pytorchvideoName(e.name, twoPathways: twoPathways)
                                                              : Fixtures.mmaction2Name(e.name, twoPathways: twoPathways)
                    XCTAssertEqual(exported, independent, "\(target) \(e.name)")
                    XCTAssertEqual(target.naming.canonicalName(exported).name, e.name, "\(target) \(exported) reads back")
                }
            }
        }
    }

    func testMMAction2OrderMatchesTheFixture() throws {
        let fixture = try CheckpointReader.read(path: Self.fixtures.appendingPathComponent("tiny_mmaction2.pth").path)
        let canonical = fixture.tensors.names.map { Naming.mmaction2.canonicalName($0).name }
        var arch = Fixtures.tiny
        arch.fusionNorm = false
        let ordered = ExportNames.mmaction2Order(arch.expectedParameters().map(\.name))
        XCTAssertEqual(ordered, canonical)
    }

    /// The full SlowFast R50 8x8 (fixtures/full, made by `generate.py --full`; skipped when absent).
    func testFullR50RoundTripIsBitExact() throws {
        let source = Self.fixtures.deletingLastPathComponent().appendingPathComponent("full/slowfast_r50_8x8.pyth").path
        guard FileManager.default.fileExists(atPath: source) else { throw XCTSkip("fixtures/full absent (python fixtures/generate.py --full)") }
        let native = path("full.safetensors")
        _ = try ConvertPipeline.run(ConvertRequest(input: source, output: native, options: ConvertOptions(arch: ArchConfig.preset(named: "slowfast-r50-8x8"))))
        let out = path("full.pyth")
        let start = Date()
        _ = try Exporter.export(ExportRequest(input: native, output: out, target: .pyslowfast))
        print("full R50 export: \(String(format: "%.3f", Date().timeIntervalSince(start))) s")
        try keep(out, as: "full_pyslowfast.pyth")
        assertSameCheckpoint(try CheckpointReader.read(path: out), try CheckpointReader.read(path: source))
    }

    // MARK: refusals

    /// A native file of `arch` with distinct values, written as the converter writes one.
    func writeNative(_ arch: ArchConfig, _ name: String = "native.safetensors") throws -> String {
        let out = path(name)
        let tensors = Fixtures.canonical(arch)
        let items = tensors.ordered.map { SafetensorsWriter.Item(name: $0.name, tensor: $0.tensor) }
        try SafetensorsWriter.write(items, metadata: [("sfnet.format", "1"), ("sfnet.arch", try arch.jsonString()), ("sfnet.naming", "pyslowfast")],
                                    to: out, overwrite: false)
        return out
    }

    func assertRefused(_ req: ExportRequest, _ needle: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Exporter.export(req), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(needle), "\(error)", file: file, line: line)
        }
    }

    func testFusionBNIsRefusedForMMAction2UnlessLateralNorm() throws {
        let native = try writeNative(Fixtures.tiny)
        assertRefused(ExportRequest(input: native, output: path("mm.pth"), target: .mmaction2), "fusion BN")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("mm.pth")))
        _ = try Exporter.export(ExportRequest(input: native, output: path("mm.pth"), target: .mmaction2, lateralNorm: true))
        let back = try CheckpointReader.read(path: path("mm.pth"))
        XCTAssertNotNil(back.tensors["backbone.slow_path.layer3_lateral.bn.running_var"])
        let reimported = try convertTensors(back, options: ConvertOptions(naming: .mmaction2))
        XCTAssertTrue(reimported.arch.fusionNorm)
        for (name, t) in Fixtures.canonical(Fixtures.tiny).ordered { Fixtures.assertSameBytes(reimported.tensors[name], t, name) }
    }

    func testPlainLateralsAreRefusedForPySlowFastAndPytorchvideo() throws {
        var arch = Fixtures.tiny
        arch.fusionNorm = false
        let native = try writeNative(arch)
        for target in [ExportTarget.pyslowfast, .pytorchvideo] {
            assertRefused(ExportRequest(input: native, output: path("x.pyth"), target: target), "conv -> BN -> ReLU")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("x.pyth")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("x.yaml")))
    }

    func testExistingOutputsAndMissingDirectoryAreRefused() throws {
        let native = try writeNative(Fixtures.tiny)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: path("out.yaml")))
        assertRefused(ExportRequest(input: native, output: path("out.pyth"), target: .pyslowfast), "--force")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("out.pyth")), "nothing written when the YAML exists")
        assertRefused(ExportRequest(input: native, output: path("missing/out.pyth"), target: .pytorchvideo), "directory does not exist")
        _ = try Exporter.export(ExportRequest(input: native, output: path("out.pyth"), target: .pyslowfast, force: true))
        XCTAssertTrue(try String(contentsOfFile: path("out.yaml"), encoding: .utf8).contains("ARCH: slowfast"))
        assertRefused(ExportRequest(input: native, output: path("out.pyth"), target: .pyslowfast), "--force")
    }

    func testAbsentCountersAreWrittenAsInt64Zero() throws {
        let out = path("nocount.safetensors")
        let t = Fixtures.canonical(Fixtures.tiny)
        let kept = t.ordered.filter { !$0.name.hasSuffix(".num_batches_tracked") }
        try SafetensorsWriter.write(kept.map { SafetensorsWriter.Item(name: $0.name, tensor: $0.tensor) },
                                    metadata: [("sfnet.format", "1"), ("sfnet.arch", try Fixtures.tiny.jsonString())], to: out, overwrite: false)
        let summary = try Exporter.export(ExportRequest(input: out, output: path("c.pyth"), target: .pytorchvideo))
        XCTAssertTrue(summary.notes.contains { $0.contains("written as 0") }, "\(summary.notes)")
        let back = try CheckpointReader.read(path: path("c.pyth"))
        XCTAssertEqual(back.tensors.count, t.count)
        let counter = back.tensors["blocks.0.multipathway_blocks.0.norm.num_batches_tracked"]
        XCTAssertEqual(counter?.dtype, .i64)
        XCTAssertEqual(counter?.shape, [])
        XCTAssertEqual(counter?.data.array, [UInt8](repeating: 0, count: 8))
    }

    func testNonNativeAndInconsistentInputsAreRefused() throws {
        assertRefused(ExportRequest(input: Self.fixtures.appendingPathComponent("tiny_pyslowfast.pyth").path, output: path("o.pyth"),
                                    target: .pytorchvideo), "not a native sfnet file")
        let out = path("bad.safetensors")
        let t = Fixtures.canonical(Fixtures.tiny)
        try SafetensorsWriter.write(t.ordered.dropLast().map { SafetensorsWriter.Item(name: $0.name, tensor: $0.tensor) },
                                    metadata: [("sfnet.format", "1"), ("sfnet.arch", try Fixtures.tiny.jsonString())], to: out, overwrite: false)
        assertRefused(ExportRequest(input: out, output: path("o.pyth"), target: .pytorchvideo), "head.projection.bias: missing")
    }

    func testSlowOnlyExportsUseSingleNamesAndNonPySlowFastDepthsAreRefused() throws {
        let native = try writeNative(Fixtures.tinySlow)
        _ = try Exporter.export(ExportRequest(input: native, output: path("slow.pyth"), target: .pytorchvideo))
        XCTAssertNotNil(try CheckpointReader.read(path: path("slow.pyth")).tensors["blocks.5.proj.weight"])
        _ = try Exporter.export(ExportRequest(input: native, output: path("slow_ps.pyth"), target: .pyslowfast))
        XCTAssertTrue(try String(contentsOfFile: path("slow_ps.yaml"), encoding: .utf8).contains("ARCH: slow\n"))
        var odd = Fixtures.tiny
        odd.stageDepths = [1, 1, 1, 1]
        let oddNative = try writeNative(odd, "odd.safetensors")
        assertRefused(ExportRequest(input: oddNative, output: path("odd.pyth"), target: .pyslowfast), "RESNET.DEPTH")
        _ = try Exporter.export(ExportRequest(input: oddNative, output: path("odd_ptv.pyth"), target: .pytorchvideo))
    }
}
