/*
 * policy.c - the rail-selection policy: a Lua script's plan() hook, asked
 * once per class of transfers (peer, op, memory kind, device, size class),
 * and the cache of its answers.
 *
 * Lua never runs on the data path: xr_xfer_create looks a class up here,
 * and only a miss (after a reload or a rail state change) calls the script.
 * Every call into Lua happens under the engine lock, so a reload swaps the
 * script atomically with respect to transfer creation.
 */
#include "policy.h"

#include "core/lua_sandbox.h"
#include "core/script.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A loaded script and its hooks. */
typedef struct script {
    xr_lua *lua;
    char *path;
    int plan_ref;           /* registry references to the hooks; LUA_NOREF if absent */
    int register_ref;
    int rail_error_ref;
} script;

typedef struct plan_entry {
    const void *peer;
    xr_op op;
    xr_mem_kind kind;
    int device;
    unsigned size_class;
    xr_plan plan;
} plan_entry;

/* policy.c's part of the engine; guarded by the engine lock, but for the
 * counters, which are atomics. */
struct xr_policies {
    script *script;                 /* NULL: built-in equal stripe */
    plan_entry **plans;             /* entries never move: pointers stay valid until a flush */
    size_t nplans, cap;
    atomic_uint_fast64_t calls, hits, reloads, rail_error_calls, rails_disabled;
};

static void script_free(script *p)
{
    if (!p)
        return;
    xr__lua_free(p->lua);
    free(p->path);
    free(p);
}

/* Push the table a hook sees for one rail: 0-based index, attributes, state. */
static void push_rail(lua_State *L, xr_engine *e, unsigned i, uint64_t reach)
{
    xr_rail *r = &e->rails[i];
    char addr[128];
    xr__rail_addr_format(r, r->addr, r->addrlen, addr, sizeof addr);
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, i);
    lua_setfield(L, -2, "index");
    lua_pushstring(L, r->provider);
    lua_setfield(L, -2, "provider");
    lua_pushstring(L, r->domain_name);
    lua_setfield(L, -2, "domain");
    lua_pushstring(L, addr);
    lua_setfield(L, -2, "address");
    lua_pushinteger(L, (lua_Integer)r->speed_mbps);
    lua_setfield(L, -2, "speed");
    lua_pushinteger(L, r->numa_node);
    lua_setfield(L, -2, "numa");
    lua_pushinteger(L, r->gpu);
    lua_setfield(L, -2, "gpu");
    lua_pushstring(L, r->pci);
    lua_setfield(L, -2, "pci");
    lua_pushstring(L, !atomic_load(&r->up) ? "down" : (reach >> i) & 1 ? "up" : "unreachable");
    lua_setfield(L, -2, "state");
}

