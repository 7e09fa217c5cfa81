// The boring-video property of inflation (PySlowFast inflate_weight): a static clip
// through the inflated 3D network gives, frame by frame, the 2D network's res5
// output. Both networks run natively; the 2D one is itself checked against
// PyTorch by the tiny_resnet2d reference.

import Convert
import Foundation
import XCTest
@testable import Formats
@testable import SlowFastNet

final class InflationPropertyTests: XCTestCase {
    static let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/imagenet/tiny_resnet50_tv.pth").path

    func model(_ arch: ArchConfig?, inflate: InflateMode?) throws -> SlowFastModel {
        var options = ConvertOptions(arch: arch, allowPartial: false, seed: 3)
        options.inflate = inflate
        let r = try convertTensors(try CheckpointReader.read(path: Self.source), options: options)
        var config = r.arch
        config.trainCrop = 32
        return try SlowFastModel(config: config, weights: r.tensors)
    }

    /// res5 of the slow pathway for a clip of `frames` copies of `image`, and of the 2D network for `image`.
    func res5(_ m: SlowFastModel, _ image: FloatTensor, frames: Int) throws -> FloatTensor {
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
        case .slow: inputs = [clip(frames)]
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
