#!/usr/bin/env python3
"""Benchmark: X3D-M's own ops, sfnet vs PyTorch, same thread count, interleaved rounds in one
invocation, each peer in its own process. Ops at X3D-M's shapes (batch 1, 16 frames):
channel-wise 3x3x3 Conv3d forward and backward (dX and dW) at the four stages' inner widths,
stride 1 and the stride-2 first block of each stage; the stem's 5x1x1 channel-wise conv;
squeeze-excitation (C_se = round_width(C, 1/16)) and Swish forward and backward.

sfnet: Benchmarks/X3DOps (a package using the root's Networks; built here in release).
PyTorch: F.conv3d(groups=C) and aten.convolution_backward, fvcore's SqueezeExcitation (what
pytorchvideo's X3D builds; autograd backward, its forward run untimed before each timing), F.silu
and aten.silu_backward. Times are medians over all repeats of all rounds; the machine may be
shared, which medians absorb better than means; the best time of each is printed too. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset
for the timed commands.
Usage: x3d_ops_bench.py [--threads 2] [--rounds 3] [--repeat 5] [--only conv|se|swish] [--json OUT]
"""
import argparse, json, os, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.join(HERE, "X3DOps")
T = 16


def cases():
    out = []
    # X3D-M inner widths per stage and output sizes; each stage's first block is stride 2.
    for c, hw in [(54, 56), (108, 28), (216, 14), (432, 7)]:
        out.append(dict(name=f"cw3 C{c} {hw}", op="conv", shape=[1, c, T, hw, hw], kernel=[3, 3, 3], stride=[1, 1, 1], padding=[1, 1, 1]))
        out.append(dict(name=f"cw3 C{c} {2 * hw}->{hw} s2", op="conv", shape=[1, c, T, 2 * hw, 2 * hw], kernel=[3, 3, 3],
                        stride=[1, 2, 2], padding=[1, 1, 1]))
    out.append(dict(name="stem 5x1x1 C24 112", op="conv", shape=[1, 24, T, 112, 112], kernel=[5, 1, 1], stride=[1, 1, 1],
                    padding=[2, 0, 0]))
    for c, hw, r in [(54, 56, 8), (108, 28, 8), (216, 14, 16), (432, 7, 32)]:
        out.append(dict(name=f"SE C{c} {hw} (C_se {r})", op="se", shape=[1, c, T, hw, hw], reduced=r))
    for c, hw in [(54, 56), (108, 28), (216, 14), (432, 7)]:
        out.append(dict(name=f"swish C{c} {hw}", op="swish", shape=[1, c, T, hw, hw]))
    return out


def torch_peer(req):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(req["threads"])
    res = []

    def timed(fn, setup=None):
        if setup: setup()
        fn()
        ts = []
        for _ in range(req["repeats"]):
            if setup: setup()
            t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
        return ts

    for c in req["cases"]:
        x = torch.randn(c["shape"])
        times = {}
        if c["op"] == "conv":
            ch = c["shape"][1]
            w = torch.randn(ch, 1, *c["kernel"]) * 0.3
            s, p = c["stride"], c["padding"]
            with torch.no_grad():
                y = F.conv3d(x, w, None, s, p, 1, ch)
                times["forward"] = timed(lambda: F.conv3d(x, w, None, s, p, 1, ch))
                dy = torch.randn(y.shape)
                times["backward"] = timed(lambda: torch.ops.aten.convolution_backward(
                    dy, x, w, None, s, p, [1, 1, 1], False, [0, 0, 0], ch, [True, True, False]))
        elif c["op"] == "se":
            from fvcore.nn.squeeze_excitation import SqueezeExcitation
            se = SqueezeExcitation(c["shape"][1], num_channels_reduced=c["reduced"], is_3d=True)
            with torch.no_grad():
                times["forward"] = timed(lambda: se(x))
            xg = x.clone().requires_grad_(True)
            dy = torch.randn(c["shape"])
            params = [xg] + list(se.parameters())
            state = {}
            def setup():
                state["y"] = se(xg)
            times["backward"] = timed(lambda: torch.autograd.grad(state["y"], params, dy), setup)
        elif c["op"] == "swish":
            with torch.no_grad():
                times["forward"] = timed(lambda: F.silu(x))
                dy = torch.randn(c["shape"])
                times["backward"] = timed(lambda: torch.ops.aten.silu_backward(dy, x))
        res.append({"name": c["name"], "times": times})
    for r in res:
        print(json.dumps(r))


def run_peer(cmd, req):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    p = subprocess.run(cmd, input=json.dumps(req), capture_output=True, text=True, env=env, check=True)
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", choices=["conv", "se", "swish"])
    ap.add_argument("--json")
    ap.add_argument("--peer", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peer == "torch":
        return torch_peer(json.load(sys.stdin))
    subprocess.run(["swift", "build", "-c", "release", "--package-path", PKG], check=True, capture_output=True)
    binary = os.path.join(PKG, ".build", "release", "x3d-ops-bench")
    sel = [c for c in cases() if a.only is None or c["op"] == a.only]
    req = {"threads": a.threads, "repeats": a.repeat, "cases": sel}
    acc = {"sfnet": {}, "torch": {}}
    for _ in range(a.rounds):
        for peer, cmd in [("sfnet", [binary]), ("torch", [sys.executable, os.path.abspath(__file__), "--peer", "torch"])]:
            for r in run_peer(cmd, req):
                for k, ts in r["times"].items():
                    acc[peer].setdefault((r["name"], k), []).extend(ts)
    import platform, torch
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    print(f"# {time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} cores visible, threads {a.threads}, torch {torch.__version__}, "
          f"{a.rounds} rounds x {a.repeat} repeats, medians (ms)")
    print("| op | shape (N=1, T=16) | pass | sfnet ms | PyTorch ms | sfnet / PyTorch | best: sfnet / PyTorch ms |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for c in sel:
        for k in ("forward", "backward"):
            ss, ts = acc["sfnet"][(c["name"], k)], acc["torch"][(c["name"], k)]
            s, t = statistics.median(ss) * 1e3, statistics.median(ts) * 1e3
            rows.append({"name": c["name"], "pass": k, "sfnet_ms": s, "torch_ms": t, "ratio": s / t,
                         "sfnet_min_ms": min(ss) * 1e3, "torch_min_ms": min(ts) * 1e3})
            print(f"| {c['op']} | {c['name']} | {k} | {s:.2f} | {t:.2f} | {s / t:.2f}x | {min(ss) * 1e3:.2f} / {min(ts) * 1e3:.2f} |")
    for op in sorted({c["op"] for c in sel}):
        for k in ("forward", "backward"):
            s = sum(r["sfnet_ms"] for r, c in zip(rows[::2] if k == "forward" else rows[1::2], sel) if c["op"] == op)
            t = sum(r["torch_ms"] for r, c in zip(rows[::2] if k == "forward" else rows[1::2], sel) if c["op"] == op)
            print(f"| {op} | sum of the rows above | {k} | {s:.2f} | {t:.2f} | {s / t:.2f}x | |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
