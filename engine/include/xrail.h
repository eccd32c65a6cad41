/*
 * xrail.h - the one public header of xrail, a zero-copy multi-rail transfer
 * engine on libfabric.
 *
 * Objects are opaque handles. Every call returns 0 (or a count, where said)
 * or a negative XR_E* code; xr_engine_last_error() holds the detail.
 *
 * Threading: an engine may be used from several threads. Calls on one
 * transfer handle must not race with each other (post/wait/release of the
 * same xr_xfer from two threads); everything else is thread-safe.
 */
#ifndef XRAIL_H
#define XRAIL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XR_VERSION_MAJOR 0
#define XR_VERSION_MINOR 1
#define XR_VERSION_PATCH 0
#define XR_VERSION ((XR_VERSION_MAJOR << 16) | (XR_VERSION_MINOR << 8) | XR_VERSION_PATCH)

#if defined(XR_BUILDING)
#define XR_API __attribute__((visibility("default")))
#else
#define XR_API
#endif

/* The library's own version, "MAJOR.MINOR.PATCH", which may differ from the
 * XR_VERSION_* of the header a program was built with. */
XR_API const char *xr_version(void);

/*
 * The log. Levels, as opts.log_level takes them; an engine logs what is at
 * or below its level. By default each line goes to stderr as
 *   2026-12-01T06:58:07.123Z xrail[prefill] warn: rail 1 (...) down: ...
 * A handler takes the lines instead: the level, the engine's name and the
 * message (no newline). It is called from whichever thread logs (a progress
 * thread, or the caller's), so it must be thread-safe, and it must not call
 * xrail. Process-wide; NULL restores stderr. When xr_log_set_handler
 * returns, no call to the handler it replaced is still running.
 */
enum { XR_LOG_ERROR = 0, XR_LOG_WARN = 1, XR_LOG_INFO = 2, XR_LOG_DEBUG = 3 };
typedef void (*xr_log_fn)(int level, const char *engine, const char *msg, void *user);
XR_API void xr_log_set_handler(xr_log_fn fn, void *user);

/* The most rails one engine drives. Masks of rails are uint64_t. */
#define XR_MAX_RAILS 64

/*
 * Error codes. One table generates the enum, xr_strerror() and xr_err_name().
 * The enum values are already negative: calls return XR_EINVAL as it is.
 */
#define XR_ERRNO_MAP(X)                                                        \
    X(INVAL, 1, "invalid argument")                                            \
    X(NOMEM, 2, "out of memory")                                               \
    X(TOOSMALL, 3, "buffer too small")                                         \
    X(BADMD, 4, "malformed or corrupted metadata")                             \
    X(VERSION, 5, "incompatible metadata version or layout")                   \
    X(NOTREG, 6, "memory is not registered")                                   \
    X(RANGE, 7, "range outside a registered region")                           \
    X(ACCESS, 8, "access not granted by the region")                           \
    X(EXIST, 9, "object already exists")                                       \
    X(NOENT, 10, "no such object")                                             \
    X(BUSY, 11, "object is busy")                                              \
    X(AGAIN, 12, "nothing available now, try again")                           \
    X(INPROGRESS, 13, "operation in progress")                                 \
    X(TIMEDOUT, 14, "timed out")                                               \
    X(FABRIC, 15, "libfabric call failed")                                     \
    X(IO, 16, "transfer failed on a rail")                                     \
    X(NORAIL, 17, "no usable rail")                                            \
    X(NOTSUP, 18, "not supported")                                             \
    X(CANCELED, 19, "canceled")                                                \
    X(SCRIPT, 20, "Lua script failed")                                         \
    X(PEER, 21, "peer stopped answering")                                      \
    X(DIR, 22, "the directory (etcd) failed or is unreachable")                \
    X(GONE, 23, "peer left the directory")

typedef enum xr_errno {
#define XR__ERR_ENUM(name, code, msg) XR_E##name = -(code),
    XR_ERRNO_MAP(XR__ERR_ENUM)
#undef XR__ERR_ENUM
} xr_errno;

/* Static text for a code; never NULL, even for unknown codes. */
XR_API const char *xr_strerror(int err);
/* "XR_EINVAL" etc.; "XR_E?" for unknown codes. */
XR_API const char *xr_err_name(int err);

typedef struct xr_engine xr_engine;
typedef struct xr_region xr_region;
typedef struct xr_peer xr_peer;
typedef struct xr_xfer xr_xfer;
typedef struct xr_group xr_group;

typedef enum xr_mem_kind { XR_MEM_HOST = 0, XR_MEM_CUDA = 1 } xr_mem_kind;

/* Remote access a region grants to peers. */
enum { XR_ACCESS_NONE = 0, XR_ACCESS_READ = 1, XR_ACCESS_WRITE = 2, XR_ACCESS_RW = 3 };

