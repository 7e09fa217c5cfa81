// Metrics on hand-computed cases, on scikit-learn's own values
// (fixtures/train/map_sklearn.json, written by scripts/check_map_sklearn.py
// --write-fixture), and the helper through which that script checks sfnet's
// mAP against a live scikit-learn.

import XCTest
import Formats
@testable import Train

final class MetricsTests: XCTestCase {
    func testAveragePrecisionOfSklearnsDocumentationExample() throws {
        // sorted: 0.8 (+), 0.4 (-), 0.35 (+), 0.1 (-): 0.5 * 1 + 0.5 * 2/3
        let ap = try Metrics.averagePrecision(scores: [0.1, 0.4, 0.35, 0.8], positives: [false, false, true, true])
        XCTAssertEqual(try XCTUnwrap(ap), 0.5 + 0.5 * 2.0 / 3.0, accuracy: 1e-15)
    }

    func testTiedScoresFormOneThreshold() throws {
        // 0.5 x3 (one +) enter together: R 0.5 at P 1/3; then 0.2 (+): R 1 at P 2/4.
        let ap = try Metrics.averagePrecision(scores: [0.5, 0.5, 0.5, 0.2], positives: [false, true, false, true])
        XCTAssertEqual(try XCTUnwrap(ap), 0.5 / 3 + 0.5 * 0.5, accuracy: 1e-15)
        // The order of tied clips does not matter.
        let swapped = try Metrics.averagePrecision(scores: [0.5, 0.5, 0.5, 0.2], positives: [true, false, false, true])
        XCTAssertEqual(ap, swapped)
        // Every score equal: precision is the positive rate, at recall 1.
        XCTAssertEqual(try Metrics.averagePrecision(scores: [1, 1, 1, 1], positives: [true, false, false, false]), 0.25)
    }

    func testPerfectAndWorstRankingsAndClassesWithoutPositives() throws {
        XCTAssertEqual(try Metrics.averagePrecision(scores: [0.9, 0.8, 0.1], positives: [true, true, false]), 1)
        // The only positive ranked last of 4: P = 1/4 at R = 1.
        XCTAssertEqual(try Metrics.averagePrecision(scores: [0.9, 0.8, 0.7, 0.1], positives: [false, false, false, true]), 0.25)
        XCTAssertNil(try Metrics.averagePrecision(scores: [0.9, 0.8], positives: [false, false]))
    }

    func testMeanAPAveragesOnlyClassesWithAPositive() throws {
        // 4 clips x 3 classes; class 2 has no positive.
        let scores: [Float] = [0.9, 0.1, 0.3,
                               0.2, 0.8, 0.3,
                               0.6, 0.7, 0.9,
                               0.1, 0.2, 0.5]
        let labels = [0, 1, 1, 0]
        let m = try Metrics.meanAveragePrecision(scores: scores, labels: labels, classes: 3)
        // class 0: 0.9 (+), 0.6 (-), 0.2 (-), 0.1 (+): 0.5 * 1 + 0.5 * 2/4
        // class 1: 0.8 (+), 0.7 (+): 1
        XCTAssertEqual(m.perClass[0]!, 0.75, accuracy: 1e-15)
        XCTAssertEqual(m.perClass[1]!, 1, accuracy: 1e-15)
        XCTAssertNil(m.perClass[2])
        XCTAssertEqual(m.classesWithPositives, 2)
        XCTAssertEqual(m.mAP!, 0.875, accuracy: 1e-15)
    }

