/* test_layout.c - the metadata codec (engine/src/layout.c). */
#include "layout.h"
#include "crc32c.h"
#include "log.h"
#include "xrail.h"

#include "unit.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A deterministic generator so that a failure can be replayed from its seed. */
static uint64_t rng_state;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void md_make(xr_md *m, unsigned nrails, unsigned nregions, unsigned keys_per_region)
{
    memset(m, 0, sizeof *m);
    m->name = strdup("prefill-0");
    m->instance = rng();
    m->nrails = nrails;
    m->rails = calloc(nrails ? nrails : 1, sizeof *m->rails);
    for (unsigned i = 0; i < nrails; i++) {
        xr_md_rail *r = &m->rails[i];
        r->index = i;
        r->provider = strdup(i % 2 ? "shm" : "tcp;ofi_rxm");
        char dom[32];
        snprintf(dom, sizeof dom, "rdmap%us0", i);
        r->domain = strdup(dom);
        r->addr_format = 2 + i % 3;
        r->addrlen = 16 + (uint32_t)(rng() % 48); /* efa addresses are 32 bytes, tcp 16 */
        r->addr = malloc(r->addrlen);
        for (uint32_t k = 0; k < r->addrlen; k++)
            r->addr[k] = (uint8_t)rng();
        r->mr_mode = rng();
        r->speed_mbps = 100000;
        r->numa = (int32_t)(i / 16) - (i == 3); /* -1 included */
    }
    m->nfields = nregions % 5; /* custom fields: 0 to 4, one of them empty */
    m->fields = m->nfields ? calloc(m->nfields, sizeof *m->fields) : NULL;
    for (unsigned i = 0; i < m->nfields; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "app.field%u", i);
        m->fields[i].name = strdup(nm);
        m->fields[i].len = i == 0 ? 0 : 1 + (uint32_t)(rng() % 300);
        m->fields[i].value = malloc(m->fields[i].len ? m->fields[i].len : 1);
        for (uint32_t k = 0; k < m->fields[i].len; k++)
            m->fields[i].value[k] = (uint8_t)rng();
    }
    m->nregions = nregions;
    m->regions = calloc(nregions ? nregions : 1, sizeof *m->regions);
    for (unsigned i = 0; i < nregions; i++) {
        xr_md_region *g = &m->regions[i];
        g->addr = rng();
        g->len = rng() >> 20;
        g->kind = (uint8_t)(i % 2);
        g->device = i % 8;
        g->access = (uint8_t)(1 + i % 3);
        g->nkeys = keys_per_region;
        g->keys = calloc(keys_per_region ? keys_per_region : 1, sizeof *g->keys);
        for (unsigned k = 0; k < keys_per_region; k++) {
            g->keys[k].rail = k;
            g->keys[k].raw = (uint8_t)(k % 5 == 4);
            g->keys[k].nbytes = g->keys[k].raw ? 24 : 8;
            g->keys[k].bytes = malloc(g->keys[k].nbytes);
            for (uint32_t b = 0; b < g->keys[k].nbytes; b++)
                g->keys[k].bytes[b] = (uint8_t)rng();
            g->keys[k].base = k % 3 ? 0 : g->addr - (k % 2 ? 0 : 4096); /* a shared one */
        }
    }
}

