/*
 * fuzz_stage_wire.c - libFuzzer harness for the staging protocol's headers
 * (engine/src/core/stage_wire.c): every input is checked as a request and
 * as a response. What a check accepts must keep its promises: a request's
 * requester address fits its area and its range does not wrap; a response's
 * status is 0 or a code this build knows; every reason is NUL-terminated.
 *
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DXRAIL_FUZZ=ON
 *   cmake --build build-fuzz --target fuzz_stage_wire
 *   ./build-fuzz/tests/fuzz_stage_wire -max_total_time=60
 */
#include "stage_wire.h"
#include "xrail.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xr_stage_hdr h;
    const char *why;
    int v = xr__stage_wire_request(data, size, 1u << 20, &h, &why);
    if (v == XR_STAGE_REQ_OK &&
        (h.srclen == 0 || h.srclen > XR_STAGE_SRC_MAX || h.len == 0 || h.len > (1u << 20) ||
         h.addr + h.len < h.addr || (h.op != XR_OP_WRITE && h.op != XR_OP_READ) ||
         size != XR_STAGE_HDR + (h.op == XR_OP_WRITE ? h.len : 0)))
        abort();
    if (v != XR_STAGE_REQ_OK && !why)
        abort();
    uint64_t cookie = 0; /* the header's own, so that checks past it are reached */
    for (size_t i = 0; i < 8 && 16 + i < size; i++)
        cookie |= (uint64_t)data[16 + i] << (8 * i);
    if (xr__stage_wire_response(data, size, cookie, size, &h, &why) == 0) {
        if (strlen(h.why) >= XR_STAGE_WHY || h.status > 0 ||
            (h.status && !strcmp(xr_err_name(h.status), "XR_E?")))
            abort();
    }
    return 0;
}
