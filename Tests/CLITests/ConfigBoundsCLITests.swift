// Numbers in a PySlowFast config are data from a file: a value past any real network's or recipe's
// size must end in a typed error naming the key, never in an arithmetic trap (SECURITY.md 34). Each of
// these trapped (SIGILL, exit 132) before the upper bounds in FinetuneOptions.problems() and
// ArchConfig.validate(): BATCH_SIZE and SAMPLING_RATE in the clip arithmetic, WIDTH_PER_GROUP and
// FUSION_CONV_CHANNEL_RATIO in the channel arithmetic of the scratch architecture.

import Families
import Foundation
import XCTest

final class ConfigBoundsCLITests: XCTestCase {
    func testHugeConfigNumbersAreRefusedWithTheirKeyNotATrap() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let ak = dir.appendingPathComponent("AK")
        try FileManager.default.copyItem(atPath: CLI.fixture("ak"), toPath: ak.path)
        let yaml = try String(contentsOfFile: CLI.fixture("ak/configs/SLOWFAST_8x8_R50.yaml"), encoding: .utf8)
        let huge = "9223372036854775807"
        let cases: [(from: String, to: String, phrase: String)] = [
            ("BATCH_SIZE: 2", "BATCH_SIZE: \(huge)", "TRAIN.BATCH_SIZE) is \(huge), at most 4096"),
            ("SAMPLING_RATE: 2", "SAMPLING_RATE: \(huge)", "DATA.SAMPLING_RATE) is \(huge), at most 1024"),
            ("NUM_ENSEMBLE_VIEWS: 10", "NUM_ENSEMBLE_VIEWS: \(huge)", "TEST.NUM_ENSEMBLE_VIEWS) is \(huge), at most 100"),
            ("WIDTH_PER_GROUP: 64", "WIDTH_PER_GROUP: \(huge)", "width_per_group (<= 4096)"),
            ("FUSION_CONV_CHANNEL_RATIO: 2", "FUSION_CONV_CHANNEL_RATIO: \(huge)", "fusion_conv_channel_ratio (<= 64)"),
            ("FUSION_KERNEL_SZ: 7", "FUSION_KERNEL_SZ: \(huge)", "fusion_kernel (<= 31)"),
        ]
        for (i, c) in cases.enumerated() {
            XCTAssertTrue(yaml.contains(c.from), c.from)
            let config = ak.appendingPathComponent("configs/case\(i).yaml")
            try yaml.replacingOccurrences(of: c.from, with: c.to).write(to: config, atomically: true, encoding: .utf8)
            let out = ak.appendingPathComponent("runs/case\(i)")
            let r = try CLI.run(["finetune", "--config", "configs/case\(i).yaml", "--init", "scratch", "--out", "runs/case\(i)"], in: ak)
            XCTAssertFalse(r.signaled, "\(c.to): killed by a signal\n\(r.stderr.prefix(400))")
            XCTAssertEqual(r.status, 1, "\(c.to): \(r.stderr.prefix(400))")
            XCTAssertTrue(r.stderr.contains(c.phrase), "\(c.to): \(r.stderr.prefix(400))")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("best.safetensors").path), c.to)
        }
    }
}
