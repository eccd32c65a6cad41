/*
 * layout_script.c - layout scripts (scripts/layout/NAME.lua): the Lua front end
 * that turns a declared metadata schema into the codec's tables, and the
 * typed custom fields an application publishes through it.
 *
 * A layout declares the engine's own sections (agent name and instance,
 * rails, regions and their keys, untyped "extra" fields) by picking from
 * the built-in layout's fields, so every declared engine field lands in the
 * same C struct the rest of the engine reads; a layout may renumber, drop
 * optional or require fields, but may not change a type or drop a field the
 * engine cannot work without. The "custom" section is free: each field has
 * a name, an id, a type, a required flag and a default, and is stored in a
 * slot of a struct built here.
 *
 * The script runs once, in the sandbox, at engine creation; what it returns
 * is checked completely there, so a malformed layout never reaches the wire.
 */
#include "layout.h"

#include "script.h"
#include "log.h"
#include "lua_sandbox.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 63
#define FIELDS_MAX 64 /* the decoder's per-struct bit mask */

/* One custom field's storage; which slots hold a value is in custom_obj.seen. */
typedef struct slot {
    uint64_t u;
    uint8_t *p;
    uint32_t n;
} slot;

typedef struct custom_obj {
    uint64_t seen;
    slot s[];
} custom_obj;

typedef struct decl {
    const char *name;
    uint8_t type;
    bool required;
    bool has_default;
    uint8_t *def;          /* native bytes, as xr_peer_field returns them */
    uint32_t ndef;
} decl;

struct xr_layout {
    char *path;
    char *name;
    unsigned version;
    xr_schema *top;
    xr_schema *custom;     /* NULL: the layout declares no custom section */
    decl *decls;           /* one per custom field, in the custom schema's order */
    bool has_extra;
    void **owned;          /* everything built here, freed together */
    size_t nowned, cap;
};


static void *own(xr_layout *l, void *p)
{
    if (!p)
        return NULL;
    if (l->nowned == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 32;
        void **n = realloc(l->owned, cap * sizeof *n);
        if (!n) {
            free(p);
            return NULL;
        }
        l->owned = n;
        l->cap = cap;
    }
    return l->owned[l->nowned++] = p;
}

void xr__layout_destroy(xr_layout *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->nowned; i++)
        free(l->owned[i]);
    free(l->owned);
    free(l);
}

const xr_schema *xr__layout_schema(const xr_layout *l)
{
    return l ? l->top : &xr__layout_md_schema;
}

const char *xr__layout_path(const xr_layout *l)
{
    return l ? l->path : NULL;
}

/* ---- building the tables from the script's table ---- */

typedef struct build {
    xr_layout *l;
    lua_State *L;
    const char *script;
    int rc;                /* what the build answered, when no Lua error ended it */
} build;

