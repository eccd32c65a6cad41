/*
 * test_layout_script.c - layout scripts (engine/src/layout_script.c): the
 * shipped default equals the built-in layout byte for byte, malformed
 * layouts are refused naming the field, typed custom fields, and a
 * compatibility matrix of five layouts read against each other.
 */
#include "layout.h"
#include "log.h"
#include "xrail.h"

#include "unit.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHIPPED XR_SOURCE_DIR "/scripts/layout/"
#define TESTING XR_SOURCE_DIR "/tests/layout/"

static xr_layout *load(const char *path)
{
    xr_layout *l = NULL;
    int rc = xr__layout_load(path, 0, &l);
    ck_assert_msg(rc == 0, "%s: %s", path, xr__error_last());
    return l;
}

/* A small but complete xr_md: two rails, one region with two keys. */
static void md_fill(xr_md *m)
{
    static uint8_t addr[2][16] = {{1, 2, 3}, {4, 5, 6}};
    static uint8_t key[2][8] = {{7}, {8}};
    static xr_md_rail rails[2];
    static xr_md_key keys[2];
    static xr_md_region region;
    for (int i = 0; i < 2; i++) {
        rails[i] = (xr_md_rail){.index = (uint32_t)i, .provider = "tcp;ofi_rxm", .domain = "lo",
                                .addr_format = 2, .addr = addr[i], .addrlen = 16,
                                .mr_mode = 0x400, .speed_mbps = 400, .numa = i - 1};
        keys[i] = (xr_md_key){.rail = (uint32_t)i, .bytes = key[i], .nbytes = 8};
    }
    region = (xr_md_region){.addr = 0x7f0000001000, .len = 1 << 20, .kind = 1, .device = 3,
                            .access = 3, .keys = keys, .nkeys = 2};
    *m = (xr_md){.name = "prefill-0", .instance = 0x1234, .rails = rails, .nrails = 2,
                 .regions = &region, .nregions = 1};
}

static uint8_t *encode(const xr_layout *l, const xr_md *m, size_t *len)
{
    *len = 0;
    ck_assert_int_eq(xr__layout_md_encode(l, m, NULL, len), XR_ETOOSMALL);
    uint8_t *buf = malloc(*len);
    int rc = xr__layout_md_encode(l, m, buf, len);
    ck_assert_msg(rc == 0, "encode: %s", xr__error_last());
    return buf;
}

