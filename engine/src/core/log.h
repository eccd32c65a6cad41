/*
 * log.h - the error and log helpers every layer uses: the per-thread
 * last-error text behind every negative XR_E* return (error.c), the log
 * (log.c), and a bounded text builder (text.c).
 */
#ifndef XR_CORE_LOG_H
#define XR_CORE_LOG_H

#include "xrail.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XR_ERRMSG_MAX 512

/* Who logs and how much: an engine's name and level. NULL logs warnings
 * and errors under the name "-". */
typedef struct xr_logger {
    const char *name;
    int level;
} xr_logger;

/* Set the calling thread's last-error text; returns `code`, so that a
 * failure reads `return xr__error_set(XR_EINVAL, "...")`. */
int xr__error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The calling thread's last-error text. */
const char *xr__error_last(void);

void xr__log_write(const xr_logger *lg, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A kind of log line that may come in floods (one per failed chunk when a
 * peer dies): the first is written in full, then at most one per interval,
 * saying how many were held back. The caller's lock guards it. */
typedef struct xr_log_limit {
    uint64_t last_ns;       /* when a line of this kind was last written; 0: never */
    unsigned held;          /* lines held back since */
} xr_log_limit;

/* Whether a line may be written now; if so, *held gets how many were held
 * back since the last one (and the count starts again). */
bool xr__log_limit_pass(xr_log_limit *l, uint64_t interval_ns, unsigned *held);
/* Whether lines held back are due to be counted (an interval has passed
 * since the last line); if so, *held gets how many, and the count starts
 * again. Counts nothing itself: callers may ask on every pass. */
bool xr__log_limit_due(xr_log_limit *l, uint64_t interval_ns, unsigned *held);

/* Append to buf at *w; *w counts what would not fit, so *w >= cap means too small. */
void xr__text_put(char *buf, size_t cap, size_t *w, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
