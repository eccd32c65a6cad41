/*
 * config.c - the engine's config script (scripts/xrail.lua by default) and
 * the search path for every script an engine loads.
 *
 * Precedence, lowest first: the script, then fields set in xr_engine_opts,
 * then XRAIL_* environment variables. The script runs in the same sandbox as
 * policies and only returns a table; nothing in it touches the engine.
 */
#include "config.h"

#include "core/layout.h"
#include "core/lua_sandbox.h"
#include "core/script.h"
#include "policy.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void xr__config_free(xr_config *c)
{
    for (unsigned i = 0; i < c->nrails; i++) {
        free((char *)c->rails[i].provider);
        free((char *)c->rails[i].domain);
        free((char *)c->rails[i].src_addr);
        free((char *)c->rails[i].pci);
    }
    free(c->provider);
    free(c->domain);
    free(c->policy);
    free(c->layout);
    memset(c, 0, sizeof *c);
}

static char *opt_string(lua_State *L, int t, const char *key, const char *path, int *rc)
{
    lua_getfield(L, t, key);
    char *v = NULL;
    if (lua_type(L, -1) == LUA_TSTRING)
        v = strdup(lua_tostring(L, -1));
    else if (!lua_isnil(L, -1))
        *rc = xr__error_set(XR_ESCRIPT, "config %s: '%s' must be a string, not a %s", path, key,
                       luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

static lua_Integer opt_int(lua_State *L, int t, const char *key, lua_Integer min,
                           lua_Integer dflt, const char *path, int *rc)
{
    lua_getfield(L, t, key);
    lua_Integer v = dflt;
    if (!lua_isnil(L, -1)) {
        int isint;
        v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < min) {
            *rc = xr__error_set(XR_ESCRIPT, "config %s: '%s' must be an integer >= %lld", path, key,
                           (long long)min);
            v = dflt;
        }
    }
    lua_pop(L, 1);
    return v;
}

/* Push the config's sub-table `name` and check its keys against `keys`:
 * its stack index, or 0 when it is absent or wrong (then *rc says which).
 * The caller pops one value either way. */
static int sub_table(lua_State *L, int t, const char *name, const char *const keys[],
                     const char *path, char *ctx, size_t cap, int *rc)
{
    lua_getfield(L, t, name);
    if (!lua_istable(L, -1)) {
        if (!lua_isnil(L, -1))
            *rc = xr__error_set(XR_ESCRIPT, "config %s: %s must be a table", path, name);
        return 0;
    }
    int m = lua_gettop(L);
    snprintf(ctx, cap, "%s %s", path, name);
    lua_pushnil(L);
    while (!*rc && lua_next(L, m)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        bool known = false;
        for (size_t i = 0; keys[i] && !known; i++)
            known = !strcmp(k, keys[i]);
        if (!known) {
            char list[128];
            size_t w = 0;
            for (size_t i = 0; keys[i]; i++)
                xr__text_put(list, sizeof list, &w, "%s%s", i ? ", " : "", keys[i]);
            *rc = xr__error_set(XR_ESCRIPT, "config %s: unknown key '%s' (%s)", ctx,
                           *k ? k : luaL_typename(L, -1), list);
            lua_pop(L, 1);
        }
    }
    return *rc ? 0 : m;
}

/* true/false as 1/0; -1 when absent. */
static int opt_bool(lua_State *L, int t, const char *key, const char *ctx, int *rc)
{
    lua_getfield(L, t, key);
    int v = -1;
    if (lua_isboolean(L, -1))
        v = lua_toboolean(L, -1);
    else if (!*rc && !lua_isnil(L, -1))
        *rc = xr__error_set(XR_ESCRIPT, "config %s: %s must be true or false", ctx, key);
    lua_pop(L, 1);
    return v;
}

/* mr_cache = { enabled = true, max_entries = N, max_bytes = N } */
static int read_mr_cache(lua_State *L, int t, const char *path, xr_config *c)
{
    static const char *const keys[] = {"enabled", "max_entries", "max_bytes", NULL};
    c->mrc_enabled = -1;
    c->mrc_max_entries = c->mrc_max_bytes = -1;
    int rc = 0;
    char ctx[256];
    int m = sub_table(L, t, "mr_cache", keys, path, ctx, sizeof ctx, &rc);
    if (m) {
        c->mrc_enabled = opt_bool(L, m, "enabled", ctx, &rc);
        c->mrc_max_entries = opt_int(L, m, "max_entries", 0, -1, ctx, &rc);
        c->mrc_max_bytes = opt_int(L, m, "max_bytes", 0, -1, ctx, &rc);
    }
    lua_pop(L, 1);
    return rc;
}

/* stage = { chunk = N, slots = N, rx_slots = N, host = false } */
static int read_stage(lua_State *L, int t, const char *path, xr_config *c)
{
    static const char *const keys[] = {"chunk", "slots", "rx_slots", "host", NULL};
    c->stage_chunk = c->stage_slots = c->stage_rx_slots = -1;
    c->stage_host = -1;
    int rc = 0;
    char ctx[256];
    int m = sub_table(L, t, "stage", keys, path, ctx, sizeof ctx, &rc);
    if (m) {
        c->stage_host = opt_bool(L, m, "host", ctx, &rc);
        c->stage_chunk = opt_int(L, m, "chunk", 4096, -1, ctx, &rc);
        c->stage_slots = opt_int(L, m, "slots", 1, -1, ctx, &rc);
        c->stage_rx_slots = opt_int(L, m, "rx_slots", 1, -1, ctx, &rc);
    }
    lua_pop(L, 1);
    return rc;
}

/* One rail entry: { provider=, domain=, src_addr=, count=, speed= }. */
static int read_rail(lua_State *L, int t, const char *path, const char *where, xr_rail_spec *s)
{
    int rc = 0;
    char ctx[256];
    snprintf(ctx, sizeof ctx, "%s %s", path, where);
    s->provider = opt_string(L, t, "provider", ctx, &rc);
    s->domain = opt_string(L, t, "domain", ctx, &rc);
    s->src_addr = opt_string(L, t, "src_addr", ctx, &rc);
    s->count = (unsigned)opt_int(L, t, "count", 1, 1, ctx, &rc);
    s->speed_mbps = (uint64_t)opt_int(L, t, "speed", 0, 0, ctx, &rc);
    lua_Integer numa = opt_int(L, t, "numa", -1, -2, ctx, &rc);
    lua_Integer gpu = opt_int(L, t, "gpu", -1, -2, ctx, &rc);
    s->pci = opt_string(L, t, "pci", ctx, &rc);
    if (numa != -2)
        s->declared |= XR_DECL_NUMA, s->numa_node = (int)numa;
    if (gpu != -2)
        s->declared |= XR_DECL_GPU, s->gpu = (int)gpu;
    if (s->pci)
        s->declared |= XR_DECL_PCI;
    if (!rc && s->count > XR_MAX_RAILS)
        rc = xr__error_set(XR_ESCRIPT, "config %s: count %u exceeds %d", ctx, s->count, XR_MAX_RAILS);
    return rc;
}

static int read_rails(lua_State *L, int t, const char *path, xr_config *c)
{
    int rc = 0;
    lua_getfield(L, t, "rails");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return xr__error_set(XR_ESCRIPT, "config %s: 'rails' must be a table", path);
    }
    int rt = lua_gettop(L);
    c->max_rails = (unsigned)opt_int(L, rt, "max", 1, 0, path, &rc);
    if (!rc && c->max_rails > XR_MAX_RAILS)
        rc = xr__error_set(XR_ESCRIPT, "config %s: rails.max %u exceeds %d", path, c->max_rails,
                      XR_MAX_RAILS);
    lua_Integer n = luaL_len(L, rt);
    if (!rc && n > XR_MAX_RAILS)
        rc = xr__error_set(XR_ESCRIPT, "config %s: %lld rail entries, at most %d", path, (long long)n,
                      XR_MAX_RAILS);
    for (lua_Integer k = 1; !rc && k <= n; k++) { /* an explicit list */
        lua_rawgeti(L, rt, k);
        char where[32];
        snprintf(where, sizeof where, "rails[%lld]", (long long)k);
        if (!lua_istable(L, -1))
            rc = xr__error_set(XR_ESCRIPT, "config %s: %s must be a table", path, where);
        else
            rc = read_rail(L, lua_gettop(L), path, where, &c->rails[c->nrails++]);
        lua_pop(L, 1);
    }
    if (!rc && n == 0) {
        /* A single entry in the table itself: with a count it opens that
         * many rails; without one it is a discovery filter. */
        lua_getfield(L, rt, "count");
        bool counted = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (counted) {
            rc = read_rail(L, rt, path, "rails", &c->rails[0]);
            c->nrails = 1;
        } else {
            c->provider = opt_string(L, rt, "provider", path, &rc);
            c->domain = opt_string(L, rt, "domain", path, &rc);
        }
    }
    lua_pop(L, 1);
    return rc;
}