static int bad(const build *b, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(const build *b, const char *path, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return xr__error_set(XR_ESCRIPT, "layout %s: %s%s%s", b->script, path, *path ? ": " : "", msg);
}

static int type_by_name(const char *s)
{
    for (int t = XR_FT_U8; t <= XR_FT_STRUCT; t++)
        if (!strcmp(s, xr__layout_type_name((uint8_t)t)))
            return t;
    return 0;
}

static bool name_ok(const char *s, size_t n)
{
    if (!n || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return false;
    return true;
}

/* A custom field's default, checked against its type, as native bytes. */
static int read_default(const build *b, const char *path, int idx, decl *d)
{
    lua_State *L = b->L;
    if (d->type == XR_FT_STR || d->type == XR_FT_BYTES) {
        if (lua_type(L, idx) != LUA_TSTRING)
            return bad(b, path, "default must be a string for a %s, not a %s",
                       xr__layout_type_name(d->type), luaL_typename(L, idx));
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (d->type == XR_FT_STR && memchr(s, 0, n))
            return bad(b, path, "a string default cannot hold a NUL byte");
        d->def = own(b->l, malloc(n + 1)); /* terminated: the encoder takes strings as C strings */
        if (!d->def)
            return xr__error_set(XR_ENOMEM, "layout %s: out of memory", b->script);
        memcpy(d->def, s, n);
        d->def[n] = 0;
        d->ndef = (uint32_t)n;
        return 0;
    }
    if (!lua_isinteger(L, idx))
        return bad(b, path, "default must be an integer for a %s", xr__layout_type_name(d->type));
    lua_Integer v = lua_tointeger(L, idx);
    bool fits;
    switch (d->type) {
    case XR_FT_U8: fits = v >= 0 && v <= UINT8_MAX; break;
    case XR_FT_U16: fits = v >= 0 && v <= UINT16_MAX; break;
    case XR_FT_U32: fits = v >= 0 && v <= UINT32_MAX; break;
    case XR_FT_I32: fits = v >= INT32_MIN && v <= INT32_MAX; break;
    default: fits = v >= 0; break;
    }
    if (!fits)
        return bad(b, path, "default %lld does not fit a %s", (long long)v, xr__layout_type_name(d->type));
    d->ndef = (uint32_t)xr__layout_int_width(d->type);
    d->def = own(b->l, malloc(8));
    if (!d->def)
        return xr__error_set(XR_ENOMEM, "layout %s: out of memory", b->script);
    uint8_t u8 = (uint8_t)v;
    uint16_t u16 = (uint16_t)v;
    uint32_t u32 = (uint32_t)v;
    int32_t i32 = (int32_t)v;
    uint64_t u64 = (uint64_t)v;
    const void *src = d->type == XR_FT_U8 ? (const void *)&u8 : d->type == XR_FT_U16 ? (const void *)&u16
                    : d->type == XR_FT_U32 ? (const void *)&u32 : d->type == XR_FT_I32 ? (const void *)&i32
                    : (const void *)&u64;
    memcpy(d->def, src, d->ndef);
    return 0;
}

static const char *const entry_keys[] = {"id", "name", "type", "required", "default", "fields", NULL};

/* Push entry i + 1 of the array at t, which must be a table of known keys:
 * a misspelt "requried" would otherwise be silently optional. */
static int open_entry(const build *b, int arr, lua_Integer i, const char *path)
{
    lua_State *L = b->L;
    lua_geti(L, arr, i + 1);
    if (!lua_istable(L, -1))
        return bad(b, path, "must be a table, not a %s", luaL_typename(L, -1));
    char list[128];
    const char *k = xr__lua_unknown_key(L, -1, entry_keys);
    if (k)
        return bad(b, path, "unknown key '%s' (a field has %s)", k,
                   xr__lua_key_list(entry_keys, list, sizeof list));
    return 0;
}

static int build_struct(build *b, const char *path, const xr_schema *cat, bool top,
                        xr_schema **out);

/* What every field entry (at the top of the stack) has: an id unique among
 * the `n` siblings before it, a type, a required flag, a name not seen yet. */
static int read_entry(const build *b, const char *fpath, const char *path, const xr_field *prev,
                      lua_Integer n, const char *name, lua_Integer *id, const char **ty,
                      int *type, bool *req)
{
    lua_State *L = b->L;
    lua_getfield(L, -1, "id");
    *id = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
    if (*id < 1 || *id > UINT16_MAX)
        return bad(b, fpath, "id must be an integer from 1 to 65535");
    lua_getfield(L, -1, "type");
    *ty = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : ""; /* the entry keeps it alive */
    *type = type_by_name(*ty);
    lua_pop(L, 1);
    lua_getfield(L, -1, "required");
    bool ok = lua_isnil(L, -1) || lua_isboolean(L, -1);
    *req = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!ok)
        return bad(b, fpath, "required must be true or false");
    for (lua_Integer k = 0; k < n; k++) {
        if (prev[k].id == *id)
            return bad(b, fpath, "duplicate id %lld (also %s%s%s)", (long long)*id, path,
                       *path ? "." : "", prev[k].name);
        if (!strcmp(prev[k].name, name))
            return bad(b, fpath, "declared twice");
    }
    return 0;
}

/* The custom section: free fields, each in its own slot. */
static int build_custom(build *b, const char *path, xr_schema **out)
{
    lua_State *L = b->L;
    xr_layout *l = b->l;
    int t = lua_gettop(L); /* the fields array */
    lua_Integer n = luaL_len(L, t);
    if (n < 1 || n > FIELDS_MAX)
        return bad(b, path, "declares %lld fields; 1 to %d are allowed", (long long)n, FIELDS_MAX);
    xr_field *fs = own(l, calloc((size_t)n, sizeof *fs));
    decl *ds = own(l, calloc((size_t)n, sizeof *ds));
    xr_schema *s = own(l, calloc(1, sizeof *s));
    if (!fs || !ds || !s)
        return xr__error_set(XR_ENOMEM, "layout %s: out of memory", b->script);
    for (lua_Integer i = 0; i < n; i++) {
        char fpath[160];
        snprintf(fpath, sizeof fpath, "%.120s[%lld]", path, (long long)i + 1);
        int rc = open_entry(b, t, i, fpath);
        if (rc)
            return rc;
        lua_getfield(L, -1, "name");
        size_t nlen = 0;
        const char *nm = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &nlen) : NULL;
        if (!nm || !name_ok(nm, nlen))
            return bad(b, fpath, "name must be 1 to %d of [A-Za-z0-9_.-]", NAME_MAX_LEN);
        char *name = own(l, strdup(nm));
        lua_pop(L, 1);
        if (!name)
            return xr__error_set(XR_ENOMEM, "layout %s: out of memory", b->script);
        snprintf(fpath, sizeof fpath, "%.80s.%.63s", path, name);
        lua_Integer id;
        const char *ty;
        int type;
        bool req;
        rc = read_entry(b, fpath, path, fs, i, name, &id, &ty, &type, &req);
        if (rc)
            return rc;
        if (!type || type >= XR_FT_LIST)
            return bad(b, fpath, "unknown type '%s' (custom fields are u8, u16, u32, u64, i32, "
                                 "string or bytes)", ty);
        lua_getfield(L, -1, "fields");
        if (!lua_isnil(L, -1))
            return bad(b, fpath, "a custom field has no sub-fields");
        lua_pop(L, 1);
        size_t base = offsetof(custom_obj, s) + (size_t)i * sizeof(slot);
        fs[i] = (xr_field){.id = (uint16_t)id, .name = name, .type = (uint8_t)type,
                           .required = req,
                           .off = base + (type >= XR_FT_STR ? offsetof(slot, p) : offsetof(slot, u)),
                           .len_off = base + offsetof(slot, n)};
        ds[i] = (decl){.name = name, .type = (uint8_t)type, .required = req};
        lua_getfield(L, -1, "default");
        if (!lua_isnil(L, -1)) {
            ds[i].has_default = true;
            rc = read_default(b, fpath, lua_gettop(L), &ds[i]);
            if (rc)
                return rc;
        }
        lua_pop(L, 2);
    }
    *s = (xr_schema){.name = l->name, .size = offsetof(custom_obj, s) + (size_t)n * sizeof(slot),
                     .fields = fs, .nfields = (size_t)n, .track_seen = true,
                     .seen_off = offsetof(custom_obj, seen)};
    l->custom = s;
    l->decls = ds;
    *out = s;
    return 0;
}

