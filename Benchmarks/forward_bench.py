#!/usr/bin/env python3
"""Benchmark: SlowFast R50 8x8 (or, with --arch x3d-xs|x3d-s|x3d-m|x3d-l, pytorchvideo's X3D; with
--arch videomae-s|videomae-b|timesformer-b, Hugging Face transformers' VideoMAE with SDPA attention / TimeSformer with
its own (transformers has no SDPA path for it)) forward,
batch 1, fast clip 32x224x224, same thread count:
sfnet (`sfnet bench forward`) vs PyTorch (eager, eval, no_grad) vs onnxruntime (the same
PyTorch model exported with torch.onnx.export), interleaved rounds in one invocation.
Each contender runs in its own process so its peak RSS is its own (GNU-time style, ru_maxrss).

The PyTorch model is fixtures/generate.py's SlowFast, a module-for-module mirror of
PySlowFast's (same state_dict keys); weights are random for all three (timing only).
The X3D peer is pytorchvideo.models.x3d.create_x3d with the preset's depth factor (PyTorch's own
reference implementation of the same network; sfnet's matches its logits, fixtures/x3d).
Usage: forward_bench.py SFNET [--arch slowfast-r50-8x8] [--threads 2] [--size 224] [--frames 32] [--rounds 3] [--repeat 5] [--json OUT]
       [--baseline SFNET_BEFORE]   (a second sfnet binary timed in every round too, before SFNET: before/after on the same load)
"""
import argparse, importlib.util, json, os, resource, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))

def load_generate():
    spec = importlib.util.spec_from_file_location("sfnet_generate", os.path.join(HERE, "..", "fixtures", "generate.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

X3D_DEPTH = {"x3d-xs": 2.2, "x3d-s": 2.2, "x3d-m": 2.2, "x3d-l": 5.0}
# Hugging Face transformers' classes at sfnet's presets (random weights, SDPA attention, 400 labels).
TRANSFORMERS = {
    "videomae-s": ("videomae", dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536)),
    "videomae-b": ("videomae", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)),
    "timesformer-b": ("timesformer", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)),
}


def build_transformer(a):
    """transformers' model for a.arch, and a forward taking sfnet's (N, 3, T, H, W) clip."""
    import torch
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, TimesformerConfig, TimesformerForVideoClassification
    family, sizes = TRANSFORMERS[a.arch]
    common = dict(image_size=a.size, num_frames=a.frames, patch_size=16, num_labels=400, **sizes)
    if family == "videomae":
        m = VideoMAEForVideoClassification(VideoMAEConfig(tubelet_size=2, use_mean_pooling=True, attn_implementation="sdpa", **common))
    else:
        # transformers has no SDPA path for TimeSformer (it refuses attn_implementation="sdpa"): its own attention.
        m = TimesformerForVideoClassification(TimesformerConfig(**common))
    m.eval()
    return m, torch.randn(1, 3, a.frames, a.size, a.size)


