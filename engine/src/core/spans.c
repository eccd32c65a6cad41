/*
 * spans.c - the sorted range index (see spans.h).
 */
#include "spans.h"

#include <stdlib.h>
#include <string.h>

/* Index of the first span that starts after `a`. */
static size_t upper(const xr_spans *s, uint64_t a)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid].start <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void refresh(xr_spans *s, size_t from)
{
    for (size_t i = from; i < s->n; i++) {
        uint64_t prev = i ? s->maxend[i - 1] : 0;
        s->maxend[i] = s->v[i].end > prev ? s->v[i].end : prev;
    }
}

int xr__spans_insert(xr_spans *s, uint64_t start, uint64_t end, void *item)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        xr_span *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        uint64_t *m = realloc(s->maxend, cap * sizeof *m);
        if (!m)
            return -1;
        s->maxend = m;
        s->cap = cap;
    }
    size_t at = upper(s, start);
    memmove(&s->v[at + 1], &s->v[at], (s->n - at) * sizeof *s->v);
    s->v[at] = (xr_span){start, end, item};
    s->n++;
    refresh(s, at);
    return 0;
}

int xr__spans_remove(xr_spans *s, uint64_t start, void *item)
{
    /* Spans with this start sit just before upper(start). */
    for (size_t i = upper(s, start); i-- > 0 && s->v[i].start == start;) {
        if (s->v[i].item != item)
            continue;
        memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof *s->v);
        s->n--;
        refresh(s, i);
        return 0;
    }
    return -1;
}

ptrdiff_t xr__spans_enclosing(const xr_spans *s, uint64_t a, uint64_t b, size_t from)
{
    size_t last = upper(s, a); /* candidates are [0, last) */
    if (from >= last)
        return -1;
    /* The first index at or after `from` whose running maximum reaches b:
     * before it nothing ends late enough; it ends late enough itself. */
    size_t lo = from, hi = last;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->maxend[mid] >= b)
            hi = mid;
        else
            lo = mid + 1;
    }
    /* After the first hit the running maximum says no more; scan. */
    for (size_t i = lo; i < last; i++)
        if (s->v[i].end >= b)
            return (ptrdiff_t)i;
    return -1;
}

ptrdiff_t xr__spans_overlapping(const xr_spans *s, uint64_t a, uint64_t b, size_t from)
{
    size_t last = b ? upper(s, b - 1) : 0; /* spans starting before b */
    size_t lo = from, hi = last;
    while (lo < hi) { /* skip what ends at or before a, as a whole prefix */
        size_t mid = lo + (hi - lo) / 2;
        if (s->maxend[mid] > a)
            hi = mid;
        else
            lo = mid + 1;
    }
    for (size_t i = lo; i < last; i++)
        if (s->v[i].end > a)
            return (ptrdiff_t)i;
    return -1;
}

void xr__spans_free(xr_spans *s)
{
    free(s->v);
    free(s->maxend);
    memset(s, 0, sizeof *s);
}
