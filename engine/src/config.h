/*
 * config.h - the config script and the script search path (see config.c).
 */
#ifndef XR_CONFIG_H
#define XR_CONFIG_H

#include "internal.h"

/* What a config script returned; strings are owned here. */
typedef struct xr_config {
    char *provider, *domain, *policy, *layout;
    xr_rail_spec rails[XR_MAX_RAILS];
    unsigned nrails;
    unsigned max_rails;
    long long stripe_min, chunk_size; /* -1: not set */
    int progress_thread;
    long long progress_sleep_us;    /* -1: not set */
    long long progress_threads;     /* -1: not set */
    int log_level;                  /* -1: not set */
    int mrc_enabled;                /* mr_cache = { enabled, max_entries, max_bytes }; -1: not set */
    long long mrc_max_entries, mrc_max_bytes;
    long long stage_chunk, stage_slots, stage_rx_slots; /* stage = {...}; -1: not set */
    int stage_host;                 /* -1: not set */
} xr_config;

/*
 * Find a script by name: in opts->script_path, then XRAIL_SCRIPT_PATH, then
 * the installed share directory; in each directory as dir/name, then as
 * dir/sub/name. A name with a '/' is taken as a path.
 */
int xr__script_find(const xr_engine_opts *o, const char *name, const char *sub, char *out,
                    size_t cap);
/* A whole script file, NUL-terminated; NULL if it cannot be read. */
char *xr__file_read(const char *path, size_t *len);
int xr__config_load(const xr_engine_opts *o, const char *path, xr_config *c);
void xr__config_free(xr_config *c);

#endif
