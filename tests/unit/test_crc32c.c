/* test_crc32c.c - the metadata checksum (engine/src/core/crc32c.c). */
#include "crc32c.h"
#include "unit.h"

START_TEST(crc32c_check_value)
{
    /* The published CRC-32C check value for "123456789" (RFC 3720, B.4). */
    ck_assert_uint_eq(xr__crc32c_update(0, "123456789", 9), 0xE3069283u);
    /* Incremental use gives the same as one call. */
    ck_assert_uint_eq(xr__crc32c_update(xr__crc32c_update(0, "1234", 4), "56789", 5), 0xE3069283u);
    ck_assert_uint_eq(xr__crc32c_update(0, "", 0), 0);
    /* 32 zero bytes (RFC 3720, B.4) */
    static const unsigned char zeros[32];
    ck_assert_uint_eq(xr__crc32c_update(0, zeros, sizeof zeros), 0x8A9136AAu);
}
END_TEST

static void add(TCase *tc)
{
    tcase_add_test(tc, crc32c_check_value);
}

int main(void)
{
    return unit_run("crc32c", add);
}
