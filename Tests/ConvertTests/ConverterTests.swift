// convertTensors: renaming back to canonical keys, strict checking, partial
// conversion, head replacement and the dtype policy.

import Families
import XCTest
import Formats
@testable import Convert

final class ConverterTests: XCTestCase {
    private func convert(_ tensors: TensorMap, _ options: ConvertOptions = ConvertOptions()) throws -> ConversionResult {
        try convertTensors(Fixtures.checkpoint(tensors), options: options)
    }

    private func report(_ result: ConversionResult, _ name: String) -> String? {
        result.report.first { $0.name == name }?.action
    }

    // MARK: Namings

    func testPySlowFastCheckpointConvertsAsIdentityWithoutCopying() throws {
        let source = Fixtures.canonical(Fixtures.tiny)
        let result = try convert(source)
        XCTAssertEqual(result.naming, .pyslowfast)
        XCTAssertEqual(result.arch, Fixtures.tiny)
        XCTAssertEqual(result.tensors.names, Fixtures.tiny.expectedParameters().map(\.name))
        for (name, tensor) in source.ordered {
            XCTAssertEqual(result.tensors[name]?.data.raw.baseAddress, tensor.data.raw.baseAddress, "\(name) was copied")
            XCTAssertEqual(report(result, name), "copied")
        }
        XCTAssertEqual(result.counts.tensors, source.count)
        XCTAssertEqual(result.counts.fromFile, source.count)
        XCTAssertEqual(result.counts.initialized, 0)
        XCTAssertEqual(result.counts.parameters, Fixtures.tiny.parameterCount)
        XCTAssertTrue(result.dropped.isEmpty)
    }

    func testPytorchvideoCheckpointConvertsBackToCanonicalBytes() throws {
        let canonical = Fixtures.canonical(Fixtures.tiny)
        let source = Fixtures.renamed(canonical) { Fixtures.pytorchvideoName($0, twoPathways: true) }
        let result = try convert(source)
        XCTAssertEqual(result.naming, .pytorchvideo)
        XCTAssertEqual(result.arch, Fixtures.tiny)
        XCTAssertEqual(result.tensors.names, canonical.names)
        for name in canonical.names { Fixtures.assertSameBytes(result.tensors[name], canonical[name], name) }
        XCTAssertEqual(report(result, "s1_fuse.conv_f2s.weight"), "renamed from blocks.0.multipathway_fusion.conv_fast_to_slow.weight")
        XCTAssertEqual(result.counts.renamed, canonical.count)
    }

    func testPytorchvideoSlowOnlyCheckpointConverts() throws {
        let canonical = Fixtures.canonical(Fixtures.tinySlow)
        let result = try convert(Fixtures.renamed(canonical) { Fixtures.pytorchvideoName($0, twoPathways: false) })
        XCTAssertEqual(result.arch, Fixtures.tinySlow)
        for name in canonical.names { Fixtures.assertSameBytes(result.tensors[name], canonical[name], name) }
    }

    /// mmaction2 as published: laterals without BN, head input [fast, slow].
    private func mmaction2Source() -> (canonical: TensorMap, source: TensorMap, config: ArchConfig) {
        var config = Fixtures.tiny
        config.fusionNorm = false
        let canonical = Fixtures.canonical(config)
        var source = TensorMap()
        for (name, tensor) in canonical.ordered {
            var t = tensor
            if name == "head.projection.weight" {
                t = Fixtures.moveTrailingColumnsFirst(tensor, trailing: config.outChannels(stage: 5, pathway: 1))
            }
            source.set(Fixtures.mmaction2Name(name, twoPathways: true), t)
        }
        return (canonical, source, config)
    }

    func testMmaction2HeadColumnsReorderedSlowFirst() throws {
        let (canonical, source, config) = mmaction2Source()
        XCTAssertNotEqual(source["cls_head.fc_cls.weight"]!.data.array, canonical["head.projection.weight"]!.data.array)
        let result = try convert(source)
        XCTAssertEqual(result.naming, .mmaction2)
        XCTAssertEqual(result.arch, config)
        for name in canonical.names { Fixtures.assertSameBytes(result.tensors[name], canonical[name], name) }
        XCTAssertEqual(report(result, "head.projection.weight"),
                       "renamed from cls_head.fc_cls.weight; columns reordered fast-first -> slow-first (mmaction2 head)")
        XCTAssertEqual(report(result, "head.projection.bias"), "renamed from cls_head.fc_cls.bias")
        XCTAssertEqual(result.counts.reordered, 1)
    }

