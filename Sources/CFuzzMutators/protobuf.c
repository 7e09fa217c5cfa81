// The protobuf mutator (ONNX ModelProto, schema-free): the wire format is parsed into a tree of
// fields (a length-delimited field whose payload parses completely as fields is a submessage),
// one to three fields are mutated (value, bytes, packed varint element, dictionary string, field
// number), dropped, duplicated, swapped, spliced from elsewhere in the tree or added, and the
// tree is written back with every length prefix recomputed (varints canonical).
#include "common.h"

#define PB_MAX_DEPTH 16

typedef struct {
    uint32_t field; uint8_t wire, is_msg;
    uint64_t v;               // varint / fixed32 / fixed64 value
    const uint8_t *p; size_t len; // a leaf's length-delimited payload
    int32_t sub, next;        // first child (submessages), next sibling; -1 = none
    size_t enc;               // payload size, computed when writing
} pb_node;

typedef struct { pb_node *n; int32_t count, cap; sfnet_arena arena; } pb_tree;

SFNET_NOCOV static int varint(const uint8_t *p, size_t len, size_t *i, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*i >= len || shift >= 64) return 0;
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return 1;
    }
    return 0;
}
SFNET_NOCOV static size_t varint_size(uint64_t v) { size_t n = 1; while (v >= 0x80) { v >>= 7; n++; } return n; }
SFNET_NOCOV static void out_varint(sfnet_out *o, uint64_t v) { while (v >= 0x80) { out_u8(o, (uint8_t)(v | 0x80)); v >>= 7; } out_u8(o, (uint8_t)v); }

SFNET_NOCOV static int32_t new_node(pb_tree *t) {
    if (t->count >= t->cap) return -1;
    t->n[t->count] = (pb_node){0, 0, 0, 0, NULL, 0, -1, -1, 0};
    return t->count++;
}

/// Parses p[0..<len] as a message; returns its first field (-1 when empty) or -2 when the bytes are
/// not a message. With `salvage`, the fields before the first bad one are the message.
SFNET_NOCOV static int32_t parse_msg(pb_tree *t, const uint8_t *p, size_t len, int depth, int salvage) {
    int32_t first = -1, last = -1, mark = t->count;
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        uint64_t key, v = 0;
        int32_t k;
        if (!varint(p, len, &i, &key) || key >> 3 == 0 || key >> 3 > 0x1FFFFFFF || (k = new_node(t)) < 0) goto bad;
        pb_node *n = &t->n[k];
        n->field = (uint32_t)(key >> 3); n->wire = (uint8_t)(key & 7);
        switch (n->wire) {
        case 0: if (!varint(p, len, &i, &v)) goto bad; n->v = v; break;
        case 1: if (len - i < 8) goto bad; n->v = get_le(p + i, 8); i += 8; break;
        case 5: if (len - i < 4) goto bad; n->v = get_le(p + i, 4); i += 4; break;
        case 2: {
            if (!varint(p, len, &i, &v) || v > len - i) goto bad;
            n->p = p + i; n->len = (size_t)v; i += (size_t)v;
            if (depth < PB_MAX_DEPTH && n->len > 0) {
                int32_t before = t->count, sub = parse_msg(t, n->p, n->len, depth + 1, 0);
                n = &t->n[k];
                if (sub >= 0) { n->is_msg = 1; n->sub = sub; } else t->count = before;
            }
            break;
        }
        default: goto bad;
        }
        if (last >= 0) t->n[last].next = k; else first = k;
        last = k;
        continue;
    bad:
        if (salvage && first >= 0) { t->n[last].next = -1; (void)start; return first; } // the bad field's nodes stay unreachable
        t->count = mark;
        return -2;
    }
    return first;
}

/// A copy of node k and its subtree (next = -1), or -1 when the table is full.
SFNET_NOCOV static int32_t deep_copy(pb_tree *t, int32_t k, int depth) {
    if (depth > 2 * PB_MAX_DEPTH) return -1;
    int32_t c = new_node(t);
    if (c < 0) return -1;
    t->n[c] = t->n[k]; t->n[c].next = -1; t->n[c].sub = -1;
    int32_t last = -1;
    for (int32_t s = t->n[k].sub; s >= 0; s = t->n[s].next) {
        int32_t cs = deep_copy(t, s, depth + 1);
        if (cs < 0) return -1;
        if (last >= 0) t->n[last].next = cs; else t->n[c].sub = cs;
        last = cs;
    }
    return c;
}

