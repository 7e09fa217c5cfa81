// The pickle mutator: the stream up to its first STOP is parsed into opcodes (the opcode set of
// Formats/Pickle.swift, CPython's pickletools table), mutated as opcodes (insert / delete /
// replace / duplicate a run / swap / change an argument / change an opcode within its argument
// class / insert a snippet: a storage persistent id, a _rebuild_tensor_v2 call, a dict entry),
// and written back with valid argument encodings, STOP last, FRAME lengths recomputed and every
// memo GET pointing at a slot stored before it. Bytes after the first STOP are kept as they were.
#include "common.h"

#include <stdio.h>
#include <stdlib.h>

enum { A_BAD = 0, A_NONE, A_U8, A_U16, A_U32, A_F64, A_FRAME, A_LEN1, A_LEN4, A_LEN8, A_LINE, A_2LINES };

SFNET_NOCOV static int kind_of(uint8_t op) {
    switch (op) {
    case 0x28: case 0x2E: case 0x30: case 0x31: case 0x32: case 0x4E: case 0x88: case 0x89: case 0x29: case 0x74:
    case 0x85: case 0x86: case 0x87: case 0x5D: case 0x6C: case 0x7D: case 0x64: case 0x8F: case 0x91: case 0x61:
    case 0x65: case 0x90: case 0x73: case 0x75: case 0x94: case 0x93: case 0x6F: case 0x52: case 0x81: case 0x92:
    case 0x62: case 0x51: case 0x97: case 0x98:
        return A_NONE;
    case 0x80: case 0x4B: case 0x68: case 0x71: case 0x82: return A_U8;
    case 0x4D: case 0x83: return A_U16;
    case 0x4A: case 0x6A: case 0x72: case 0x84: return A_U32;
    case 0x47: return A_F64;
    case 0x95: return A_FRAME;
    case 0x55: case 0x8C: case 0x43: case 0x8A: return A_LEN1;
    case 0x54: case 0x58: case 0x42: case 0x8B: return A_LEN4;
    case 0x8D: case 0x8E: case 0x96: return A_LEN8;
    case 0x49: case 0x4C: case 0x46: case 0x53: case 0x56: case 0x67: case 0x70: case 0x50: return A_LINE;
    case 0x63: case 0x69: return A_2LINES;
    default: return A_BAD;
    }
}

/// One opcode: fixed-width arguments in v, the others (payload without its length prefix, text
/// without its newline; GLOBAL/INST as "module\nname") in p[0..<len].
typedef struct { uint8_t op, kind; uint64_t v; const uint8_t *p; size_t len; } pk_op;

typedef struct { pk_op *ops; size_t n, cap; sfnet_arena arena; } pk_stream;

SFNET_NOCOV static size_t width_of(int kind) {
    switch (kind) { case A_U8: case A_LEN1: return 1; case A_U16: return 2; case A_U32: case A_LEN4: return 4; default: return 8; }
}

/// Parses opcodes from in[0..<size] into s until STOP (included); returns the bytes consumed, or
/// the offset of the first opcode that could not be parsed (then *complete = 0).
SFNET_NOCOV static size_t pk_parse(pk_stream *s, const uint8_t *in, size_t size, int *complete) {
    size_t i = 0;
    *complete = 0;
    while (i < size && s->n < s->cap) {
        pk_op o = {in[i], (uint8_t)kind_of(in[i]), 0, NULL, 0};
        size_t j = i + 1, rest = size - j;
        switch (o.kind) {
        case A_BAD: return i;
        case A_NONE: break;
        case A_U8: case A_U16: case A_U32: case A_F64: case A_FRAME: {
            size_t w = width_of(o.kind);
            if (rest < w) return i;
            o.v = get_le(in + j, (int)w); j += w;
            if (o.kind == A_F64) { o.v = 0; for (int k = 0; k < 8; k++) o.v = o.v << 8 | in[j - 8 + k]; } // big-endian
            break;
        }
        case A_LEN1: case A_LEN4: case A_LEN8: {
            size_t w = width_of(o.kind);
            if (rest < w) return i;
            uint64_t n = get_le(in + j, (int)w);
            if (n > rest - w) return i;
            o.p = in + j + w; o.len = (size_t)n; j += w + (size_t)n;
            break;
        }
        case A_LINE: case A_2LINES: {
            int lines = o.kind == A_LINE ? 1 : 2;
            size_t k = j;
            while (k < size && lines) { if (in[k] == 0x0A) lines--; k++; }
            if (lines) return i;
            o.p = in + j; o.len = k - j - 1; j = k;
            break;
        }
        }
        s->ops[s->n++] = o;
        i = j;
        if (o.op == 0x2E) { *complete = 1; return i; }
    }
    return i;
}