/* One declared engine section (or the top level), against its catalog: the
 * built-in layout's fields at the same place. The entry's "fields" array is
 * at the top of the stack. */
static int build_struct(build *b, const char *path, const xr_schema *cat, bool top,
                        xr_schema **out)
{
    lua_State *L = b->L;
    xr_layout *l = b->l;
    int t = lua_gettop(L);
    if (!lua_istable(L, t))
        return bad(b, path, "fields must be an array of field tables");
    lua_Integer n = luaL_len(L, t);
    if (n < 1 || n > FIELDS_MAX)
        return bad(b, path, "declares %lld fields; 1 to %d are allowed", (long long)n, FIELDS_MAX);
    xr_field *fs = own(l, calloc((size_t)n, sizeof *fs));
    xr_schema *s = own(l, calloc(1, sizeof *s));
    if (!fs || !s)
        return xr__error_set(XR_ENOMEM, "layout %s: out of memory", b->script);
    for (lua_Integer i = 0; i < n; i++) {
        char fpath[160];
        snprintf(fpath, sizeof fpath, "%.120s[%lld]", *path ? path : "fields", (long long)i + 1);
        int rc = open_entry(b, t, i, fpath);
        if (rc)
            return rc;
        lua_getfield(L, -1, "name");
        const char *nm = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        const xr_field *cf = NULL;
        for (size_t k = 0; nm && k < cat->nfields && !cf; k++)
            if (!strcmp(cat->fields[k].name, nm))
                cf = &cat->fields[k];
        bool custom = top && nm && !strcmp(nm, "custom");
        if (!cf && !custom) {
            char names[256];
            size_t w = 0;
            for (size_t k = 0; k < cat->nfields && w < sizeof names; k++)
                w += (size_t)snprintf(names + w, sizeof names - w, "%s%s", k ? ", " : "",
                                      cat->fields[k].name);
            return bad(b, fpath, "'%s' is not an engine field here (%s%s); application fields "
                                 "go in the top-level \"custom\" section",
                       nm ? nm : "(no name)", names, top ? ", custom" : "");
        }
        snprintf(fpath, sizeof fpath, "%.80s%s%.63s", path, *path ? "." : "", nm);
        lua_pop(L, 1);
        lua_Integer id;
        const char *ty;
        int type;
        bool req;
        rc = read_entry(b, fpath, path, fs, i, nm, &id, &ty, &type, &req);
        if (rc)
            return rc;
        int want = custom ? XR_FT_STRUCT : cf->type;
        if (!type)
            return bad(b, fpath, "unknown type '%s'", ty);
        if (type != want)
            return bad(b, fpath, "type %s, but the engine's field is a %s", ty,
                       xr__layout_type_name(want));
        lua_getfield(L, -1, "default");
        if (!lua_isnil(L, -1))
            return bad(b, fpath, "defaults are for custom fields; the engine fills its own");
        lua_pop(L, 1);
        lua_getfield(L, -1, "fields");
        xr_schema *sub = NULL;
        if (custom) {
            if (!lua_istable(L, -1))
                return bad(b, fpath, "fields must be an array of field tables");
            rc = build_custom(b, fpath, &sub);
            fs[i] = (xr_field){.name = "custom", .type = XR_FT_STRUCT,
                               .off = offsetof(xr_md, custom), .elem = sub};
            /* The section is required when anything in it is. */
            for (size_t k = 0; !rc && sub && k < sub->nfields; k++)
                req |= sub->fields[k].required;
        } else {
            fs[i] = *cf;
            if (cf->type == XR_FT_LIST && !lua_isnil(L, -1))
                rc = build_struct(b, fpath, cf->elem, false, &sub);
            else if (!lua_isnil(L, -1))
                rc = bad(b, fpath, "a %s has no sub-fields", xr__layout_type_name(cf->type));
            if (sub)
                fs[i].elem = sub; /* else the built-in element layout */
            if (!strcmp(cf->name, "extra") && top)
                l->has_extra = true;
        }
        if (rc)
            return rc;
        fs[i].id = (uint16_t)id;
        fs[i].required = req;
        lua_pop(L, 2);
    }
    /* What the engine cannot work without: the built-in layout's required
     * fields must be declared, and required, in every layout. */
    for (size_t k = 0; k < cat->nfields; k++) {
        const xr_field *cf = &cat->fields[k];
        lua_Integer i;
        for (i = 0; i < n && strcmp(fs[i].name, cf->name); i++)
            ;
        if (cf->required && (i == n || !fs[i].required))
            return bad(b, path, "'%s' must be declared with required = true: the engine needs it",
                       cf->name);
    }
    *s = (xr_schema){.name = l->name, .layout_id = top ? (uint16_t)l->version : 0,
                     .size = cat->size, .fields = fs, .nfields = (size_t)n};
    *out = s;
    return 0;
}

