/* test_stage_wire.c - the staging protocol's headers (engine/src/core/stage_wire.c):
 * what a target accepts from a requester, and an initiator from a target. */
#include "stage_wire.h"
#include "unit.h"
#include "xrail.h"

#include <stdio.h>
#include <string.h>

#define CHUNK 65536

static uint8_t buf[XR_STAGE_HDR + CHUNK];

static xr_stage_hdr request(uint8_t op, uint64_t addr, uint64_t len)
{
    xr_stage_hdr h = {.op = op, .cookie = 0xABCDEF, .addr = addr, .len = len, .srclen = 16};
    for (int i = 0; i < 16; i++)
        h.src[i] = (uint8_t)(i * 7);
    return h;
}

START_TEST(request_round_trip)
{
    xr_stage_hdr h = request(XR_OP_WRITE, 0x7000, 4096), out;
    xr__stage_wire_put(buf, &h, true);
    const char *why;
    ck_assert_int_eq(xr__stage_wire_request(buf, XR_STAGE_HDR + 4096, CHUNK, &out, &why),
                     XR_STAGE_REQ_OK);
    ck_assert(out.op == XR_OP_WRITE && out.cookie == 0xABCDEF && out.addr == 0x7000 &&
              out.len == 4096 && out.srclen == 16 && !memcmp(out.src, h.src, 16));
    h = request(XR_OP_READ, 0x9000, CHUNK);
    xr__stage_wire_put(buf, &h, true);
    ck_assert_int_eq(xr__stage_wire_request(buf, XR_STAGE_HDR, CHUNK, &out, &why),
                     XR_STAGE_REQ_OK); /* a READ carries no payload */
}
END_TEST

/* Nothing to answer: dropped. */
START_TEST(request_dropped)
{
    xr_stage_hdr h = request(XR_OP_WRITE, 0x7000, 16), out;
    const char *why;
    xr__stage_wire_put(buf, &h, true);
    ck_assert_int_eq(xr__stage_wire_request(buf, XR_STAGE_HDR - 1, CHUNK, &out, &why),
                     XR_STAGE_REQ_DROP);
    buf[0] ^= 0xFF;
    ck_assert_int_eq(xr__stage_wire_request(buf, XR_STAGE_HDR + 16, CHUNK, &out, &why),
                     XR_STAGE_REQ_DROP);
    h.srclen = 0;
    xr__stage_wire_put(buf, &h, true);
    ck_assert_int_eq(xr__stage_wire_request(buf, XR_STAGE_HDR + 16, CHUNK, &out, &why),
                     XR_STAGE_REQ_DROP);
    h.srclen = XR_STAGE_SRC_MAX + 1; /* a forged length, past the address area */
    xr__stage_wire_put(buf, &(xr_stage_hdr){.op = XR_OP_WRITE, .len = 16}, false);
    buf[12] = (uint8_t)h.srclen;
    buf[13] = (uint8_t)(h.srclen >> 8);
    ck_assert_int_eq(xr__stage_wire_request(buf, XR_STAGE_HDR + 16, CHUNK, &out, &why),
                     XR_STAGE_REQ_DROP);
}
END_TEST

/* Answerable but wrong: refused with a reason. */
START_TEST(request_refused)
{
    struct {
        uint8_t op;
        uint64_t addr, len;
        size_t rxlen;
    } bad[] = {
        {9, 0x1000, 16, XR_STAGE_HDR + 16},                     /* unknown op */
        {XR_OP_WRITE, 0x1000, CHUNK + 1, XR_STAGE_HDR + CHUNK}, /* more than a slot */
        {XR_OP_WRITE, 0x1000, 0, XR_STAGE_HDR},                 /* nothing */
        {XR_OP_WRITE, 0x1000, 64, XR_STAGE_HDR + 32},           /* payload short */
        {XR_OP_READ, 0x1000, 64, XR_STAGE_HDR + 64},            /* a READ with a payload */
        {XR_OP_READ, UINT64_MAX - 8, 64, XR_STAGE_HDR},         /* wraps the address space */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        xr_stage_hdr h = request(bad[i].op, bad[i].addr, bad[i].len), out;
        xr__stage_wire_put(buf, &h, true);
        const char *why = NULL;
        ck_assert_int_eq(xr__stage_wire_request(buf, bad[i].rxlen, CHUNK, &out, &why),
                         XR_STAGE_REQ_REFUSE);
        ck_assert_ptr_nonnull(why);
    }
}
END_TEST

START_TEST(response_checks)
{
    xr_stage_hdr h = {.op = XR_OP_READ, .cookie = 42, .status = 0}, out;
    const char *why;
    xr__stage_wire_put(buf, &h, false);
    ck_assert_int_eq(xr__stage_wire_response(buf, XR_STAGE_HDR + 100, 42, XR_STAGE_HDR + 100,
                                             &out, &why), 0);
    ck_assert_int_eq(out.status, 0);
    /* another request's cookie, a wrong length, a truncated header */
    ck_assert_int_eq(xr__stage_wire_response(buf, XR_STAGE_HDR + 100, 43, XR_STAGE_HDR + 100,
                                             &out, &why), XR_EIO);
    ck_assert_int_eq(xr__stage_wire_response(buf, XR_STAGE_HDR + 99, 42, XR_STAGE_HDR + 100,
                                             &out, &why), XR_EIO);
    ck_assert_int_eq(xr__stage_wire_response(buf, XR_STAGE_RSP_MIN - 1, 42, XR_STAGE_HDR,
                                             &out, &why), XR_EIO);
    /* a refusal: the peer's code and reason, whatever the length */
    h.status = XR_ERANGE;
    snprintf(h.why, sizeof h.why, "out of range");
    xr__stage_wire_put(buf, &h, false);
    ck_assert_int_eq(xr__stage_wire_response(buf, XR_STAGE_HDR, 42, XR_STAGE_HDR + 100, &out,
                                             &why), 0);
    ck_assert_int_eq(out.status, XR_ERANGE);
    ck_assert_str_eq(out.why, "out of range");
    /* a status this build does not know is not passed on as a code */
    int forged[] = {1, -999, INT32_MIN};
    for (size_t i = 0; i < 3; i++) {
        h.status = forged[i];
        xr__stage_wire_put(buf, &h, false);
        ck_assert_int_eq(xr__stage_wire_response(buf, XR_STAGE_HDR, 42, XR_STAGE_HDR, &out,
                                                 &why), XR_EIO);
    }
    /* a reason without its NUL is cut, not read past */
    h.status = XR_EINVAL;
    xr__stage_wire_put(buf, &h, false);
    memset(buf + 40, 'x', XR_STAGE_WHY);
    ck_assert_int_eq(xr__stage_wire_response(buf, XR_STAGE_HDR, 42, XR_STAGE_HDR, &out, &why), 0);
    ck_assert_uint_eq(strlen(out.why), XR_STAGE_WHY - 1);
}
END_TEST

static void add(TCase *tc)
{
    tcase_add_test(tc, request_round_trip);
    tcase_add_test(tc, request_dropped);
    tcase_add_test(tc, request_refused);
    tcase_add_test(tc, response_checks);
}

int main(void)
{
    return unit_run("stage_wire", add);
}