SFNET_NOCOV static size_t enc_size(const pk_op *o) {
    switch (o->kind) {
    case A_NONE: return 1;
    case A_U8: case A_U16: case A_U32: case A_F64: case A_FRAME: return 1 + width_of(o->kind);
    case A_LEN1: case A_LEN4: case A_LEN8: return 1 + width_of(o->kind) + o->len;
    default: return 1 + o->len + 1;
    }
}

SFNET_NOCOV static void enc(sfnet_out *w, const pk_op *o) {
    out_u8(w, o->op);
    switch (o->kind) {
    case A_U8: case A_U16: case A_U32: case A_FRAME: out_le(w, o->v, (int)width_of(o->kind)); break;
    case A_F64: for (int k = 7; k >= 0; k--) out_u8(w, (uint8_t)(o->v >> (8 * k))); break;
    case A_LEN1: case A_LEN4: case A_LEN8: out_le(w, o->len, (int)width_of(o->kind)); out_bytes(w, o->p, o->len); break;
    case A_LINE: case A_2LINES: out_bytes(w, o->p, o->len); out_u8(w, 0x0A); break;
    default: break;
    }
}

// MARK: what gets inserted

static const char *const words[] = {
    "storage", "cpu", "cuda:0", "0", "1", "2", "weight", "bias", "state_dict", "model_state", "model", "module.weight",
    "_metadata", "version", "blobs", "FloatStorage", "torch", "collections", "OrderedDict", "torch._utils",
    "_rebuild_tensor_v2", "_rebuild_parameter", "numpy.core.multiarray", "_reconstruct", "ndarray", "dtype", "f4",
    "<f4", ">f8", "O8", "latin1", "_codecs", "encode", "s1.pathway0_stem.conv.weight", "conv1_w", "res_conv1_bn_s",
    "pred_b", "", "\xc3\xa9", "\xff",
};
static const char *const globals[] = {
    "torch._utils\n_rebuild_tensor_v2", "torch._utils\n_rebuild_tensor_v3", "torch._utils\n_rebuild_parameter",
    "torch._utils\n_rebuild_parameter_with_state", "torch._tensor\n_rebuild_from_type_v2", "collections\nOrderedDict",
    "torch\nFloatStorage", "torch\nHalfStorage", "torch\nLongStorage", "torch\nBFloat16Storage", "torch\nBoolStorage",
    "torch\nfloat32", "torch\nfloat16", "torch\nuint64", "torch\nTensor", "torch.nn.parameter\nParameter",
    "numpy.core.multiarray\n_reconstruct", "numpy._core.multiarray\nscalar", "numpy\nndarray", "numpy\ndtype",
    "_codecs\nencode", "os\nsystem", "builtins\neval",
};
// Opcodes by argument class, for "replace within the class".
static const uint8_t none_ops[] = {0x28, 0x30, 0x31, 0x32, 0x4E, 0x88, 0x89, 0x29, 0x74, 0x85, 0x86, 0x87, 0x5D, 0x6C,
    0x7D, 0x64, 0x8F, 0x91, 0x61, 0x65, 0x90, 0x73, 0x75, 0x94, 0x93, 0x6F, 0x52, 0x81, 0x92, 0x62, 0x51};
static const uint8_t int_ops[] = {0x4B, 0x4D, 0x4A, 0x8A};      // BININT1, BININT2, BININT, LONG1
static const uint8_t str_ops[] = {0x8C, 0x58, 0x8D, 0x55, 0x54, 0x43, 0x42, 0x8E, 0x96};
// Snippets: a storage persistent id, a whole _rebuild_tensor_v2 call, a dict entry, an OrderedDict.
#define PERSID "(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x04tQ"
static const struct { const char *b; size_t n; } snippets[] = {
    {PERSID, sizeof PERSID - 1},
    {"ctorch._utils\n_rebuild_tensor_v2\n(" PERSID "K\x00K\x02K\x02\x86K\x02K\x01\x86\x89" "ccollections\nOrderedDict\n)RtR",
     sizeof("ctorch._utils\n_rebuild_tensor_v2\n(" PERSID "K\x00K\x02K\x02\x86K\x02K\x01\x86\x89" "ccollections\nOrderedDict\n)RtR") - 1},
    {"}(X\x06\x00\x00\x00weightK\x01u", sizeof("}(X\x06\x00\x00\x00weightK\x01u") - 1},
    {"ccollections\nOrderedDict\n)R", sizeof("ccollections\nOrderedDict\n)R") - 1},
    {"(K\x01K\x02l", 5}, {"\x94h\x00", 3},
};