/* The shipped default is the built-in layout written out: same bytes. */
START_TEST(default_script_is_builtin)
{
    xr_layout *l = load(SHIPPED "xrail_v1.lua");
    xr_md m;
    md_fill(&m);
    xr_md_field extra = {.name = "app.note", .value = (uint8_t *)"hi", .len = 2};
    m.fields = &extra;
    m.nfields = 1;
    size_t n1, n2;
    uint8_t *a = encode(NULL, &m, &n1), *b = encode(l, &m, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_mem_eq(a, b, n1);
    xr_md d;
    ck_assert_int_eq(xr__layout_md_decode(l, a, n1, 0, &d), 0);
    ck_assert_str_eq(d.rails[1].provider, "tcp;ofi_rxm");
    ck_assert_int_eq(d.rails[0].numa, -1);
    ck_assert_uint_eq(d.regions[0].keys[1].bytes[0], 8);
    ck_assert_uint_eq(d.nfields, 1);
    ck_assert_str_eq(d.fields[0].name, "app.note");
    xr__layout_free(xr__layout_schema(l), &d);
    char text[4096];
    ck_assert_int_eq(xr__layout_describe(l, text, sizeof text), 0);
    ck_assert_ptr_nonnull(strstr(text, "layout xrail.v1 version 1"));
    free(a);
    free(b);
    xr__layout_destroy(l);
}
END_TEST

/* Malformed layouts: each source is refused at load with XR_ESCRIPT and a
 * message naming what is wrong. */
static const struct {
    const char *what, *src, *msg;
} malformed[] = {
    {"not a table", "return 42", "must return a table"},
    {"syntax error", "return {", "expected"},
    {"unknown top key", "return { name = 'x', version = 1, feilds = {} }", "unknown key 'feilds'"},
    {"no version", "return { name = 'x', fields = {} }", "version"},
    {"bad name", "return { name = 'a b', version = 1, fields = {} }", "name"},
    {"top-level loop", "while true do end", "instruction"},
    {"os.execute", "os.execute('true') return {}", "os"},
    {"a trap in the table", "return setmetatable({}, { __index = function(t, k) "
     "error('trap ' .. k) end })", "trap name"},
#define CORE "{ id = 1, name = 'name', type = 'string', required = true }, " \
             "{ id = 2, name = 'instance', type = 'u64', required = true }, " \
             "{ id = 3, name = 'rails', type = 'list', required = true }, "
    {"duplicate id", "return { name = 'x', version = 1, fields = { " CORE
                     "{ id = 3, name = 'regions', type = 'list' } } }",
     "regions: duplicate id 3 (also rails)"},
    {"unknown type", "return { name = 'x', version = 1, fields = { " CORE
                     "{ id = 9, name = 'custom', type = 'struct', fields = { "
                     "{ id = 1, name = 'model', type = 'text' } } } } }",
     "custom.model: unknown type 'text'"},
    {"misspelt key", "return { name = 'x', version = 1, fields = { " CORE
                     "{ id = 4, name = 'regions', type = 'list', requried = true } } }",
     "unknown key 'requried'"},
    {"needed field dropped", "return { name = 'x', version = 1, fields = { "
                             "{ id = 1, name = 'name', type = 'string', required = true }, "
                             "{ id = 3, name = 'rails', type = 'list', required = true } } }",
     "'instance' must be declared with required = true"},
    {"needed field optional", "return { name = 'x', version = 1, fields = { "
                              "{ id = 1, name = 'name', type = 'string', required = true }, "
                              "{ id = 2, name = 'instance', type = 'u64' }, "
                              "{ id = 3, name = 'rails', type = 'list', required = true } } }",
     "'instance' must be declared with required = true"},
    {"needed rail field dropped", "return { name = 'x', version = 1, fields = { "
                                  "{ id = 1, name = 'name', type = 'string', required = true }, "
                                  "{ id = 2, name = 'instance', type = 'u64', required = true }, "
                                  "{ id = 3, name = 'rails', type = 'list', required = true, fields = { "
                                  "{ id = 1, name = 'index', type = 'u32', required = true } } } } }",
     "rails: 'provider' must be declared"},
    {"engine type changed", "return { name = 'x', version = 1, fields = { "
                            "{ id = 1, name = 'name', type = 'bytes', required = true } } }",
     "name: type bytes, but the engine's field is a string"},
    {"unknown engine field", "return { name = 'x', version = 1, fields = { " CORE
                             "{ id = 7, name = 'model', type = 'string' } } }",
     "'model' is not an engine field here"},
    {"default on engine field", "return { name = 'x', version = 1, fields = { " CORE
                                "{ id = 4, name = 'regions', type = 'list', default = 1 } } }",
     "defaults are for custom fields"},
    {"default of the wrong type", "return { name = 'x', version = 1, fields = { " CORE
                                  "{ id = 9, name = 'custom', type = 'struct', fields = { "
                                  "{ id = 1, name = 'tp', type = 'u32', default = 'one' } } } } }",
     "custom.tp: default must be an integer"},
    {"default out of range", "return { name = 'x', version = 1, fields = { " CORE
                             "{ id = 9, name = 'custom', type = 'struct', fields = { "
                             "{ id = 1, name = 'b', type = 'u8', default = 256 } } } } }",
     "default 256 does not fit a u8"},
    {"duplicate custom name", "return { name = 'x', version = 1, fields = { " CORE
                              "{ id = 9, name = 'custom', type = 'struct', fields = { "
                              "{ id = 1, name = 'a', type = 'u8' }, "
                              "{ id = 2, name = 'a', type = 'u16' } } } } }",
     "custom.a: declared twice"},
    {"list in custom", "return { name = 'x', version = 1, fields = { " CORE
                       "{ id = 9, name = 'custom', type = 'struct', fields = { "
                       "{ id = 1, name = 'a', type = 'list' } } } } }",
     "custom.a: unknown type 'list'"},
    {"id out of range", "return { name = 'x', version = 1, fields = { " CORE
                        "{ id = 70000, name = 'regions', type = 'list' } } }",
     "regions: id must be an integer from 1 to 65535"},
    {"too many fields", NULL, "1 to 64 are allowed"},
};

START_TEST(malformed_layouts)
{
    char path[] = "/tmp/xr-layout-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    FILE *f = fopen(path, "w");
    const char *src = malformed[_i].src;
    if (src) {
        fputs(src, f);
    } else { /* 65 custom fields */
        fputs("local f = {} for i = 1, 65 do f[i] = { id = i, name = 'f' .. i, type = 'u8' } end "
              "return { name = 'x', version = 1, fields = { " CORE
              "{ id = 9, name = 'custom', type = 'struct', fields = f } } }", f);
    }
    fclose(f);
    xr_layout *l = (xr_layout *)0x1;
    int rc = xr__layout_load(path, 0, &l);
    const char *err = xr__error_last();
    unlink(path);
    ck_assert_msg(rc == XR_ESCRIPT, "%s: rc %d (%s)", malformed[_i].what, rc, err);
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(err, malformed[_i].msg), "%s: message '%s' lacks '%s'",
                  malformed[_i].what, err, malformed[_i].msg);
}
END_TEST

