/*
 * layout.c - schema-driven metadata encoder and decoder.
 *
 * Wire format, all little-endian:
 *   header: magic u32 | format u16 | layout id u16 | total length u32 | crc32c u32
 *   body:   records, each id u16 | type u8 | flags u8 | length u32 | value
 * A list value is a count u32 followed by `count` STRUCT records. A list of
 * flat elements (integers, strings, bytes) carries XR_MD_COMPACT (format 2)
 * and each element is instead its length as a varint, then its fields as
 * varint id | varint length | value, integers without high zero bytes. The
 * CRC covers the whole blob with its own field read as zero.
 *
 * Every length is checked against the bytes left before it is used, and
 * nothing has a fixed size that grows with rails, regions or names. Unknown
 * record ids are skipped so that newer layouts stay readable; missing
 * optional fields keep their zero default.
 */
#include "layout.h"

#include "bytes.h"
#include "crc32c.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_MAX_LEN 160

static const char *const type_name[] = {
    [XR_FT_U8] = "u8",       [XR_FT_U16] = "u16",   [XR_FT_U32] = "u32",
    [XR_FT_U64] = "u64",     [XR_FT_I32] = "i32",   [XR_FT_STR] = "string",
    [XR_FT_BYTES] = "bytes", [XR_FT_LIST] = "list", [XR_FT_STRUCT] = "struct",
};

size_t xr__layout_int_width(uint8_t t)
{
    switch (t) {
    case XR_FT_U8: return 1;
    case XR_FT_U16: return 2;
    case XR_FT_U32: case XR_FT_I32: return 4;
    case XR_FT_U64: return 8;
    default: return 0;
    }
}

static uint64_t load_int(const void *obj, const xr_field *f)
{
    const char *p = (const char *)obj + f->off;
    switch (f->type) {
    case XR_FT_U8: return *(const uint8_t *)p;
    case XR_FT_U16: return *(const uint16_t *)p;
    case XR_FT_U32: return *(const uint32_t *)p;
    case XR_FT_I32: return (uint32_t)*(const int32_t *)p;
    default: return *(const uint64_t *)p;
    }
}

static void store_int(void *obj, const xr_field *f, uint64_t v)
{
    char *p = (char *)obj + f->off;
    switch (f->type) {
    case XR_FT_U8: *(uint8_t *)p = (uint8_t)v; break;
    case XR_FT_U16: *(uint16_t *)p = (uint16_t)v; break;
    case XR_FT_U32: *(uint32_t *)p = (uint32_t)v; break;
    case XR_FT_I32: *(int32_t *)p = (int32_t)(uint32_t)v; break;
    default: *(uint64_t *)p = v; break;
    }
}

#define FIELD_PTR(obj, f) (*(void **)((char *)(obj) + (f)->off))
#define FIELD_U32(obj, f) (*(uint32_t *)((char *)(obj) + (f)->len_off))

/* ---- encoding: one walk that measures when out is NULL ---- */

static size_t enc_struct(const xr_schema *s, const void *obj, uint8_t *out, bool compact);

static size_t enc_record(uint16_t id, uint8_t type, uint8_t flags, size_t vlen, uint8_t *out)
{
    if (out) {
        xr__bytes_put_le(out, id, 2);
        out[2] = type;
        out[3] = flags;
        xr__bytes_put_le(out + 4, vlen, 4);
    }
    return XR_MD_RECORD;
}

/* A list whose elements hold only integers, strings and bytes is written
 * compact: they are most of a many-rail blob (a key per region per rail),
 * and an 8-byte header per 1-byte value is what made a 32-rail, 100-region
 * blob 208 KB. */
static bool flat(const xr_schema *s)
{
    for (size_t i = 0; i < s->nfields; i++)
        if (s->fields[i].type >= XR_FT_LIST)
            return false;
    return true;
}

/* A field of a compact element: id and length as varints, an integer
 * without its high zero bytes. */
static size_t enc_compact(const xr_field *f, const void *obj, uint8_t *out)
{
    const void *val;
    size_t vlen;
    uint8_t num[8];
    if (f->type == XR_FT_STR) {
        val = FIELD_PTR(obj, f);
        vlen = val ? strlen(val) : 0;
    } else if (f->type == XR_FT_BYTES) {
        val = FIELD_PTR(obj, f);
        vlen = FIELD_U32(obj, f);
    } else {
        uint64_t v = load_int(obj, f);
        vlen = xr__bytes_min_width(v);
        xr__bytes_put_le(num, v, vlen);
        val = num;
    }
    size_t n = xr__bytes_put_varint(out, f->id);
    n += xr__bytes_put_varint(out ? out + n : NULL, vlen);
    if (out && vlen)
        memcpy(out + n, val, vlen);
    return n + vlen;
}

