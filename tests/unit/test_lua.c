/* test_lua.c - the Lua sandbox (engine/src/lua.c). Every escape or abuse
 * must fail with XR_ESCRIPT and a clear message, and the same state must go
 * on working afterwards. */
#include "lua_sandbox.h"
#include "log.h"
#include "xrail.h"

#include "unit.h"

#include <check.h>
#include <stdio.h>
#include <lauxlib.h>
#include <string.h>

/* A policy-like script: a module table with one good hook and the bad ones. */
static const char *const script =
    "local M = {}\n"
    "function M.ok() return 42 end\n"
    "function M.os() return os.execute('true') end\n"
    "function M.io() return io.open('/etc/passwd') end\n"
    "function M.req() return require('os') end\n"
    "function M.load() return load('return 1')() end\n"
    "function M.dump() return string.dump(M.ok) end\n"
    "function M.global() counter = 1 end\n"
    "function M.rawset() rawset(_G, 'counter', 1) end\n"
    "function M.unlock() setmetatable(_G, nil) end\n"
    "function M.gc() collectgarbage() end\n"
    "function M.loop() while true do end end\n"
    "function M.sneaky()\n"
    "  for i = 1, 1000 do pcall(function() while true do end end) end\n"
    "  return 1\n"
    "end\n"
    "function M.sneaky_once() pcall(function() while true do end end) return 1 end\n"
    "function M.bomb() local t = {} for i = 1, 1e9 do t[#t + 1] = string.rep('x', 1 << 16) end end\n"
    "function M.bigrep() return #string.rep('x', 1 << 30) end\n"
    "function M.recurse() local function f(n) return 1 + f(n + 1) end return f(1) end\n"
    "function M.boom() error('no rail for you') end\n"
    "function M.print() print('hello from a hook', 1, true) return 7 end\n"
    "return M\n";

static xr_lua *S;

static void setup(void)
{
    xr_lua_limits lim = {.mem_bytes = 2u << 20, .instructions = 2000000};
    ck_assert_int_eq(xr__lua_new(NULL, &lim, &S), 0);
    ck_assert_int_eq(xr__lua_load(S, "policy/test.lua", script, strlen(script), 1), 0);
    ck_assert(lua_istable(xr__lua_state(S), -1));
    lua_setfield(xr__lua_state(S), LUA_REGISTRYINDEX, "M");
}

static void teardown(void)
{
    xr__lua_free(S);
}

/* Call M[name]() and return its status; the last error holds the message. */
static int call(const char *name)
{
    lua_State *L = xr__lua_state(S);
    lua_getfield(L, LUA_REGISTRYINDEX, "M");
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    int rc = xr__lua_call(S, 0, 1, name);
    if (rc == 0)
        lua_pop(L, 1);
    return rc;
}

static void expect_refused(const char *hook, const char *needle)
{
    int top = lua_gettop(xr__lua_state(S));
    int rc = call(hook);
    const char *msg = xr__error_last();
    ck_assert_msg(rc == XR_ESCRIPT, "%s: rc %d", hook, rc);
    /* "a|b": either text will do. */
    char want[128];
    snprintf(want, sizeof want, "%s", needle);
    char *alt = strchr(want, '|');
    if (alt)
        *alt++ = 0;
    ck_assert_msg(strstr(msg, want) || (alt && strstr(msg, alt)), "%s: message '%s' lacks '%s'",
                  hook, msg, needle);
    ck_assert_msg(strstr(msg, "policy/test.lua"), "%s: message '%s' lacks the script", hook, msg);
    ck_assert_int_eq(lua_gettop(xr__lua_state(S)), top); /* nothing left on the stack */
    /* The state still works. */
    lua_State *L = xr__lua_state(S);
    lua_getfield(L, LUA_REGISTRYINDEX, "M");
    lua_getfield(L, -1, "ok");
    lua_remove(L, -2);
    ck_assert_int_eq(xr__lua_call(S, 0, 1, "ok"), 0);
    ck_assert_int_eq(lua_tointeger(L, -1), 42);
    lua_pop(L, 1);
}

START_TEST(no_os_io_require_load_dump)
{
    expect_refused("os", "undefined global 'os'");
    expect_refused("io", "undefined global 'io'");
    expect_refused("req", "undefined global 'require'");
    expect_refused("load", "undefined global 'load'");
    expect_refused("dump", "field 'dump'");
    expect_refused("gc", "undefined global 'collectgarbage'");
}
END_TEST

