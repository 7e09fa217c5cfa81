// The boring-video property of inflation (PySlowFast inflate_weight): a static clip
// through the inflated 3D network gives, frame by frame, the 2D network's res5
// output. Both networks run natively; the 2D one is itself checked against
// PyTorch by the tiny_resnet2d reference.

import Families
import Convert
import ONNX
import Verify
import Foundation
import XCTest
@testable import Formats
@testable import Networks

final class InflationPropertyTests: XCTestCase {
    static let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/imagenet/tiny_resnet50_tv.pth").path

    func model(_ arch: ArchConfig?, inflate: InflateMode?) throws -> EvalNetwork {
        var options = ConvertOptions(arch: arch, allowPartial: false, seed: 3)
        options.inflate = inflate
        let r = try convertTensors(try CheckpointReader.read(path: Self.source), options: options)
        var config = r.arch
        config.trainCrop = 32
        return try EvalNetwork(config: config, weights: r.tensors)
    }

    /// res5 of the slow pathway for a clip of `frames` copies of `image`, and of the 2D network for `image`.
    func res5(_ m: EvalNetwork, _ image: FloatTensor, frames: Int) throws -> FloatTensor {
        let (c, h, w) = (3, image.shape[2], image.shape[3])
        var inputs: [FloatTensor] = []
        func clip(_ t: Int) -> FloatTensor {
            let x = FloatTensor(uninitialized: [1, c, t, h, w])
            for ch in 0 ..< c { for f in 0 ..< t {
                (x.pointer + (ch * t + f) * h * w).update(from: image.pointer + ch * h * w, count: h * w)
            } }
            return x
        }
        switch m.config.model {
        case .resnet: inputs = [image]
        case .slow, .x3d, .videomae, .timesformer: inputs = [clip(frames)]
        case .slowfast: inputs = [clip(frames), clip(frames * m.config.alpha)]
        }
        return try m.forward(inputs, capture: true).activations.first { $0.name == "s5.pathway0" }!.value
    }

    func frameError(_ video: FloatTensor, _ image: FloatTensor, frame: Int) -> Double {
        let (ch, t, plane) = (video.shape[1], video.shape[2], video.shape[3] * video.shape[4])
        var d2 = 0.0, r2 = 0.0
        for c in 0 ..< ch { for i in 0 ..< plane {
            let a = Double(video.pointer[(c * t + frame) * plane + i]), b = Double(image.pointer[c * plane + i])
            d2 += (a - b) * (a - b); r2 += b * b
        } }
        return (d2 / max(r2, 1e-30)).squareRoot()
    }

    func image() -> FloatTensor {
        let x = FloatTensor(uninitialized: [1, 3, 32, 32])
        var rng = SplitMix64(seed: 11)
        rng.fillNormal(x.pointer, count: x.count, std: 1)
        return x
    }

    func slowArch(frames: Int, width: Int = 2) -> ArchConfig {
        var a = ArchConfig.preset(named: "slow-r50-8x8")!
        a.widthPerGroup = width
        a.numClasses = 10
        a.numFrames = frames
        return a
    }

    func testCenterInflationReproducesThe2DNetworkOnEveryFrame() throws {
        let x = image()
        let flat = try res5(try model(nil, inflate: nil), x, frames: 1)
        let video = try res5(try model(slowArch(frames: 4), inflate: .center), x, frames: 4)
        XCTAssertEqual(video.shape[2], 4)
        for f in 0 ..< 4 { XCTAssertLessThan(frameError(video, flat, frame: f), 1e-5, "frame \(f)") }
    }

    func testCenterInflatedSlowFastIgnoresTheFreshFastPathway() throws {
        var a = ArchConfig.preset(named: "slowfast-r50-8x8")!
        a.widthPerGroup = 2; a.betaInv = 2; a.numClasses = 10; a.numFrames = 16 // slow 4 frames, fast 16
        let x = image()
        let flat = try res5(try model(nil, inflate: nil), x, frames: 1)
        let video = try res5(try model(a, inflate: .center), x, frames: 4)
        for f in 0 ..< 4 { XCTAssertLessThan(frameError(video, flat, frame: f), 1e-5, "frame \(f)") }
    }

    func testMeanInflationMatchesWhereTheReceptiveFieldStaysInside() throws {
        // res4 (6 blocks) and res5 (3 blocks) have temporal kernel 3: a receptive field of 9 frames each side.
        let x = image()
        let flat = try res5(try model(nil, inflate: nil), x, frames: 1)
        let video = try res5(try model(slowArch(frames: 20), inflate: .mean), x, frames: 20)
        for f in [9, 10] { XCTAssertLessThan(frameError(video, flat, frame: f), 1e-5, "interior frame \(f)") }
        XCTAssertGreaterThan(frameError(video, flat, frame: 0), 1e-3, "edge frames see the zero padding")
    }
}

