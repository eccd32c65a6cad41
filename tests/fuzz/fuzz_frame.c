/*
 * fuzz_frame.c - libFuzzer harness for notification frames and their
 * reassembly (engine/src/core/frame.c). The input is a sequence of frames,
 * each preceded by a 2-byte length; all go into one reassembler, as frames
 * from any peer would. A completed message must be as long as its header
 * said; whatever is left partial is freed at the end (LeakSanitizer).
 *
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DXRAIL_FUZZ=ON
 *   cmake --build build-fuzz --target fuzz_frame
 *   ./build-fuzz/tests/fuzz_frame -max_total_time=60
 */
#include "frame.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xr_reasm ra;
    xr__frame_reasm_init(&ra, 1u << 20);
    while (size >= 2) {
        size_t n = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2;
        size -= 2;
        if (n > size)
            n = size;
        uint8_t *msg;
        size_t len;
        xr_frame_hdr h;
        const char *bad = xr__frame_place(&ra, data, n, &msg, &len);
        if (msg) {
            if (bad || len == 0 || len > (1u << 20) || xr__frame_hdr_get(data, n, 0, &h) ||
                h.total != len)
                abort();
            volatile uint8_t sink = msg[len - 1]; /* the whole message is readable */
            (void)sink;
            free(msg);
        }
        data += n;
        size -= n;
    }
    xr__frame_reasm_fini(&ra);
    return 0;
}
