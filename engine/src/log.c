/*
 * log.c - the last-error text, the engine log, and the text builder that
 * the describe-style calls (config, layout) share.
 *
 * The last error is per thread, like errno: an engine is shared by threads,
 * and one thread's failure must not overwrite the text another is reading.
 */
#include "internal.h"

#include <stdio.h>

static __thread char xr__last_error[XR_ERRMSG_MAX];

int xr__fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(xr__last_error, sizeof xr__last_error, fmt, ap);
    va_end(ap);
    return code;
}

const char *xr_engine_last_error(xr_engine *e)
{
    (void)e;
    return xr__last_error;
}

void xr__log(const xr_engine *e, int level, const char *fmt, ...)
{
    int max = e ? e->log_level : XR_LOG_WARN;
    if (level > max)
        return;
    static const char *const tag[] = {"error", "warn", "info", "debug"};
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "xrail[%s] %s: %s\n", e && e->name ? e->name : "-", tag[level], line);
}

void xr__put(char *buf, size_t cap, size_t *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    /* Past the end, keep counting so that the caller can report the size. */
    int n = vsnprintf(buf + (*w < cap ? *w : cap), *w < cap ? cap - *w : 0, fmt, ap);
    va_end(ap);
    if (n > 0)
        *w += (size_t)n;
}
