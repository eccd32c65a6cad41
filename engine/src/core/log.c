/* log.c - the engine log: one line per event on stderr, filtered by level. */
#include "log.h"

#include <stdio.h>

void xr__log_write(const xr_logger *lg, int level, const char *fmt, ...)
{
    int max = lg ? lg->level : XR_LOG_WARN;
    if (level > max)
        return;
    static const char *const tag[] = {"error", "warn", "info", "debug"};
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "xrail[%s] %s: %s\n", lg && lg->name ? lg->name : "-", tag[level], line);
}
