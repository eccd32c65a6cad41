/*
 * size_arg.h - "64k", "1M", "2G" or a plain byte count, for the benchmarks'
 * command lines.
 */
#ifndef XR_BENCH_SIZE_ARG_H
#define XR_BENCH_SIZE_ARG_H

#include <stddef.h>
#include <stdlib.h>

/* The size, or 0 for text that is not one. */
static inline size_t size_arg(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end == 'k' || *end == 'K')
        v *= 1024;
    else if (*end == 'm' || *end == 'M')
        v *= 1024 * 1024;
    else if (*end == 'g' || *end == 'G')
        v *= 1024.0 * 1024 * 1024;
    else if (*end)
        return 0;
    return v > 0 ? (size_t)v : 0;
}

#endif