    func testTopKAccuracyAndConfusionMatrix() throws {
        let scores: [Float] = [0.1, 0.7, 0.2,   // argmax 1
                               0.5, 0.5, 0.0,   // tie: class 0 first
                               0.3, 0.3, 0.4]   // argmax 2, then 0, 1
        XCTAssertEqual(try Metrics.topKAccuracy(scores: scores, labels: [1, 1, 0], classes: 3, k: 1), 1.0 / 3)
        XCTAssertEqual(try Metrics.topKAccuracy(scores: scores, labels: [1, 1, 0], classes: 3, k: 2), 1)
        XCTAssertEqual(try Metrics.topKAccuracy(scores: scores, labels: [[0, 1], [2], [1]], classes: 3, k: 1), 1.0 / 3)
        XCTAssertEqual(try Metrics.confusionMatrix(scores: scores, labels: [1, 1, 0], classes: 3),
                       [[0, 0, 1],
                        [1, 1, 0],
                        [0, 0, 0]])
        let e = try Metrics.evaluate(scores: scores, labels: [[1], [1], [0]], classes: 3)
        XCTAssertEqual(e.top1, 1.0 / 3)
        XCTAssertEqual(e.top5, 1)
        XCTAssertNotNil(e.confusion)
        XCTAssertNil(try Metrics.evaluate(scores: scores, labels: [[1, 2], [1], [0]], classes: 3).confusion)
    }

    func testBadInputsAreTypedErrors() {
        XCTAssertThrowsError(try Metrics.averagePrecision(scores: [0.1, .nan], positives: [true, false])) {
            XCTAssertTrue("\($0)".contains("clip 1 is not finite"), "\($0)")
        }
        XCTAssertThrowsError(try Metrics.meanAveragePrecision(scores: [0, 0, 0], labels: [0], classes: 2)) {
            XCTAssertTrue("\($0)".contains("not a whole number of rows of 2 classes"), "\($0)")
        }
        XCTAssertThrowsError(try Metrics.confusionMatrix(scores: [0, 1], labels: [3], classes: 2)) {
            XCTAssertTrue("\($0)".contains("label 3 of clip 0"), "\($0)")
        }
    }

    // MARK: scikit-learn

    struct SklearnCase: Codable {
        var name: String
        var classes: Int
        var scores: [Float]         // [clips, classes] row-major
        var targets: [Float]        // multi-hot
        var sklearn_per_class: [Double?]?
        var sklearn_map: Double?
    }

    struct SklearnFile: Codable {
        var sklearn_version: String?
        var cases: [SklearnCase]
    }

    /// `sfnet`'s answers for a case list: per-class AP (nil without positives) and mAP.
    static func answers(_ file: SklearnFile) throws -> [[String: [Double?]]] {
        try file.cases.map { c in
            let m = try Metrics.meanAveragePrecision(scores: c.scores, targets: c.targets, classes: c.classes)
            return ["per_class": m.perClass, "map": [m.mAP]]
        }
    }

    func testMeanAPEqualsScikitLearnOnCommittedCases() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: TrainFixtures.path("train/map_sklearn.json")))
        let file = try JSONDecoder().decode(SklearnFile.self, from: data)
        XCTAssertGreaterThanOrEqual(file.cases.count, 5)
        for c in file.cases {
            let m = try Metrics.meanAveragePrecision(scores: c.scores, targets: c.targets, classes: c.classes)
            let want = try XCTUnwrap(c.sklearn_per_class)
            XCTAssertEqual(m.perClass.count, want.count)
            for (k, (got, w)) in zip(m.perClass, want).enumerated() {
                XCTAssertEqual(got == nil, w == nil, "\(c.name) class \(k): positives disagree")
                if let got, let w { XCTAssertEqual(got, w, accuracy: 1e-12, "\(c.name) class \(k)") }
            }
            XCTAssertEqual(m.mAP!, try XCTUnwrap(c.sklearn_map), accuracy: 1e-12, c.name)
        }
    }

    /// Used by scripts/check_map_sklearn.py: reads SFNET_MAP_CHECK_IN (cases), writes
    /// SFNET_MAP_CHECK_OUT (sfnet's per-class AP and mAP per case).
    func testSklearnCheckHelper() throws {
        let env = ProcessInfo.processInfo.environment
        guard let input = env["SFNET_MAP_CHECK_IN"], let output = env["SFNET_MAP_CHECK_OUT"] else {
            throw XCTSkip("run by scripts/check_map_sklearn.py (set SFNET_MAP_CHECK_IN and SFNET_MAP_CHECK_OUT)")
        }
        let file = try JSONDecoder().decode(SklearnFile.self, from: Data(contentsOf: URL(fileURLWithPath: input)))
        let out = try JSONEncoder().encode(try Self.answers(file))
        try out.write(to: URL(fileURLWithPath: output))
    }
}
