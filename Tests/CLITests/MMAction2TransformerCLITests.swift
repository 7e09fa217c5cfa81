// mmaction2's VideoMAE and TimeSformer checkpoints through the binary (fixtures/transformers/generate_mmaction2.py):
// the naming is detected, the tensors are the Hugging Face folder's, and with the folder's architecture (the heads
// the tensors cannot show) the converted file passes verify against transformers' reference.

import Formats
import Foundation
import XCTest

final class MMAction2TransformerCLITests: XCTestCase {
    static func fixture(_ name: String) -> String { CLI.fixture("transformers/" + name) }

    func testMMAction2CheckpointsConvertToTheFolderWeightsAndVerify() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        for (file, folder, naming) in [("tiny_videomae_mmaction2.pth", "tiny_videomae", "mmaction2-videomae"),
                                       ("tiny_timesformer_mmaction2.pth", "tiny_timesformer", "mmaction2-timesformer")] {
            let fromFolder = dir.appendingPathComponent(folder + ".safetensors").path
            XCTAssertEqual(try CLI.run(["convert", Self.fixture(folder), "-o", fromFolder]).status, 0)
            let guessed = dir.appendingPathComponent(file + ".guessed.safetensors").path
            let g = try CLI.run(["convert", Self.fixture(file), "-o", guessed])
            XCTAssertEqual(g.status, 0, g.stdout + g.stderr)
            XCTAssertTrue(g.stdout.contains("\(naming) naming") && g.stdout.contains("1 attention heads assumed"), g.stdout)
            let a = try CheckpointReader.read(path: fromFolder), b = try CheckpointReader.read(path: guessed)
            XCTAssertEqual(a.tensors.names, b.tensors.names, file)
            for (name, t) in a.tensors.ordered { if let u = b.tensors[name] { assertSameTensor(t, u, name) } }

            let arch = dir.appendingPathComponent(folder + ".arch.json")
            try XCTUnwrap(a.metadataValue("sfnet.arch")).write(to: arch, atomically: true, encoding: .utf8)
            let exact = dir.appendingPathComponent(file + ".safetensors").path
            XCTAssertEqual(try CLI.run(["convert", Self.fixture(file), "-o", exact, "--arch-json", arch.path]).status, 0)
            let v = try CLI.run(["verify", exact, "--reference", Self.fixture(folder + "_ref.safetensors")])
            XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
            XCTAssertTrue(v.stdout.contains("activation.layer.1") && v.stdout.contains("PASSED"), v.stdout)
        }
    }
}
