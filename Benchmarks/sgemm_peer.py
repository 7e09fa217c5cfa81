"""torch.mm throughput on the shapes of Benchmarks/sgemm_bench.c (2 threads, best of 6 after a warm-up).
Run: .venv/bin/python Benchmarks/sgemm_peer.py"""
import torch,time
torch.set_num_threads(2)
for M,N,K in [(1568,1152,384),(1568,384,384),(1568,1536,384),(1568,384,1536),(3136,2304,768),(3136,3072,768),(3136,768,3072),(4096,4096,4096)]:
    a=torch.randn(M,K);b=torch.randn(K,N);best=1e9
    for r in range(7):
        t=time.perf_counter();c=a@b;t=time.perf_counter()-t
        if r: best=min(best,t)
    print(f"torch {M}x{N}x{K} {2*M*N*K/best/1e9:.1f} GFLOP/s")
print(torch.__config__.show().split("\n")[:8])
