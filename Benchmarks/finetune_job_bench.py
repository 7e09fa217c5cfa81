#!/usr/bin/env python3
"""Benchmark (issue 14): sfnet's whole fine-tuning job against a plain PyTorch script doing the same job
(Benchmarks/finetune_job_peer.py: PyAV decode once, cached frames, same recipe, validation and a
checkpoint each epoch). The job is BENCHMARKS.md's "Fine-tuning loop: per-epoch costs": 36 train / 12
val synthetic MP4s (4 classes), 12 epochs, batch 4, 8 frames, crop 64, jitter [64, 80], LR 0.01,
SlowFast R50 8x8 from scratch (--arch examples/demo/tiny_slowfast.json: the demo's tiny SlowFast).

Makes the data with `sfnet data synth`, prints both recipes side by side (`sfnet finetune --print-config`
and the peer's), then runs sfnet, peer, sfnet, peer, ... (--rounds), each in its own process: sfnet
with the OpenBLAS overrides unset (it picks its kernel itself), the peer with torch.set_num_threads(2)
and one DataLoader worker process (sfnet: 2 compute threads, 1 loader thread); OPENBLAS_VERBOSE=2 makes
OpenBLAS name the kernel sfnet runs. Reports each run's wall
time, CPU time, peak RSS (wait4's ru_maxrss: the process or its largest descendant), final and best
val mAP and the phases each job prints, the medians and the ratio sfnet / peer (issue 14: <= 0.8).
After the first sfnet run, the architecture sfnet recorded in best.safetensors and its parameter count
are checked against the peer's network.

Usage: finetune_job_bench.py [--sfnet .build/release/sfnet] [--rounds 2] [--arch slowfast-r50-8x8|FILE.json]
       [--epochs 12] [--work bench-out/job14] [--json OUT]
"""
import argparse, json, os, re, shlex, shutil, statistics, struct, subprocess, sys, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "finetune_job_peer.py")
SYNTH = ["--train-per-class", "9", "--val-per-class", "3", "--test-per-class", "1", "--size", "64",
         "--object-scale", "3", "--noise", "2", "--seed", "0"]
UNSET = ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"]
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+)\s+train loss ([-\d.naninf]+)\s+val mAP ([\d.]+)%")
# Architecture fields both networks are built from (the rest: class count, clip, naming).
# Peer settings that are ClipConfig defaults in sfnet, which has no option for them (and does not print them).
CLIP_DEFAULTS = ["lighting-std", "flip", "slow-frames", "target-fps"]
ARCH_FIELDS = ["stage_depths", "width_per_group", "num_groups", "alpha", "beta_inv", "fusion_conv_channel_ratio",
               "fusion_kernel", "fusion_norm", "temporal_kernels", "spatial_strides", "stride_1x1", "dropout"]


def job_flags(a, data):
    return ["--train", f"{data}/train.csv", "--val", f"{data}/val.csv", "--epochs", str(a.epochs), "--batch", "4",
            "--frames", "8", "--crop", "64", "--jitter", "64", "80", "--lr", "0.01", "--seed", "0", "--arch", a.arch]


def sfnet_cmd(a, data, out):
    return [a.sfnet, "finetune", "--init", "scratch", "--out", out] + job_flags(a, data)


def peer_cmd(a, data, out, js):
    return [a.python, PEER, "--out", out, "--json", js, "--threads", "2", "--workers", "1"] + job_flags(a, data)


def sfnet_env():
    env = dict(os.environ)
    for k in UNSET:
        env.pop(k, None)
    env["OPENBLAS_VERBOSE"] = "2"   # OpenBLAS prints "Core: NAME" as it loads (after sfnet's re-exec: the kernel it runs)
    return env


def show(cmd, unset=False):
    return ("env " + " ".join(f"-u {k}" for k in UNSET) + " " if unset else "") + " ".join(shlex.quote(c) for c in cmd)


