// A small pool of worker threads for the network's parallel loops, in place of Dispatch's
// concurrentPerform on the hot path. A training step at 64x64 pixels opens ~1,540 parallel loops,
// most of them a millisecond or shorter; concurrentPerform wakes its workers through a futex each
// time, and on a 2-core VM those wake-ups (and the caller's sleeps when it finishes first) cost a
// quarter to a third of the step (BENCHMARKS.md, "A spinning thread pool"). Here the workers spin on an atomic
// word for a short while after each loop, so the next one starts without a system call, and sleep
// on a condition variable when no loop comes.
//
// One loop runs at a time: sfk_pool_run returns 0 without running anything when the pool is busy
// (another thread's loop, or a loop opened inside a part), and the caller runs that loop some other
// way. Parts are claimed from a shared counter by the caller and the workers alike, so the caller
// alone finishes a loop whose workers never woke; which thread runs a part never changes what the
// part computes.

#include "ckernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

enum { MAX_WORKERS = 255 };

/// How long an idle worker spins before it sleeps (SFNET_POOL_SPIN_US overrides it), and how long the
/// caller spins on unfinished parts before it yields its core between checks. Measured on the 64²
/// train step (2-core VM, BENCHMARKS.md): no spin 0.39-0.40 s a step; 0.2 ms 0.27-0.29 s (0.71-0.83x
/// PyTorch's in four paired runs); 1 ms halved the futex calls (1,331 against 3,192 in a 10-step
/// bench) but read 0.89x and 1.03x in two paired runs, so 0.2 ms stays. With more threads than online
/// cores nobody spins: a spinning thread would hold a core that a working one needs.
static const int64_t WORKER_SPIN_NS = 200 * 1000;
static const int64_t CALLER_SPIN_NS = 50 * 1000;
static _Atomic int64_t worker_spin_ns = WORKER_SPIN_NS;

/// The loop in flight: its sequence number in the high 32 bits of `claims`, the next unclaimed part
/// in the low 32. A worker claims a part with a compare-and-swap that names the sequence, so a worker
/// that saw an older loop can never take a part of a newer one.
static _Atomic uint64_t claims;
static _Atomic long finished;
static sfk_pool_task job_task;
static void *job_context;
static _Atomic long job_parts;
static _Atomic long job_workers;

static atomic_flag busy = ATOMIC_FLAG_INIT;
static _Atomic int started;
static _Atomic int sleepers;
static _Atomic int parked;
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint32_t sequence_of(uint64_t word) { return (uint32_t)(word >> 32); }

/// Claims and runs parts of loop `sequence` until none is left; returns how many this thread ran.
static long run_parts(uint32_t sequence) {
    long ran = 0;
    for (;;) {
        uint64_t word = atomic_load_explicit(&claims, memory_order_acquire);
        // job_parts is read only once the claim names this loop: a stale value can only make a
        // thread stop early, never run a part that does not exist (the caller checks the word).
        if (sequence_of(word) != sequence) return ran;
        long part = (long)(uint32_t)word;
        if (part >= atomic_load_explicit(&job_parts, memory_order_relaxed)) return ran;
        if (!atomic_compare_exchange_weak_explicit(&claims, &word, word + 1,
                                                   memory_order_acq_rel, memory_order_acquire)) {
            continue;
        }
        job_task(job_context, part);
        ran += 1;
        atomic_fetch_add_explicit(&finished, 1, memory_order_release);
    }
}

