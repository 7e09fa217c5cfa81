#!/usr/bin/env python3
"""Benchmark: one training step of SlowFast R50 8x8, batch 2, fast clip 32x224x224 (or, with
--arch x3d-xs|x3d-s|x3d-m|x3d-l, pytorchvideo's X3D at the given clip; with --arch
videomae-s|videomae-b|timesformer-b, Hugging Face transformers' VideoMAE with SDPA attention /
TimeSformer with its own (transformers has no SDPA path for it), train mode, no dropout or drop path, as
`sfnet bench train-step` builds them), same thread count: sfnet (`sfnet bench train-step`) vs PyTorch (eager, train mode: forward, backward of
sum(logits * R), plain SGD update), interleaved rounds in one invocation. Each contender runs in
its own process so its peak RSS is its own (ru_maxrss).

The PyTorch model is fixtures/generate.py's SlowFast, a module-for-module mirror of PySlowFast's
(same state_dict keys), dropout 0.5 before the head as in sfnet's preset; weights are random for
both (timing only). The X3D peer is pytorchvideo.models.x3d.create_x3d with the preset's depth
factor (dropout 0.5 as in the preset), the reference implementation sfnet's X3D matches.
Usage: train_step_bench.py SFNET [--arch slowfast-r50-8x8] [--threads 2] [--batch 2] [--size 224] [--frames 32] [--rounds 3] [--repeat 3] [--json OUT]
       [--baseline SFNET_BEFORE]   (a second sfnet binary timed in every round too, before SFNET: before/after on the same load)
"""
import argparse, importlib.util, json, os, resource, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
X3D_DEPTH = {"x3d-xs": 2.2, "x3d-s": 2.2, "x3d-m": 2.2, "x3d-l": 5.0}