// MARK: picking a field

typedef struct { int32_t node; int32_t *link; int32_t *head; int depth; } pb_ref;

SFNET_NOCOV static void walk(pb_tree *t, int32_t *head, int depth, pb_ref *refs, size_t *nrefs, size_t cap) {
    for (int32_t *link = head; *link >= 0 && *nrefs < cap; link = &t->n[*link].next) {
        refs[(*nrefs)++] = (pb_ref){*link, link, head, depth};
        if (t->n[*link].is_msg) walk(t, &t->n[*link].sub, depth + 1, refs, nrefs, cap);
    }
}

static const char *const pb_words[] = {
    "Conv", "BatchNormalization", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Gemm", "MatMul", "Add",
    "Concat", "Reshape", "Transpose", "Flatten", "Identity", "Constant", "Softmax", "ConvTranspose", "Mul",
    "kernel_shape", "strides", "pads", "dilations", "group", "epsilon", "momentum", "transB", "axis", "perm",
    "location", "offset", "length", "checksum", "weights.bin", "../weights.bin", "/etc/hostname", "escape.bin",
    "sub/inner.bin", "conv1.weight", "conv1.bias", "fc.weight", "fc.bias", "bn1.running_mean", "input", "output",
    "s1.pathway0_stem.conv.weight", "", "ai.onnx", "\xff\xfe",
};

SFNET_NOCOV static void mutate_value(sfnet_rng *r, pb_tree *t, pb_node *n) {
    switch (n->wire) {
    case 0: n->v = rng_chance(r, 4) ? rng_next(r) : sfnet_interesting(r, n->v); break;
    case 5: { static const uint32_t f[] = {0, 0x3F800000u, 0xBF800000u, 0x7FC00000u, 0x7F800000u, 0x7F7FFFFFu};
        n->v = rng_chance(r, 2) ? f[rng_below(r, 6)] : (uint32_t)sfnet_interesting(r, n->v); break; }
    case 1: n->v = rng_chance(r, 2) ? sfnet_interesting(r, n->v) : rng_next(r); break;
    case 2: {
        if (n->is_msg) break;
        size_t choice = rng_below(r, 8);
        if (choice < 2) { const char *w = pb_words[rng_below(r, sizeof pb_words / sizeof pb_words[0])]; n->p = (const uint8_t *)w; n->len = strlen(w); break; }
        if (choice < 4) { // packed varints (dims, ints): one element
            size_t i = 0, count = 0; uint64_t v;
            while (i < n->len && varint(n->p, n->len, &i, &v)) count++;
            if (i == n->len && count > 0) {
                size_t pick = rng_below(r, count), j = 0;
                uint8_t *q = arena_alloc(&t->arena, n->len + 10);
                sfnet_out o = {q, 0, n->len + 10, 1};
                for (size_t e = 0; e < count; e++) {
                    varint(n->p, n->len, &j, &v);
                    out_varint(&o, e == pick ? sfnet_interesting(r, v) : v);
                }
                if (o.ok) { n->p = q; n->len = o.n; }
                break;
            }
        }
        size_t room = 64 + n->len / 8;
        uint8_t *q = arena_dup(&t->arena, n->p, n->len, room);
        n->len = sfnet_bytes_mutate(r, q, n->len, n->len + room); n->p = q;
        break;
    }
    }
}