static void *worker_main(void *arg) {
    long index = (long)(intptr_t)arg;
    uint32_t seen = sequence_of(atomic_load(&claims));
    for (;;) {
        if (index >= atomic_load(&job_workers)) {
            // Not wanted by the loops (the thread count was lowered, or no loop ran yet): parked until a
            // loop asks for more workers, neither spinning nor woken by every loop.
            pthread_mutex_lock(&sleep_lock);
            atomic_fetch_add(&parked, 1);
            while (index >= atomic_load(&job_workers)) pthread_cond_wait(&wake, &sleep_lock);
            atomic_fetch_sub(&parked, 1);
            pthread_mutex_unlock(&sleep_lock);
            // Joins the loop in flight, if any (a finished one has no part left to claim).
            seen = sequence_of(atomic_load(&claims));
            run_parts(seen);
            continue;
        }
        // Spin for the next loop, then sleep until one comes.
        int64_t deadline = now_ns() + atomic_load_explicit(&worker_spin_ns, memory_order_relaxed);
        uint32_t sequence;
        for (int i = 0;; i++) {
            sequence = sequence_of(atomic_load_explicit(&claims, memory_order_acquire));
            if (sequence != seen) break;
            CPU_RELAX();
            if ((i & 63) == 63 && now_ns() > deadline) {
                pthread_mutex_lock(&sleep_lock);
                atomic_fetch_add(&sleepers, 1);
                while ((sequence = sequence_of(atomic_load(&claims))) == seen) {
                    pthread_cond_wait(&wake, &sleep_lock);
                }
                atomic_fetch_sub(&sleepers, 1);
                pthread_mutex_unlock(&sleep_lock);
                break;
            }
        }
        seen = sequence;
        // A loop that asks for fewer workers leaves this one to park at the top.
        if (index < atomic_load(&job_workers)) run_parts(sequence);
    }
    return NULL;
}

/// Starts workers until `count` exist; returns how many exist.
static int ensure_workers(int count) {
    if (count > MAX_WORKERS) count = MAX_WORKERS;
    int have = atomic_load_explicit(&started, memory_order_acquire);
    if (have >= count) return have;
    pthread_mutex_lock(&start_lock);
    have = atomic_load(&started);
    while (have < count) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attr, worker_main, (void *)(intptr_t)have);
        pthread_attr_destroy(&attr);
        if (failed) break;
        have += 1;
        atomic_store_explicit(&started, have, memory_order_release);
    }
    pthread_mutex_unlock(&start_lock);
    return have;
}

int sfk_pool_run(long parts, long threads, sfk_pool_task task, void *context) {
    if (parts <= 0) return 1;
    if (threads < 2 || parts < 2 || parts > 0x7fffffffL) return 0;
    if (atomic_flag_test_and_set_explicit(&busy, memory_order_acquire)) return 0;
    int workers = ensure_workers((int)(threads - 1));
    if (workers == 0) {
        atomic_flag_clear_explicit(&busy, memory_order_release);
        return 0;
    }
    static long cores;
    static int64_t spin_ns = -1;
    if (cores == 0) cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (spin_ns < 0) {
        // SFNET_POOL_SPIN_US overrides the workers' spin (microseconds, 0 ... 100000; 0: sleep at once).
        const char *text = getenv("SFNET_POOL_SPIN_US");
        char *end = NULL;
        long us = text ? strtol(text, &end, 10) : -1;
        spin_ns = (text && end != text && *end == 0 && us >= 0 && us <= 100000) ? (int64_t)us * 1000 : WORKER_SPIN_NS;
    }
    int oversubscribed = cores > 0 && threads > cores;
    atomic_store_explicit(&worker_spin_ns, oversubscribed ? 0 : spin_ns, memory_order_relaxed);
    job_task = task;
    job_context = context;
    atomic_store_explicit(&job_parts, parts, memory_order_relaxed);
    atomic_store_explicit(&finished, 0, memory_order_relaxed);
    long wanted = threads - 1, before = atomic_load(&job_workers);
    atomic_store(&job_workers, wanted);
    uint32_t sequence = sequence_of(atomic_load(&claims)) + 1;
    // Publishes the loop (sequentially consistent, paired with the sleepers' and the parked workers'
    // counts below: either a worker about to sleep sees the new sequence (or, parked, the larger
    // job_workers), or this thread sees it counted and wakes it).
    atomic_store(&claims, (uint64_t)sequence << 32);
    if (atomic_load(&sleepers) > 0 || (wanted > before && atomic_load(&parked) > 0)) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&sleep_lock);
    }
    run_parts(sequence);
    int64_t deadline = now_ns() + (oversubscribed ? 0 : CALLER_SPIN_NS);
    for (int i = 0; atomic_load_explicit(&finished, memory_order_acquire) < parts; i++) {
        CPU_RELAX();
        if ((i & 63) == 63 && now_ns() > deadline) sched_yield();
    }
    atomic_flag_clear_explicit(&busy, memory_order_release);
    return 1;
}
