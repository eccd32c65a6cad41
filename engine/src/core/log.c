/* log.c - the engine log: one line per event on stderr, filtered by level. */
#include "log.h"

#include <stdio.h>
#include <time.h>

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

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool xr__log_limit_pass(xr_log_limit *l, uint64_t interval_ns, unsigned *held)
{
    uint64_t now = now_ns();
    if (l->last_ns && now - l->last_ns < interval_ns) {
        l->held++;
        return false;
    }
    *held = l->held;
    l->held = 0;
    l->last_ns = now ? now : 1;
    return true;
}

bool xr__log_limit_due(xr_log_limit *l, uint64_t interval_ns, unsigned *held)
{
    if (!l->held)
        return false;
    uint64_t now = now_ns();
    if (now - l->last_ns < interval_ns)
        return false;
    *held = l->held;
    l->held = 0;
    l->last_ns = now;
    return true;
}
