// Key-map tables and naming detection.

import XCTest
import Formats
@testable import Convert

final class NamingTests: XCTestCase {
    func testPySlowFastTableIsIdentity() {
        for e in Fixtures.tiny.expectedParameters() {
            XCTAssertEqual(Naming.pyslowfast.canonicalName(e.name).name, e.name)
            XCTAssertTrue(Naming.isCanonical(e.name), e.name)
        }
    }

    func testPytorchvideoNamesMapToCanonicalKeys() {
        for config in [Fixtures.tiny, Fixtures.tinySlow] {
            for e in config.expectedParameters() {
                let name = Fixtures.pytorchvideoName(e.name, twoPathways: config.pathways == 2)
                XCTAssertEqual(Naming.pytorchvideo.canonicalName(name).name, e.name, name)
            }
        }
        XCTAssertEqual(Naming.pytorchvideo.canonicalName("blocks.3.multipathway_fusion.conv_fast_to_slow.weight").name, "s4_fuse.conv_f2s.weight")
        XCTAssertEqual(Naming.pytorchvideo.canonicalName("blocks.4.multipathway_blocks.1.res_blocks.2.branch2.norm_c.running_var").name,
                       "s5.pathway1_res2.branch2.c_bn.running_var")
    }

    func testMmaction2NamesMapToCanonicalKeys() {
        for config in [Fixtures.tiny, Fixtures.tinySlow] {
            for e in config.expectedParameters() {
                let name = Fixtures.mmaction2Name(e.name, twoPathways: config.pathways == 2)
                XCTAssertEqual(Naming.mmaction2.canonicalName(name).name, e.name, name)
            }
        }
        // Plain Conv3d laterals and Sequential downsamples of older mmaction versions.
        XCTAssertEqual(Naming.mmaction2.canonicalName("backbone.slow_path.layer2_lateral.weight").name, "s3_fuse.conv_f2s.weight")
        XCTAssertEqual(Naming.mmaction2.canonicalName("backbone.fast_path.layer3.0.downsample.1.running_mean").name,
                       "s4.pathway1_res0.branch1_bn.running_mean")
    }

    func testNamingDetectedFromKeySet() throws {
        let canonical = Fixtures.canonical(Fixtures.tiny)
        XCTAssertEqual(try Naming.detect(canonical.names), .pyslowfast)
        XCTAssertEqual(try Naming.detect(canonical.names.map { Fixtures.pytorchvideoName($0, twoPathways: true) }), .pytorchvideo)
        XCTAssertEqual(try Naming.detect(canonical.names.map { Fixtures.mmaction2Name($0, twoPathways: true) }), .mmaction2)
        XCTAssertEqual(Naming.pytorchvideo.score(canonical.names), 0, "a table that rewrites nothing scores nothing")
        XCTAssertEqual(Naming.pyslowfast.score(canonical.names), 1)
    }

    func testUndetectableNamingErrorListsScoresSampleKeyAndSuggestsFlag() {
        let keys = ["features.0.weight", "features.0.bias", "classifier.weight"]
        XCTAssertThrowsError(try Naming.detect(keys)) { error in
            let text = (error as? LocalizedError)?.errorDescription ?? ""
            for part in ["pyslowfast 0.00", "pytorchvideo 0.00", "mmaction2 0.00", "features.0.weight", "--naming"] {
                XCTAssertTrue(text.contains(part), "'\(part)' not in: \(text)")
            }
        }
    }

    func testNamingTieIsAnError() {
        // Half pyslowfast, half pytorchvideo: neither explains the file.
        let keys = ["s1.pathway0_stem.conv.weight", "blocks.0.multipathway_blocks.0.conv.weight"]
        XCTAssertThrowsError(try Naming.detect(keys)) { error in
            XCTAssertTrue("\(error)".contains("pyslowfast 0.50"), "\(error)")
        }
    }

    /// Every rule's example comment (`// source -> result`) is what that rule alone does.
    func testEveryKeyRuleExampleCommentHolds() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/Convert/KeyMaps.swift").standardized
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { throw XCTSkip("no source at \(url.path)") }
        let rulePattern = try NSRegularExpression(pattern: ##"KeyRule\(#"(.*)"#, "(.*)"\),\s*// (\S+)[^>]*-> (\S+)"##)
        var checked = 0
        for line in text.split(separator: "\n").map(String.init) where line.contains("KeyRule(#") {
            guard let m = rulePattern.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)) else {
                XCTFail("rule without an example: \(line)"); continue
            }
            let g = (1 ... 4).map { String(line[Range(m.range(at: $0), in: line)!]) }
            XCTAssertEqual(KeyRule(g[0], g[1]).apply(g[2]), g[3], line)
            checked += 1
        }
        XCTAssertEqual(checked, [KeyMap.pytorchvideo, .mmaction2, .caffe2, .detectron, .torchvision].reduce(0) { $0 + $1.rules.count })
    }
}
