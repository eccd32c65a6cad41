/*
 * rail.c - one libfabric RDM endpoint per NIC: its own fabric, domain,
 * endpoint, CQ and AV, so that rails share no provider lock or queue.
 *
 * What a rail needs from its provider is read from fi_getinfo (MR mode bits,
 * maximum message size, queue depths, delivery-complete support), never
 * inferred from the provider's name: efa and verbs go through the same code
 * as tcp and shm.
 */
#include "rail.h"

#include "core/cuda_mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rdma/fi_tagged.h>

#define XR_FI_VERSION FI_VERSION(1, 14)
#define CQ_BATCH 32
#define LOG_INTERVAL_NS 1000000000ull

/* MR mode bits xrail can honour; the provider picks the ones it needs. */
#define XR_MR_MODES (FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_PROV_KEY | FI_MR_ALLOCATED | \
                     FI_MR_RAW | FI_MR_ENDPOINT | FI_MR_HMEM)

typedef struct rail_req {
    const char *provider;
    const char *domain;
    const char *src_addr;
    uint64_t speed_mbps;
    const xr_rail_spec *spec;   /* declared attributes, or NULL */
} rail_req;

static struct fi_info *hints_new(const rail_req *q, bool delivery_complete, bool hmem)
{
    struct fi_info *h = fi_allocinfo();
    if (!h)
        return NULL;
    h->ep_attr->type = FI_EP_RDM;
    h->caps = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE | FI_MSG |
              FI_SEND | FI_RECV | FI_TAGGED; /* tagged: staging's requests (stage.c) */
    if (hmem)
        h->caps |= FI_HMEM;
    h->mode = FI_CONTEXT | FI_CONTEXT2;
    h->domain_attr->mr_mode = XR_MR_MODES;
    h->domain_attr->threading = FI_THREAD_DOMAIN;
    /* With delivery-complete, a write's completion means the bytes are in
     * target memory, which is what lets a notification follow the data. */
    if (delivery_complete)
        h->tx_attr->op_flags = FI_DELIVERY_COMPLETE;
    if (q->provider && *q->provider)
        h->fabric_attr->prov_name = strdup(q->provider);
    if (q->src_addr && *q->src_addr) {
        struct sockaddr_in *sin = calloc(1, sizeof *sin);
        if (sin && inet_pton(AF_INET, q->src_addr, &sin->sin_addr) == 1) {
            sin->sin_family = AF_INET;
            h->addr_format = FI_SOCKADDR_IN;
            h->src_addr = sin;
            h->src_addrlen = sizeof *sin;
        } else {
            free(sin);
        }
    }
    return h;
}

/* Providers list one entry per address family and per layering; a rail
 * takes the first entry of the domain it was asked for. */
static bool info_matches(const struct fi_info *i, const char *domain)
{
    if (!domain || !*domain)
        return true;
    return i->domain_attr->name && strcmp(i->domain_attr->name, domain) == 0;
}

/* rxm gives each endpoint a shared receive queue of FI_OFI_RXM_MSG_RX_SIZE
 * buffers (4096 by default), 16 KiB each: 64 MiB and about 230 ms of page
 * faults a rail, 32 times over for a 32-rail engine (docs/performance.md,
 * "Cold starts"). A rail posts a handful of receives (notification frames,
 * staging slots), and RMA takes none, so unless the user set it, xrail
 * asks for 128. rxm reads it when libfabric first loads its providers:
 * set before this process's first fi_getinfo, or not at all. */
static void provider_defaults(void)
{
    setenv("FI_OFI_RXM_MSG_RX_SIZE", "128", 0);
}

/*
 * FI_HMEM is asked for first when there is a GPU to use it, unless the
 * rail is declared host_only. Delivery
 * complete is required: a write's completion must mean its bytes are in
 * target memory, or a notification sent after it could arrive first. A
 * provider that offers RMA only without it (asked for in a last pass, to
 * say so) is refused with XR_ENOTSUP.
 */
static int getinfo(const rail_req *q, struct fi_info **out, bool *hmem)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, provider_defaults);
    int rc = -FI_ENODATA;
    bool want_hmem = xr__cuda_devices() && !(q->spec && q->spec->host_only);
    for (int pass = want_hmem ? 0 : 1; pass < 2 && rc; pass++) {
        struct fi_info *h = hints_new(q, true, pass == 0);
        if (!h)
            return -FI_ENOMEM;
        rc = fi_getinfo(XR_FI_VERSION, NULL, NULL, 0, h, out);
        fi_freeinfo(h);
        *hmem = pass == 0;
    }
    if (rc == -FI_ENODATA) {
        struct fi_info *h = hints_new(q, false, false), *any = NULL;
        if (!h)
            return -FI_ENOMEM;
        if (fi_getinfo(XR_FI_VERSION, NULL, NULL, 0, h, &any) == 0) {
            fi_freeinfo(any);
            rc = -FI_EOPNOTSUPP;
        }
        fi_freeinfo(h);
    }
    return rc;
}

static int read_int_file(const char *path, int dflt)
{
    FILE *f = fopen(path, "r");
    int v = dflt;
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = dflt;
        fclose(f);
    }
    return v;
}

static int numa_of(const struct fi_info *i)
{
    char path[256];
    if (i->nic && i->nic->bus_attr && i->nic->bus_attr->bus_type == FI_BUS_PCI) {
        const struct fi_pci_attr *p = &i->nic->bus_attr->attr.pci;
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%04x:%02x:%02x.%x/numa_node",
                 p->domain_id, p->bus_id, p->device_id, p->function_id);
        return read_int_file(path, -1);
    }
    if (i->domain_attr->name) {
        snprintf(path, sizeof path, "/sys/class/net/%s/device/numa_node", i->domain_attr->name);
        return read_int_file(path, -1);
    }
    return -1;
}

void xr__rail_addr_format(const xr_rail *r, const void *addr, size_t len, char *out, size_t cap)
{
    size_t n = cap;
    out[0] = 0;
    if (r->av && fi_av_straddr(r->av, addr, out, &n))
        out[cap - 1] = 0;
    else if (!r->av)
        snprintf(out, cap, "(%zu bytes)", len);
}

#define FI_TRY(call, what)                                                            \
    do {                                                                              \
        int fi_rc_ = (int)(call);                                                     \
        if (fi_rc_)                                                                   \
            return xr__error_set(XR_EFABRIC, "rail %u (%s %s): %s failed: %s", r->index,    \
                            r->provider, r->domain_name, what, fi_strerror(-fi_rc_));  \
    } while (0)

