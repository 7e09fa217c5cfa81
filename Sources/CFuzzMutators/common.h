// Shared pieces of the mutators: a seeded RNG, byte-level mutation (libFuzzer's when linked),
// a bounded output writer and an arena for mutated payloads. Internal to CFuzzMutators.
#ifndef SFNET_MUTATORS_COMMON_H
#define SFNET_MUTATORS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

// The mutators run between executions; libFuzzer resets coverage before each one, but keep them
// out of the coverage maps (and trace-cmp tables) anyway: their branches are not the parsers'.
#if defined(__clang__)
#define SFNET_NOCOV __attribute__((no_sanitize("coverage")))
#else
#define SFNET_NOCOV
#endif

typedef struct { uint64_t s; } sfnet_rng;

SFNET_NOCOV static inline uint64_t rng_next(sfnet_rng *r) {
    // splitmix64: deterministic from the seed, good enough to pick mutations.
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/// Uniform in 0..<n (0 when n == 0).
SFNET_NOCOV static inline size_t rng_below(sfnet_rng *r, size_t n) { return n ? (size_t)(rng_next(r) % n) : 0; }
SFNET_NOCOV static inline int rng_chance(sfnet_rng *r, unsigned one_in) { return rng_below(r, one_in) == 0; }

/// Byte-level mutation of buf[0..<size] within max_size: LLVMFuzzerMutate when libFuzzer is linked,
/// else a small deterministic one (flip, set interesting byte, insert, erase, duplicate a run).
size_t sfnet_bytes_mutate(sfnet_rng *r, uint8_t *buf, size_t size, size_t max_size);

/// An interesting integer: boundaries around the sizes readers check, or near `near`.
uint64_t sfnet_interesting(sfnet_rng *r, uint64_t near);

/// Output bounded by cap; `ok` turns 0 on the first write that would not fit.
typedef struct { uint8_t *p; size_t n, cap; int ok; } sfnet_out;
SFNET_NOCOV static inline void out_bytes(sfnet_out *o, const void *b, size_t n) {
    if (!o->ok || n > o->cap - o->n) { o->ok = 0; return; }
    if (n) memcpy(o->p + o->n, b, n);
    o->n += n;
}
SFNET_NOCOV static inline void out_u8(sfnet_out *o, uint8_t v) { out_bytes(o, &v, 1); }
SFNET_NOCOV static inline void out_le(sfnet_out *o, uint64_t v, int width) {
    uint8_t b[8];
    for (int i = 0; i < width; i++) b[i] = (uint8_t)(v >> (8 * i));
    out_bytes(o, b, (size_t)width);
}
SFNET_NOCOV static inline uint64_t get_le(const uint8_t *p, int width) {
    uint64_t v = 0;
    for (int i = 0; i < width; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/// Owned allocations freed together (mutated payloads, node tables).
typedef struct sfnet_arena_block { struct sfnet_arena_block *next; size_t size; } sfnet_arena_block;
typedef struct { sfnet_arena_block *head; size_t total; } sfnet_arena;
void *arena_alloc(sfnet_arena *a, size_t n);
void arena_free(sfnet_arena *a);
/// A copy of b[0..<n] with room for `room` more bytes (for byte mutation in place).
uint8_t *arena_dup(sfnet_arena *a, const uint8_t *b, size_t n, size_t room);

// The formats (pickle.c, protobuf.c, zip.c). Each returns 0 when it cannot parse its input or
// the output would not fit; `out` may alias nothing in `in`.
size_t sfnet_pickle_structured(sfnet_rng *r, const uint8_t *in, size_t size, uint8_t *out, size_t max_size);
size_t sfnet_protobuf_structured(sfnet_rng *r, const uint8_t *in, size_t size, uint8_t *out, size_t max_size);
size_t sfnet_zip_structured(sfnet_rng *r, const uint8_t *in, size_t size, uint8_t *out, size_t max_size);

#endif
