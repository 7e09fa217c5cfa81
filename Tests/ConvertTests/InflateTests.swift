// Inflation of 2D ImageNet ResNet-50 weights (the torchvision fixture) into 3D
// targets: mean and center kernels, zero-padded fused inputs, fresh fast pathway /
// fusions / head (PySlowFast init, seeded), and the report of each tensor's fate.

import Families
import XCTest
import Formats
@testable import Convert

final class InflateTests: XCTestCase {
    /// Tiny SlowFast 8x8 with the torchvision fixture's widths (2): fast stem 1 channel.
    private var slowFast: ArchConfig { Fixtures.tinySlowFast(width: 2, betaInv: 2) }

    private var slow: ArchConfig { Fixtures.tinySlowOnly(width: 2) }

    private func source() throws -> (checkpoint: Checkpoint, canonical2D: TensorMap) {
        let checkpoint = try SourceFixtures.read("imagenet/tiny_resnet50_tv.pth")
        let canonical = try SourceFixtures.read("imagenet/tiny_resnet50_tv_expected.safetensors").tensors
        return (checkpoint, canonical)
    }

    /// The expected inflation of `w2d` ([O, I, 1, H, W]) into `shape`, written as loops over the output.
    private func inflated(_ w2d: Tensor, _ shape: [Int], center: Bool) -> [Float] {
        let src = w2d.floats()
        let (o, i, t, h, w) = (shape[0], shape[1], shape[2], shape[3], shape[4])
        let inFile = w2d.shape[1]
        var out = [Float]()
        for a in 0 ..< o { for b in 0 ..< i { for c in 0 ..< t { for d in 0 ..< h { for e in 0 ..< w {
            guard b < inFile else { out.append(0); continue }
            let v = src[(((a * inFile + b) * h) + d) * w + e]
            out.append(center ? (c == t / 2 ? v : 0) : v / Float(t))
        } } } } }
        return out
    }

    func testMeanInflationRepeatsKernelOverTimeAndZeroPadsFusedInputs() throws {
        let (checkpoint, canonical2D) = try source()
        let result = try convertTensors(checkpoint, options: ConvertOptions(arch: slowFast, seed: 7))
        XCTAssertEqual(result.naming, .torchvision)
        XCTAssertEqual(result.tensors.names, slowFast.expectedParameters().map(\.name))
        var inflatedCount = 0
        for entry in slowFast.expectedParameters() where entry.name.contains("pathway0_") && entry.shape.count == 5 {
            let got = result.tensors[entry.name]!
            XCTAssertEqual(got.shape, entry.shape)
            XCTAssertEqual(got.floats(), inflated(canonical2D[entry.name]!, entry.shape, center: false), entry.name)
            if entry.shape[2] > 1 { inflatedCount += 1 }
        }
        XCTAssertEqual(inflatedCount, 6 + 3)   // res4 and res5 branch2.a: T = 3
        XCTAssertEqual(SourceFixtures.action(result, "s4.pathway0_res1.branch2.a.weight"),
                       "renamed from layer3.1.conv1.weight; inflated T=3 (mean)")
        // Fused fast channels widen the slow inputs: stem 2 + fast 1 x 2 = 4; res4 out 32 + fast 16 x 2 = 64.
        XCTAssertEqual(SourceFixtures.action(result, "s2.pathway0_res0.branch1.weight"),
                       "renamed from layer1.0.downsample.0.weight; zero-padded inputs 2->4")
        XCTAssertEqual(SourceFixtures.action(result, "s5.pathway0_res0.branch2.a.weight"),
                       "renamed from layer4.0.conv1.weight; inflated T=3 (mean); zero-padded inputs 32->64")
        XCTAssertEqual(SourceFixtures.action(result, "s1.pathway0_stem.conv.weight"),
                       "renamed from conv1.weight; temporal axis added (2D kernel, T=1)")
        // Slow-pathway BN comes from the file unchanged.
        Fixtures.assertSameBytes(result.tensors["s3.pathway0_res2.branch2.b_bn.running_var"],
                                 canonical2D["s3.pathway0_res2.branch2.b_bn.running_var"], "bn")
        XCTAssertTrue(result.notes.contains { $0.contains("inflating 2D torchvision") }, "\(result.notes)")
    }

    func testCenterInflationPutsKernelInTheMiddleSlice() throws {
        let (checkpoint, canonical2D) = try source()
        let result = try convertTensors(checkpoint, options: ConvertOptions(arch: slowFast, inflate: .center))
        for name in ["s4.pathway0_res0.branch2.a.weight", "s5.pathway0_res2.branch2.a.weight", "s5.pathway0_res0.branch2.a.weight"] {
            let shape = result.tensors[name]!.shape
            XCTAssertEqual(shape[2], 3)
            XCTAssertEqual(result.tensors[name]!.floats(), inflated(canonical2D[name]!, shape, center: true), name)
            XCTAssertTrue(SourceFixtures.action(result, name).contains("inflated T=3 (center)"))
        }
    }

