#!/usr/bin/env python3
"""Interop check of sfnet's ONNX exports with the real onnx and onnxruntime (issue 5, parts 2 and 4).

    python scripts/interop_onnx.py [--sfnet PATH] [--keep DIR] [--require-ort] [--full]

For each tiny fixture (SlowFast 8x8, Slow-only, 2D ResNet, X3D; X3D also as torch.onnx.export's graph
and in mmaction2's names) the weights are
converted with `sfnet convert --arch-json` (the reference's own sfnet.arch,
so the head's pool kernels fit the reference clip), exported with
`sfnet export --to onnx` (BN as BatchNormalization, again with --external-data, and with --fold-bn
at opset 18 and the reference's batch fixed), then:
  - onnx.checker.check_model(model, full_check=True) (strict shape inference);
  - onnxruntime runs the model on the reference's inputs; `logits` must match
    the reference `output.logits` (made by PyTorch) with relative L2 <= 1e-5,
    and `probabilities` must match softmax(logits);
  - sfnet's own forward matches onnxruntime: its logits are written as a
    reference file and `sfnet verify --tolerance 1e-5` must pass.
The video transformers made by transformers (fixtures/transformers: VideoMAE with mean pooling and
with the first token, TimeSformer) are converted from their Hugging Face folders and exported the same
ways (input `input`, sfnet's (N, 3, T, H, W) clip): check_model(full_check), onnxruntime's logits
against transformers' reference logits (relative L2 <= 1e-5) and sfnet verify against onnxruntime; the
dynamic batch also runs one clip alone. A VideoMAE variant with hidden_act gelu_tanh and a sigmoid head
(its sfnet.arch edited; no PyTorch reference) is checked against sfnet's forward. With --full and
refs-full/ present, the full-size VideoMAE-S/B and TimeSformer-B run against their references.
A last case exports the Slow-only weights with train_crop 240 (res5 8x8, head
kernel 7x7: a 2x2 grid, so the projection runs per grid position and
ReduceMean averages) and checks it against sfnet's forward the same way (no
PyTorch reference exists for it).
The 2D ResNet export takes x as (N, 3, H, W) (the reference input as is) and
unsqueezes it to (N, 3, 1, H, W) inside the graph.
With --full, the full SlowFast R50 8x8 (seeded random weights, 138 MB) is
written and exported by the Swift test OnnxExportTests.testFullR50Export
(SFNET_ONNX_FULL=DIR; build the tests first), checked, and run in
onnxruntime on a (1,3,8,224,224) + (1,3,32,224,224) clip against sfnet's forward.
Prints SKIPPED loudly (exit 0, or 1 with --require-ort) when onnx or
onnxruntime is missing; never passes silently.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-5

CASES = [
    # weights fixture, reference, graph input name -> reference tensor
    ("torch/tiny_pyslowfast.pyth", "reference/tiny_slowfast_8x8_ref.safetensors",
     {"slow": "input.slow", "fast": "input.fast"}),
    ("reference/tiny_slow_only.pyth", "reference/tiny_slow_only_ref.safetensors", {"x": "input.x"}),
    ("reference/tiny_resnet2d.pyth", "reference/tiny_resnet2d_ref.safetensors", {"x": "input.x"}),
    # X3D made by pytorchvideo: channel-wise convolutions, squeeze-excitation (ReduceMean, Conv, Sigmoid, Mul), Swish, lin_5
    ("x3d/tiny_x3d.pyth", "x3d/tiny_x3d_ref.safetensors", {"x": "input.x"}),
    # X3D read from torch.onnx.export's graph (BN folded: fixtures/x3d/generate_x3d_onnx.py) and from mmaction2's names
    ("x3d/tiny_x3d_torch.onnx", "x3d/tiny_x3d_torch_ref.safetensors", {"x": "input.x"}),
    ("x3d/tiny_x3d_mmaction2.pth", "x3d/tiny_x3d_mmaction2_ref.safetensors", {"x": "input.x"}),
]

TRANSFORMER_CASES = [
    # Hugging Face folder (made by transformers), its reference
    ("transformers/tiny_videomae", "transformers/tiny_videomae_ref.safetensors"),
    ("transformers/tiny_videomae_cls", "transformers/tiny_videomae_cls_ref.safetensors"),
    ("transformers/tiny_timesformer", "transformers/tiny_timesformer_ref.safetensors"),
]
TRANSFORMER_VARIANTS = [("", []), ("_opset18_batch2", ["--opset", "18", "--batch", "2"]), ("_external", ["--external-data"])]
FULL_TRANSFORMERS = [("videomae_s", "videomae_s_ref.safetensors"), ("videomae_b", "videomae_b_ref.safetensors"),
                     ("timesformer_b", "timesformer_b_ref.safetensors")]

GRID_CASE = ("reference/tiny_slow_only.pyth", "reference/tiny_slow_only_ref.safetensors", {"x": (2, 3, 4, 240, 240)}, 240)

VARIANTS = [
    # name suffix, extra export arguments
    ("", []),
    ("_folded_opset18_fixed_batch", ["--fold-bn", "--opset", "18", "--batch", "BATCH"]),  # the reference's batch
    ("_external", ["--external-data"]),
]


def banner(text):
    line = "=" * max(60, len(text) + 4)
    print(f"{line}\n  {text}\n{line}", flush=True)


def run(cmd):
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        raise SystemExit(f"FAILED: {' '.join(cmd)} exited {r.returncode}")
    return r.stdout


def rel_l2(a, b):
    import numpy as np
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check_against_sfnet(sfnet, native, arch, inputs, logits, path):
    """Writes onnxruntime's logits as a reference and runs `sfnet verify` on the native weights."""
    from safetensors.numpy import save_file
    tensors = {f"input.{k}": v for k, v in inputs.items()}
    tensors["output.logits"] = logits
    save_file(tensors, path, metadata={"sfnet.arch": arch, "sfnet.reference": "onnxruntime, scripts/interop_onnx.py"})
    r = subprocess.run([sfnet, "verify", native, "--reference", path, "--tolerance", str(TOL)], capture_output=True, text=True)
    line = next((l.strip() for l in r.stdout.splitlines() if l.strip().startswith("output.logits")), r.stdout[-300:] + r.stderr[-300:])
    return r.returncode == 0, line


