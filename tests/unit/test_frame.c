/* test_frame.c - notification frames and their reassembly (engine/src/core/frame.c). */
#include "frame.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

#define PAY 100 /* payload bytes per frame in these tests */

/* Frame k of a message of `total` bytes whose byte i is (seed + i). */
static size_t make(uint8_t *f, uint64_t inst, uint64_t seq, size_t total, size_t off,
                   uint8_t seed)
{
    size_t n = total - off < PAY ? total - off : PAY;
    xr__frame_hdr_put(f, &(xr_frame_hdr){.instance = inst, .seq = seq, .total = total, .off = off});
    for (size_t i = 0; i < n; i++)
        f[XR_FRAME_HDR + i] = (uint8_t)(seed + off + i);
    return XR_FRAME_HDR + n;
}

static void check_msg(const uint8_t *m, size_t len, size_t total, uint8_t seed)
{
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(len, total);
    for (size_t i = 0; i < total; i++)
        ck_assert_uint_eq(m[i], (uint8_t)(seed + i));
}

START_TEST(header_round_trip)
{
    uint8_t b[XR_FRAME_HDR + 8];
    xr_frame_hdr in = {.instance = 0x1122334455667788ull, .seq = 9, .total = 8, .off = 0}, out;
    xr__frame_hdr_put(b, &in);
    ck_assert_ptr_null(xr__frame_hdr_get(b, sizeof b, 0, &out));
    ck_assert(out.instance == in.instance && out.seq == 9 && out.total == 8 && out.off == 0);
    ck_assert_uint_eq(b[0], 'X'); /* "XRNF", little-endian */
    ck_assert_uint_eq(b[3], 'F');
}
END_TEST

START_TEST(header_refusals)
{
    uint8_t b[XR_FRAME_HDR + 16];
    xr_frame_hdr h;
    xr__frame_hdr_put(b, &(xr_frame_hdr){.total = 16, .off = 0});
    ck_assert_ptr_nonnull(xr__frame_hdr_get(b, XR_FRAME_HDR - 1, 0, &h)); /* short */
    xr__frame_hdr_put(b, &(xr_frame_hdr){.total = 8, .off = 0});
    ck_assert_ptr_nonnull(xr__frame_hdr_get(b, sizeof b, 0, &h)); /* 16 bytes of an 8-byte message */
    xr__frame_hdr_put(b, &(xr_frame_hdr){.total = 20, .off = 10});
    ck_assert_ptr_nonnull(xr__frame_hdr_get(b, sizeof b, 0, &h)); /* past the end */
    xr__frame_hdr_put(b, &(xr_frame_hdr){.total = UINT64_MAX, .off = UINT64_MAX - 4});
    ck_assert_ptr_nonnull(xr__frame_hdr_get(b, sizeof b, 0, &h)); /* offset + payload wraps */
    xr__frame_hdr_put(b, &(xr_frame_hdr){.total = 0, .off = 0});
    ck_assert_ptr_nonnull(xr__frame_hdr_get(b, XR_FRAME_HDR + 1, 0, &h)); /* bytes of nothing */
    xr__frame_hdr_put(b, &(xr_frame_hdr){.total = 0, .off = 4});
    ck_assert_ptr_nonnull(xr__frame_hdr_get(b, XR_FRAME_HDR, 0, &h)); /* offset into nothing */
    /* A hello (xr_peer_connect): no message, no payload; placed, it yields nothing. */
    xr__frame_hdr_put(b, &(xr_frame_hdr){.total = 0, .off = 0});
    ck_assert_ptr_null(xr__frame_hdr_get(b, XR_FRAME_HDR, 0, &h));
    xr_reasm ra;
    xr__frame_reasm_init(&ra, 0);
    uint8_t *m = (uint8_t *)1;
    size_t len = 1;
    ck_assert_ptr_null(xr__frame_place(&ra, b, XR_FRAME_HDR, &m, &len));
    ck_assert_ptr_null(m);
    ck_assert_uint_eq(len, 0);
    ck_assert(xr__list_empty(&ra.partial));
    xr__frame_reasm_fini(&ra);
    xr__frame_hdr_put(b, &(xr_frame_hdr){.total = 1000, .off = 0});
    ck_assert_ptr_nonnull(xr__frame_hdr_get(b, sizeof b, 999, &h)); /* over the limit */
    ck_assert_ptr_null(xr__frame_hdr_get(b, sizeof b, 1000, &h));
    b[0] ^= 1;
    ck_assert_ptr_nonnull(xr__frame_hdr_get(b, sizeof b, 0, &h)); /* magic */
}
END_TEST

START_TEST(one_frame_message)
{
    xr_reasm ra;
    xr__frame_reasm_init(&ra, 0);
    uint8_t f[XR_FRAME_HDR + PAY], *m;
    size_t len, n = make(f, 1, 1, 60, 0, 3);
    ck_assert_ptr_null(xr__frame_place(&ra, f, n, &m, &len));
    check_msg(m, len, 60, 3);
    free(m);
    ck_assert(xr__list_empty(&ra.partial));
    xr__frame_reasm_fini(&ra);
}
END_TEST

