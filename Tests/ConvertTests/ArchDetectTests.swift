// Deriving the architecture from canonical names and shapes.

import Families
import XCTest
import Formats
@testable import Convert

final class ArchDetectTests: XCTestCase {
    func testTinyConfigIsDerivedExactly() throws {
        let detection = try ArchDetect.detect(shapes: Fixtures.shapes(Fixtures.tiny))
        XCTAssertEqual(detection.config, Fixtures.tiny)
        XCTAssertNil(detection.config.preset)
        XCTAssertTrue(detection.notes.contains { $0.contains("alpha") && $0.contains("took 4") }, "\(detection.notes)")
    }

    func testTinySlowOnlyConfigIsDerivedExactly() throws {
        XCTAssertEqual(try ArchDetect.detect(shapes: Fixtures.shapes(Fixtures.tinySlow)).config, Fixtures.tinySlow)
    }

    func testEveryPresetIsDerivedFromShapesAndNamed() throws {
        // X3D-XS, -S and -M have the same tensors (they differ in their clip): their shapes give X3D-M, and the
        // note names the other two.
        let sameTensors: Set = ["x3d-xs", "x3d-s"]
        // The transformer presets go through TransformerConvert's shape detection
        // (TransformerConvertTests.testFullSizePresetsAreRecognisedFromShapesAndConfigs).
        for name in ArchConfig.presetNames where !ArchConfig.preset(named: name)!.model.isTransformer {
            let preset = ArchConfig.preset(named: name)!
            let detection = try ArchDetect.detect(shapes: Fixtures.shapes(preset))
            let expected = sameTensors.contains(name) ? "x3d-m" : name
            XCTAssertEqual(detection.config, ArchConfig.preset(named: expected)!, name)
            XCTAssertEqual(detection.config.preset, expected)
            XCTAssertTrue(detection.notes.contains { $0.hasPrefix("architecture matches preset \(expected)") }, "\(detection.notes)")
            if expected == "x3d-m" {
                XCTAssertTrue(detection.notes.contains { $0.contains("--arch x3d-xs or --arch x3d-s") }, "\(detection.notes)")
            }
        }
    }

    func testFusionKernel5MeansAlpha8WithNote() throws {
        let detection = try ArchDetect.detect(shapes: Fixtures.shapes(ArchConfig.preset(named: "slowfast-r50-4x16")!))
        XCTAssertEqual(detection.config.alpha, 8)
        XCTAssertTrue(detection.notes.contains { $0.contains("took 8") && $0.contains("4x16") }, "\(detection.notes)")
    }

    func testPresetWithOtherClassCountIsNotedButNotNamed() throws {
        var config = ArchConfig.preset(named: "slowfast-r50-8x8")!
        config.numClasses = 9
        let detection = try ArchDetect.detect(shapes: Fixtures.shapes(config))
        XCTAssertNil(detection.config.preset)
        XCTAssertEqual(detection.config.numClasses, 9)
        XCTAssertTrue(detection.notes.contains { $0.contains("preset slowfast-r50-8x8 with 9 classes") }, "\(detection.notes)")
        var expected = config
        expected.preset = nil
        XCTAssertEqual(detection.config, expected)
    }

    func testMissingFusionBatchNormMeansFusionNormFalse() throws {
        var config = Fixtures.tiny
        config.fusionNorm = false
        XCTAssertEqual(try ArchDetect.detect(shapes: Fixtures.shapes(config)).config, config)
    }

    func testDetectionFromTensorMapOfSharedZeroBytes() throws {
        let preset = ArchConfig.preset(named: "slowfast-r101-8x8")!
        XCTAssertEqual(try ArchDetect.detect(Fixtures.shapeOnly(preset)).config, preset)
    }

    func testMissingHeadNeedsNumClasses() throws {
        var shapes = Fixtures.shapes(Fixtures.tiny)
        shapes["head.projection.weight"] = nil
        shapes["head.projection.bias"] = nil
        XCTAssertThrowsError(try ArchDetect.detect(shapes: shapes)) { error in
            XCTAssertTrue("\(error)".contains("--num-classes"), "\(error)")
        }
        XCTAssertEqual(try ArchDetect.detect(shapes: shapes, numClassesFallback: 5).config, Fixtures.tiny)
    }

    func testTwoDimensionalStemSaysWeightsNeedInflating() {
        var shapes = Fixtures.shapes(ArchConfig.preset(named: "resnet50")!)
        shapes["s1.pathway0_stem.conv.weight"] = [64, 3, 7, 7]
        XCTAssertThrowsError(try ArchDetect.detect(shapes: shapes)) { error in
            XCTAssertTrue("\(error)".contains("[64,3,7,7]") && "\(error)".contains("inflat"), "\(error)")
        }
    }

    func testNoStemIsAnError() {
        XCTAssertThrowsError(try ArchDetect.detect(shapes: ["head.projection.weight": [5, 10]])) { error in
            XCTAssertTrue("\(error)".contains("s1.pathway0_stem.conv.weight"), "\(error)")
            XCTAssertTrue("\(error)".contains("--arch"), "\(error)")
        }
    }
}
