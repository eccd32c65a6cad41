/* plan.c - weighted striping of one descriptor over rails. */
#include "plan.h"

static size_t cut(const xr_plan *p, unsigned k, size_t off, size_t len, xr_piece_fn fn,
                  void *arg)
{
    size_t max = p->chunk[k] ? p->chunk[k] : len, n = 0;
    while (len) {
        size_t c = len < max ? len : max;
        fn(arg, p->rail[k], off, c);
        off += c;
        len -= c;
        n++;
    }
    return n;
}

size_t xr__plan_split(const xr_plan *p, uint64_t mask, size_t len, unsigned *rr,
                     xr_piece_fn fn, void *arg)
{
    unsigned elig[XR_MAX_RAILS], n = 0;
    uint64_t total = 0;
    for (unsigned k = 0; k < p->nrails; k++)
        if ((mask >> p->rail[k]) & 1 && p->weight[k]) {
            elig[n++] = k;
            total += p->weight[k];
        }
    if (!n || !len)
        return 0;
    if (len < p->stripe_min || n == 1) {
        unsigned k = elig[(*rr)++ % n];
        return cut(p, k, 0, len, fn, arg);
    }
    /* Boundaries are cumulative shares, so rounding never loses or doubles a
     * byte; aligning them keeps each rail's piece page-aligned when the
     * descriptor is. Tiny stripes fall back to byte granularity. */
    size_t align = p->align && len / n >= p->align ? p->align : 1;
    size_t chunks = 0, start = 0;
    uint64_t cum = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned k = elig[i];
        cum += p->weight[k];
        size_t end = len;
        if (i + 1 < n) {
            end = (size_t)((unsigned __int128)len * cum / total);
            end -= end % align;
            if (end < start)
                end = start;
        }
        chunks += cut(p, k, start, end - start, fn, arg);
        start = end;
    }
    return chunks;
}
