/*
 * spans.h - a sorted index of address ranges that may overlap, for
 * "which entry encloses [a, b)?" in O(log n).
 *
 * Ranges sit in an array sorted by start, beside a running maximum of their
 * ends. The running maximum only grows, so the first range whose running
 * maximum reaches b is found by binary search, and that range itself ends
 * at or after b; if it also starts at or before a, it encloses [a, b).
 * Inserting and removing move memory (O(n)), which is nothing next to the
 * memory registration each of them stands for.
 */
#ifndef XR_SPANS_H
#define XR_SPANS_H

#include <stddef.h>
#include <stdint.h>

typedef struct xr_span {
    uint64_t start, end;    /* [start, end) */
    void *item;
} xr_span;

typedef struct xr_spans {
    xr_span *v;
    uint64_t *maxend;       /* maxend[i] = max(v[0..i].end) */
    size_t n, cap;
} xr_spans;

int xr__spans_insert(xr_spans *s, uint64_t start, uint64_t end, void *item);
/* Remove `item`, inserted with `start`; 0 if it was there, -1 if not. */
int xr__spans_remove(xr_spans *s, uint64_t start, void *item);
/*
 * The first span, in start order from index `from`, that encloses [a, b):
 * its index, or -1. Pass from = 0 for the first; from = i + 1 to go on
 * after a candidate the caller rejected.
 */
ptrdiff_t xr__spans_enclosing(const xr_spans *s, uint64_t a, uint64_t b, size_t from);
/* Spans that overlap [a, b): the index of the first at or after `from`, or -1. */
ptrdiff_t xr__spans_overlapping(const xr_spans *s, uint64_t a, uint64_t b, size_t from);
void xr__spans_free(xr_spans *s);

#endif
