#!/usr/bin/env python3
"""Fault injection on every write (issue 8, part 3): kill -9 at random moments of
`sfnet convert`, `sfnet export` (PyTorch and ONNX) and `sfnet finetune`, hundreds of
times, and check after each kill that the output path holds either the previous file
(byte for byte) or a complete new one that `sfnet inspect` accepts and that equals a
clean run's output; that leftover temporaries are gone after the next run; and that a
killed fine-tuning run finishes with --resume with every epoch and readable checkpoints.

    python3 scripts/fault_inject.py [--sfnet .build/release/sfnet] [--runs 100] [--write-kills 100] [--seed 1]

--write-kills N more fine-tuning runs are killed exactly inside a write: sfnet's test hook
SFNET_FAULT_KILL_AT_BYTE=K makes the process SIGKILL itself once K bytes in all have gone
into its atomic outputs (checkpoints, best weights, metrics, report), K drawn uniformly
over what a clean run writes; then each checkpoint must read back, metrics.json must parse,
and --resume must finish the run.

Uses the full-size R50 checkpoint (fixtures/full/slowfast_r50_8x8.pyth) for convert when
present (a 0.25 s write), else the tiny fixture. Prints one line per job and a summary;
exit 1 on any corrupt output.
"""
import argparse, hashlib, os, random, shutil, signal, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def timed(cmd):
    t = time.perf_counter(); r = run(cmd); return time.perf_counter() - t, r


def kill_at(cmd, delay):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    killed = p.poll() is None
    if killed:
        p.send_signal(signal.SIGKILL)
    p.wait()
    return killed


def temps(d):
    return [n for n in os.listdir(d) if ".sfnet-tmp-" in n]


def tensors_fingerprint(sfnet):
    """Every tensor's name, dtype, shape and SHA-256 as `sfnet inspect --json` reports them, or None if it
    does not read: torch.save-style archives carry a random serialization id, so their bytes differ per run."""
    import json
    def fp(path):
        r = run([sfnet, "inspect", path, "--json"])
        if r.returncode != 0:
            return None
        return hashlib.sha256(json.dumps([(t["name"], t["dtype"], t["shape"], t["sha256"]) for t in json.loads(r.stdout)["tensors"]]).encode()).hexdigest()
    return fp


