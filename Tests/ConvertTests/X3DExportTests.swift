// X3D's pytorchvideo and mmaction2 exports as library calls: the export names read back through the
// import tables for every X3D preset, the pytorchvideo export equals pytorchvideo's own file, a shortcut BN
// that only scales folds into the conv, one with a shift is refused with nothing written, and the
// mmaction2 layout refuses what mmaction2's X3D cannot build.

import Families
import Foundation
import XCTest
import Formats
@testable import Convert

final class X3DExportTests: XCTestCase {
    static let x3dFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/x3d")
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-x3dexport-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// pytorchvideo's tiny X3D (no BN on the first res2 shortcut) as a native file, with the shortcut BN `edit`ed.
    func pytorchvideoNative(edit: ((inout [String: [Float]]) -> Void)? = nil) throws -> String {
        let out = path("pv-\(UUID().uuidString).safetensors")
        _ = try ConvertPipeline.run(ConvertRequest(input: Self.x3dFixtures.appendingPathComponent("tiny_x3d_pytorchvideo.pyth").path, output: out))
        guard let edit else { return out }
        let ckpt = try CheckpointReader.read(path: out)
        let bn = "s2.pathway0_res0.branch1_bn"
        var fields: [String: [Float]] = [:]
        for f in ["weight", "bias", "running_mean", "running_var"] { fields[f] = ckpt.tensors["\(bn).\(f)"]!.floats() }
        edit(&fields)
        let items = ckpt.tensors.ordered.map { name, t -> SafetensorsWriter.Item in
            guard name.hasPrefix(bn + "."), let values = fields[String(name.dropFirst(bn.count + 1))] else {
                return SafetensorsWriter.Item(name: name, tensor: t)
            }
            return SafetensorsWriter.Item(name: name, tensor: f32(values, shape: t.shape))
        }
        let edited = path("pv-edited-\(UUID().uuidString).safetensors")
        try SafetensorsWriter.write(items, metadata: ckpt.metadata.map { ($0.key, $0.value) }, to: edited, overwrite: false)
        return edited
    }