static int build_layout(build *b)
{
    lua_State *L = b->L;
    xr_layout *l = b->l;
    int t = lua_gettop(L);
    if (!lua_istable(L, t))
        return bad(b, "", "must return a table, returned a %s", luaL_typename(L, t));
    static const char *const top_keys[] = {"name", "version", "fields", NULL};
    char list[64];
    const char *k = xr__lua_unknown_key(L, t, top_keys);
    if (k)
        return bad(b, "", "unknown key '%s' (a layout has %s)", k,
                   xr__lua_key_list(top_keys, list, sizeof list));
    lua_getfield(L, t, "name");
    size_t nlen = 0;
    const char *nm = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &nlen) : NULL;
    if (!nm || !name_ok(nm, nlen))
        return bad(b, "name", "must be 1 to %d of [A-Za-z0-9_.-]", NAME_MAX_LEN);
    l->name = own(l, strdup(nm));
    lua_pop(L, 1);
    lua_getfield(L, t, "version");
    lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
    if (v < 1 || v > UINT16_MAX)
        return bad(b, "version", "must be an integer from 1 to 65535");
    l->version = (unsigned)v;
    if (!l->name)
        return xr__error_set(XR_ENOMEM, "layout %s: out of memory", b->script);
    lua_getfield(L, t, "fields");
    int rc = build_struct(b, "", &xr__layout_md_schema, true, &l->top);
    lua_pop(L, 1);
    return rc;
}