typedef enum xr_op { XR_OP_WRITE = 0, XR_OP_READ = 1 } xr_op;

/* One side of a descriptor: an address (local pointer or peer address) and a length. */
typedef struct xr_iov {
    uint64_t addr;
    size_t len;
} xr_iov;

/*
 * An explicit rail list entry: `count` rails on the same provider and
 * interface. Many rails on one interface is how one host gets 32.
 */
typedef struct xr_rail_spec {
    const char *provider;  /* e.g. "tcp;ofi_rxm", "shm", "efa"; NULL: opts.provider */
    const char *domain;    /* libfabric domain or interface name ("lo"); NULL: any */
    const char *src_addr;  /* source address (IPv4 text for sockets providers); NULL: any */
    unsigned count;        /* rails to open from this entry; 0 means 1 */
    uint64_t speed_mbps;   /* declared link speed; 0: what the provider reports */
    /* Declared topology, for planning (and for tests on one host). Only the
     * attributes named in `declared` (XR_DECL_*) are taken; the others come
     * from the provider and sysfs. */
    unsigned declared;
    int numa_node;
    int gpu;               /* the GPU this NIC is closest to */
    const char *pci;       /* e.g. "0000:4f:00.0" */
    /* 1: the rails do not ask for FI_HMEM, and carry the host memory (and
     * staged device memory) while the other rails carry device memory.
     * libfabric's shm gives up its single-copy path (CMA) on an endpoint
     * that asks for FI_HMEM: on a GPU host, host memory over such a rail
     * moved at 0.4x (docs/gpu.md, "Host memory beside device memory"). */
    int host_only;
} xr_rail_spec;

enum { XR_DECL_NUMA = 1, XR_DECL_GPU = 2, XR_DECL_PCI = 4 };

/* The MR cache's settings (see xr_mr_cache_configure). */
typedef struct xr_mr_cache_opts {
    int enabled;            /* 0: register and deregister every time */
    size_t max_entries;     /* registrations kept, in use or not; 0: no limit (default 16384) */
    size_t max_bytes;       /* bytes they cover; 0: no limit (the default) */
} xr_mr_cache_opts;

/*
 * Staging: memory no rail can reach (CUDA memory where the provider has no
 * FI_HMEM) moves through pinned bounce slots, `slots` of `chunk` bytes for
 * this engine's transfers, plus `rx_slots` per rail for peers' requests
 * once this engine publishes such memory (docs/gpu.md).
 */
typedef struct xr_stage_opts {
    size_t chunk;           /* bytes per slot; default 1 MiB */
    unsigned slots;         /* slots for this engine's transfers; default 16 */
    unsigned rx_slots;      /* per rail, slots for peers' requests; default 2 */
    int host;               /* 1: stage host regions too, as if no rail reached them: runs
                               the staging protocol on machines without a GPU (tests) */
} xr_stage_opts;

/*
 * How rails and peers are watched (docs/reliability.md). Every operation
 * with a provider has a deadline. A rail that completes nothing while work
 * it holds is past the deadline is down: its endpoint is closed and
 * reopened at the same address, which cancels what it held, and its chunks
 * go to the peer's other rails. A peer that completes nothing on any rail
 * for a deadline fails its transfers with XR_EPEER. A down rail is probed
 * (an 8-byte READ of a peer's region) after probe_ms, doubling up to
 * probe_max_ms, and returns to plans when a probe completes.
 */
typedef struct xr_health_opts {
    unsigned deadline_ms;          /* default 1500: a dead link is seen within 2 s */
    unsigned probe_ms;             /* first probe of a down rail; default 250 */
    unsigned probe_max_ms;         /* the longest wait between probes; default 4000 */
    unsigned retries;              /* times a failed chunk is posted again on another
                                      rail before its transfer fails; default 3 */
    unsigned xfer_timeout_ms;      /* a transfer not finished after this fails with
                                      XR_ETIMEDOUT; 0 (default): none but the deadlines */
    unsigned connect_ms;           /* the deadline of first contact: a peer, or a rail
                                      of it, that has not answered since the peer was
                                      loaded, as connections are set up; default 15000 */
} xr_health_opts;

