/* log.c - the engine log: one line per event, filtered by level, to stderr
 * with a timestamp or to the application's handler. */
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>

/* The handler, and how many calls to it are running: a new handler waits
 * for those, so that one being torn down (Python's, at exit) is never
 * called again. The handler runs with the lock released, as it may wait
 * for locks of its own (Python's GIL) held by a thread that is logging. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t idle;
    xr_log_fn fn;
    void *user;
    unsigned running;
} sink = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0};

void xr_log_set_handler(xr_log_fn fn, void *user)
{
    pthread_mutex_lock(&sink.lock);
    sink.fn = fn;
    sink.user = user;
    while (sink.running)
        pthread_cond_wait(&sink.idle, &sink.lock);
    pthread_mutex_unlock(&sink.lock);
}

void xr__log_write(const xr_logger *lg, int level, const char *fmt, ...)
{
    int max = lg ? lg->level : XR_LOG_WARN;
    if (level > max || level < XR_LOG_ERROR)
        return;
    static const char *const tag[] = {"error", "warn", "info", "debug"};
    const char *name = lg && lg->name ? lg->name : "-";
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&sink.lock);
    xr_log_fn fn = sink.fn;
    void *user = sink.user;
    sink.running += fn != NULL;
    pthread_mutex_unlock(&sink.lock);
    if (fn) {
        fn(level, name, line, user);
        pthread_mutex_lock(&sink.lock);
        if (--sink.running == 0)
            pthread_cond_broadcast(&sink.idle);
        pthread_mutex_unlock(&sink.lock);
        return;
    }
    /* Wall-clock time, UTC, to the millisecond: lines from several
     * processes (prefill, decode) can be merged and ordered. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ xrail[%s] %s: %s\n", when, ts.tv_nsec / 1000000, name, tag[level],
            line);
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