static size_t enc_list(const xr_field *f, const void *obj, uint8_t *v, bool compact)
{
    uint32_t count = FIELD_U32(obj, f);
    const char *elems = FIELD_PTR(obj, f);
    if (v)
        xr__bytes_put_le(v, count, 4);
    size_t vlen = 4;
    for (uint32_t i = 0; i < count; i++) {
        const void *el = elems + (size_t)i * f->elem->size;
        uint8_t *rec = v ? v + vlen : NULL;
        if (compact) { /* element length as a varint, then its fields */
            size_t n = enc_struct(f->elem, el, NULL, true);
            size_t h = xr__bytes_put_varint(rec, n);
            if (rec) /* measuring, the first walk was the whole of it */
                enc_struct(f->elem, el, rec + h, true);
            vlen += h + n;
        } else {
            size_t n = enc_struct(f->elem, el, rec ? rec + XR_MD_RECORD : NULL, false);
            enc_record(0, XR_FT_STRUCT, 0, n, rec);
            vlen += XR_MD_RECORD + n;
        }
    }
    return vlen;
}

static size_t enc_field(const xr_field *f, const void *obj, uint8_t *out, bool compact)
{
    if (compact)
        return enc_compact(f, obj, out);
    size_t vlen;
    uint8_t flags = 0;
    uint8_t *v = out ? out + XR_MD_RECORD : NULL;
    switch (f->type) {
    case XR_FT_STR: {
        const char *str = FIELD_PTR(obj, f);
        vlen = str ? strlen(str) : 0;
        if (v && vlen)
            memcpy(v, str, vlen);
        break;
    }
    case XR_FT_BYTES:
        vlen = FIELD_U32(obj, f);
        if (v && vlen)
            memcpy(v, FIELD_PTR(obj, f), vlen);
        break;
    case XR_FT_LIST:
        flags = flat(f->elem) ? XR_MD_COMPACT : 0;
        vlen = enc_list(f, obj, v, flags != 0);
        break;
    case XR_FT_STRUCT:
        vlen = enc_struct(f->elem, FIELD_PTR(obj, f), v, false);
        break;
    default:
        vlen = xr__layout_int_width(f->type);
        if (v)
            xr__bytes_put_le(v, load_int(obj, f), vlen);
        break;
    }
    enc_record(f->id, f->type, flags, vlen, out);
    return XR_MD_RECORD + vlen;
}

static size_t enc_struct(const xr_schema *s, const void *obj, uint8_t *out, bool compact)
{
    size_t n = 0;
    uint64_t present = s->track_seen ? *(const uint64_t *)((const char *)obj + s->seen_off) : ~0ull;
    for (size_t i = 0; i < s->nfields; i++) {
        const xr_field *f = &s->fields[i];
        if (!(present & (1ull << i)) || (f->type == XR_FT_STRUCT && !FIELD_PTR(obj, f)))
            continue;
        n += enc_field(f, obj, out ? out + n : NULL, compact);
    }
    return n;
}

static uint32_t blob_crc(const uint8_t *p, size_t total)
{
    static const uint8_t zero[4];
    uint32_t c = xr__crc32c_update(0, p, 12);
    c = xr__crc32c_update(c, zero, 4);
    return xr__crc32c_update(c, p + XR_MD_HEADER, total - XR_MD_HEADER);
}

int xr__layout_encode(const xr_schema *s, const void *obj, void *buf, size_t *len)
{
    if (!s || !obj || !len)
        return xr__error_set(XR_EINVAL, "metadata: encode: NULL argument");
    size_t total = XR_MD_HEADER + enc_struct(s, obj, NULL, false);
    if (total > UINT32_MAX)
        return xr__error_set(XR_EINVAL, "metadata: %zu bytes exceeds the 4 GiB format limit", total);
    if (!buf || *len < total) {
        size_t cap = buf ? *len : 0;
        *len = total;
        return xr__error_set(XR_ETOOSMALL, "metadata: need %zu bytes, buffer holds %zu", total, cap);
    }
    uint8_t *p = buf;
    xr__bytes_put_le(p, XR_MD_MAGIC, 4);
    xr__bytes_put_le(p + 4, XR_MD_FORMAT, 2);
    xr__bytes_put_le(p + 6, s->layout_id, 2);
    xr__bytes_put_le(p + 8, total, 4);
    enc_struct(s, obj, p + XR_MD_HEADER, false);
    xr__bytes_put_le(p + 12, blob_crc(p, total), 4);
    *len = total;
    return 0;
}

