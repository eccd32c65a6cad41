/*
 * layout.h - the metadata codec. A schema table (fields with ids, types,
 * required flags and where they live in a C struct) drives both encoding
 * and decoding, so a new layout is a new table, not new parsing code.
 */
#ifndef XR_LAYOUT_H
#define XR_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XR_MD_MAGIC 0x444D5258u /* "XRMD" little-endian */
#define XR_MD_FORMAT 2          /* 2: compact lists; 1 (no compact lists) is still read */
#define XR_MD_HEADER 16         /* magic u32, format u16, layout u16, total u32, crc u32 */
#define XR_MD_RECORD 8          /* id u16, type u8, flags u8, length u32 */
#define XR_MD_COMPACT 0x01      /* record flag: a list of flat elements, written compact */

typedef enum xr_ftype {
    XR_FT_U8 = 1, XR_FT_U16, XR_FT_U32, XR_FT_U64, XR_FT_I32,
    XR_FT_STR,    /* char *, NUL-terminated in memory, not on the wire */
    XR_FT_BYTES,  /* uint8_t *, uint32_t length at len_off */
    XR_FT_LIST,   /* array of elem->size structs, uint32_t count at len_off */
    XR_FT_STRUCT, /* a list element on the wire; as a field, a pointer to one elem->size
                     struct (a NULL pointer is not encoded) */
} xr_ftype;

typedef struct xr_schema xr_schema;

typedef struct xr_field {
    uint16_t id;
    const char *name;
    uint8_t type;
    bool required;
    size_t off;
    size_t len_off;
    const xr_schema *elem;
} xr_field;

struct xr_schema {
    const char *name;       /* the layout's, for messages */
    uint16_t layout_id;     /* in the header of a top-level schema: the layout's version */
    size_t size;
    const xr_field *fields;
    size_t nfields;         /* at most 64 */
    /* A struct whose fields may each be absent keeps a uint64_t bit mask at
     * seen_off: the decoder sets a bit per field it read, and the encoder
     * writes only the fields whose bit is set. */
    bool track_seen;
    size_t seen_off;
};

/* The built-in layout (id 1): what xr_metadata_get publishes. */
typedef struct xr_md_key {
    uint32_t rail;
    uint8_t raw;            /* 1: bytes are an FI_MR_RAW key; 0: a u64 key, little-endian */
    uint8_t *bytes;
    uint32_t nbytes;
    uint64_t base;          /* where the registration behind the key starts, if below the
                               region (a shared one); 0: at the region */
} xr_md_key;

typedef struct xr_md_rail {
    uint32_t index;
    char *provider;
    char *domain;
    uint32_t addr_format;
    uint8_t *addr;
    uint32_t addrlen;
    uint64_t mr_mode;
    uint64_t speed_mbps;
    int32_t numa;
} xr_md_rail;

typedef struct xr_md_region {
    uint64_t addr;
    uint64_t len;
    uint8_t kind;
    uint32_t device;
    uint8_t access;
    xr_md_key *keys;
    uint32_t nkeys;
    uint8_t staged;         /* 1: no keys; the owner's staging serves it (stage.c) */
} xr_md_region;

/* An application's own field (model, tp rank, block size, dtype...). */
typedef struct xr_md_field {
    char *name;
    uint8_t *value;
    uint32_t len;
} xr_md_field;

typedef struct xr_md {
    char *name;
    uint64_t instance;
    xr_md_rail *rails;
    uint32_t nrails;
    xr_md_region *regions;
    uint32_t nregions;
    xr_md_field *fields;    /* "extra": untyped application fields */
    uint32_t nfields;
    void *custom;           /* typed application fields of a layout script (layout_script.c) */
} xr_md;

extern const xr_schema xr__layout_md_schema;

/*
 * Encode `obj` with header and CRC. *len in: capacity; out: size.
 * XR_ETOOSMALL (and the size) when buf is NULL or too small.
 */
int xr__layout_encode(const xr_schema *s, const void *obj, void *buf, size_t *len);
/*
 * Validate and decode a blob into *obj (zeroed first). `max` caps the blob
 * size. On failure *obj holds nothing and the last error names the field,
 * e.g. "metadata: rails[5].address truncated: need 56 bytes, 12 left".
 */
int xr__layout_decode(const xr_schema *s, const void *buf, size_t len, size_t max, void *obj);
/* The body parser alone, without header or CRC checks (for the fuzz tests). */
int xr__layout_decode_body(const xr_schema *s, const void *body, size_t len, void *obj);
void xr__layout_free(const xr_schema *s, void *obj);
const char *xr__layout_type_name(uint8_t type);
/* Bytes of an integer type on the wire (and in memory); 0 for other types. */
size_t xr__layout_int_width(uint8_t type);

/*
 * Layout scripts (layout_script.c): a Lua table declaring sections, field
 * ids, types, required flags and a version, built into schema tables over
 * the same structs as the built-in layout, plus typed custom fields. A NULL
 * layout everywhere below means the built-in one (xr__layout_md_schema).
 */
typedef struct xr_layout xr_layout;

/* Run a layout script and check it: a malformed one is XR_ESCRIPT naming
 * the field. `script_mem` caps the Lua state (0: the default). */
int xr__layout_load(const char *path, size_t script_mem, xr_layout **out);
void xr__layout_destroy(xr_layout *l);
const xr_schema *xr__layout_schema(const xr_layout *l);
const char *xr__layout_path(const xr_layout *l);

/* Type of a declared custom field (XR_FT_*), or 0 if `name` is not declared. */
int xr__layout_field_type(const xr_layout *l, const char *name);
/* Whether a value may be published under `name`: a declared integer needs
 * exactly its width (native byte order), a string no NUL byte, and an
 * undeclared name a layout with an "extra" section. */
int xr__layout_field_check(const xr_layout *l, const char *name, const void *value, size_t len);
/* Encode `m`, whose `fields` hold every application field by name: the
 * declared ones go out typed in "custom" (a required one falls back to its
 * default, else is an error), the rest in "extra". */
int xr__layout_md_encode(const xr_layout *l, const xr_md *m, void *buf, size_t *len);
/* Decode, then fold the typed custom fields into m->fields, a missing
 * optional one as its default, so that readers see one name -> bytes list. */
int xr__layout_md_decode(const xr_layout *l, const void *buf, size_t len, size_t max, xr_md *m);
/* A readable listing of the layout (for `xrail layout show`). */
int xr__layout_describe(const xr_layout *l, char *buf, size_t cap);

#endif
