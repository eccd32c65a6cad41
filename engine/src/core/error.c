/*
 * error.c - xr_strerror and xr_err_name, generated from XR_ERRNO_MAP, and
 * the last-error text.
 *
 * The last error is per thread, like errno: an engine is shared by threads,
 * and one thread's failure must not overwrite the text another is reading.
 */
#include "log.h"

#include "xrail.h"

#include <stdio.h>
#include <string.h>

static __thread char last_error[XR_ERRMSG_MAX];

int xr__error_set(int code, const char *fmt, ...)
{
    /* Formatted aside first: callers add context to the last error by
     * passing xr__error_last() as an argument, which would otherwise be
     * overwritten while it is read. */
    char msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, strlen(msg) + 1);
    return code;
}

const char *xr__error_last(void)
{
    return last_error;
}

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
