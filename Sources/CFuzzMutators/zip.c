// The zip mutator (zip target, torch checkpoints, npz): the archive is read through its central
// directory (zip64 included; failing that, by walking local headers), entries are inflated, and
// one to three entry-level mutations are applied: contents (entries named *.pkl through the
// pickle mutator, others byte-mutated, resized or replaced), names (torch's layout, traversal
// and odd names, mutated bytes), count (drop / duplicate / add), order, compression method
// (stored / deflate, rarely an unsupported one); the central directory may list entries in another
// order, data may be aligned to 64 bytes with an extra field (as torch writes) and zip64 records
// may be used. The archive is written back consistent: local headers, central directory and EOCD
// agree on names, methods, sizes, CRCs and offsets.
#include "common.h"

#include <stdlib.h>
#include <zlib.h>

#define ZIP_MAX_ENTRIES 512
#define ZIP_MAX_INFLATE (1u << 20)

typedef struct {
    const uint8_t *name; size_t name_len;
    uint16_t method;                  // as written (0 stored, 8 deflate, other: unsupported, data stored)
    const uint8_t *content; size_t usize; // the uncompressed contents
    const uint8_t *comp; size_t csize;    // the input's deflate stream, reusable while clean
    int clean;                        // contents and method as in the input (comp valid when method 8)
} zip_entry;

typedef struct { zip_entry e[ZIP_MAX_ENTRIES]; size_t n; sfnet_arena arena; } zip_archive;

SFNET_NOCOV static int inflate_raw(sfnet_arena *a, const uint8_t *src, size_t n, size_t cap, const uint8_t **out, size_t *out_n) {
    z_stream z; memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -15) != Z_OK) return 0;
    uint8_t *buf = arena_alloc(a, cap);
    z.next_in = (Bytef *)src; z.avail_in = (uInt)n; z.next_out = buf; z.avail_out = (uInt)cap;
    int rc = inflate(&z, Z_FINISH);
    size_t got = z.total_out;
    inflateEnd(&z);
    if (rc != Z_STREAM_END) return 0;
    *out = buf; *out_n = got;
    return 1;
}

/// Adds an entry with the input's stored bytes; deflated data is inflated (kept stored when it does not inflate).
SFNET_NOCOV static int add_entry(zip_archive *z, const uint8_t *name, size_t name_len, unsigned method, const uint8_t *data, size_t csize, size_t usize) {
    if (z->n >= ZIP_MAX_ENTRIES) return 0;
    zip_entry *e = &z->e[z->n++];
    *e = (zip_entry){name, name_len, 0, data, csize, NULL, 0, 1};
    if (method == 8) {
        size_t cap = usize < ZIP_MAX_INFLATE ? usize + 1 : ZIP_MAX_INFLATE;
        if (inflate_raw(&z->arena, data, csize, cap, &e->content, &e->usize) && e->usize == usize) { e->method = 8; e->comp = data; e->csize = csize; }
        else { e->content = data; e->usize = csize; e->clean = 0; }
    }
    return 1;
}

SFNET_NOCOV static int read_central(zip_archive *z, const uint8_t *in, size_t size) {
    if (size < 22) return 0;
    size_t eocd = SIZE_MAX;
    for (size_t i = size - 22 + 1, lowest = size > 22 + 0xFFFF ? size - 22 - 0xFFFF : 0; i-- > lowest;)
        if (get_le(in + i, 4) == 0x06054b50) { eocd = i; break; }
    if (eocd == SIZE_MAX) return 0;
    uint64_t count = get_le(in + eocd + 10, 2), cd_size = get_le(in + eocd + 12, 4), cd_off = get_le(in + eocd + 16, 4);
    if (eocd >= 20 && get_le(in + eocd - 20, 4) == 0x07064b50) {
        uint64_t rec = get_le(in + eocd - 12, 8);
        if (rec > eocd - 20 || eocd - 20 - rec < 56 || get_le(in + rec, 4) != 0x06064b50) return 0;
        count = get_le(in + rec + 32, 8); cd_size = get_le(in + rec + 40, 8); cd_off = get_le(in + rec + 48, 8);
    }
    if (count > ZIP_MAX_ENTRIES || cd_off > eocd || cd_size > eocd - cd_off) return 0;
    size_t p = (size_t)cd_off, end = (size_t)(cd_off + cd_size);
    for (uint64_t k = 0; k < count; k++) {
        if (end - p < 46 || get_le(in + p, 4) != 0x02014b50) return 0;
        unsigned method = (unsigned)get_le(in + p + 10, 2);
        uint64_t csize = get_le(in + p + 20, 4), usize = get_le(in + p + 24, 4), lho = get_le(in + p + 42, 4);
        size_t nl = (size_t)get_le(in + p + 28, 2), xl = (size_t)get_le(in + p + 30, 2), cl = (size_t)get_le(in + p + 32, 2);
        if (end - p - 46 < nl + xl + cl) return 0;
        for (size_t x = p + 46 + nl, xe = x + xl; xe - x >= 4;) { // zip64 extended information
            size_t tag = (size_t)get_le(in + x, 2), len = (size_t)get_le(in + x + 2, 2), f = x + 4;
            if (xe - x - 4 < len) break;
            if (tag == 1) {
                if (usize == 0xFFFFFFFF && f + 8 <= x + 4 + len) { usize = get_le(in + f, 8); f += 8; }
                if (csize == 0xFFFFFFFF && f + 8 <= x + 4 + len) { csize = get_le(in + f, 8); f += 8; }
                if (lho == 0xFFFFFFFF && f + 8 <= x + 4 + len) { lho = get_le(in + f, 8); }
            }
            x += 4 + len;
        }
        if (lho > size || size - lho < 30 || get_le(in + lho, 4) != 0x04034b50) return 0;
        uint64_t data = lho + 30 + get_le(in + lho + 26, 2) + get_le(in + lho + 28, 2);
        if (data > size || csize > size - data) return 0;
        if (!add_entry(z, in + p + 46, nl, method, in + data, (size_t)csize, (size_t)usize)) return 0;
        p += 46 + nl + xl + cl;
    }
    return 1;
}