/* Typed custom fields: values are checked when set, and required ones
 * must be set unless they have a default. */
START_TEST(custom_field_types)
{
    xr_layout *kv = load(SHIPPED "kv_cache.lua"), *lean = load(TESTING "lean.lua");
    uint32_t u32 = 80;
    uint64_t u64 = 1;
    ck_assert_int_eq(xr__layout_field_check(kv, "kv.layers", &u32, 4), 0);
    ck_assert_int_eq(xr__layout_field_check(kv, "kv.layers", &u64, 8), XR_EINVAL);
    ck_assert_ptr_nonnull(strstr(xr__error_last(),
                                 "'kv.layers' is a u32 in layout 'kv_cache': its value must be 4"));
    ck_assert_int_eq(xr__layout_field_check(kv, "kv.dtype", "f\0" "16", 4), XR_EINVAL);
    ck_assert_int_eq(xr__layout_field_check(kv, "anything", "x", 1), 0); /* goes to extra */
    ck_assert_int_eq(xr__layout_field_check(lean, "anything", "x", 1), XR_EINVAL);
    ck_assert_ptr_nonnull(strstr(xr__error_last(), "no \"extra\" section"));
    ck_assert_int_eq(xr__layout_field_type(kv, "kv.base"), XR_FT_U64);
    ck_assert_int_eq(xr__layout_field_type(kv, "nope"), 0);

    /* kv.base and the rest are required without a default. */
    xr_md m;
    md_fill(&m);
    size_t len = 0;
    ck_assert_int_eq(xr__layout_md_encode(kv, &m, NULL, &len), XR_EINVAL);
    ck_assert_ptr_nonnull(strstr(xr__error_last(), "custom.kv.base is required"));
    xr__layout_destroy(kv);
    xr__layout_destroy(lean);
}
END_TEST

/* ---- the compatibility matrix ---- */

enum { V1, KV, KV2, LEAN, KVBAD, NL };
static const char *const layout_file[NL] = {
    SHIPPED "xrail_v1.lua", SHIPPED "kv_cache.lua", TESTING "kv_cache_v2.lua", TESTING "lean.lua",
    TESTING "kv_cache_bad.lua",
};
static const char *const layout_tag[NL] = {"v1", "kv", "kv2", "lean", "kvbad"};

/* What a reader (row) makes of a writer's (column) blob: NULL loads, else the
 * error names this. */
