/* lua.c - the sandboxed Lua state (see lua_sandbox.h for what the sandbox allows). */
#include "lua_sandbox.h"

#include "log.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The hook fires every HOOK_STEP VM instructions: coarse enough to cost
 * nothing measurable, fine enough to stop a runaway loop within microseconds. */
#define HOOK_STEP 1000

struct xr_lua {
    lua_State *L;
    const struct xr_logger *log_to;
    size_t mem_used, mem_limit;
    uint64_t budget, spent;
    int mem_hit;            /* the allocator refused during this call */
    int budget_hit;         /* the budget ran out during this call */
    const char *name;
};

static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    xr_lua *s = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        s->mem_used -= old;
        return NULL;
    }
    if (nsize > old && s->mem_used - old + nsize > s->mem_limit) {
        s->mem_hit = 1;
        return NULL; /* Lua raises "not enough memory" */
    }
    void *p = realloc(ptr, nsize);
    if (p)
        s->mem_used = s->mem_used - old + nsize;
    return p;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    xr_lua *s;
    lua_getallocf(L, (void **)&s);
    s->spent += HOOK_STEP;
    if (s->spent > s->budget) {
        s->budget_hit = 1;
        /* Re-armed on every step from now on: a pcall inside the script
         * that catches this error is hit again at its next instructions. */
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
        lua_getinfo(L, "Sl", ar); /* where the script was when it ran out */
        luaL_error(L, "%s:%d: instruction budget of %I exceeded", ar->short_src, ar->currentline,
                   (lua_Integer)s->budget);
    }
}

static int sandbox_print(lua_State *L)
{
    xr_lua *s;
    lua_getallocf(L, (void **)&s);
    int n = lua_gettop(L); /* before the buffer, which may take a stack slot */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    xr__log_write(s->log_to, XR_LOG_INFO, "[%s] %s", s->name ? s->name : "script",
            lua_tostring(L, -1));
    return 0;
}

static int locked_newindex(lua_State *L)
{
    return luaL_error(L, "attempt to write global '%s': globals are locked after load",
                      luaL_tolstring(L, 2, NULL));
}

static int locked_index(lua_State *L)
{
    return luaL_error(L, "attempt to read undefined global '%s'", luaL_tolstring(L, 2, NULL));
}

static void open_libs(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},       {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},
    };
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
        luaL_requiref(L, libs[i].name, libs[i].func, 1);
        lua_pop(L, 1);
    }
    /* Anything that loads code, reaches the collector or bypasses the
     * global lock goes; os, io, debug and package are never opened. */
    static const char *const drop[] = {"load", "loadfile", "dofile", "collectgarbage",
                                       "rawset", "require"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, drop[i]);
    }
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    lua_pushcfunction(L, sandbox_print);
    lua_setglobal(L, "print");
}

int xr__lua_new(const struct xr_logger *log_to, const xr_lua_limits *lim, xr_lua **out)
{
    xr_lua *s = calloc(1, sizeof *s);
    if (!s)
        return xr__error_set(XR_ENOMEM, "lua: out of memory");
    s->log_to = log_to;
    s->mem_limit = lim && lim->mem_bytes ? lim->mem_bytes : 4u << 20;
    s->budget = lim && lim->instructions ? lim->instructions : 10000000;
    s->L = lua_newstate(sandbox_alloc, s);
    if (!s->L) {
        size_t cap = s->mem_limit;
        free(s);
        return xr__error_set(XR_ENOMEM, "lua: cannot create a state within %zu bytes", cap);
    }
    open_libs(s->L);
    *out = s;
    return 0;
}

void xr__lua_free(xr_lua *s)
{
    if (!s)
        return;
    lua_close(s->L);
    free(s);
}

lua_State *xr__lua_state(xr_lua *s)
{
    return s->L;
}

size_t xr__lua_mem_used(const xr_lua *s)
{
    return s->mem_used;
}

/* Run the function below nargs arguments with a fresh budget. */
static int protected(xr_lua *s, int nargs, int nresults, const char *what)
{
    lua_State *L = s->L;
    s->spent = 0;
    s->budget_hit = s->mem_hit = 0;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_STEP);
    int rc = lua_pcall(L, nargs, nresults, 0);
    lua_sethook(L, NULL, 0, 0);
    if (rc == LUA_OK && (s->budget_hit || s->mem_hit)) {
        /* The script caught the stop with its own pcall and carried on. */
        lua_pop(L, nresults);
        return xr__error_set(XR_ESCRIPT, "script %s: %s: %s (caught by the script's own pcall, "
                                    "still refused)",
                        s->name, what, s->budget_hit ? "instruction budget exceeded"
                                                     : "memory limit exceeded");
    }
    if (rc != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        int r = xr__error_set(XR_ESCRIPT, "script %s: %s: %s%s", s->name, what,
                         msg ? msg : "error object is not a string",
                         rc == LUA_ERRMEM || s->mem_hit ? " (memory limit exceeded)" : "");
        lua_pop(L, 1);
        return r;
    }
    return 0;
}

int xr__lua_load(xr_lua *s, const char *name, const char *src, size_t len, int nret)
{
    lua_State *L = s->L;
    s->name = name;
    char chunk[256];
    snprintf(chunk, sizeof chunk, "@%s", name);
    int rc = luaL_loadbufferx(L, src, len, chunk, "t");
    if (rc != LUA_OK) {
        int r = xr__error_set(XR_ESCRIPT, "script %s: load: %s", name, lua_tostring(L, -1));
        lua_pop(L, 1);
        return r;
    }
    rc = protected(s, 0, nret, "top-level chunk");
    if (rc)
        return rc;
    /* Lock the globals: a hook must not keep state between calls, and a
     * typo in a global name is an error, not a nil. */
    lua_pushglobaltable(L);
    lua_newtable(L);
    lua_pushcfunction(L, locked_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, locked_index);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable"); /* setmetatable(_G, nil) is refused */
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
    return 0;
}

int xr__lua_call(xr_lua *s, int nargs, int nresults, const char *what)
{
    return protected(s, nargs, nresults, what);
}

const char *xr__lua_unknown_key(lua_State *L, int t, const char *const keys[])
{
    t = lua_absindex(L, t);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        bool known = false;
        for (size_t i = 0; k && keys[i] && !known; i++)
            known = !strcmp(k, keys[i]);
        if (!known) {
            const char *name = k ? k : luaL_typename(L, -1);
            lua_pop(L, 1); /* a string key stays alive in the table */
            return name;
        }
    }
    return NULL;
}

const char *xr__lua_key_list(const char *const keys[], char *buf, size_t cap)
{
    size_t w = 0;
    buf[0] = 0;
    for (size_t i = 0; keys[i]; i++)
        xr__text_put(buf, cap, &w, "%s%s", i ? ", " : "", keys[i]);
    return buf;
}