static void pci_of(const struct fi_info *i, char *out, size_t cap)
{
    out[0] = 0;
    if (i->nic && i->nic->bus_attr && i->nic->bus_attr->bus_type == FI_BUS_PCI) {
        const struct fi_pci_attr *p = &i->nic->bus_attr->attr.pci;
        snprintf(out, cap, "%04x:%02x:%02x.%x", p->domain_id, p->bus_id, p->device_id,
                 p->function_id);
    }
}

/* An endpoint on the rail's CQ and AV, enabled. */
static int ep_open_on(xr_rail *r, struct fi_info *info, struct fid_cq *cq, struct fid_av *av,
                      struct fid_ep **ep)
{
    FI_TRY(fi_endpoint(r->domain, info, ep, NULL), "fi_endpoint");
    FI_TRY(fi_ep_bind(*ep, &cq->fid, FI_TRANSMIT | FI_RECV), "fi_ep_bind(cq)");
    FI_TRY(fi_ep_bind(*ep, &av->fid, 0), "fi_ep_bind(av)");
    FI_TRY(fi_enable(*ep), "fi_enable");
    return 0;
}

static int ep_open(xr_rail *r, struct fi_info *info)
{
    return ep_open_on(r, info, r->cq, r->av, &r->ep);
}

/* `info` asking for the address addr[len] as its source; NULL: no memory. */
static struct fi_info *info_at(const struct fi_info *info, const void *addr, size_t len)
{
    struct fi_info *at = fi_dupinfo(info);
    if (!at)
        return NULL;
    free(at->src_addr);
    at->src_addr = malloc(len);
    at->src_addrlen = len;
    if (!at->src_addr) {
        fi_freeinfo(at);
        return NULL;
    }
    memcpy(at->src_addr, addr, len);
    return at;
}

/* Open the endpoint again (it is closed) at the address it had, so that
 * peers holding our metadata still reach us; with the same AV, as the
 * values peers and staging hold stay valid. */
static int ep_reopen(xr_rail *r)
{
    struct fi_info *info = info_at(r->info, r->addr, r->addrlen);
    if (!info)
        return xr__error_set(XR_ENOMEM, "rail %u (%s %s): out of memory reopening its "
                                        "endpoint", r->index, r->provider, r->domain_name);
    int rc = ep_open(r, info);
    fi_freeinfo(info);
    return rc;
}

/*
 * Whether a reset would give the endpoint its address back: open one, close
 * it and open another at its address, as a reset does, on a CQ and AV of
 * their own (1.17's rxm crashed in fi_trywait on a CQ whose endpoint had
 * been closed), and compare. shm (1.17 and 2.6) names each endpoint's
 * region afresh, and a peer that mapped the old region by name goes on with
 * it: after a reset our new endpoint reaches it no more (2.6 keeps the old
 * mapping of a name whose pid is unchanged), and peers holding our metadata
 * reach us no more. A trial that fails says nothing: the rail keeps
 * resets. Only for a rail that reaches only its host (rail.h,
 * reopen_moves), at open, before its own endpoint.
 */
static void reopen_check(xr_rail *r, struct fi_info *info)
{
    struct fid_cq *cq = NULL;
    struct fid_av *av = NULL;
    struct fid_ep *ep = NULL;
    struct fi_cq_attr cq_attr = {.format = FI_CQ_FORMAT_DATA, .size = 16};
    struct fi_av_attr av_attr = {.type = r->av_type};
    char a[XR_ADDR_MAX], b[XR_ADDR_MAX];
    size_t alen = sizeof a, blen = sizeof b;
    struct fi_info *again = NULL;
    char was[XR_ERRMSG_MAX]; /* a failed trial says nothing, not even as the last error */
    snprintf(was, sizeof was, "%s", xr__error_last());
    if (fi_cq_open(r->domain, &cq_attr, &cq, NULL) || fi_av_open(r->domain, &av_attr, &av, NULL) ||
        ep_open_on(r, info, cq, av, &ep) || fi_getname(&ep->fid, a, &alen))
        goto out;
    fi_close(&ep->fid);
    ep = NULL;
    again = info_at(info, a, alen);
    if (!again || ep_open_on(r, again, cq, av, &ep) || fi_getname(&ep->fid, b, &blen))
        goto out;
    r->reopen_moves = alen != blen || memcmp(a, b, alen) != 0;
out:
    if (again)
        fi_freeinfo(again);
    if (ep)
        fi_close(&ep->fid);
    if (av)
        fi_close(&av->fid);
    if (cq)
        fi_close(&cq->fid);
    xr__error_set(0, "%s", was);
}