static const char *const expect[NL][NL] = {
    /* writer:  v1, kv, kv2, lean, kvbad */
    [V1] = {NULL, NULL, NULL, NULL, NULL},
    [KV] = {"custom.model missing", NULL, NULL, "custom.model missing",
            "custom.kv.blocks: u64 on the wire, u32 in layout 'kv_cache'"},
    [KV2] = {"custom.model missing", NULL, NULL, "custom.model missing",
             "custom.kv.blocks: u64 on the wire, u32 in layout 'kv_cache'"},
    [LEAN] = {NULL, NULL, NULL, NULL, NULL},
    [KVBAD] = {"custom.model missing", "custom.kv.blocks: u32 on the wire, u64 in layout "
                                       "'kv_cache_bad'",
               "custom.kv.blocks: u32 on the wire, u64 in layout 'kv_cache_bad'",
               "custom.model missing", NULL},
};

/* The application's fields, as native bytes; each writer publishes those
 * its layout can carry. */
static uint64_t f_base = 0x7f1200000000, f_blocks64 = 1024;
static uint32_t f_layers = 80, f_blocks = 1024, f_bbytes = 65536, f_rank = 3;
static const struct {
    const char *name;
    const void *v;
    size_t len;
} app_fields[] = {
    {"model", "llama-3-70b", 11},   {"tp_rank", &f_rank, 4},     {"kv.base", &f_base, 8},
    {"kv.layers", &f_layers, 4},    {"kv.blocks", &f_blocks, 4}, {"kv.block_bytes", &f_bbytes, 4},
    {"kv.dtype", "float16", 7},     {"kv.layout", "HND", 3},     {"app.note", "extra", 5},
};

static bool publishes(const xr_layout *w, const char *name, const void **v, size_t *len)
{
    for (size_t i = 0; i < sizeof app_fields / sizeof app_fields[0]; i++) {
        if (strcmp(app_fields[i].name, name))
            continue;
        *v = app_fields[i].v;
        *len = app_fields[i].len;
        int type = xr__layout_field_type(w, name);
        if (!strcmp(name, "kv.blocks") && type == XR_FT_U64) {
            *v = &f_blocks64;
            *len = 8;
        }
        if (type)
            return true;
        /* Undeclared names go in "extra" where the layout has one. */
        return !strcmp(name, "app.note") && xr__layout_field_check(w, name, *v, *len) == 0;
    }
    return false;
}

static const xr_md_field *find(const xr_md *m, const char *name)
{
    for (uint32_t i = 0; i < m->nfields; i++)
        if (!strcmp(m->fields[i].name, name))
            return &m->fields[i];
    return NULL;
}