SFNET_NOCOV static const uint8_t *word(sfnet_rng *r, size_t *len) {
    const char *w = words[rng_below(r, sizeof words / sizeof words[0])];
    *len = strlen(w);
    return (const uint8_t *)w;
}

/// A decimal text argument (INT, LONG, GET, PUT) in the arena.
SFNET_NOCOV static void set_number_text(pk_stream *s, pk_op *o, long long v, int long_suffix) {
    char buf[32];
    int n = snprintf(buf, sizeof buf, long_suffix ? "%lldL" : "%lld", v);
    o->p = arena_dup(&s->arena, (const uint8_t *)buf, (size_t)n, 0); o->len = (size_t)n;
}

/// Keeps a text argument on its line(s): GLOBAL/INST exactly one inner newline, LINE none.
SFNET_NOCOV static void fix_lines(pk_op *o, uint8_t *p) {
    int seen = 0;
    for (size_t k = 0; k < o->len; k++) if (p[k] == 0x0A) { if (o->kind == A_2LINES && !seen) seen = 1; else p[k] = '.'; }
    if (o->kind == A_2LINES && !seen) { if (o->len == 0) { p[0] = 0x0A; o->len = 1; } else p[o->len / 2] = 0x0A; }
}

SFNET_NOCOV static void mutate_arg(sfnet_rng *r, pk_stream *s, pk_op *o) {
    switch (o->kind) {
    case A_U8: case A_U16: case A_U32: {
        uint64_t mask = o->kind == A_U8 ? 0xFF : o->kind == A_U16 ? 0xFFFF : 0xFFFFFFFF;
        o->v = (rng_chance(r, 4) ? rng_next(r) : sfnet_interesting(r, o->v)) & mask;
        break;
    }
    case A_F64: {
        static const uint64_t f[] = {0, 0x3FF0000000000000ull, 0xBFF0000000000000ull, 0x7FF8000000000000ull,
                                     0x7FF0000000000000ull, 0x7FEFFFFFFFFFFFFFull, 0x8000000000000000ull};
        o->v = rng_chance(r, 2) ? f[rng_below(r, 7)] : rng_next(r);
        break;
    }
    case A_LEN1: case A_LEN4: case A_LEN8: {
        if (o->op == 0x8A && rng_chance(r, 2)) { // LONG1: a little-endian two's complement integer
            uint64_t v = sfnet_interesting(r, o->len ? get_le(o->p, (int)(o->len < 8 ? o->len : 8)) : 0);
            size_t n = rng_below(r, 10);
            uint8_t *p = arena_alloc(&s->arena, 10);
            for (size_t k = 0; k < n; k++) p[k] = k < 8 ? (uint8_t)(v >> (8 * k)) : (uint8_t)((int64_t)v < 0 ? 0xFF : 0);
            o->p = p; o->len = n;
            break;
        }
        if (rng_chance(r, 3)) { o->p = word(r, &o->len); break; }
        size_t cap = o->kind == A_LEN1 ? 255 : o->len + 64;
        uint8_t *p = arena_dup(&s->arena, o->p, o->len, cap > o->len ? cap - o->len : 0);
        o->len = sfnet_bytes_mutate(r, p, o->len, cap); o->p = p;
        break;
    }
    case A_LINE: {
        if (o->op != 0x53 && o->op != 0x56 && o->op != 0x46 && o->op != 0x50) { // numbers: INT LONG GET PUT
            char num[24]; // the argument is not NUL-terminated: copy before strtoll
            size_t n = o->len < sizeof num - 1 ? o->len : sizeof num - 1;
            memcpy(num, o->p, n); num[n] = 0;
            long long v = (long long)sfnet_interesting(r, (uint64_t)strtoll(num, NULL, 10));
            set_number_text(s, o, v, o->op == 0x4C);
            break;
        }
        uint8_t *p = arena_dup(&s->arena, o->p, o->len, 64);
        o->len = sfnet_bytes_mutate(r, p, o->len, o->len + 64); o->p = p;
        fix_lines(o, p);
        break;
    }
    case A_2LINES: {
        if (rng_chance(r, 2)) { const char *g = globals[rng_below(r, sizeof globals / sizeof globals[0])]; o->p = (const uint8_t *)g; o->len = strlen(g); break; }
        uint8_t *p = arena_dup(&s->arena, o->p, o->len, 64);
        o->len = sfnet_bytes_mutate(r, p, o->len, o->len + 64); o->p = p;
        fix_lines(o, p);
        break;
    }
    default: break;
    }
}

