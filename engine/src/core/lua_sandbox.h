/*
 * lua_sandbox.h - a sandboxed Lua 5.4 state for policy and layout scripts.
 *
 * The sandbox: base (without load, loadfile, dofile, collectgarbage, rawset),
 * string (without dump), table, math and utf8; chunks loaded as text only; an
 * allocator with a byte cap; an instruction budget per call that a script's
 * own pcall cannot swallow; globals locked after the top-level chunk runs;
 * print going to the engine log. Every entry is a protected call, and a
 * failure is XR_ESCRIPT with "script:line: reason" in the last error.
 */
#ifndef XR_LUA_SANDBOX_H
#define XR_LUA_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

struct xr_logger;

typedef struct xr_lua xr_lua;

typedef struct xr_lua_limits {
    size_t mem_bytes;       /* allocator cap; 0: 4 MiB */
    uint64_t instructions;  /* per call; 0: 10 million */
} xr_lua_limits;

int xr__lua_new(const struct xr_logger *log_to, const xr_lua_limits *lim, xr_lua **out);
void xr__lua_free(xr_lua *s);
lua_State *xr__lua_state(xr_lua *s);

/*
 * Load and run a script's top-level chunk (text only), leaving its `nret`
 * results on the stack, then lock the globals. `name` is what error
 * messages call the script.
 */
int xr__lua_load(xr_lua *s, const char *name, const char *src, size_t len, int nret);

/* Call the function below `nargs` arguments on the stack, under the budget.
 * `what` names the hook in error messages ("plan", "register"). */
int xr__lua_call(xr_lua *s, int nargs, int nresults, const char *what);

/*
 * The first key of the table at index t that `keys` (NULL-terminated) does
 * not list: the key itself, or its type's name when it is not a string;
 * NULL when every key is known. Readers of script tables call it so that a
 * misspelt key is an error, not silently ignored. The text lives as long
 * as the table.
 */
const char *xr__lua_unknown_key(lua_State *L, int t, const char *const keys[]);
/* "a, b, c" from a NULL-terminated list, for the error that follows. */
const char *xr__lua_key_list(const char *const keys[], char *buf, size_t cap);

/* Bytes the script's state holds now. */
size_t xr__lua_mem_used(const xr_lua *s);

#endif