static void push_rails(lua_State *L, xr_engine *e, uint64_t reach)
{
    lua_createtable(L, (int)e->nrails, 0);
    for (unsigned i = 0; i < e->nrails; i++) {
        push_rail(L, e, i, reach);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* What read_plan needs, handed to it as a light userdata. */
typedef struct plan_read {
    xr_engine *e;
    uint64_t reach;
    xr_plan *out;
} plan_read;

/* An optional integer field of the table at index t, at least `min`. */
static lua_Integer opt_integer(lua_State *L, int t, const char *key, lua_Integer min,
                               lua_Integer dflt)
{
    if (lua_getfield(L, t, key) == LUA_TNIL) {
        lua_pop(L, 1);
        return dflt;
    }
    int isint;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < min)
        luaL_error(L, "%s must be an integer %s %d", key, min ? ">" : ">=", (int)(min ? min - 1 : 0));
    lua_pop(L, 1);
    return v;
}

/*
 * Read plan()'s answer (argument 1) into the plan_read (argument 2). A C
 * function run under the sandbox's protected call: a malformed answer is a
 * luaL_error, and a metamethod the table carries runs under the budget.
 */
static int read_plan(lua_State *L)
{
    plan_read *pr = lua_touserdata(L, 2);
    xr_engine *e = pr->e;
    xr_plan *out = pr->out;
    if (!lua_istable(L, 1))
        return luaL_error(L, "returned a %s, expected a table", luaL_typename(L, 1));
    memset(out, 0, sizeof *out);
    out->stripe_min = e->opts.stripe_min;
    out->align = 4096;
    /* A misspelt key would be a setting silently ignored, as config
     * scripts already refuse. */
    static const char *const keys[] = {"rails", "weights", "stripe_min", "chunk", NULL};
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        int known = 0;
        for (int k = 0; keys[k] && !known; k++)
            known = lua_type(L, -1) == LUA_TSTRING && !strcmp(lua_tostring(L, -1), keys[k]);
        if (!known)
            return luaL_error(L, "returned an unknown key '%s' (rails, weights, stripe_min, chunk)",
                              luaL_tolstring(L, -1, NULL));
    }

    lua_getfield(L, 1, "rails"); /* 3 */
    if (!lua_isnil(L, 3) && !lua_istable(L, 3))
        return luaL_error(L, "rails is a %s; it must be a list of rail indexes, e.g. {0, 1}",
                          luaL_typename(L, 3));
    lua_Integer n = lua_istable(L, 3) ? luaL_len(L, 3) : -1;
    if (n <= 0)
        return luaL_error(L, "returned no rails (rails must be a non-empty list of rail indexes)");
    if (n > XR_MAX_RAILS)
        return luaL_error(L, "returned %I rails, at most %d", n, XR_MAX_RAILS);
    lua_getfield(L, 1, "weights"); /* 4 */
    bool have_w = !lua_isnil(L, 4);
    if (have_w && (!lua_istable(L, 4) || luaL_len(L, 4) != n))
        return luaL_error(L, "weights must be a list as long as rails (%I)", n);
    uint64_t seen = 0;
    for (lua_Integer k = 1; k <= n; k++) {
        int isint;
        lua_geti(L, 3, k);
        lua_Integer idx = lua_tointegerx(L, -1, &isint);
        lua_pop(L, 1);
        if (!isint || idx < 0 || idx >= (lua_Integer)e->nrails)
            return luaL_error(L, "rails[%I] is not a rail index 0..%d", k, (int)e->nrails - 1);
        if (seen & (1ull << idx))
            return luaL_error(L, "lists rail %I twice", idx);
        seen |= 1ull << idx;
        lua_Number w = 1;
        if (have_w) {
            int isnum;
            lua_geti(L, 4, k);
            w = lua_tonumberx(L, -1, &isnum);
            lua_pop(L, 1);
            /* Weights are kept in thousandths in a uint32_t: 1e6 (a link
             * speed of 1 Tbit/s in Mbit/s) is the most that fits. */
            if (!isnum || !(w > 0) || w > 1e6)
                return luaL_error(L, "weights[%I] must be a number in (0, 1e6]", k);
        }
        /* A rail that is down or does not reach the peer is left out, so a
         * policy written for all rails keeps working when one goes. */
        if (!atomic_load(&e->rails[idx].up) || !((pr->reach >> idx) & 1))
            continue;
        unsigned j = out->nrails++;
        out->rail[j] = (uint8_t)idx;
        uint32_t milli = (uint32_t)(w * 1000 + 0.5);
        out->weight[j] = milli ? milli : 1;
    }
    out->stripe_min = (size_t)opt_integer(L, 1, "stripe_min", 0, (lua_Integer)out->stripe_min);
    size_t chunk = (size_t)opt_integer(L, 1, "chunk", 1, (lua_Integer)e->opts.chunk_size);
    for (unsigned j = 0; j < out->nrails; j++)
        out->chunk[j] = xr__rail_chunk_cap(&e->rails[out->rail[j]], chunk);
    return 0;
}

/* Equal shares over every rail that is up and reaches the peer. */
static int builtin_plan(xr_engine *e, uint64_t reach, xr_plan *p)
{
    memset(p, 0, sizeof *p);
    p->stripe_min = e->opts.stripe_min;
    p->align = 4096;
    for (unsigned i = 0; i < e->nrails; i++) {
        xr_rail *r = &e->rails[i];
        if (!atomic_load(&r->up) || !((reach >> i) & 1))
            continue;
        unsigned k = p->nrails++;
        p->rail[k] = (uint8_t)i;
        p->weight[k] = 1;
        p->chunk[k] = xr__rail_chunk_cap(r, e->opts.chunk_size);
    }
    return p->nrails ? 0 : XR_ENORAIL;
}

