/* test_script.c - the script search path and reading (engine/src/core/script.c). */
#include "log.h"
#include "script.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[64];

static void put(const char *rel, const char *body)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(body, f);
    fclose(f);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    ck_assert_int_eq(system(cmd), 0);
}

/* Two directories, each with a policy/ subdirectory. */
static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/xrail-script-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    char p[256];
    const char *dirs[] = {"a", "a/policy", "b", "b/policy", "env", NULL};
    for (int i = 0; dirs[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", root, dirs[i]);
        ck_assert_int_eq(mkdir(p, 0700), 0);
    }
    put("a/policy/p.lua", "a-sub");
    put("b/p.lua", "b-top");
    put("b/only_b.lua", "b-only");
    put("env/e.lua", "from-env");
}

static xr_engine_opts opts(const char *path, int ignore_env)
{
    xr_engine_opts o;
    memset(&o, 0, sizeof o);
    o.script_path = path;
    o.ignore_env = ignore_env;
    return o;
}

START_TEST(search_order)
{
    setup();
    char list[256], out[512];
    snprintf(list, sizeof list, "%s/a:%s/b", root, root);
    xr_engine_opts o = opts(list, 1);
    /* a/p.lua does not exist; a/policy/p.lua does, and a comes before b. */
    ck_assert_int_eq(xr__script_find(&o, "p.lua", "policy", out, sizeof out), 0);
    size_t len;
    char *s = xr__script_read(out, &len);
    ck_assert_str_eq(s, "a-sub");
    ck_assert_uint_eq(len, 5);
    free(s);
    /* Without the sub-directory, b's top level is the first. */
    ck_assert_int_eq(xr__script_find(&o, "p.lua", NULL, out, sizeof out), 0);
    s = xr__script_read(out, &len);
    ck_assert_str_eq(s, "b-top");
    free(s);
    ck_assert_int_eq(xr__script_find(&o, "only_b.lua", "policy", out, sizeof out), 0);
    /* A name with a '/' is a path. */
    snprintf(list, sizeof list, "%s/env/e.lua", root);
    ck_assert_int_eq(xr__script_find(&o, list, NULL, out, sizeof out), 0);
    ck_assert_str_eq(out, list);
    snprintf(list, sizeof list, "%s/env/none.lua", root);
    ck_assert_int_eq(xr__script_find(&o, list, NULL, out, sizeof out), XR_EINVAL);
    teardown();
}
END_TEST

START_TEST(environment_unless_ignored)
{
    setup();
    char env[128], out[512];
    snprintf(env, sizeof env, "%s/env", root);
    setenv("XRAIL_SCRIPT_PATH", env, 1);
    xr_engine_opts o = opts(NULL, 0);
    ck_assert_int_eq(xr__script_find(&o, "e.lua", NULL, out, sizeof out), 0);
    o = opts(NULL, 1);
    ck_assert_int_eq(xr__script_find(&o, "e.lua", NULL, out, sizeof out), XR_ENOENT);
    /* The message names where it looked. */
    ck_assert_ptr_nonnull(strstr(xr__error_last(), "'e.lua' not found"));
    unsetenv("XRAIL_SCRIPT_PATH");
    teardown();
}
END_TEST

START_TEST(read_missing_and_empty)
{
    setup();
    char p[256];
    size_t len = 99;
    snprintf(p, sizeof p, "%s/none.lua", root);
    ck_assert_ptr_null(xr__script_read(p, &len));
    put("empty.lua", "");
    snprintf(p, sizeof p, "%s/empty.lua", root);
    char *s = xr__script_read(p, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(s, "");
    free(s);
    teardown();
}
END_TEST

static void add(TCase *tc)
{
    tcase_add_test(tc, search_order);
    tcase_add_test(tc, environment_unless_ignored);
    tcase_add_test(tc, read_missing_and_empty);
}

int main(void)
{
    return unit_run("script", add);
}