static int rail_open(xr_rail *r, const xr_rail_cfg *cfg, struct fi_info *info, bool hmem,
                     uint64_t speed, const xr_rail_spec *decl)
{
    r->cfg = cfg;
    for (unsigned l = 0; l < XR_LANES; l++) {
        xr__list_init(&r->lane[l]);
        xr__list_init(&r->inbox[l]);
    }
    r->info = fi_dupinfo(info);
    if (!r->info)
        return xr__error_set(XR_ENOMEM, "rail %u: fi_dupinfo failed", r->index);
    snprintf(r->provider, sizeof r->provider, "%s", info->fabric_attr->prov_name);
    snprintf(r->domain_name, sizeof r->domain_name, "%s",
             info->domain_attr->name ? info->domain_attr->name : "");
    snprintf(r->fabric_name, sizeof r->fabric_name, "%s",
             info->fabric_attr->name ? info->fabric_attr->name : "");
    r->mr_mode = info->domain_attr->mr_mode;
    r->max_msg = info->ep_attr->max_msg_size ? info->ep_attr->max_msg_size : SIZE_MAX;
    r->delivery_complete = true; /* getinfo refuses a provider without it */
    r->hmem = hmem;
    r->local_only = (info->caps & FI_LOCAL_COMM) && !(info->caps & FI_REMOTE_COMM);
    r->host_only = decl && decl->host_only;
    r->numa_node = numa_of(info);
    r->gpu = -1;
    pci_of(info, r->pci, sizeof r->pci);
    if (decl && (decl->declared & XR_DECL_NUMA))
        r->numa_node = decl->numa_node;
    if (decl && (decl->declared & XR_DECL_GPU))
        r->gpu = decl->gpu;
    if (decl && (decl->declared & XR_DECL_PCI) && decl->pci)
        snprintf(r->pci, sizeof r->pci, "%s", decl->pci);
    r->speed_mbps = speed;
    if (!speed && info->nic && info->nic->link_attr)
        r->speed_mbps = info->nic->link_attr->speed / 1000000;
    r->depth = cfg->depth;
    if (info->tx_attr->size && info->tx_attr->size < r->depth)
        r->depth = (unsigned)info->tx_attr->size;
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->inbox_lock, NULL);
    atomic_store(&r->up, 1);
    atomic_store(&r->posting, XR_POST_NOW);
    xr__list_init(&r->held_tx);
    xr__list_init(&r->held_rx);
    xr__list_init(&r->gone);
    r->state = XR_RAIL_UP;
    r->state_since = r->last_done = xr__rail_now();
    r->reset_reads_crash = FI_MAJOR(fi_version()) < 2 && strstr(r->provider, "ofi_rxm");
    r->peer_share = FI_MAJOR(fi_version()) >= 2 || strcmp(r->provider, "shm") != 0;

    FI_TRY(fi_fabric(info->fabric_attr, &r->fabric, NULL), "fi_fabric");
    FI_TRY(fi_domain(r->fabric, info, &r->domain, NULL), "fi_domain");
    struct fi_cq_attr cq_attr = {
        .format = FI_CQ_FORMAT_DATA,
        .size = info->tx_attr->size + info->rx_attr->size,
        .wait_obj = FI_WAIT_FD,
    };
    /* A CQ with a file descriptor lets an idle progress thread sleep in
     * epoll until the provider has something (tcp and rxm offer one, and
     * wake it for a peer's incoming RMA too). A provider without one (shm)
     * is polled, as before. */
    r->wait_fd = -1;
    if (fi_cq_open(r->domain, &cq_attr, &r->cq, NULL) == 0) {
        if (fi_control(&r->cq->fid, FI_GETWAIT, &r->wait_fd) || r->wait_fd < 0)
            r->wait_fd = -1;
    } else {
        cq_attr.wait_obj = FI_WAIT_NONE;
        FI_TRY(fi_cq_open(r->domain, &cq_attr, &r->cq, NULL), "fi_cq_open");
    }
    struct fi_av_attr av_attr = {.type = info->domain_attr->av_type};
    if (av_attr.type == FI_AV_UNSPEC)
        av_attr.type = FI_AV_TABLE;
    FI_TRY(fi_av_open(r->domain, &av_attr, &r->av, NULL), "fi_av_open");
    r->av_type = av_attr.type;
    if (r->local_only && r->peer_share) /* a shared region: about 12 ms here */
        reopen_check(r, info);
    if (r->mr_mode & FI_MR_ENDPOINT)
        r->reopen_moves = true; /* the keys would go with the endpoint (rail.h) */
    int rc = ep_open(r, info);
    if (rc)
        return rc;
    r->addrlen = sizeof r->addr;
    FI_TRY(fi_getname(&r->ep->fid, r->addr, &r->addrlen), "fi_getname");
    /* The probe's landing place; without it a down rail is not probed. */
    if (xr__rail_mr_reg(r, &r->probe_buf, sizeof r->probe_buf, XR_FI_LOCAL_ACCESS, 0,
                        XR_MEM_HOST, -1, &r->probe_mr))
        r->probe_mr = NULL;
    return 0;
}

static void close_ep(xr_rail *r)
{
    int rc = r->ep ? fi_close(&r->ep->fid) : 0;
    if (rc)
        xr__log_write(r->cfg->log, XR_LOG_WARN, "rail %u (%s %s): closing its endpoint "
                                                "failed: %s", r->index, r->provider,
                      r->domain_name, fi_strerror(-rc));
    r->ep = NULL;
}

static void rail_close(xr_rail *r)
{
    if (r->err_log.held) /* what a flood held back is said before the rail goes */
        xr__log_write(r->cfg->log, XR_LOG_WARN, "rail %u (%s %s): %u more completion errors "
                                                "since the last line", r->index, r->provider,
                      r->domain_name, r->err_log.held);
    /* The endpoint goes first so that nothing completes into freed memory. */
    close_ep(r);
    if (r->probe_mr)
        fi_close(&r->probe_mr->fid);
    if (r->av)
        fi_close(&r->av->fid);
    if (r->cq)
        fi_close(&r->cq->fid);
    if (r->domain)
        fi_close(&r->domain->fid);
    if (r->fabric)
        fi_close(&r->fabric->fid);
    if (r->info) {
        fi_freeinfo(r->info);
        pthread_mutex_destroy(&r->lock);
        pthread_mutex_destroy(&r->inbox_lock);
    }
    memset(r, 0, sizeof *r);
}

typedef struct rail_set {
    const xr_rail_cfg *cfg;
    xr_rail *rails;
    unsigned *n, cap;
    char *note;                 /* how discovery chose, for xr_rail_explain */
    size_t note_cap, note_w;
} rail_set;

/*
 * Provider families in the order a default engine takes them: the fastest
 * fabric offered wins and is used alone, as striping over EFA and sockets
 * together would run at the pace of sockets. shm reaches only this host,
 * and udp, sockets and net are fallbacks for testing: none is discovered;
 * each is used when named. (NIXL's order is cxi > efa > tcp.)
 */
static const char *const family_order[] = {"cxi", "efa", "verbs;ofi_rxm", "verbs", "opx",
                                           "psm3", "tcp", "tcp;ofi_rxm", NULL};

static int family_rank(const char *prov)
{
    for (int k = 0; family_order[k]; k++)
        if (!strcmp(prov, family_order[k]))
            return k;
    return -1;
}

/* Whether a domain is a loopback interface: its rail would reach only this host. */
static bool is_loopback(const char *domain)
{
    struct ifaddrs *ifs;
    bool lo = false;
    if (!domain || getifaddrs(&ifs))
        return false;
    for (struct ifaddrs *i = ifs; i && !lo; i = i->ifa_next)
        lo = i->ifa_name && !strcmp(i->ifa_name, domain) && (i->ifa_flags & IFF_LOOPBACK);
    freeifaddrs(ifs);
    return lo;
}



static int open_one(rail_set *rs, const rail_req *q, struct fi_info *info, bool hmem)
{
    if (*rs->n >= XR_MAX_RAILS)
        return xr__error_set(XR_EINVAL, "rails: more than %d requested", XR_MAX_RAILS);
    xr_rail *r = &rs->rails[*rs->n];
    r->index = *rs->n;
    int rc = rail_open(r, rs->cfg, info, hmem, q->speed_mbps, q->spec);
    if (rc) {
        rail_close(r);
        return rc;
    }
    (*rs->n)++;
    return 0;
}

/* Rails of one entry open side by side: most of a rail's opening is the
 * provider's own setup (rxm fills 4 x 17 MB of buffers per endpoint, about
 * 230 ms of page faults here), which runs on as many cores as there are. */
