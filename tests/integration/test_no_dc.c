/*
 * test_no_dc.c - a rail whose provider cannot complete a write at delivery
 * (FI_DELIVERY_COMPLETE) is refused: with it, a notification could reach
 * the target before the bytes it announces.
 *
 * Every provider of this machine offers FI_DELIVERY_COMPLETE, so this
 * program stands in for one that does not: its fi_getinfo, which the
 * library's calls reach before libfabric's, refuses hints that ask for it
 * and passes everything else to the real provider. The engine must then
 * refuse the rail with XR_ENOTSUP and say why.
 *
 * usage: test_no_dc PROVIDER
 */
#define _GNU_SOURCE
#include "harness.h"

#include <dlfcn.h>
#include <rdma/fabric.h>

static int refused;

int fi_getinfo(uint32_t version, const char *node, const char *service, uint64_t flags,
               const struct fi_info *hints, struct fi_info **info)
{
    static int (*real)(uint32_t, const char *, const char *, uint64_t, const struct fi_info *,
                       struct fi_info **);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "fi_getinfo");
    if (hints && hints->tx_attr && (hints->tx_attr->op_flags & FI_DELIVERY_COMPLETE)) {
        refused++;
        return -FI_ENODATA;
    }
    return real(version, node, service, flags, hints, info);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return fprintf(stderr, "usage: %s PROVIDER\n", argv[0]), 2;
    xr_engine *e = NULL;
    int rc = h_engine("no-dc", argv[1], 2, 0, &e);
    H_CHECK(refused > 0, "the engine never asked for FI_DELIVERY_COMPLETE");
    if (rc == 0) {
        xr_rail_info ri;
        H_OK(xr_rail_info_get(e, 0, &ri));
        H_FAIL("a rail without delivery complete was opened (delivery_complete %d): its "
               "notifications could pass its bytes", ri.delivery_complete);
    }
    H_CHECK(rc == XR_ENOTSUP && !e, "gave %s: %s", xr_err_name(rc), xr_engine_last_error(NULL));
    H_CHECK(strstr(xr_engine_last_error(NULL), "FI_DELIVERY_COMPLETE"), "message: %s",
            xr_engine_last_error(NULL));
    h_log("ok: refused: %s", xr_engine_last_error(NULL));
    return 0;
}