static void md_check_equal(const xr_md *a, const xr_md *b)
{
    ck_assert_str_eq(a->name, b->name);
    ck_assert_uint_eq(a->instance, b->instance);
    ck_assert_uint_eq(a->nrails, b->nrails);
    for (unsigned i = 0; i < a->nrails; i++) {
        const xr_md_rail *x = &a->rails[i], *y = &b->rails[i];
        ck_assert_uint_eq(x->index, y->index);
        ck_assert_str_eq(x->provider, y->provider);
        ck_assert_str_eq(x->domain, y->domain);
        ck_assert_uint_eq(x->addr_format, y->addr_format);
        ck_assert_uint_eq(x->addrlen, y->addrlen);
        ck_assert_mem_eq(x->addr, y->addr, x->addrlen);
        ck_assert_uint_eq(x->mr_mode, y->mr_mode);
        ck_assert_uint_eq(x->speed_mbps, y->speed_mbps);
        ck_assert_int_eq(x->numa, y->numa);
    }
    ck_assert_uint_eq(a->nfields, b->nfields);
    for (unsigned i = 0; i < a->nfields; i++) {
        ck_assert_str_eq(a->fields[i].name, b->fields[i].name);
        ck_assert_uint_eq(a->fields[i].len, b->fields[i].len);
        ck_assert_mem_eq(a->fields[i].value, b->fields[i].value, a->fields[i].len);
    }
    ck_assert_uint_eq(a->nregions, b->nregions);
    for (unsigned i = 0; i < a->nregions; i++) {
        const xr_md_region *x = &a->regions[i], *y = &b->regions[i];
        ck_assert_uint_eq(x->addr, y->addr);
        ck_assert_uint_eq(x->len, y->len);
        ck_assert_uint_eq(x->kind, y->kind);
        ck_assert_uint_eq(x->device, y->device);
        ck_assert_uint_eq(x->access, y->access);
        ck_assert_uint_eq(x->nkeys, y->nkeys);
        for (unsigned k = 0; k < x->nkeys; k++) {
            ck_assert_uint_eq(x->keys[k].rail, y->keys[k].rail);
            ck_assert_uint_eq(x->keys[k].raw, y->keys[k].raw);
            ck_assert_uint_eq(x->keys[k].nbytes, y->keys[k].nbytes);
            ck_assert_mem_eq(x->keys[k].bytes, y->keys[k].bytes, x->keys[k].nbytes);
            ck_assert_uint_eq(x->keys[k].base, y->keys[k].base);
        }
    }
}

static uint8_t *encode(const xr_md *m, size_t *len)
{
    *len = 0;
    ck_assert_int_eq(xr__layout_encode(&xr__layout_md_schema, m, NULL, len), XR_ETOOSMALL);
    uint8_t *buf = malloc(*len);
    size_t small = *len - 1;
    ck_assert_int_eq(xr__layout_encode(&xr__layout_md_schema, m, buf, &small), XR_ETOOSMALL);
    ck_assert_uint_eq(small, *len);
    ck_assert_int_eq(xr__layout_encode(&xr__layout_md_schema, m, buf, len), 0);
    return buf;
}

static const unsigned rail_counts[] = {0, 1, 2, 4, 8, 32, 64};
static const unsigned region_counts[] = {0, 1, 7, 100, 10000};

START_TEST(round_trip_grid)
{
    rng_state = 0x9E3779B97F4A7C15ull + (uint64_t)_i;
    unsigned nrails = rail_counts[_i % 7], nregions = region_counts[_i / 7];
    /* Keys per region follow the rail count, except for the largest region
     * count, where 64 keys each would only slow the test without covering more. */
    unsigned keys = nregions >= 10000 ? (nrails < 4 ? nrails : 4) : nrails;
    xr_md m, d;
    md_make(&m, nrails, nregions, keys);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    ck_assert_int_eq(xr__layout_decode(&xr__layout_md_schema, buf, len, 0, &d), 0);
    md_check_equal(&m, &d);
    /* Re-encoding the decoded copy gives the same bytes. */
    size_t len2;
    uint8_t *buf2 = encode(&d, &len2);
    ck_assert_uint_eq(len, len2);
    ck_assert_mem_eq(buf, buf2, len);
    xr__layout_free(&xr__layout_md_schema, &m);
    xr__layout_free(&xr__layout_md_schema, &d);
    free(buf);
    free(buf2);
}
END_TEST

START_TEST(rails64_regions10000)
{
    rng_state = 42;
    xr_md m, d;
    md_make(&m, 64, 10000, 64);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    ck_assert_int_eq(xr__layout_decode(&xr__layout_md_schema, buf, len, 0, &d), 0);
    md_check_equal(&m, &d);
    xr__layout_free(&xr__layout_md_schema, &m);
    xr__layout_free(&xr__layout_md_schema, &d);
    free(buf);
}
END_TEST