#define OPEN_THREADS 16

typedef struct open_job {
    rail_set *rs;
    const rail_req *q;
    struct fi_info *info;
    bool hmem;
    xr_rail *r;
    int rc;
    char err[XR_ERRMSG_MAX]; /* the error is per thread: carried back */
} open_job;

static void *open_job_run(void *arg)
{
    open_job *j = arg;
    j->rc = rail_open(j->r, j->rs->cfg, j->info, j->hmem, j->q->speed_mbps, j->q->spec);
    if (j->rc) {
        snprintf(j->err, sizeof j->err, "%s", xr__error_last());
        rail_close(j->r);
    }
    return NULL;
}

/* `count` rails from one fi_info, OPEN_THREADS at a time. The rails that
 * opened before the first failure count; those after it are closed. */
static int open_many(rail_set *rs, const rail_req *q, struct fi_info *info, bool hmem,
                     unsigned count)
{
    unsigned n0 = *rs->n, k = count < rs->cap - n0 ? count : rs->cap - n0;
    open_job *jobs = calloc(k ? k : 1, sizeof *jobs);
    pthread_t *tid = calloc(k ? k : 1, sizeof *tid);
    bool *started = calloc(k ? k : 1, sizeof *started);
    if (!jobs || !tid || !started) {
        free(jobs), free(tid), free(started);
        return xr__error_set(XR_ENOMEM, "rails: out of memory for %u", k);
    }
    for (unsigned w = 0; w < k; w += OPEN_THREADS) {
        unsigned end = w + OPEN_THREADS < k ? w + OPEN_THREADS : k;
        for (unsigned i = w; i < end; i++) {
            jobs[i] = (open_job){.rs = rs, .q = q, .info = info, .hmem = hmem,
                                 .r = &rs->rails[n0 + i]};
            jobs[i].r->index = n0 + i;
            /* One rail opens on this thread anyway; a thread that cannot
             * start leaves its rail to this one too. */
            started[i] = i > w && pthread_create(&tid[i], NULL, open_job_run, &jobs[i]) == 0;
        }
        open_job_run(&jobs[w]);
        for (unsigned i = w + 1; i < end; i++) {
            if (started[i])
                pthread_join(tid[i], NULL);
            else
                open_job_run(&jobs[i]);
        }
    }
    int rc = 0;
    unsigned ok = 0;
    while (ok < k && !jobs[ok].rc)
        ok++;
    if (ok < k) {
        rc = xr__error_set(jobs[ok].rc, "%s", jobs[ok].err);
        for (unsigned i = ok + 1; i < k; i++)
            if (!jobs[i].rc)
                rail_close(jobs[i].r);
    }
    *rs->n = n0 + ok;
    free(jobs), free(tid), free(started);
    return rc;
}

/*
 * Discovery: one rail per distinct (provider, domain) that fi_getinfo
 * offers. Without a provider named, the best family offered is taken
 * alone; without a domain named, loopback interfaces are left out. What was
 * taken and left out goes into the note.
 */
static int discover(rail_set *rs, const rail_req *q, struct fi_info *list, bool hmem)
{
    bool any = !q->provider || !*q->provider, named_domain = q->domain && *q->domain;
    int best = -1;
    for (struct fi_info *i = list; any && i; i = i->next) {
        int k = family_rank(i->fabric_attr->prov_name);
        if (k >= 0 && info_matches(i, q->domain) &&
            (named_domain || !is_loopback(i->domain_attr->name)) && (best < 0 || k < best))
            best = k;
    }
    const char *family = any && best >= 0 ? family_order[best] : NULL;
    /* What was left out, by reason: each entry once. */
    enum { SLOWER, NOT_DISCOVERED, LOOPBACK, NREASONS };
    static const char *const reason[] = {"a slower family than the one taken",
                                         "not discovered; used when named",
                                         "loopback; used when named"};
    char left[NREASONS][512] = {"", "", ""}, took[512] = "";
    size_t lw[NREASONS] = {0}, tw = 0;
    int rc = 0;
    for (struct fi_info *i = list; i && *rs->n < rs->cap && !rc; i = i->next) {
        const char *prov = i->fabric_attr->prov_name, *dom = i->domain_attr->name;
        if (!info_matches(i, q->domain))
            continue;
        int why = -1;
        if (any && (!family || strcmp(prov, family)))
            why = family_rank(prov) < 0 ? NOT_DISCOVERED : SLOWER;
        else if (!named_domain && is_loopback(dom))
            why = LOOPBACK;
        char item[160];
        snprintf(item, sizeof item, "%s on %s", prov, dom ? dom : "?");
        char *buf = why >= 0 ? left[why] : took;
        size_t *w = why >= 0 ? &lw[why] : &tw;
        if (!strstr(buf, item))
            xr__text_put(buf, 512, w, "%s%s", *w ? ", " : "", item);
        if (why >= 0)
            continue;
        bool dup = false;
        for (unsigned k = 0; k < *rs->n && !dup; k++)
            dup = strcmp(rs->rails[k].domain_name, dom) == 0 &&
                  strcmp(rs->rails[k].provider, prov) == 0;
        if (!dup)
            rc = open_one(rs, q, i, hmem);
    }
    if (rs->note) {
        xr__text_put(rs->note, rs->note_cap, &rs->note_w, "discovery%s%s: took %s\n",
                     any ? "" : " of ", any ? "" : q->provider, tw ? took : "nothing");
        if (any)
            xr__text_put(rs->note, rs->note_cap, &rs->note_w, "  the best family offered, in the "
                                                              "order cxi > efa > verbs > opx > "
                                                              "psm3 > tcp > tcp;ofi_rxm\n");
        for (int k = 0; k < NREASONS; k++)
            if (lw[k])
                xr__text_put(rs->note, rs->note_cap, &rs->note_w, "  left out (%s): %s\n",
                             reason[k], left[k]);
    }
    if (!rc && any && !family)
        rc = xr__error_set(XR_ENORAIL, "rails: discovery found no fabric to use; name a "
                                       "provider (and domain) to use one of those offered");
    return rc;
}