/* ---- decoding ---- */

static int dec_struct(const xr_schema *s, const uint8_t *p, size_t len, void *obj,
                      const char *path, bool cut, bool compact);

/* Paths name the field in an error. A blob is decoded first without them
 * (path `noname`: a 32-rail blob has tens of thousands of fields, and their
 * paths were 40% of its decoding), and only a blob that fails is decoded
 * again to name what is wrong. */
static const char noname[] = "";

static size_t put_str(char *out, size_t at, const char *s)
{
    size_t n = strlen(s);
    if (n > PATH_MAX_LEN - 1 - at)
        n = PATH_MAX_LEN - 1 - at;
    memcpy(out + at, s, n);
    out[at + n] = 0;
    return at + n;
}

static const char *join(char *out, const char *path, const char *name)
{
    if (path == noname)
        return noname;
    size_t at = put_str(out, 0, path);
    put_str(out, *path ? put_str(out, at, ".") : at, name);
    return out;
}

/* "path[i]" */
static const char *index_path(char *out, const char *path, uint32_t i)
{
    if (path == noname)
        return noname;
    char d[16];
    size_t k = sizeof d;
    d[--k] = 0;
    d[--k] = ']';
    do
        d[--k] = (char)('0' + i % 10);
    while (i /= 10);
    d[--k] = '[';
    size_t at = strlen(path) < 140 ? strlen(path) : 140;
    memcpy(out, path, at);
    out[at] = 0;
    put_str(out, at, d + k);
    return out;
}

/* One element of a compact list: its length as a varint, then its fields.
 * *used: the bytes it took. */
static int dec_compact_elem(const xr_field *f, const uint8_t *p, size_t left, void *el,
                            const char *epath, size_t *used)
{
    uint64_t elen;
    size_t h = xr__bytes_get_varint(p, left, &elen);
    if (!h)
        return xr__error_set(XR_EBADMD, "metadata: %s length truncated or malformed (%zu bytes "
                                        "left)", epath, left);
    if (elen > left - h) {
        int rc = dec_struct(f->elem, p + h, left - h, el, epath, true, true);
        if (rc)
            return rc;
        return xr__error_set(XR_EBADMD, "metadata: %s truncated: need %llu bytes, %zu left", epath,
                             (unsigned long long)elen, left - h);
    }
    *used = h + (size_t)elen;
    return dec_struct(f->elem, p + h, (size_t)elen, el, epath, false, true);
}

/* `cut`: the record claims more bytes than remain; parse what is there so
 * that the error names the innermost field that is short. `compact`: the
 * elements are written compact (enc_list). */