typedef struct xr_engine_opts {
    const char *name;              /* unique among peers; required */
    const char *provider;          /* provider for discovery; NULL: any RDM provider with RMA */
    const char *domain;            /* discovery filter on domain name; NULL: all */
    unsigned max_rails;            /* cap on rails (discovery or list); 0: XR_MAX_RAILS */
    const xr_rail_spec *rails;     /* explicit rail list; NULL: discovery */
    unsigned n_rail_specs;
    size_t stripe_min;             /* descriptors at or above are striped; default 128 KiB */
    size_t chunk_size;             /* largest chunk posted, before the provider cap; default 1 MiB */
    unsigned rail_depth;           /* chunks in flight per rail; default 64 */
    size_t max_metadata;           /* largest blob xr_peer_load accepts; default 256 MiB */
    size_t max_notif;              /* largest notification accepted; default 256 MiB */
    int progress_thread;           /* 1: a thread drives progress; 0: xr_progress/xr_xfer_wait do */
    unsigned progress_threads;     /* with progress_thread: how many threads (default 1, at most
                                      16, at most one per rail); thread t drives rails i with
                                      i % n == t, and with more than one each rail's thread
                                      also posts its chunks, so a provider that copies inside
                                      fi_write (tcp) copies on several cores */
    int progress_sleep_us;         /* the thread's nap after 256 polls found nothing; default
                                      20. 0: it never sleeps, only yields: a core spent for the
                                      lowest latency, as a target of RMA needs (its provider
                                      moves bytes only when polled, and reports nothing) */
    int ignore_env;                /* 1: XRAIL_* environment overrides are not read */
    int connect_on_load;           /* 1: xr_peer_load (and a directory lookup) starts every
                                      rail's connection to the peer at once, in the
                                      background, as xr_peer_connect does without waiting:
                                      the first transfer finds them set up or under way.
                                      Default 0: each rail connects on first use */
    int ipc_fence;                 /* 1 (default): a transfer of device memory that a provider
                                      moved by CUDA IPC (libfabric's shm) ends with a READ of
                                      8 bytes that waits for the peer's copies, which libfabric
                                      reports done before they are (docs/gpu.md). 0: not, for
                                      a libfabric that waits for them itself */
    int log_level;                 /* 0 errors, 1 warnings (default), 2 info, 3 debug */
    const char *policy;            /* rail policy script (Lua), a path or a name found on the
                                      script path; NULL: the config's, else built-in equal stripe */
    size_t script_mem;             /* memory cap of each script's Lua state; default 4 MiB */
    const char *config;            /* config script, a path or a name; NULL: XRAIL_CONFIG, else
                                      "xrail.lua" on the script path if there is one */
    const char *script_path;       /* ':'-separated directories searched first for scripts */
    const char *layout;            /* metadata layout script (Lua), a path or a name found on the
                                      script path under layout/; NULL: the config's, else the
                                      built-in xrail.v1 layout */
    xr_mr_cache_opts mr_cache;     /* default: on, 16384 entries, no byte limit; the config's
                                      mr_cache table and XRAIL_MR_CACHE* override */
    xr_stage_opts stage;           /* the config's stage table and XRAIL_STAGE_HOST override */
    xr_health_opts health;         /* deadlines, retries and probing; the config's health
                                      table and XRAIL_DEADLINE_MS override */
} xr_engine_opts;

/*
 * Mark every setting of `opts` unset: pointers NULL, numbers XR_UNSET_*.
 * Call it, then set the fields you mean. xr_engine_create takes each unset
 * one from the config script, else its built-in default, so a field set to
 * the default's own value is still yours: the config does not change it.
 */
#define XR_UNSET_SIZE ((size_t)-1)
#define XR_UNSET_UINT (~0u)
#define XR_UNSET_INT (-1)
XR_API void xr_engine_opts_init(xr_engine_opts *opts);
/* Fill `opts` with the built-in defaults, to read them. Passed to
 * xr_engine_create as it is, every setting counts as the application's. */
XR_API void xr_engine_opts_defaults(xr_engine_opts *opts);

/*
 * Create an engine and open its rails. Settings come from, lowest first: the
 * config script (see opts->config), the fields set in `opts`, and the
 * environment (unless opts->ignore_env): XRAIL_PROVIDER, XRAIL_DOMAIN,
 * XRAIL_RAILS (a count of rails on the discovered/first domain, or
 * "prov:domain:count,..."), XRAIL_MAX_RAILS, XRAIL_STRIPE_MIN,
 * XRAIL_CHUNK_SIZE, XRAIL_LOG, XRAIL_POLICY, XRAIL_LAYOUT, XRAIL_MR_CACHE*,
 * XRAIL_STAGE_CHUNK, XRAIL_STAGE_SLOTS, XRAIL_STAGE_HOST, XRAIL_PROGRESS_SLEEP_US,
 * XRAIL_PROGRESS_THREADS, XRAIL_CONNECT_ON_LOAD, XRAIL_IPC_FENCE. With
 * ignore_env, only a config
 * named in opts->config is read.
 * On failure nothing is left behind, *out is NULL, and
 * xr_engine_last_error(NULL) tells why.
 */
XR_API int xr_engine_create(const xr_engine_opts *opts, xr_engine **out);

/*
 * Destroy an engine. Transfers in flight get up to 5 s to drain, then every
 * handle of the engine (regions, peers, transfers) is freed: none may be used
 * after this call. Must not race with other calls on the engine.
 */
XR_API void xr_engine_destroy(xr_engine *e);