static unsigned size_class(size_t len)
{
    return len ? 64u - (unsigned)__builtin_clzll((unsigned long long)len) : 0;
}

/* Call plan(xfer, rails, peer) for one class with script `sc`. Engine lock held. */
static int ask_script(xr_engine *e, script *sc, const char *peer_name, uint64_t reach, xr_op op,
                      xr_mem_kind kind, int device, unsigned cls, xr_plan *out)
{
    lua_State *L = xr__lua_state(sc->lua);
    lua_pushcfunction(L, read_plan);
    lua_rawgeti(L, LUA_REGISTRYINDEX, sc->plan_ref);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, op == XR_OP_WRITE ? "write" : "read");
    lua_setfield(L, -2, "op");
    lua_pushstring(L, kind == XR_MEM_CUDA ? "cuda" : "host");
    lua_setfield(L, -2, "mem");
    lua_pushinteger(L, device);
    lua_setfield(L, -2, "device");
    lua_pushinteger(L, kind == XR_MEM_HOST ? device : -1);
    lua_setfield(L, -2, "numa");
    /* A class covers [2^(c-1), 2^c); the hook sees its lower bound. */
    lua_pushinteger(L, cls ? (lua_Integer)1 << (cls - 1) : 0);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, cls);
    lua_setfield(L, -2, "size_class");
    push_rails(L, e, reach);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, peer_name);
    lua_setfield(L, -2, "name");
    lua_createtable(L, 0, 0);
    for (unsigned i = 0, k = 1; i < e->nrails; i++)
        if ((reach >> i) & 1) {
            lua_pushinteger(L, i);
            lua_rawseti(L, -2, k++);
        }
    lua_setfield(L, -2, "reachable");
    atomic_fetch_add(&e->policy->calls, 1);
    int rc = xr__lua_call(sc->lua, 3, 1, "plan");
    if (rc) {
        lua_pop(L, 1); /* read_plan */
        return rc;
    }
    /* read_plan(answer, out): the answer is checked under the sandbox too. */
    plan_read pr = {.e = e, .reach = reach, .out = out};
    lua_pushlightuserdata(L, &pr);
    rc = xr__lua_call(sc->lua, 2, 0, "plan");
    if (!rc && !out->nrails)
        rc = xr__error_set(XR_ENORAIL, "script %s: every rail the plan chose is down or does "
                                       "not reach the peer", sc->path);
    return rc;
}

int xr__policy_plan_get(xr_engine *e, const void *peer, const char *peer_name, uint64_t reach,
                        xr_op op, xr_mem_kind kind, int device, size_t len,
                        const xr_plan **out)
{
    struct xr_policies *ps = e->policy;
    unsigned cls = size_class(len);
    for (size_t i = 0; i < ps->nplans; i++) {
        plan_entry *p = ps->plans[i];
        if (p->peer == peer && p->op == op && p->kind == kind && p->device == device &&
            p->size_class == cls) {
            atomic_fetch_add(&ps->hits, 1);
            *out = &p->plan;
            return 0;
        }
    }
    if (ps->nplans == ps->cap) {
        size_t cap = ps->cap ? 2 * ps->cap : 16;
        plan_entry **n = realloc(ps->plans, cap * sizeof *n);
        if (!n)
            return xr__error_set(XR_ENOMEM, "plan cache");
        ps->plans = n;
        ps->cap = cap;
    }
    plan_entry *p = calloc(1, sizeof *p);
    if (!p)
        return xr__error_set(XR_ENOMEM, "plan cache");
    *p = (plan_entry){.peer = peer, .op = op, .kind = kind, .device = device, .size_class = cls};
    int rc = ps->script ? ask_script(e, ps->script, peer_name, reach, op, kind, device, cls,
                                     &p->plan)
                        : builtin_plan(e, reach, &p->plan);
    if (rc) {
        free(p);
        if (rc == XR_ENORAIL && !ps->script)
            return xr__error_set(XR_ENORAIL, "no rail that is up reaches peer '%s'", peer_name);
        return rc;
    }
    ps->plans[ps->nplans++] = p;
    *out = &p->plan;
    return 0;
}

