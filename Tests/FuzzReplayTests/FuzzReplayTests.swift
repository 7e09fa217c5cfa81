// Replays every input kept under Fuzz/regressions/<target>/ (crashes, hangs and
// untyped errors the fuzzers found, each fixed) through the same bodies the libFuzzer
// executables run, and checks the fuzz seeds: each must end accepted or refused with
// a typed error, never crash.

import Foundation
import FuzzTargets
import XCTest

final class FuzzReplayTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func outcome(_ target: String, _ path: URL) throws -> FuzzOutcome {
        let data = try Data(contentsOf: path)
        return data.withUnsafeBytes { FuzzTargets.body(named: target)!($0) }
    }

    func testEveryRegressionInputEndsInATypedOutcome() throws {
        var replayed = 0
        for (name, _) in FuzzTargets.all {
            let dir = Self.root.appendingPathComponent("Fuzz/regressions/\(name)")
            let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path))?.filter { !$0.hasPrefix(".") && $0 != "README.md" }.sorted() ?? []
            for f in files {
                let o = try outcome(name, dir.appendingPathComponent(f))
                if case .untyped(let e) = o { XCTFail("\(name)/\(f): \(e)") }
                replayed += 1
            }
        }
        print("replayed \(replayed) regression inputs")
        XCTAssertGreaterThan(replayed, 0, "Fuzz/regressions/ holds no inputs: the replay would check nothing")
    }

    func testSeedsFromTheFixturesAreAcceptedByTheirTargets() throws {
        let seeds: [(String, String)] = [
            ("pickle", "fixtures/caffe2/tiny_slowfast_c2_py2.pkl"), ("zip", "fixtures/torch/views.pt"),
            ("torch", "fixtures/torch/tiny_legacy.pth"), ("torch", "fixtures/torch/views_zip64.pt"),
            ("safetensors", "fixtures/torch/views_expected.safetensors"), ("npy", "fixtures/numpy/fortran.npy"),
            ("npy", "fixtures/numpy/compressed.npz"), ("onnx", "fixtures/onnx/tiny_resnet2d.onnx"),
            ("caffe2", "fixtures/caffe2/tiny_slowfast_c2.pkl"),
            ("json", "Fuzz/seeds/json/config.json"), ("json", "Fuzz/seeds/json/model.safetensors.index.json"),
            ("hf-config", "fixtures/transformers/tiny_videomae/config.json"), ("hf-config", "fixtures/transformers/tiny_timesformer/config.json"),
            ("hf-config", "fixtures/transformers/tiny_videomae_oldnames/config.json"),
            ("hf-config", "fixtures/transformers/tiny_videomae_sharded/model.safetensors.index.json"),
            ("hf-config", "fixtures/hostile/files/valid_hf_sharded/model.safetensors.index.json"),
            ("yaml", "fixtures/yaml/AK_SLOWFAST_8x8_R50.yaml"), ("yaml", "fixtures/hostile/files/valid_pyslowfast.yaml"),
            ("pyslowfast-config", "fixtures/yaml/AK_SLOWFAST_8x8_R50.yaml"), ("pyslowfast-config", "fixtures/ak/configs/SLOWFAST_8x8_R50.yaml"),
            ("xlsx", "fixtures/ak/annotation/df_action.xlsx"), ("xlsx", "fixtures/hostile/files/valid_classes.xlsx"),
            ("csv", "fixtures/text/python_csv.csv"), ("csv", "fixtures/text/excel.csv"),
            ("frame-list", "fixtures/ak/annotation/val.csv"), ("frame-list", "fixtures/text/ak_frames.csv"),
        ]
        for (target, file) in seeds {
            XCTAssertEqual(try outcome(target, Self.root.appendingPathComponent(file)), .accepted, "\(target) on \(file)")
        }
    }

    func testHostileInputsAreRefusedWithTypedErrors() throws {
        let cases: [(String, String, String)] = [
            ("onnx", "Fuzz/regressions/onnx/oom-empty-conv-weight-with-2pow32-outputs.onnx", "is empty"),
            ("onnx-external", "fixtures/onnx/hostile/ext_dotdot.onnx", ".."),
            ("onnx-external", "fixtures/onnx/hostile/ext_absolute.onnx", "absolute"),
            ("pickle", "fixtures/hostile/files/c01_global_os_system.pkl", ""),
            ("torch", "fixtures/onnx/tiny_resnet2d.onnx", "ONNX"),
            ("zip", "fixtures/caffe2/tiny_slowfast_c2.pkl", ""),
            // The small Caffe2 seed (six blobs of the tiny fixture) gets past the pickle into the key map.
            ("caffe2", "Fuzz/seeds/caffe2/small_blobs_full_shape.pkl", "cannot derive the architecture"),
            ("json", "fixtures/hostile/files/c34_yaml_merge_key.yaml", ""),
            ("hf-config", "fixtures/hostile/files/c33_hf_config_duplicate_key/config.json", "duplicate key 'hidden_size'"),
            ("hf-config", "fixtures/hostile/files/c33_hf_config_deep/config.json", "nesting deeper than 32"),
            ("hf-config", "fixtures/hostile/files/c33_hf_shard_dotdot/model.safetensors.index.json", "must be a plain file name"),
            ("hf-config", "fixtures/hostile/files/c33_hf_index_duplicate_key/model.safetensors.index.json", "duplicate key 'classifier.bias'"),
            ("hf-config", "fixtures/hostile/files/c37_hf_model_type_unknown/config.json", #"model_type is "bert""#),
            ("hf-config", "fixtures/hostile/files/c37_hf_hidden_act_unknown/config.json", "is not a GELU sfnet runs"),
            ("yaml", "fixtures/hostile/files/c34_yaml_billion_laughs.yaml", "anchors and aliases"),
            ("yaml", "fixtures/hostile/files/c34_yaml_python_object_tag.yaml", "YAML tags"),
            ("xlsx", "fixtures/hostile/files/c35_xlsx_entity_expansion.xlsx", "entity declarations are refused"),
            ("xlsx", "fixtures/hostile/files/c35_xlsx_zip_bomb.xlsx", "absurd compression ratio"),
            ("csv", "fixtures/hostile/files/c36_csv_unterminated_quote.csv", "unterminated quote"),
            ("csv", "fixtures/hostile/files/c36_csv_bom_in_middle.csv", "byte order mark"),
            ("frame-list", "fixtures/hostile/files/c36_frame_list_frame_id.csv", "is not an integer"),
        ]
        for (target, file, words) in cases {
            let url = Self.root.appendingPathComponent(file)
            guard FileManager.default.fileExists(atPath: url.path) else { XCTFail("missing \(file)"); continue }
            let o = try outcome(target, url)
            guard case .refused(let msg) = o else { XCTFail("\(target) on \(file): \(o)"); continue }
            XCTAssertTrue(words.isEmpty || msg.contains(words), "\(target) on \(file): \(msg)")
        }
        // Empty input and a single byte: refused, not crashed, by every target.
        for (name, body) in FuzzTargets.all {
            for input in [[UInt8](), [0x80], [0x50, 0x4b, 0x03, 0x04]] {
                let o = input.withUnsafeBytes { body($0) }
                if case .untyped(let e) = o { XCTFail("\(name) on \(input): \(e)") }
            }
        }
    }
}