/*
 * Detail of the last failed call made by this thread, like errno: it names
 * the field, rail, peer or descriptor and the sizes. `e` may be NULL.
 */
XR_API const char *xr_engine_last_error(xr_engine *e);
XR_API const char *xr_engine_name(xr_engine *e);
/*
 * The effective settings (after config script, options and environment) as
 * a Lua table, usable as a config script. XR_ETOOSMALL if `cap` is too small.
 */
XR_API int xr_engine_config_get(xr_engine *e, char *buf, size_t cap);

typedef struct xr_rail_counters {
    uint64_t tx_bytes;      /* bytes this rail moved as initiator (WRITE and READ) */
    uint64_t chunks;        /* chunks completed */
    uint64_t errors;        /* chunks or messages completed in error */
    uint64_t eagain;        /* times the provider pushed back */
    uint64_t notif_tx;      /* notification frames sent */
    uint64_t notif_rx;      /* notification frames received */
    uint64_t staged;        /* of the chunks, those that went through bounce slots */
    uint64_t staged_served; /* peers' staged requests this engine answered */
    uint64_t stalls;        /* times work on it passed the deadline with nothing completing */
    uint64_t resets;        /* times its endpoint was closed and reopened */
    uint64_t failovers;     /* chunks that failed or were canceled here and went elsewhere */
    uint64_t probes;        /* probes posted while it was down */
    uint64_t abandoned;     /* operations of a lost peer left with the provider instead of a
                             * reset, which would have lost the others (docs/reliability.md) */
} xr_rail_counters;

/* A rail's health: up and suspect rails carry traffic; down and disabled
 * ones are out of plans. */
typedef enum xr_rail_state {
    XR_RAIL_UP = 0,
    XR_RAIL_SUSPECT = 1,    /* an error since its last success; still in plans */
    XR_RAIL_DOWN = 2,       /* stalled, or disabled by the policy; probed with backoff */
    XR_RAIL_DISABLED = 3,   /* by xr_rail_set_state(e, i, 0); never probed */
} xr_rail_state;

typedef struct xr_rail_info {
    unsigned index;
    char provider[64];
    char domain[64];
    char fabric[64];
    char address[128];      /* printable endpoint address */
    uint64_t speed_mbps;    /* declared, or reported by the provider; 0 unknown */
    int numa_node;          /* -1 unknown */
    int gpu;                /* declared GPU affinity; -1 unknown */
    char pci[32];           /* PCI address of the NIC; "" unknown */
    int up;                 /* 1 when the rail carries traffic (state UP or SUSPECT) */
    int state;              /* xr_rail_state */
    char reason[160];       /* why it is in that state; "" when up */
    char last_error[256];   /* the last completion error or stall on it; "" none */
    uint64_t state_age_ms;  /* how long it has been in that state */
    uint64_t max_msg_size;
    uint64_t mr_mode;       /* FI_MR_* bits the provider asked for */
    int hmem;               /* 1: device memory is registered on the rail itself (FI_HMEM, and
                               the first CUDA registration worked or is still to come); 0: the
                               rail stages it through host bounce slots */
    int delivery_complete;  /* always 1: a write completion means visible at the target (a
                               provider without FI_DELIVERY_COMPLETE is refused) */
    int host_only;          /* declared host_only (xr_rail_spec) */
    unsigned stage_slots;   /* bounce slots this engine's staged chunks hold on the rail now */
    xr_rail_counters counters;
} xr_rail_info;

XR_API int xr_rail_count(xr_engine *e);
XR_API int xr_rail_info_get(xr_engine *e, unsigned index, xr_rail_info *info);
/*
 * How the rails were chosen, as text: with no provider named, discovery
 * takes the best provider family offered (cxi > efa > verbs > opx > psm3 >
 * tcp > tcp;ofi_rxm) and leaves out shm, udp, sockets and net, and
 * loopback interfaces unless named; it says what was offered, taken and
 * left out, and why. XR_ETOOSMALL if cap is too small.
 */
XR_API int xr_rail_explain(xr_engine *e, char *buf, size_t cap);
/* Take a rail out of (up=0) or back into (up=1) new transfers. */
XR_API int xr_rail_set_state(xr_engine *e, unsigned index, int up);

/*
 * Register [addr, addr+len) on the rails the policy's register hook picks
 * (every rail without one). `access` is the remote access
 * peers get (XR_ACCESS_*); a region with XR_ACCESS_NONE is usable only as the
 * local side of transfers and is not published. The caller keeps the memory
 * alive until xr_mem_deregister. Regions may nest or overlap (a tensor
 * inside its pool): registrations go through the MR cache, so a region
 * inside another is served by the outer one's registration. A region peers
 * reach is registered on its rails at once; a local-only one on a rail the
 * first time a transfer's plan uses that rail.
 */
XR_API int xr_mem_register(xr_engine *e, void *addr, size_t len, xr_mem_kind kind,
                           int device, unsigned access, xr_region **out);
