// Files made by real PyTorch and NumPy (fixtures/generate.py) read back exactly:
// every tensor equals, byte for byte, what the safetensors package wrote.

import XCTest
@testable import Formats

final class FixtureReadTests: XCTestCase {
    /// The manifest's "tensors" cases: read the input directly and compare with the expected file.
    func testEveryTensorFixtureMatchesTheIndependentWriter() throws {
        var checked = 0
        for c in try Fixtures.manifest() where c["kind"]?.stringValue == "tensors" {
            let input = c["input"]!.stringValue!
            let expected = try CheckpointReader.read(path: Fixtures.path(c["expected"]!.stringValue!))
            let got: Checkpoint
            do { got = try CheckpointReader.read(path: Fixtures.path(input)) } catch {
                if case .bool(true)? = c["optional"] { print("optional fixture \(input) not readable: \(error)"); continue }
                throw error
            }
            XCTAssertEqual(got.format.rawValue, c["inspect_format"]?.stringValue, input)
            // npy/npz tensors are named '<file stem>/<array>' in the expected file.
            let stem = URL(fileURLWithPath: input).deletingPathExtension().lastPathComponent
            var names: [String] = []
            if case .array(let ns)? = c["names"] { names = ns.compactMap(\.stringValue) } else { names = got.tensors.names }
            XCTAssertFalse(names.isEmpty, input)
            for expectedName in names {
                let localName: String
                if got.format == .npz { localName = String(expectedName.dropFirst(stem.count + 1)) } else { localName = expectedName }
                guard let t = got.tensors[localName] else { XCTFail("\(input): missing \(localName)"); continue }
                guard let e = expected.tensors[expectedName] else { XCTFail("\(input): expected file lacks \(expectedName)"); continue }
                assertSameTensor(t, e, "\(input):\(expectedName)")
                checked += 1
            }
            if case .array(let groups)? = c["aliases"] {
                let want = groups.map { g -> [String] in if case .array(let xs) = g { return xs.compactMap(\.stringValue).sorted() }; return [] }
                XCTAssertEqual(got.aliases.map { $0.sorted() }, want, "\(input): shared storages")
            }
        }
        XCTAssertGreaterThan(checked, 30)
    }

    func testViewsAreGatheredAndNoted() throws {
        let ck = try CheckpointReader.read(path: Fixtures.path("torch/views.pt"))
        XCTAssertNotNil(ck.notes["transposed"])
        XCTAssertNotNil(ck.notes["expanded"])
        XCTAssertNil(ck.notes["f32"])
        XCTAssertEqual(ck.tensors["scalar"]?.shape, [])
        XCTAssertEqual(ck.tensors["empty"]?.shape, [0, 3])
    }

    func testModelFixturesKeepContainerEntries() throws {
        let ck = try CheckpointReader.read(path: Fixtures.path("torch/tiny_pyslowfast.pyth"))
        XCTAssertEqual(ck.containerKey, "model_state")
        XCTAssertEqual(ck.otherEntries.map(\.key).sorted(), ["cfg", "epoch", "optimizer_state"])
        XCTAssertEqual(ck.otherEntries.first { $0.key == "epoch" }?.summary, "int 7")
        XCTAssertTrue(ck.otherEntries.first { $0.key == "optimizer_state" }!.summary.contains("tensors inside"))
        let legacy = try CheckpointReader.read(path: Fixtures.path("torch/tiny_legacy.pth"))
        XCTAssertEqual(legacy.format, .torchLegacy)
        XCTAssertEqual(legacy.tensors.names, ck.tensors.names)
        let dp = try CheckpointReader.read(path: Fixtures.path("torch/tiny_plain_module_prefix.pth"))
        XCTAssertEqual(dp.strippedPrefix, "module.")
        XCTAssertEqual(dp.tensors.names, ck.tensors.names)
    }

    func testEveryTorchVariantReadsToTheSameTensors() throws {
        let reference = try CheckpointReader.read(path: Fixtures.path("torch/tiny_expected.safetensors"))
        for f in ["tiny_pyslowfast.pyth", "tiny_legacy.pth", "tiny_deflated.pth", "tiny_bigendian.pth", "tiny_prefix.pth", "tiny_plain_module_prefix.pth"] {
            let ck = try CheckpointReader.read(path: Fixtures.path("torch/" + f))
            XCTAssertEqual(ck.tensors.count, reference.tensors.count, f)
            for (n, t) in reference.tensors.ordered {
                guard let g = ck.tensors[n] else { XCTFail("\(f): missing \(n)"); continue }
                assertSameTensor(g, t, "\(f):\(n)")
            }
        }
    }

    func testTorchScriptIsRefused() {
        XCTAssertThrowsError(try CheckpointReader.read(path: Fixtures.path("torch/torchscript_tiny.pt"))) {
            XCTAssertTrue("\($0)".contains("TorchScript archives are not supported"), "\($0)")
        }
    }
}