def inputs_of(a):
    """Input names and shapes of the network at the benchmark's clip."""
    if a.arch.startswith("x3d") or a.arch in TRANSFORMERS:
        return [("x", (1, 3, a.frames, a.size, a.size))]
    return [("slow", (1, 3, a.frames // 4, a.size, a.size)), ("fast", (1, 3, a.frames, a.size, a.size))]


def build(a):
    import torch
    torch.manual_seed(0)
    if a.arch.startswith("x3d"):
        from pytorchvideo.models.x3d import create_x3d

        spec = importlib.util.spec_from_file_location("sfnet_x3d", os.path.join(HERE, "..", "fixtures", "x3d", "generate_x3d.py"))
        gx = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gx)
        m = gx.ListInput(create_x3d(input_clip_length=a.frames, input_crop_size=a.size, model_num_class=400,
                                 depth_factor=X3D_DEPTH[a.arch]))
        m.eval()
        return m, torch.randn(1, 3, a.frames, a.size, a.size), None
    g = load_generate()
    m = g.SlowFast(width_per_group=64, beta_inv=8, alpha=4, fusion_kernel=7, depths=(3, 4, 6, 3),
                   num_classes=400, num_frames=a.frames, train_crop=a.size)
    m.eval()
    slow = torch.randn(1, 3, a.frames // 4, a.size, a.size)
    fast = torch.randn(1, 3, a.frames, a.size, a.size)
    return m, slow, fast

def peer(a):
    """Runs inside a child process: times one peer (or exports the ONNX file) and prints JSON."""
    import torch
    torch.set_num_threads(a.threads)
    if a.peer == "export":
        m, slow, fast = build(a)
        xs = [t for t in (slow, fast) if t is not None]
        with torch.no_grad():
            torch.onnx.export(m, (xs,), a.onnx, input_names=[n for n, _ in inputs_of(a)], output_names=["probs"],
                              opset_version=17, dynamo=False)
        print(json.dumps({"onnx": a.onnx}))
        return
    if a.peer == "torch" and a.arch in TRANSFORMERS:
        m, x = build_transformer(a)
        pixels = x.permute(0, 2, 1, 3, 4).contiguous()   # transformers read (N, T, 3, H, W)
        with torch.no_grad():
            m(pixel_values=pixels)  # warm-up
            ts = []
            for _ in range(a.repeat):
                t0 = time.perf_counter(); m(pixel_values=pixels); ts.append(time.perf_counter() - t0)
    elif a.peer == "torch":
        m, slow, fast = build(a)
        xs = [t for t in (slow, fast) if t is not None]
        with torch.no_grad():
            m(xs)  # warm-up
            ts = []
            for _ in range(a.repeat):
                t0 = time.perf_counter(); m(xs); ts.append(time.perf_counter() - t0)
    else:
        import onnxruntime as ort, numpy as np
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(a.onnx, so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in inputs_of(a)}
        sess.run(None, feeds)
        ts = []
        for _ in range(a.repeat):
            t0 = time.perf_counter(); sess.run(None, feeds); ts.append(time.perf_counter() - t0)
    print(json.dumps({"median_s": statistics.median(ts), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sfnet", nargs="?")
    ap.add_argument("--arch", default="slowfast-r50-8x8", help="slowfast-r50-8x8, x3d-xs|x3d-s|x3d-m|x3d-l or videomae-s|videomae-b|timesformer-b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--baseline", help="another sfnet binary (e.g. before a change), timed in every round just before SFNET")
    ap.add_argument("--peer", choices=["torch", "ort", "export"], help=argparse.SUPPRESS)
    ap.add_argument("--onnx", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peer:
        return peer(a)

    # The driver never imports torch: every contender runs in a child forked from this small
    # process, so each child's peak RSS (ru_maxrss, which survives exec) is its own.
    common = ["--arch", a.arch, "--threads", str(a.threads), "--size", str(a.size), "--frames", str(a.frames), "--repeat", str(a.repeat)]

    def child(kind, onnx=None):
        cmd = [sys.executable, os.path.abspath(__file__), "--peer", kind] + common + (["--onnx", onnx] if onnx else [])
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}")
        return json.loads(p.stdout.strip().splitlines()[-1])

    onnx_path = os.path.join(tempfile.mkdtemp(prefix="sfnet-fwd-"), "model.onnx")
    try:
        if a.arch in TRANSFORMERS:
            raise RuntimeError("the transformers' peer is transformers itself (SDPA); no ONNX export is timed for them")
        subprocess.run([sys.executable, "-c", "import onnxruntime, onnx"], check=True, capture_output=True)
        child("export", onnx_path)
    except Exception as e:  # reported loudly, never silently dropped
        print(f"onnxruntime: SKIPPED ({e})")
        onnx_path = None

    def sfnet(binary):
        out = subprocess.run([binary, "bench", "forward", "--arch", a.arch, "--size", str(a.size), "--frames",
                              str(a.frames), "--threads", str(a.threads), "--repeat", str(a.repeat), "--json"],
                             check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    res = ({"baseline": []} if a.baseline else {}) | {"sfnet": [], "pytorch": [], "onnxruntime": []}
    rss = {}
    extra = {}
    for _ in range(a.rounds):
        if a.baseline:
            b = sfnet(a.baseline); res["baseline"].append(b["median_s"]); rss["baseline"] = b["peak_rss_mb"]
        s = sfnet(a.sfnet); res["sfnet"].append(s["median_s"]); rss["sfnet"] = s["peak_rss_mb"]; extra = s
        t = child("torch"); res["pytorch"].append(t["median_s"]); rss["pytorch"] = t["peak_rss_mb"]
        if onnx_path:
            o = child("ort", onnx_path); res["onnxruntime"].append(o["median_s"]); rss["onnxruntime"] = o["peak_rss_mb"]
    med = {k: statistics.median(v) for k, v in res.items() if v}
    what = a.arch if a.arch.startswith("x3d") or a.arch in TRANSFORMERS else "SlowFast R50 8x8"
    peer_name = ("transformers (PyTorch, SDPA)" if a.arch.startswith("videomae") else "transformers (PyTorch, eager attention)") \
        if a.arch in TRANSFORMERS else "pytorch"
    print(f"{what} forward, batch 1, clip {a.frames}x{a.size}x{a.size}, {a.threads} threads; "
          f"medians of {a.rounds} rounds x {a.repeat} runs:")
    for k, v in med.items():
        print(f"  {k:12s} {v:7.3f} s   peak RSS {rss[k]:7.0f} MB   rounds {[round(x, 3) for x in res[k]]}")
    print(f"  sfnet / {peer_name} = {med['sfnet'] / med['pytorch']:.2f}x")
    if a.baseline:
        print(f"  baseline / {peer_name} = {med['baseline'] / med['pytorch']:.2f}x; sfnet / baseline = {med['sfnet'] / med['baseline']:.2f}x")
    if "onnxruntime" in med:
        print(f"  sfnet / onnxruntime = {med['sfnet'] / med['onnxruntime']:.2f}x")
    print(f"  sfnet {extra['gflops']:.0f} GFLOP/s ({extra['multiply_adds'] / 1e9:.1f} GMACs), OpenBLAS core {extra.get('openblas_core')}, "
          f"element-wise kernels {extra.get('elementwise_kernels')}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d"), "threads": a.threads, "size": a.size, "frames": a.frames,
                       "median_s": med, "rounds_s": res, "peak_rss_mb": rss, "sfnet": extra}, f, indent=1)

if __name__ == "__main__":
    main()
