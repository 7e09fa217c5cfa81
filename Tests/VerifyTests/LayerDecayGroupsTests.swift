// AdamW's parameter groups for the transformers (FinetuneRun.adamWGroups) against VideoMAE's own rule:
// fixtures/train/layer_decay_ref.json (fixtures/generate_layer_decay.py) holds, per transformers tensor
// name, the layer id, LR scale and weight decay that MCG-NJU/VideoMAE's get_num_layer_for_vit /
// LayerDecayValueAssigner / get_parameter_groups give the original tensor it comes from, for a 2-layer
// VideoMAE with mean pooling, a 12-layer one with the class token (two-digit layers, `norm`) and a
// 12-layer TimeSformer: the classifier and final norm at 1, layer i at 0.75^(L - i), the embeddings at
// 0.75^(L + 1); decay only on weight matrices and kernels.

import Convert
import Families
import Formats
import Foundation
import Networks
import Train
import XCTest
@testable import Finetune

final class LayerDecayGroupsTests: XCTestCase {
    struct Reference: Decodable {
        struct Group: Decodable { let source: String; let layer_id: Int; let lr_scale: Double; let weight_decay: Double }
        struct Case: Decodable { let family: String; let layers: Int; let groups: [String: Group] }
        let layer_decay: Double
        let weight_decay: Double
        let cases: [String: Case]
    }

    func load() throws -> (Reference, JSONValue) {
        let text = try String(contentsOfFile: VerifyTests.fixture("train/layer_decay_ref.json"), encoding: .utf8)
        return (try JSONDecoder().decode(Reference.self, from: Data(text.utf8)), try JSONParser.parse(text))
    }

    /// The case's network (from its config.json, as `sfnet convert` reads a folder) with fresh weights, in a store.
    func store(_ json: JSONValue, _ name: String) throws -> (ArchConfig, ParameterStore) {
        let config = try XCTUnwrap(json["cases"]?[name]?["hf_config"], "\(name): no hf_config")
        let (arch, _) = try TransformerConvert.architecture(fromHFConfig: config)
        return (arch, try ParameterStore(config: arch, weights: freshWeights(for: arch, seed: 1)))
    }

    func testEveryTensorGetsVideoMAEsLayerScaleAndWeightDecay() throws {
        let (ref, json) = try load()
        XCTAssertEqual(Set(ref.cases.keys), ["videomae_mean_pooling_2", "videomae_class_token_12", "timesformer_12"])
        for (name, c) in ref.cases.sorted(by: { $0.key < $1.key }) {
            let (arch, store) = try store(json, name)
            XCTAssertEqual(arch.model.rawValue, c.family, name)
            XCTAssertEqual(arch.transformer?.layers, c.layers, name)
            let groups = FinetuneRun.adamWGroups(arch: arch, store: store, weightDecay: Float(ref.weight_decay), layerDecay: ref.layer_decay)
            XCTAssertEqual(Set(groups.keys), Set(c.groups.keys), "\(name): sfnet's parameters are transformers' named_parameters()")
            for (tensor, want) in c.groups.sorted(by: { $0.key < $1.key }) {
                let got = try XCTUnwrap(groups[tensor], "\(name): no group for \(tensor)")
                XCTAssertEqual(got.weightDecay, Float(want.weight_decay), "\(name) \(tensor) (\(want.source)): weight decay")
                if tensor == "timesformer.embeddings.time_embeddings" {
                    // VideoMAE's get_num_layer_for_vit knows cls_token and pos_embed but not TimeSformer's time_embed,
                    // which falls through to the top (scale 1). sfnet files it with the other position tables at
                    // depth 0 (TransformerLayout.depth(of:)): a learned table of the embedding, decayed like them.
                    XCTAssertEqual(want.layer_id, c.layers + 1, "the literal rule puts time_embed at the top")
                    XCTAssertEqual(got.lrScale, Float(Foundation.pow(ref.layer_decay, Double(c.layers + 1))), "\(name) \(tensor)")
                    continue
                }
                XCTAssertEqual(got.lrScale, Float(want.lr_scale), "\(name) \(tensor) (\(want.source), layer id \(want.layer_id)): LR scale")
            }
            // The brief's statement of the rule, on the reference's numbers.
            let L = Double(c.layers)
            XCTAssertEqual(c.groups["classifier.weight"]?.lr_scale, 1)
            XCTAssertEqual(c.groups["classifier.bias"]?.weight_decay, 0)
            let root = c.family == "videomae" ? "videomae" : "timesformer"
            XCTAssertEqual(c.groups["\(root).embeddings.patch_embeddings.projection.weight"]?.lr_scale, Foundation.pow(ref.layer_decay, L + 1))
            XCTAssertEqual(c.groups["\(root).encoder.layer.\(c.layers - 1).layernorm_before.weight"]?.lr_scale, ref.layer_decay)
            XCTAssertEqual(c.groups["\(root).encoder.layer.0.layernorm_before.weight"]?.weight_decay, 0)
            XCTAssertEqual(c.groups["\(root).encoder.layer.0.output.dense.weight"]?.lr_scale, Foundation.pow(ref.layer_decay, L))
        }
    }

    /// Layer decay 1 (VideoMAE: no assigner) leaves every tensor at the base LR; the decay rule is unchanged.
    func testLayerDecayOneIsTheBaseLRForEveryTensor() throws {
        let (ref, json) = try load()
        for name in ref.cases.keys.sorted() {
            let (arch, store) = try store(json, name)
            let groups = FinetuneRun.adamWGroups(arch: arch, store: store, weightDecay: 0.05, layerDecay: 1)
            XCTAssertTrue(groups.values.allSatisfy { $0.lrScale == 1 }, name)
            for (tensor, want) in ref.cases[name]!.groups { XCTAssertEqual(groups[tensor]?.weightDecay, Float(want.weight_decay), "\(name) \(tensor)") }
        }
    }
}