/* Every prefix of a valid blob is refused with XR_EBADMD and a message. */
START_TEST(every_truncation)
{
    rng_state = 7;
    xr_md m, d;
    md_make(&m, 32, 3, 32); /* the p5 shape: 32 rails */
    size_t len;
    uint8_t *buf = encode(&m, &len);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size, so ASan sees overreads */
        memcpy(copy, buf, cut);
        int rc = xr__layout_decode(&xr__layout_md_schema, copy, cut, 0, &d);
        ck_assert_msg(rc == XR_EBADMD, "cut at %zu gave %d", cut, rc);
        ck_assert_ptr_nonnull(strstr(xr__error_last(), "metadata: "));
        free(copy);
    }
    /* The body parser alone, fed every prefix of the body, also never
     * crashes and never accepts a short body as the whole thing. */
    for (size_t cut = 0; cut < len - XR_MD_HEADER; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf + XR_MD_HEADER, cut);
        int rc = xr__layout_decode_body(&xr__layout_md_schema, copy, cut, &d);
        if (rc == 0) {
            /* A cut between top-level records can parse; it must then be missing data. */
            ck_assert(d.nrails < m.nrails || d.nregions < m.nregions || d.nfields < m.nfields);
            xr__layout_free(&xr__layout_md_schema, &d);
        } else {
            ck_assert_int_eq(rc, XR_EBADMD);
        }
        free(copy);
    }
    xr__layout_free(&xr__layout_md_schema, &m);
    free(buf);
}
END_TEST

START_TEST(truncation_message_names_field)
{
    rng_state = 11;
    xr_md m, d;
    md_make(&m, 8, 0, 0);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    /* Cut inside rails[5]'s address, then fix the header so only the body is short. */
    uint8_t *body = buf + XR_MD_HEADER;
    size_t body_len = len - XR_MD_HEADER;
    size_t found = 0;
    for (size_t cut = 0; cut < body_len; cut++) {
        if (xr__layout_decode_body(&xr__layout_md_schema, body, cut, &d) == 0) {
            xr__layout_free(&xr__layout_md_schema, &d);
            continue;
        }
        if (strstr(xr__error_last(), "rails[5].addr truncated: need ")) {
            found = cut;
            break;
        }
    }
    ck_assert_msg(found, "no cut named rails[5].addr; last: %s", xr__error_last());
    ck_assert_ptr_nonnull(strstr(xr__error_last(), " left"));
    xr__layout_free(&xr__layout_md_schema, &m);
    free(buf);
}
END_TEST

START_TEST(random_flips)
{
    rng_state = 0xC0FFEEull;
    xr_md m, d;
    md_make(&m, 32, 16, 32);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    uint8_t *copy = malloc(len);
    unsigned crc_caught = 0, parsed = 0, refused = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(copy, buf, len);
        int flips = 1 + (int)(rng() % 4);
        for (int k = 0; k < flips; k++)
            copy[rng() % len] ^= (uint8_t)(1u << (rng() % 8));
        if (memcmp(copy, buf, len) == 0)
            continue;
        /* With the CRC, every corruption is refused. */
        int rc = xr__layout_decode(&xr__layout_md_schema, copy, len, 0, &d);
        ck_assert_msg(rc == XR_EBADMD || rc == XR_EVERSION, "iter %d: rc %d", iter, rc);
        crc_caught++;
        /* Without it, the parser must still never crash or leak. */
        rc = xr__layout_decode_body(&xr__layout_md_schema, copy + XR_MD_HEADER, len - XR_MD_HEADER, &d);
        if (rc == 0) {
            parsed++;
            xr__layout_free(&xr__layout_md_schema, &d);
        } else {
            ck_assert_int_eq(rc, XR_EBADMD);
            ck_assert(strlen(xr__error_last()) > 10);
            refused++;
        }
    }
    ck_assert_uint_gt(crc_caught, 19000);
    ck_assert_uint_gt(refused, 0);
    xr__layout_free(&xr__layout_md_schema, &m);
    free(copy);
    free(buf);
}
END_TEST