START_TEST(compatibility_matrix)
{
    xr_layout *l[NL];
    for (int i = 0; i < NL; i++)
        l[i] = load(layout_file[i]);
    for (int w = 0; w < NL; w++) {
        xr_md m;
        md_fill(&m);
        xr_md_field fs[16];
        m.fields = fs;
        for (size_t i = 0; i < sizeof app_fields / sizeof app_fields[0]; i++) {
            const void *v;
            size_t len;
            if (publishes(l[w], app_fields[i].name, &v, &len))
                fs[m.nfields++] = (xr_md_field){.name = (char *)app_fields[i].name,
                                                .value = (uint8_t *)v, .len = (uint32_t)len};
        }
        size_t len;
        uint8_t *blob = encode(l[w], &m, &len);
        for (int r = 0; r < NL; r++) {
            xr_md d;
            int rc = xr__layout_md_decode(l[r], blob, len, 0, &d);
            const char *err = xr__error_last();
            if (expect[r][w]) {
                ck_assert_msg(rc == XR_EBADMD && strstr(err, expect[r][w]),
                              "%s reading %s: rc %d '%s', expected '%s'", layout_tag[r],
                              layout_tag[w], rc, rc ? err : "", expect[r][w]);
                continue;
            }
            ck_assert_msg(rc == 0, "%s reading %s: %s", layout_tag[r], layout_tag[w], err);
            /* The engine's fields always come through. */
            ck_assert_str_eq(d.name, "prefill-0");
            ck_assert_uint_eq(d.nrails, 2);
            ck_assert_uint_eq(d.rails[1].mr_mode, 0x400);
            ck_assert_uint_eq(d.regions[0].keys[1].bytes[0], 8);
            /* Each field the reader can name: the writer's value if it was
             * published, else the reader's default, else absent. */
            for (size_t i = 0; i < sizeof app_fields / sizeof app_fields[0]; i++) {
                const char *nm = app_fields[i].name;
                const void *v;
                size_t vlen;
                bool sent = publishes(l[w], nm, &v, &vlen);
                bool declared_r = xr__layout_field_type(l[r], nm) != 0;
                bool declared_w = xr__layout_field_type(l[w], nm) != 0;
                bool readable = declared_r ? declared_w : (!declared_w && xr__layout_field_check(l[r], nm, v, vlen) == 0);
                const xr_md_field *got = find(&d, nm);
                if (sent && readable) {
                    ck_assert_msg(got && got->len == vlen && !memcmp(got->value, v, vlen),
                                  "%s reading %s: field %s", layout_tag[r], layout_tag[w], nm);
                } else if (!strcmp(nm, "kv.layout") && r == KV2) {
                    ck_assert_msg(got && got->len == 3 && !memcmp(got->value, "NHD", 3),
                                  "%s reading %s: kv.layout default", layout_tag[r],
                                  layout_tag[w]);
                } else if (!strcmp(nm, "tp_rank") && declared_r) {
                    ck_assert_ptr_nonnull(got);
                } else {
                    ck_assert_msg(!got, "%s reading %s: field %s should be absent",
                                  layout_tag[r], layout_tag[w], nm);
                }
            }
            xr__layout_free(xr__layout_schema(l[r]), &d);
        }
        free(blob);
    }
    for (int i = 0; i < NL; i++)
        xr__layout_destroy(l[i]);
}
END_TEST

/* Damaged kv_cache blobs, with the CRC recomputed so that the body parser
 * sees every flip: each decodes or fails cleanly (ASan and LSan watch). */
START_TEST(random_damage_typed)
{
    xr_layout *kv = load(SHIPPED "kv_cache.lua");
    xr_md m;
    md_fill(&m);
    xr_md_field fs[8];
    m.fields = fs;
    for (size_t i = 0; i < 7; i++)
        fs[m.nfields++] = (xr_md_field){.name = (char *)app_fields[i].name,
                                        .value = (uint8_t *)app_fields[i].v,
                                        .len = (uint32_t)app_fields[i].len};
    size_t len;
    uint8_t *blob = encode(kv, &m, &len), *bad = malloc(len);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int ok = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(bad, blob, len);
        for (int k = 0; k < 1 + iter % 4; k++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            size_t at = XR_MD_HEADER + seed % (len - XR_MD_HEADER);
            bad[at] ^= (uint8_t)(1u << (seed >> 40) % 8);
        }
        xr_md d;
        int rc = xr__layout_decode_body(xr__layout_schema(kv), bad + XR_MD_HEADER,
                                       len - XR_MD_HEADER, &d);
        ck_assert_msg(rc == 0 || rc == XR_EBADMD, "iter %d: rc %d", iter, rc);
        if (!rc) {
            ok++;
            xr__layout_free(xr__layout_schema(kv), &d);
        }
    }
    ck_assert_int_gt(ok, 0); /* flips inside values still decode */
    free(bad);
    free(blob);
    xr__layout_destroy(kv);
}
END_TEST

static void add(TCase *tc)
{
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, default_script_is_builtin);
    tcase_add_loop_test(tc, malformed_layouts, 0, sizeof malformed / sizeof malformed[0]);
    tcase_add_test(tc, custom_field_types);
    tcase_add_test(tc, compatibility_matrix);
    tcase_add_test(tc, random_damage_typed);
}

int main(void)
{
    return unit_run("layout_script", add);
}
