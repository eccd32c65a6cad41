/* text.c - the text builder that the describe-style calls (config, layout, CLI) share. */
#include "log.h"

#include <stdio.h>

void xr__text_put(char *buf, size_t cap, size_t *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    /* Past the end, keep counting so that the caller can report the size. */
    int n = vsnprintf(buf + (*w < cap ? *w : cap), *w < cap ? cap - *w : 0, fmt, ap);
    va_end(ap);
    if (n > 0)
        *w += (size_t)n;
}