    func testMmaction2WithoutFusionBatchNormDetectsFusionNormFalse() throws {
        let result = try convert(mmaction2Source().source)
        XCTAssertFalse(result.arch.fusionNorm)
        XCTAssertFalse(result.tensors.names.contains { $0.contains("_fuse.bn.") })
    }

    func testMmaction2HeadReorderedBeforeCast() throws {
        let (canonical, source, _) = mmaction2Source()
        let result = try convert(source, ConvertOptions(dtype: .f16))
        XCTAssertEqual(result.tensors["head.projection.weight"]!.dtype, .f16)
        XCTAssertEqual(result.tensors["head.projection.weight"]!.floats(), canonical["head.projection.weight"]!.floats())
    }

    func testExplicitNamingOverridesDetection() throws {
        let source = Fixtures.renamed(Fixtures.canonical(Fixtures.tiny)) { Fixtures.pytorchvideoName($0, twoPathways: true) }
        XCTAssertThrowsError(try convert(source, ConvertOptions(naming: .mmaction2)))
        XCTAssertEqual(try convert(source, ConvertOptions(naming: .pytorchvideo)).naming, .pytorchvideo)
    }

    func testTwoKeysMappingToOneCanonicalKeyIsAnError() {
        var source = Fixtures.canonical(Fixtures.tiny)
        source.set("blocks.6.proj.bias", source["head.projection.bias"]!)
        XCTAssertThrowsError(try convert(source, ConvertOptions(naming: .pytorchvideo))) { error in
            XCTAssertTrue("\(error)".contains("'head.projection.bias' and 'blocks.6.proj.bias' both map to 'head.projection.bias'"), "\(error)")
        }
    }

    func testGivenArchWithStalePresetNameIsCleared() throws {
        var config = Fixtures.tiny
        config.preset = "slowfast-r50-8x8"
        let result = try convert(Fixtures.canonical(Fixtures.tiny), ConvertOptions(arch: config))
        XCTAssertNil(result.arch.preset)
        XCTAssertEqual(result.arch, Fixtures.tiny)
    }

    // MARK: Strict checking

    func testStrictErrorNamesKeyAndBothShapes() {
        var source = Fixtures.canonical(Fixtures.tiny)
        let name = "s2.pathway0_res0.branch2.a.weight"
        source.set(name, Fixtures.tensor([4, 4, 1, 1, 1], .f32) { Float($0) })
        XCTAssertThrowsError(try convert(source, ConvertOptions(arch: Fixtures.tiny))) { error in
            let text = (error as? LocalizedError)?.errorDescription ?? ""
            XCTAssertEqual(text.split(separator: "\n").first,
                           "1 tensor does not fit the model (slowfast R50, width 4, alpha 4, beta_inv 4, fusion kernel 7, 5 classes):")
            XCTAssertTrue(text.contains("  \(name): file has [4,4,1,1,1], model expects [4,6,1,1,1]"), text)
        }
    }

