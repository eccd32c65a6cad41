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

/*
 * The readers below run inside the sandbox's protected call (read_config):
 * a malformed value is a luaL_error naming the key, a metamethod the table
 * carries runs under the budget, and nothing is left on the stack by hand.
 * Everything they allocate is stored in the xr_config at once, so that
 * xr__config_free releases it whichever error ends the read. `ctx` says
 * where the key is ("rails[2]", "stage").
 */
static int cfg_error(lua_State *L, const char *ctx, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return luaL_error(L, "%s%s%s", ctx ? ctx : "", ctx ? ": " : "", msg);
}

static char *opt_string(lua_State *L, int t, const char *key, const char *ctx)
{
    char *v = NULL;
    int type = lua_getfield(L, t, key);
    if (type == LUA_TSTRING) {
        v = strdup(lua_tostring(L, -1));
        if (!v)
            cfg_error(L, ctx, "out of memory");
    } else if (type != LUA_TNIL) {
        cfg_error(L, ctx, "'%s' must be a string, not a %s", key, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return v;
}

static lua_Integer opt_int(lua_State *L, int t, const char *key, lua_Integer min,
                           lua_Integer dflt, const char *ctx)
{
    lua_Integer v = dflt;
    if (lua_getfield(L, t, key) != LUA_TNIL) {
        int isint;
        v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < min)
            cfg_error(L, ctx, "'%s' must be an integer >= %lld", key, (long long)min);
    }
    lua_pop(L, 1);
    return v;
}

/* true/false as 1/0; -1 when absent. */
static int opt_bool(lua_State *L, int t, const char *key, const char *ctx)
{
    int v = -1, type = lua_getfield(L, t, key);
    if (type == LUA_TBOOLEAN)
        v = lua_toboolean(L, -1);
    else if (type != LUA_TNIL)
        cfg_error(L, ctx, "%s must be true or false", key);
    lua_pop(L, 1);
    return v;
}

/* Every key of the table at t is one of `keys`. */
static void check_keys(lua_State *L, int t, const char *const keys[], const char *ctx)
{
    const char *bad = xr__lua_unknown_key(L, t, keys);
    char list[256];
    if (bad)
        cfg_error(L, ctx, "unknown key '%s' (%s)", bad, xr__lua_key_list(keys, list, sizeof list));
}

/* The config's sub-table `name`, pushed and its keys checked; 0 when absent
 * (nil pushed). */
static int sub_table(lua_State *L, int t, const char *name, const char *const keys[])
{
    int type = lua_getfield(L, t, name);
    if (type == LUA_TNIL)
        return 0;
    if (type != LUA_TTABLE)
        cfg_error(L, NULL, "%s must be a table", name);
    check_keys(L, -1, keys, name);
    return lua_gettop(L);
}

/* mr_cache = { enabled = true, max_entries = N, max_bytes = N } */
static void read_mr_cache(lua_State *L, int t, xr_config *c)
{
    static const char *const keys[] = {"enabled", "max_entries", "max_bytes", NULL};
    int m = sub_table(L, t, "mr_cache", keys);
    if (m) {
        c->mrc_enabled = opt_bool(L, m, "enabled", "mr_cache");
        c->mrc_max_entries = opt_int(L, m, "max_entries", 0, -1, "mr_cache");
        c->mrc_max_bytes = opt_int(L, m, "max_bytes", 0, -1, "mr_cache");
    }
    lua_pop(L, 1);
}

/* stage = { chunk = N, slots = N, rx_slots = N, host = false } */
static void read_stage(lua_State *L, int t, xr_config *c)
{
    static const char *const keys[] = {"chunk", "slots", "rx_slots", "host", NULL};
    int m = sub_table(L, t, "stage", keys);
    if (m) {
        c->stage_host = opt_bool(L, m, "host", "stage");
        c->stage_chunk = opt_int(L, m, "chunk", 4096, -1, "stage");
        c->stage_slots = opt_int(L, m, "slots", 1, -1, "stage");
        c->stage_rx_slots = opt_int(L, m, "rx_slots", 1, -1, "stage");
    }
    lua_pop(L, 1);
}

/* health = { deadline_ms = N, probe_ms = N, probe_max_ms = N, retries = N,
 * xfer_timeout_ms = N, connect_ms = N } */
static void read_health(lua_State *L, int t, xr_config *c)
{
    static const char *const keys[] = {"deadline_ms", "probe_ms", "probe_max_ms", "retries",
                                       "xfer_timeout_ms", "connect_ms", NULL};
    int m = sub_table(L, t, "health", keys);
    if (m) {
        for (int k = 0; keys[k]; k++)
            c->health[k] = opt_int(L, m, keys[k], k == 3 || k == 4 ? 0 : 1, -1, "health");
    }
    lua_pop(L, 1);
}

/* One rail entry: { provider=, domain=, src_addr=, count=, speed=, numa=, gpu=, pci=,
 * host_only= }. */
static void read_rail(lua_State *L, int t, const char *ctx, xr_rail_spec *s)
{
    s->provider = opt_string(L, t, "provider", ctx);
    s->domain = opt_string(L, t, "domain", ctx);
    s->src_addr = opt_string(L, t, "src_addr", ctx);
    s->pci = opt_string(L, t, "pci", ctx);
    s->count = (unsigned)opt_int(L, t, "count", 1, 1, ctx);
    s->speed_mbps = (uint64_t)opt_int(L, t, "speed", 0, 0, ctx);
    s->host_only = opt_bool(L, t, "host_only", ctx) == 1;
    lua_Integer numa = opt_int(L, t, "numa", -1, -2, ctx);
    lua_Integer gpu = opt_int(L, t, "gpu", -1, -2, ctx);
    if (numa != -2)
        s->declared |= XR_DECL_NUMA, s->numa_node = (int)numa;
    if (gpu != -2)
        s->declared |= XR_DECL_GPU, s->gpu = (int)gpu;
    if (s->pci)
        s->declared |= XR_DECL_PCI;
    if (s->count > XR_MAX_RAILS)
        cfg_error(L, ctx, "count %u exceeds %d", s->count, XR_MAX_RAILS);
}

static void read_rails(lua_State *L, int t, xr_config *c)
{
    int type = lua_getfield(L, t, "rails");
    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (type != LUA_TTABLE)
        cfg_error(L, NULL, "'rails' must be a table");
    int rt = lua_gettop(L);
    c->max_rails = (unsigned)opt_int(L, rt, "max", 1, 0, NULL);
    if (c->max_rails > XR_MAX_RAILS)
        cfg_error(L, NULL, "rails.max %u exceeds %d", c->max_rails, XR_MAX_RAILS);
    lua_Integer n = luaL_len(L, rt);
    if (n > XR_MAX_RAILS)
        cfg_error(L, NULL, "%lld rail entries, at most %d", (long long)n, XR_MAX_RAILS);
    for (lua_Integer k = 1; k <= n; k++) { /* an explicit list */
        char where[32];
        snprintf(where, sizeof where, "rails[%lld]", (long long)k);
        if (lua_geti(L, rt, k) != LUA_TTABLE)
            cfg_error(L, NULL, "%s must be a table", where);
        read_rail(L, lua_gettop(L), where, &c->rails[c->nrails++]);
        lua_pop(L, 1);
    }
    if (n == 0) {
        /* A single entry in the table itself: with a count it opens that
         * many rails; without one it is a discovery filter. */
        bool counted = lua_getfield(L, rt, "count") != LUA_TNIL;
        lua_pop(L, 1);
        if (counted) {
            c->nrails = 1;
            read_rail(L, rt, "rails", &c->rails[0]);
        } else { /* a filter here stands for the top-level provider and domain */
            char *p = opt_string(L, rt, "provider", "rails");
            if (p) {
                free(c->provider);
                c->provider = p;
            }
            char *d = opt_string(L, rt, "domain", "rails");
            if (d) {
                free(c->domain);
                c->domain = d;
            }
        }
    }
    lua_pop(L, 1);
}

static const char *const known_keys[] = {"provider", "domain", "rails", "stripe_min",
                                         "chunk", "progress", "progress_sleep_us",
                                         "progress_threads", "policy",
                                         "layout", "log", "mr_cache", "stage", "health",
                                         "connect_on_load", "ipc_fence",
                                         NULL};

/* read_config(table, config): the whole script's answer. */
static int read_config(lua_State *L)
{
    xr_config *c = lua_touserdata(L, 2);
    if (!lua_istable(L, 1))
        return cfg_error(L, NULL, "must return a table, returned a %s", luaL_typename(L, 1));
    check_keys(L, 1, known_keys, NULL);
    c->provider = opt_string(L, 1, "provider", NULL);
    c->domain = opt_string(L, 1, "domain", NULL);
    c->policy = opt_string(L, 1, "policy", NULL);
    c->layout = opt_string(L, 1, "layout", NULL);
    c->stripe_min = opt_int(L, 1, "stripe_min", 0, -1, NULL);
    c->chunk_size = opt_int(L, 1, "chunk", 1, -1, NULL);
    c->log_level = (int)opt_int(L, 1, "log", 0, -1, NULL);
    c->progress_sleep_us = opt_int(L, 1, "progress_sleep_us", 0, -1, NULL);
    c->progress_threads = opt_int(L, 1, "progress_threads", 1, -1, NULL);
    int type = lua_getfield(L, 1, "progress");
    const char *progress = type == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (type != LUA_TNIL &&
        (!progress || (strcmp(progress, "thread") && strcmp(progress, "manual"))))
        cfg_error(L, NULL, "progress must be \"manual\" or \"thread\", not %s%s%s",
                  progress ? "\"" : "a ", progress ? progress : luaL_typename(L, -1),
                  progress ? "\"" : "");
    c->progress_thread = progress && !strcmp(progress, "thread");
    lua_pop(L, 1);
    c->connect_on_load = opt_bool(L, 1, "connect_on_load", NULL);
    c->ipc_fence = opt_bool(L, 1, "ipc_fence", NULL);
    read_rails(L, 1, c);
    read_mr_cache(L, 1, c);
    read_stage(L, 1, c);
    read_health(L, 1, c);
    return 0;
}

int xr__config_load(const xr_engine_opts *o, const char *path, xr_config *c)
{
    memset(c, 0, sizeof *c);
    c->mrc_enabled = c->stage_host = c->connect_on_load = c->ipc_fence = -1;
    c->mrc_max_entries = c->mrc_max_bytes = -1;
    c->stage_chunk = c->stage_slots = c->stage_rx_slots = -1;
    for (int k = 0; k < 5; k++)
        c->health[k] = -1;
    size_t len = 0;
    char *src = xr__script_read(path, &len);
    if (!src)
        return xr__error_set(XR_EINVAL, "config: cannot read '%s'", path);
    xr_lua *lua = NULL;
    xr_lua_limits lim = {.mem_bytes = o->script_mem, .instructions = 0};
    int rc = xr__lua_new(NULL, &lim, &lua);
    if (!rc)
        rc = xr__lua_load(lua, path, src, len, 1);
    free(src);
    if (!rc) {
        lua_State *L = xr__lua_state(lua);
        lua_pushcfunction(L, read_config);
        lua_insert(L, -2);
        lua_pushlightuserdata(L, c);
        rc = xr__lua_call(lua, 2, 0, "config");
    }
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
            "gpu = %d%s%s%s%s }, -- rail %u%s\n",
            r->provider, r->domain_name, (unsigned long long)r->speed_mbps, r->numa_node, r->gpu,
            *r->pci ? ", pci = \"" : "", r->pci, *r->pci ? "\"" : "",
            r->host_only ? ", host_only = true" : "", i,
            atomic_load(&r->up) ? "" : " (down)");
    }
    xr__text_put(buf, cap, &w, "  },\n");
    if (*e->rail_note) { /* a comment per line, so that the output stays a config script */
        for (const char *l = e->rail_note; *l;) {
            const char *end = strchr(l, '\n');
            int n = end ? (int)(end - l) : (int)strlen(l);
            xr__text_put(buf, cap, &w, "  -- %.*s\n", n, l);
            l += n + (end ? 1 : 0);
        }
    }
    xr__text_put(buf, cap, &w, "  stripe_min = %zu,\n  chunk = %zu,\n  progress = \"%s\",\n"
            "  progress_threads = %u,\n  progress_sleep_us = %d,\n  connect_on_load = %s,\n"
            "  ipc_fence = %s,\n",
            o->stripe_min, o->chunk_size, e->progress_nthreads ? "thread" : "manual",
            o->progress_threads ? o->progress_threads : 1, o->progress_sleep_us,
            o->connect_on_load ? "true" : "false", o->ipc_fence ? "true" : "false");
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
    const xr_health_opts *h = &o->health;
    xr__text_put(buf, cap, &w, "  health = { deadline_ms = %u, probe_ms = %u, probe_max_ms = %u, "
                               "retries = %u, xfer_timeout_ms = %u, connect_ms = %u },\n",
                 h->deadline_ms, h->probe_ms, h->probe_max_ms, h->retries, h->xfer_timeout_ms,
                 h->connect_ms);
    xr__text_put(buf, cap, &w, "  log = %d,\n}\n-- rail_depth %u, max_metadata %zu, max_notif %zu, "
                      "script_mem %zu, script_path %s\n",
        e->log.level, o->rail_depth, o->max_metadata, o->max_notif, o->script_mem,
        e->script_path ? e->script_path : "(none)");
    if (w >= cap)
        return xr__error_set(XR_ETOOSMALL, "xr_engine_config_get: %zu bytes needed", w + 1);
    return 0;
}
