/* error.c - xr_strerror and xr_err_name, generated from XR_ERRNO_MAP. */
#include "xrail.h"

const char *xr_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define XR__ERR_MSG(name, code, msg)                                           \
    case XR_E##name:                                                           \
        return msg;
        XR_ERRNO_MAP(XR__ERR_MSG)
#undef XR__ERR_MSG
    }
    return "unknown error";
}

const char *xr_err_name(int err)
{
    switch (err) {
    case 0:
        return "XR_OK";
#define XR__ERR_NAME(name, code, msg)                                          \
    case XR_E##name:                                                           \
        return "XR_E" #name;
        XR_ERRNO_MAP(XR__ERR_NAME)
#undef XR__ERR_NAME
    }
    return "XR_E?";
}
