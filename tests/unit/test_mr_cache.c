/*
 * test_mr_cache.c - the registration cache (engine/src/mr_cache.c) and its
 * range index (engine/src/spans.c), with a counting backend in place of a
 * provider: hits, misses, enclosing lookups, limits and LRU order,
 * refcounts (also from many threads), flush, invalidation, stale CUDA
 * buffer ids, the disabled mode, and the stats.
 */
#include "mr_cache.h"
#include "spans.h"

#include "unit.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* The stand-in backend: counts, and checks every deregistration matches a
 * live registration. */
static atomic_long live, regs, deregs, gets;
static int fail_next;

static int fake_reg(void *ctx, xr_mr_entry *e)
{
    (void)ctx;
    if (fail_next) {
        fail_next = 0;
        return XR_EFABRIC;
    }
    e->mr = malloc(1); /* LeakSanitizer notices an entry never deregistered */
    e->key = (uint64_t)atomic_fetch_add(&regs, 1) + 1;
    atomic_fetch_add(&live, 1);
    return 0;
}

static void fake_dereg(void *ctx, xr_mr_entry *e)
{
    (void)ctx;
    ck_assert_ptr_nonnull(e->mr);
    free(e->mr);
    e->mr = NULL;
    atomic_fetch_add(&deregs, 1);
    atomic_fetch_sub(&live, 1);
}

static xr_mr_cache c;

static void setup(size_t max_entries, size_t max_bytes, int enabled)
{
    atomic_store(&live, 0);
    atomic_store(&regs, 0);
    atomic_store(&deregs, 0);
    xr_mr_backend be = {fake_reg, fake_dereg, NULL};
    xr_mr_cache_opts o = {.enabled = enabled, .max_entries = max_entries, .max_bytes = max_bytes};
    xr__mrc_init(&c, &be, &o);
}

static xr_mr_entry *get(unsigned rail, uint64_t addr, uint64_t len)
{
    xr_mr_entry *e;
    ck_assert_int_eq(xr__mrc_get(&c, rail, addr, len, addr, len, 1, XR_MEM_HOST, 0, 0, &e), 0);
    return e;
}

static xr_mr_cache_stats stats(void)
{
    xr_mr_cache_stats st;
    xr__mrc_stats_read(&c, &st);
    return st;
}

static void teardown(void)
{
    xr__mrc_fini(&c);
    ck_assert_int_eq(atomic_load(&live), 0);
}

START_TEST(spans_against_brute_force)
{
    xr_spans s = {0};
    enum { N = 400 };
    uint64_t st[N], en[N];
    int in[N] = {0};
    uint64_t seed = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        int k = (int)(seed % N);
        if (!in[k] && (seed >> 20) % 3) {
            st[k] = (seed >> 24) % 10000;
            en[k] = st[k] + 1 + (seed >> 40) % 800;
            ck_assert_int_eq(xr__spans_insert(&s, st[k], en[k], &in[k]), 0);
            in[k] = 1;
        } else if (in[k]) {
            ck_assert_int_eq(xr__spans_remove(&s, st[k], &in[k]), 0);
            in[k] = 0;
        }
        uint64_t a = (seed >> 8) % 10500, b = a + 1 + (seed >> 30) % 300;
        /* Every span the index yields encloses [a, b), and it yields them all. */
        int want = 0, got = 0;
        for (int j = 0; j < N; j++)
            want += in[j] && st[j] <= a && en[j] >= b;
        for (ptrdiff_t i = xr__spans_enclosing(&s, a, b, 0); i >= 0;
             i = xr__spans_enclosing(&s, a, b, (size_t)i + 1)) {
            ck_assert(s.v[i].start <= a && s.v[i].end >= b);
            got++;
        }
        ck_assert_int_eq(got, want);
        want = got = 0;
        for (int j = 0; j < N; j++)
            want += in[j] && st[j] < b && en[j] > a;
        for (ptrdiff_t i = xr__spans_overlapping(&s, a, b, 0); i >= 0;
             i = xr__spans_overlapping(&s, a, b, (size_t)i + 1)) {
            ck_assert(s.v[i].start < b && s.v[i].end > a);
            got++;
        }
        ck_assert_int_eq(got, want);
    }
    ck_assert_int_eq(xr__spans_remove(&s, 1u << 30, &in[0]), -1);
    xr__spans_free(&s);
}
END_TEST

