// `sfnet verify WEIGHTS --reference REF [--tolerance 1e-5] [--json]`

import ArgumentParser
import Foundation
import Formats
import Networks
import Verify

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check that the native network reproduces a PyTorch reference on these weights.",
        discussion: """
        The reference is a safetensors file of inputs and any non-empty subset
        of outputs; unknown entries are an error. Tensors may be float32,
        float16/bfloat16 or float64 (compared in double precision; the report
        says "reference dtype: float64"). sfnet.arch is optional: the weights'
        own is used; when both carry one they must agree (num_frames/train_crop,
        the clip the head pools over, come from the reference). Every output
        must have relative L2 <= --tolerance and the same top-1. A pass writes
        WEIGHTS.verified.json, which `finetune` requires. Exit 0 on pass, 1 on
        failure or bad input. README.md ("sfnet verify") has full recipes.

        Forms, made in PyTorch with safetensors.torch.save_file:
        1. Inference: input.slow + input.fast (or input.x), output.logits
           (pre-activation), optional activation.sN.pathwayP (forward hooks on
           s1..s5) and activation.head.pool.
             logits = projection_out.reshape(N, -1)  # before softmax/sigmoid
             save_file({"input.slow": slow, "input.fast": fast,
                        "output.logits": logits, **acts}, "ref.safetensors")
        2. Activation-only: the same without output.logits. E.g. an image
           repeated in time and a 2D ResNet's layer4 repeated over the slow
           frames; every frame must match (center-inflated weights):
             rep = lambda x, t: x[:, :, None].repeat(1, 1, t, 1, 1)
             save_file({"input.slow": rep(img, T), "input.fast": rep(img, 4 * T),
                        "activation.s5.pathway0": rep(res5, T)}, "rep.safetensors")
        3. Boring video: input.image [N,3,H,W], activation.s5.pathway0
           [N,C,1,h,w], metadata sfnet.boring_video {"frames": T}; compared
           frame by frame (mean inflation: border frames left out).
             save_file({"input.image": img,
                        "activation.s5.pathway0": res5[:, :, None]},
                       "boring.safetensors",
                       metadata={"sfnet.boring_video": '{"frames": 24}'})
        4. Train step: inputs, target, output.loss; optional output.logits,
           grad.<parameter>, running.<bn>.running_mean/var. A float multi-hot
           target [N, K] means BCE-with-logits (mean), int64 class ids [N]
           cross-entropy (mean); sfnet computes the loss and dL/dlogits and
           backpropagates them (train mode, dropout off). The older
           grad_output.logits form (loss sum(logits * R)) is still read.
             model.train(); logits = model([slow, fast])
             loss = F.binary_cross_entropy_with_logits(logits, target)
             # or: loss = F.cross_entropy(logits, labels); target = labels
             loss.backward()
             g = {f"grad.{n}": p.grad for n, p in model.named_parameters()}
             save_file({"input.slow": slow, "input.fast": fast,
                        "target": target, "output.loss": loss.detach(), **g},
                       "train.safetensors")
        5. Float64: any form from a float64 model on float64 inputs.
             m64 = copy.deepcopy(model).double().eval()
             logits = m64([slow.double(), fast.double()])  # then as in 1

        Examples:
          sfnet verify slowfast_r50.safetensors --reference slowfast_r50_ref.safetensors
          sfnet verify w.safetensors --reference ref.safetensors --tolerance 1e-4 --json
        """
    )

    @Argument(help: "Native weights (from `sfnet convert`).")
    var weights: String

    @Option(help: "The reference: inputs and expected outputs (see the forms above).")
    var reference: String

    @Option(help: "Largest relative L2 error that passes.")
    var tolerance: Double = 1e-5

    @Option(help: "Threads for the forward pass.")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Flag(help: "Print the report as JSON.")
    var json = false

    func validate() throws {
        if !(tolerance > 0) { throw ValidationError("--tolerance must be positive") }
        if threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        Threading.setThreads(threads)
        let report = try Verifier.run(weights: weights, reference: reference, tolerance: tolerance)
        if report.passed { try Verifier.writeRecord(report) }
        Terminal.write((json ? report.json().serialized : report.text() + (report.passed ? "\n  record: \(Verifier.recordPath(for: weights))" : "")) + "\n")
        if !report.passed { throw ExitCode(1) }
    }
}