/// Salvage for archives whose directory is broken: local headers one after another from offset 0.
SFNET_NOCOV static int read_local(zip_archive *z, const uint8_t *in, size_t size) {
    size_t p = 0;
    while (size - p >= 30 && get_le(in + p, 4) == 0x04034b50) {
        uint64_t csize = get_le(in + p + 18, 4), usize = get_le(in + p + 22, 4);
        size_t nl = (size_t)get_le(in + p + 26, 2), xl = (size_t)get_le(in + p + 28, 2);
        if (get_le(in + p + 6, 2) & 8) return z->n > 0; // sizes in a data descriptor: stop here
        if (size - p - 30 < nl + xl || csize > size - p - 30 - nl - xl) return z->n > 0;
        if (!add_entry(z, in + p + 30, nl, (unsigned)get_le(in + p + 8, 2), in + p + 30 + nl + xl, (size_t)csize, (size_t)usize)) return 0;
        p += 30 + nl + xl + (size_t)csize;
    }
    return z->n > 0;
}

// MARK: mutations

static const char *const zip_names[] = {
    "data.pkl", "data/0", "data/1", "data/2", "version", "byteorder", ".data/version", ".data/serialization_id",
    "constants.pkl", "code/__torch__/m.py", "extra/x", "attributes.pkl", "xl/sharedStrings.xml", "arr_0.npy",
};
static const char *const odd_names[] = {"../evil", "/abs", "a\\b", "C:x", "", "a/../../b", "x\0y", "data.pkl/"};

SFNET_NOCOV static void set_name(sfnet_rng *r, zip_archive *z, zip_entry *e) {
    const uint8_t *src = NULL; // the archive's top folder ("archive/"), from the first entry that has one
    size_t prefix = 0;
    for (size_t k = 0; k < z->n && !src; k++)
        for (size_t i = 0; i < z->e[k].name_len && i < 64; i++) if (z->e[k].name[i] == '/') { src = z->e[k].name; prefix = i + 1; break; }
    size_t choice = rng_below(r, 8);
    if (choice == 0) { const char *w = odd_names[rng_below(r, 8)]; size_t n = w[0] == 'x' ? 3 : strlen(w); e->name = (const uint8_t *)w; e->name_len = n; return; }
    if (choice <= 4) {
        const char *w = zip_names[rng_below(r, sizeof zip_names / sizeof zip_names[0])];
        size_t n = strlen(w), pre = src ? prefix : 0;
        uint8_t *q = arena_alloc(&z->arena, pre + n);
        if (pre) memcpy(q, src, pre);
        memcpy(q + pre, w, n);
        e->name = q; e->name_len = pre + n;
        return;
    }
    uint8_t *q = arena_dup(&z->arena, e->name, e->name_len, 16);
    e->name_len = sfnet_bytes_mutate(r, q, e->name_len, e->name_len + 16 < 0xFFFF ? e->name_len + 16 : 0xFFFF);
    e->name = q;
}

SFNET_NOCOV static int ends_with(const zip_entry *e, const char *s) {
    size_t n = strlen(s);
    return e->name_len >= n && memcmp(e->name + e->name_len - n, s, n) == 0;
}