static int open_spec(rail_set *rs, const rail_req *q, unsigned count)
{
    struct fi_info *list = NULL;
    bool hmem = false;
    int rc = getinfo(q, &list, &hmem);
    if (rc == -FI_EOPNOTSUPP)
        return xr__error_set(XR_ENOTSUP, "rails: provider '%s' domain '%s' offers RMA only "
                                         "without FI_DELIVERY_COMPLETE: a notification could "
                                         "reach the peer before the bytes it announces",
                             q->provider ? q->provider : "(any)", q->domain ? q->domain : "(any)");
    if (rc)
        return xr__error_set(XR_ENORAIL, "rails: no RDM provider with RMA for provider '%s' domain '%s': %s",
                        q->provider ? q->provider : "(any)", q->domain ? q->domain : "(any)",
                        fi_strerror(-rc));
    struct fi_info *pick = NULL;
    for (struct fi_info *i = list; i && !pick; i = i->next)
        if (info_matches(i, q->domain))
            pick = i;
    if (!pick) {
        fi_freeinfo(list);
        return xr__error_set(XR_ENORAIL, "rails: provider '%s' offers no domain named '%s'",
                        q->provider ? q->provider : "(any)", q->domain);
    }
    if (count == 0) { /* discovery: one rail per distinct domain */
        rc = discover(rs, q, list, hmem);
    } else {
        rc = open_many(rs, q, pick, hmem, count);
    }
    fi_freeinfo(list);
    return rc;
}

int xr__rail_open_all(const xr_engine_opts *o, const xr_rail_cfg *cfg, xr_rail *rails,
                      unsigned *n, char *note, size_t note_cap)
{
    if (note && note_cap)
        note[0] = 0;
    rail_set rs = {.cfg = cfg, .rails = rails, .n = n, .note = note, .note_cap = note_cap,
                   .cap = o->max_rails && o->max_rails < XR_MAX_RAILS ? o->max_rails
                                                                      : XR_MAX_RAILS};
    *n = 0;
    int rc = 0;
    if (o->rails && o->n_rail_specs) {
        for (unsigned i = 0; i < o->n_rail_specs && !rc; i++) {
            const xr_rail_spec *s = &o->rails[i];
            rail_req q = {s->provider ? s->provider : o->provider, s->domain, s->src_addr,
                          s->speed_mbps, s};
            rc = open_spec(&rs, &q, s->count ? s->count : 1);
        }
    } else {
        rail_req q = {o->provider, o->domain, NULL, 0, NULL};
        rc = open_spec(&rs, &q, 0);
    }
    if (!rc && *n == 0)
        rc = xr__error_set(XR_ENORAIL, "rails: none opened%s%s", note && *note ? ": " : "",
                           note ? note : "");
    return rc;
}

void xr__rail_close_eps(xr_rail *rails, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        close_ep(&rails[i]);
}

void xr__rail_close_all(xr_rail *rails, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        rail_close(&rails[i]);
}

int xr__rail_mr_reg(xr_rail *r, void *buf, size_t len, uint64_t access, uint64_t key,
                    xr_mem_kind kind, int device, struct fid_mr **out)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct fi_mr_attr attr = {
        .mr_iov = &iov,
        .iov_count = 1,
        .access = access,
        .requested_key = key, /* ignored under FI_MR_PROV_KEY */
        .iface = kind == XR_MEM_CUDA ? FI_HMEM_CUDA : FI_HMEM_SYSTEM,
    };
    uint64_t flags = 0;
    if (kind == XR_MEM_CUDA) {
        attr.device.cuda = device;
#ifdef FI_HMEM_DEVICE_ONLY
        /* XR_MEM_CUDA is cudaMalloc'd memory (managed memory counts as
         * host, cuda.c). Saying so lets 2.x shm move it GPU to GPU through
         * CUDA IPC; without the flag it copies through 32 KiB host bounce
         * buffers (measured on an H200: 1.8 GB/s at 16 MiB, docs/gpu.md). */
        flags |= FI_HMEM_DEVICE_ONLY;
#endif
    }
    struct fid_mr *mr = NULL;
    int rc = fi_mr_regattr(r->domain, &attr, flags, &mr);
    if (rc)
        return xr__error_set(XR_EFABRIC, "rail %u (%s): fi_mr_regattr of %zu bytes at %p failed: %s",
                        r->index, r->provider, len, buf, fi_strerror(-rc));
    if (r->mr_mode & FI_MR_ENDPOINT) {
        rc = fi_mr_bind(mr, &r->ep->fid, 0);
        if (!rc)
            rc = fi_mr_enable(mr);
        if (rc) {
            fi_close(&mr->fid);
            return xr__error_set(XR_EFABRIC, "rail %u (%s): binding an MR to the endpoint failed: %s",
                            r->index, r->provider, fi_strerror(-rc));
        }
    }
    *out = mr;
    return 0;
}

/* ---- posting and progress ---- */

void xr__rail_after(xr_rail *r, xr_after_fn fn, void *arg)
{
    /* The pump and the CQ read stop short of filling it, so this has room. */
    r->after[r->nafter].fn = fn;
    r->after[r->nafter].arg = arg;
    r->nafter++;
}

/* Unlock the rail, then run what its completions deferred. */
static void unlock_and_run(xr_rail *r)
{
    struct {
        xr_after_fn fn;
        void *arg;
    } run[XR_RAIL_AFTER_MAX];
    unsigned n = r->nafter;
    memcpy(run, r->after, n * sizeof run[0]);
    r->nafter = 0;
    pthread_mutex_unlock(&r->lock);
    for (unsigned i = 0; i < n; i++)
        run[i].fn(run[i].arg);
}

/* Room for what one more post or completion may defer; a CQ batch defers
 * at most one item per entry. */
static bool after_room(const xr_rail *r)
{
    return r->nafter + CQ_BATCH < XR_RAIL_AFTER_MAX;
}

/* Move what other threads queued to the lanes' tails, in its order. Rail
 * lock held. */
static void inbox_take(xr_rail *r)
{
    if (!atomic_load(&r->inbox_n))
        return;
    pthread_mutex_lock(&r->inbox_lock);
    for (unsigned l = 0; l < XR_LANES; l++)
        xr__list_splice(&r->lane[l], &r->inbox[l]);
    atomic_store(&r->inbox_n, 0);
    pthread_mutex_unlock(&r->inbox_lock);
}

/* Post queued work while the rail has room. Rail lock held. */
static void rail_pump(xr_rail *r)
{
    inbox_take(r);
    for (unsigned l = 0; l < XR_LANES; l++) {
        xr_list *q = &r->lane[l], blocked;
        xr__list_init(&blocked);
        while (!xr__list_empty(q) && after_room(r) &&
               (l != XR_LANE_DATA || r->inflight < r->depth)) {
            /* Off the queue while it posts: an item that is done may be
             * freed by its owner at once, and is never touched again. */
            xr_work *w = xr__list_entry(xr__list_pop_front(q), xr_work, link);
            int rc = w->post(w, r);
            if (rc == XR_WORK_BLOCKED) {
                /* A stopped peer's transfer must not stall the others. */
                xr__list_push_back(&blocked, &w->link);
                continue;
            }
            if (rc != XR_WORK_DONE)
                xr__list_push_front(q, &w->link);
            if (rc == XR_WORK_WAIT)
                break;
        }
        /* Back at the front, in their order: first in line next time. */
        xr__list_splice(&blocked, q);
        xr__list_splice(q, &blocked);
    }
}