static int dec_list(const xr_field *f, const uint8_t *v, size_t vlen, void *obj,
                    const char *fpath, bool cut, bool compact)
{
    if (vlen < 4)
        return xr__error_set(XR_EBADMD, "metadata: %s count truncated: need 4 bytes, %zu left",
                        fpath, vlen);
    uint32_t count = (uint32_t)xr__bytes_get_le(v, 4);
    size_t left = vlen - 4;
    /* Each element takes at least a record header (a byte when compact), so
     * a count the bytes cannot hold is rejected before anything is
     * allocated for it. */
    size_t least = compact ? 1 : XR_MD_RECORD;
    if (cut && count > left / least + 1)
        count = (uint32_t)(left / least + 1);
    else if (!cut && count > left / least)
        return xr__error_set(XR_EBADMD,
                        "metadata: %s count %u exceeds what %zu bytes can hold", fpath,
                        count, left);
    char *elems = count ? calloc(count, f->elem->size) : NULL; /* bounded by the bytes */
    if (count && !elems)
        return xr__error_set(XR_ENOMEM, "metadata: %s: cannot allocate %u elements", fpath, count);
    FIELD_PTR(obj, f) = elems;
    FIELD_U32(obj, f) = 0;
    const uint8_t *p = v + 4;
    for (uint32_t i = 0; i < count; i++) {
        char ebuf[PATH_MAX_LEN];
        const char *epath = index_path(ebuf, fpath, i);
        void *el = elems + (size_t)i * f->elem->size;
        if (compact) {
            size_t used = 0;
            FIELD_U32(obj, f) = i + 1; /* so that a failure frees what was decoded */
            int rc = left ? dec_compact_elem(f, p, left, el, epath, &used)
                          : xr__error_set(XR_EBADMD, "metadata: %s truncated: no bytes left",
                                          epath);
            if (rc)
                return rc;
            p += used;
            left -= used;
            continue;
        }
        if (left < XR_MD_RECORD)
            return xr__error_set(XR_EBADMD, "metadata: %s truncated: need %d bytes, %zu left",
                            epath, XR_MD_RECORD, left);
        uint8_t type = p[2];
        size_t elen = xr__bytes_get_le(p + 4, 4);
        if (type != XR_FT_STRUCT)
            return xr__error_set(XR_EBADMD, "metadata: %s: element type %u, expected struct", epath,
                            type);
        if (elen > left - XR_MD_RECORD) {
            int rc = dec_struct(f->elem, p + XR_MD_RECORD, left - XR_MD_RECORD, el, epath, true,
                                false);
            FIELD_U32(obj, f) = i + 1;
            if (rc)
                return rc;
            return xr__error_set(XR_EBADMD, "metadata: %s truncated: need %zu bytes, %zu left",
                            epath, elen, left - XR_MD_RECORD);
        }
        FIELD_U32(obj, f) = i + 1; /* so that a failure frees what was decoded */
        int rc = dec_struct(f->elem, p + XR_MD_RECORD, elen, el, epath, false, false);
        if (rc)
            return rc;
        p += XR_MD_RECORD + elen;
        left -= XR_MD_RECORD + elen;
    }
    if (left)
        return xr__error_set(XR_EBADMD, "metadata: %s: %zu bytes after the last of %u elements",
                        fpath, left, count);
    return 0;
}

/* `flags`: the record's (XR_MD_COMPACT on a list); `compact`: the field is
 * inside a compact element, where an integer may leave off high zero bytes. */
static int dec_field(const xr_field *f, const uint8_t *v, size_t vlen, void *obj,
                     const char *fpath, bool cut, uint8_t flags, bool compact)
{
    switch (f->type) {
    case XR_FT_STR: {
        if (memchr(v, 0, vlen))
            return xr__error_set(XR_EBADMD, "metadata: %s contains a NUL byte", fpath);
        char *str = malloc(vlen + 1);
        if (!str)
            return xr__error_set(XR_ENOMEM, "metadata: %s: cannot allocate %zu bytes", fpath, vlen);
        memcpy(str, v, vlen);
        str[vlen] = 0;
        FIELD_PTR(obj, f) = str;
        return 0;
    }
    case XR_FT_BYTES: {
        uint8_t *b = malloc(vlen ? vlen : 1);
        if (!b)
            return xr__error_set(XR_ENOMEM, "metadata: %s: cannot allocate %zu bytes", fpath, vlen);
        memcpy(b, v, vlen);
        FIELD_PTR(obj, f) = b;
        FIELD_U32(obj, f) = (uint32_t)vlen;
        return 0;
    }
    case XR_FT_LIST:
        if (compact) /* only flat elements are written compact */
            return xr__error_set(XR_EBADMD, "metadata: %s: a list inside a compact list", fpath);
        return dec_list(f, v, vlen, obj, fpath, cut, flags & XR_MD_COMPACT);
    case XR_FT_STRUCT: {
        if (compact)
            return xr__error_set(XR_EBADMD, "metadata: %s: a struct inside a compact list", fpath);
        void *sub = calloc(1, f->elem->size);
        if (!sub)
            return xr__error_set(XR_ENOMEM, "metadata: %s: cannot allocate %zu bytes", fpath,
                            f->elem->size);
        FIELD_PTR(obj, f) = sub;
        return dec_struct(f->elem, v, vlen, sub, fpath, cut, false);
    }
    default:
        if (compact && vlen <= xr__layout_int_width(f->type)) {
            store_int(obj, f, xr__bytes_get_le(v, vlen));
            return 0;
        }
        if (compact)
            return xr__error_set(XR_EBADMD, "metadata: %s: %s of %zu bytes, at most %zu", fpath,
                            type_name[f->type], vlen, xr__layout_int_width(f->type));
        if (vlen != xr__layout_int_width(f->type))
            return xr__error_set(XR_EBADMD, "metadata: %s: %s of %zu bytes, expected %zu", fpath,
                            type_name[f->type], vlen, xr__layout_int_width(f->type));
        store_int(obj, f, xr__bytes_get_le(v, vlen));
        return 0;
    }
}