SFNET_NOCOV static void mutate_once(sfnet_rng *r, pb_tree *t, int32_t *root) {
    size_t cap = (size_t)t->count + 1, nrefs = 0;
    pb_ref *refs = arena_alloc(&t->arena, cap * sizeof *refs);
    walk(t, root, 0, refs, &nrefs, cap);
    if (nrefs == 0) { // an empty message: add a field
        int32_t k = new_node(t);
        if (k >= 0) { t->n[k].field = 1 + (uint32_t)rng_below(r, 25); t->n[k].v = sfnet_interesting(r, 0); *root = k; }
        return;
    }
    pb_ref f = refs[rng_below(r, nrefs)];
    pb_node *n = &t->n[f.node];
    switch (rng_below(r, 10)) {
    case 0: case 1: case 2: case 3: mutate_value(r, t, n); break;
    case 4: *f.link = n->next; break; // drop
    case 5: { int32_t c = deep_copy(t, f.node, f.depth); if (c >= 0) { t->n[c].next = t->n[f.node].next; t->n[f.node].next = c; } break; }
    case 6: { // splice: a copy of another field (anywhere in the tree) into this field's message
        pb_ref g = refs[rng_below(r, nrefs)];
        int32_t c = deep_copy(t, g.node, f.depth);
        if (c >= 0) { t->n[c].next = *f.link; *f.link = c; }
        break;
    }
    case 7: if (n->next >= 0) { int32_t b = n->next; n->next = t->n[b].next; t->n[b].next = f.node; *f.link = b; } break; // swap
    case 8: n->field = rng_chance(r, 2) ? (n->field > 1 ? n->field - 1 + 2 * (uint32_t)rng_below(r, 2) : 2) : 1 + (uint32_t)rng_below(r, 25); break;
    default: { // a new field beside this one
        int32_t k = new_node(t);
        if (k < 0) break;
        pb_node *x = &t->n[k];
        static const uint8_t wires[] = {0, 0, 2, 2, 5, 1};
        x->field = 1 + (uint32_t)rng_below(r, 25); x->wire = wires[rng_below(r, 6)];
        if (x->wire == 2) { const char *w = pb_words[rng_below(r, sizeof pb_words / sizeof pb_words[0])]; x->p = (const uint8_t *)w; x->len = strlen(w); }
        else x->v = sfnet_interesting(r, 0) & (x->wire == 5 ? 0xFFFFFFFFull : ~0ull);
        x->next = *f.link; *f.link = k;
        break;
    }
    }
}

// MARK: writing

SFNET_NOCOV static size_t list_size(pb_tree *t, int32_t k) {
    size_t total = 0;
    for (; k >= 0; k = t->n[k].next) {
        pb_node *n = &t->n[k];
        size_t payload;
        switch (n->wire) {
        case 0: payload = varint_size(n->v); break;
        case 1: payload = 8; break;
        case 5: payload = 4; break;
        default: n->enc = n->is_msg ? list_size(t, n->sub) : n->len; payload = varint_size(n->enc) + n->enc; break;
        }
        total += varint_size((uint64_t)n->field << 3 | n->wire) + payload;
    }
    return total;
}

SFNET_NOCOV static void write_list(pb_tree *t, int32_t k, sfnet_out *o) {
    for (; k >= 0 && o->ok; k = t->n[k].next) {
        pb_node *n = &t->n[k];
        out_varint(o, (uint64_t)n->field << 3 | n->wire);
        switch (n->wire) {
        case 0: out_varint(o, n->v); break;
        case 1: out_le(o, n->v, 8); break;
        case 5: out_le(o, n->v, 4); break;
        default: out_varint(o, n->enc); if (n->is_msg) write_list(t, n->sub, o); else out_bytes(o, n->p, n->len); break;
        }
    }
}

SFNET_NOCOV size_t sfnet_protobuf_structured(sfnet_rng *r, const uint8_t *in, size_t size, uint8_t *out, size_t max_size) {
    pb_tree t = {0};
    t.cap = (int32_t)(size < 0x3FFFFFFF ? 2 * size + 64 : 0x7FFFFFFF);
    t.n = arena_alloc(&t.arena, (size_t)t.cap * sizeof(pb_node));
    size_t result = 0;
    int32_t root = parse_msg(&t, in, size, 0, 1);
    if (root == -2 || (root == -1 && size > 0)) goto done;
    for (size_t k = 1 + rng_below(r, 3); k > 0; k--) mutate_once(r, &t, &root);
    if (list_size(&t, root) > max_size) goto done;
    sfnet_out o = {out, 0, max_size, 1};
    write_list(&t, root, &o);
    if (o.ok) result = o.n;
done:
    arena_free(&t.arena);
    return result;
}
