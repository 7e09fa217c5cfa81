/* sgemm throughput on the linear-layer shapes of VideoMAE-S/B (issue 16), row-major cblas_sgemm, best of 6
   after a warm-up. Build and run: gcc -O2 Benchmarks/sgemm_bench.c -o /tmp/sgemm -lopenblas &&
   OPENBLAS_NUM_THREADS=2 OPENBLAS_CORETYPE=Cooperlake /tmp/sgemm   (the peer: Benchmarks/sgemm_peer.py) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){int shapes[][3]={{1568,1152,384},{1568,384,384},{1568,1536,384},{1568,384,1536},{3136,2304,768},{3136,3072,768},{3136,768,3072},{4096,4096,4096}};
for(int s=0;s<8;s++){int M=shapes[s][0],N=shapes[s][1],K=shapes[s][2];float*A=malloc(4L*M*K),*B=malloc(4L*K*N),*C=malloc(4L*M*N);
for(long i=0;i<(long)M*K;i++)A[i]=(i%7)*0.1f;for(long i=0;i<(long)K*N;i++)B[i]=(i%5)*0.1f;
double best=1e9;for(int r=0;r<7;r++){double t=now();cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,M,N,K,1,A,K,B,N,0,C,N);t=now()-t;if(r&&t<best)best=t;}
printf("openblas %dx%dx%d %.1f GFLOP/s\n",M,N,K,2.0*M*N*K/best/1e9);free(A);free(B);free(C);}}