/* One record's header: *id, *type (0 inside a compact element, where the
 * reader's layout gives it), *flags, *vlen; returns its length, or 0 when it
 * is cut short or malformed. */
static size_t dec_header(const uint8_t *p, size_t len, bool compact, uint16_t *id, uint8_t *type,
                         uint8_t *flags, size_t *vlen)
{
    if (!compact) {
        if (len < XR_MD_RECORD)
            return 0;
        *id = (uint16_t)xr__bytes_get_le(p, 2);
        *type = p[2];
        *flags = p[3];
        *vlen = xr__bytes_get_le(p + 4, 4);
        return XR_MD_RECORD;
    }
    uint64_t i, v;
    size_t a = xr__bytes_get_varint(p, len, &i);
    size_t b = a ? xr__bytes_get_varint(p + a, len - a, &v) : 0;
    if (!b || i > UINT16_MAX || v > UINT32_MAX)
        return 0;
    *id = (uint16_t)i, *type = 0, *flags = 0, *vlen = (size_t)v;
    return a + b;
}

static int dec_struct(const xr_schema *s, const uint8_t *p, size_t len, void *obj,
                      const char *path, bool cut, bool compact)
{
    uint64_t seen = 0;
    while (len) {
        uint16_t id;
        uint8_t type, flags;
        size_t vlen, h = dec_header(p, len, compact, &id, &type, &flags, &vlen);
        if (!h)
            return xr__error_set(XR_EBADMD, "metadata: %s%srecord header truncated or malformed: "
                                            "%zu bytes left", path, *path ? ": " : "", len);
        len -= h;
        p += h;
        const xr_field *f = NULL;
        size_t fi;
        for (fi = 0; fi < s->nfields; fi++)
            if (s->fields[fi].id == id) {
                f = &s->fields[fi];
                break;
            }
        if (f && compact)
            type = f->type;
        char fbuf[PATH_MAX_LEN];
        const char *fpath = f ? join(fbuf, path, f->name) : path;
        if (!f && path != noname)
            snprintf(fbuf, sizeof fbuf, "%s%sfield#%u", path, *path ? "." : "", id), fpath = fbuf;
        if (vlen > len) {
            if (f && f->type == XR_FT_LIST && type == XR_FT_LIST && !(seen & (1ull << fi))) {
                int rc = dec_field(f, p, len, obj, fpath, true, flags, compact);
                if (rc)
                    return rc;
            }
            return xr__error_set(XR_EBADMD, "metadata: %s truncated: need %zu bytes, %zu left", fpath,
                            vlen, len);
        }
        if (f) {
            if (type != f->type)
                return xr__error_set(XR_EBADMD, "metadata: %s: %s on the wire, %s in layout '%s'",
                                fpath, xr__layout_type_name(type),
                                type_name[f->type], s->name);
            if (flags & ~(f->type == XR_FT_LIST ? XR_MD_COMPACT : 0))
                return xr__error_set(XR_EBADMD, "metadata: %s: unknown record flags 0x%02x", fpath,
                                     flags);
            if (seen & (1ull << fi))
                return xr__error_set(XR_EBADMD, "metadata: %s appears twice", fpath);
            seen |= 1ull << fi;
            if (s->track_seen)
                *(uint64_t *)((char *)obj + s->seen_off) = seen;
            int rc = dec_field(f, p, vlen, obj, fpath, false, flags, compact);
            if (rc)
                return rc;
        }
        p += vlen;
        len -= vlen;
    }
    for (size_t fi = 0; fi < s->nfields && !cut; fi++)
        if (s->fields[fi].required && !(seen & (1ull << fi))) {
            char fbuf[PATH_MAX_LEN];
            const char *fpath = join(fbuf, path, s->fields[fi].name);
            /* A missing section is reported by the first field in it that
             * the reader needs, which is what a user has to go and set. */
            const xr_field *f = &s->fields[fi];
            for (size_t k = 0; fpath != noname && f->type == XR_FT_STRUCT && k < f->elem->nfields;
                 k++)
                if (f->elem->fields[k].required) {
                    size_t n = strlen(fbuf);
                    snprintf(fbuf + n, sizeof fbuf - n, ".%s", f->elem->fields[k].name);
                    break;
                }
            return xr__error_set(XR_EBADMD, "metadata: %s missing (required by layout '%s')", fpath,
                            s->name);
        }
    return 0;
}