def run(cmd, env, tag, log):
    """Runs `cmd`, echoing its lines with `tag`; returns (wall s, rusage, lines, exit status)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []

    def pump():
        with open(log, "w") as f:
            for line in p.stdout:
                f.write(line)
                line = line.rstrip("\n").split("\r")[-1]
                lines.append(line)
                if "Warning" not in line and "warnings.warn" not in line:
                    print(f"  [{tag}] {line}", flush=True)

    th = threading.Thread(target=pump)
    th.start()
    _, status, usage = os.wait4(p.pid, 0)   # this child's own rusage (ru_maxrss: it or its largest descendant)
    wall = time.perf_counter() - t0
    th.join()
    return wall, usage, lines, os.waitstatus_to_exitcode(status)


def parse_config(lines):
    rows = {}
    for line in lines:
        m = re.match(r"^(\S+)\s{2,}(.*?)(?:\s{2,}(default|command line|PySlowFast default|file .*))?\s*$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def same(x, y):
    if x is None or y is None:
        return False
    x, y = x.split(" (")[0].strip(), y.split(" (")[0].strip()
    try:
        return all(abs(float(u) - float(v)) <= 1e-12 * max(1, abs(float(u))) for u, v in
                   zip(x.strip("[]").replace(",", " ").split(), y.strip("[]").replace(",", " ").split(), strict=True))
    except ValueError:
        return x == y


def safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def check_arch(a, run_dir):
    """sfnet's recorded architecture and parameter count vs the peer's (best.safetensors' metadata)."""
    sys.path.insert(0, HERE)
    import finetune_job_peer as peer
    h = safetensors_header(os.path.join(run_dir, "best.safetensors"))
    meta = h.get("__metadata__", {})
    arch = json.loads(meta["sfnet.arch"]) if "sfnet.arch" in meta else None
    mine = peer.load_arch(a.arch)
    print("architecture (sfnet's best.safetensors `sfnet.arch` vs the peer's):")
    ok = True
    for k in ARCH_FIELDS:
        s = None if arch is None else arch.get(k)
        m = mine.get(k, {"num_groups": 1, "stride_1x1": False, "fusion_norm": True}.get(k))
        ok &= s == m
        print(f"  {k:<26}{json.dumps(s):<44}{json.dumps(m):<44}{'' if s == m else 'DIFFERS'}")
    stats = ("running_mean", "running_var", "num_batches_tracked")
    n = sum(_prod(v["shape"]) for k, v in h.items() if k != "__metadata__" and not k.endswith(stats))
    print(f"  learnable parameters: sfnet {n:,} (the peer's: its 'network' line; both in the summary)")
    return {"sfnet_arch": arch, "peer_arch": mine, "match": ok, "sfnet_parameters": n}


def _prod(shape):
    r = 1
    for d in shape:
        r *= d
    return r


def peer_parameters(lines):
    for line in lines:
        m = re.search(r"([\d,]+) parameters", line)
        if m:
            return int(m.group(1).replace(",", ""))
    return None


def summary_of(lines, out_dir, peer_json=None):
    epochs = [(int(m.group(1)), float(m.group(3)), float(m.group(4)) / 100) for m in map(EPOCH_LINE.match, lines) if m]
    totals = next((l for l in lines if l.startswith("time over")), None)
    r = {"epochs_seen": len(epochs), "totals_line": totals}
    cores = [l.split(":", 1)[1].strip() for l in lines if l.startswith("Core:")]
    if cores:
        r["blas_kernel"] = cores[-1]
    if epochs:
        r.update(final_loss=epochs[-1][1], final_val_map=epochs[-1][2], best_val_map=max(e[2] for e in epochs))
    if peer_json and os.path.exists(peer_json):
        with open(peer_json) as f:
            j = json.load(f)
        r.update(final_val_map=j["final_val_map"], best_val_map=j["best_val_map"], phases=j["phase_totals"],
                 decode_s=j["decode_s"], startup_s=j["startup_s"])
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sfnet", default=".build/release/sfnet")
    ap.add_argument("--rounds", type=int, default=2, help="sfnet, peer pairs; 0: print the recipes and stop")
    ap.add_argument("--arch", default="slowfast-r50-8x8", help="slowfast-r50-8x8 or an sfnet.arch JSON (both contenders)")
    ap.add_argument("--epochs", type=int, default=12, help="the issue's job: 12")
    ap.add_argument("--work", default="bench-out/job14", help="data, run directories and logs")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the peer (torch, pytorchvideo, av, sklearn)")
    ap.add_argument("--json")
    a = ap.parse_args()
    a.sfnet = os.path.abspath(a.sfnet)
    if not os.access(a.sfnet, os.X_OK):
        sys.exit(f"no sfnet at {a.sfnet}: swift build -c release --product sfnet (or --sfnet PATH)")
    try:
        subprocess.run([a.python, "-c", "import torch, pytorchvideo, av, sklearn"], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        print(f"SKIPPED: the peer needs torch, pytorchvideo, av and scikit-learn in {a.python} (make venv; --python)")
        return
    work = os.path.abspath(a.work)
    data = os.path.join(work, "data")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(work, exist_ok=True)
    synth = [a.sfnet, "data", "synth", "-o", data] + SYNTH
    print("data: " + show(synth), flush=True)
    subprocess.run(synth, check=True, stdout=subprocess.DEVNULL)

    # The two recipes, side by side.
    cfg_dir = os.path.join(work, "print-config")
    shutil.rmtree(cfg_dir, ignore_errors=True)
    s_cfg = subprocess.run(sfnet_cmd(a, data, cfg_dir) + ["--print-config"], env=sfnet_env(), capture_output=True, text=True)
    p_cfg = subprocess.run(peer_cmd(a, data, cfg_dir, os.devnull) + ["--print-config"], capture_output=True, text=True)
    if s_cfg.returncode or p_cfg.returncode:
        sys.exit(f"--print-config failed:\n{s_cfg.stderr}{p_cfg.stderr}")
    s_rows, p_rows = parse_config(s_cfg.stdout.splitlines()), parse_config(p_cfg.stdout.splitlines())
    print(f"\nrecipes:\n  {'setting':<24}{'sfnet finetune --print-config':<32}{'peer --print-config':<24}")
    mismatches = []
    for k in [k for k in s_rows if k in p_rows] + [k for k in p_rows if k not in s_rows]:
        s, p = s_rows.get(k), p_rows[k]
        mark = "" if s is None or same(s, p) else "DIFFERS"
        if mark:
            mismatches.append(k)
        s = s if s is not None else "(ClipConfig default)" if k in CLIP_DEFAULTS else "-"
        print(f"  {k:<24}{s:<32}{p:<24}{mark}")
    print("  sfnet only (data, other recipes' settings): "
          + "; ".join(f"{k} {v}" for k, v in s_rows.items() if k not in p_rows and k not in ("train", "val")))
    if mismatches:
        print(f"WARNING: the recipes differ in {', '.join(mismatches)}")
    print("\nsfnet: " + show(sfnet_cmd(a, data, "RUN"), unset=True))
    print("peer:  " + show(peer_cmd(a, data, "RUN", "RUN.json")) + "\n", flush=True)

    if a.rounds < 1:
        return   # --rounds 0: the recipes only
    runs, arch_check = [], None
    for r in range(a.rounds):
        for who in ("sfnet", "peer"):
            out = os.path.join(work, f"run-{who}-{r + 1}")
            shutil.rmtree(out, ignore_errors=True)
            pj = out + ".json"
            cmd = sfnet_cmd(a, data, out) if who == "sfnet" else peer_cmd(a, data, out, pj)
            print(f"round {r + 1}: {who}", flush=True)
            wall, usage, lines, rc = run(cmd, sfnet_env() if who == "sfnet" else dict(os.environ), who, out + ".log")
            s = summary_of(lines, out, pj if who == "peer" else None)
            rec = dict(who=who, round=r + 1, wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime,
                       peak_rss_mb=usage.ru_maxrss / 1024, exit=rc, **s)
            if who == "peer":
                rec["parameters"] = peer_parameters(lines)
            runs.append(rec)
            print(f"  -> {who} round {r + 1}: wall {wall:.1f} s, CPU {rec['cpu_s']:.1f} s, peak RSS {rec['peak_rss_mb']:.0f} MB, "
                  f"exit {rc}" + (f", OpenBLAS kernel {rec['blas_kernel']}" if "blas_kernel" in rec else "") + "\n", flush=True)
            if rc:
                sys.exit(f"{who} failed (exit {rc}); log: {out}.log")
            if who == "sfnet" and arch_check is None:
                arch_check = check_arch(a, out)

    print(f"\nissue 14 job ({a.arch}, {a.epochs} epochs, batch 4, 8x64², 36 train / 12 val clips), {a.rounds} round(s), interleaved:")
    print(f"  {'run':<10}{'wall s':>9}{'CPU s':>9}{'peak RSS MB':>13}{'final val mAP':>15}{'best val mAP':>14}{'final loss':>12}")
    for x in runs:
        print(f"  {x['who'] + ' ' + str(x['round']):<10}{x['wall_s']:>9.1f}{x['cpu_s']:>9.1f}{x['peak_rss_mb']:>13.0f}"
              f"{100 * x.get('final_val_map', float('nan')):>14.1f}%{100 * x.get('best_val_map', float('nan')):>13.1f}%"
              f"{x.get('final_loss', float('nan')):>12.4f}")
    med = {w: statistics.median(x["wall_s"] for x in runs if x["who"] == w) for w in ("sfnet", "peer")}
    ratio = med["sfnet"] / med["peer"]
    print(f"  median wall: sfnet {med['sfnet']:.1f} s, peer {med['peer']:.1f} s; sfnet / peer = {ratio:.2f} "
          f"(issue 14 target: <= 0.80: {'met' if ratio <= 0.8 else 'not met'})")
    if arch_check:
        counts = sorted({x["parameters"] for x in runs if x["who"] == "peer"} - {None})
        print(f"  architecture fields {'the same' if arch_check['match'] else 'DIFFER'}; learnable parameters: "
              f"sfnet {arch_check['sfnet_parameters']:,}, peer {', '.join(f'{c:,}' for c in counts) or '?'}"
              + ("" if counts == [arch_check["sfnet_parameters"]] else "  DIFFER"))
    for x in runs:
        if x.get("totals_line"):
            print(f"  {x['who']} {x['round']}: {x['totals_line']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(job=dict(arch=a.arch, epochs=a.epochs, batch=4, frames=8, crop=64, jitter=[64, 80], lr=0.01,
                                    synth=" ".join(SYNTH)),
                           recipes=dict(sfnet=s_rows, peer=p_rows, differ=mismatches), architecture=arch_check,
                           runs=runs, median_wall_s=med, ratio_sfnet_over_peer=ratio), f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
