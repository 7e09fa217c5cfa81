"""torch.mm throughput on the shapes of Benchmarks/sgemm_bench.c: 2 threads, best of 6 timed runs after one warm-up.
Run: .venv/bin/python Benchmarks/sgemm_peer.py"""
import time

import torch

SHAPES = [(1568, 1152, 384), (1568, 384, 384), (1568, 1536, 384), (1568, 384, 1536),
          (3136, 2304, 768), (3136, 3072, 768), (3136, 768, 3072), (4096, 4096, 4096)]

torch.set_num_threads(2)
for m, n, k in SHAPES:
    a, b = torch.randn(m, k), torch.randn(k, n)
    best = float("inf")
    for r in range(7):  # run 0 warms up
        t = time.perf_counter()
        a @ b
        t = time.perf_counter() - t
        if r > 0:
            best = min(best, t)
    print(f"torch {m}x{n}x{k} {2 * m * n * k / best / 1e9:.1f} GFLOP/s")
print("\n".join(torch.__config__.show().split("\n")[:6]))