START_TEST(hit_miss_enclosing)
{
    setup(0, 0, 1);
    xr_mr_entry *a = get(0, 0x10000, 0x10000);
    /* Inside it: the same entry, no registration. */
    xr_mr_entry *b;
    ck_assert_int_eq(xr__mrc_get(&c, 0, 0x14000, 0x100, 0x14000, 0x100, 1, XR_MEM_HOST, 0, 0, &b), 0);
    ck_assert_ptr_eq(a, b);
    ck_assert_uint_eq(a->refs, 2);
    /* Sticking out, another rail, more access, another kind: misses. */
    xr_mr_entry *m[4];
    ck_assert_int_eq(xr__mrc_get(&c, 0, 0x1f000, 0x2000, 0x1f000, 0x2000, 1, XR_MEM_HOST, 0, 0, &m[0]), 0);
    ck_assert_int_eq(xr__mrc_get(&c, 1, 0x14000, 0x100, 0x14000, 0x100, 1, XR_MEM_HOST, 0, 0, &m[1]), 0);
    ck_assert_int_eq(xr__mrc_get(&c, 0, 0x14000, 0x100, 0x14000, 0x100, 3, XR_MEM_HOST, 0, 0, &m[2]), 0);
    ck_assert_int_eq(xr__mrc_get(&c, 0, 0x14000, 0x100, 0x14000, 0x100, 1, XR_MEM_CUDA, 0, 7, &m[3]), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_ptr_ne(m[i], a);
    /* A wider access serves a narrower request. */
    xr_mr_entry *n;
    ck_assert_int_eq(xr__mrc_get(&c, 0, 0x14000, 0x10, 0x14000, 0x10, 2, XR_MEM_HOST, 0, 0, &n), 0);
    ck_assert_ptr_eq(n, m[2]);
    xr_mr_cache_stats st = stats();
    ck_assert_uint_eq(st.hits, 2);
    ck_assert_uint_eq(st.misses, 5);
    ck_assert_uint_eq(st.registrations, 5);
    ck_assert_uint_eq(st.rail_registrations[0], 4);
    ck_assert_uint_eq(st.rail_registrations[1], 1);
    ck_assert_uint_eq(st.entries, 5);
    ck_assert_uint_eq(st.in_use, 5);
    xr__mrc_put(&c, a);
    xr__mrc_put(&c, b);
    xr__mrc_put(&c, n);
    for (int i = 0; i < 4; i++)
        xr__mrc_put(&c, m[i]);
    st = stats();
    ck_assert_uint_eq(st.in_use, 0);
    ck_assert_uint_eq(st.entries, 5); /* kept for the next request */
    ck_assert_uint_eq(atomic_load(&deregs), 0);
    ck_assert_ptr_eq(get(0, 0x18000, 4), a); /* served after release */
    xr__mrc_put(&c, a);
    teardown();
}
END_TEST

START_TEST(limits_evict_lru_never_held)
{
    setup(3, 0, 1);
    xr_mr_entry *e[5];
    for (int i = 0; i < 4; i++)
        e[i] = get(0, 0x100000 * (uint64_t)(i + 1), 0x1000);
    /* Four held, limit three: nothing can go. */
    ck_assert_uint_eq(stats().entries, 4);
    ck_assert_uint_eq(stats().evictions, 0);
    xr__mrc_put(&c, e[2]); /* e2 goes at once: over the limit */
    ck_assert_uint_eq(stats().evictions, 1);
    xr__mrc_put(&c, e[0]);
    xr__mrc_put(&c, e[1]); /* unused now, e0 older than e1 */
    ck_assert_uint_eq(stats().entries, 3);
    e[4] = get(0, 0x900000, 0x1000); /* over again: the least recent, e0, goes */
    ck_assert_uint_eq(stats().evictions, 2);
    ck_assert_ptr_eq(get(0, 0x200000, 0x10), e[1]); /* e1 is still there */
    xr_mr_entry *again;
    ck_assert_int_eq(xr__mrc_get(&c, 0, 0x100000, 0x10, 0x100000, 0x10, 1, XR_MEM_HOST, 0, 0, &again), 0);
    ck_assert_ptr_ne(again, e[0]);
    ck_assert_uint_eq(stats().misses, 6);
    xr__mrc_put(&c, again);
    xr__mrc_put(&c, e[1]);
    xr__mrc_put(&c, e[3]);
    xr__mrc_put(&c, e[4]);
    ck_assert_uint_le(stats().entries, 3);

    /* A byte limit evicts the same way. */
    xr_mr_cache_opts o = {.enabled = 1, .max_entries = 0, .max_bytes = 0x3000};
    xr__mrc_set(&c, &o);
    ck_assert_uint_le(stats().bytes, 0x3000);
    xr_mr_entry *big = get(0, 0x40000000, 0x2000);
    ck_assert_uint_le(stats().bytes, 0x3000 + 0x2000);
    ck_assert_uint_eq(stats().bytes, 0x2000 + 0x1000);
    xr__mrc_put(&c, big);
    teardown();
}
END_TEST

START_TEST(flush_and_invalidate)
{
    setup(0, 0, 1);
    xr_mr_entry *held = get(0, 0x10000, 0x10000), *a = get(0, 0x40000, 0x1000),
                *b = get(2, 0x40800, 0x1000), *far = get(0, 0x90000, 0x1000);
    xr__mrc_put(&c, a);
    xr__mrc_put(&c, b);
    xr__mrc_put(&c, far);
    /* [0x40000, +0x1000) is freed: what overlaps it on any rail goes, and
     * is never served again; the rest stays. */
    xr__mrc_invalidate(&c, 0x40000, 0x1000);
    ck_assert_uint_eq(stats().invalidations, 2);
    ck_assert_uint_eq(stats().entries, 2);
    xr_mr_entry *x = get(0, 0x40000, 0x1000);
    ck_assert_uint_eq(stats().misses, 5);
    xr__mrc_put(&c, x);
    /* A held entry survives invalidation: its holder vouches for the memory. */
    xr__mrc_invalidate(&c, 0x10000, 0x100);
    ck_assert_ptr_eq(get(0, 0x10000, 0x100), held);
    xr__mrc_put(&c, held);
    /* Flush drops every unused entry, and only those. */
    ck_assert_uint_eq(xr__mrc_drop_unused(&c), 2);
    ck_assert_uint_eq(stats().entries, 1);
    xr__mrc_put(&c, held);
    ck_assert_uint_eq(xr__mrc_drop_unused(&c), 1);
    ck_assert_uint_eq(stats().entries, 0);
    ck_assert_uint_eq(atomic_load(&live), 0);
    teardown();
}
END_TEST

START_TEST(stale_cuda_buffer_id)
{
    setup(0, 0, 1);
    xr_mr_entry *e, *f;
    ck_assert_int_eq(xr__mrc_get(&c, 0, 0x7f00000000, 0x100000, 0x7f00000000, 0x100000, 1,
                                     XR_MEM_CUDA, 1, 41, &e), 0);
    xr__mrc_put(&c, e);
    /* Freed and reallocated at the same address: a new buffer id. */
    ck_assert_int_eq(xr__mrc_get(&c, 0, 0x7f00000000, 0x1000, 0x7f00000000, 0x100000, 1,
                                     XR_MEM_CUDA, 1, 42, &f), 0);
    xr_mr_cache_stats st = stats();
    ck_assert_uint_eq(st.stale, 1);
    ck_assert_uint_eq(st.misses, 2);
    ck_assert_uint_eq(st.entries, 1); /* the stale one is deregistered */
    ck_assert_uint_eq(f->buffer_id, 42);
    /* The same allocation hits; another device misses. */
    xr_mr_entry *g, *h;
    ck_assert_int_eq(xr__mrc_get(&c, 0, 0x7f00001000, 0x10, 0x7f00001000, 0x10, 1,
                                     XR_MEM_CUDA, 1, 42, &g), 0);
    ck_assert_ptr_eq(g, f);
    ck_assert_int_eq(xr__mrc_get(&c, 0, 0x7f00001000, 0x10, 0x7f00001000, 0x10, 1,
                                     XR_MEM_CUDA, 2, 42, &h), 0);
    ck_assert_ptr_ne(h, f);
    xr__mrc_put(&c, f);
    xr__mrc_put(&c, g);
    xr__mrc_put(&c, h);
    teardown();
}
END_TEST

START_TEST(disabled_registers_every_time)
{
    setup(0, 0, 0);
    for (int i = 0; i < 10; i++) {
        xr_mr_entry *a = get(0, 0x10000, 0x1000), *b = get(0, 0x10000, 0x1000);
        ck_assert_ptr_ne(a, b);
        xr__mrc_put(&c, a);
        xr__mrc_put(&c, b);
    }
    xr_mr_cache_stats st = stats();
    ck_assert_uint_eq(st.hits, 0);
    ck_assert_uint_eq(st.registrations, 20);
    ck_assert_uint_eq(st.deregistrations, 20);
    ck_assert_uint_eq(st.entries, 0);
    /* Turned on, then off with entries held and unused. */
    xr_mr_cache_opts on = {.enabled = 1}, off = {.enabled = 0};
    xr__mrc_set(&c, &on);
    xr_mr_entry *held = get(0, 0x10000, 0x1000), *unused = get(0, 0x90000, 0x1000);
    xr__mrc_put(&c, unused);
    xr__mrc_set(&c, &off);
    ck_assert_uint_eq(stats().entries, 1); /* the unused one is gone */
    xr_mr_entry *other = get(0, 0x10000, 0x10);
    ck_assert_ptr_ne(other, held); /* and nothing is shared any more */
    xr__mrc_put(&c, other);
    xr__mrc_put(&c, held);
    ck_assert_uint_eq(stats().entries, 0);
    ck_assert_uint_eq(atomic_load(&live), 0);
    /* A failing registration leaves nothing behind. */
    fail_next = 1;
    xr_mr_entry *z = (xr_mr_entry *)0x1;
    ck_assert_int_eq(xr__mrc_get(&c, 0, 0x10000, 0x10, 0x10000, 0x10, 1, XR_MEM_HOST, 0, 0, &z),
                     XR_EFABRIC);
    ck_assert_ptr_null(z);
    ck_assert_uint_eq(stats().entries, 0);
    teardown();
}
END_TEST

/* Eight threads take and drop overlapping ranges on two rails with a small
 * limit; at the end every count balances and nothing is live. */
static void *churn(void *arg)
{
    uint64_t seed = (uintptr_t)arg * 7919 + 1;
    xr_mr_entry *held[8] = {0};
    for (int i = 0; i < 20000; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        int k = (int)(seed % 8);
        if (held[k]) {
            ck_assert_uint_gt(held[k]->refs, 0);
            xr__mrc_put(&c, held[k]);
            held[k] = NULL;
        } else {
            atomic_fetch_add(&gets, 1);
            uint64_t addr = 0x1000 * ((seed >> 8) % 64), len = 1 + (seed >> 20) % 0x3000;
            ck_assert_int_eq(xr__mrc_get(&c, (unsigned)(seed >> 40) % 2, addr, len, addr & ~0xfffull,
                                             ((addr + len + 0xfff) & ~0xfffull) - (addr & ~0xfffull),
                                             1, XR_MEM_HOST, 0, 0, &held[k]), 0);
            ck_assert(held[k]->addr <= addr && held[k]->addr + held[k]->len >= addr + len);
        }
    }
    for (int k = 0; k < 8; k++)
        xr__mrc_put(&c, held[k]);
    return NULL;
}

START_TEST(refcounts_under_concurrency)
{
    setup(24, 0, 1);
    pthread_t t[8];
    for (uintptr_t i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, churn, (void *)i);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    xr_mr_cache_stats st = stats();
    ck_assert_uint_eq(st.in_use, 0);
    ck_assert_uint_le(st.entries, 24);
    ck_assert_uint_gt(st.hits, 0);
    ck_assert_uint_gt(st.evictions, 0);
    ck_assert_uint_eq(st.registrations - st.deregistrations, st.entries);
    ck_assert_uint_eq(st.hits + st.misses, (uint64_t)atomic_load(&gets));
    ck_assert_uint_eq(xr__mrc_drop_unused(&c), st.entries);
    ck_assert_int_eq(atomic_load(&live), 0);
    teardown();
}
END_TEST

static void add(TCase *tc)
{
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, spans_against_brute_force);
    tcase_add_test(tc, hit_miss_enclosing);
    tcase_add_test(tc, limits_evict_lru_never_held);
    tcase_add_test(tc, flush_and_invalidate);
    tcase_add_test(tc, stale_cuda_buffer_id);
    tcase_add_test(tc, disabled_registers_every_time);
    tcase_add_test(tc, refcounts_under_concurrency);
}

int main(void)
{
    return unit_run("mr_cache", add);
}