/* Deregister. XR_EBUSY while a transfer that uses the region is in flight. */
XR_API int xr_mem_deregister(xr_region *r);
/*
 * A transfer may also name local buffers that were never registered: each
 * is registered on demand, through the cache, and the registration stays
 * cached after the transfer for the next one. Before freeing host memory
 * used that way, call xr_mem_invalidate on it (or flush, or run with the
 * cache off): a new allocation at the same address must not be served by
 * the old registration. Registrations a live transfer holds are kept.
 */
XR_API int xr_mem_invalidate(xr_engine *e, const void *addr, size_t len);

/*
 * The memory registration cache. Every registration (regions, and local
 * buffers of transfers that were never registered) goes through it: a
 * range an existing registration of the same rail, memory kind and device
 * encloses, with enough access, is served by that registration. Unused
 * registrations stay until evicted (least recently used first, past
 * max_entries or max_bytes), flushed, or invalidated by xr_mem_deregister
 * of an overlapping range. CUDA hits are checked against the allocation's
 * buffer id. Host memory: deregister it, or flush the cache, before freeing
 * it, or turn the cache off (docs/mr_cache.md).
 */

typedef struct xr_mr_cache_stats {
    int enabled;
    size_t max_entries, max_bytes;
    uint64_t entries, bytes;        /* registrations alive now, per rail counted apart */
    uint64_t in_use;                /* of which held by a region or a transfer */
    uint64_t hits, misses;
    uint64_t evictions;             /* dropped for the limits */
    uint64_t invalidations;         /* dropped by xr_mem_deregister of their range */
    uint64_t stale;                 /* CUDA entries whose buffer id no longer matched */
    uint64_t registrations, deregistrations;
    uint64_t rail_registrations[XR_MAX_RAILS];
    uint64_t register_ns;           /* time spent in the providers' registration calls */
} xr_mr_cache_stats;

/* Change the settings at run time; turning the cache off drops unused
 * entries at once, and held ones at their last release. */
XR_API int xr_mr_cache_configure(xr_engine *e, const xr_mr_cache_opts *opts);
/* The settings in force (after the config, options, environment and any
 * xr_mr_cache_configure). */
XR_API int xr_mr_cache_opts_get(xr_engine *e, xr_mr_cache_opts *opts);
/* Deregister every unused entry. */
XR_API int xr_mr_cache_flush(xr_engine *e);
XR_API int xr_mr_cache_stats_get(xr_engine *e, xr_mr_cache_stats *stats);

/*
 * Serialize this engine's metadata (name, rails, published regions).
 * *len in: capacity of buf; out: the size. With too small a buffer (or a NULL
 * buf) it returns XR_ETOOSMALL and *len tells the size needed.
 */
XR_API int xr_metadata_get(xr_engine *e, void *buf, size_t *len);

/*
 * Publish an application field in this engine's metadata (a model name, a
 * tp rank, a KV block size, a dtype...): any bytes, up to 64 KiB, under a
 * name of 1 to 255 bytes. Setting a name again replaces its value. Peers
 * loaded before the change do not see it: publish fields before
 * xr_metadata_get. Engines that do not know custom fields skip them.
 * A field declared in the engine's layout script is typed: an integer
 * takes exactly its width in host byte order, a string no NUL byte;
 * anything else is XR_EINVAL naming the field and the layout. An
 * undeclared name needs a layout with an "extra" section (the built-in
 * one has it).
 */
XR_API int xr_metadata_set_field(xr_engine *e, const char *name, const void *value, size_t len);
/*
 * Read a field the peer published. *len in: capacity; out: size.
 * XR_ENOENT if the peer has no such field (the message names it);
 * XR_ETOOSMALL (with the size) if buf is NULL or too small.
 */
XR_API int xr_peer_field(xr_peer *p, const char *name, void *buf, size_t *len);

/* How this engine's layout types a field: what xr_peer_field's bytes are. */
typedef enum xr_field_type {
    XR_FIELD_UNTYPED = 0, /* not declared: bytes, from the layout's "extra" section */
    XR_FIELD_U8,          /* integers: exactly their width, in host byte order */
    XR_FIELD_U16,
    XR_FIELD_U32,
    XR_FIELD_U64,
    XR_FIELD_I32,
    XR_FIELD_STRING,      /* no NUL byte, none appended */
    XR_FIELD_BYTES,
} xr_field_type;
/*
 * The type of field `name` in this engine's layout script (peers are read
 * by it), or XR_FIELD_UNTYPED; XR_EINVAL for a NULL argument.
 */
XR_API int xr_metadata_field_type(xr_engine *e, const char *name);

/*
 * Validate a metadata blob and connect to the peer it describes. Any rail
 * count works against any other: each local rail is paired with a peer rail
 * of the same provider. XR_EEXIST if a peer of that name is loaded.
 */