def write_job(name, sfnet, make_cmd, out, runs, rng, check, fingerprint=None):
    """make_cmd(out) -> argv that (re)writes `out` with --force; `fingerprint` identifies a complete new output."""
    fingerprint = fingerprint or sha
    d = os.path.dirname(out)
    r = run(make_cmd(out))
    if r.returncode != 0:
        sys.exit(f"{name}: clean run failed: {r.stderr}")
    new_sha = fingerprint(out)
    # The "old" file: a different, complete file at the same path.
    old = out + ".old"
    with open(old, "wb") as f:
        f.write(b"previous contents " * 1000)
    old_sha = sha(old)
    duration, _ = timed(make_cmd(out))
    counts = {"old kept": 0, "new complete": 0, "finished before the kill": 0, "corrupt": 0}
    for i in range(runs):
        shutil.copyfile(old, out)
        killed = kill_at(make_cmd(out), rng.uniform(0, duration * 1.1))
        s = sha(out) if os.path.exists(out) else None
        if s == old_sha:
            counts["old kept"] += 1
        elif s is not None and fingerprint(out) == new_sha and check(out):
            counts["new complete" if killed else "finished before the kill"] += 1
        else:
            counts["corrupt"] += 1
            print(f"  CORRUPT after kill {i}: {out} sha {s}")
    left = len(temps(d))
    r = run(make_cmd(out))            # the next run cleans up after the killed ones
    after = len(temps(d))
    ok = counts["corrupt"] == 0 and r.returncode == 0 and after == 0 and fingerprint(out) == new_sha
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {runs} kills at random moments of a {duration:.3f} s write: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()) + f"; temporaries left by kills {left}, after the next run {after}")
    return ok, counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sfnet", default=os.path.join(ROOT, ".build", "release", "sfnet"))
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--write-kills", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    sf = a.sfnet
    work = tempfile.mkdtemp(prefix="sfnet-faults-")
    full = os.path.join(ROOT, "fixtures", "full", "slowfast_r50_8x8.pyth")
    src = full if os.path.exists(full) else os.path.join(ROOT, "fixtures", "torch", "tiny_pyslowfast.pyth")
    inspect_ok = lambda p: run([sf, "inspect", p]).returncode == 0
    results = []
    native = os.path.join(work, "native.safetensors")
    results.append(write_job(f"convert {os.path.basename(src)}", sf, lambda o: [sf, "convert", src, "-o", o, "--force"], native, a.runs, rng, inspect_ok))
    # A second native file to export from (the clean conversion).
    base = os.path.join(work, "base.safetensors")
    run([sf, "convert", src, "-o", base, "--force"])
    results.append(write_job("export --to pyslowfast", sf, lambda o: [sf, "export", base, "--to", "pyslowfast", "-o", o, "--force"],
                             os.path.join(work, "out.pyth"), a.runs, rng, inspect_ok, fingerprint=tensors_fingerprint(sf)))
    results.append(write_job("export --to onnx", sf, lambda o: [sf, "export", base, "--to", "onnx", "-o", o, "--force"],
                             os.path.join(work, "out.onnx"), a.runs, rng, lambda p: True))

    # finetune: kill during training (checkpoint writes included), then --resume.
    data = os.path.join(work, "data")
    run([sf, "data", "synth", "-o", data, "--train-per-class", "4", "--val-per-class", "2", "--test-per-class", "1", "--size", "32", "--classes", "moving_across,resting"])
    arch = os.path.join(ROOT, "examples", "demo", "tiny_slowfast.json")
    ft_ok, ft_runs, resumed = True, max(5, a.runs // 10), 0
    for i in range(ft_runs):
        out = os.path.join(work, f"run{i}")
        cmd = [sf, "finetune", "--init", "scratch", "--arch", arch, "--train", os.path.join(data, "train.csv"), "--val", os.path.join(data, "val.csv"),
               "--out", out, "--epochs", "3", "--crop", "32", "--jitter", "32", "40", "--batch", "4", "--seed", str(i)]
        kill_at(cmd, rng.uniform(0.2, 2.5))
        for n in os.listdir(out) if os.path.isdir(out) else []:
            if n.startswith("checkpoint-") and ".sfnet-tmp-" not in n and not inspect_ok(os.path.join(out, n)):
                ft_ok = False; print(f"  CORRUPT checkpoint {out}/{n}")
        r = run(cmd + ["--resume"] if os.path.isdir(out) and any(n.startswith("checkpoint-") for n in os.listdir(out)) else cmd)
        ckpts = sorted(n for n in os.listdir(out) if n.startswith("checkpoint-") and ".sfnet-tmp-" not in n)
        good = r.returncode == 0 and "epoch 3/3" in r.stdout or (r.returncode == 0 and ckpts and ckpts[-1] == "checkpoint-epoch003.safetensors")
        good = good and all(inspect_ok(os.path.join(out, n)) for n in ckpts) and not temps(out)
        resumed += "resuming" in r.stdout
        if not good:
            ft_ok = False; print(f"  FAIL finetune run {i}: rc {r.returncode} {r.stderr[-300:]}")
    print(f"{'ok  ' if ft_ok else 'FAIL'} finetune: {ft_runs} runs killed at random moments, {resumed} continued with --resume, "
          f"every run finished its 3 epochs with readable checkpoints and no temporaries")
    # finetune, killed exactly inside a write (checkpoint, best weights, metrics, report).
    wk_ok, wk_killed, wk_where = True, 0, {}
    if a.write_kills > 0:
        clean = os.path.join(work, "clean")
        base_cmd = [sf, "finetune", "--init", "scratch", "--arch", arch, "--train", os.path.join(data, "train.csv"), "--val",
                    os.path.join(data, "val.csv"), "--epochs", "3", "--crop", "32", "--jitter", "32", "40", "--batch", "4", "--seed", "1"]
        r = run(base_cmd + ["--out", clean])
        if r.returncode != 0:
            print("FAIL clean fine-tuning run: " + r.stderr[-300:]); wk_ok = False
        else:
            # Every epoch rewrites its checkpoint, the reports and (when best) the best weights.
            per_epoch = sum(os.path.getsize(os.path.join(clean, n)) for n in os.listdir(clean)
                            if n in ("best.safetensors", "metrics.json", "metrics.csv", "report.html") or n == "checkpoint-epoch003.safetensors")
            total = 3 * per_epoch
            for i in range(a.write_kills):
                out = os.path.join(work, f"w{i}")
                at = rng.randrange(0, total)
                env = dict(os.environ, SFNET_FAULT_KILL_AT_BYTE=str(at))
                p = subprocess.run(base_cmd + ["--out", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
                killed = p.returncode == -signal.SIGKILL
                wk_killed += killed
                tmp = temps(out) if os.path.isdir(out) else []
                if killed and tmp:
                    kind = tmp[0].split(".sfnet-tmp-")[0].lstrip(".")
                    kind = "checkpoint" if kind.startswith("checkpoint-") else kind
                    wk_where[kind] = wk_where.get(kind, 0) + 1
                names = os.listdir(out) if os.path.isdir(out) else []
                for n in names:
                    if n.endswith(".safetensors") and ".sfnet-tmp-" not in n and not inspect_ok(os.path.join(out, n)):
                        wk_ok = False; print(f"  CORRUPT {out}/{n} after a kill at byte {at}")
                if "metrics.json" in names:
                    try:
                        import json
                        json.load(open(os.path.join(out, "metrics.json")))
                    except Exception as e:
                        wk_ok = False; print(f"  CORRUPT {out}/metrics.json after a kill at byte {at}: {e}")
                resume = any(n.startswith("checkpoint-") and ".sfnet-tmp-" not in n for n in names)
                r = run(base_cmd + ["--out", out] + (["--resume"] if resume else []))
                ckpts = sorted(n for n in os.listdir(out) if n.startswith("checkpoint-") and ".sfnet-tmp-" not in n)
                good = r.returncode == 0 and ckpts and ckpts[-1] == "checkpoint-epoch003.safetensors" and not temps(out)
                good = good and all(inspect_ok(os.path.join(out, n)) for n in ckpts)
                if not good:
                    wk_ok = False; print(f"  FAIL run killed at byte {at}: rc {r.returncode} {r.stderr[-300:]}")
            where = ", ".join(f"{k} {v}" for k, v in sorted(wk_where.items()))
            print(f"{'ok  ' if wk_ok else 'FAIL'} finetune writes: {a.write_kills} runs, {wk_killed} killed inside a write "
                  f"(bytes 0..{total} of a clean run's outputs; temporaries left by: {where}), 0 corrupt files, every run "
                  f"finished its 3 epochs afterwards" if wk_ok else "FAIL finetune writes")
    shutil.rmtree(work, ignore_errors=True)
    ok = all(r[0] for r in results) and ft_ok and wk_ok
    print("PASSED: no corrupt output after any kill" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