/* build_layout(table, build) under lua_pcall. */
static int build_protected(lua_State *L)
{
    build *b = lua_touserdata(L, 2);
    lua_settop(L, 1);
    b->rc = build_layout(b);
    return 0;
}

int xr__layout_load(const char *path, size_t script_mem, xr_layout **out)
{
    *out = NULL;
    size_t len = 0;
    char *src = xr__script_read(path, &len);
    if (!src)
        return xr__error_set(XR_EINVAL, "layout: cannot read '%s'", path);
    xr_layout *l = calloc(1, sizeof *l);
    xr_lua *lua = NULL;
    xr_lua_limits lim = {.mem_bytes = script_mem, .instructions = 0};
    int rc = !l || !own(l, l->path = strdup(path)) ? xr__error_set(XR_ENOMEM, "layout: out of memory")
                                                    : xr__lua_new(NULL, &lim, &lua);
    if (!rc)
        rc = xr__lua_load(lua, path, src, len, 1);
    free(src);
    if (!rc) {
        /* Built under the sandbox's protected call: a metamethod on the
         * script's tables runs under the budget, and its error is the
         * layout's error, not a panic. What the build allocated is owned by
         * l either way. */
        build b = {.l = l, .L = xr__lua_state(lua), .script = path};
        lua_pushcfunction(b.L, build_protected);
        lua_insert(b.L, -2);
        lua_pushlightuserdata(b.L, &b);
        rc = xr__lua_call(lua, 2, 0, "layout");
        if (!rc)
            rc = b.rc;
    }
    xr__lua_free(lua);
    if (rc) {
        xr__layout_destroy(l);
        return rc;
    }
    *out = l;
    return 0;
}

/* ---- custom fields ---- */

static const decl *find_decl(const xr_layout *l, const char *name, size_t *idx)
{
    for (size_t i = 0; l && l->custom && i < l->custom->nfields; i++)
        if (!strcmp(l->decls[i].name, name)) {
            if (idx)
                *idx = i;
            return &l->decls[i];
        }
    return NULL;
}

int xr__layout_field_type(const xr_layout *l, const char *name)
{
    const decl *d = find_decl(l, name, NULL);
    return d ? d->type : 0;
}

