/* test_spans.c - the range index (engine/src/core/spans.c), against a plain scan. */
#include "spans.h"
#include "unit.h"

#include <stdbool.h>
#include <stdlib.h>

#define N 400

typedef struct rng {
    uint64_t start, end;
    bool live;
} rng;

static uint64_t seed = 88172645463325252ull;
static uint64_t next(void)
{
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
}

/* Does some live range enclose [a, b)? The index must agree, and name one. */
static void agree(const xr_spans *s, const rng *r, uint64_t a, uint64_t b)
{
    bool any = false;
    for (int i = 0; i < N; i++)
        any = any || (r[i].live && r[i].start <= a && r[i].end >= b);
    ptrdiff_t k = xr__spans_enclosing(s, a, b, 0);
    ck_assert_int_eq(k >= 0, any);
    if (k >= 0) {
        ck_assert_uint_le(s->v[k].start, a);
        ck_assert_uint_ge(s->v[k].end, b);
    }
    /* Every enclosing span is found by walking on from each one found. */
    int found = 0, want = 0;
    for (int i = 0; i < N; i++)
        want += r[i].live && r[i].start <= a && r[i].end >= b;
    for (; k >= 0; k = xr__spans_enclosing(s, a, b, (size_t)k + 1))
        found++;
    ck_assert_int_eq(found, want);
}

START_TEST(random_against_a_scan)
{
    static rng r[N];
    xr_spans s = {0};
    for (int i = 0; i < N; i++) {
        r[i].start = next() % 100000;
        r[i].end = r[i].start + 1 + next() % 5000;
        r[i].live = true;
        ck_assert_int_eq(xr__spans_insert(&s, r[i].start, r[i].end, &r[i]), 0);
    }
    for (int q = 0; q < 3000; q++) {
        uint64_t a = next() % 106000, b = a + 1 + next() % 3000;
        agree(&s, r, a, b);
        if (q % 10 == 0) { /* remove one, then check on */
            int i = (int)(next() % N);
            if (r[i].live) {
                ck_assert_int_eq(xr__spans_remove(&s, r[i].start, &r[i]), 0);
                r[i].live = false;
                ck_assert_int_eq(xr__spans_remove(&s, r[i].start, &r[i]), -1);
            }
        }
    }
    xr__spans_free(&s);
}
END_TEST

START_TEST(nested_and_overlapping)
{
    xr_spans s = {0};
    int pool, tensor, other;
    ck_assert_int_eq(xr__spans_insert(&s, 0x1000, 0x9000, &pool), 0);
    ck_assert_int_eq(xr__spans_insert(&s, 0x2000, 0x3000, &tensor), 0);
    ck_assert_int_eq(xr__spans_insert(&s, 0x8000, 0xA000, &other), 0);
    ptrdiff_t k = xr__spans_enclosing(&s, 0x2100, 0x2200, 0);
    ck_assert(s.v[k].item == &pool || s.v[k].item == &tensor);
    ck_assert_int_ge(xr__spans_enclosing(&s, 0x8800, 0x9800, 0), 0);
    ck_assert_int_eq(xr__spans_enclosing(&s, 0x500, 0x1500, 0), -1); /* starts before all */
    ck_assert_int_eq(xr__spans_enclosing(&s, 0x9000, 0xB000, 0), -1); /* ends after all */
    ck_assert_int_ge(xr__spans_overlapping(&s, 0x2FFF, 0x3001, 0), 0);
    ck_assert_int_eq(xr__spans_overlapping(&s, 0xA000, 0xB000, 0), -1); /* ends are open */
    xr__spans_free(&s);
}
END_TEST

static void add(TCase *tc)
{
    tcase_add_test(tc, random_against_a_scan);
    tcase_add_test(tc, nested_and_overlapping);
}

int main(void)
{
    return unit_run("spans", add);
}
