// Entry points of the structure-aware mutators: the mix of structure and bytes, the A/B switch
// (SFNET_FUZZ_MUTATOR=bytes), the byte-level fallback and the shared helpers.
#include "sfnet_mutators.h"
#include "common.h"

#include <stdlib.h>

// Defined by libFuzzer in the fuzz executables; weak so that the ordinary build links without it.
extern size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size) __attribute__((weak));

SFNET_NOCOV int sfnet_have_libfuzzer(void) { return LLVMFuzzerMutate != NULL; }

SFNET_NOCOV uint64_t sfnet_interesting(sfnet_rng *r, uint64_t near) {
    static const uint64_t table[] = {
        0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 1023, 1024, 4095, 4096, 65535, 65536,
        0x7FFFFFFFull, 0x80000000ull, 0xFFFFFFFFull, 0x100000000ull, 0x100000001ull, 1ull << 40, (1ull << 40) + 1,
        0x7FFFFFFFFFFFFFFFull, 0x8000000000000000ull, 0xFFFFFFFFFFFFFFFFull, 0xFFFFFFFFFFFFFFFEull,
    };
    switch (rng_below(r, 4)) {
    case 0: return near + 1;
    case 1: return near - 1;
    case 2: return near * 2 + rng_below(r, 2);
    default: return table[rng_below(r, sizeof table / sizeof table[0])];
    }
}

// A small deterministic byte mutator for builds without libFuzzer (the tests).
SFNET_NOCOV static size_t internal_bytes_mutate(sfnet_rng *r, uint8_t *b, size_t size, size_t max_size) {
    static const uint8_t special[] = {0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0A, 0x2E, 0x28};
    switch (rng_below(r, 6)) {
    case 0: // flip a bit
        if (size) b[rng_below(r, size)] ^= (uint8_t)(1u << rng_below(r, 8));
        return size;
    case 1: // an interesting byte
        if (size) b[rng_below(r, size)] = special[rng_below(r, sizeof special)];
        return size;
    case 2: { // insert 1-4 random bytes
        size_t n = 1 + rng_below(r, 4);
        if (size + n > max_size) return size;
        size_t at = rng_below(r, size + 1);
        memmove(b + at + n, b + at, size - at);
        for (size_t i = 0; i < n; i++) b[at + i] = (uint8_t)rng_next(r);
        return size + n;
    }
    case 3: { // erase a run
        if (size < 2) return size;
        size_t at = rng_below(r, size), n = 1 + rng_below(r, size - at < 8 ? size - at : 8);
        memmove(b + at, b + at + n, size - at - n);
        return size - n;
    }
    case 4: { // duplicate a run
        if (!size) return size;
        size_t at = rng_below(r, size), n = 1 + rng_below(r, size - at < 16 ? size - at : 16);
        if (size + n > max_size) return size;
        memmove(b + at + n, b + at, size - at);
        return size + n;
    }
    default: { // a 32-bit interesting value, little-endian
        if (size < 4) return size;
        uint64_t v = sfnet_interesting(r, get_le(b + rng_below(r, size - 3), 4));
        size_t at = rng_below(r, size - 3);
        for (int i = 0; i < 4; i++) b[at + i] = (uint8_t)(v >> (8 * i));
        return size;
    }
    }
}

SFNET_NOCOV size_t sfnet_bytes_mutate(sfnet_rng *r, uint8_t *buf, size_t size, size_t max_size) {
    if (max_size == 0) return 0;
    if (size > max_size) size = max_size;
    if (LLVMFuzzerMutate) return LLVMFuzzerMutate(buf, size, max_size);
    return internal_bytes_mutate(r, buf, size, max_size);
}

SFNET_NOCOV void *arena_alloc(sfnet_arena *a, size_t n) {
    sfnet_arena_block *b = malloc(sizeof *b + n + 16);
    if (!b) abort(); // out of memory in the mutator: nothing sensible to fuzz with
    b->next = a->head; b->size = n;
    a->head = b; a->total += n;
    return (uint8_t *)(b + 1);
}
SFNET_NOCOV void arena_free(sfnet_arena *a) {
    while (a->head) { sfnet_arena_block *n = a->head->next; free(a->head); a->head = n; }
    a->total = 0;
}
SFNET_NOCOV uint8_t *arena_dup(sfnet_arena *a, const uint8_t *b, size_t n, size_t room) {
    uint8_t *p = arena_alloc(a, n + room);
    if (n) memcpy(p, b, n);
    return p;
}

SFNET_NOCOV size_t sfnet_mutate_structured(sfnet_format format, uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    sfnet_rng r = {(uint64_t)seed * 0x2545F4914F6CDD1Dull + (uint64_t)format};
    uint8_t *in = malloc(size ? size : 1);
    if (!in) return 0;
    if (size) memcpy(in, data, size);
    size_t n = 0;
    switch (format) {
    case SFNET_FORMAT_PICKLE: n = sfnet_pickle_structured(&r, in, size, data, max_size); break;
    case SFNET_FORMAT_PROTOBUF: n = sfnet_protobuf_structured(&r, in, size, data, max_size); break;
    case SFNET_FORMAT_ZIP: n = sfnet_zip_structured(&r, in, size, data, max_size); break;
    }
    if (n == 0 && size) memcpy(data, in, size); // unparsable or too big: leave the input as it was
    free(in);
    return n;
}

SFNET_NOCOV size_t sfnet_mutate(sfnet_format format, uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    sfnet_rng r = {(uint64_t)seed ^ 0xA0761D6478BD642Full};
    // One call in four is plain bytes: the checks against malformed structure need malformed inputs.
    if (!rng_chance(&r, 4)) {
        size_t n = sfnet_mutate_structured(format, data, size, max_size, (unsigned int)rng_next(&r));
        if (n) return n;
    }
    return sfnet_bytes_mutate(&r, data, size, max_size);
}

SFNET_NOCOV size_t sfnet_custom_mutator(sfnet_format format, uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    static int mode = -1; // 0: structure + bytes, 1: bytes only
    if (mode < 0) {
        const char *e = getenv("SFNET_FUZZ_MUTATOR");
        mode = (e && strcmp(e, "bytes") == 0) ? 1 : 0;
    }
    if (mode == 1) {
        sfnet_rng r = {seed};
        return sfnet_bytes_mutate(&r, data, size, max_size);
    }
    return sfnet_mutate(format, data, size, max_size, seed);
}