/// A fresh opcode with a valid argument.
SFNET_NOCOV static pk_op gen_op(sfnet_rng *r, pk_stream *s) {
    pk_op o = {0x4E, A_NONE, 0, NULL, 0};
    switch (rng_below(r, 6)) {
    case 0: case 1: o.op = none_ops[rng_below(r, sizeof none_ops)]; break;
    case 2: o.op = int_ops[rng_below(r, 3)]; o.kind = (uint8_t)kind_of(o.op); mutate_arg(r, s, &o); break;
    case 3: o.op = str_ops[rng_below(r, sizeof str_ops)]; o.kind = (uint8_t)kind_of(o.op); o.p = word(r, &o.len); break;
    case 4: o.op = 0x63; o.kind = A_2LINES; mutate_arg(r, s, &o); break;
    default: o.op = rng_chance(r, 2) ? 0x71 : 0x68; o.kind = A_U8; o.v = rng_below(r, 8); break; // BINPUT/BINGET (fixed up)
    }
    return o;
}

SFNET_NOCOV static void insert_at(pk_stream *s, size_t at, const pk_op *o, size_t n) {
    if (n > s->cap - s->n) n = s->cap - s->n;
    memmove(s->ops + at + n, s->ops + at, (s->n - at) * sizeof *o);
    memcpy(s->ops + at, o, n * sizeof *o);
    s->n += n;
}

/// One mutation of the opcodes before the final STOP (s->ops[s->n - 1]).
SFNET_NOCOV static void mutate_once(sfnet_rng *r, pk_stream *s) {
    size_t body = s->n - 1; // opcodes before STOP
    size_t at = rng_below(r, body + 1);
    switch (rng_below(r, 9)) {
    case 0: case 1: { pk_op o = gen_op(r, s); insert_at(s, at, &o, 1); break; }
    case 2: if (body) { at = rng_below(r, body); memmove(s->ops + at, s->ops + at + 1, (s->n - at - 1) * sizeof *s->ops); s->n--; } break;
    case 3: if (body) s->ops[rng_below(r, body)] = gen_op(r, s); break;
    case 4: if (body) { // duplicate a run of up to 8 opcodes somewhere
        size_t from = rng_below(r, body), len = 1 + rng_below(r, body - from < 8 ? body - from : 8);
        pk_op run[8];
        memcpy(run, s->ops + from, len * sizeof *run);
        insert_at(s, rng_below(r, body + 1), run, len);
        break;
    }
    case 5: if (body >= 2) { size_t a = rng_below(r, body), b = rng_below(r, body); pk_op t = s->ops[a]; s->ops[a] = s->ops[b]; s->ops[b] = t; } break;
    case 6: case 7: if (body) { // an argument, or the opcode within its class
        pk_op *o = &s->ops[rng_below(r, body)];
        if (o->kind == A_NONE || rng_chance(r, 4)) {
            if (o->kind == A_NONE) o->op = none_ops[rng_below(r, sizeof none_ops)];
            else if (o->kind >= A_LEN1 && o->kind <= A_LEN8 && o->op != 0x8A) {
                o->op = str_ops[rng_below(r, sizeof str_ops)]; o->kind = (uint8_t)kind_of(o->op);
                if (o->kind == A_LEN1 && o->len > 255) o->len = 255;
            } else mutate_arg(r, s, o);
        } else mutate_arg(r, s, o);
        break;
    }
    default: { // a snippet
        size_t k = rng_below(r, sizeof snippets / sizeof snippets[0]);
        pk_stream t = {arena_alloc(&s->arena, 64 * sizeof(pk_op)), 0, 64, {0}};
        int complete;
        pk_parse(&t, (const uint8_t *)snippets[k].b, snippets[k].n, &complete);
        if (t.n && rng_chance(r, 2)) mutate_arg(r, s, &t.ops[rng_below(r, t.n)]);
        insert_at(s, at, t.ops, t.n);
        break;
    }
    }
}

