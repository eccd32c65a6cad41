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
    /* 32 bytes of 0xFF, and 0x00..0x1F (RFC 3720, B.4) */
    unsigned char ones[32], up[32];
    for (int i = 0; i < 32; i++)
        ones[i] = 0xff, up[i] = (unsigned char)i;
    ck_assert_uint_eq(xr__crc32c_update(0, ones, sizeof ones), 0x62A8AB43u);
    ck_assert_uint_eq(xr__crc32c_update(0, up, sizeof up), 0x46DD794Eu);
}
END_TEST

/* Eight bytes a step agrees with the definition, a bit at a time, at every
 * length and alignment and split. */
static uint32_t crc_bitwise(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

START_TEST(crc32c_matches_bitwise)
{
    unsigned char buf[300];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)((x = x * 1103515245u + 12345u) >> 16);
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n + off <= sizeof buf; n += 7) {
            uint32_t want = crc_bitwise(0, buf + off, n);
            ck_assert_uint_eq(xr__crc32c_update(0, buf + off, n), want);
            size_t cut = n / 3;
            ck_assert_uint_eq(xr__crc32c_update(xr__crc32c_update(0, buf + off, cut),
                                                buf + off + cut, n - cut), want);
        }
}
END_TEST

static void add(TCase *tc)
{
    tcase_add_test(tc, crc32c_check_value);
    tcase_add_test(tc, crc32c_matches_bitwise);
}

int main(void)
{
    return unit_run("crc32c", add);
}