XR_API int xr_peer_load(xr_engine *e, const void *md, size_t len, xr_peer **out);
/*
 * Unload a peer. Transfers in flight with it complete normally; the peer's
 * resources go when the last of them is released. The handle is invalid after.
 */
XR_API int xr_peer_unload(xr_peer *p);
/*
 * Set up every rail's connection to the peer now, all rails at once, so
 * that the first transfer runs at warm speed (otherwise each rail connects
 * on its first use: 0.1-0.3 s a rail on tcp here, one after another for the
 * first striped transfer). A hello frame goes on each rail that is up and
 * reaches the peer; the peer drops it. 0 once each has completed,
 * XR_ETIMEDOUT after timeout_ms (< 0: no limit but the deadlines; the
 * hellos still go on), or the first rail's error. Then, within the same
 * timeout, it warms the connections: a READ of 1 MiB per rail from the
 * largest region the peer lets anyone read (XR_ACCESS_READ), into a buffer
 * of the engine's, as a TCP socket's buffers grow only as it carries data;
 * a peer that publishes no such region is only connected, and a warming
 * that fails is logged (info), not returned. Either side may call it;
 * without a progress thread it drives progress.
 */
XR_API int xr_peer_connect(xr_peer *p, int timeout_ms);
XR_API const char *xr_peer_name(xr_peer *p);
XR_API int xr_peer_rail_count(xr_peer *p);
/* Local rails that reach this peer, as a mask of rail indexes. */
XR_API uint64_t xr_peer_rail_mask(xr_peer *p);

/*
 * The directory (docs/discovery.md): engines find each other through etcd
 * v3 instead of a side channel. xr_dir_open publishes this engine's
 * metadata under <prefix><name> with a lease that a thread of the engine
 * keeps alive, publishes it again when it changes (a region registered or
 * deregistered, a field set), and watches the prefix. A peer whose lease
 * ends (its engine was killed, its host lost) leaves: its transfers fail
 * with XR_EGONE and new ones are refused. etcd unreachable does not stop
 * transfers between peers already loaded; the engine publishes again and
 * watches again when it returns. Built with libcurl and json-c; without
 * them every call here is XR_ENOTSUP.
 */
typedef struct xr_dir_opts {
    const char *endpoints;   /* "http://host:2379,https://other:2379": tried in turn; required */
    const char *prefix;      /* the deployment's namespace; default "/xrail/" */
    unsigned ttl_ms;         /* the lease: how soon a dead engine leaves; default 10000,
                                whole seconds, at least 2 s (etcd's floor) */
    unsigned request_ms;     /* bound of one request to etcd; default 2000 */
    const char *user, *password;                   /* etcd authentication, if enabled */
    const char *ca_file, *cert_file, *key_file;    /* TLS, for https endpoints */
} xr_dir_opts;

XR_API void xr_dir_opts_init(xr_dir_opts *o);
/* Publish and watch; the first publish is done on return. XR_EDIR (with
 * etcd's or libcurl's words) if etcd cannot be reached; XR_EEXIST if the
 * engine has a directory; XR_EEXIST too if a live engine of the same name
 * is published there. */
XR_API int xr_dir_open(xr_engine *e, const xr_dir_opts *o);
/* Leave the directory: the lease is revoked, so peers see this engine
 * leave at once. xr_engine_destroy does it too. */
XR_API int xr_dir_close(xr_engine *e);
/*
 * The peer published as `name`, loaded on first use and kept up to date:
 * when its metadata changes (new regions, fields), the handle sees the new
 * version without unload and load. Waits up to timeout_ms for a peer not
 * published yet (XR_ETIMEDOUT); XR_EGONE for one that left and has not
 * come back. The directory owns the handle: it stays valid until
 * xr_dir_close (a peer that left and came back is a new handle).
 * The first lookup of a peer the directory saw when it opened reads the
 * peer's metadata from etcd (one request, bounded by request_ms, beside
 * timeout_ms); XR_EDIR if etcd does not answer.
 */
XR_API int xr_peer_lookup(xr_engine *e, const char *name, int timeout_ms, xr_peer **out);

typedef enum xr_dir_event_kind {
    XR_DIR_JOIN = 1,   /* a peer published itself (or was there when the watch began) */
    XR_DIR_UPDATE = 2, /* its metadata changed; a handle of it already sees the change */
    XR_DIR_LEAVE = 3,  /* its lease ended or it closed its directory */
} xr_dir_event_kind;

typedef struct xr_dir_event {
    xr_dir_event_kind kind;
    char name[256];
    int64_t revision;  /* etcd's revision of the change */
} xr_dir_event;

/* The next directory event, oldest first; XR_EAGAIN if none. Events also
 * make xr_engine_fd readable. This engine's own entry is not reported. If
 * more than 4096 wait, the oldest are dropped (and counted in the log). */
