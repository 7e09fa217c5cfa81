// PySlowFast YAML configs: the AK-shaped fixture read into settings, refused keys, and hostile YAML
// (SECURITY.md case 34) refused with its own error before anything is built.

import Finetune
import Foundation
import XCTest

final class PySlowFastConfigTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let ak = root.appendingPathComponent("fixtures/yaml/AK_SLOWFAST_8x8_R50.yaml").path

    func yaml(_ text: String, file: String = "test.yaml") throws -> YAMLNode { try YAMLData.parse(Data(text.utf8), file: file) }

    func refusal(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> YAMLError? {
        do { _ = try yaml(text); XCTFail("accepted", file: file, line: line); return nil } catch let e as YAMLError { return e } catch {
            XCTFail("\(error)", file: file, line: line); return nil
        }
    }

    func apply(_ text: String) throws -> (FinetuneOptions, SettingSources) {
        var o = FinetuneOptions(train: "", out: "")
        var s = SettingSources()
        try PySlowFastConfig(file: "test.yaml", root: yaml(text)).apply(to: &o, sources: &s)
        return (o, s)
    }

    func testAKConfigGivesTheArchitectureAndTheRecipe() throws {
        var o = FinetuneOptions(train: "", out: "")
        var s = SettingSources()
        try PySlowFastConfig.load(Self.ak).apply(to: &o, sources: &s)
        XCTAssertEqual(o.train, "annotation/train.csv")
        XCTAssertEqual(o.val, "annotation/val.csv")
        XCTAssertEqual(o.frameRoot, "dataset/image")
        XCTAssertEqual(o.batch, 8)
        XCTAssertEqual(o.frames, 8)
        XCTAssertEqual(o.samplingRate, 2)
        XCTAssertEqual([o.jitterMin, o.jitterMax], [256, 340])
        XCTAssertEqual(o.crop, 256)
        XCTAssertEqual(o.testCrop, 256)
        XCTAssertTrue(o.inverseUniformJitter)
        XCTAssertTrue(o.reverseChannels)
        XCTAssertEqual(o.ensemble, .max)
        XCTAssertEqual(o.loss, .bce)
        XCTAssertEqual(o.lr, 0.0375)
        XCTAssertEqual(o.schedule, "steps")
        XCTAssertEqual(o.lrSteps, [0, 41, 49])
        XCTAssertEqual(o.lrRelative, [1, 0.1, 0.01], "LRS past len(STEPS) are never read by get_step_index")
        XCTAssertEqual(o.epochs, 57)
        XCTAssertEqual(o.warmupEpochs, 4)
        XCTAssertEqual(o.warmupStartLR, 0.0001)
        XCTAssertEqual(o.weightDecay, 1e-4)
        XCTAssertTrue(o.nesterov, "PySlowFast's default SOLVER.NESTEROV")
        XCTAssertEqual(s["nesterov"], "PySlowFast default SOLVER.NESTEROV")
        XCTAssertEqual(s["lr"], "file SOLVER.BASE_LR (line 52)")
        XCTAssertEqual(o.testTemporalViews, 10)
        XCTAssertEqual(o.testSpatialCrops, 3)
        XCTAssertEqual(o.seed, 0)
        let a = try XCTUnwrap(o.architecture)
        XCTAssertEqual(a.model, .slowfast)
        XCTAssertEqual(a.stageDepths, [3, 4, 6, 3])
        XCTAssertEqual([a.alpha, a.betaInv, a.fusionConvChannelRatio, a.fusionKernel], [4, 8, 2, 7])
        XCTAssertEqual(a.numClasses, 140)
        XCTAssertEqual(a.headActivation, .sigmoid)
        // Each key is recorded once: used ones with the setting, the others with the reason.
        XCTAssertTrue(o.fromConfig.contains { $0.key == "DATA.REVERSE_INPUT_CHANNEL" && $0.value == "True" && $0.setting == "bgr" })
        XCTAssertTrue(o.ignoredConfigKeys.contains { $0.key == "BN.NORM_TYPE" && $0.value == "sync_batchnorm" })
        XCTAssertTrue(o.ignoredConfigKeys.contains { $0.key == "NUM_GPUS" && $0.setting.contains("one process") })
        XCTAssertTrue(o.ignoredConfigKeys.contains { $0.key == "DATA_LOADER.NUM_WORKERS" })
        let keys = o.fromConfig.map(\.key) + o.ignoredConfigKeys.map(\.key)
        XCTAssertEqual(keys.count, Set(keys).count, "a key listed twice")
        XCTAssertTrue(o.printedConfig(sources: s).contains("ignored keys of"))
    }

    func testYAML11BooleansAndNumbersAreTypedAsPyYAMLAndYacsRead() throws {
        let (o, _) = try apply("DATA:\n  INV_UNIFORM_SAMPLE: yes\nSOLVER:\n  WEIGHT_DECAY: 5e-5\n  NESTEROV: False\n")
        XCTAssertTrue(o.inverseUniformJitter)
        XCTAssertEqual(o.weightDecay, 5e-5)
        XCTAssertFalse(o.nesterov)
        // A quoted 'True' is a string in YAML, and PySlowFast's boolean keys refuse strings.
        XCTAssertThrowsError(try apply("DATA:\n  REVERSE_INPUT_CHANNEL: 'True'\n")) { XCTAssertTrue("\($0)".contains("expected True or False")) }
    }

    func testPreciseBNKeysSetPreciseBN() throws {
        let (on, s) = try apply("BN:\n  USE_PRECISE_STATS: True\n  NUM_BATCHES_PRECISE: 50\n")
        XCTAssertEqual(on.preciseBN, 50)
        XCTAssertEqual(s["precise-bn"], "file BN.NUM_BATCHES_PRECISE (line 3)")
        XCTAssertTrue(on.fromConfig.contains { $0.key == "BN.USE_PRECISE_STATS" && $0.setting == "precise-bn" })
        XCTAssertTrue(on.printedConfig(sources: s).contains("50 batches"))
        let (byDefault, d) = try apply("BN:\n  USE_PRECISE_STATS: True\n")
        XCTAssertEqual(byDefault.preciseBN, 200, "PySlowFast's default NUM_BATCHES_PRECISE")
        XCTAssertEqual(d["precise-bn"], "file BN.USE_PRECISE_STATS (line 2)")
        XCTAssertEqual(try apply("BN:\n  NUM_BATCHES_PRECISE: 50\n").0.preciseBN, 0, "off unless USE_PRECISE_STATS")
        XCTAssertEqual(try apply("TRAIN:\n  BATCH_SIZE: 4\n").0.preciseBN, 0, "PySlowFast's default USE_PRECISE_STATS False")
        XCTAssertThrowsError(try apply("BN:\n  USE_PRECISE_STATS: True\n  NUM_BATCHES_PRECISE: 0\n")) {
            XCTAssertTrue("\($0)".contains("BN.NUM_BATCHES_PRECISE: expected an integer >= 1"), "\($0)")
        }
    }

    func testKeysThatWouldChangeResultsAreRefusedByKeyAndValue() throws {
        let cases: [(String, String)] = [
            ("MODEL:\n  ARCH: x3d\n", "MODEL.ARCH: x3d"),
            ("MODEL:\n  LOSS_FUNC: soft_cross_entropy\n", "MODEL.LOSS_FUNC: soft_cross_entropy"),
            ("MIXUP:\n  ENABLE: True\n", "MIXUP.ENABLE: True"),
            ("DATA:\n  USE_OFFSET_SAMPLING: True\n", "DATA.USE_OFFSET_SAMPLING: True"),
            ("BN:\n  NORM_TYPE: sub_batchnorm\n", "BN.NORM_TYPE: sub_batchnorm"),
            ("SOLVER:\n  LR_POLICY: exp\n", "SOLVER.LR_POLICY: exp"),
            ("DATA:\n  ENSEMBLE_METHOD: mean\n", "DATA.ENSEMBLE_METHOD: mean"),
            ("RESNET:\n  DEPTH: 101\n", "RESNET.NUM_BLOCK_TEMP_KERNEL"),
            ("MODEL:\n  LOSS_FUNC: bce_loss\n", "HEAD_ACT"),
            ("DATA:\n  NUM_FRAMES: eight\n", "DATA.NUM_FRAMES: expected an integer, found eight"),
            ("TRAIN:\n  BATCH_SIZES: 8\n", "TRAIN.BATCH_SIZES is not a PySlowFast config key"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try apply(text), text) { e in
                XCTAssertTrue("\(e)".contains(expected), "\(text): \(e)")
                XCTAssertTrue("\(e)".hasPrefix("test.yaml"), "\(e)")
            }
        }
    }

    // MARK: hostile YAML

    func testBillionLaughsIsRefusedBeforeExpansion() throws {
        var text = "a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n"
        for i in 1 ... 9 { text += "\(Character(UnicodeScalar(97 + i)!)): &\(Character(UnicodeScalar(97 + i)!)) [" + Array(repeating: "*\(Character(UnicodeScalar(96 + i)!))", count: 9).joined(separator: ", ") + "]\n" }
        let t0 = Date()
        XCTAssertEqual(refusal(text)?.kind, .anchorOrAlias)
        XCTAssertEqual(refusal(text)?.line, 1)
        // Aliases as mapping keys (hashed by the composer's duplicate check) are stopped the same way.
        XCTAssertEqual(refusal("x: &x {a: 1}\n? *x\n: 2\n")?.kind, .anchorOrAlias)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 1)
    }

    func testTagsMergeKeysDirectivesAndSecondDocumentsAreRefused() throws {
        let tag = refusal("TRAIN:\n  DATASET: !!python/object/apply:os.system [\"echo hi\"]\n")
        XCTAssertEqual(tag?.kind, .tag)
        XCTAssertEqual(tag?.line, 2)
        XCTAssertEqual(refusal("a: !custom 1\n")?.kind, .tag)
        XCTAssertEqual(refusal("base: {A: 1}\nTRAIN:\n  <<: {BATCH_SIZE: 8}\n")?.kind, .mergeKey)
        XCTAssertEqual(refusal("%TAG ! tag:example.com,2000:\n---\na: 1\n")?.kind, .directive)
        let multi = refusal("TRAIN:\n  BATCH_SIZE: 8\n---\nTRAIN:\n  BATCH_SIZE: 64\n")
        XCTAssertEqual(multi?.kind, .multipleDocuments)
        XCTAssertEqual(multi?.line, 3)
        // Quoted text and comments may hold the same characters.
        let ok = try yaml("# anchors like &a and *a in a comment\nOUTPUT_DIR: \"./runs/&a *b !c <<\"\nNAME: 'it''s & fine'\n")
        guard case .mapping(let es, _) = ok else { return XCTFail("mapping") }
        XCTAssertEqual(es.map(\.key), ["OUTPUT_DIR", "NAME"])
    }

    func testDeepNestingAndHugeFilesAreRefused() throws {
        XCTAssertEqual(refusal("a: " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "\n")?.kind, .tooDeep)
        var block = ""
        for d in 0 ..< 40 { block += String(repeating: " ", count: d) + "k\(d):\n" }
        XCTAssertEqual(refusal(block + String(repeating: " ", count: 40) + "v: 1\n")?.kind, .tooDeep)
        XCTAssertEqual(refusal(String(repeating: "- ", count: 100) + "x\n")?.kind, .tooDeep)
        let huge = Data(("a: \"" + String(repeating: "x", count: YAMLData.maxBytes) + "\"\n").utf8)
        XCTAssertThrowsError(try YAMLData.parse(huge, file: "huge.yaml")) { XCTAssertEqual(($0 as? YAMLError)?.kind, .tooLarge) }
    }
}