void xr__policy_flush(xr_engine *e)
{
    struct xr_policies *ps = e->policy;
    for (size_t i = 0; i < ps->nplans; i++)
        free(ps->plans[i]);
    ps->nplans = 0;
}

int xr__policy_init(xr_engine *e)
{
    e->policy = calloc(1, sizeof *e->policy);
    return e->policy ? 0 : xr__error_set(XR_ENOMEM, "policy: out of memory");
}

void xr__policy_fini(xr_engine *e)
{
    struct xr_policies *ps = e->policy;
    if (!ps)
        return;
    xr__policy_flush(e);
    free(ps->plans);
    script_free(ps->script);
    free(ps);
    e->policy = NULL;
}

/* The hook `name` of the script's table (on top of the stack) into *ref:
 * LUA_NOREF if absent and optional. Run under the sandbox. */
static int take_hook(lua_State *L)
{
    const char *name = lua_tostring(L, 2);
    int *ref = lua_touserdata(L, 3);
    bool required = lua_toboolean(L, 4);
    lua_settop(L, 2);
    if (!lua_istable(L, 1))
        return luaL_error(L, "must return a table of hooks, returned a %s", luaL_typename(L, 1));
    int t = lua_getfield(L, 1, name);
    if (t == LUA_TNIL && !required)
        return 0;
    if (t != LUA_TFUNCTION)
        return required ? luaL_error(L, "has no %s(xfer, rails, peer) function", name)
                        : luaL_error(L, "%s must be a function", name);
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static int script_load(xr_engine *e, const char *path, script **out)
{
    *out = NULL;
    size_t len = 0;
    char *src = xr__script_read(path, &len);
    if (!src)
        return xr__error_set(XR_EINVAL, "policy: cannot read '%s'", path);
    script *p = calloc(1, sizeof *p);
    if (!p || !(p->path = strdup(path))) {
        free(p);
        free(src);
        return xr__error_set(XR_ENOMEM, "policy: out of memory");
    }
    p->plan_ref = p->register_ref = p->rail_error_ref = LUA_NOREF;
    xr_lua_limits lim = {.mem_bytes = e->opts.script_mem, .instructions = 0};
    int rc = xr__lua_new(&e->log, &lim, &p->lua);
    if (!rc)
        rc = xr__lua_load(p->lua, p->path, src, len, 1);
    free(src);
    static const char *const hooks[] = {"plan", "register", "on_rail_error"};
    int *refs[] = {&p->plan_ref, &p->register_ref, &p->rail_error_ref};
    for (int k = 0; k < 3 && !rc; k++) {
        lua_State *L = xr__lua_state(p->lua);
        lua_pushcfunction(L, take_hook);
        lua_pushvalue(L, 1); /* the script's table */
        lua_pushstring(L, hooks[k]);
        lua_pushlightuserdata(L, refs[k]);
        lua_pushboolean(L, k == 0);
        rc = xr__lua_call(p->lua, 4, 0, "load");
    }
    if (rc) {
        script_free(p);
        return rc;
    }
    lua_settop(xr__lua_state(p->lua), 0);
    *out = p;
    return 0;
}

int xr_policy_reload(xr_engine *e, const char *path)
{
    if (!e || !path)
        return xr__error_set(XR_EINVAL, "xr_policy_reload: NULL argument");
    char found[4096];
    int rc = xr__script_find(&e->opts, path, "policy", found, sizeof found);
    if (rc) { /* the message is rewritten from a copy: it lives in the same buffer */
        char why[XR_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", xr__error_last());
        return xr__error_set(XR_EINVAL, "policy: %s", why);
    }
    script *np;
    rc = script_load(e, found, &np);
    if (rc)
        return rc;
    /* Try the new script on probe classes before it replaces the old one,
     * so that a script which loads but answers garbage is refused up front:
     * writes and reads, host and device memory, small, middling and large
     * (a mistake on one path alone is caught too). */
    struct xr_policies *ps = e->policy;
    pthread_mutex_lock(&e->lock);
    xr_plan probe;
    static const size_t sizes[] = {4096, 1 << 20, 64 << 20};
    for (int k = 0; k < 12 && !rc; k++)
        rc = ask_script(e, np, "probe", xr__engine_all_rails(e), k & 1 ? XR_OP_READ : XR_OP_WRITE,
                        k & 2 ? XR_MEM_CUDA : XR_MEM_HOST, 0, size_class(sizes[k / 4]), &probe);
    script *old = rc ? np : ps->script;
    if (!rc) {
        ps->script = np;
        xr__policy_flush(e);
        atomic_fetch_add(&ps->reloads, 1);
    }
    pthread_mutex_unlock(&e->lock);
    script_free(old); /* on failure the old policy stays */
    return rc;
}

int xr_policy_stats_get(xr_engine *e, xr_policy_stats *st)
{
    if (!e || !st)
        return xr__error_set(XR_EINVAL, "xr_policy_stats_get: NULL argument");
    struct xr_policies *ps = e->policy;
    st->plan_calls = atomic_load(&ps->calls);
    st->plan_hits = atomic_load(&ps->hits);
    st->reloads = atomic_load(&ps->reloads);
    st->rail_error_calls = atomic_load(&ps->rail_error_calls);
    st->rails_disabled = atomic_load(&ps->rails_disabled);
    pthread_mutex_lock(&e->lock);
    st->classes = ps->nplans;
    st->scripted = ps->script != NULL;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

/* Read register()'s answer (argument 1) into the mask (argument 2). */
static int read_rails(lua_State *L)
{
    const xr_engine *e = lua_touserdata(L, 2);
    uint64_t *mask = lua_touserdata(L, 3);
    uint64_t m = 0;
    lua_Integer n = lua_istable(L, 1) ? luaL_len(L, 1) : 0;
    for (lua_Integer k = 1; k <= n; k++) {
        int isint;
        lua_geti(L, 1, k);
        lua_Integer idx = lua_tointegerx(L, -1, &isint);
        lua_pop(L, 1);
        if (!isint || idx < 0 || idx >= (lua_Integer)e->nrails || ((m >> idx) & 1))
            return luaL_error(L, "returned rails[%I], which is not a distinct rail index 0..%d",
                              k, (int)e->nrails - 1);
        m |= 1ull << idx;
    }
    if (!m)
        return luaL_error(L, "returned no rails");
    *mask = m;
    return 0;
}

int xr__policy_region_rails(xr_engine *e, uint64_t addr, size_t len, xr_mem_kind kind,
                            int device, unsigned access, uint64_t *mask)
{
    *mask = xr__engine_all_rails(e);
    script *sc = e->policy->script;
    if (!sc || sc->register_ref == LUA_NOREF)
        return 0;
    lua_State *L = xr__lua_state(sc->lua);
    static const char *const names[] = {"none", "read", "write", "rw"};
    lua_pushcfunction(L, read_rails);
    lua_rawgeti(L, LUA_REGISTRYINDEX, sc->register_ref);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)addr);
    lua_setfield(L, -2, "addr");
    lua_pushinteger(L, (lua_Integer)len);
    lua_setfield(L, -2, "len");
    lua_pushstring(L, kind == XR_MEM_CUDA ? "cuda" : "host");
    lua_setfield(L, -2, "mem");
    lua_pushinteger(L, device);
    lua_setfield(L, -2, "device");
    lua_pushstring(L, names[access & 3]);
    lua_setfield(L, -2, "access");
    push_rails(L, e, xr__engine_all_rails(e));
    int rc = xr__lua_call(sc->lua, 2, 1, "register");
    if (rc) {
        lua_pop(L, 1); /* read_rails */
        return rc;
    }
    lua_pushlightuserdata(L, e);
    lua_pushlightuserdata(L, mask);
    return xr__lua_call(sc->lua, 3, 0, "register");
}

/* Ask on_rail_error about rail i: its answer as XR_RAIL_ACT_*, or -1 for
 * none (the hook failed or answered something else). Engine lock held. */
static int ask_rail_error(xr_engine *e, script *sc, unsigned i, const char *why, int fi_err)
{
    lua_State *L = xr__lua_state(sc->lua);
    lua_rawgeti(L, LUA_REGISTRYINDEX, sc->rail_error_ref);
    push_rail(L, e, i, xr__engine_all_rails(e));
    lua_createtable(L, 0, 4);
    lua_pushstring(L, why);
    lua_setfield(L, -2, "message");
    /* The provider's own code and name (fi_errno.h), and ours. */
    lua_pushstring(L, fi_err == FI_ETIMEDOUT ? "XR_ETIMEDOUT" : "XR_EIO");
    lua_setfield(L, -2, "code");
    lua_pushinteger(L, fi_err);
    lua_setfield(L, -2, "fi_errno");
    lua_pushstring(L, fi_err ? fi_strerror(fi_err) : "");
    lua_setfield(L, -2, "fi_error");
    atomic_fetch_add(&e->policy->rail_error_calls, 1);
    if (xr__lua_call(sc->lua, 2, 1, "on_rail_error")) {
        xr__log_write(&e->log, XR_LOG_WARN, "%s", xr__error_last());
        return -1;
    }
    static const char *const names[] = {"retry", "disable", "fail"};
    const char *ans = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    int act = -1;
    for (int k = 0; k < 3 && ans; k++)
        if (!strcmp(ans, names[k]))
            act = k;
    if (act < 0)
        xr__log_write(&e->log, XR_LOG_WARN, "script %s: on_rail_error answered '%s'; expected "
                                            "\"retry\", \"disable\" or \"fail\"; taken as "
                                            "\"retry\"",
                      sc->path, ans ? ans : luaL_typename(L, -1));
    lua_pop(L, 1);
    return act;
}

void xr__policy_rail_state(xr_engine *e, unsigned i, int state, const char *reason)
{
    xr_rail *r = &e->rails[i];
    bool up = state == XR_RAIL_UP || state == XR_RAIL_SUSPECT;
    pthread_mutex_lock(&r->lock);
    if (r->state != state)
        r->state_since = xr__rail_now();
    r->state = state;
    snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
    if (up)
        r->probe_wait = 0; /* the next time it goes down, probing starts over */
    pthread_mutex_unlock(&r->lock);
    if (atomic_exchange(&r->up, up ? 1 : 0) != (up ? 1 : 0))
        xr__policy_flush(e); /* plans are re-asked with the new rail states */
}

void xr__policy_rail_errors(xr_engine *e)
{
    for (unsigned i = 0; i < e->nrails; i++) {
        xr_rail *r = &e->rails[i];
        char why[sizeof r->err_why];
        pthread_mutex_lock(&r->lock);
        bool pending = r->err_pending;
        int fi_err = r->err_fi;
        r->err_pending = false;
        memcpy(why, r->err_why, sizeof why);
        pthread_mutex_unlock(&r->lock);
        if (!pending)
            continue;
        pthread_mutex_lock(&e->lock);
        script *sc = e->policy->script;
        int act = sc && sc->rail_error_ref != LUA_NOREF ? ask_rail_error(e, sc, i, why, fi_err)
                                                        : -1;
        if (act < 0)
            act = XR_RAIL_ACT_RETRY;
        atomic_store(&r->err_action, act);
        bool disable = act == XR_RAIL_ACT_DISABLE && atomic_load(&r->up);
        char reason[sizeof r->reason];
        snprintf(reason, sizeof reason, "%s after: %.120s",
                 disable ? "disabled by the policy" : "an error", why);
        if (disable || (atomic_load(&r->up) && r->state == XR_RAIL_UP))
            xr__policy_rail_state(e, i, disable ? XR_RAIL_DOWN : XR_RAIL_SUSPECT, reason);
        pthread_mutex_unlock(&e->lock);
        if (disable) {
            atomic_fetch_add(&e->policy->rails_disabled, 1);
            xr__log_write(&e->log, XR_LOG_WARN, "rail %u taken out of plans by the policy "
                                                "after: %s", i, why);
        }
    }
}

const char *xr__policy_path(const xr_engine *e)
{
    return e->policy->script ? e->policy->script->path : NULL;
}
