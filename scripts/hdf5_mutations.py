#!/usr/bin/env python3
"""Malformed-HDF5 sweep through the CLI (SECURITY.md 26): truncated, bit-flipped and
byte-smashed copies of the Keras fixtures, each run through `sfnet convert --from keras`.

    python3 scripts/hdf5_mutations.py --sfnet .build/release/sfnet [--count 300] [--seed 1]

Every case must end in either
- exit 0: a converted file, which `sfnet verify` then evaluates against the fixture's Keras
  reference (passes when the mutation missed the weights; a flipped weight is reported as a
  failed verification, exit 1 — both are fine, a crash is not), or
- exit 1 with one clear line: "malformed HDF5 file: PATH (reason)" (or a strict-conversion
  error when the file parsed but no longer describes a ResNet), and no output file;
within the time bound. Anything else (a signal, another exit status, a hang, an output
left behind, a Python-style traceback) is a failure. Standard library only.
"""
import argparse
import collections
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = [
    ("fixtures/keras/tiny_resnet50_keras3.weights.h5", "fixtures/keras/tiny_resnet50_keras3_ref.safetensors"),
    ("fixtures/keras/tiny_resnet50_keras2.h5", "fixtures/keras/tiny_resnet50_keras2_ref.safetensors"),
]


def mutations(data, count, rng):
    n = len(data)
    for i in range(count):
        kind = i % 4
        b = bytearray(data)
        if kind == 0:
            cut = rng.randrange(0, n)
            yield "truncate@%d" % cut, bytes(b[:cut])
        elif kind == 1:
            at = rng.randrange(0, min(n, 4096))  # superblock, root group, first B-trees and heaps
            b[at] ^= 1 << rng.randrange(8)
            yield "flip-head@%d" % at, bytes(b)
        elif kind == 2:
            at = rng.randrange(0, n)
            b[at] ^= 1 << rng.randrange(8)
            yield "flip@%d" % at, bytes(b)
        else:
            at = rng.randrange(0, n - 8)
            b[at:at + 8] = rng.choice([b"\xff" * 8, b"\x00" * 8, bytes(rng.randrange(256) for _ in range(8))])
            yield "smash8@%d" % at, bytes(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sfnet", default=os.path.join(ROOT, ".build/release/sfnet"))
    ap.add_argument("--count", type=int, default=300, help="mutations per fixture")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=90, help="seconds per case before it counts as a hang")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tmp = tempfile.mkdtemp(prefix="sfnet-hdf5-mut-")
    outcomes = collections.Counter()
    reasons = collections.Counter()
    failures = []
    slowest = (0.0, "")
    try:
        for rel, ref in FIXTURES:
            data = open(os.path.join(ROOT, rel), "rb").read()
            for label, blob in mutations(data, args.count, rng):
                case = "%s %s" % (os.path.basename(rel), label)
                src = os.path.join(tmp, "m.h5")
                out = os.path.join(tmp, "m.safetensors")
                for p in (src, out, out + ".verified.json"):
                    if os.path.exists(p):
                        os.remove(p)
                with open(src, "wb") as f:
                    f.write(blob)
                t0 = time.monotonic()
                try:
                    r = subprocess.run([args.sfnet, "convert", "--from", "keras", src, "-o", out],
                                       capture_output=True, text=True, timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    failures.append((case, "no answer within %.0f s" % args.timeout))
                    continue
                dt = time.monotonic() - t0
                if dt > slowest[0]:
                    slowest = (dt, case)
                err = r.stderr.strip()
                if r.returncode == 0:
                    v = subprocess.run([args.sfnet, "verify", out, "--reference", os.path.join(ROOT, ref)],
                                       capture_output=True, text=True, timeout=args.timeout)
                    if v.returncode not in (0, 1) or "Traceback" in v.stderr:
                        failures.append((case, "verify exited %d: %s" % (v.returncode, v.stderr[-300:])))
                    outcomes["converted, verify passed" if v.returncode == 0 else "converted, verify reported a mismatch"] += 1
                elif r.returncode == 1 and err.startswith("error:"):
                    if os.path.exists(out):
                        failures.append((case, "output left behind after: " + err))
                    if "malformed HDF5 file:" in err:
                        outcomes["malformed HDF5 file"] += 1
                        m = re.search(r"\((.*)\)\s*$", err)
                        reason = m.group(1) if m else err
                        reason = re.sub(r"\d+", "N", reason)
                        reasons[reason[:90]] += 1
                    else:
                        outcomes["refused by the strict conversion"] += 1
                        reasons[re.sub(r"\d+", "N", err.splitlines()[0])[:90]] += 1
                else:
                    failures.append((case, "exit %d: %s" % (r.returncode, err[-300:])))
        total = sum(outcomes.values()) + len(failures)
        print("hdf5 mutation sweep: %d cases (%d per fixture, seed %d), slowest %.2f s (%s)" % (
            total, args.count, args.seed, slowest[0], slowest[1]))
        for k, v in outcomes.most_common():
            print("  %5d  %s" % (v, k))
        print("  most common reasons:")
        for k, v in reasons.most_common(12):
            print("  %5d  %s" % (v, k))
        if failures:
            print("FAILURES: %d" % len(failures))
            for case, why in failures[:20]:
                print("  %s: %s" % (case, why))
            sys.exit(1)
        print("OK: every case converted or ended in the clear error")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