SFNET_NOCOV static void mutate_content(sfnet_rng *r, zip_archive *z, zip_entry *e, size_t max_size) {
    e->clean = 0;
    if (ends_with(e, ".pkl") && !rng_chance(r, 4)) {
        size_t cap = e->usize + 4096 < max_size ? e->usize + 4096 : max_size;
        uint8_t *q = arena_alloc(&z->arena, cap);
        size_t n = sfnet_pickle_structured(r, e->content, e->usize, q, cap);
        if (n) { e->content = q; e->usize = n; return; }
    }
    switch (rng_below(r, 4)) {
    case 0: { // resize: storages whose size disagrees with numel x element size
        size_t n = rng_chance(r, 2) && e->usize ? e->usize - 1 - rng_below(r, e->usize) : e->usize + 1 + rng_below(r, 64);
        if (n > e->usize && n > max_size) n = e->usize;
        uint8_t *q = arena_alloc(&z->arena, n);
        memset(q, 0, n);
        memcpy(q, e->content, n < e->usize ? n : e->usize);
        e->content = q; e->usize = n;
        break;
    }
    case 1: { static const char *const small[] = {"3\n", "little", "big", "1", "", "\x80\x02}q\x00.", "PK\x03\x04"};
        const char *s = small[rng_below(r, 7)]; e->content = (const uint8_t *)s; e->usize = strlen(s); break; }
    default: {
        size_t room = 64 + e->usize / 8;
        uint8_t *q = arena_dup(&z->arena, e->content, e->usize, room);
        e->usize = sfnet_bytes_mutate(r, q, e->usize, e->usize + room); e->content = q;
        break;
    }
    }
}

SFNET_NOCOV static void mutate_once(sfnet_rng *r, zip_archive *z, size_t max_size) {
    size_t k = rng_below(r, z->n);
    zip_entry *e = z->n ? &z->e[k] : NULL;
    switch (rng_below(r, 10)) {
    case 0: case 1: case 2: case 3: if (e) mutate_content(r, z, e, max_size); break;
    case 4: if (e) set_name(r, z, e); break;
    case 5: if (e) { memmove(z->e + k, z->e + k + 1, (z->n - k - 1) * sizeof *e); z->n--; } break;
    case 6: if (e && z->n < ZIP_MAX_ENTRIES) { // duplicate (same name, or renamed)
        memmove(z->e + k + 1, z->e + k, (z->n - k) * sizeof *e); z->n++;
        if (rng_chance(r, 2)) set_name(r, z, &z->e[k + 1]);
        break;
    }
    case 7: if (z->n >= 2) { size_t j = rng_below(r, z->n); zip_entry t = z->e[k]; z->e[k] = z->e[j]; z->e[j] = t; } break;
    case 8: if (e) { // compression method
        static const uint16_t odd[] = {1, 9, 12, 14, 93, 99};
        e->method = rng_chance(r, 8) ? odd[rng_below(r, 6)] : (e->method == 8 ? 0 : 8);
        e->clean = 0;
        break;
    }
    default: if (z->n < ZIP_MAX_ENTRIES) { // a new entry
        zip_entry *x = &z->e[z->n++];
        *x = (zip_entry){(const uint8_t *)"x", 1, (uint16_t)(rng_chance(r, 2) ? 0 : 8), (const uint8_t *)"\x80\x02}q\x00.", 6, NULL, 0, 0};
        set_name(r, z, x);
        break;
    }
    }
}

// MARK: writing