START_TEST(header_errors)
{
    rng_state = 3;
    xr_md m, d;
    md_make(&m, 2, 1, 2);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    uint8_t *big = malloc(len + 5);
    memcpy(big, buf, len);
    ck_assert_int_eq(xr__layout_decode(&xr__layout_md_schema, big, len + 5, 0, &d), XR_EBADMD);
    ck_assert_ptr_nonnull(strstr(xr__error_last(), "trailing"));
    ck_assert_int_eq(xr__layout_decode(&xr__layout_md_schema, buf, len, len - 1, &d), XR_EBADMD);
    ck_assert_ptr_nonnull(strstr(xr__error_last(), "configured maximum"));
    big[0] ^= 0xff;
    ck_assert_int_eq(xr__layout_decode(&xr__layout_md_schema, big, len, 0, &d), XR_EBADMD);
    ck_assert_ptr_nonnull(strstr(xr__error_last(), "magic"));
    /* A future format version with a valid CRC is a version error, not corruption. */
    memcpy(big, buf, len);
    big[4] = 9;
    uint32_t c = xr__crc32c_update(0, big, 12);
    c = xr__crc32c_update(c, "\0\0\0\0", 4);
    c = xr__crc32c_update(c, big + XR_MD_HEADER, len - XR_MD_HEADER);
    for (int i = 0; i < 4; i++)
        big[12 + i] = (uint8_t)(c >> (8 * i));
    ck_assert_int_eq(xr__layout_decode(&xr__layout_md_schema, big, len, 0, &d), XR_EVERSION);
    xr__layout_free(&xr__layout_md_schema, &m);
    free(big);
    free(buf);
}
END_TEST

/* Records the layout does not know are skipped; a missing required one is named. */
START_TEST(unknown_and_missing_fields)
{
    /* name (id 1), an unknown id 77, instance (id 2); rails (id 3) left out. */
    uint8_t body[64];
    size_t n = 0;
    const char *nm = "x";
    body[n++] = 1; body[n++] = 0; body[n++] = XR_FT_STR; body[n++] = 0;
    body[n++] = 1; body[n++] = 0; body[n++] = 0; body[n++] = 0;
    body[n++] = (uint8_t)nm[0];
    body[n++] = 77; body[n++] = 0; body[n++] = XR_FT_BYTES; body[n++] = 0;
    body[n++] = 3; body[n++] = 0; body[n++] = 0; body[n++] = 0;
    body[n++] = 1; body[n++] = 2; body[n++] = 3;
    body[n++] = 2; body[n++] = 0; body[n++] = XR_FT_U64; body[n++] = 0;
    body[n++] = 8; body[n++] = 0; body[n++] = 0; body[n++] = 0;
    for (int i = 0; i < 8; i++)
        body[n++] = (uint8_t)i;
    xr_md d;
    ck_assert_int_eq(xr__layout_decode_body(&xr__layout_md_schema, body, n, &d), XR_EBADMD);
    ck_assert_str_eq(xr__error_last(),
                     "metadata: rails missing (required by layout 'xrail.v1')");
    /* Add an empty rails list: now it parses, and the unknown field is skipped. */
    body[n++] = 3; body[n++] = 0; body[n++] = XR_FT_LIST; body[n++] = 0;
    body[n++] = 4; body[n++] = 0; body[n++] = 0; body[n++] = 0;
    body[n++] = 0; body[n++] = 0; body[n++] = 0; body[n++] = 0;
    ck_assert_int_eq(xr__layout_decode_body(&xr__layout_md_schema, body, n, &d), 0);
    ck_assert_str_eq(d.name, "x");
    ck_assert_uint_eq(d.nrails, 0);
    xr__layout_free(&xr__layout_md_schema, &d);
    /* A huge list count is refused before allocation. */
    body[n - 1] = 0x7f;
    ck_assert_int_eq(xr__layout_decode_body(&xr__layout_md_schema, body, n, &d), XR_EBADMD);
    ck_assert_ptr_nonnull(strstr(xr__error_last(), "rails count"));
}
END_TEST

/* ---- hand-built bodies: the wire as another writer may put it ---- */

typedef struct wbuf {
    uint8_t b[512];
    size_t n;
} wbuf;

