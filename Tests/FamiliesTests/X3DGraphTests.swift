// X3D's graph against pytorchvideo's real models: every state_dict entry, in order, with its
// shape (mapped to PySlowFast's names by fixtures/x3d/generate_x3d.py), and the parameter count.

import Families
import Foundation
import XCTest

final class X3DGraphTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/x3d")

    struct Entry: Decodable {
        let pytorchvideo: String
        let parameters: Int
        let entries: [[Either]]
    }

    /// A JSON array element that is a name or a shape.
    enum Either: Decodable {
        case name(String), shape([Int])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .name(s) } else { self = .shape(try c.decode([Int].self)) }
        }
    }

    func testEveryPresetListsPytorchvideosEntriesInOrderWithTheirShapes() throws {
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent("x3d_structure.json"))
        let models = try JSONDecoder().decode([String: Entry].self, from: data)
        XCTAssertEqual(Set(models.keys), ["x3d-s", "x3d-m", "x3d-l"])
        for (preset, reference) in models.sorted(by: { $0.key < $1.key }) {
            let config = try ArchConfig.requirePreset(preset)
            let mine = config.graph().parameters
            let theirs: [(String, [Int])] = reference.entries.map {
                guard case let .name(n) = $0[0], case let .shape(s) = $0[1] else { fatalError("bad entry") }
                return (n, s)
            }
            XCTAssertEqual(mine.count, theirs.count, "\(preset): entries")
            for (m, t) in zip(mine, theirs) where m.name != t.0 || m.shape != t.1 {
                XCTFail("\(preset): sfnet has \(m.name) \(m.shape), pytorchvideo \(t.0) \(t.1)")
                break
            }
            XCTAssertEqual(config.parameterCount, reference.parameters, "\(preset) (\(reference.pytorchvideo))")
        }
    }

    func testX3DWidthsDepthsAndSEFollowPySlowFastsRounding() {
        let x = X3DConfig()
        XCTAssertEqual(x.stemChannels, 24)
        XCTAssertEqual(x.stageOutChannels, [24, 48, 96, 192])
        XCTAssertEqual(x.stageInnerChannels, [54, 108, 216, 432])
        XCTAssertEqual(x.stageDepths, [3, 5, 11, 7])
        XCTAssertEqual(X3DConfig(depthFactor: 5.0).stageDepths, [5, 10, 25, 15])
        XCTAssertEqual(X3DConfig.roundWidth(54, 0.0625), 8)
        XCTAssertEqual(X3DConfig.roundWidth(12, 1.0), 16)   // 12 rounds up to a multiple of 8
    }

    func testX3DConfigRoundTripsThroughSfnetArchWithoutSlowFastFields() throws {
        let config = try ArchConfig.requirePreset("x3d-m")
        let json = try config.jsonString()
        XCTAssertFalse(json.contains("alpha"), json)
        XCTAssertTrue(json.contains("\"width_factor\":2"), json)
        XCTAssertEqual(try ArchConfig.fromJSON(json), config)
        var bad = config
        bad.x3d?.stemTemporalKernel = 4
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("stem_temporal_kernel must be odd"), "\($0)") }
        XCTAssertThrowsError(try ArchConfig.fromJSON(#"{"model":"x3d","num_classes":5,"dropout":0.5,"head_activation":"softmax","num_frames":4,"train_crop":64}"#))
        // Every field within its bounds, the whole far beyond any network: refused before anything is allocated.
        var huge = config
        huge.x3d = X3DConfig(widthFactor: 16, depthFactor: 32, bottleneckFactor: 16, dimC1: 1024)
        XCTAssertThrowsError(try huge.validate()) { XCTAssertTrue("\($0)".contains("state elements"), "\($0)") }
    }
}