/// Issue 4, part 5: `sfnet verify` on boring-video references made by torchvision
/// (fixtures/generate_boring.py), for the torchvision and the ONNX export of the same
/// tiny ResNet-50, inflated center and mean.
final class BoringVideoReferenceTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures")
    static let reference = fixtures.appendingPathComponent("boring/tiny_resnet50_tv_boring_ref.safetensors").path

    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-boring-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func inflate(_ source: String, _ mode: InflateMode, arch: ArchConfig? = nil) throws -> String {
        let a = try arch ?? Reference.load(path: Self.reference).arch
        let out = try tempDir().appendingPathComponent("w.safetensors").path
        var options = ConvertOptions(arch: a, seed: 7)
        options.inflate = mode
        let req = ConvertRequest(input: Self.fixtures.appendingPathComponent(source).path, output: out, options: options)
        if source.hasSuffix(".onnx") { _ = try OnnxImport.convert(req) } else { _ = try ConvertPipeline.run(req) }
        return out
    }

    func testReferenceRepeatsTheImageOverTheClip() throws {
        let ref = try Reference.load(path: Self.reference)
        XCTAssertEqual(ref.boringVideoFrames, 24)
        XCTAssertEqual(ref.inputs.map(\.shape), [[1, 3, 24, 64, 64], [1, 3, 96, 64, 64]])
        let x = ref.inputs[1]
        let plane = 64 * 64
        for f in [1, 50, 95] { XCTAssertEqual(Array(UnsafeBufferPointer(start: x.pointer + f * plane, count: plane)),
                                              Array(UnsafeBufferPointer(start: x.pointer, count: plane))) }
        XCTAssertEqual(Verifier.temporalBorder(try XCTUnwrap(ref.arch)), 9)
    }

    func testCenterInflationMatchesOnEveryFrame() throws {
        for source in ["imagenet/tiny_resnet50_tv.pth", "onnx/tiny_resnet50_tv.onnx"] {
            let report = try Verifier.run(weights: try inflate(source, .center), reference: Self.reference)
            XCTAssertEqual(report.comparisons.count, 24, source)
            for c in report.comparisons { XCTAssertTrue(c.passed, "\(source): \(c.name) rel L2 \(c.relativeL2)") }
            XCTAssertTrue(report.passed, "\(source)\n\(report.text())")
            XCTAssertTrue(report.notes.contains { $0.contains("center inflation") }, "\(report.notes)")
        }
    }

    func testMeanInflationMatchesInsideTheReceptiveFieldBorderAndNotOnIt() throws {
        for source in ["imagenet/tiny_resnet50_tv.pth", "onnx/tiny_resnet50_tv.onnx"] {
            let w = try inflate(source, .mean)
            let report = try Verifier.run(weights: w, reference: Self.reference)
            XCTAssertEqual(report.comparisons.map(\.name), (9 ..< 15).map { "activation.s5.pathway0[t=\($0)]" }, source)
            XCTAssertTrue(report.passed, "\(source)\n\(report.text())")
            // The border frames really differ: the check is not vacuous.
            let ref = try Reference.load(path: Self.reference)
            let model = try EvalNetwork.load(path: w)
            let s5 = try XCTUnwrap(try model.forward(ref.inputs, capture: true).activations.first { $0.name == "s5.pathway0" }?.value)
            let e = ref.expected[0].value
            let plane = s5.shape[3] * s5.shape[4], (c, t) = (s5.shape[1], s5.shape[2])
            func err(_ f: Int) -> Double {
                var d2 = 0.0, r2 = 0.0
                for ch in 0 ..< c { for i in 0 ..< plane {
                    let a = Double(s5.pointer[(ch * t + f) * plane + i]), b = Double(e.pointer[ch * plane + i])
                    d2 += (a - b) * (a - b); r2 += b * b
                } }
                return (d2 / r2).squareRoot()
            }
            XCTAssertGreaterThan(err(0), 1e-3, source)
            XCTAssertGreaterThan(err(23), 1e-3, source)
            XCTAssertLessThan(err(12), 1e-5, source)
        }
    }

    func testTooShortClipForMeanInflationFailsWithAClearNote() throws {
        // The same weights against a 16-frame reference: 2 x 9 border frames leave none to compare.
        let dir = try tempDir()
        let ck = try CheckpointReader.read(path: Self.reference)
        var meta = ck.metadata.filter { $0.key != "sfnet.boring_video" }
        meta.append(("sfnet.boring_video", "{\"frames\": 16}"))
        var arch = try XCTUnwrap(try Reference.load(path: Self.reference).arch)
        arch.numFrames = 64
        meta = meta.map { $0.key == "sfnet.arch" ? ($0.key, try! arch.jsonString()) : $0 }
        let short = dir.appendingPathComponent("short.safetensors").path
        try SafetensorsWriter.write(ck.tensors.ordered.map { SafetensorsWriter.Item(name: $0.name, tensor: $0.tensor) },
                                    metadata: meta, to: short, overwrite: false)
        let report = try Verifier.run(weights: try inflate("imagenet/tiny_resnet50_tv.pth", .mean, arch: arch), reference: short)
        XCTAssertFalse(report.passed)
        XCTAssertTrue(report.notes.contains { $0.contains("more than 18 slow frames") }, "\(report.notes)")
    }
}