uint64_t xr__rail_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void xr__rail_held(xr_rail *r, xr_opctx *ctx, fi_addr_t dst)
{
    ctx->t_post = xr__rail_now();
    ctx->dst = dst;
    xr__list_push_back(ctx->flags & XR_OPF_RX ? &r->held_rx : &r->held_tx, &ctx->link);
}

int xr__rail_rma(xr_rail *r, bool write, void *buf, size_t len, void *desc, fi_addr_t dst,
                 uint64_t raddr, uint64_t key, xr_opctx *ctx)
{
    bool counted = ctx->flags & XR_OPF_DEPTH;
    if (counted && r->inflight >= r->depth)
        return -FI_EAGAIN;
    if (!r->ep)
        return -FI_ENOTCONN; /* a reset could not reopen it */
    ctx->flags = (uint8_t)(write ? ctx->flags & ~XR_OPF_READ : ctx->flags | XR_OPF_READ);
    ssize_t rc = write ? fi_write(r->ep, buf, len, desc, dst, raddr, key, &ctx->fctx)
                       : fi_read(r->ep, buf, len, desc, dst, raddr, key, &ctx->fctx);
    if (rc == -FI_EAGAIN)
        r->ctr.eagain++; /* the next CQ read frees room */
    else if (!rc) {
        xr__rail_held(r, ctx, dst);
        if (counted)
            r->inflight++;
        if (counted && !write)
            r->reads++;
    }
    return (int)rc;
}

/* One completion, through its context. Rail lock held. */
static void complete(xr_rail *r, xr_opctx *ctx, size_t len, int err, const char *why)
{
    if (ctx->flags & XR_OPF_GONE) { /* ended for its owner already */
        xr__list_remove(&ctx->link);
        ctx->link.next = ctx->link.prev = NULL;
        r->ngone--;
        return;
    }
    if (ctx->link.next) { /* held: it leaves the provider's list */
        xr__list_remove(&ctx->link);
        ctx->link.next = ctx->link.prev = NULL;
    }
    if (ctx->flags & XR_OPF_DEPTH)
        r->inflight--;
    if ((ctx->flags & (XR_OPF_DEPTH | XR_OPF_READ)) == (XR_OPF_DEPTH | XR_OPF_READ))
        r->reads--;
    if (err && err != XR_ECANCELED) {
        r->ctr.errors++;
        snprintf(r->last_error, sizeof r->last_error, "%.255s", why ? why : xr_strerror(err));
        if (ctx->flags & XR_OPF_DEPTH) {
            r->err_pending = true;
            snprintf(r->err_why, sizeof r->err_why, "%.255s", why ? why : xr_strerror(err));
            atomic_store(r->cfg->error_flag, true);
        }
    }
    ctx->done(ctx, r, len, err, why);
}

/*
 * A completion error as an XR_E* code: XR_EPEER when the connection to the
 * peer is gone (refused, reset, not connected, unreachable), XR_EIO for the
 * rest. tcp and rxm report a dropped connection as FI_ECANCELED with the
 * socket's errno as the provider's code, so that code is read too.
 */
static int error_code(const struct fi_cq_err_entry *ee)
{
    static const int conn[] = {FI_ECONNREFUSED, FI_ECONNRESET, FI_ENOTCONN, FI_ECONNABORTED,
                               FI_EHOSTUNREACH, FI_ENETUNREACH, FI_ENETDOWN, EPIPE};
    for (size_t k = 0; k < sizeof conn / sizeof conn[0]; k++)
        if (ee->err == conn[k] || (ee->err == FI_ECANCELED && ee->prov_errno == conn[k]))
            return XR_EPEER;
    return XR_EIO;
}

/* Read one batch from the CQ and complete it. Rail lock held. */
static int cq_poll(xr_rail *r)
{
    struct fi_cq_data_entry ent[CQ_BATCH];
    int handled = 0;
    ssize_t n = fi_cq_read(r->cq, ent, CQ_BATCH);
    if (n > 0) {
        bool heard = false;
        for (ssize_t i = 0; i < n && !heard; i++) {
            const xr_opctx *c = ent[i].op_context;
            heard = !c || !(c->flags & XR_OPF_QUIET);
        }
        if (heard)
            r->last_done = r->last_good = xr__rail_now();
        for (ssize_t i = 0; i < n; i++)
            complete(r, ent[i].op_context, ent[i].len, 0, NULL);
        handled = (int)n;
    } else if (n == -FI_EAVAIL) {
        struct fi_cq_err_entry ee = {0};
        if (fi_cq_readerr(r->cq, &ee, 0) == 1) {
            char prov[128], why[384];
            const char *pe = fi_cq_strerror(r->cq, ee.prov_errno, ee.err_data, prov, sizeof prov);
            snprintf(why, sizeof why, "rail %u (%s %s): completion error: %s (%s)", r->index,
                     r->provider, r->domain_name, fi_strerror(ee.err), pe ? pe : "");
            xr_opctx *ctx = ee.op_context;
            r->last_done = xr__rail_now();
            /* Only a receive canceled by a closing endpoint (or taken back
             * by fi_cancel) is benign; any other operation that completes
             * in error failed, whatever the code (tcp reports a remote
             * access violation as FI_ECANCELED). */
            bool closing = ee.err == FI_ECANCELED && ctx && (ctx->flags & XR_OPF_RX);
            unsigned held;
            /* A dead peer fails every chunk in flight: the first error is
             * written in full, then a line a second with the count. */
            if (!closing && xr__log_limit_pass(&r->err_log, LOG_INTERVAL_NS, &held)) {
                char more[96] = "";
                if (held)
                    snprintf(more, sizeof more, " (and %u more on this rail since the last line)",
                             held);
                xr__log_write(r->cfg->log, XR_LOG_WARN, "%s%s", why, more);
            }
            if (!closing)
                r->err_fi = ee.err;
            if (ctx)
                complete(r, ctx, ee.len, closing ? XR_ECANCELED : error_code(&ee), why);
            handled = 1;
        }
    } else if (n != -FI_EAGAIN) {
        xr__log_write(r->cfg->log, XR_LOG_WARN, "rail %u: fi_cq_read failed: %s", r->index,
                      fi_strerror((int)-n));
    }
    return handled;
}