START_TEST(globals_locked_after_load)
{
    expect_refused("global", "attempt to write global 'counter'");
    expect_refused("rawset", "undefined global 'rawset'");
    expect_refused("unlock", "protected metatable");
}
END_TEST

START_TEST(infinite_loops_stop)
{
    expect_refused("loop", "instruction budget of 2000000 exceeded");
    expect_refused("sneaky", "instruction budget");
    expect_refused("sneaky_once", "instruction budget");
}
END_TEST

START_TEST(memory_and_stack_bombs_stop)
{
    expect_refused("bomb", "memory");
    expect_refused("bigrep", "memory");
    /* Lua's own stack limit, or the memory cap, whichever comes first. */
    expect_refused("recurse", "stack overflow|memory limit exceeded");
    ck_assert_uint_le(xr__lua_mem_used(S), 2u << 20);
}
END_TEST

static char printed[256];

static void keep_line(int level, const char *engine, const char *msg, void *user)
{
    (void)level, (void)engine, (void)user;
    snprintf(printed, sizeof printed, "%s", msg);
}

/* print() logs its arguments, tab-separated, and nothing else (a stack slot
 * of its buffer was once printed too: "... true\tuserdata: 0x..."). */
START_TEST(print_logs_its_arguments_only)
{
    xr_logger lg = {.name = "e", .level = XR_LOG_INFO};
    xr_lua *s;
    xr_lua_limits lim = {.mem_bytes = 2u << 20, .instructions = 2000000};
    ck_assert_int_eq(xr__lua_new(&lg, &lim, &s), 0);
    const char *src = "print('hello from a hook', 1, true) return 1";
    xr_log_set_handler(keep_line, NULL);
    printed[0] = 0;
    ck_assert_int_eq(xr__lua_load(s, "t.lua", src, strlen(src), 1), 0);
    xr_log_set_handler(NULL, NULL);
    ck_assert_str_eq(printed, "[t.lua] hello from a hook\t1\ttrue");
    xr__lua_free(s);
}
END_TEST

START_TEST(errors_name_script_and_line)
{
    expect_refused("boom", "policy/test.lua:21: no rail for you");
    ck_assert_int_eq(call("print"), 0);
}
END_TEST

/* lua_dump's writer must leave the Lua stack alone: collect into C memory. */
typedef struct bytes {
    char buf[4096];
    size_t n;
} bytes;

static int collect(lua_State *L, const void *p, size_t n, void *ud)
{
    (void)L;
    bytes *b = ud;
    if (b->n + n > sizeof b->buf)
        return 1;
    memcpy(b->buf + b->n, p, n);
    b->n += n;
    return 0;
}

static void expect_load_fails(const char *src, size_t len, const char *needle)
{
    xr_lua *s;
    xr_lua_limits lim = {.mem_bytes = 1u << 20, .instructions = 100000};
    ck_assert_int_eq(xr__lua_new(NULL, &lim, &s), 0);
    ck_assert_int_eq(xr__lua_load(s, "bad.lua", src, len, 1), XR_ESCRIPT);
    ck_assert_msg(strstr(xr__error_last(), needle), "'%s' lacks '%s'",
                  xr__error_last(), needle);
    xr__lua_free(s);
}

static void expect_text_fails(const char *src, const char *needle)
{
    expect_load_fails(src, strlen(src), needle);
}

START_TEST(bad_chunks_refused)
{
    expect_text_fails("local x = \n\n  = 3", "bad.lua:3:");
    expect_text_fails("while true do end", "instruction budget");
    expect_text_fails("local t = {} while true do t[#t+1] = {} end", "memory");
    expect_text_fails("os.exit(1)", "global 'os'");
    /* Bytecode is refused: real bytecode from a plain Lua state, as the script. */
    lua_State *L = luaL_newstate();
    ck_assert_int_eq(luaL_loadstring(L, "return 1"), 0);
    static bytes b;
    ck_assert_int_eq(lua_dump(L, collect, &b, 0), 0);
    ck_assert_uint_gt(b.n, 4);
    expect_load_fails(b.buf, b.n, "attempt to load a binary chunk");
    lua_close(L);
}
END_TEST

static void add(TCase *tc)
{
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, no_os_io_require_load_dump);
    tcase_add_test(tc, globals_locked_after_load);
    tcase_add_test(tc, infinite_loops_stop);
    tcase_add_test(tc, memory_and_stack_bombs_stop);
    tcase_add_test(tc, print_logs_its_arguments_only);
    tcase_add_test(tc, errors_name_script_and_line);
    tcase_add_test(tc, bad_chunks_refused);
}

int main(void)
{
    return unit_run("lua", add);
}
