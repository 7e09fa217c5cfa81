#!/usr/bin/env python3
"""`sfnet eval`'s mAP against scikit-learn's average_precision_score on the same scores
(issue 7): runs `sfnet eval --json --scores S.csv` on WEIGHTS and DATA, recomputes the
per-class AP with sklearn from the scores file (mAP = mean over classes with a positive)
and compares with what sfnet printed. Prints SKIPPED loudly when scikit-learn is missing.

    python3 scripts/check_eval_sklearn.py --weights runs/x/best.safetensors --data data/test.csv [--sfnet ...] [-- extra eval args]
    python3 scripts/check_eval_sklearn.py --demo     # uses demo-out/ from `make demo`
"""
import argparse, csv, json, os, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sfnet", default=os.path.join(ROOT, ".build", "release", "sfnet"))
    ap.add_argument("--weights")
    ap.add_argument("--data")
    ap.add_argument("--demo", action="store_true")
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    try:
        import numpy as np
        from sklearn.metrics import average_precision_score
    except ImportError:
        print("=" * 70 + "\n  SKIPPED: scikit-learn is not installed (pip install scikit-learn)\n" + "=" * 70)
        return 0
    checks = []
    if a.demo:
        for run in sorted(os.listdir(os.path.join(ROOT, "demo-out", "study"))):
            w = os.path.join(ROOT, "demo-out", "study", run, "best.safetensors")
            if os.path.exists(w):
                checks.append((w, os.path.join(ROOT, "demo-out", "data", "test.csv"), ["--sampling-rate", "4", "--views", "3x2"]))
    else:
        checks.append((a.weights, a.data, a.extra))
    worst = 0.0
    for w, d, extra in checks:
        with tempfile.TemporaryDirectory() as t:
            scores = os.path.join(t, "scores.csv")
            r = subprocess.run([a.sfnet, "eval", "--weights", w, "--data", d, "--json", "--scores", scores] + extra, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"sfnet eval failed: {r.stderr}")
            got = json.loads(r.stdout)
            rows = list(csv.reader(open(scores)))
            head, body = rows[0], rows[1:]
            k = sum(h.startswith("score:") for h in head)
            s = np.array([[float(x) for x in row[1:1 + k]] for row in body])
            y = np.array([[int(x) for x in row[1 + k:1 + 2 * k]] for row in body])
            aps = [average_precision_score(y[:, c], s[:, c]) for c in range(k) if y[:, c].sum() > 0]
            ref = float(np.mean(aps))
            diff = abs(ref - got["map"])
            worst = max(worst, diff)
            print(f"{'ok  ' if diff < 1e-9 else 'FAIL'} {os.path.relpath(w, ROOT)}: sfnet mAP {got['map']:.12f}, sklearn {ref:.12f} "
                  f"({len(body)} videos, {len(aps)} classes with positives), |diff| {diff:.1e}")
    print(f"{'PASSED' if worst < 1e-9 else 'FAILED'}: {len(checks)} evaluations, max |sfnet - sklearn| {worst:.1e}")
    return 0 if worst < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