int xr__layout_field_check(const xr_layout *l, const char *name, const void *value, size_t len)
{
    const decl *d = find_decl(l, name, NULL);
    if (!d) {
        if (l && !l->has_extra)
            return xr__error_set(XR_EINVAL, "field '%s' is not declared in layout '%s' (%s), which "
                                       "has no \"extra\" section for undeclared fields",
                            name, l->name, l->path);
        return 0;
    }
    if (xr__layout_int_width(d->type) && len != xr__layout_int_width(d->type))
        return xr__error_set(XR_EINVAL, "field '%s' is a %s in layout '%s': its value must be %zu "
                                   "bytes in host byte order, not %zu",
                        name, xr__layout_type_name(d->type), l->name, xr__layout_int_width(d->type), len);
    if (d->type == XR_FT_STR && memchr(value, 0, len))
        return xr__error_set(XR_EINVAL, "field '%s' is a string in layout '%s': it cannot hold a NUL "
                                   "byte", name, l->name);
    return 0;
}

int xr__layout_md_encode(const xr_layout *l, const xr_md *m, void *buf, size_t *len)
{
    if (!l)
        return xr__layout_encode(&xr__layout_md_schema, m, buf, len);
    xr_md tmp = *m;
    size_t nd = l->custom ? l->custom->nfields : 0;
    custom_obj *obj = nd ? calloc(1, l->custom->size) : NULL;
    xr_md_field *extra = m->nfields ? calloc(m->nfields, sizeof *extra) : NULL;
    if ((nd && !obj) || (m->nfields && !extra)) {
        free(obj);
        free(extra);
        return xr__error_set(XR_ENOMEM, "metadata: out of memory");
    }
    tmp.nfields = 0;
    int rc = 0;
    uint8_t *strs[FIELDS_MAX] = {0};
    /* Values are borrowed from m, not copied: this object is only read. */
    for (uint32_t i = 0; i < m->nfields && !rc; i++) {
        size_t k;
        const xr_md_field *f = &m->fields[i];
        const decl *d = find_decl(l, f->name, &k);
        if (!d) {
            rc = xr__layout_field_check(l, f->name, f->value, f->len);
            extra[tmp.nfields++] = *f;
            continue;
        }
        if (xr__layout_int_width(d->type))
            memcpy(&obj->s[k].u, f->value, xr__layout_int_width(d->type));
        obj->s[k].p = f->value;
        obj->s[k].n = f->len;
        if (d->type == XR_FT_STR) { /* the encoder takes a C string; values have no NUL */
            obj->s[k].p = strs[k] = malloc(f->len + 1);
            if (!strs[k]) {
                rc = xr__error_set(XR_ENOMEM, "metadata: out of memory");
                break;
            }
            memcpy(strs[k], f->value, f->len);
            strs[k][f->len] = 0;
        }
        obj->seen |= 1ull << k;
    }
    for (size_t k = 0; k < nd && !rc; k++) {
        const decl *d = &l->decls[k];
        if ((obj->seen & (1ull << k)) || !d->required)
            continue;
        if (!d->has_default) {
            rc = xr__error_set(XR_EINVAL, "metadata: custom.%s is required by layout '%s' and has no "
                                     "default: set it with xr_metadata_set_field", d->name, l->name);
            break;
        }
        if (xr__layout_int_width(d->type))
            memcpy(&obj->s[k].u, d->def, xr__layout_int_width(d->type));
        obj->s[k].p = d->def;
        obj->s[k].n = d->ndef;
        obj->seen |= 1ull << k;
    }
    tmp.fields = extra;
    tmp.custom = obj;
    if (!rc)
        rc = xr__layout_encode(l->top, &tmp, buf, len);
    for (size_t k = 0; k < nd; k++)
        free(strs[k]);
    free(obj);
    free(extra);
    return rc;
}

