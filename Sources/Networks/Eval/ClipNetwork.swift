// What every family's eval-mode network offers the rest of sfnet (verify, eval, predict, bench,
// fine-tuning's validation): a forward pass over a batch of clips. The CNN families run as
// `EvalNetwork` (a `NetworkGraph`), the transformers as `TransformerNetwork` (a `TransformerLayout`);
// `makeEvalNetwork` picks by the config's family.

import Families
import Foundation
import Formats

public protocol ClipNetwork: AnyObject {
    var config: ArchConfig { get }
    /// Logits, eval probabilities and (with `capture`) named intermediate outputs for `inputs`, one
    /// (N, 3, T, H, W) tensor per input of the family (`ArchConfig.graphInputs`).
    func forward(_ inputs: [FloatTensor], capture: Bool, profile: ForwardProfile?) throws -> ForwardOutput
    /// Multiply-adds of one forward pass over inputs of these shapes.
    func multiplyAdds(forInputs shapes: [[Int]]) throws -> Int
}

extension ClipNetwork {
    public func forward(_ inputs: [FloatTensor], capture: Bool = false) throws -> ForwardOutput {
        try forward(inputs, capture: capture, profile: nil)
    }
}

extension EvalNetwork: ClipNetwork {}

/// The eval-mode network of `config`'s family, built from canonical `weights` (checked strictly).
public func makeEvalNetwork(config: ArchConfig, weights: TensorMap) throws -> any ClipNetwork {
    config.model.isTransformer ? try TransformerNetwork(config: config, weights: weights) : try EvalNetwork(config: config, weights: weights)
}
