/*
 * engine.c - options, environment overrides, the engine's life cycle, the
 * wiring of its modules (per-rail set-up and tear-down of notifications
 * and staging, the plan flush on a rail state change), and progress
 * threads.
 */
#include "config.h"
#include "core/layout.h"
#include "core/script.h"
#include "group.h"
#include "notif.h"
#include "peer.h"
#include "policy.h"
#include "progress.h"
#include "region.h"
#include "stage.h"
#include "xfer.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

#define XR_NAME_MAX 255
#define DRAIN_MS 5000

/* The defaults, written once: xr_engine_opts_init copies them, and a field
 * left 0 where 0 means nothing gets its default back at creation. */
static const xr_engine_opts defaults = {
    .stripe_min = 128 * 1024, /* NIXL's documented striping threshold */
    .chunk_size = 1 << 20,
    .rail_depth = 64,
    .max_metadata = 256u << 20,
    .max_notif = 256u << 20,
    .log_level = XR_LOG_WARN,
    .progress_sleep_us = 20,
    .ipc_fence = 1,
    .script_mem = 4u << 20,
    .mr_cache = {.enabled = 1, .max_entries = 16384, .max_bytes = 0},
    .stage = {.chunk = 1 << 20, .slots = 16, .rx_slots = 2, .host = 0},
    /* 1.5 s: a dead link is seen within 2 s with the 10 ms health period
     * (TENT trips a rail after 3 errors in 10 s; NIXL waited forever). */
    .health = {.deadline_ms = 1500, .probe_ms = 250, .probe_max_ms = 4000, .retries = 3,
               .connect_ms = 15000},
};

/* Every numeric setting that may come from the options, the config script
 * or the defaults; "unset" is a value of its own (XR_UNSET_*), never a
 * default, so that an application that sets a default's value keeps it. */
#define XR_SETTINGS(X)                                                                      \
    X(stripe_min) X(chunk_size) X(max_metadata) X(max_notif) X(script_mem) X(max_rails)     \
    X(rail_depth) X(progress_thread) X(progress_threads) X(progress_sleep_us) X(log_level)  \
    X(mr_cache.enabled) X(mr_cache.max_entries) X(mr_cache.max_bytes) X(stage.chunk)       \
    X(stage.slots) X(stage.rx_slots) X(stage.host) X(health.deadline_ms)                   \
    X(health.probe_ms) X(health.probe_max_ms) X(health.retries) X(health.xfer_timeout_ms)  \
    X(health.connect_ms) X(connect_on_load) X(ipc_fence)

#define UNSET_OF(v) _Generic((v), size_t: XR_UNSET_SIZE, unsigned: XR_UNSET_UINT, int: XR_UNSET_INT)
#define IS_UNSET(v) ((v) == UNSET_OF(v))

void xr_engine_opts_init(xr_engine_opts *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
#define MARK_UNSET(f) o->f = UNSET_OF(o->f);
    XR_SETTINGS(MARK_UNSET)
#undef MARK_UNSET
}

void xr_engine_opts_defaults(xr_engine_opts *o)
{
    if (o)
        *o = defaults;
}

/* What is still unset after the options, the config and the environment
 * takes the built-in default. */
static void fill_defaults(xr_engine_opts *o)
{
#define FILL_DEFAULT(f)                                                                     \
    if (IS_UNSET(o->f))                                                                     \
        o->f = defaults.f;
    XR_SETTINGS(FILL_DEFAULT)
#undef FILL_DEFAULT
}

static long long clamp(long long v, long long lo, long long hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Parsed XRAIL_RAILS entries live with the engine, as opts points at them. */
typedef struct env_rails {
    xr_rail_spec spec[XR_MAX_RAILS];
    char *text;
} env_rails;

static int parse_size(const char *name, const char *v, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 0);
    unsigned long long mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1ull << 10, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1ull << 20, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1ull << 30, end++;
    if (errno || end == v || *end)
        return xr__error_set(XR_EINVAL, "%s='%s' is not a size (e.g. 131072, 128k, 4M)", name, v);
    *out = (size_t)(n * mul);
    return 0;
}