// MARK: memo fix-up: a small open-addressing set of stored slot indices.
typedef struct { uint64_t *k; size_t cap, n; } pk_set;
SFNET_NOCOV static int set_has(const pk_set *m, uint64_t v) {
    for (size_t h = (size_t)(v * 0x9E3779B97F4A7C15ull) & (m->cap - 1);; h = (h + 1) & (m->cap - 1)) {
        if (m->k[h] == UINT64_MAX) return 0;
        if (m->k[h] == v) return 1;
    }
}
SFNET_NOCOV static void set_add(pk_set *m, uint64_t v) {
    if (v == UINT64_MAX || set_has(m, v)) return;
    size_t h = (size_t)(v * 0x9E3779B97F4A7C15ull) & (m->cap - 1);
    while (m->k[h] != UINT64_MAX) h = (h + 1) & (m->cap - 1);
    m->k[h] = v; m->n++;
}

/// The slot of a text PUT / GET: 1-18 decimal digits, else none (UINT64_MAX).
SFNET_NOCOV static uint64_t parse_dec(const pk_op *o) {
    if (o->len == 0 || o->len > 18) return UINT64_MAX;
    uint64_t v = 0;
    for (size_t k = 0; k < o->len; k++) { if (o->p[k] < '0' || o->p[k] > '9') return UINT64_MAX; v = v * 10 + (o->p[k] - '0'); }
    return v;
}

/// GETs of slots never stored point at a stored one (or become NONE when none is); FRAME lengths exact.
SFNET_NOCOV static void fix_up(sfnet_rng *r, pk_stream *s) {
    size_t cap = 16;
    while (cap < 2 * s->n + 2) cap <<= 1;
    pk_set m = {arena_alloc(&s->arena, cap * sizeof(uint64_t)), cap, 0};
    memset(m.k, 0xFF, cap * sizeof(uint64_t));
    uint64_t *stored = arena_alloc(&s->arena, (s->n + 1) * sizeof(uint64_t));
    size_t nstored = 0;
    for (size_t i = 0; i < s->n; i++) {
        pk_op *o = &s->ops[i];
        uint64_t slot = UINT64_MAX;
        int is_get = 0;
        switch (o->op) {
        case 0x71: case 0x72: slot = o->v; break;                                    // BINPUT, LONG_BINPUT
        case 0x94: slot = m.n; break;                                               // MEMOIZE: the next index
        case 0x70: slot = parse_dec(o); break;                                      // PUT
        case 0x68: case 0x6A: case 0x67: is_get = 1; break;
        }
        if (slot != UINT64_MAX && !set_has(&m, slot)) { set_add(&m, slot); stored[nstored++] = slot; }
        if (!is_get) continue;
        uint64_t want = UINT64_MAX;
        want = o->op == 0x67 ? parse_dec(o) : o->v;
        if (want != UINT64_MAX && set_has(&m, want)) continue;
        if (!nstored) { *o = (pk_op){0x4E, A_NONE, 0, NULL, 0}; continue; }
        uint64_t v = stored[rng_below(r, nstored)];
        if (o->op == 0x67) set_number_text(s, o, (long long)v, 0);
        else if (v <= 0xFF && o->op == 0x68) o->v = v;
        else { o->op = 0x6A; o->kind = A_U32; o->v = v; }
    }
    // FRAME n covers the opcodes up to the next FRAME, or through STOP.
    size_t covered = 0;
    for (size_t i = s->n; i-- > 0;) {
        if (s->ops[i].op == 0x95) { s->ops[i].v = covered; covered = 0; }
        else covered += enc_size(&s->ops[i]);
    }
}

SFNET_NOCOV size_t sfnet_pickle_structured(sfnet_rng *r, const uint8_t *in, size_t size, uint8_t *out, size_t max_size) {
    pk_stream s = {0};
    s.cap = size + 80;
    s.ops = arena_alloc(&s.arena, s.cap * sizeof(pk_op));
    int complete;
    size_t used = pk_parse(&s, in, size, &complete);
    size_t result = 0;
    if (s.n == 0 && size > 0) goto done; // not a pickle at all
    if (!complete) used = size;              // repaired: what parsed, then STOP (the rest dropped)
    if (!complete || s.n == 0) s.ops[s.n++] = (pk_op){0x2E, A_NONE, 0, NULL, 0};
    for (size_t k = 1 + rng_below(r, 3); k > 0 && s.n + 16 < s.cap; k--) mutate_once(r, &s);
    fix_up(r, &s);
    sfnet_out w = {out, 0, max_size, 1};
    for (size_t i = 0; i < s.n; i++) enc(&w, &s.ops[i]);
    out_bytes(&w, in + used, size - used);
    if (w.ok) result = w.n;
done:
    arena_free(&s.arena);
    return result;
}