def verify_transformer(sfnet, native, x, logits, path):
    """sfnet verify --tolerance 1e-5 of a transformer's native file against onnxruntime's logits on input.x."""
    from safetensors.numpy import save_file
    save_file({"input.x": x, "output.logits": logits}, path, metadata={"sfnet.reference": "onnxruntime, scripts/interop_onnx.py"})
    r = subprocess.run([sfnet, "verify", native, "--reference", path, "--tolerance", str(TOL)], capture_output=True, text=True)
    line = next((l.strip() for l in r.stdout.splitlines() if l.strip().startswith("output.logits")), r.stdout[-300:] + r.stderr[-300:])
    return r.returncode == 0, line


def check_transformer(sfnet, native, model_path, x, expected, label):
    """check_model, onnxruntime on x (and on its first clip alone when the batch is dynamic) against `expected`
    (None: sfnet's forward only), sfnet verify against onnxruntime. Returns (ok, rel L2 to expected)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    logits, probs = sess.run(["logits", "probabilities"], {"input": x})
    err = rel_l2(logits, expected) if expected is not None else 0.0
    if "sigmoid" in label:
        perr = rel_l2(probs, 1 / (1 + np.exp(-logits.astype(np.float64))))
    else:
        e = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
        perr = rel_l2(probs, e / e.sum(axis=1, keepdims=True))
    alone = ""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if dims[0].dim_param:
        one, = sess.run(["logits"], {"input": x[:1]})
        alone_err = rel_l2(one, logits[:1])
        alone = f", one clip alone vs in the batch rel L2 {alone_err:.1e}"
        if alone_err > TOL:
            return False, err
    agree, line = verify_transformer(sfnet, native, x, logits, model_path + ".ort_ref.safetensors")
    ok = err <= TOL and perr <= TOL and agree
    ops = sorted({n.op_type for n in model.graph.node})
    against = f"logits vs transformers' reference rel L2 {err:.3e}" if expected is not None else "no PyTorch reference"
    print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(model_path)}: check_model(full_check) passed; onnxruntime on input {tuple(x.shape)}: "
          f"{against}, probabilities rel L2 {perr:.1e}{alone} (opset {model.opset_import[0].version}, {len(model.graph.node)} nodes: {' '.join(ops)})")
    print(f"     sfnet verify (sfnet forward vs onnxruntime): {'PASSED' if agree else 'FAILED'}: {line}")
    return ok, err


def transformer_checks(sfnet, out_dir, full):
    """The VideoMAE / TimeSformer exports; returns (failed paths, worst rel L2)."""
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file
    failures, worst = [], 0.0
    for folder, reference in TRANSFORMER_CASES:
        ref = load_file(os.path.join(ROOT, "fixtures", reference))
        stem = os.path.basename(folder)
        native = os.path.join(out_dir, stem + ".safetensors")
        run([sfnet, "convert", os.path.join(ROOT, "fixtures", folder), "-o", native, "--force"])
        for suffix, extra in TRANSFORMER_VARIANTS:
            model_path = os.path.join(out_dir, stem + suffix + ".onnx")
            run([sfnet, "export", native, "--to", "onnx", "-o", model_path, "--force"] + extra)
            ok, err = check_transformer(sfnet, native, model_path, ref["input.x"], ref["output.logits"], stem)
            worst = max(worst, err)
            if not ok:
                failures.append(model_path)
    # gelu_tanh + sigmoid head: the tiny VideoMAE's weights under an edited architecture, against sfnet's forward.
    with safe_open(os.path.join(out_dir, "tiny_videomae.safetensors"), "np") as f:
        arch = json.loads(f.metadata()["sfnet.arch"])
    arch.update({"hidden_act": "gelu_tanh", "head_activation": "sigmoid"})
    arch_json = os.path.join(out_dir, "tanh_sigmoid.arch.json")
    with open(arch_json, "w") as f:
        json.dump(arch, f)
    native = os.path.join(out_dir, "tanh_sigmoid.safetensors")
    run([sfnet, "convert", os.path.join(ROOT, "fixtures", "transformers", "tiny_videomae"), "--arch-json", arch_json, "-o", native, "--force"])
    model_path = os.path.join(out_dir, "tiny_videomae_tanh_sigmoid.onnx")
    run([sfnet, "export", native, "--to", "onnx", "-o", model_path, "--force"])
    x = load_file(os.path.join(ROOT, "fixtures", "transformers", "tiny_videomae_ref.safetensors"))["input.x"]
    ok, _ = check_transformer(sfnet, native, model_path, x, None, "tanh_sigmoid")
    if not ok:
        failures.append(model_path)
    if full:
        for folder, reference in FULL_TRANSFORMERS:
            src, ref_path = os.path.join(ROOT, "refs-full", folder), os.path.join(ROOT, "refs-full", reference)
            if not os.path.isdir(src) or not os.path.exists(ref_path):
                banner(f"SKIPPED: refs-full/{folder} absent (make fixtures-transformers FULL=1); its ONNX check did NOT run")
                continue
            native, model_path = os.path.join(out_dir, folder + ".safetensors"), os.path.join(out_dir, folder + ".onnx")
            run([sfnet, "convert", src, "-o", native, "--force"])
            run([sfnet, "export", native, "--to", "onnx", "-o", model_path, "--force"])
            ref = load_file(ref_path)
            ok, err = check_transformer(sfnet, native, model_path, ref["input.x"], ref["output.logits"], folder)
            worst = max(worst, err)
            if not ok:
                failures.append(model_path)
    return failures, worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sfnet", default=os.path.join(ROOT, ".build", "debug", "sfnet"))
    ap.add_argument("--keep", help="write the exports here (default: a temporary directory)")
    ap.add_argument("--require-ort", action="store_true")
    ap.add_argument("--full", action="store_true", help="also the full-size SlowFast R50 (random weights) and refs-full/'s transformers")
    args = ap.parse_args()

    missing = [m for m in ("onnx", "onnxruntime", "numpy", "safetensors") if importlib.util.find_spec(m) is None]
    if missing:
        banner(f"SKIPPED: ONNX interop check NOT RUN: {', '.join(missing)} not installed for {sys.executable}")
        return 1 if args.require_ort else 0

    import numpy as np
    import onnx
    import onnxruntime as ort
    from safetensors import safe_open
    from safetensors.numpy import load_file

    sfnet = os.path.abspath(args.sfnet)
    if not os.path.exists(sfnet):
        raise SystemExit(f"FAILED: {sfnet} not found (swift build first)")
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, sfnet {sfnet}")
    out_dir = args.keep or tempfile.mkdtemp(prefix="sfnet-onnx-")
    os.makedirs(out_dir, exist_ok=True)
    failures = []
    worst = 0.0
    for weights, reference, feeds in CASES:
        ref_path = os.path.join(ROOT, "fixtures", reference)
        with safe_open(ref_path, "np") as f:
            arch = f.metadata()["sfnet.arch"]
        ref = load_file(ref_path)
        stem = os.path.splitext(os.path.basename(weights))[0]
        arch_json = os.path.join(out_dir, stem + ".arch.json")
        with open(arch_json, "w") as f:
            f.write(arch)
        native = os.path.join(out_dir, stem + ".safetensors")
        run([sfnet, "convert", os.path.join(ROOT, "fixtures", weights), "--arch-json", arch_json, "-o", native, "--force"])
        for suffix, extra in VARIANTS:
            batch = str(next(iter(ref[key] for key in feeds.values())).shape[0])
            extra = [batch if a == "BATCH" else a for a in extra]
            model_path = os.path.join(out_dir, stem + suffix + ".onnx")
            run([sfnet, "export", native, "--to", "onnx", "-o", model_path, "--force"] + extra)
            model = onnx.load(model_path)
            onnx.checker.check_model(model, full_check=True)
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
            inputs = {name: ref[key].astype(np.float32) for name, key in feeds.items()}
            logits, probs = sess.run(["logits", "probabilities"], inputs)
            expected = ref["output.logits"]
            err = rel_l2(logits, expected)
            e = np.exp(expected.astype(np.float64) - expected.max(axis=1, keepdims=True))
            perr = rel_l2(probs, e / e.sum(axis=1, keepdims=True))
            ops = sorted({n.op_type for n in model.graph.node})
            agree, line = check_against_sfnet(sfnet, native, arch, inputs, logits, model_path + ".ort_ref.safetensors")
            ok = err <= TOL and perr <= TOL and logits.shape == expected.shape and agree
            worst = max(worst, err)
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in inputs.items())
            print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(model_path)}: check_model(full_check) passed; "
                  f"onnxruntime on {shapes}: logits rel L2 {err:.3e}, probabilities rel L2 {perr:.3e} "
                  f"(opset {model.opset_import[0].version}, IR {model.ir_version}, {len(model.graph.node)} nodes: {' '.join(ops)})")
            print(f"     sfnet verify (sfnet forward vs onnxruntime): {'PASSED' if agree else 'FAILED'}: {line}")
            if not ok:
                failures.append(model_path)

    # The head's per-position projection (grid > 1), against sfnet's forward.
    weights, reference, shapes, crop = GRID_CASE
    with safe_open(os.path.join(ROOT, "fixtures", reference), "np") as f:
        arch = json.loads(f.metadata()["sfnet.arch"])
    arch["train_crop"] = crop
    arch = json.dumps(arch)
    arch_json = os.path.join(out_dir, f"grid_crop{crop}.arch.json")
    with open(arch_json, "w") as f:
        f.write(arch)
    native = os.path.join(out_dir, f"grid_crop{crop}.safetensors")
    run([sfnet, "convert", os.path.join(ROOT, "fixtures", weights), "--arch-json", arch_json, "-o", native, "--force"])
    rng = np.random.default_rng(20240641)
    inputs = {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}
    for opset in (17, 18):
        model_path = os.path.join(out_dir, f"grid_crop{crop}_opset{opset}.onnx")
        run([sfnet, "export", native, "--to", "onnx", "-o", model_path, "--force", "--opset", str(opset)])
        model = onnx.load(model_path)
        onnx.checker.check_model(model, full_check=True)
        logits, probs = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"]).run(["logits", "probabilities"], inputs)
        agree, line = check_against_sfnet(sfnet, native, arch, inputs, logits, model_path + ".ort_ref.safetensors")
        ok = agree and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
        ops = sorted({n.op_type for n in model.graph.node})
        print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(model_path)} (2x2 head grid; {' '.join(ops)}): check_model(full_check) passed; "
              f"sfnet verify vs onnxruntime: {line}")
        if not ok:
            failures.append(model_path)
    tf_failures, tf_worst = transformer_checks(sfnet, out_dir, args.full)
    failures += tf_failures
    worst = max(worst, tf_worst)
    if args.full:
        env = dict(os.environ, SFNET_ONNX_FULL=out_dir)
        r = subprocess.run(["swift", "test", "--skip-build", "--disable-swift-testing", "--filter", "OnnxExportTests.testFullR50Export"],
                           cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout[-3000:], r.stderr[-3000:])
            raise SystemExit("FAILED: the full R50 export test did not pass (build the tests first)")
        print(next((l for l in r.stdout.splitlines() if "full R50 ONNX export" in l), "full R50 exported"))
        native, model_path = os.path.join(out_dir, "full_r50.safetensors"), os.path.join(out_dir, "full_r50.onnx")
        onnx.checker.check_model(onnx.load(model_path), full_check=True)
        with safe_open(native, "np") as f:
            arch = f.metadata()["sfnet.arch"]
        rng = np.random.default_rng(7)
        inputs = {"slow": rng.standard_normal((1, 3, 8, 224, 224)).astype(np.float32),
                  "fast": rng.standard_normal((1, 3, 32, 224, 224)).astype(np.float32)}
        logits, = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"]).run(["logits"], inputs)
        agree, line = check_against_sfnet(sfnet, native, arch, inputs, logits, model_path + ".ort_ref.safetensors")
        print(f"{'ok  ' if agree else 'FAIL'} full_r50.onnx: check_model(full_check) passed; sfnet verify vs onnxruntime: {line}")
        if not agree:
            failures.append(model_path)
    if failures:
        banner(f"FAILED: {len(failures)} ONNX export(s) outside rel L2 {TOL}: {', '.join(failures)}")
        return 1
    banner(f"PASSED: every ONNX export checks and runs in onnxruntime; max logits rel L2 {worst:.3e} (<= {TOL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
