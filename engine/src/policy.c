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

#include "config.h"

#include "lua_sandbox.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct xr_policy {
    xr_lua *lua;
    char *path;
    int plan_ref;           /* registry references to the hooks; LUA_NOREF if absent */
    int register_ref;
    int rail_error_ref;
};

typedef struct plan_entry {
    const xr_peer *peer;
    xr_op op;
    xr_mem_kind kind;
    int device;
    unsigned size_class;
    xr_plan plan;
} plan_entry;

void xr__policy_free(xr_policy *p)
{
    if (!p)
        return;
    xr_lua_free(p->lua);
    free(p->path);
    free(p);
}

/* Push the table a hook sees for one rail: 0-based index, attributes, state. */
static void push_rail(lua_State *L, xr_engine *e, unsigned i, uint64_t reach)
{
    xr_rail *r = &e->rails[i];
    char addr[128];
    xr__addr_format(r, r->addr, r->addrlen, addr, sizeof addr);
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

static uint64_t all_rails(const xr_engine *e)
{
    return e->nrails == 64 ? ~0ull : (1ull << e->nrails) - 1;
}

/* Read the plan table on top of the stack into *out, checking every field. */
static int read_plan(xr_engine *e, const char *script, uint64_t reach, xr_plan *out)
{
    lua_State *L = xr_lua_state(e->policy->lua);
    if (!lua_istable(L, -1))
        return xr__fail(XR_ESCRIPT, "script %s: plan returned a %s, expected a table", script,
                        luaL_typename(L, -1));
    memset(out, 0, sizeof *out);
    out->stripe_min = e->opts.stripe_min;
    out->align = 4096;
    size_t chunk = e->opts.chunk_size;

    lua_getfield(L, -1, "rails");
    lua_Integer n = lua_istable(L, -1) ? luaL_len(L, -1) : -1;
    if (n <= 0) {
        lua_pop(L, 1);
        return xr__fail(XR_ESCRIPT, "script %s: plan returned no rails (rails must be a "
                                    "non-empty list of rail indexes)", script);
    }
    if (n > XR_MAX_RAILS) {
        lua_pop(L, 1);
        return xr__fail(XR_ESCRIPT, "script %s: plan returned %lld rails, at most %d", script,
                        (long long)n, XR_MAX_RAILS);
    }
    lua_getfield(L, -2, "weights");
    bool have_w = !lua_isnil(L, -1);
    if (have_w && (!lua_istable(L, -1) || luaL_len(L, -1) != n)) {
        lua_pop(L, 2);
        return xr__fail(XR_ESCRIPT, "script %s: plan weights must be a list as long as rails "
                                    "(%lld)", script, (long long)n);
    }
    uint64_t seen = 0;
    for (lua_Integer k = 1; k <= n; k++) {
        int isint;
        lua_rawgeti(L, -2, k);
        lua_Integer idx = lua_tointegerx(L, -1, &isint);
        lua_pop(L, 1);
        if (!isint || idx < 0 || idx >= (lua_Integer)e->nrails) {
            lua_pop(L, 2);
            return xr__fail(XR_ESCRIPT, "script %s: plan rails[%lld] is not a rail index "
                                        "0..%u", script, (long long)k, e->nrails - 1);
        }
        if (seen & (1ull << idx)) {
            lua_pop(L, 2);
            return xr__fail(XR_ESCRIPT, "script %s: plan lists rail %lld twice", script,
                            (long long)idx);
        }
        seen |= 1ull << idx;
        lua_Number w = 1;
        if (have_w) {
            lua_rawgeti(L, -1, k);
            int isnum;
            w = lua_tonumberx(L, -1, &isnum);
            lua_pop(L, 1);
            /* Weights are kept in thousandths in a uint32_t: 1e6 (a link
             * speed of 1 Tbit/s in Mbit/s) is the most that fits. */
            if (!isnum || !(w > 0) || w > 1e6) {
                lua_pop(L, 2);
                return xr__fail(XR_ESCRIPT, "script %s: plan weights[%lld] must be a number "
                                            "in (0, 1e6]", script, (long long)k);
            }
        }
        /* A rail that is down or does not reach the peer is left out, so a
         * policy written for all rails keeps working when one goes. */
        if (!atomic_load(&e->rails[idx].up) || !((reach >> idx) & 1))
            continue;
        unsigned j = out->nrails++;
        out->rail[j] = (uint8_t)idx;
        uint32_t milli = (uint32_t)(w * 1000 + 0.5);
        out->weight[j] = milli ? milli : 1;
    }
    lua_pop(L, 2);

    lua_getfield(L, -1, "stripe_min");
    if (!lua_isnil(L, -1)) {
        int isint;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < 0) {
            lua_pop(L, 1);
            return xr__fail(XR_ESCRIPT, "script %s: plan stripe_min must be an integer >= 0",
                            script);
        }
        out->stripe_min = (size_t)v;
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, "chunk");
    if (!lua_isnil(L, -1)) {
        int isint;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v <= 0) {
            lua_pop(L, 1);
            return xr__fail(XR_ESCRIPT, "script %s: plan chunk must be an integer > 0", script);
        }
        chunk = (size_t)v;
    }
    lua_pop(L, 1);
    if (!out->nrails)
        return xr__fail(XR_ENORAIL, "script %s: every rail the plan chose is down or does not "
                                    "reach the peer", script);
    for (unsigned j = 0; j < out->nrails; j++) {
        size_t cap = e->rails[out->rail[j]].max_msg;
        out->chunk[j] = chunk < cap ? chunk : cap;
    }
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
        p->chunk[k] = e->opts.chunk_size < r->max_msg ? e->opts.chunk_size : r->max_msg;
    }
    return p->nrails ? 0 : XR_ENORAIL;
}