static const char *const known_keys[] = {"provider", "domain", "rails", "stripe_min",
                                         "chunk", "progress", "progress_sleep_us",
                                         "progress_threads", "policy",
                                         "layout", "log", "mr_cache", "stage", NULL};

int xr__config_load(const xr_engine_opts *o, const char *path, xr_config *c)
{
    memset(c, 0, sizeof *c);
    size_t len = 0;
    char *src = xr__script_read(path, &len);
    if (!src)
        return xr__error_set(XR_EINVAL, "config: cannot read '%s'", path);
    xr_lua *lua;
    xr_lua_limits lim = {.mem_bytes = o->script_mem, .instructions = 0};
    int rc = xr__lua_new(NULL, &lim, &lua);
    if (!rc)
        rc = xr__lua_load(lua, path, src, len, 1);
    free(src);
    if (rc) {
        xr__lua_free(lua);
        return rc;
    }
    lua_State *L = xr__lua_state(lua);
    if (!lua_istable(L, -1))
        rc = xr__error_set(XR_ESCRIPT, "config %s: must return a table, returned a %s", path,
                      luaL_typename(L, -1));
    int t = lua_gettop(L);
    /* A misspelt key would otherwise be silently ignored. */
    lua_pushnil(L);
    while (!rc && lua_next(L, t)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        bool ok = false;
        for (int i = 0; k && known_keys[i] && !ok; i++)
            ok = strcmp(k, known_keys[i]) == 0;
        if (!ok) {
            rc = xr__error_set(XR_ESCRIPT, "config %s: unknown key '%s'", path,
                          k ? k : luaL_typename(L, -1));
            lua_pop(L, 1);
        }
    }
    if (!rc) {
        c->provider = opt_string(L, t, "provider", path, &rc);
        c->domain = opt_string(L, t, "domain", path, &rc);
        c->policy = opt_string(L, t, "policy", path, &rc);
        c->layout = opt_string(L, t, "layout", path, &rc);
        c->stripe_min = opt_int(L, t, "stripe_min", 0, -1, path, &rc);
        c->chunk_size = opt_int(L, t, "chunk", 1, -1, path, &rc);
        c->log_level = (int)opt_int(L, t, "log", 0, -1, path, &rc);
        c->progress_sleep_us = opt_int(L, t, "progress_sleep_us", 0, -1, path, &rc);
        c->progress_threads = opt_int(L, t, "progress_threads", 1, -1, path, &rc);
        char *progress = opt_string(L, t, "progress", path, &rc);
        if (progress && strcmp(progress, "thread") && strcmp(progress, "manual"))
            rc = xr__error_set(XR_ESCRIPT, "config %s: progress must be \"manual\" or \"thread\", "
                                      "not \"%s\"", path, progress);
        c->progress_thread = progress && !strcmp(progress, "thread");
        free(progress);
    }
    if (!rc)
        rc = read_rails(L, t, path, c);
    if (!rc)
        rc = read_mr_cache(L, t, path, c);
    if (!rc)
        rc = read_stage(L, t, path, c);
    xr__lua_free(lua);
    if (rc)
        xr__config_free(c);
    return rc;
}