XR_API int xr_dir_event_get(xr_engine *e, xr_dir_event *ev);

/*
 * Create a transfer of `count` descriptors: local[i] <-> remote[i], equal
 * lengths. Every local range must lie in a region registered here, and every
 * remote range in a region the peer published with the access `op` needs;
 * the error names the descriptor and the range. `notif` (any length, may be
 * NULL/0 for none) reaches the peer after every byte is visible there.
 * The transfer is planned here (rails, chunks); posting it costs no planning.
 */
XR_API int xr_xfer_create(xr_engine *e, xr_peer *peer, xr_op op, const xr_iov *local,
                          const xr_iov *remote, size_t count, const void *notif,
                          size_t notif_len, xr_xfer **out);
/*
 * Start (or restart, once finished) the transfer. XR_EBUSY while it runs.
 * A chunk that fails or whose rail goes down is posted again on another
 * rail that reaches the peer (opts.health.retries times); the notification
 * still follows every byte. A peer that stops answering fails it with
 * XR_EPEER within the deadline (opts.health).
 */
XR_API int xr_xfer_post(xr_xfer *x);
/*
 * Post with this notification instead of the one the transfer carries
 * (msg NULL and len 0: none). It replaces the transfer's notification for
 * this post and the later ones, so a prepared transfer can carry each
 * request's id without being created (planned) again. XR_EBUSY while the
 * transfer is in flight; the message is copied.
 */
XR_API int xr_xfer_post_notif(xr_xfer *x, const void *msg, size_t len);
/*
 * Cancel a posted transfer: nothing more of it is posted, and it ends with
 * XR_ECANCELED once the chunks the provider holds have come back (within
 * the deadline: a rail that keeps them longer is reset). Its notification
 * is not sent. Returns at once; 0, or XR_EINVAL if it is not in flight.
 */
XR_API int xr_xfer_cancel(xr_xfer *x);
/* Fail the transfer with XR_ETIMEDOUT if a post has not finished after
 * timeout_ms (0: no limit but the deadlines); takes effect at the next post.
 * The default is opts.health.xfer_timeout_ms. */
XR_API int xr_xfer_set_timeout(xr_xfer *x, unsigned timeout_ms);
/* XR_EINPROGRESS while running, 0 when done, or the error it failed with. */
XR_API int xr_xfer_status(xr_xfer *x);
/* Detail of a failed transfer (which rail, which descriptor); "" otherwise. */
XR_API const char *xr_xfer_error(xr_xfer *x);
/*
 * Wait until done; timeout_ms < 0 waits forever. With progress threads it
 * sleeps until they say the transfer ended (no polling, no spinning).
 * Without, it drives progress itself, polling while the transfer flies,
 * as xr_progress would.
 */
XR_API int xr_xfer_wait(xr_xfer *x, int timeout_ms);
/*
 * Called once each time the transfer ends (status 0 or the XR_E* it
 * failed with; xr_xfer_status already says the same). It runs on a progress
 * thread, or, without one, inside whichever call drove progress
 * (xr_progress, xr_xfer_wait, xr_notif_wait, xr_notif_get), with no xrail
 * lock held: it may post this transfer again, release it, create, post or
 * release others, send notifications. It must not destroy the engine, and
 * it delays progress while it runs: hand long work elsewhere. An engine
 * runs one callback at a time. After xr_xfer_release returns, the
 * transfer's callback is not running and will not run (release waits for
 * one running on another thread, so do not hold a lock there that the
 * callback takes); none runs once xr_engine_destroy has begun. fn NULL
 * removes it. XR_EBUSY while the transfer is in flight.
 */
typedef void (*xr_xfer_cb)(xr_xfer *x, int status, void *user);
XR_API int xr_xfer_set_callback(xr_xfer *x, xr_xfer_cb fn, void *user);
/*
 * Free a transfer. Never blocks: a transfer still in flight is detached and
 * freed by progress once the provider has completed it (or at engine
 * destroy); its regions stay busy until then.
 */
XR_API void xr_xfer_release(xr_xfer *x);
/* Chunks the transfer was planned into, and how many went to `rail`. */
XR_API size_t xr_xfer_chunk_count(xr_xfer *x, int rail);

/*
 * Transfer groups: a request's transfers to one peer that end as one (one
 * per layer, posted as each layer of KV is ready, while prefill computes
 * the next). The group's notification (NULL/0: none) reaches the peer
 * after every byte of every member is in its memory; members' own
 * notifications are not sent.
 *
 *   xr_group_create(e, peer, "req 42", 6, &g);
 *   for each layer, when ready: xr_group_add(g, layer_xfer[l]);
 *   xr_group_seal(g);                 no more members
 *   xr_group_wait(g, 30000);          or xr_engine_fd, then xr_group_status
 *   xr_group_release(g);
 *
 * xr_group_add posts a prepared transfer to the group's peer as a member
 * (XR_EBUSY while it flies, XR_EINVAL once the group is sealed or for
 * another peer); the transfer may be posted again in a later group. The
 * group ends once it is sealed and every member has ended: 0 when all
 * succeeded and the notification was sent, else the first error (the
 * notification is then not sent). Its end is an event of xr_engine_fd. A
 * group released before it was sealed never sends its notification; one
 * released in flight is freed by progress when its members have ended.
 */