static void free_struct(const xr_schema *s, void *obj)
{
    for (size_t i = 0; i < s->nfields; i++) {
        const xr_field *f = &s->fields[i];
        if (f->type == XR_FT_LIST) {
            char *elems = FIELD_PTR(obj, f);
            for (uint32_t k = 0; elems && k < FIELD_U32(obj, f); k++)
                free_struct(f->elem, elems + (size_t)k * f->elem->size);
        }
        if (f->type == XR_FT_STRUCT && FIELD_PTR(obj, f))
            free_struct(f->elem, FIELD_PTR(obj, f));
        if (f->type >= XR_FT_STR) {
            free(FIELD_PTR(obj, f));
            FIELD_PTR(obj, f) = NULL;
            if (f->type == XR_FT_BYTES || f->type == XR_FT_LIST)
                FIELD_U32(obj, f) = 0;
        }
    }
}

const char *xr__layout_type_name(uint8_t type)
{
    return type >= XR_FT_U8 && type <= XR_FT_STRUCT ? type_name[type] : "unknown type";
}

void xr__layout_free(const xr_schema *s, void *obj)
{
    if (s && obj)
        free_struct(s, obj);
}

int xr__layout_decode_body(const xr_schema *s, const void *body, size_t len, void *obj)
{
    memset(obj, 0, s->size);
    int rc = dec_struct(s, body, len, obj, noname, false, false);
    if (rc) { /* again, naming the field that is wrong */
        free_struct(s, obj);
        memset(obj, 0, s->size);
        rc = dec_struct(s, body, len, obj, "", false, false);
        if (rc)
            free_struct(s, obj);
    }
    return rc;
}

int xr__layout_decode(const xr_schema *s, const void *buf, size_t len, size_t max, void *obj)
{
    if (!s || !obj || (!buf && len))
        return xr__error_set(XR_EINVAL, "metadata: decode: NULL argument");
    memset(obj, 0, s->size);
    const uint8_t *p = buf;
    if (len < XR_MD_HEADER)
        return xr__error_set(XR_EBADMD, "metadata: header truncated: need %d bytes, %zu given",
                        XR_MD_HEADER, len);
    uint32_t magic = (uint32_t)xr__bytes_get_le(p, 4);
    if (magic != XR_MD_MAGIC)
        return xr__error_set(XR_EBADMD, "metadata: bad magic 0x%08x (expected 0x%08x): not xrail metadata",
                        magic, XR_MD_MAGIC);
    unsigned format = (unsigned)xr__bytes_get_le(p + 4, 2), layout = (unsigned)xr__bytes_get_le(p + 6, 2);
    size_t total = xr__bytes_get_le(p + 8, 4);
    if (total < XR_MD_HEADER)
        return xr__error_set(XR_EBADMD, "metadata: total length %zu is shorter than the header", total);
    if (total > len)
        return xr__error_set(XR_EBADMD, "metadata: blob truncated: header says %zu bytes, %zu given",
                        total, len);
    if (total < len)
        return xr__error_set(XR_EBADMD, "metadata: %zu trailing bytes after the %zu-byte blob",
                        len - total, total);
    if (max && total > max)
        return xr__error_set(XR_EBADMD, "metadata: %zu bytes exceeds the configured maximum of %zu",
                        total, max);
    uint32_t want = (uint32_t)xr__bytes_get_le(p + 12, 4), got = blob_crc(p, total);
    if (want != got)
        return xr__error_set(XR_EBADMD, "metadata: CRC32C mismatch (blob says 0x%08x, bytes give 0x%08x): corrupted",
                        want, got);
    if (format < 1 || format > XR_MD_FORMAT)
        return xr__error_set(XR_EVERSION, "metadata: format version %u, this build reads 1 to %u",
                             format, XR_MD_FORMAT);
    /* The layout version is informational: layouts are compatible field by
     * field (unknown records skipped, required ones checked), not by number. */
    (void)layout;
    return xr__layout_decode_body(s, p + XR_MD_HEADER, total - XR_MD_HEADER, obj);
}

