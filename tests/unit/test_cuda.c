/* test_cuda.c - CUDA memory as the engine sees it (engine/src/core/cuda.c): the
 * host side, which every machine has. Device memory is tested by test_stage
 * on a GPU host (docs/gpu.md). */
#include "cuda_mem.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

START_TEST(host_memory_is_host)
{
    char *p = calloc(1, 4096);
    int dev = 7;
    ck_assert_int_eq(xr__cuda_classify(p, &dev), XR_MEM_HOST);
    ck_assert_int_eq(dev, -1);
    ck_assert_uint_eq(xr__cuda_buffer_id(p), 0);
    uint64_t base, len;
    ck_assert_int_eq(xr__cuda_alloc_range(p, &base, &len), -1);
    free(p);
}
END_TEST

START_TEST(bounce_memory_and_host_copies)
{
    bool pinned;
    uint8_t *b = xr__cuda_host_alloc(10000, &pinned);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq((uintptr_t)b % 4096, 0);
    if (!xr__cuda_devices())
        ck_assert(!pinned);
    xr_copy c;
    ck_assert_int_eq(xr__cuda_copy_init(&c), 0);
    uint8_t src[1000];
    for (int i = 0; i < 1000; i++)
        src[i] = (uint8_t)i;
    /* Host to host is a copy done at once: nothing to poll for. */
    ck_assert_int_eq(xr__cuda_copy_start(&c, b, src, sizeof src, -1, false), 0);
    ck_assert(!c.busy);
    ck_assert_int_eq(xr__cuda_copy_poll(&c), 1);
    ck_assert_mem_eq(b, src, sizeof src);
    xr__cuda_copy_fini(&c);
    xr__cuda_host_free(b, pinned);
}
END_TEST

START_TEST(device_copy_without_a_device_fails)
{
    if (xr__cuda_devices())
        return; /* a GPU host runs the real thing in test_stage */
    xr_copy c;
    ck_assert_int_eq(xr__cuda_copy_init(&c), 0);
    uint8_t a[16], b[16] = {0};
    ck_assert_int_eq(xr__cuda_copy_start(&c, a, b, sizeof a, 0, true), -1);
    ck_assert_ptr_nonnull(xr__cuda_last_error());
    xr__cuda_copy_fini(&c);
}
END_TEST

static void add(TCase *tc)
{
    tcase_add_test(tc, host_memory_is_host);
    tcase_add_test(tc, bounce_memory_and_host_copies);
    tcase_add_test(tc, device_copy_without_a_device_fails);
}

int main(void)
{
    return unit_run("cuda", add);
}