XR_API int xr_group_create(xr_engine *e, xr_peer *peer, const void *notif, size_t notif_len,
                           xr_group **out);
XR_API int xr_group_add(xr_group *g, xr_xfer *x);
XR_API int xr_group_seal(xr_group *g);
/* XR_EINPROGRESS until it ends, 0, or the first error. */
XR_API int xr_group_status(xr_group *g);
/* Which member or the notification failed; "" otherwise. */
XR_API const char *xr_group_error(xr_group *g);
/* Wait as xr_xfer_wait does; XR_ETIMEDOUT leaves it running. */
XR_API int xr_group_wait(xr_group *g, int timeout_ms);
XR_API void xr_group_release(xr_group *g);

/* Send a standalone notification of any length. Queued; returns at once. */
XR_API int xr_notif_send(xr_engine *e, xr_peer *peer, const void *msg, size_t len);
/*
 * Take the oldest received notification. XR_EAGAIN if none. The sender's
 * name goes to peer_name_buf (NUL-terminated, truncated to cap). *len in:
 * capacity of msg_buf; out: message size. XR_ETOOSMALL keeps the message
 * queued and tells its size.
 */
XR_API int xr_notif_get(xr_engine *e, char *peer_name_buf, size_t cap, void *msg_buf,
                        size_t *len);
/*
 * xr_notif_get, waiting up to timeout_ms (< 0: forever) for a notification
 * to arrive: XR_ETIMEDOUT if none did. It sleeps: on the progress threads'
 * word, or, without threads, in epoll on the rails' wait objects where the
 * providers have them (tcp, rxm; shm is polled with naps) while nothing of
 * this engine is in flight.
 */
XR_API int xr_notif_wait(xr_engine *e, int timeout_ms, char *peer_name_buf, size_t cap,
                         void *msg_buf, size_t *len);

/*
 * Drive the engine once: read every rail's completions, post queued work,
 * move staged chunks, free transfers released in flight that have finished,
 * and run the policy's on_rail_error for rails that failed. Returns the
 * number of events handled, or an error. Without a progress thread, both
 * sides must call it (or xr_xfer_wait / xr_notif_get): the target of an RMA
 * too, as tcp's data progress is manual.
 */
XR_API int xr_progress(xr_engine *e);
/*
 * A file descriptor for event loops (epoll, libuv, asyncio): it becomes
 * readable when one of the engine's transfers ends (done, failed or
 * canceled) or a notification arrives. Read its 8 bytes to clear it, then
 * look: xr_xfer_status, xr_notif_get. It says only that something
 * happened, so check everything you wait for; several events may come as
 * one. It is written from progress, so it needs a progress thread
 * (opts.progress_thread) or calls that drive progress. Nothing is written
 * before the first call (so that engines no one waits on pay no syscall per
 * transfer): look once after asking for it. The engine owns it: do not
 * close it. Negative XR_E* if it could not be made.
 */
XR_API int xr_engine_fd(xr_engine *e);

/*
 * Replace the rail policy with the script at `path`, atomically: transfers
 * already created keep their plan, new ones use the new policy. The script
 * must load and answer a probe plan() call sensibly; otherwise XR_ESCRIPT
 * (or XR_EINVAL for an unreadable file) and the old policy stays.
 */
XR_API int xr_policy_reload(xr_engine *e, const char *path);

/*
 * Describe the plan for one descriptor of `size` bytes to `peer`: the policy,
 * the rails, their weight shares and the byte split. For XR_MEM_HOST,
 * `device` is the buffer's NUMA node (-1 unknown), as transfers use it.
 * XR_ETOOSMALL if `cap` is too small.
 */
XR_API int xr_policy_explain(xr_engine *e, xr_peer *peer, xr_op op, xr_mem_kind kind,
                             int device, size_t size, char *buf, size_t cap);

typedef struct xr_policy_stats {
    uint64_t plan_calls;    /* times plan() ran in Lua */
    uint64_t plan_hits;     /* plan lookups served from the cache */
    uint64_t reloads;       /* successful xr_policy_reload calls */
    uint64_t classes;       /* plans cached now */
    uint64_t rail_error_calls; /* times on_rail_error ran */
    uint64_t rails_disabled;   /* rails it took out with "disable" */
    int scripted;           /* 1: a Lua policy is loaded */
} xr_policy_stats;

XR_API int xr_policy_stats_get(xr_engine *e, xr_policy_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* XRAIL_H */
