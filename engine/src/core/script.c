/*
 * script.c - where an engine finds the scripts it loads (config, policy,
 * layout), and reading one whole.
 */
#define _GNU_SOURCE /* dladdr */
#include "script.h"

#include "log.h"

#include <dlfcn.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef XR_SHARE_DIR
#define XR_SHARE_DIR "/usr/local/share/xrail"
#endif

static bool try_path(const char *dir, size_t dlen, const char *sub, const char *name, char *out,
                     size_t cap)
{
    int n = snprintf(out, cap, "%.*s/%s%s%s", (int)dlen, dir, sub ? sub : "", sub ? "/" : "",
                     name);
    return n > 0 && (size_t)n < cap && access(out, R_OK) == 0;
}

/* Each directory of a ':'-separated list, as dir/name then dir/sub/name. */
static bool search_list(const char *list, const char *sub, const char *name, char *out,
                        size_t cap)
{
    while (list && *list) {
        const char *end = strchr(list, ':');
        size_t len = end ? (size_t)(end - list) : strlen(list);
        if (len && (try_path(list, len, NULL, name, out, cap) ||
                    (sub && try_path(list, len, sub, name, out, cap))))
            return true;
        list = end ? end + 1 : NULL;
    }
    return false;
}

static char share_dir[4096];

static void find_share_dir(void)
{
    Dl_info info;
    char lib[4096];
    if (!dladdr((void *)xr__script_find, &info) || !info.dli_fname ||
        snprintf(lib, sizeof lib, "%s", info.dli_fname) >= (int)sizeof lib)
        return;
    snprintf(share_dir, sizeof share_dir, "%s/../share/xrail", dirname(lib));
}

/* <the directory this library was loaded from>/../share/xrail: where an
 * install put the scripts, whatever prefix `cmake --install --prefix` was
 * given after XR_SHARE_DIR was compiled in; "" if it cannot be told. */
static const char *installed_share(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, find_share_dir);
    return share_dir;
}

int xr__script_find(const xr_engine_opts *o, const char *name, const char *sub, char *out,
                    size_t cap)
{
    if (strchr(name, '/')) { /* a path, not a name to search for */
        snprintf(out, cap, "%s", name);
        return access(out, R_OK) == 0 ? 0 : xr__error_set(XR_EINVAL, "script '%s' cannot be read", name);
    }
    const char *env = o->ignore_env ? NULL : getenv("XRAIL_SCRIPT_PATH");
    if (search_list(o->script_path, sub, name, out, cap) || search_list(env, sub, name, out, cap) ||
        search_list(XR_SHARE_DIR, sub, name, out, cap) ||
        search_list(installed_share(), sub, name, out, cap))
        return 0;
    return xr__error_set(XR_ENOENT, "script '%s' not found in the script path (option '%s', "
                               "XRAIL_SCRIPT_PATH '%s', %s, %s)",
                    name, o->script_path ? o->script_path : "", env ? env : "", XR_SHARE_DIR,
                    *installed_share() ? installed_share() : "no install directory");
}

char *xr__script_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
            *len = fread(buf, 1, (size_t)n, f);
            buf[*len] = 0;
        }
    }
    fclose(f);
    return buf;
}