/* Frames in any order, two messages interleaved, each whole once its last
 * frame lands. */
START_TEST(out_of_order_and_interleaved)
{
    xr_reasm ra;
    xr__frame_reasm_init(&ra, 0);
    uint8_t f[XR_FRAME_HDR + PAY], *m;
    size_t len, total = 450; /* 5 frames */
    size_t order[5] = {3, 0, 4, 2, 1};
    for (int k = 0; k < 5; k++) {
        for (uint64_t seq = 1; seq <= 2; seq++) {
            size_t n = make(f, 7, seq, total, order[k] * PAY, (uint8_t)seq);
            ck_assert_ptr_null(xr__frame_place(&ra, f, n, &m, &len));
            if (k < 4) {
                ck_assert_ptr_null(m);
            } else {
                check_msg(m, len, total, (uint8_t)seq);
                free(m);
            }
        }
    }
    ck_assert(xr__list_empty(&ra.partial));
    xr__frame_reasm_fini(&ra);
}
END_TEST

/* The same sequence from two instances (a restarted sender) are two messages. */
START_TEST(instances_apart)
{
    xr_reasm ra;
    xr__frame_reasm_init(&ra, 0);
    uint8_t f[XR_FRAME_HDR + PAY], *m;
    size_t len;
    ck_assert_ptr_null(xr__frame_place(&ra, f, make(f, 1, 5, 150, 0, 1), &m, &len));
    ck_assert_ptr_null(xr__frame_place(&ra, f, make(f, 2, 5, 150, 100, 2), &m, &len));
    ck_assert_ptr_null(m);
    ck_assert_ptr_null(xr__frame_place(&ra, f, make(f, 2, 5, 150, 0, 2), &m, &len));
    check_msg(m, len, 150, 2);
    free(m);
    ck_assert_ptr_null(xr__frame_place(&ra, f, make(f, 1, 5, 150, 100, 1), &m, &len));
    check_msg(m, len, 150, 1);
    free(m);
    xr__frame_reasm_fini(&ra);
}
END_TEST

/* A frame that disagrees with its message's length drops the message. */
START_TEST(disagreeing_length_drops)
{
    xr_reasm ra;
    xr__frame_reasm_init(&ra, 0);
    uint8_t f[XR_FRAME_HDR + PAY], *m;
    size_t len;
    ck_assert_ptr_null(xr__frame_place(&ra, f, make(f, 1, 1, 300, 0, 0), &m, &len));
    ck_assert_ptr_nonnull(xr__frame_place(&ra, f, make(f, 1, 1, 250, 100, 0), &m, &len));
    ck_assert_ptr_null(m);
    ck_assert(xr__list_empty(&ra.partial));
    xr__frame_reasm_fini(&ra);
}
END_TEST

/* A forged frame repeated until the count is met yields the message's
 * length of zeros where nothing landed: never another message's or the
 * heap's bytes. */
START_TEST(forged_repeats_leak_nothing)
{
    xr_reasm ra;
    xr__frame_reasm_init(&ra, 0);
    uint8_t f[XR_FRAME_HDR + PAY], *m = NULL;
    size_t len, n = make(f, 1, 1, 300, 0, 9);
    for (int k = 0; k < 3; k++)
        ck_assert_ptr_null(xr__frame_place(&ra, f, n, &m, &len));
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(len, 300);
    for (size_t i = PAY; i < 300; i++)
        ck_assert_uint_eq(m[i], 0);
    free(m);
    xr__frame_reasm_fini(&ra);
}
END_TEST

/* Partial messages still held at the end are freed (ASan's leak check). */
START_TEST(fini_frees_partials)
{
    xr_reasm ra;
    xr__frame_reasm_init(&ra, 1 << 20);
    uint8_t f[XR_FRAME_HDR + PAY], *m;
    size_t len;
    for (uint64_t seq = 0; seq < 10; seq++)
        ck_assert_ptr_null(xr__frame_place(&ra, f, make(f, 1, seq, 1000, 0, 0), &m, &len));
    ck_assert(!xr__list_empty(&ra.partial));
    xr__frame_reasm_fini(&ra);
    ck_assert(xr__list_empty(&ra.partial));
}
END_TEST

static void add(TCase *tc)
{
    tcase_add_test(tc, header_round_trip);
    tcase_add_test(tc, header_refusals);
    tcase_add_test(tc, one_frame_message);
    tcase_add_test(tc, out_of_order_and_interleaved);
    tcase_add_test(tc, instances_apart);
    tcase_add_test(tc, disagreeing_length_drops);
    tcase_add_test(tc, forged_repeats_leak_nothing);
    tcase_add_test(tc, fini_frees_partials);
}

int main(void)
{
    return unit_run("frame", add);
}