int xr__rail_progress(xr_rail *r)
{
    pthread_mutex_lock(&r->lock);
    int handled = cq_poll(r);
    unsigned held;
    if (r->err_log.held && xr__log_limit_due(&r->err_log, LOG_INTERVAL_NS, &held))
        xr__log_write(r->cfg->log, XR_LOG_WARN, "rail %u (%s %s): %u more completion errors "
                                                "since the last line", r->index, r->provider,
                      r->domain_name, held); /* the count of a flood that stopped */
    rail_pump(r);
    unlock_and_run(r);
    return handled;
}

bool xr__rail_overdue(xr_rail *r, uint64_t now, uint64_t deadline, fi_addr_t *dst,
                      bool *silent)
{
    pthread_mutex_lock(&r->lock);
    bool late = false;
    if (!xr__list_empty(&r->held_tx)) {
        xr_opctx *old = xr__list_entry(r->held_tx.next, xr_opctx, link);
        late = now > old->t_post + deadline;
        *dst = old->dst;
        *silent = now > r->last_done + deadline;
    }
    pthread_mutex_unlock(&r->lock);
    return late;
}

bool xr__rail_holds(xr_rail *r, fi_addr_t dst)
{
    bool any = false;
    pthread_mutex_lock(&r->lock);
    xr__list_each(n, &r->held_tx)
        any = any || xr__list_entry(n, xr_opctx, link)->dst == dst;
    pthread_mutex_unlock(&r->lock);
    return any;
}

