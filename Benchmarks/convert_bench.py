#!/usr/bin/env python3
"""Benchmark: full-size SlowFast R50 torch zip -> native, sfnet vs cp vs the Python path.

Runs each contender N times, interleaved, in one invocation, on a page-cached input:
  cp      : cp INPUT OUT                                    (the floor: read + write the bytes)
  sfnet   : sfnet convert INPUT -o OUT --force              (parse, CRC, SHA-256, map, write, fsync)
  python  : torch.load(weights_only=True) + safetensors.torch.save_file (the Python path)
Reports median wall seconds and peak RSS (GNU time) per contender, and the ratios.
Dirty pages are flushed (sync) before each run, outside the timing.
Usage: convert_bench.py SFNET INPUT [--runs 5] [--python VENV_PYTHON] [--json OUT.json]
"""
import argparse, json, os, platform, shutil, statistics, subprocess, sys, tempfile, time

PY_PATH = r'''
import sys, torch, safetensors.torch
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
sd = sd.get("model_state", sd)
safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, sys.argv[2])
'''

RSS_FILE = tempfile.mktemp(prefix="sfnet-bench-rss-")

def run(cmd):
    # Every contender starts from the same state: no dirty pages left by the previous run
    # (Python and cp do not fsync, so their writeback would otherwise land in the next run).
    os.sync()
    # GNU time reports the command's own peak RSS (wait4 on a forked Python child would
    # count the interpreter's pages from before exec).
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", RSS_FILE] + cmd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {p.stderr.decode(errors='replace')}")
    with open(RSS_FILE) as f:
        rss_kb = int(f.read().split()[-1])
    return wall, rss_kb / 1024.0  # MB

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sfnet"); ap.add_argument("input")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json")
    a = ap.parse_args()
    size = os.path.getsize(a.input)
    with open(a.input, "rb") as f:  # page-cache the input for every contender alike
        while f.read(1 << 24): pass
    out = tempfile.mkdtemp(prefix="sfnet-bench-", dir=os.path.dirname(os.path.abspath(a.input)))
    contenders = {
        "cp": lambda: ["cp", a.input, os.path.join(out, "cp.pyth")],
        "sfnet": lambda: [a.sfnet, "convert", a.input, "-o", os.path.join(out, "sfnet.safetensors"), "--force"],
        "python": lambda: [a.python, "-c", PY_PATH, a.input, os.path.join(out, "py.safetensors")],
    }
    results = {k: [] for k in contenders}
    try:
        for k in contenders:  # warm-up, not counted
            run(contenders[k]())
        for _ in range(a.runs):
            for k, mk in contenders.items():
                results[k].append(run(mk()))
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if os.path.exists(RSS_FILE): os.remove(RSS_FILE)
    med = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    rss = {k: max(r for _, r in v) for k, v in results.items()}
    report = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "input_bytes": size, "runs": a.runs,
        "median_s": med, "peak_rss_mb": rss,
        "all_s": {k: [round(w, 4) for w, _ in v] for k, v in results.items()},
        "sfnet_over_cp": med["sfnet"] / med["cp"], "python_over_sfnet": med["python"] / med["sfnet"],
    }
    print(f"input {size/1e6:.1f} MB, {a.runs} runs each, medians:")
    for k in contenders:
        print(f"  {k:7s} {med[k]:7.3f} s   peak RSS {rss[k]:7.1f} MB   runs {report['all_s'][k]}")
    print(f"  sfnet / cp     = {report['sfnet_over_cp']:.2f}x   (target <= 3x)")
    print(f"  python / sfnet = {report['python_over_sfnet']:.1f}x  (target >= 10x)")
    print(f"  sfnet peak RSS = {rss['sfnet']:.1f} MB (target < 100 MB)")
    if a.json:
        with open(a.json, "w") as f: json.dump(report, f, indent=1)

if __name__ == "__main__":
    main()