def load_generate():
    spec = importlib.util.spec_from_file_location("sfnet_generate", os.path.join(HERE, "..", "fixtures", "generate.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_forward_bench():
    """forward_bench.py's transformers table (the same configurations the forward benchmark times)."""
    spec = importlib.util.spec_from_file_location("sfnet_forward_bench", os.path.join(HERE, "forward_bench.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TRANSFORMERS = load_forward_bench().TRANSFORMERS


def torch_peer(a):
    """Runs inside a child process: times PyTorch's training step and prints JSON."""
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.arch in TRANSFORMERS:
        from transformers import VideoMAEConfig, VideoMAEForVideoClassification, TimesformerConfig, TimesformerForVideoClassification
        family, sizes = TRANSFORMERS[a.arch]
        common = dict(image_size=a.size, num_frames=a.frames, patch_size=16, num_labels=400,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **sizes)
        if family == "videomae":
            m = VideoMAEForVideoClassification(VideoMAEConfig(tubelet_size=2, use_mean_pooling=True, attn_implementation="sdpa", **common))
        else:
            # transformers has no SDPA path for TimeSformer (it refuses attn_implementation="sdpa"): its own attention.
            m = TimesformerForVideoClassification(TimesformerConfig(drop_path_rate=0, **common))
        # transformers read (N, T, 3, H, W); sfnet's clip is (N, 3, T, H, W).
        pixels = torch.randn(a.batch, 3, a.frames, a.size, a.size).permute(0, 2, 1, 3, 4).contiguous()
        run = lambda: m(pixel_values=pixels).logits
    elif a.arch.startswith("x3d"):
        from pytorchvideo.models.x3d import create_x3d
        net = create_x3d(input_clip_length=a.frames, input_crop_size=a.size, model_num_class=400,
                         depth_factor=X3D_DEPTH[a.arch], dropout_rate=0.5)
        clip = torch.randn(a.batch, 3, a.frames, a.size, a.size)
        m, inputs = net, clip
        run = lambda: m(inputs)
    else:
        g = load_generate()
        m = g.SlowFast(width_per_group=64, beta_inv=8, alpha=4, fusion_kernel=7, depths=(3, 4, 6, 3),
                       num_classes=400, num_frames=a.frames, train_crop=a.size)
        slow = torch.randn(a.batch, 3, a.frames // 4, a.size, a.size)
        fast = torch.randn(a.batch, 3, a.frames, a.size, a.size)
        run = lambda: m([slow, fast])
    m.train()
    r = torch.randn(a.batch, 400)
    opt = torch.optim.SGD(m.parameters(), lr=1e-4)

    def step():
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        logits = run()
        t1 = time.perf_counter()
        (logits * r).sum().backward()
        opt.step()
        return time.perf_counter() - t0, t1 - t0

    step()  # warm-up
    ts, fw = [], []
    for _ in range(a.repeat):
        t, f = step()
        ts.append(t); fw.append(f)
    print(json.dumps({"median_s": statistics.median(ts), "forward_median_s": statistics.median(fw),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sfnet", nargs="?")
    ap.add_argument("--arch", default="slowfast-r50-8x8", help="slowfast-r50-8x8, x3d-xs|x3d-s|x3d-m|x3d-l or videomae-s|videomae-b|timesformer-b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--baseline", help="another sfnet binary (e.g. before a change), timed in every round just before SFNET")
    ap.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peer:
        return torch_peer(a)
    common = ["--arch", a.arch, "--threads", str(a.threads), "--batch", str(a.batch), "--size", str(a.size), "--frames", str(a.frames),
              "--repeat", str(a.repeat)]

    def torch_child():
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--peer"] + common, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip()[-2000:] or f"exit {p.returncode}")
        return json.loads(p.stdout.strip().splitlines()[-1])

    def sfnet(binary):
        out = subprocess.run([binary, "bench", "train-step", "--json"] + common,
                             check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    names = (["baseline"] if a.baseline else []) + ["sfnet", "pytorch"]
    res, fwd = {k: [] for k in names}, {k: [] for k in names}
    rss, extra = {}, {}
    for _ in range(a.rounds):
        if a.baseline:
            b = sfnet(a.baseline); res["baseline"].append(b["median_s"]); fwd["baseline"].append(b["forward_median_s"]); rss["baseline"] = b["peak_rss_mb"]
        s = sfnet(a.sfnet); res["sfnet"].append(s["median_s"]); fwd["sfnet"].append(s["forward_median_s"]); rss["sfnet"] = s["peak_rss_mb"]; extra = s
        t = torch_child(); res["pytorch"].append(t["median_s"]); fwd["pytorch"].append(t["forward_median_s"]); rss["pytorch"] = t["peak_rss_mb"]
    med = {k: statistics.median(v) for k, v in res.items()}
    what = a.arch if a.arch.startswith("x3d") or a.arch in TRANSFORMERS else "SlowFast R50 8x8"
    peer = ("transformers (PyTorch, SDPA)" if a.arch.startswith("videomae") else "transformers (PyTorch, eager attention)") \
        if a.arch in TRANSFORMERS else "pytorch"
    print(f"{what} training step (forward + backward + SGD), batch {a.batch}, clip {a.frames}x{a.size}x{a.size}, "
          f"{a.threads} threads; medians of {a.rounds} rounds x {a.repeat} steps:")
    for k, v in med.items():
        print(f"  {k:9s} {v:7.3f} s  (forward {statistics.median(fwd[k]):6.3f} s)   peak RSS {rss[k]:7.0f} MB   "
              f"rounds {[round(x, 3) for x in res[k]]}")
    # The issues' targets: X3D 0.4x (issue 15); SlowFast at small clips 0.8x (issue 14); otherwise no slower than the peer.
    target = 0.4 if a.arch.startswith("x3d") else 0.8 if a.arch not in TRANSFORMERS and a.size <= 128 else 1.0
    print(f"  sfnet / {peer} = {med['sfnet'] / med['pytorch']:.2f}x (target <= {target})")
    if a.baseline:
        print(f"  baseline / {peer} = {med['baseline'] / med['pytorch']:.2f}x; sfnet / baseline = {med['sfnet'] / med['baseline']:.2f}x")
    print(f"  sfnet about {extra['gflops']:.0f} GFLOP/s, activations {extra['activation_mb']:.0f} MB, OpenBLAS core {extra.get('openblas_core')}, "
          f"element-wise kernels {extra.get('elementwise_kernels')}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d"), "arch": a.arch, "threads": a.threads, "batch": a.batch, "size": a.size,
                       "frames": a.frames, "median_s": med, "rounds_s": res, "peak_rss_mb": rss, "sfnet": extra}, f, indent=1)


if __name__ == "__main__":
    main()