uint64_t xr__rail_oldest(xr_rail *r, fi_addr_t dst)
{
    uint64_t t = 0;
    pthread_mutex_lock(&r->lock);
    xr__list_each(n, &r->held_tx) {
        const xr_opctx *c = xr__list_entry(n, xr_opctx, link);
        if (c->dst == dst) {
            t = c->t_post; /* the list is in the order of posting */
            break;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return t;
}

/* Complete every operation on `list` as canceled. Rail lock held; it is
 * dropped between batches so that what the completions defer has room. */
static void cancel_all(xr_rail *r, xr_list *list, const char *why)
{
    xr_list mine;
    xr__list_init(&mine);
    xr__list_splice(&mine, list);
    while (!xr__list_empty(&mine)) {
        xr_opctx *ctx = xr__list_entry(mine.next, xr_opctx, link);
        complete(r, ctx, 0, XR_ECANCELED, why);
        if (!after_room(r)) {
            unlock_and_run(r);
            pthread_mutex_lock(&r->lock);
        }
    }
}

int xr__rail_reset(xr_rail *r, const char *why)
{
    pthread_mutex_lock(&r->lock);
    bool reads = false;
    xr__list_each(n, &r->held_tx)
        reads = reads || (xr__list_entry(n, xr_opctx, link)->flags & XR_OPF_READ);
    if (reads && r->reset_reads_crash) {
        /* What only waits for an answer is taken back without closing, and
         * its chunk fails over; what is mid-read waits for the link. */
        xr__list_each(n, &r->held_tx) {
            xr_opctx *c = xr__list_entry(n, xr_opctx, link);
            if ((c->flags & XR_OPF_CANCEL) && r->ep)
                fi_cancel(&r->ep->fid, &c->fctx);
        }
        pthread_mutex_unlock(&r->lock);
        return xr__error_set(XR_EBUSY, "rail %u (%s): not reset: it holds READs, and closing "
                                       "its endpoint under them crashes libfabric %u.%u; they "
                                       "finish when the link returns", r->index, r->provider,
                             FI_MAJOR(fi_version()), FI_MINOR(fi_version()));
    }
    /* What already completed is taken first, as it completed. */
    for (int k = 0; k < 64 && r->ep && cq_poll(r) > 0; k++)
        ;
    close_ep(r);
    /* Some providers flush what the endpoint held into the CQ as it
     * closes; those entries are dropped, as every held operation is
     * completed below, once. */
    struct fi_cq_data_entry ent[CQ_BATCH];
    for (int k = 0; k < 64; k++) {
        ssize_t n = fi_cq_read(r->cq, ent, CQ_BATCH);
        if (n == -FI_EAVAIL) {
            struct fi_cq_err_entry ee = {0};
            n = fi_cq_readerr(r->cq, &ee, 0);
        }
        if (n <= 0)
            break;
    }
    /* What it left with the provider is gone with the endpoint. */
    xr__list_init(&r->gone);
    r->ngone = 0;
    int rc = ep_reopen(r);
    if (rc) {
        close_ep(r);
        xr__log_write(r->cfg->log, XR_LOG_ERROR, "rail %u (%s %s): reopening its endpoint "
                                                 "failed: %s", r->index, r->provider,
                      r->domain_name, xr__error_last());
    }
    r->ctr.resets++;
    /* libfabric 1.17's rxm crashed in fi_trywait on a CQ whose endpoint had
     * been closed and reopened (faults.peer_stop.tcp): from its first
     * reset, the rail is polled and its thread never sleeps on it. */
    r->wait_fd = -1;
    r->last_done = xr__rail_now();
    /* An RMA probe completes with the rest (probe_done); a staged one
     * through its slot, later: probe_busy stays until then. */
    cancel_all(r, &r->held_tx, why);
    /* Receives come back once there is an endpoint to post them on again. */
    if (!rc)
        cancel_all(r, &r->held_rx, why);
    rail_pump(r);
    unlock_and_run(r);
    return rc ? XR_EFABRIC : 0;
}

int xr__rail_abandon(xr_rail *r, fi_addr_t dst, const char *why, unsigned *n)
{
    *n = 0;
    pthread_mutex_lock(&r->lock);
    bool can = r->reopen_moves;
    unsigned count = 0;
    xr__list_each(k, &r->held_tx) {
        const xr_opctx *c = xr__list_entry(k, xr_opctx, link);
        if (c->dst == dst) {
            can = can && (c->flags & XR_OPF_KEEP);
            count++;
        }
    }
    /* What is left holds the provider's own slots (shm's commands): past
     * the provider's queue less our depth, a reset is the lesser harm. */
    size_t room = r->info->tx_attr->size > r->depth ? r->info->tx_attr->size - r->depth : 0;
    if (!can || r->ngone + count > room) {
        pthread_mutex_unlock(&r->lock);
        return XR_ENOTSUP;
    }
    xr_list mine;
    xr__list_init(&mine);
    xr__list_each(k, &r->held_tx) {
        if (xr__list_entry(k, xr_opctx, link)->dst == dst) {
            xr__list_remove(k);
            xr__list_push_back(&mine, k);
        }
    }
    while (!xr__list_empty(&mine)) {
        xr_opctx *c = xr__list_entry(xr__list_pop_front(&mine), xr_opctx, link);
        /* Out of the depth, and no error of the rail's: it serves the rest. */
        if (c->flags & XR_OPF_DEPTH)
            r->inflight--;
        if ((c->flags & (XR_OPF_DEPTH | XR_OPF_READ)) == (XR_OPF_DEPTH | XR_OPF_READ))
            r->reads--;
        c->flags |= XR_OPF_GONE;
        xr__list_push_back(&r->gone, &c->link);
        r->ngone++;
        r->ctr.abandoned++;
        c->done(c, r, 0, XR_EPEER, why);
        if (!after_room(r)) {
            unlock_and_run(r);
            pthread_mutex_lock(&r->lock);
        }
    }
    *n = count;
    rail_pump(r);
    unlock_and_run(r);
    return 0;
}

static void probe_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why)
{
    (void)ctx, (void)len, (void)why;
    r->probe_busy = false;
    r->probe_result = err ? -1 : 1;
}

int xr__rail_probe_via(xr_rail *r, xr_probe_post_fn post, void *arg)
{
    pthread_mutex_lock(&r->lock);
    int rc = 0;
    if (!r->ep) {
        rc = XR_EFABRIC;
    } else if (!r->probe_busy) {
        /* t_post: health takes back a probe unanswered for the deadline. */
        r->probe = (xr_opctx){.done = probe_done, .t_post = xr__rail_now()};
        r->probe_result = 0; /* a new probe: what an older one said is old */
        rc = post(arg, r, &r->probe);
        r->probe_busy = rc == 0;
        r->ctr.probes += rc == 0;
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

typedef struct rma_probe {
    fi_addr_t dst;
    uint64_t raddr, key;
} rma_probe;

static int post_rma_probe(void *arg, xr_rail *r, xr_opctx *probe)
{
    const rma_probe *p = arg;
    if (!r->probe_mr)
        return XR_ENOTSUP;
    return xr__rail_rma(r, false, &r->probe_buf, sizeof r->probe_buf, fi_mr_desc(r->probe_mr),
                        p->dst, p->raddr, p->key, probe)
               ? XR_EIO
               : 0;
}

int xr__rail_probe(xr_rail *r, fi_addr_t dst, uint64_t raddr, uint64_t key)
{
    rma_probe p = {dst, raddr, key};
    return xr__rail_probe_via(r, post_rma_probe, &p);
}

void xr__rail_enqueue(xr_rail *r, unsigned lane, xr_work *w)
{
    pthread_mutex_lock(&r->inbox_lock);
    xr__list_push_back(&r->inbox[lane], &w->link);
    atomic_fetch_add(&r->inbox_n, 1);
    pthread_mutex_unlock(&r->inbox_lock);
    /* With a thread per group of rails, the rail's thread posts: tcp copies
     * into its socket inside fi_write, and posting from the caller would put
     * every rail's copies on that one thread (measured: 4 rails then move
     * what 1 does; docs/performance.md). Otherwise post now, for latency;
     * with one progress thread, only if the lock is free: that thread
     * takes the lock again as soon as it lets go, so a caller blocked on
     * it waited out passes, and held one rail at 0.7x raw (the thread
     * pumps the inbox in the pass it is in). */
    int how = atomic_load(&r->posting);
    if (how == XR_POST_NOW || (how == XR_POST_TRY && pthread_mutex_trylock(&r->lock) == 0)) {
        if (how == XR_POST_NOW)
            pthread_mutex_lock(&r->lock);
        rail_pump(r);
        unlock_and_run(r);
    }
    /* A progress thread asleep in epoll must come back to move it: it
     * counted itself asleep before it looked at inbox_n, and we look at
     * its count after ours moved (both sequentially consistent). */
    if (r->cfg->wake)
        r->cfg->wake(r->cfg->wake_arg, r->index);
}

bool xr__rail_can_sleep(xr_rail *r)
{
    struct fid *cq = &r->cq->fid;
    pthread_mutex_lock(&r->lock);
    /* Nothing of ours waits to be posted or is held for sending: tcp's
     * partial sends move on when polled, and the deadlines need the polls.
     * fi_trywait last: it says the CQ's fd will wake us for anything new. */
    bool ok = r->wait_fd >= 0 && r->ep && r->nafter == 0 && !atomic_load(&r->inbox_n) &&
              xr__list_empty(&r->lane[XR_LANE_DATA]) &&
              xr__list_empty(&r->lane[XR_LANE_CTRL]) && xr__list_empty(&r->held_tx) &&
              !r->probe_busy && fi_trywait(r->fabric, &cq, 1) == FI_SUCCESS;
    pthread_mutex_unlock(&r->lock);
    return ok;
}

void xr__rail_complete(xr_rail *r, xr_opctx *ctx, int err, const char *why)
{
    pthread_mutex_lock(&r->lock);
    ctx->done(ctx, r, 0, err, why);
    unlock_and_run(r);
}

void xr__rail_info(xr_rail *r, xr_rail_info *info)
{
    memset(info, 0, sizeof *info);
    info->index = r->index;
    snprintf(info->provider, sizeof info->provider, "%s", r->provider);
    snprintf(info->domain, sizeof info->domain, "%s", r->domain_name);
    snprintf(info->fabric, sizeof info->fabric, "%s", r->fabric_name);
    xr__rail_addr_format(r, r->addr, r->addrlen, info->address, sizeof info->address);
    info->speed_mbps = r->speed_mbps;
    info->numa_node = r->numa_node;
    info->gpu = r->gpu;
    snprintf(info->pci, sizeof info->pci, "%s", r->pci);
    info->up = atomic_load(&r->up);
    info->max_msg_size = r->max_msg;
    info->mr_mode = r->mr_mode;
    info->delivery_complete = r->delivery_complete;
    info->host_only = r->host_only;
    pthread_mutex_lock(&r->lock);
    info->hmem = r->hmem; /* region.c may clear it on the first device buffer */
    info->counters = r->ctr;
    info->state = r->state;
    snprintf(info->reason, sizeof info->reason, "%s", r->reason);
    snprintf(info->last_error, sizeof info->last_error, "%s", r->last_error);
    uint64_t now = xr__rail_now();
    info->state_age_ms = now > r->state_since ? (now - r->state_since) / 1000000 : 0;
    pthread_mutex_unlock(&r->lock);
}