static void w_bytes(wbuf *w, const void *p, size_t n)
{
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void w_le(wbuf *w, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        w->b[w->n++] = (uint8_t)(v >> (8 * i));
}

/* A full-size record header; returns where its length goes (w_end fills it). */
static size_t w_rec(wbuf *w, uint16_t id, uint8_t type, uint8_t flags)
{
    w_le(w, id, 2);
    w->b[w->n++] = type;
    w->b[w->n++] = flags;
    w_le(w, 0, 4);
    return w->n;
}

static void w_end(wbuf *w, size_t at)
{
    size_t v = w->n - at;
    for (int i = 0; i < 4; i++)
        w->b[at - 4 + i] = (uint8_t)(v >> (8 * i));
}

/* A whole integer record. */
static void w_int(wbuf *w, uint16_t id, uint8_t type, uint64_t v, size_t width)
{
    size_t at = w_rec(w, id, type, 0);
    w_le(w, v, width);
    w_end(w, at);
}

/* name "x", instance 5, no rails, then one region whose keys list the
 * caller writes (the region's record is left open: the caller ends it). */
static size_t w_region_prefix(wbuf *w, size_t *list_at)
{
    size_t at = w_rec(w, 1, XR_FT_STR, 0);
    w_bytes(w, "x", 1);
    w_end(w, at);
    w_int(w, 2, XR_FT_U64, 5, 8);
    at = w_rec(w, 3, XR_FT_LIST, 0);
    w_le(w, 0, 4);
    w_end(w, at);
    *list_at = w_rec(w, 4, XR_FT_LIST, 0);
    w_le(w, 1, 4);
    size_t el = w_rec(w, 0, XR_FT_STRUCT, 0);
    w_int(w, 1, XR_FT_U64, 0x10000, 8);
    w_int(w, 2, XR_FT_U64, 4096, 8);
    w_int(w, 5, XR_FT_U8, 3, 1);
    return el;
}

static void w_close_region(wbuf *w, size_t el, size_t list_at)
{
    w_end(w, el);
    w_end(w, list_at);
}

/* Format 1 (every list written with full records) is still read. */
START_TEST(format1_lists_read)
{
    wbuf w = {.n = 0};
    size_t list_at, el = w_region_prefix(&w, &list_at);
    size_t keys = w_rec(&w, 6, XR_FT_LIST, 0);
    w_le(&w, 1, 4);
    size_t k = w_rec(&w, 0, XR_FT_STRUCT, 0);
    w_int(&w, 1, XR_FT_U32, 2, 4);
    size_t at = w_rec(&w, 3, XR_FT_BYTES, 0);
    w_bytes(&w, "ABCDEFGH", 8);
    w_end(&w, at);
    w_int(&w, 4, XR_FT_U64, 0x8000, 8);
    w_end(&w, k);
    w_end(&w, keys);
    w_close_region(&w, el, list_at);
    xr_md d;
    ck_assert_msg(xr__layout_decode_body(&xr__layout_md_schema, w.b, w.n, &d) == 0, "%s",
                  xr__error_last());
    ck_assert_uint_eq(d.nregions, 1);
    ck_assert_uint_eq(d.regions[0].nkeys, 1);
    ck_assert_uint_eq(d.regions[0].keys[0].rail, 2);
    ck_assert_uint_eq(d.regions[0].keys[0].base, 0x8000);
    ck_assert_mem_eq(d.regions[0].keys[0].bytes, "ABCDEFGH", 8);
    xr__layout_free(&xr__layout_md_schema, &d);
}
END_TEST

/* A compact keys list as given, in the region of w_region_prefix. */
static int decode_compact_keys(const uint8_t *elems, size_t n, uint32_t count, uint8_t flags,
                               xr_md *d)
{
    wbuf w = {.n = 0};
    size_t list_at, el = w_region_prefix(&w, &list_at);
    size_t keys = w_rec(&w, 6, XR_FT_LIST, flags);
    w_le(&w, count, 4);
    w_bytes(&w, elems, n);
    w_end(&w, keys);
    w_close_region(&w, el, list_at);
    return xr__layout_decode_body(&xr__layout_md_schema, w.b, w.n, d);
}

START_TEST(compact_lists)
{
    xr_md d;
    /* rail 2 (1 byte), bytes "AB", base 0x8000 (2 bytes), and field 9, unknown: skipped. */
    const uint8_t good[] = {14, 1, 1, 2, 3, 2, 'A', 'B', 4, 2, 0x00, 0x80, 9, 1, 7, 0};
    ck_assert_msg(decode_compact_keys(good, sizeof good - 1, 1, XR_MD_COMPACT, &d) == 0, "%s",
                  xr__error_last());
    ck_assert_uint_eq(d.regions[0].keys[0].rail, 2);
    ck_assert_uint_eq(d.regions[0].keys[0].base, 0x8000);
    ck_assert_uint_eq(d.regions[0].keys[0].nbytes, 2);
    xr__layout_free(&xr__layout_md_schema, &d);
    /* The same bytes without the flag are not full records. */
    ck_assert_int_eq(decode_compact_keys(good, sizeof good - 1, 1, 0, &d), XR_EBADMD);
    /* An unknown flag. */
    ck_assert_int_eq(decode_compact_keys(good, sizeof good - 1, 1, 0x80 | XR_MD_COMPACT, &d),
                     XR_EBADMD);
    ck_assert_ptr_nonnull(strstr(xr__error_last(), "keys: unknown record flags"));
    /* An integer wider than its type: a u32 rail of 5 bytes. */
    const uint8_t wide[] = {12, 1, 5, 1, 2, 3, 4, 5, 3, 1, 'A', 4, 0};
    ck_assert_int_eq(decode_compact_keys(wide, sizeof wide, 1, XR_MD_COMPACT, &d), XR_EBADMD);
    ck_assert_ptr_nonnull(strstr(xr__error_last(), "regions[0].keys[0].rail: u32 of 5 bytes"));
    /* A varint that never ends, and one past 64 bits. */
    const uint8_t endless[] = {0x80, 0x80, 0x80};
    ck_assert_int_eq(decode_compact_keys(endless, sizeof endless, 1, XR_MD_COMPACT, &d), XR_EBADMD);
    ck_assert_ptr_nonnull(strstr(xr__error_last(), "keys[0] length truncated or malformed"));
    const uint8_t huge[] = {11, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0};
    ck_assert_int_eq(decode_compact_keys(huge, sizeof huge, 1, XR_MD_COMPACT, &d), XR_EBADMD);
    ck_assert_ptr_nonnull(strstr(xr__error_last(), "record header truncated or malformed"));
    /* An element longer than the list, and a count the bytes cannot hold. */
    ck_assert_int_eq(decode_compact_keys(good, 5, 1, XR_MD_COMPACT, &d), XR_EBADMD);
    ck_assert_ptr_nonnull(strstr(xr__error_last(), "truncated"));
    ck_assert_int_eq(decode_compact_keys(good, sizeof good - 1, 99, XR_MD_COMPACT, &d), XR_EBADMD);
    ck_assert_ptr_nonnull(strstr(xr__error_last(), "keys count 99 exceeds"));
    /* A required field left out is named, as in full records. */
    const uint8_t nobytes[] = {6, 1, 1, 2, 4, 1, 1};
    ck_assert_int_eq(decode_compact_keys(nobytes, sizeof nobytes, 1, XR_MD_COMPACT, &d), XR_EBADMD);
    ck_assert_ptr_nonnull(strstr(xr__error_last(), "keys[0].bytes missing"));
}
END_TEST

/* What compact lists are for: a key of 8 bytes at its region's start costs
 * at most 18 bytes on the wire (length 1, rail 3, raw 2, bytes 10, base 2),
 * not 69 as full records. */
START_TEST(compact_key_size)
{
    rng_state = 5;
    xr_md m;
    md_make(&m, 32, 100, 32);
    size_t with, without;
    for (unsigned i = 0; i < m.nregions; i++)
        for (unsigned k = 0; k < m.regions[i].nkeys; k++) {
            xr_md_key *key = &m.regions[i].keys[k];
            key->raw = 0, key->base = 0, key->nbytes = 8;
        }
    free(encode(&m, &with));
    uint32_t *nkeys = calloc(m.nregions, sizeof *nkeys);
    for (unsigned i = 0; i < m.nregions; i++)
        nkeys[i] = m.regions[i].nkeys, m.regions[i].nkeys = 0;
    free(encode(&m, &without));
    for (unsigned i = 0; i < m.nregions; i++)
        m.regions[i].nkeys = nkeys[i];
    free(nkeys);
    double per_key = (double)(with - without) / (32.0 * 100);
    ck_assert_msg(per_key <= 18, "%.1f bytes per key", per_key);
    xr__layout_free(&xr__layout_md_schema, &m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("layout");
    TCase *tc = tcase_create("codec");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, round_trip_grid, 0, 7 * 5);
    tcase_add_test(tc, rails64_regions10000);
    tcase_add_test(tc, every_truncation);
    tcase_add_test(tc, truncation_message_names_field);
    tcase_add_test(tc, random_flips);
    tcase_add_test(tc, header_errors);
    tcase_add_test(tc, unknown_and_missing_fields);
    tcase_add_test(tc, format1_lists_read);
    tcase_add_test(tc, compact_lists);
    tcase_add_test(tc, compact_key_size);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run_suite(suite());
}