    func testFastPathwayFusionsAndHeadStartFreshAndDeterministic() throws {
        let (checkpoint, _) = try source()
        let a = try convertTensors(checkpoint, options: ConvertOptions(arch: slowFast, seed: 7))
        let b = try convertTensors(checkpoint, options: ConvertOptions(arch: slowFast, seed: 7))
        let c = try convertTensors(checkpoint, options: ConvertOptions(arch: slowFast, seed: 8))
        let fresh = slowFast.expectedParameters().map(\.name).filter { !Inflate.takesFrom2D($0) }
        XCTAssertFalse(fresh.isEmpty)
        for name in fresh {
            XCTAssertEqual(a.tensors[name]!.data.array, b.tensors[name]!.data.array, name)
            XCTAssertTrue(SourceFixtures.action(a, name).hasPrefix("initialized"), "\(name): \(SourceFixtures.action(a, name))")
        }
        for name in ["s1.pathway1_stem.conv.weight", "s3_fuse.conv_f2s.weight", "head.projection.weight"] {
            XCTAssertNotEqual(a.tensors[name]!.data.array, c.tensors[name]!.data.array, name)
        }
        XCTAssertEqual(SourceFixtures.action(a, "s2.pathway1_res0.branch2.a.weight"),
                       "initialized fresh N(0,0.8165) (kaiming fan_out) (PySlowFast init)")
        XCTAssertEqual(SourceFixtures.action(a, "head.projection.weight"), "initialized fresh N(0,0.01) (PySlowFast init)")
        XCTAssertEqual(SourceFixtures.action(a, "s3.pathway1_res1.branch2.c_bn.weight"), "initialized 0 (zero-init final BN) (PySlowFast init)")
        XCTAssertTrue(a.tensors["s3.pathway1_res1.branch2.c_bn.weight"]!.floats().allSatisfy { $0 == 0 })
        XCTAssertTrue(a.tensors["s3.pathway1_res1.branch2.b_bn.weight"]!.floats().allSatisfy { $0 == 1 })
        XCTAssertEqual(Set(a.dropped.map(\.name)), ["fc.weight", "fc.bias"])
        XCTAssertTrue(a.dropped[0].reason.contains("not used by"), a.dropped[0].reason)
        XCTAssertEqual(a.counts.fromFile + a.counts.initialized, a.counts.tensors)
    }

    func testSlowOnlyTargetInflatesRes4AndRes5() throws {
        let (checkpoint, canonical2D) = try source()
        let result = try convertTensors(checkpoint, options: ConvertOptions(arch: slow))
        XCTAssertEqual(result.tensors["s4.pathway0_res0.branch2.a.weight"]!.shape[2], 3)
        XCTAssertEqual(result.tensors["s3.pathway0_res0.branch2.a.weight"]!.shape[2], 1)
        // No fusions: every slow tensor but the head is the 2D network's (res4/res5 a inflated).
        Fixtures.assertSameBytes(result.tensors["s3.pathway0_res0.branch2.a.weight"], canonical2D["s3.pathway0_res0.branch2.a.weight"], "res3 a")
        Fixtures.assertSameBytes(result.tensors["s2.pathway0_res0.branch1.weight"], canonical2D["s2.pathway0_res0.branch1.weight"], "res2 branch1")
        XCTAssertEqual(result.counts.initialized, 2)   // the 5-class head
    }

    func testInflateOptionIsIgnoredWithANoteFor2DTargetsAndVideoSources() throws {
        let (checkpoint, canonical2D) = try source()
        let result = try convertTensors(checkpoint, options: ConvertOptions(inflate: .center))
        XCTAssertEqual(result.arch.model, .resnet)
        for (name, want) in canonical2D.ordered { Fixtures.assertSameBytes(result.tensors[name], want, name) }
        XCTAssertTrue(result.notes.contains { $0.contains("--inflate center ignored") }, "\(result.notes)")
    }

    func testDetectronInflatesWithUnitRunningStatistics() throws {
        let checkpoint = try SourceFixtures.read("imagenet/tiny_R-50.pkl")
        let result = try convertTensors(checkpoint, options: ConvertOptions(arch: slowFast))
        XCTAssertEqual(result.naming, .detectron)
        XCTAssertTrue(result.tensors["s4.pathway0_res0.branch2.a_bn.running_var"]!.floats().allSatisfy { $0 == 1 })
        XCTAssertTrue(SourceFixtures.action(result, "s5.pathway0_res1.branch2.a.weight").contains("inflated T=3 (mean)"))
        XCTAssertEqual(Set(result.dropped.map(\.name)), ["conv1_b", "fc1000_w", "fc1000_b"])
    }
}
