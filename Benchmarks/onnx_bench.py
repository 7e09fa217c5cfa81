#!/usr/bin/env python3
"""Benchmark (issue 5): sfnet's ONNX export vs torch.onnx.export of the same network, in onnxruntime.

    python Benchmarks/onnx_bench.py [--sfnet .build/release/sfnet] [--threads 2] [--rounds 3] [--repeat 3]

SlowFast R50 8x8 with random weights (fixtures/generate.py's build_full(), a
module-for-module mirror of PySlowFast's): its state dict is saved with
torch.save as a PySlowFast checkpoint, converted with `sfnet convert`, and
exported with `sfnet export --to onnx` (opset 17, BN as BatchNormalization);
the same torch module (eval) is exported with torch.onnx.export (opset 17,
TorchScript exporter). Both run in onnxruntime (CPU, same intra-op threads,
inter-op 1, default graph optimizations) on the same batch-1 clip (slow
8x224x224, fast 32x224x224), interleaved: --rounds rounds of --repeat runs
each, the order alternating per round, after one warm-up run each. sfnet's
export is timed twice: dynamic batch (its default) and --batch 1 (torch's
export has a fixed batch 1). Prints the
medians, the ratio, and the agreement of the two models' probabilities.
"""
import argparse, importlib.util, json, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_generate():
    spec = importlib.util.spec_from_file_location("sfnet_generate", os.path.join(ROOT, "fixtures", "generate.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sfnet", default=os.path.join(ROOT, ".build", "release", "sfnet"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", help="directory for the files (default: a temporary directory)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    try:
        import numpy as np
        import onnxruntime as ort
        import torch
    except ImportError as e:
        print(f"SKIPPED: the ONNX benchmark needs torch, onnx and onnxruntime ({e})")
        return 0
    torch.set_num_threads(a.threads)
    work = a.keep or tempfile.mkdtemp(prefix="sfnet-onnx-bench-")
    os.makedirs(work, exist_ok=True)
    gen = load_generate()
    torch.manual_seed(0)
    m = gen.build_full().eval()
    ckpt = os.path.join(work, "slowfast_r50_8x8_random.pyth")
    torch.save({"model_state": m.state_dict(), "epoch": -1}, ckpt)
    native = os.path.join(work, "slowfast_r50_8x8_random.safetensors")
    ours = os.path.join(work, "sfnet.onnx")
    ours_b1 = os.path.join(work, "sfnet_batch1.onnx")
    theirs = os.path.join(work, "torch.onnx")
    t0 = time.perf_counter()
    subprocess.run([a.sfnet, "convert", ckpt, "-o", native, "--force"], check=True, capture_output=True)
    subprocess.run([a.sfnet, "export", native, "--to", "onnx", "--opset", "17", "-o", ours, "--force"], check=True, capture_output=True)
    t_ours = time.perf_counter() - t0
    subprocess.run([a.sfnet, "export", native, "--to", "onnx", "--opset", "17", "--batch", "1", "-o", ours_b1, "--force"],
                   check=True, capture_output=True)
    slow = torch.randn(1, 3, 8, 224, 224)
    fast = torch.randn(1, 3, 32, 224, 224)
    t0 = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(m, ([slow, fast],), theirs, input_names=["slow", "fast"], output_names=["probs"],
                          opset_version=17, dynamo=False)
    t_theirs = time.perf_counter() - t0
    print(f"sfnet convert + export: {t_ours:.1f} s ({os.path.getsize(ours) / 1e6:.1f} MB); "
          f"torch.onnx.export: {t_theirs:.1f} s ({os.path.getsize(theirs) / 1e6:.1f} MB)", flush=True)

    def session(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    sessions = {"sfnet": session(ours), "sfnet --batch 1": session(ours_b1), "torch.onnx.export": session(theirs)}
    feeds = {"slow": slow.numpy(), "fast": fast.numpy()}
    outs = {}
    for name, s in sessions.items():  # warm-up, and the outputs to compare
        res = dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))
        outs[name] = res.get("probabilities", res.get("probs"))
    q = outs["torch.onnx.export"].astype(np.float64)
    rel = max(float(np.linalg.norm(outs[k].astype(np.float64) - q) / np.linalg.norm(q)) for k in ("sfnet", "sfnet --batch 1"))
    times = {k: [] for k in sessions}
    order = list(sessions)
    for r in range(a.rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                sessions[name].run(None, feeds)
                times[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}: " + ", ".join(f"{k} {statistics.median(v[-a.repeat:]):.3f} s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    # Paired per-round ratios: each round ran both files back to back, so load shifts hit both alike.
    per_round = [statistics.median(times["torch.onnx.export"][i * a.repeat:(i + 1) * a.repeat])
                 / statistics.median(times["sfnet"][i * a.repeat:(i + 1) * a.repeat]) for i in range(a.rounds)]
    ratio = med["torch.onnx.export"] / med["sfnet"]
    ratio_b1 = med["torch.onnx.export"] / med["sfnet --batch 1"]
    print(f"onnxruntime {ort.__version__}, torch {torch.__version__}, {a.threads} intra-op threads, batch 1, "
          f"slow 8x224x224 + fast 32x224x224, {a.rounds} rounds x {a.repeat} runs interleaved")
    print(f"  sfnet export        median {med['sfnet']:.3f} s  (dynamic batch; nodes {len(__import__('onnx').load(ours, load_external_data=False).graph.node)})")
    print(f"  sfnet --batch 1     median {med['sfnet --batch 1']:.3f} s  (fixed batch 1)")
    print(f"  torch.onnx.export   median {med['torch.onnx.export']:.3f} s  (nodes {len(__import__('onnx').load(theirs, load_external_data=False).graph.node)})")
    for label, r_ in (("sfnet (dynamic batch)", ratio), ("sfnet --batch 1", ratio_b1)):
        print(f"  torch.onnx.export / {label} = {r_:.3f}x  ({'sfnet at least as fast' if r_ >= 0.98 else 'sfnet SLOWER'}; within 2% counts as equal)")
    print(f"  per-round torch/sfnet ratios: {', '.join(f'{x:.3f}' for x in per_round)} "
          f"(median {statistics.median(per_round):.3f}, {sum(x >= 1 for x in per_round)}/{a.rounds} rounds sfnet faster)")
    print(f"  probabilities: max relative L2 between sfnet's and torch's export {rel:.2e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"median_s": med, "runs_s": times, "ratio_torch_over_sfnet": ratio, "ratio_torch_over_sfnet_batch1": ratio_b1, "per_round_ratio": per_round, "probs_rel_l2": rel,
                       "threads": a.threads}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
