// `sfnet inspect` on real files: text and JSON, hashes checked against Python's hashlib.

import Foundation
import XCTest
@testable import Formats

final class InspectCLITests: XCTestCase {
    func testJSONHashesMatchPythonHashlib() throws {
        let views = try CLI.manifest().first { $0["input"]?.stringValue == "torch/views.pt" }!
        guard case .object(let hashes)? = views["tensor_sha256"] else { return XCTFail("manifest lacks tensor_sha256") }
        let r = try CLI.run(["inspect", CLI.fixture("torch/views.pt"), "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try JSONParser.parse(r.stdout)
        guard case .array(let tensors)? = j["tensors"] else { return XCTFail("no tensors") }
        XCTAssertEqual(tensors.count, hashes.count)
        for t in tensors {
            let name = t["name"]!.stringValue!
            XCTAssertEqual(t["sha256"]?.stringValue, hashes.first { $0.0 == name }?.1.stringValue, name)
        }
        XCTAssertEqual(j["format"]?.stringValue, "torch-zip")
        guard case .array(let aliases)? = j["aliases"] else { return XCTFail("aliases") }
        XCTAssertEqual(aliases.count, 1)
    }

    func testTextShowsContainerEntriesNamingAndArch() throws {
        let r = try CLI.run(["inspect", CLI.fixture("torch/tiny_legacy.pth")])
        XCTAssertEqual(r.status, 0, r.stderr)
        for needle in ["torch-legacy", "epoch: int 7", "optimizer_state", "cfg: str", "naming:     pyslowfast", "slowfast R50", "s5.pathway1_res2.branch2.c_bn.running_var"] {
            XCTAssertTrue(r.stdout.contains(needle), "missing '\(needle)' in:\n\(r.stdout.prefix(1500))")
        }
    }

    func testNativeFileShowsItsMetadata() throws {
        let dir = try CLI.tempDir()
        let out = dir.appendingPathComponent("n.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", CLI.fixture("torch/tiny_bf16.pth"), "-o", out]).status, 0)
        let r = try CLI.run(["inspect", out])
        XCTAssertTrue(r.stdout.contains("sfnet native"), r.stdout)
        XCTAssertTrue(r.stdout.contains("tiny_bf16.pth"), r.stdout)
        XCTAssertTrue(r.stdout.contains("cast bf16->f32"), r.stdout)
        let j = try JSONParser.parse(try CLI.run(["inspect", out, "--json"]).stdout)
        XCTAssertEqual(j["native"], .bool(true))
        XCTAssertEqual(j["arch"]?["beta_inv"]?.intValue, 4)
    }

    func testEveryReadableFormatInspects() throws {
        for f in ["numpy/arrays.npy", "numpy/compressed.npz", "torch/tiny_expected.safetensors", "hostile/files/valid_caffe2.pkl"] {
            let r = try CLI.run(["inspect", CLI.fixture(f)])
            XCTAssertEqual(r.status, 0, "\(f): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("tensors:"), f)
        }
    }
}