/* A log level by name or number (docs/config.md). */
static int parse_log_level(const char *name, const char *v, int *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int k = 0; k < 4; k++)
        if (!strcasecmp(v, names[k]) || (v[0] == '0' + k && !v[1])) {
            *out = k;
            return 0;
        }
    if (!strcasecmp(v, "warning")) {
        *out = XR_LOG_WARN;
        return 0;
    }
    return xr__error_set(XR_EINVAL, "%s='%s': use error, warn, info or debug (or 0-3)", name, v);
}

/* A switch: on/1 or off/0. */
static int parse_bool(const char *name, const char *v, int *out)
{
    if (!strcasecmp(v, "on") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcasecmp(v, "off") || !strcmp(v, "0"))
        *out = 0;
    else
        return xr__error_set(XR_EINVAL, "%s='%s': on or off (1 or 0)", name, v);
    return 0;
}

/* XRAIL_RAILS: "N" (N rails on the provider and domain already chosen) or
 * "provider:domain:count[,provider:domain:count...]"; empty fields mean any. */
static int parse_rails(const char *v, xr_engine_opts *o, env_rails *er)
{
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (end != v && !*end) {
        if (n == 0 || n > XR_MAX_RAILS)
            return xr__error_set(XR_EINVAL, "XRAIL_RAILS=%s: between 1 and %d rails", v, XR_MAX_RAILS);
        er->spec[0] = (xr_rail_spec){.provider = o->provider, .domain = o->domain,
                                     .count = (unsigned)n};
        o->rails = er->spec;
        o->n_rail_specs = 1;
        return 0;
    }
    er->text = strdup(v);
    if (!er->text)
        return xr__error_set(XR_ENOMEM, "XRAIL_RAILS: out of memory");
    unsigned k = 0;
    char *save = NULL;
    for (char *item = strtok_r(er->text, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        if (k == XR_MAX_RAILS)
            return xr__error_set(XR_EINVAL, "XRAIL_RAILS: more than %d entries", XR_MAX_RAILS);
        char *prov = item, *dom = strchr(prov, ':'), *cnt = dom ? strchr(dom + 1, ':') : NULL;
        if (!dom || !cnt)
            return xr__error_set(XR_EINVAL, "XRAIL_RAILS entry '%s': expected provider:domain:count",
                            item);
        *dom++ = 0;
        *cnt++ = 0;
        unsigned long c = strtoul(cnt, &end, 10);
        if (end == cnt || *end || c == 0 || c > XR_MAX_RAILS)
            return xr__error_set(XR_EINVAL, "XRAIL_RAILS: count '%s' is not 1..%d", cnt, XR_MAX_RAILS);
        er->spec[k++] = (xr_rail_spec){.provider = *prov ? prov : NULL,
                                       .domain = *dom ? dom : NULL, .count = (unsigned)c};
    }
    o->rails = er->spec;
    o->n_rail_specs = k;
    return 0;
}

#define XR_STR_(x) #x
#define XR_STR(x) XR_STR_(x)

const char *xr_version(void)
{
    return XR_STR(XR_VERSION_MAJOR) "." XR_STR(XR_VERSION_MINOR) "." XR_STR(XR_VERSION_PATCH);
}

static int apply_env(xr_engine_opts *o, env_rails *er)
{
    const char *v;
    int rc = 0;
    if ((v = getenv("XRAIL_PROVIDER")) && *v)
        o->provider = v;
    if ((v = getenv("XRAIL_DOMAIN")) && *v)
        o->domain = v;
    if ((v = getenv("XRAIL_MAX_RAILS")) && *v) {
        size_t n = 0;
        rc = parse_size("XRAIL_MAX_RAILS", v, &n);
        if (!rc && n > XR_MAX_RAILS)
            rc = xr__error_set(XR_EINVAL, "XRAIL_MAX_RAILS=%s: at most %d (0: no cap)", v,
                               XR_MAX_RAILS);
        o->max_rails = (unsigned)n;
    }
    if (!rc && (v = getenv("XRAIL_LOG")) && *v)
        rc = parse_log_level("XRAIL_LOG", v, &o->log_level);
    if ((v = getenv("XRAIL_POLICY")) && *v)
        o->policy = v;
    if ((v = getenv("XRAIL_LAYOUT")) && *v)
        o->layout = v;
    if (!rc && (v = getenv("XRAIL_MR_CACHE")) && *v)
        rc = parse_bool("XRAIL_MR_CACHE", v, &o->mr_cache.enabled);
    if (!rc && (v = getenv("XRAIL_CONNECT_ON_LOAD")) && *v)
        rc = parse_bool("XRAIL_CONNECT_ON_LOAD", v, &o->connect_on_load);
    if (!rc && (v = getenv("XRAIL_IPC_FENCE")) && *v)
        rc = parse_bool("XRAIL_IPC_FENCE", v, &o->ipc_fence);
    if (!rc && (v = getenv("XRAIL_MR_CACHE_MAX_COUNT")) && *v)
        rc = parse_size("XRAIL_MR_CACHE_MAX_COUNT", v, &o->mr_cache.max_entries);
    if (!rc && (v = getenv("XRAIL_MR_CACHE_MAX_BYTES")) && *v)
        rc = parse_size("XRAIL_MR_CACHE_MAX_BYTES", v, &o->mr_cache.max_bytes);
    if (!rc && (v = getenv("XRAIL_STAGE_HOST")) && *v)
        rc = parse_bool("XRAIL_STAGE_HOST", v, &o->stage.host);
    if (!rc && (v = getenv("XRAIL_STAGE_CHUNK")) && *v)
        rc = parse_size("XRAIL_STAGE_CHUNK", v, &o->stage.chunk);
    if (!rc && (v = getenv("XRAIL_STAGE_SLOTS")) && *v) {
        size_t n;
        rc = parse_size("XRAIL_STAGE_SLOTS", v, &n);
        o->stage.slots = (unsigned)n;
    }
    /* Health: whole milliseconds, and a count of retries. */
    static const struct {
        const char *name;
        size_t off;
    } hv[] = {{"XRAIL_DEADLINE_MS", offsetof(xr_engine_opts, health.deadline_ms)},
              {"XRAIL_PROBE_MS", offsetof(xr_engine_opts, health.probe_ms)},
              {"XRAIL_PROBE_MAX_MS", offsetof(xr_engine_opts, health.probe_max_ms)},
              {"XRAIL_RETRIES", offsetof(xr_engine_opts, health.retries)},
              {"XRAIL_XFER_TIMEOUT_MS", offsetof(xr_engine_opts, health.xfer_timeout_ms)},
              {"XRAIL_CONNECT_MS", offsetof(xr_engine_opts, health.connect_ms)}};
    for (size_t k = 0; !rc && k < sizeof hv / sizeof hv[0]; k++)
        if ((v = getenv(hv[k].name)) && *v) {
            size_t n;
            rc = parse_size(hv[k].name, v, &n);
            *(unsigned *)((char *)o + hv[k].off) = (unsigned)clamp((long long)n, 0, 1u << 30);
        }
    if (!rc && (v = getenv("XRAIL_PROGRESS_SLEEP_US")) && *v) {
        size_t n;
        rc = parse_size("XRAIL_PROGRESS_SLEEP_US", v, &n);
        o->progress_sleep_us = (int)clamp(n, 0, INT_MAX);
    }
    if (!rc && (v = getenv("XRAIL_PROGRESS_THREADS")) && *v) {
        size_t n;
        rc = parse_size("XRAIL_PROGRESS_THREADS", v, &n);
        o->progress_threads = (unsigned)clamp(n, 0, UINT_MAX);
    }
    if (!rc && (v = getenv("XRAIL_STRIPE_MIN")) && *v)
        rc = parse_size("XRAIL_STRIPE_MIN", v, &o->stripe_min);
    if (!rc && (v = getenv("XRAIL_CHUNK_SIZE")) && *v)
        rc = parse_size("XRAIL_CHUNK_SIZE", v, &o->chunk_size);
    if (!rc && (v = getenv("XRAIL_RAILS")) && *v)
        rc = parse_rails(v, o, er);
    return rc;
}

/*
 * Read the config script and let it fill what `o` leaves unset. Which
 * script: opts.config, else XRAIL_CONFIG, else "xrail.lua" on the script
 * path if one is there (a missing default is not an error). The strings in
 * *cfg must outlive the opening of the rails.
 */
static int config_apply(xr_engine_opts *o, xr_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    if (IS_UNSET(o->script_mem)) /* the options' alone; the config script runs under it */
        o->script_mem = defaults.script_mem;
    const char *name = o->config;
    if (!name && !o->ignore_env)
        name = getenv("XRAIL_CONFIG");
    bool named = name && *name;
    if (!named && o->ignore_env)
        return 0; /* hermetic: nothing but the options */
    char path[4096];
    int rc = xr__script_find(o, named ? name : "xrail.lua", NULL, path, sizeof path);
    if (rc)
        return named ? rc : 0;
    rc = xr__config_load(o, path, cfg);
    if (rc)
        return rc;
    if (!o->provider)
        o->provider = cfg->provider;
    if (!o->domain)
        o->domain = cfg->domain;
    if (!o->rails && cfg->nrails) {
        o->rails = cfg->rails;
        o->n_rail_specs = cfg->nrails;
    }
    if (IS_UNSET(o->max_rails) && cfg->max_rails)
        o->max_rails = cfg->max_rails;
    if (IS_UNSET(o->stripe_min) && cfg->stripe_min >= 0)
        o->stripe_min = (size_t)cfg->stripe_min;
    if (IS_UNSET(o->chunk_size) && cfg->chunk_size > 0)
        o->chunk_size = (size_t)cfg->chunk_size;
    if (IS_UNSET(o->progress_thread) && cfg->progress_thread)
        o->progress_thread = cfg->progress_thread;
    if (IS_UNSET(o->connect_on_load) && cfg->connect_on_load >= 0)
        o->connect_on_load = cfg->connect_on_load;
    if (IS_UNSET(o->ipc_fence) && cfg->ipc_fence >= 0)
        o->ipc_fence = cfg->ipc_fence;
    if (IS_UNSET(o->progress_threads) && cfg->progress_threads > 0)
        o->progress_threads = (unsigned)clamp(cfg->progress_threads, 0, UINT_MAX - 1);
    if (IS_UNSET(o->progress_sleep_us) && cfg->progress_sleep_us >= 0)
        o->progress_sleep_us = (int)clamp(cfg->progress_sleep_us, 0, INT_MAX);
    if (!o->policy)
        o->policy = cfg->policy;
    if (!o->layout)
        o->layout = cfg->layout;
    /* Each field on its own: a table the application filled in part
     * keeps the config's values for the rest. */
    unsigned *hf[] = {&o->health.deadline_ms, &o->health.probe_ms, &o->health.probe_max_ms,
                      &o->health.retries, &o->health.xfer_timeout_ms, &o->health.connect_ms};
    for (int k = 0; k < 6; k++)
        if (cfg->health[k] >= 0 && IS_UNSET(*hf[k]))
            *hf[k] = (unsigned)clamp(cfg->health[k], 0, 1u << 30);
    if (IS_UNSET(o->stage.chunk) && cfg->stage_chunk > 0)
        o->stage.chunk = (size_t)cfg->stage_chunk;
    if (IS_UNSET(o->stage.slots) && cfg->stage_slots > 0)
        o->stage.slots = (unsigned)cfg->stage_slots;
    if (IS_UNSET(o->stage.rx_slots) && cfg->stage_rx_slots > 0)
        o->stage.rx_slots = (unsigned)cfg->stage_rx_slots;
    if (IS_UNSET(o->stage.host) && cfg->stage_host >= 0)
        o->stage.host = cfg->stage_host;
    if (IS_UNSET(o->mr_cache.enabled) && cfg->mrc_enabled >= 0)
        o->mr_cache.enabled = cfg->mrc_enabled;
    if (IS_UNSET(o->mr_cache.max_entries) && cfg->mrc_max_entries >= 0)
        o->mr_cache.max_entries = (size_t)cfg->mrc_max_entries;
    if (IS_UNSET(o->mr_cache.max_bytes) && cfg->mrc_max_bytes >= 0)
        o->mr_cache.max_bytes = (size_t)cfg->mrc_max_bytes;
    if (IS_UNSET(o->log_level) && cfg->log_level >= 0)
        o->log_level = cfg->log_level;
    return 0;
}

static void *progress_main(void *arg)
{
    xr_progress_part *pp = arg;
    xr_engine *e = pp->e;
    unsigned idle = 0;
    while (!atomic_load(&e->stop)) {
        if (xr__progress_share(e, pp->index, pp->of) > 0)
            idle = 0;
        else
            xr__progress_idle(pp, &idle, -1, true);
    }
    return NULL;
}

/* Tear down in the order the fabric needs: no endpoint may complete into
 * freed memory, and every MR closes before its domain. */
static void engine_free(xr_engine *e)
{
    if (e->rails)
        xr__rail_close_eps(e->rails, e->nrails);
    xr__xfer_free_all(e);
    xr__group_free_all(e);
    xr__xfer_fini(e);
    xr__peer_fini(e);
    xr__region_free_all(e);
    xr__mrc_fini(&e->mrc);
    for (unsigned i = 0; e->rails && i < e->nrails; i++) {
        xr__notif_rail_close(e, &e->rails[i]);
        xr__stage_rail_close(e, &e->rails[i]);
    }
    if (e->rails)
        xr__rail_close_all(e->rails, e->nrails);
    free(e->rails);
    xr__stage_fini(e);
    xr__notif_fini(e);
    xr__policy_fini(e);
    xr__layout_destroy(e->layout);
    pthread_mutex_destroy(&e->lock);
    free(e->name);
    free(e->script_path);
    if (e->event_fd >= 0)
        close(e->event_fd);
    for (unsigned t = 0; t < XR_MAX_PROGRESS_THREADS; t++)
        xr__progress_part_close(&e->progress_part[t]);
    xr__progress_part_close(&e->self_part);
    pthread_mutex_destroy(&e->wait_lock);
    pthread_cond_destroy(&e->wait_cond);
    free(e->warm_buf);
    free(e);
}

int xr_engine_fd(xr_engine *e)
{
    if (!e)
        return xr__error_set(XR_EINVAL, "xr_engine_fd: NULL engine");
    if (e->event_fd < 0)
        return xr__error_set(XR_ENOTSUP, "xr_engine_fd: no eventfd could be made at creation");
    atomic_store(&e->event_wanted, true);
    return e->event_fd;
}

/* The modules' state, the rails, and each rail's notification frames. */
static int engine_open(xr_engine *e)
{
    int rc = xr__policy_init(e);
    if (!rc)
        rc = xr__peer_init(e);
    if (!rc)
        rc = xr__notif_init(e);
    if (!rc)
        rc = xr__stage_init(e);
    if (!rc)
        rc = xr__xfer_init(e);
    if (!rc && !(e->rails = calloc(XR_MAX_RAILS, sizeof *e->rails)))
        rc = xr__error_set(XR_ENOMEM, "rails: cannot allocate");
    e->rail_cfg = (xr_rail_cfg){.log = &e->log, .depth = e->opts.rail_depth,
                                .error_flag = &e->rail_err, .wake = xr__progress_wake,
                                .wake_arg = e};
    if (!rc)
        rc = xr__rail_open_all(&e->opts, &e->rail_cfg, e->rails, &e->nrails, e->rail_note,
                               sizeof e->rail_note);
    for (unsigned i = 0; !rc && i < e->nrails; i++)
        rc = xr__notif_rail_open(e, &e->rails[i]);
    if (!rc)
        rc = xr__progress_part_open(e, &e->self_part, 0, 1);
    return rc;
}

static void progress_stop(xr_engine *e);
static void set_posting(xr_engine *e);

int xr_engine_create(const xr_engine_opts *opts, xr_engine **out)
{
    if (out)
        *out = NULL;
    if (!opts || !out)
        return xr__error_set(XR_EINVAL, "xr_engine_create: NULL argument");
    if (!opts->name || !*opts->name || strlen(opts->name) > XR_NAME_MAX)
        return xr__error_set(XR_EINVAL, "xr_engine_create: a name of 1 to %d bytes is required",
                        XR_NAME_MAX);
    xr_engine *e = calloc(1, sizeof *e);
    env_rails *er = calloc(1, sizeof *er);
    if (!e || !er) {
        free(e);
        free(er);
        return xr__error_set(XR_ENOMEM, "xr_engine_create: out of memory");
    }
    pthread_mutex_init(&e->lock, NULL);
    pthread_mutex_init(&e->wait_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->wait_cond, &ca);
    pthread_condattr_destroy(&ca);
    xr__list_init(&e->xfers);
    xr__list_init(&e->kept);
    xr__list_init(&e->groups);
    e->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    /* Closed at free whether or not they were ever opened. */
    e->self_part.epfd = e->self_part.wake_fd = -1;
    for (unsigned t = 0; t < XR_MAX_PROGRESS_THREADS; t++)
        e->progress_part[t].epfd = e->progress_part[t].wake_fd = -1;
    e->opts = *opts;
    xr_engine_opts *o = &e->opts;
    xr_config cfg;
    int rc = config_apply(o, &cfg);
    if (!rc && !opts->ignore_env)
        rc = apply_env(o, er);
    fill_defaults(o);
    if (!o->stripe_min)
        o->stripe_min = 1; /* 0: stripe every descriptor */
    if (!o->chunk_size)
        o->chunk_size = defaults.chunk_size;
    if (!o->rail_depth)
        o->rail_depth = defaults.rail_depth;
    if (!o->stage.chunk)
        o->stage.chunk = defaults.stage.chunk;
    if (!o->stage.slots)
        o->stage.slots = defaults.stage.slots;
    if (!o->stage.rx_slots)
        o->stage.rx_slots = defaults.stage.rx_slots;
    if (!o->health.deadline_ms)
        o->health.deadline_ms = defaults.health.deadline_ms;
    if (!o->health.probe_ms)
        o->health.probe_ms = defaults.health.probe_ms;
    if (!o->health.connect_ms)
        o->health.connect_ms = defaults.health.connect_ms;
    if (o->health.connect_ms < o->health.deadline_ms) /* first contact is never shorter */
        o->health.connect_ms = o->health.deadline_ms;
    if (o->health.probe_max_ms < o->health.probe_ms)
        o->health.probe_max_ms = o->health.probe_ms > defaults.health.probe_max_ms
                                     ? o->health.probe_ms : defaults.health.probe_max_ms;
    e->log.level = o->log_level;
    /* The one place options are clamped, whichever source set them. A
     * nanosleep takes less than a second. */
    o->progress_sleep_us = (int)clamp(o->progress_sleep_us, 0, 999999);
    o->progress_threads = (unsigned)clamp(o->progress_threads, 0, XR_MAX_PROGRESS_THREADS);
    e->name = strdup(opts->name);
    e->log.name = e->name;
    o->name = e->name;
    if (opts->script_path)
        e->script_path = strdup(opts->script_path);
    o->script_path = e->script_path;
    o->config = NULL;
    if (!rc && (!e->name || (opts->script_path && !e->script_path)))
        rc = xr__error_set(XR_ENOMEM, "xr_engine_create: out of memory");
    if (!rc && getrandom(&e->instance, sizeof e->instance, 0) != sizeof e->instance)
        e->instance = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ (uintptr_t)e;
    /* The layout first: a malformed one fails creation before any rail opens. */
    if (!rc && o->layout) {
        char path[4096];
        rc = xr__script_find(o, o->layout, "layout", path, sizeof path);
        if (!rc)
            rc = xr__layout_load(path, o->script_mem, &e->layout);
    }
    if (!rc)
        rc = engine_open(e);
    xr__region_cache_start(e); /* after the rails: its backend registers on them */
    if (!rc && o->policy)
        rc = xr_policy_reload(e, o->policy);
    /* Strings from the caller, the config or the environment were only
     * needed while opening. */
    o->policy = o->layout = NULL;
    o->rails = NULL;
    o->n_rail_specs = 0;
    o->provider = o->domain = NULL;
    free(er->text);
    free(er);
    xr__config_free(&cfg);
    if (!rc && o->progress_thread) {
        unsigned n = o->progress_threads ? o->progress_threads : 1;
        if (n > e->nrails) /* a thread with no rail would only spin */
            n = e->nrails;
        o->progress_threads = n;
        for (unsigned t = 0; t < n && !rc; t++) {
            xr__progress_part_open(e, &e->progress_part[t], t, n);
            if (pthread_create(&e->progress_tid[t], NULL, progress_main, &e->progress_part[t]))
                rc = xr__error_set(XR_ENOMEM, "xr_engine_create: cannot start progress thread %u", t);
            else
                e->progress_nthreads = t + 1;
        }
    }
    if (rc) {
        char why[XR_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", xr__error_last());
        progress_stop(e); /* the threads that did start */
        engine_free(e);
        xr__error_set(rc, "%s", why);
        return rc;
    }
    set_posting(e);
    xr__log_write(&e->log, XR_LOG_INFO, "%u rails, first %s on %s", e->nrails, e->rails[0].provider,
            e->rails[0].domain_name);
    *out = e;
    return 0;
}

/* With a thread per group of rails, each rail's thread posts its queued
 * work; otherwise whoever queues it posts (rail.h, XR_POST_*). */
static void set_posting(xr_engine *e)
{
    unsigned n = e->progress_nthreads;
    int how = n == 0 ? XR_POST_NOW : n == 1 ? XR_POST_TRY : XR_POST_QUEUE;
    for (unsigned i = 0; i < e->nrails; i++)
        atomic_store(&e->rails[i].posting, how);
}

static void progress_stop(xr_engine *e)
{
    atomic_store(&e->stop, true);
    for (unsigned t = 0; t < e->progress_nthreads; t++)
        pthread_join(e->progress_tid[t], NULL);
    e->progress_nthreads = 0; /* from now on, whoever posts pumps */
    set_posting(e);
}

static bool busy(xr_engine *e)
{
    return xr__xfer_busy(e) || !xr__notif_idle(e);
}

void xr_engine_destroy(xr_engine *e)
{
    if (!e)
        return;
    if (e->dir) /* first: peers see us leave now, and its thread stops */
        xr_dir_close(e);
    progress_stop(e);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (busy(e)) {
        xr__progress_share(e, 0, 1);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > DRAIN_MS) {
            xr__log_write(&e->log, XR_LOG_WARN, "destroy: work still in flight after %d ms; closing anyway",
                    DRAIN_MS);
            break;
        }
    }
    engine_free(e);
}

const char *xr_engine_name(xr_engine *e)
{
    return e ? e->name : NULL;
}

const char *xr_engine_last_error(xr_engine *e)
{
    (void)e; /* per thread, not per engine: see core/error.c */
    return xr__error_last();
}

/* ---- public rail calls ---- */

int xr_rail_count(xr_engine *e)
{
    return e ? (int)e->nrails : XR_EINVAL;
}

int xr_rail_info_get(xr_engine *e, unsigned index, xr_rail_info *info)
{
    if (!e || !info)
        return xr__error_set(XR_EINVAL, "xr_rail_info_get: NULL argument");
    if (index >= e->nrails)
        return xr__error_set(XR_ENOENT, "xr_rail_info_get: rail %u of %u", index, e->nrails);
    xr__rail_info(&e->rails[index], info);
    info->stage_slots = xr__stage_held(e, index);
    return 0;
}

int xr_rail_explain(xr_engine *e, char *buf, size_t cap)
{
    if (!e || !buf || !cap)
        return xr__error_set(XR_EINVAL, "xr_rail_explain: NULL argument");
    size_t w = 0;
    if (*e->rail_note)
        xr__text_put(buf, cap, &w, "%s", e->rail_note);
    else
        xr__text_put(buf, cap, &w, "%u rail(s) as the options, config or environment named "
                                   "them; no discovery\n", e->nrails);
    if (w >= cap)
        return xr__error_set(XR_ETOOSMALL, "xr_rail_explain: %zu bytes needed", w + 1);
    return 0;
}

int xr_rail_set_state(xr_engine *e, unsigned index, int up)
{
    if (!e)
        return xr__error_set(XR_EINVAL, "xr_rail_set_state: NULL engine");
    if (index >= e->nrails)
        return xr__error_set(XR_ENOENT, "xr_rail_set_state: rail %u of %u", index, e->nrails);
    pthread_mutex_lock(&e->lock);
    xr__policy_rail_state(e, index, up ? XR_RAIL_UP : XR_RAIL_DISABLED,
                          up ? "" : "taken out by the application");
    pthread_mutex_unlock(&e->lock);
    return 0;
}