    func f32(_ values: [Float], shape: [Int]) -> Formats.Tensor {
        let buffer = OwnedBuffer(count: values.count * 4)
        values.withUnsafeBytes { buffer.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return Formats.Tensor(dtype: .f32, shape: shape, data: buffer.bytes)
    }

    /// Every canonical key of every X3D preset (and the tiny fixtures' configs) exported under pytorchvideo's and
    /// mmaction2's names reads back to itself through the import tables; no two keys share an exported name.
    func testX3DExportNamesReadBackThroughTheImportTables() throws {
        var archs = ["x3d-xs", "x3d-s", "x3d-m", "x3d-l"].compactMap { ArchConfig.preset(named: $0) }
        var tiny = archs[1]
        tiny.x3d?.widthFactor = 1.0
        tiny.x3d?.depthFactor = 1.0
        tiny.x3d?.dimC5 = 32
        archs.append(tiny)
        XCTAssertEqual(archs.count, 5)
        for arch in archs {
            for target in [ExportTarget.pytorchvideo, .mmaction2] {
                let map = X3DExport.keyMap(target)
                var seen: [String: String] = [:]
                for e in arch.expectedParameters() {
                    let exported = map.map(e.name).name
                    XCTAssertNil(seen[exported], "\(target) \(e.name) and \(seen[exported] ?? "") -> \(exported)")
                    seen[exported] = e.name
                    XCTAssertTrue(target == .pytorchvideo ? exported.hasPrefix("blocks.") : exported.hasPrefix("backbone.") || exported.hasPrefix("cls_head."),
                                  "\(target) \(e.name) -> \(exported)")
                    XCTAssertEqual(target.naming.canonicalName(exported).name, e.name, "\(target) \(exported) reads back")
                }
            }
        }
        // mmaction2's registration order: the shortcut (downsample) first, the SE module after conv3.
        let order = X3DExport.mmaction2Order(archs[1].expectedParameters().map(\.name)).map { X3DExport.mmaction2.map($0).name }
        let block = order.filter { $0.hasPrefix("backbone.layer1.0.") && $0.hasSuffix(".weight") }
        XCTAssertEqual(block, ["backbone.layer1.0.downsample.conv.weight", "backbone.layer1.0.downsample.bn.weight", "backbone.layer1.0.conv1.conv.weight",
                               "backbone.layer1.0.conv1.bn.weight", "backbone.layer1.0.conv2.conv.weight", "backbone.layer1.0.conv2.bn.weight",
                               "backbone.layer1.0.conv3.conv.weight", "backbone.layer1.0.conv3.bn.weight", "backbone.layer1.0.se_module.fc1.weight",
                               "backbone.layer1.0.se_module.fc2.weight"])
        XCTAssertEqual(order.first, "backbone.conv1_s.conv.weight")
        XCTAssertEqual(Array(order.suffix(3)), ["cls_head.fc1.weight", "cls_head.fc2.weight", "cls_head.fc2.bias"])
    }

    /// The pytorchvideo export of weights converted from pytorchvideo is pytorchvideo's file again: the same
    /// names in the same order, every tensor's bytes (the identity shortcut BN left out).
    func testPytorchvideoExportOfPytorchvideoWeightsIsTheSourceAgain() throws {
        let native = try pytorchvideoNative()
        let out = path("pv.pyth")
        let s = try Exporter.export(ExportRequest(input: native, output: out, target: .pytorchvideo))
        XCTAssertTrue(s.notes.contains { $0.contains("s2.pathway0_res0.branch1_bn left out: it is the identity") }, "\(s.notes)")
        XCTAssertTrue(s.notes.contains { $0.contains("create_x3d(") && $0.contains("head_dim_out=32") }, "\(s.notes)")
        let exported = try CheckpointReader.read(path: out)
        let source = try CheckpointReader.read(path: Self.x3dFixtures.appendingPathComponent("tiny_x3d_pytorchvideo.pyth").path)
        XCTAssertEqual(exported.containerKey, "model_state")
        XCTAssertEqual(exported.tensors.names, source.tensors.names)
        for (name, t) in source.tensors.ordered {
            XCTAssertEqual(exported.tensors[name]?.dtype, t.dtype, name)
            XCTAssertEqual(exported.tensors[name]?.shape, t.shape, name)
            XCTAssertEqual(exported.tensors[name]?.data.array, t.data.array, name)
        }
    }

    /// A shortcut BN with no shift (bias 0, running mean 0) but a scale other than 1 folds into the shortcut
    /// conv's rows; with a shift it is refused, naming the BN, and nothing is written.
    func testAShortcutBNThatOnlyScalesFoldsAndOneWithAShiftIsRefused() throws {
        let scaled = try pytorchvideoNative { fields in
            fields["weight"] = fields["weight"]!.indices.map { 0.5 + Float($0 % 4) }
            fields["running_var"] = fields["running_var"]!.map { _ in 4 }
        }
        let out = path("folded.pyth")
        let s = try Exporter.export(ExportRequest(input: scaled, output: out, target: .pytorchvideo))
        XCTAssertTrue(s.notes.contains { $0.contains("branch1_bn folded into s2.pathway0_res0.branch1.weight") }, "\(s.notes)")
        let exported = try CheckpointReader.read(path: out)
        let original = try CheckpointReader.read(path: scaled)
        let w = original.tensors["s2.pathway0_res0.branch1.weight"]!
        let folded = exported.tensors["blocks.1.res_blocks.0.branch1_conv.weight"]!
        XCTAssertEqual(folded.shape, w.shape)
        XCTAssertNil(exported.tensors["blocks.1.res_blocks.0.branch1_norm.weight"])
        let per = w.numel / w.shape[0]
        for (i, (a, b)) in zip(w.floats(), folded.floats()).enumerated() {
            let scale = Double(0.5 + Float((i / per) % 4)) / (4 + 1e-5).squareRoot()
            XCTAssertEqual(Double(b), Double(a) * scale, accuracy: abs(Double(a) * scale) * 1e-6 + 1e-30, "element \(i)")
        }

        for (field, value) in [("bias", Float(0.25)), ("running_mean", Float(-1))] {
            let shifted = try pytorchvideoNative { $0[field] = $0[field]!.map { _ in value } }
            let refused = path("refused-\(field).pyth")
            XCTAssertThrowsError(try Exporter.export(ExportRequest(input: shifted, output: refused, target: .pytorchvideo))) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains("s2.pathway0_res0.branch1_bn is not the identity") && text.contains("\(field) in")
                              && text.contains("export to pyslowfast"), text)
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: refused))
            try FileManager.default.removeItem(atPath: shifted)
        }
    }

    /// mmaction2's X3D builds stem-doubling widths, a 2048 fc1, Swish and channel-wise 3x3x3: weights
    /// outside that are refused with the reason; the tiny pytorchvideo X3D (stem 16, res3 24) is one.
    func testMMAction2RefusesWhatItsX3DCannotBuild() throws {
        let native = try pytorchvideoNative()
        XCTAssertThrowsError(try Exporter.export(ExportRequest(input: native, output: path("mm.pth"), target: .mmaction2))) { error in
            XCTAssertTrue("\(error)".contains("stem's doubled per stage"), "\(error)")
        }
        var arch = ArchConfig.preset(named: "x3d-s")!
        XCTAssertNoThrow(try X3DExport.checkExpressible(arch, .mmaction2))
        for (edit, reason) in [({ (x: inout X3DConfig) in x.dimC5 = 1024 }, "fc1) of 2048"), ({ $0.bnLin5 = true }, "no BatchNorm after fc1"),
                               ({ $0.swishInner = false }, "always applies Swish"), ({ $0.channelwise = false }, "channel-wise"),
                               ({ $0.stemTemporalKernel = 3 }, "5x1x1 stem")] as [((inout X3DConfig) -> Void, String)] {
            var x = arch.x3d!
            edit(&x)
            arch.x3d = x
            XCTAssertThrowsError(try X3DExport.checkExpressible(arch, .mmaction2)) { XCTAssertTrue("\($0)".contains(reason), "\($0)") }
            arch = ArchConfig.preset(named: "x3d-s")!
        }
        arch.x3d!.scaleRes2 = true
        XCTAssertThrowsError(try X3DExport.checkExpressible(arch, .pytorchvideo)) { XCTAssertTrue("\($0)".contains("SCALE_RES2"), "\($0)") }
    }
}