static unsigned size_class(size_t len)
{
    return len ? 64u - (unsigned)__builtin_clzll((unsigned long long)len) : 0;
}

/* Call plan(xfer, rails, peer) for one class. Engine lock held. */
static int ask_script(xr_engine *e, const char *peer_name, uint64_t reach, xr_op op,
                      xr_mem_kind kind, int device, unsigned cls, xr_plan *out)
{
    xr_policy *pol = e->policy;
    lua_State *L = xr_lua_state(pol->lua);
    lua_rawgeti(L, LUA_REGISTRYINDEX, pol->plan_ref);
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
    atomic_fetch_add(&e->policy_calls, 1);
    int rc = xr_lua_call(pol->lua, 3, 1, "plan");
    if (rc)
        return rc;
    rc = read_plan(e, pol->path, reach, out);
    lua_pop(L, 1);
    return rc;
}

int xr__plan_get(xr_engine *e, xr_peer *peer, xr_op op, xr_mem_kind kind, int device,
                 size_t len, const xr_plan **out)
{
    unsigned cls = size_class(len);
    for (size_t i = 0; i < e->nplans; i++) {
        plan_entry *p = e->plans[i];
        if (p->peer == peer && p->op == op && p->kind == kind && p->device == device &&
            p->size_class == cls) {
            atomic_fetch_add(&e->policy_hits, 1);
            *out = &p->plan;
            return 0;
        }
    }
    if (e->nplans == e->cap_plans) {
        size_t cap = e->cap_plans ? 2 * e->cap_plans : 16;
        void **n = realloc(e->plans, cap * sizeof *n);
        if (!n)
            return xr__fail(XR_ENOMEM, "plan cache");
        e->plans = (plan_entry **)n;
        e->cap_plans = cap;
    }
    plan_entry *p = calloc(1, sizeof *p);
    if (!p)
        return xr__fail(XR_ENOMEM, "plan cache");
    *p = (plan_entry){.peer = peer, .op = op, .kind = kind, .device = device, .size_class = cls};
    int rc = e->policy ? ask_script(e, peer->name, peer->mask, op, kind, device, cls, &p->plan)
                       : builtin_plan(e, peer->mask, &p->plan);
    if (rc) {
        free(p);
        if (rc == XR_ENORAIL && !e->policy)
            return xr__fail(XR_ENORAIL, "no rail that is up reaches peer '%s'", peer->name);
        return rc;
    }
    e->plans[e->nplans++] = p; /* entries never move: pointers stay valid until a flush */
    *out = &p->plan;
    return 0;
}