    func testStrictErrorListsTenOffendersAndTheTotal() {
        var config = Fixtures.tiny
        config.widthPerGroup = 8
        config.betaInv = 8   // same fast pathway, wider slow pathway
        XCTAssertThrowsError(try convert(Fixtures.canonical(Fixtures.tiny), ConvertOptions(arch: config))) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("s1.pathway0_stem.conv.weight: file has [4,3,1,7,7], model expects [8,3,1,7,7]"), text)
            XCTAssertTrue(text.contains("--allow-partial"), text)
            guard case let .mismatch(offenders, total, _, _) = error as? ConvertError else { return XCTFail(text) }
            XCTAssertEqual(offenders.count, 10)
            XCTAssertGreaterThan(total, 10)
            XCTAssertTrue(text.contains("  ... and \(total - 10) more"), text)
            XCTAssertTrue(text.hasPrefix("\(total) tensors do not fit the model"), text)
        }
    }

    func testMissingAndUnusedTensorsAreStrictErrors() {
        var source = Fixtures.canonical(Fixtures.tiny)
        source.remove("s4.pathway0_res2.branch2.c.weight")
        source.set("s4.pathway0_res9.branch2.c.weight", Fixtures.tensor([3], .f32) { Float($0) })
        XCTAssertThrowsError(try convert(source, ConvertOptions(arch: Fixtures.tiny))) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("s4.pathway0_res2.branch2.c.weight: missing from file, model expects [64,16,1,1,1]"), text)
            XCTAssertTrue(text.contains("s4.pathway0_res9.branch2.c.weight: file has [3], model has no such tensor"), text)
        }
    }

    func testFusionKernelMismatchHintsAt4x16WeightsWith8x8Config() {
        var fourBySixteen = Fixtures.tiny
        fourBySixteen.fusionKernel = 5
        fourBySixteen.alpha = 8
        XCTAssertThrowsError(try convert(Fixtures.canonical(fourBySixteen), ConvertOptions(arch: Fixtures.tiny))) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("s1_fuse.conv_f2s.weight: file has [2,1,5,1,1], model expects [2,1,7,1,1]"), text)
            XCTAssertTrue(text.contains("hint: fusion kernel 5 vs 7: 4x16 weights with an 8x8 config?"), text)
        }
    }

    func testHeadClassMismatchHintsAtNumClasses() {
        var config = Fixtures.tiny
        config.numClasses = 7
        XCTAssertThrowsError(try convert(Fixtures.canonical(Fixtures.tiny), ConvertOptions(arch: config))) { error in
            XCTAssertTrue("\(error)".contains("--num-classes 7"), "\(error)")
        }
    }

    // MARK: Partial conversion

    func testAllowPartialInitializesMissingAndMisshapedAndDropsUnused() throws {
        var source = Fixtures.canonical(Fixtures.tiny)
        source.remove("s2.pathway0_res0.branch2.a.weight")
        source.remove("s2.pathway0_res0.branch2.a_bn.running_var")
        let bad = "s3.pathway0_res0.branch1.weight"
        source.set(bad, Fixtures.tensor([2, 2], .f32) { Float($0) })
        source.set("extra.weight", Fixtures.tensor([3], .f32) { Float($0) })
        let result = try convert(source, ConvertOptions(arch: Fixtures.tiny, allowPartial: true, seed: 7))

        XCTAssertEqual(result.tensors.names, Fixtures.tiny.expectedParameters().map(\.name))
        XCTAssertEqual(report(result, "s2.pathway0_res0.branch2.a.weight")?.hasPrefix("initialized fresh N(0,"), true)
        XCTAssertEqual(report(result, "s2.pathway0_res0.branch2.a.weight")?.hasSuffix("(missing from file)"), true)
        XCTAssertEqual(report(result, "s2.pathway0_res0.branch2.a_bn.running_var"), "initialized 1 (missing from file)")
        XCTAssertEqual(report(result, bad)?.contains("file has [2,2], model expects [32,24,1,1,1]"), true, report(result, bad) ?? "")
        XCTAssertEqual(result.tensors[bad]?.shape, [32, 24, 1, 1, 1])
        XCTAssertEqual(result.tensors["s2.pathway0_res0.branch2.a_bn.running_var"]?.floats(), [1, 1, 1, 1])
        XCTAssertEqual(result.dropped.map(\.name), [bad, "extra.weight"])
        XCTAssertTrue(result.dropped[1].reason.contains("not in the model"))
        XCTAssertEqual(result.counts.initialized, 3)
        XCTAssertEqual(result.counts.dropped, 2)

        // kaiming fan_out: std sqrt(2 / (32 * 1)) for the [32,24,1,1,1] shortcut.
        let v = result.tensors[bad]!.floats()
        let std = (v.map { Double($0 * $0) }.reduce(0, +) / Double(v.count)).squareRoot()
        XCTAssertEqual(std, (2.0 / 32).squareRoot(), accuracy: 0.03)
        // Same seed, same values.
        let again = try convert(source, ConvertOptions(arch: Fixtures.tiny, allowPartial: true, seed: 7))
        XCTAssertEqual(again.tensors[bad]!.floats(), v)
    }

    // MARK: Head replacement

    func testNumClassesReplacesHeadWithSeededSmallNormal() throws {
        let source = Fixtures.canonical(ArchConfig.preset(named: "slowfast-r50-8x8")!.withTinyWidth())
        let result = try convert(source, ConvertOptions(numClasses: 300, seed: 42))
        let weight = result.tensors["head.projection.weight"]!
        XCTAssertEqual(weight.shape, [300, 160])
        XCTAssertEqual(result.tensors["head.projection.bias"]!.floats(), [Float](repeating: 0, count: 300))
        XCTAssertEqual(result.arch.numClasses, 300)
        let v = weight.floats().map(Double.init)
        let mean = v.reduce(0, +) / Double(v.count)
        let std = (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count)).squareRoot()
        XCTAssertEqual(std, 0.01, accuracy: 0.0005)
        XCTAssertEqual(mean, 0, accuracy: 0.0005)
        XCTAssertEqual(report(result, "head.projection.weight"), "initialized fresh N(0,0.01) (--num-classes 300)")
        XCTAssertEqual(report(result, "head.projection.bias"), "initialized 0 (--num-classes 300)")
        XCTAssertEqual(result.dropped.map(\.name), ["head.projection.weight", "head.projection.bias"])

        let same = try convert(source, ConvertOptions(numClasses: 300, seed: 42))
        XCTAssertEqual(same.tensors["head.projection.weight"]!.data.array, weight.data.array)
        let other = try convert(source, ConvertOptions(numClasses: 300, seed: 43))
        XCTAssertNotEqual(other.tensors["head.projection.weight"]!.data.array, weight.data.array)
    }

    func testNumClassesOnPresetCheckpointDropsPresetNameAndNotesIt() throws {
        let preset = ArchConfig.preset(named: "slowfast-r50-8x8")!
        let result = try convert(Fixtures.shapeOnly(preset), ConvertOptions(numClasses: 9))
        XCTAssertNil(result.arch.preset)
        XCTAssertEqual(result.arch.numClasses, 9)
        XCTAssertTrue(result.notes.contains("--num-classes 9: the output is preset slowfast-r50-8x8 with 9 classes"), "\(result.notes)")
        XCTAssertEqual(result.tensors["head.projection.weight"]?.shape, [9, 2304])
    }

    // MARK: dtype policy

    func testF16WeightsCastToF32Exactly() throws {
        let f16 = Fixtures.canonical(Fixtures.tiny, dtype: .f16)
        let result = try convert(f16)
        let name = "s3.pathway0_res1.branch2.b.weight"
        XCTAssertEqual(result.tensors[name]?.dtype, .f32)
        XCTAssertEqual(result.tensors[name]?.floats(), f16[name]?.floats())
        Fixtures.assertSameBytes(result.tensors[name], Fixtures.canonical(Fixtures.tiny)[name], name)
        XCTAssertEqual(report(result, name), "cast f16->f32")
        XCTAssertEqual(result.counts.cast, Fixtures.tiny.expectedParameters().filter { $0.dtype == .f32 }.count)
    }

    func testF32CastToBF16RoundsToNearestEven() throws {
        var source = Fixtures.canonical(Fixtures.tiny)
        // bf16 keeps 8 significant bits: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 -> even (1);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6 -> even (1 + 2^-6); 1 + 2^-8 + 2^-20 rounds up.
        let inputs: [Float] = [1 + 0x1p-8, 1 + 3 * 0x1p-8, 1 + 0x1p-8 + 0x1p-20, -(1 + 0x1p-8)]
        source.set("head.projection.bias", Fixtures.tensor([5], .f32) { $0 < inputs.count ? inputs[$0] : 0.5 })
        let result = try convert(source, ConvertOptions(dtype: .bf16))
        let bias = result.tensors["head.projection.bias"]!
        XCTAssertEqual(bias.dtype, .bf16)
        XCTAssertEqual(bias.floats(), [1, 1 + 0x1p-6, 1 + 0x1p-7, -1, 0.5])
        XCTAssertEqual(report(result, "head.projection.bias"), "cast f32->bf16")
    }

    func testKeepPolicyLeavesDTypesAndBytes() throws {
        let source = Fixtures.canonical(Fixtures.tiny, dtype: .bf16)
        let result = try convert(source, ConvertOptions(dtype: .keep))
        for (name, tensor) in source.ordered {
            XCTAssertEqual(result.tensors[name]?.data.raw.baseAddress, tensor.data.raw.baseAddress, name)
        }
        XCTAssertEqual(result.counts.cast, 0)
    }

    func testKeepPolicyInitializesFreshTensorsInTheFileDType() throws {
        let result = try convert(Fixtures.canonical(Fixtures.tiny, dtype: .f16), ConvertOptions(dtype: .keep, numClasses: 3))
        XCTAssertEqual(result.tensors["head.projection.weight"]?.dtype, .f16)
    }

    func testNumBatchesTrackedStaysI64Untouched() throws {
        let source = Fixtures.canonical(Fixtures.tiny)
        let result = try convert(source, ConvertOptions(dtype: .bf16))
        let name = "s2.pathway1_res0.branch1_bn.num_batches_tracked"
        XCTAssertEqual(result.tensors[name]?.dtype, .i64)
        XCTAssertEqual(result.tensors[name]?.shape, [])
        XCTAssertEqual(result.tensors[name]?.data.raw.baseAddress, source[name]?.data.raw.baseAddress)
        XCTAssertEqual(report(result, name), "copied")
    }

    func testMissingNumBatchesTrackedIsFilledWithZeroEvenWhenStrict() throws {
        var source = Fixtures.canonical(Fixtures.tiny)
        for name in source.names where name.hasSuffix(".num_batches_tracked") { source.remove(name) }
        let result = try convert(source)
        let name = "s1.pathway0_stem.bn.num_batches_tracked"
        XCTAssertEqual(result.tensors[name]?.dtype, .i64)
        XCTAssertEqual(result.tensors[name]?.data.array, [UInt8](repeating: 0, count: 8))
        XCTAssertEqual(report(result, name), "initialized 0 (not in file)")
    }

    // MARK: Full size, progress, report

    func testFullSizeR50ConvertsAllTensorsWithoutCopying() throws {
        let preset = ArchConfig.preset(named: "slowfast-r50-8x8")!
        let source = Fixtures.shapeOnly(preset)
        var calls = 0
        let result = try convertTensors(Fixtures.checkpoint(source), options: ConvertOptions()) { done, total in
            calls += 1
            XCTAssertEqual(done, calls)
            XCTAssertEqual(total, 662)
        }
        XCTAssertEqual(calls, 662)
        XCTAssertEqual(result.arch, preset)
        XCTAssertEqual(result.counts.parameters, 34_566_488)
        XCTAssertEqual(result.counts.elements, preset.stateElementCount)
        let base = source["s1.pathway0_stem.conv.weight"]!.data.raw.baseAddress
        XCTAssertTrue(result.tensors.ordered.allSatisfy { $0.tensor.data.raw.baseAddress == base })
    }

    func testReportJSONListsTensorsDroppedAndNotes() throws {
        let result = try convert(Fixtures.canonical(Fixtures.tiny), ConvertOptions(numClasses: 3))
        let json = try result.reportJSON()
        XCTAssertTrue(json.contains(#"{"action":"copied","name":"s1.pathway0_stem.conv.weight"}"#), json)
        XCTAssertTrue(json.contains(#""dropped":[{"name":"head.projection.weight""#), json)
        XCTAssertTrue(json.contains(#""notes":["naming pyslowfast detected"#), json)
    }

    func testEmptyCheckpointIsAnError() {
        XCTAssertThrowsError(try convert(TensorMap())) { error in
            XCTAssertEqual((error as? LocalizedError)?.errorDescription, "the checkpoint holds no tensors")
        }
    }
}

private extension ArchConfig {
    /// The preset's layout at width 4 (fast width 1), kept small for value tests.
    func withTinyWidth() -> ArchConfig {
        var c = self
        c.widthPerGroup = 4
        c.betaInv = 4
        c.preset = nil
        return c
    }
}
