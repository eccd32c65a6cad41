/*
 * script.h - the script search path (script.c).
 */
#ifndef XR_CORE_SCRIPT_H
#define XR_CORE_SCRIPT_H

#include "xrail.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * Find a script by name: in opts->script_path, then XRAIL_SCRIPT_PATH
 * (unless opts->ignore_env), then the installed share directory; in each
 * directory as dir/name, then as dir/sub/name. A name with a '/' is taken
 * as a path.
 */
int xr__script_find(const xr_engine_opts *o, const char *name, const char *sub, char *out,
                    size_t cap);
/* A whole script file, NUL-terminated; NULL if it cannot be read. */
char *xr__script_read(const char *path, size_t *len);

#endif
