/* test_plan.c - striping arithmetic (engine/src/plan.c). */
#include "plan.h"

#include "unit.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define MAXP 100000

typedef struct rec {
    size_t n;
    unsigned rail[MAXP];
    size_t off[MAXP], len[MAXP];
} rec;

static rec R;

static void record(void *arg, unsigned rail, size_t off, size_t len)
{
    rec *r = arg;
    ck_assert_uint_lt(r->n, MAXP);
    r->rail[r->n] = rail;
    r->off[r->n] = off;
    r->len[r->n] = len;
    r->n++;
}

static void plan_make(xr_plan *p, unsigned n, const uint32_t *w, size_t chunk, size_t stripe_min)
{
    memset(p, 0, sizeof *p);
    p->nrails = n;
    p->stripe_min = stripe_min;
    p->align = 4096;
    for (unsigned k = 0; k < n; k++) {
        p->rail[k] = (uint8_t)(n - 1 - k); /* rail indexes need not be in order */
        p->weight[k] = w ? w[k] : 1;
        p->chunk[k] = chunk;
    }
}

static int by_off(const void *a, const void *b)
{
    size_t x = R.off[*(const size_t *)a], y = R.off[*(const size_t *)b];
    return x < y ? -1 : x > y;
}

/* Pieces tile [0, len) exactly once, and none exceeds its rail's chunk. */
static void check_tiling(const xr_plan *p, size_t len)
{
    size_t *idx = malloc((R.n ? R.n : 1) * sizeof *idx);
    for (size_t i = 0; i < R.n; i++) {
        idx[i] = i;
        ck_assert_uint_gt(R.len[i], 0);
        unsigned k;
        for (k = 0; k < p->nrails && p->rail[k] != R.rail[i]; k++)
            ;
        ck_assert_uint_lt(k, p->nrails);
        ck_assert_uint_le(R.len[i], p->chunk[k]);
    }
    qsort(idx, R.n, sizeof *idx, by_off);
    size_t end = 0;
    for (size_t i = 0; i < R.n; i++) {
        ck_assert_uint_eq(R.off[idx[i]], end); /* no gap, no overlap */
        end += R.len[idx[i]];
    }
    ck_assert_uint_eq(end, len);
    free(idx);
}

static size_t rail_bytes(unsigned rail)
{
    size_t s = 0;
    for (size_t i = 0; i < R.n; i++)
        if (R.rail[i] == rail)
            s += R.len[i];
    return s;
}

START_TEST(below_threshold_goes_whole_round_robin)
{
    xr_plan p;
    plan_make(&p, 4, NULL, 1 << 20, 128 << 10);
    unsigned rr = 0, uses[4] = {0};
    for (int i = 0; i < 400; i++) {
        R.n = 0;
        ck_assert_uint_eq(xr__plan_split(&p, ~0ull, (128 << 10) - 1, &rr, record, &R), 1);
        ck_assert_uint_eq(R.len[0], (128 << 10) - 1);
        uses[R.rail[0]]++;
    }
    for (int k = 0; k < 4; k++)
        ck_assert_uint_eq(uses[k], 100);
}
END_TEST

START_TEST(at_threshold_stripes_over_all_rails)
{
    for (unsigned n = 1; n <= 64; n *= 2) {
        xr_plan p;
        plan_make(&p, n, NULL, 1 << 20, 128 << 10);
        unsigned rr = 0;
        R.n = 0;
        size_t len = 128 << 10;
        xr__plan_split(&p, ~0ull, len, &rr, record, &R);
        check_tiling(&p, len);
        for (unsigned k = 0; k < n; k++)
            ck_assert_msg(rail_bytes(k) > 0, "%u rails: rail %u unused", n, k);
    }
}
END_TEST

START_TEST(weights_give_exact_shares)
{
    static const uint32_t w[4] = {4, 4, 1, 1}; /* 400, 400, 100, 100 Mbit/s */
    xr_plan p;
    plan_make(&p, 4, w, 1 << 20, 128 << 10);
    unsigned rr = 0;
    size_t len = (64 << 20) + 12345; /* not a multiple of anything */
    R.n = 0;
    xr__plan_split(&p, ~0ull, len, &rr, record, &R);
    check_tiling(&p, len);
    for (unsigned k = 0; k < 4; k++) {
        double want = (double)len * w[k] / 10.0, got = (double)rail_bytes(p.rail[k]);
        /* Within one alignment unit of the exact share. */
        ck_assert_msg(got > want - 4096 - 1 && got < want + 4096 + 1, "rail %u: %f vs %f",
                      p.rail[k], got, want);
    }
}
END_TEST

START_TEST(chunks_respect_the_provider_cap)
{
    xr_plan p;
    plan_make(&p, 3, NULL, 8192, 1); /* a provider with an 8 KiB max message */
    unsigned rr = 0;
    size_t len = (3 << 20) + 7;
    R.n = 0;
    size_t n = xr__plan_split(&p, ~0ull, len, &rr, record, &R);
    ck_assert_uint_eq(n, R.n);
    check_tiling(&p, len);
    ck_assert_uint_ge(n, len / 8192);
}
END_TEST

START_TEST(mask_limits_rails)
{
    xr_plan p;
    plan_make(&p, 8, NULL, 1 << 20, 1);
    unsigned rr = 0;
    R.n = 0;
    xr__plan_split(&p, 0x5, 1 << 20, &rr, record, &R); /* only rails 0 and 2 */
    check_tiling(&p, 1 << 20);
    for (size_t i = 0; i < R.n; i++)
        ck_assert(R.rail[i] == 0 || R.rail[i] == 2);
    ck_assert_uint_eq(rail_bytes(0), 1 << 19);
    R.n = 0;
    ck_assert_uint_eq(xr__plan_split(&p, 1ull << 40, 100, &rr, record, &R), 0);
    ck_assert_uint_eq(xr__plan_split(&p, ~0ull, 0, &rr, record, &R), 0);
}
END_TEST

START_TEST(random_lengths_tile)
{
    uint64_t s = 99;
    for (int it = 0; it < 300; it++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        unsigned n = 1 + s % 16;
        uint32_t w[16];
        for (unsigned k = 0; k < n; k++)
            w[k] = 1 + (uint32_t)((s >> (k * 3)) % 7);
        xr_plan p;
        plan_make(&p, n, w, 1 + s % (1 << 18), s % (1 << 16));
        size_t len = 1 + (s >> 20) % (4 << 20);
        unsigned rr = (unsigned)s;
        R.n = 0;
        xr__plan_split(&p, ~0ull, len, &rr, record, &R);
        check_tiling(&p, len);
    }
}
END_TEST

static void add(TCase *tc)
{
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, below_threshold_goes_whole_round_robin);
    tcase_add_test(tc, at_threshold_stripes_over_all_rails);
    tcase_add_test(tc, weights_give_exact_shares);
    tcase_add_test(tc, chunks_respect_the_provider_cap);
    tcase_add_test(tc, mask_limits_rails);
    tcase_add_test(tc, random_lengths_tile);
}

int main(void)
{
    return unit_run("plan", add);
}
