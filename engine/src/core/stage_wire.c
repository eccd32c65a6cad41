/* stage_wire.c - encode and check staging headers (see stage_wire.h). */
#include "stage_wire.h"

#include "bytes.h"
#include "xrail.h"

#include <string.h>

enum { O_MAGIC = 0, O_OP = 4, O_STATUS = 8, O_SRCLEN = 12, O_COOKIE = 16, O_ADDR = 24,
       O_LEN = 32, O_WHY = 40, O_SRC = O_WHY + XR_STAGE_WHY };
_Static_assert(O_SRC == XR_STAGE_RSP_MIN, "a response is the header up to the address");
_Static_assert(O_SRC + XR_STAGE_SRC_MAX <= XR_STAGE_HDR, "a header fits its area");

void xr__stage_wire_put(uint8_t *b, const xr_stage_hdr *h, bool with_src)
{
    memset(b, 0, O_SRC);
    xr__bytes_put_le(b + O_MAGIC, XR_STAGE_MAGIC, 4);
    b[O_OP] = h->op;
    xr__bytes_put_le(b + O_STATUS, (uint32_t)h->status, 4);
    xr__bytes_put_le(b + O_SRCLEN, with_src ? h->srclen : 0, 4);
    xr__bytes_put_le(b + O_COOKIE, h->cookie, 8);
    xr__bytes_put_le(b + O_ADDR, h->addr, 8);
    xr__bytes_put_le(b + O_LEN, h->len, 8);
    memcpy(b + O_WHY, h->why, strnlen(h->why, XR_STAGE_WHY - 1));
    if (with_src)
        memcpy(b + O_SRC, h->src, h->srclen);
}

/* The fields every header has; false if it is not one. */
static bool get_common(const uint8_t *b, size_t len, xr_stage_hdr *h)
{
    if (len < O_SRC || xr__bytes_get_le(b + O_MAGIC, 4) != XR_STAGE_MAGIC)
        return false;
    h->op = b[O_OP];
    h->status = (int32_t)(uint32_t)xr__bytes_get_le(b + O_STATUS, 4);
    h->srclen = (uint32_t)xr__bytes_get_le(b + O_SRCLEN, 4);
    h->cookie = xr__bytes_get_le(b + O_COOKIE, 8);
    h->addr = xr__bytes_get_le(b + O_ADDR, 8);
    h->len = xr__bytes_get_le(b + O_LEN, 8);
    memcpy(h->why, b + O_WHY, XR_STAGE_WHY - 1);
    h->why[XR_STAGE_WHY - 1] = 0;
    return true;
}

int xr__stage_wire_request(const uint8_t *b, size_t rxlen, size_t chunk, xr_stage_hdr *h,
                           const char **why)
{
    memset(h, 0, sizeof *h);
    if (rxlen < XR_STAGE_HDR || !get_common(b, rxlen, h)) {
        *why = "not a staging request";
        return XR_STAGE_REQ_DROP;
    }
    if (h->srclen == 0 || h->srclen > XR_STAGE_SRC_MAX) {
        *why = "no address to answer";
        return XR_STAGE_REQ_DROP;
    }
    memcpy(h->src, b + O_SRC, h->srclen);
    bool write = h->op == XR_OP_WRITE;
    if ((h->op != XR_OP_WRITE && h->op != XR_OP_READ) || h->len == 0 || h->len > chunk ||
        rxlen != XR_STAGE_HDR + (write ? h->len : 0)) {
        *why = "malformed request";
        return XR_STAGE_REQ_REFUSE;
    }
    if (h->addr + h->len < h->addr) {
        *why = "range wraps the address space";
        return XR_STAGE_REQ_REFUSE;
    }
    *why = NULL;
    return XR_STAGE_REQ_OK;
}

int xr__stage_wire_response(const uint8_t *b, size_t len, uint64_t cookie, size_t want,
                            xr_stage_hdr *h, const char **why)
{
    memset(h, 0, sizeof *h);
    if (!get_common(b, len, h) || h->cookie != cookie) {
        *why = "malformed staging response";
        return XR_EIO;
    }
    /* A status is one of ours or nothing: a peer's number is not trusted
     * to be a code this build knows. */
    if (h->status > 0 || (h->status && !strcmp(xr_err_name(h->status), "XR_E?"))) {
        *why = "staging response with an unknown status";
        return XR_EIO;
    }
    if (!h->status && len != want) {
        *why = "staging response of the wrong length";
        return XR_EIO;
    }
    *why = NULL;
    return 0;
}
