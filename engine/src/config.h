/*
 * config.h - the config script (see config.c).
 */
#ifndef XR_CONFIG_H
#define XR_CONFIG_H

#include "engine.h"

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
    /* health: deadline_ms, probe_ms, probe_max_ms, retries, xfer_timeout_ms; -1 unset */
    long long health[6];
    int stage_host;                 /* -1: not set */
    int connect_on_load;            /* -1: not set */
    int ipc_fence;                  /* -1: not set */
} xr_config;

int xr__config_load(const xr_engine_opts *o, const char *path, xr_config *c);
void xr__config_free(xr_config *c);

#endif