int xr__layout_md_decode(const xr_layout *l, const void *buf, size_t len, size_t max, xr_md *m)
{
    int rc = xr__layout_decode(xr__layout_schema(l), buf, len, max, m);
    if (rc || !l || !l->custom)
        return rc;
    /* Fold the typed fields in front of the untyped ones; a typed name wins. */
    size_t nd = l->custom->nfields, n = 0;
    const custom_obj *obj = m->custom;
    xr_md_field *all = calloc(nd + m->nfields + 1, sizeof *all);
    if (!all) {
        xr__layout_free(l->top, m);
        return xr__error_set(XR_ENOMEM, "metadata: out of memory");
    }
    for (size_t k = 0; k < nd; k++) {
        const decl *d = &l->decls[k];
        bool have = obj && (obj->seen & (1ull << k));
        if (!have && !d->has_default)
            continue;
        const void *v = have ? (xr__layout_int_width(d->type) ? (const void *)&obj->s[k].u : obj->s[k].p) : d->def;
        /* A decoded string is NUL-terminated and has no length of its own. */
        uint32_t vn = !have ? d->ndef : xr__layout_int_width(d->type) ? (uint32_t)xr__layout_int_width(d->type)
                    : d->type == XR_FT_STR ? (uint32_t)strlen((const char *)obj->s[k].p) : obj->s[k].n;
        all[n].name = strdup(d->name);
        all[n].value = malloc(vn ? vn : 1);
        all[n].len = vn;
        if (!all[n].name || !all[n].value) {
            free(all[n].name);
            free(all[n].value);
            rc = xr__error_set(XR_ENOMEM, "metadata: out of memory");
            break;
        }
        if (vn)
            memcpy(all[n].value, v, vn);
        n++;
    }
    for (uint32_t i = 0; i < m->nfields; i++) {
        xr_md_field *f = &m->fields[i];
        if (!rc && !find_decl(l, f->name, NULL)) {
            all[n++] = *f;
        } else {
            free(f->name);
            free(f->value);
        }
    }
    free(m->fields);
    m->fields = all;
    m->nfields = (uint32_t)n;
    if (rc)
        xr__layout_free(l->top, m);
    return rc;
}

/* ---- description ---- */

static void describe(const xr_layout *l, const xr_schema *s, int depth, char *buf, size_t cap,
                     size_t *w)
{
    for (size_t i = 0; i < s->nfields; i++) {
        const xr_field *f = &s->fields[i];
        xr__text_put(buf, cap, w, "%*s%-5u %-14s %s", 2 * depth, "", f->id, f->name,
                xr__layout_type_name(f->type));
        if (f->required)
            xr__text_put(buf, cap, w, "%*s required", 6 - (int)strlen(xr__layout_type_name(f->type)), "");
        const decl *d = s == (l ? l->custom : NULL) ? &l->decls[i] : NULL;
        if (d && d->has_default) {
            if (xr__layout_int_width(d->type)) {
                uint64_t u = 0;
                int32_t i32;
                memcpy(&u, d->def, xr__layout_int_width(d->type));
                memcpy(&i32, d->def, 4);
                if (d->type == XR_FT_I32)
                    xr__text_put(buf, cap, w, " default %d", i32);
                else
                    xr__text_put(buf, cap, w, " default %llu", (unsigned long long)u);
            } else {
                xr__text_put(buf, cap, w, " default \"%.*s\"", (int)d->ndef, (const char *)d->def);
            }
        }
        xr__text_put(buf, cap, w, "\n");
        if (f->elem)
            describe(l, f->elem, depth + 1, buf, cap, w);
    }
}

int xr__layout_describe(const xr_layout *l, char *buf, size_t cap)
{
    size_t w = 0;
    const xr_schema *s = xr__layout_schema(l);
    xr__text_put(buf, cap, &w, "layout %s version %u%s%s\n", s->name, s->layout_id, l ? " from " : " (built in)",
        l ? l->path : "");
    xr__text_put(buf, cap, &w, "id    field          type\n");
    describe(l, s, 0, buf, cap, &w);
    if (w >= cap)
        return xr__error_set(XR_ETOOSMALL, "layout: %zu bytes needed to describe '%s'", w + 1, s->name);
    return 0;
}