int xr_engine_config_get(xr_engine *e, char *buf, size_t cap)
{
    if (!e || (!buf && cap))
        return xr__error_set(XR_EINVAL, "xr_engine_config_get: NULL argument");
    size_t w = 0;
    const xr_engine_opts *o = &e->opts;
    xr__text_put(buf, cap, &w, "-- effective settings of engine '%s'\nreturn {\n  rails = {\n", e->name);
    for (unsigned i = 0; i < e->nrails; i++) {
        const xr_rail *r = &e->rails[i];
        xr__text_put(buf, cap, &w,
            "    { provider = \"%s\", domain = \"%s\", count = 1, speed = %llu, numa = %d, "
            "gpu = %d%s%s%s }, -- rail %u%s\n",
            r->provider, r->domain_name, (unsigned long long)r->speed_mbps, r->numa_node, r->gpu,
            *r->pci ? ", pci = \"" : "", r->pci, *r->pci ? "\"" : "", i,
            atomic_load(&r->up) ? "" : " (down)");
    }
    xr__text_put(buf, cap, &w, "  },\n  stripe_min = %zu,\n  chunk = %zu,\n  progress = \"%s\",\n"
            "  progress_threads = %u,\n  progress_sleep_us = %d,\n", o->stripe_min, o->chunk_size,
            e->progress_nthreads ? "thread" : "manual",
            o->progress_threads ? o->progress_threads : 1, o->progress_sleep_us);
    pthread_mutex_lock(&e->lock);
    const char *pol = xr__policy_path(e);
    /* A nil is followed by its comma before the comment, so that the output
     * stays a valid config script. */
    if (pol)
        xr__text_put(buf, cap, &w, "  policy = \"%s\",\n", pol);
    else
        xr__text_put(buf, cap, &w, "  policy = nil, -- built-in equal stripe\n");
    pthread_mutex_unlock(&e->lock);
    const char *lay = xr__layout_path(e->layout);
    if (lay)
        xr__text_put(buf, cap, &w, "  layout = \"%s\",\n", lay);
    else
        xr__text_put(buf, cap, &w, "  layout = nil, -- built-in xrail.v1\n");
    xr_mr_cache_opts mco;
    xr__mrc_opts_get(&e->mrc, &mco);
    const xr_mr_cache_opts *mc = &mco;
    const xr_stage_opts *so = &e->opts.stage;
    xr__text_put(buf, cap, &w, "  mr_cache = { enabled = %s, max_entries = %zu, max_bytes = %zu },\n",
            mc->enabled ? "true" : "false", mc->max_entries, mc->max_bytes);
    xr__text_put(buf, cap, &w, "  stage = { chunk = %zu, slots = %u, rx_slots = %u, host = %s },\n",
            so->chunk, so->slots, so->rx_slots, so->host ? "true" : "false");
    xr__text_put(buf, cap, &w, "  log = %d,\n}\n-- rail_depth %u, max_metadata %zu, max_notif %zu, "
                      "script_mem %zu, script_path %s\n",
        e->log.level, o->rail_depth, o->max_metadata, o->max_notif, o->script_mem,
        e->script_path ? e->script_path : "(none)");
    if (w >= cap)
        return xr__error_set(XR_ETOOSMALL, "xr_engine_config_get: %zu bytes needed", w + 1);
    return 0;
}