/* ---- the built-in layout ---- */

#define F_INT(st, i, nm, t, req) { .id = i, .name = #nm, .type = t, .required = req, .off = offsetof(st, nm) }
#define F_STR(st, i, nm, req) { .id = i, .name = #nm, .type = XR_FT_STR, .required = req, .off = offsetof(st, nm) }
#define F_BYTES(st, i, nm, lenf, req)                                                      \
    { .id = i, .name = #nm, .type = XR_FT_BYTES, .required = req, .off = offsetof(st, nm), \
      .len_off = offsetof(st, lenf) }
#define F_LIST(st, i, nm, cntf, sch, req)                                                  \
    { .id = i, .name = #nm, .type = XR_FT_LIST, .required = req, .off = offsetof(st, nm),  \
      .len_off = offsetof(st, cntf), .elem = &sch }
#define SCHEMA(nm, id, st, flds) { .name = nm, .layout_id = id, .size = sizeof(st), .fields = flds, \
                                   .nfields = sizeof(flds) / sizeof(flds[0]) }

static const xr_field key_fields[] = {
    F_INT(xr_md_key, 1, rail, XR_FT_U32, true),
    F_INT(xr_md_key, 2, raw, XR_FT_U8, false),
    F_BYTES(xr_md_key, 3, bytes, nbytes, true),
    F_INT(xr_md_key, 4, base, XR_FT_U64, true), /* offsets count from it */
};
static const xr_schema key_schema = SCHEMA("xrail.v1", 0, xr_md_key, key_fields);

static const xr_field rail_fields[] = {
    F_INT(xr_md_rail, 1, index, XR_FT_U32, true),
    F_STR(xr_md_rail, 2, provider, true),
    F_STR(xr_md_rail, 3, domain, false),
    F_INT(xr_md_rail, 4, addr_format, XR_FT_U32, true),
    F_BYTES(xr_md_rail, 5, addr, addrlen, true),
    F_INT(xr_md_rail, 6, mr_mode, XR_FT_U64, true), /* how the peer addresses RMA */
    F_INT(xr_md_rail, 7, speed_mbps, XR_FT_U64, false),
    F_INT(xr_md_rail, 8, numa, XR_FT_I32, false),
};
static const xr_schema rail_schema = SCHEMA("xrail.v1", 0, xr_md_rail, rail_fields);

static const xr_field region_fields[] = {
    F_INT(xr_md_region, 1, addr, XR_FT_U64, true),
    F_INT(xr_md_region, 2, len, XR_FT_U64, true),
    F_INT(xr_md_region, 3, kind, XR_FT_U8, false),
    F_INT(xr_md_region, 4, device, XR_FT_U32, false),
    F_INT(xr_md_region, 5, access, XR_FT_U8, true),
    F_LIST(xr_md_region, 6, keys, nkeys, key_schema, true),
    F_INT(xr_md_region, 7, staged, XR_FT_U8, false), /* readers without it see no keys */
};
static const xr_schema region_schema = SCHEMA("xrail.v1", 0, xr_md_region, region_fields);

static const xr_field custom_fields[] = {
    F_STR(xr_md_field, 1, name, true),
    F_BYTES(xr_md_field, 2, value, len, true),
};
static const xr_schema custom_schema = SCHEMA("xrail.v1", 0, xr_md_field, custom_fields);

/* `fields` is optional and new records are skipped by readers that do not
 * know them, so engines with and without custom fields interoperate. */
static const xr_field md_fields[] = {
    F_STR(xr_md, 1, name, true),
    F_INT(xr_md, 2, instance, XR_FT_U64, true),
    F_LIST(xr_md, 3, rails, nrails, rail_schema, true),
    F_LIST(xr_md, 4, regions, nregions, region_schema, false),
    { .id = 5, .name = "extra", .type = XR_FT_LIST, .off = offsetof(xr_md, fields),
      .len_off = offsetof(xr_md, nfields), .elem = &custom_schema },
};
const xr_schema xr__layout_md_schema = SCHEMA("xrail.v1", 1, xr_md, md_fields);