void xr__plan_flush(xr_engine *e)
{
    for (size_t i = 0; i < e->nplans; i++)
        free(e->plans[i]);
    e->nplans = 0;
}

void xr__plan_fini(xr_engine *e)
{
    xr__plan_flush(e);
    free(e->plans);
    e->plans = NULL;
    e->cap_plans = 0;
    xr__policy_free(e->policy);
    e->policy = NULL;
}

int xr__policy_load(xr_engine *e, const char *path, xr_policy **out)
{
    *out = NULL;
    size_t len = 0;
    char *src = xr__file_read(path, &len);
    if (!src)
        return xr__fail(XR_EINVAL, "policy: cannot read '%s'", path);
    xr_policy *p = calloc(1, sizeof *p);
    if (!p || !(p->path = strdup(path))) {
        free(p);
        free(src);
        return xr__fail(XR_ENOMEM, "policy: out of memory");
    }
    p->plan_ref = p->register_ref = p->rail_error_ref = LUA_NOREF;
    xr_lua_limits lim = {.mem_bytes = e->opts.script_mem, .instructions = 0};
    int rc = xr_lua_new(e, &lim, &p->lua);
    if (!rc)
        rc = xr_lua_load(p->lua, p->path, src, len, 1);
    free(src);
    if (!rc) {
        lua_State *L = xr_lua_state(p->lua);
        if (!lua_istable(L, -1)) {
            rc = xr__fail(XR_ESCRIPT, "script %s: must return a table of hooks, returned a %s",
                          path, luaL_typename(L, -1));
        } else {
            lua_getfield(L, -1, "plan");
            if (!lua_isfunction(L, -1)) {
                lua_pop(L, 1);
                rc = xr__fail(XR_ESCRIPT, "script %s: has no plan(xfer, rails, peer) function",
                              path);
            } else {
                p->plan_ref = luaL_ref(L, LUA_REGISTRYINDEX);
            }
            /* The other hooks are optional, but must be functions if present. */
            static const char *const opt[] = {"register", "on_rail_error"};
            int *refs[] = {&p->register_ref, &p->rail_error_ref};
            for (int k = 0; k < 2 && !rc; k++) {
                lua_getfield(L, -1, opt[k]);
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                } else if (!lua_isfunction(L, -1)) {
                    lua_pop(L, 1);
                    rc = xr__fail(XR_ESCRIPT, "script %s: %s must be a function", path, opt[k]);
                } else {
                    *refs[k] = luaL_ref(L, LUA_REGISTRYINDEX);
                }
            }
        }
        lua_settop(L, 0);
    }
    if (rc) {
        xr__policy_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* Try the new policy on a probe class before it replaces the old one, so
 * that a script which loads but answers garbage is refused up front. */
static int probe(xr_engine *e)
{
    xr_plan p;
    return ask_script(e, "probe", all_rails(e), XR_OP_WRITE, XR_MEM_HOST, 0, size_class(1 << 20), &p);
}

int xr_policy_reload(xr_engine *e, const char *path)
{
    if (!e || !path)
        return xr__fail(XR_EINVAL, "xr_policy_reload: NULL argument");
    char found[4096];
    int rc = xr__script_find(&e->opts, path, "policy", found, sizeof found);
    if (rc) { /* the message is rewritten from a copy: it lives in the same buffer */
        char why[XR_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", xr_engine_last_error(e));
        return xr__fail(XR_EINVAL, "policy: %s", why);
    }
    xr_policy *np;
    rc = xr__policy_load(e, found, &np);
    if (rc)
        return rc;
    pthread_mutex_lock(&e->lock);
    xr_policy *old = e->policy;
    e->policy = np;
    rc = probe(e);
    if (rc) {
        e->policy = old; /* the old policy stays */
    } else {
        xr__plan_flush(e);
        atomic_fetch_add(&e->policy_reloads, 1);
    }
    pthread_mutex_unlock(&e->lock);
    xr__policy_free(rc ? np : old);
    return rc;
}

int xr_policy_stats_get(xr_engine *e, xr_policy_stats *st)
{
    if (!e || !st)
        return xr__fail(XR_EINVAL, "xr_policy_stats_get: NULL argument");
    st->plan_calls = atomic_load(&e->policy_calls);
    st->plan_hits = atomic_load(&e->policy_hits);
    st->reloads = atomic_load(&e->policy_reloads);
    st->rail_error_calls = atomic_load(&e->rail_error_calls);
    st->rails_disabled = atomic_load(&e->rails_disabled);
    pthread_mutex_lock(&e->lock);
    st->classes = e->nplans;
    st->scripted = e->policy != NULL;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

typedef struct split_acc {
    size_t bytes[XR_MAX_RAILS], chunks[XR_MAX_RAILS];
} split_acc;

static void acc_piece(void *arg, unsigned rail, size_t off, size_t len)
{
    split_acc *a = arg;
    (void)off;
    a->bytes[rail] += len;
    a->chunks[rail]++;
}

int xr_policy_explain(xr_engine *e, xr_peer *peer, xr_op op, xr_mem_kind kind, int device,
                      size_t size, char *buf, size_t cap)
{
    if (!e || !peer || !buf || !cap)
        return xr__fail(XR_EINVAL, "xr_policy_explain: NULL argument");
    pthread_mutex_lock(&e->lock);
    const xr_plan *cached;
    int rc = xr__plan_get(e, peer, op, kind, device, size, &cached);
    xr_plan p = rc ? (xr_plan){0} : *cached;
    char pname[256];
    snprintf(pname, sizeof pname, "%s", e->policy ? e->policy->path : "(built-in equal stripe)");
    pthread_mutex_unlock(&e->lock);
    if (rc)
        return rc;
    /* Split one descriptor of `size` bytes exactly as a transfer would. */
    split_acc a;
    memset(&a, 0, sizeof a);
    unsigned rr = 0;
    size_t n = xr_plan_split(&p, peer->mask, size, &rr, acc_piece, &a);
    uint64_t wsum = 0;
    for (unsigned k = 0; k < p.nrails; k++)
        wsum += p.weight[k];
    size_t w = (size_t)snprintf(buf, cap, "policy %s\n%s of %zu bytes to '%s': %s over %u "
                                          "rail(s), %zu chunk(s), stripe_min %zu\n",
                                pname, op == XR_OP_WRITE ? "write" : "read", size, peer->name,
                                size >= p.stripe_min && p.nrails > 1 ? "striped" : "one rail",
                                p.nrails, n, p.stripe_min);
    for (unsigned k = 0; k < p.nrails; k++) {
        unsigned r = p.rail[k];
        w += (size_t)snprintf(buf + (w < cap ? w : cap), w < cap ? cap - w : 0,
                              "  rail %u: weight share %.1f%%, %zu bytes (%.1f%%), %zu chunk(s) "
                              "of <= %zu\n",
                              r, 100.0 * p.weight[k] / (double)wsum, a.bytes[r],
                              size ? 100.0 * (double)a.bytes[r] / (double)size : 0.0,
                              a.chunks[r], p.chunk[k]);
    }
    if (w >= cap)
        return xr__fail(XR_ETOOSMALL, "xr_policy_explain: %zu bytes needed", w + 1);
    return 0;
}

int xr__policy_region_rails(xr_engine *e, const xr_region *g, uint64_t *mask)
{
    *mask = all_rails(e);
    xr_policy *pol = e->policy;
    if (!pol || pol->register_ref == LUA_NOREF)
        return 0;
    lua_State *L = xr_lua_state(pol->lua);
    static const char *const access[] = {"none", "read", "write", "rw"};
    lua_rawgeti(L, LUA_REGISTRYINDEX, pol->register_ref);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)g->addr);
    lua_setfield(L, -2, "addr");
    lua_pushinteger(L, (lua_Integer)g->len);
    lua_setfield(L, -2, "len");
    lua_pushstring(L, g->kind == XR_MEM_CUDA ? "cuda" : "host");
    lua_setfield(L, -2, "mem");
    lua_pushinteger(L, g->device);
    lua_setfield(L, -2, "device");
    lua_pushstring(L, access[g->access & 3]);
    lua_setfield(L, -2, "access");
    push_rails(L, e, all_rails(e));
    int rc = xr_lua_call(pol->lua, 2, 1, "register");
    if (rc)
        return rc;
    uint64_t m = 0;
    lua_Integer n = lua_istable(L, -1) ? luaL_len(L, -1) : 0;
    for (lua_Integer k = 1; k <= n && !rc; k++) {
        int isint;
        lua_rawgeti(L, -1, k);
        lua_Integer idx = lua_tointegerx(L, -1, &isint);
        lua_pop(L, 1);
        if (!isint || idx < 0 || idx >= (lua_Integer)e->nrails || ((m >> idx) & 1))
            rc = xr__fail(XR_ESCRIPT, "script %s: register returned rails[%lld], which is not a "
                                      "distinct rail index 0..%u", pol->path, (long long)k,
                          e->nrails - 1);
        else
            m |= 1ull << idx;
    }
    lua_pop(L, 1);
    if (!rc && !m)
        rc = xr__fail(XR_ESCRIPT, "script %s: register returned no rails for the region at "
                                  "0x%llx (+%zu)", pol->path, (unsigned long long)g->addr, g->len);
    if (!rc)
        *mask = m;
    return rc;
}

/* Ask on_rail_error about rail i; true if the answer is "disable". Engine lock held. */
static bool ask_rail_error(xr_engine *e, unsigned i, const char *why)
{
    xr_policy *pol = e->policy;
    lua_State *L = xr_lua_state(pol->lua);
    lua_rawgeti(L, LUA_REGISTRYINDEX, pol->rail_error_ref);
    push_rail(L, e, i, all_rails(e));
    lua_createtable(L, 0, 2);
    lua_pushstring(L, why);
    lua_setfield(L, -2, "message");
    lua_pushstring(L, "XR_EIO");
    lua_setfield(L, -2, "code");
    atomic_fetch_add(&e->rail_error_calls, 1);
    if (xr_lua_call(pol->lua, 2, 1, "on_rail_error")) {
        xr__log(e, XR_LOG_WARN, "%s", xr_engine_last_error(e));
        return false;
    }
    const char *ans = lua_tostring(L, -1);
    bool disable = ans && strcmp(ans, "disable") == 0;
    if (!ans || (!disable && strcmp(ans, "retry") && strcmp(ans, "fail")))
        xr__log(e, XR_LOG_WARN, "script %s: on_rail_error answered '%s'; expected \"retry\", "
                                "\"disable\" or \"fail\"; rail %u stays as it is",
                pol->path, ans ? ans : luaL_typename(L, -1), i);
    lua_pop(L, 1);
    return disable;
}

void xr__policy_rail_errors(xr_engine *e)
{
    for (unsigned i = 0; i < e->nrails; i++) {
        xr_rail *r = &e->rails[i];
        char why[sizeof r->err_why];
        pthread_mutex_lock(&r->lock);
        bool pending = r->err_pending;
        r->err_pending = false;
        memcpy(why, r->err_why, sizeof why);
        pthread_mutex_unlock(&r->lock);
        if (!pending)
            continue;
        pthread_mutex_lock(&e->lock);
        bool disable = e->policy && e->policy->rail_error_ref != LUA_NOREF &&
                       atomic_load(&r->up) && ask_rail_error(e, i, why);
        pthread_mutex_unlock(&e->lock);
        if (disable) {
            xr_rail_set_state(e, i, 0);
            atomic_fetch_add(&e->rails_disabled, 1);
            xr__log(e, XR_LOG_WARN, "rail %u taken out of plans by the policy after: %s", i, why);
        }
    }
}

const char *xr__policy_path(const xr_engine *e)
{
    return e->policy ? e->policy->path : NULL;
}
