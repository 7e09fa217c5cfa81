#!/usr/bin/env python3
"""sfnet's mAP against scikit-learn's average_precision_score (issue 7).

    python scripts/check_map_sklearn.py [--require-sklearn] [--no-build]
    python scripts/check_map_sklearn.py --write-fixture     # rewrites fixtures/train/map_sklearn.json

Makes seeded random cases (multi-label and one-hot single-label, scores with
many ties from coarse quantisation, classes without any positive, a single
clip, all-equal scores), hands them as JSON to sfnet's Metrics through the
test helper MetricsTests.testSklearnCheckHelper (`swift test --skip-build`,
environment SFNET_MAP_CHECK_IN / SFNET_MAP_CHECK_OUT; the tests are built
first unless --no-build), and compares per class and overall with
sklearn.metrics.average_precision_score: per class on every class with at
least one positive, mAP as their unweighted mean (DESIGN.md; sklearn's
average="macro" would also average classes without positives). Tolerance
1e-12 absolute. Prints SKIPPED loudly (exit 0, or 1 with --require-sklearn)
when scikit-learn is not installed; never passes silently.

--write-fixture stores a smaller set of cases with sklearn's answers in
fixtures/train/map_sklearn.json, which the unit tests check without sklearn.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "fixtures", "train", "map_sklearn.json")
TOL = 1e-12


def make_cases(seed, count):
    import numpy as np
    rng = np.random.Generator(np.random.PCG64(seed))
    cases = []

    def add(name, scores, targets):
        scores = np.asarray(scores, dtype=np.float32)
        targets = np.asarray(targets, dtype=np.float32)
        # Each score as the shortest decimal that reads back as the same float32 (Swift's Float, numpy's float32).
        short = [float(np.format_float_positional(x, unique=True)) for x in scores.ravel()]
        assert np.array_equal(np.asarray(short, dtype=np.float32), scores.ravel())
        cases.append(dict(name=name, classes=int(scores.shape[1]), scores=short, targets=[int(x) for x in targets.ravel()]))

    add("sklearn_doc_example", [[0.1], [0.4], [0.35], [0.8]], [[0], [0], [1], [1]])
    add("single_clip", [[0.3, 0.9]], [[1, 0]])
    add("all_scores_equal", np.full((6, 2), 0.5), [[1, 0], [0, 0], [0, 1], [1, 1], [0, 0], [0, 0]])
    for i in range(count):
        clips = int(rng.integers(2, 60))
        classes = int(rng.integers(1, 12))
        kind = i % 3
        if kind == 0:  # multi-label, continuous sigmoid-like scores
            targets = (rng.random((clips, classes)) < 0.3).astype(np.float32)
            scores = 1 / (1 + np.exp(-(rng.standard_normal((clips, classes)) + 1.5 * targets)))
        elif kind == 1:  # multi-label, coarse scores: many ties
            targets = (rng.random((clips, classes)) < 0.4).astype(np.float32)
            scores = np.round(rng.random((clips, classes)) * 4 + targets, 0) / 5
        else:  # single label (one-hot), softmax scores
            labels = rng.integers(0, classes, size=clips)
            targets = np.eye(classes, dtype=np.float32)[labels]
            logits = rng.standard_normal((clips, classes)) + 2 * targets
            scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        if classes > 1 and i % 4 == 0:
            targets[:, classes - 1] = 0  # a class without positives
        add(f"random_{i}_{['multilabel', 'ties', 'single_label'][kind]}", scores, targets)
    return cases


def sklearn_answers(cases):
    import numpy as np
    from sklearn.metrics import average_precision_score
    out = []
    for c in cases:
        k = c["classes"]
        s = np.asarray(c["scores"], dtype=np.float32).reshape(-1, k)
        t = np.asarray(c["targets"], dtype=np.float32).reshape(-1, k)
        per = []
        for j in range(k):
            if t[:, j].sum() > 0:
                per.append(float(average_precision_score(t[:, j], s[:, j])))
            else:
                per.append(None)
        present = [x for x in per if x is not None]
        out.append(dict(per_class=per, map=float(np.mean(present)) if present else None))
    return out


def sfnet_answers(cases, build):
    if build:
        subprocess.run(["swift", "build", "--build-tests"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.json"), os.path.join(d, "out.json")
        with open(src, "w") as f:
            json.dump(dict(cases=cases), f)
        env = dict(os.environ, SFNET_MAP_CHECK_IN=src, SFNET_MAP_CHECK_OUT=dst)
        r = subprocess.run(["swift", "test", "--skip-build", "--disable-swift-testing",
                            "--filter", "TrainTests.MetricsTests/testSklearnCheckHelper"],
                           cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(dst):
            sys.stdout.write(r.stdout[-4000:] + r.stderr[-4000:])
            raise SystemExit("FAILED: the Swift helper did not produce answers (build the tests first?)")
        with open(dst) as f:
            got = json.load(f)
    return [dict(per_class=g["per_class"], map=g["map"][0]) for g in got]


def compare(cases, want, got):
    bad = 0
    for c, w, g in zip(cases, want, got):
        for j, (a, b) in enumerate(zip(g["per_class"], w["per_class"])):
            if (a is None) != (b is None) or (a is not None and abs(a - b) > TOL):
                print(f"  MISMATCH {c['name']} class {j}: sfnet {a}, sklearn {b}")
                bad += 1
        if (g["map"] is None) != (w["map"] is None) or (g["map"] is not None and abs(g["map"] - w["map"]) > TOL):
            print(f"  MISMATCH {c['name']} mAP: sfnet {g['map']}, sklearn {w['map']}")
            bad += 1
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--require-sklearn", action="store_true", help="exit 1 instead of 0 when scikit-learn is missing")
    ap.add_argument("--no-build", action="store_true", help="use the tests as already built")
    ap.add_argument("--write-fixture", action="store_true", help=f"rewrite {os.path.relpath(FIXTURE, ROOT)} and exit")
    ap.add_argument("--cases", type=int, default=60)
    args = ap.parse_args()
    try:
        import numpy  # noqa: F401
        import sklearn
    except ImportError as e:
        print("=" * 72)
        print(f"SKIPPED: {e.name} is not installed; sfnet's mAP was NOT compared with")
        print("sklearn.metrics.average_precision_score. pip install numpy scikit-learn to run this check.")
        print("=" * 72)
        sys.exit(1 if args.require_sklearn else 0)

    if args.write_fixture:
        cases = make_cases(20261127, 9)
        for c, w in zip(cases, sklearn_answers(cases)):
            c["sklearn_per_class"], c["sklearn_map"] = w["per_class"], w["map"]
        with open(FIXTURE, "w") as f:
            json.dump(dict(sklearn_version=sklearn.__version__, generator="scripts/check_map_sklearn.py --write-fixture",
                           cases=cases), f, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {os.path.relpath(FIXTURE, ROOT)}: {len(cases)} cases, {os.path.getsize(FIXTURE):,} bytes")
        return

    cases = make_cases(20261126, args.cases)
    want = sklearn_answers(cases)
    got = sfnet_answers(cases, build=not args.no_build)
    bad = compare(cases, want, got)
    n_classes = sum(c["classes"] for c in cases)
    if bad:
        print(f"FAILED: {bad} mismatches over {len(cases)} cases ({n_classes} classes), scikit-learn {sklearn.__version__}")
        sys.exit(1)
    worst = max((abs(a - b) for g, w in zip(got, want) for a, b in zip(g["per_class"] + [g["map"]], w["per_class"] + [w["map"]])
                 if a is not None and b is not None), default=0.0)
    print(f"OK: sfnet mAP equals sklearn average_precision_score on {len(cases)} cases ({n_classes} classes, "
          f"ties and classes without positives included); max |diff| {worst:.3g}; scikit-learn {sklearn.__version__}")


if __name__ == "__main__":
    main()
