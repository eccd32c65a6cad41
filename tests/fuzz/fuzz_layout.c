/*
 * fuzz_layout.c - libFuzzer harness for the metadata codec. Every input goes
 * through the full decoder (header, CRC, body) and through the body parser
 * alone, so that mutations are not all stopped by the CRC. Anything that
 * decodes must re-encode and decode again to the same bytes.
 *
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DXRAIL_FUZZ=ON
 *   cmake --build build-fuzz --target fuzz_layout
 *   ./build-fuzz/tests/fuzz_layout -max_total_time=60
 */
#include "layout.h"

#include <stdlib.h>
#include <string.h>

static void round_trip(const xr_md *m)
{
    size_t len = 0;
    xr__layout_encode(&xr__layout_md_schema, m, NULL, &len);
    uint8_t *buf = malloc(len);
    if (!buf || xr__layout_encode(&xr__layout_md_schema, m, buf, &len))
        abort();
    xr_md d;
    if (xr__layout_decode(&xr__layout_md_schema, buf, len, 0, &d))
        abort(); /* what we wrote, we must read */
    size_t len2 = 0;
    xr__layout_encode(&xr__layout_md_schema, &d, NULL, &len2);
    uint8_t *buf2 = malloc(len2);
    if (!buf2 || xr__layout_encode(&xr__layout_md_schema, &d, buf2, &len2) || len2 != len ||
        memcmp(buf, buf2, len))
        abort();
    xr__layout_free(&xr__layout_md_schema, &d);
    free(buf);
    free(buf2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xr_md m;
    if (xr__layout_decode(&xr__layout_md_schema, data, size, 1u << 24, &m) == 0) {
        round_trip(&m);
        xr__layout_free(&xr__layout_md_schema, &m);
    }
    if (size <= XR_MD_HEADER)
        return 0;
    if (xr__layout_decode_body(&xr__layout_md_schema, data + XR_MD_HEADER, size - XR_MD_HEADER, &m) == 0) {
        round_trip(&m);
        xr__layout_free(&xr__layout_md_schema, &m);
    }
    return 0;
}