SFNET_NOCOV size_t sfnet_zip_structured(sfnet_rng *r, const uint8_t *in, size_t size, uint8_t *out, size_t max_size) {
    zip_archive *z = calloc(1, sizeof *z);
    if (!z) return 0;
    size_t result = 0;
    if (!read_central(z, in, size)) { arena_free(&z->arena); z->n = 0; if (!read_local(z, in, size)) goto done; }
    for (size_t k = 1 + rng_below(r, 3); k > 0; k--) mutate_once(r, z, max_size);

    int zip64 = rng_chance(r, 8), align = rng_chance(r, 2), shuffle = rng_chance(r, 8);
    uint64_t *lho = arena_alloc(&z->arena, (z->n + 1) * sizeof(uint64_t));
    uint32_t *crc = arena_alloc(&z->arena, (z->n + 1) * sizeof(uint32_t));
    const uint8_t **comp = arena_alloc(&z->arena, (z->n + 1) * sizeof(uint8_t *));
    size_t *csize = arena_alloc(&z->arena, (z->n + 1) * sizeof(size_t));
    sfnet_out o = {out, 0, max_size, 1};
    for (size_t k = 0; k < z->n && o.ok; k++) {
        zip_entry *e = &z->e[k];
        crc[k] = (uint32_t)crc32(0, e->content, (uInt)e->usize);
        if (e->method == 8 && e->clean) { comp[k] = e->comp; csize[k] = e->csize; }
        else if (e->method == 8) {
            uLong bound = compressBound((uLong)e->usize) + 64;
            uint8_t *q = arena_alloc(&z->arena, bound);
            z_stream s; memset(&s, 0, sizeof s);
            if (deflateInit2(&s, (int)rng_below(r, 10), Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) { o.ok = 0; break; }
            s.next_in = (Bytef *)e->content; s.avail_in = (uInt)e->usize; s.next_out = q; s.avail_out = (uInt)bound;
            int rc = deflate(&s, Z_FINISH);
            csize[k] = s.total_out;
            deflateEnd(&s);
            if (rc != Z_STREAM_END) { o.ok = 0; break; }
            comp[k] = q;
        } else { comp[k] = e->content; csize[k] = e->usize; }
        lho[k] = o.n;
        size_t extra = zip64 ? 20 : 0, head = 30 + e->name_len + extra;
        size_t pad = (64 - (o.n + head + 4) % 64) % 64; // torch's "FB" field aligns the data to 64 bytes
        if (align && (o.n + head) % 64) extra += 4 + pad;
        out_le(&o, 0x04034b50, 4); out_le(&o, zip64 ? 45 : 20, 2); out_le(&o, 0, 2); out_le(&o, e->method, 2); out_le(&o, 0, 4);
        out_le(&o, crc[k], 4); out_le(&o, zip64 ? 0xFFFFFFFF : csize[k], 4); out_le(&o, zip64 ? 0xFFFFFFFF : e->usize, 4);
        out_le(&o, e->name_len, 2); out_le(&o, extra, 2); out_bytes(&o, e->name, e->name_len);
        if (zip64) { out_le(&o, 1, 2); out_le(&o, 16, 2); out_le(&o, e->usize, 8); out_le(&o, csize[k], 8); }
        if (extra > (zip64 ? 20u : 0u)) { out_le(&o, 0x4246, 2); out_le(&o, pad, 2); for (size_t i = 0; i < pad; i++) out_u8(&o, 'Z'); }
        out_bytes(&o, comp[k], csize[k]);
    }
    size_t cd_off = o.n;
    for (size_t j = 0; j < z->n && o.ok; j++) {
        size_t k = shuffle ? (j + z->n / 2) % z->n : j; // the directory may list entries in another order
        zip_entry *e = &z->e[k];
        out_le(&o, 0x02014b50, 4); out_le(&o, zip64 ? 45 : 20, 2); out_le(&o, zip64 ? 45 : 20, 2); out_le(&o, 0, 2);
        out_le(&o, e->method, 2); out_le(&o, 0, 4); out_le(&o, crc[k], 4);
        out_le(&o, zip64 ? 0xFFFFFFFF : csize[k], 4); out_le(&o, zip64 ? 0xFFFFFFFF : e->usize, 4);
        out_le(&o, e->name_len, 2); out_le(&o, zip64 ? 28 : 0, 2); out_le(&o, 0, 2); out_le(&o, 0, 2); out_le(&o, 0, 2); out_le(&o, 0, 4);
        out_le(&o, zip64 ? 0xFFFFFFFF : lho[k], 4); out_bytes(&o, e->name, e->name_len);
        if (zip64) { out_le(&o, 1, 2); out_le(&o, 24, 2); out_le(&o, e->usize, 8); out_le(&o, csize[k], 8); out_le(&o, lho[k], 8); }
    }
    size_t cd_size = o.n - cd_off;
    if (zip64) {
        size_t rec = o.n;
        out_le(&o, 0x06064b50, 4); out_le(&o, 44, 8); out_le(&o, 45, 2); out_le(&o, 45, 2); out_le(&o, 0, 4); out_le(&o, 0, 4);
        out_le(&o, z->n, 8); out_le(&o, z->n, 8); out_le(&o, cd_size, 8); out_le(&o, cd_off, 8);
        out_le(&o, 0x07064b50, 4); out_le(&o, 0, 4); out_le(&o, rec, 8); out_le(&o, 1, 4);
    }
    out_le(&o, 0x06054b50, 4); out_le(&o, 0, 2); out_le(&o, 0, 2);
    out_le(&o, zip64 ? 0xFFFF : z->n, 2); out_le(&o, zip64 ? 0xFFFF : z->n, 2);
    out_le(&o, zip64 ? 0xFFFFFFFF : cd_size, 4); out_le(&o, zip64 ? 0xFFFFFFFF : cd_off, 4); out_le(&o, 0, 2);
    if (o.ok && (zip64 || (z->n <= 0xFFFF && o.n <= 0xFFFFFFFFull))) result = o.n;
done:
    arena_free(&z->arena);
    free(z);
    return result;
}
