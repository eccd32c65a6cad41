/*
 * test_xfer.c - two processes, real providers: striped WRITE and READ of
 * random descriptor lists, notifications of every size, the ordering of a
 * transfer's notification after its bytes, and of a group's after every
 * byte of its members.
 *
 * usage: test_xfer SCENARIO PROVIDER INITIATOR_RAILS TARGET_RAILS [PROGRESS_THREAD [POLICY]]
 *   SCENARIO: xfer | notif | order | group | reload
 *   POLICY: a rail policy script for the initiator (default: built-in equal stripe);
 *           for reload, the directory of the shipped policies
 */
#include "harness.h"

#define REGION (48u << 20)
#define MAX_DESC 4096

typedef struct cfg {
    const char *scenario, *provider;
    unsigned irails, trails;
    int pthread_target;
    const char *scripts;    /* reload: the directory of the shipped policies */
} cfg;

/* ---- descriptor lists both processes derive from the same seed ---- */

typedef struct dlist {
    size_t n;
    uint64_t loff[MAX_DESC], roff[MAX_DESC], len[MAX_DESC];
} dlist;

static void gen(dlist *l, unsigned round)
{
    uint64_t s = 0x5EED0000ull + round * 7919;
    size_t n, maxlen;
    switch (round) {
    case 0: n = 1, maxlen = 8u << 20; break;          /* one large, striped */
    case 1: n = 1, maxlen = 1; break;                 /* one byte */
    case 5: n = 3000, maxlen = 2048; break;           /* thousands of small ones */
    default: n = 1 + h_rng(&s) % 64, maxlen = 8u << 20; break;
    }
    size_t sizes[MAX_DESC], perm[MAX_DESC];
    for (size_t i = 0; i < n; i++) {
        if (round == 0)
            sizes[i] = maxlen;
        else if (maxlen == 1)
            sizes[i] = 1;
        else /* log-uniform from 1 B up to maxlen */
            sizes[i] = 1 + h_rng(&s) % ((size_t)1 << (h_rng(&s) % (63 - __builtin_clzll(maxlen)) + 1));
        if (sizes[i] > maxlen)
            sizes[i] = maxlen;
        perm[i] = i;
    }
    for (size_t i = n; i > 1; i--) { /* local order differs from remote order */
        size_t j = h_rng(&s) % i, t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    uint64_t rpos = h_rng(&s) % 4096, lpos = h_rng(&s) % 4096;
    l->n = 0;
    uint64_t loff[MAX_DESC];
    for (size_t k = 0; k < n; k++) { /* local placement in permuted order */
        size_t i = perm[k];
        loff[i] = lpos;
        lpos += sizes[i] + h_rng(&s) % 4096;
    }
    for (size_t i = 0; i < n; i++) {
        if (rpos + sizes[i] > REGION || lpos > REGION)
            break;
        l->roff[l->n] = rpos;
        l->loff[l->n] = loff[i];
        l->len[l->n] = sizes[i];
        l->n++;
        rpos += sizes[i] + h_rng(&s) % 4096;
    }
    /* Any local range that ran past the region is dropped, keeping pairs whole. */
    size_t w = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->loff[i] + l->len[i] <= REGION) {
            l->loff[w] = l->loff[i], l->roff[w] = l->roff[i], l->len[w] = l->len[i];
            w++;
        }
    l->n = w;
}

#define ROUNDS 6

/* Bytes outside the descriptors must keep their background. */
static void verify_region(const uint8_t *base, const dlist *l, const uint64_t *off, uint64_t tag,
                          uint64_t bg, const char *what)
{
    uint8_t *covered = calloc(REGION / 8 + 1, 1);
    for (size_t d = 0; d < l->n; d++) {
        long long bad = h_verify(base + off[d], l->len[d], tag, l->roff[d]);
        H_CHECK(bad < 0, "%s: descriptor %zu (len %llu): byte %lld wrong", what, d,
                (unsigned long long)l->len[d], bad);
        for (uint64_t i = off[d]; i < off[d] + l->len[d]; i++)
            covered[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    for (uint64_t i = 0; i < REGION; i++)
        if (!(covered[i / 8] >> (i % 8) & 1))
            H_CHECK(base[i] == h_byte(bg, i), "%s: byte %llu outside every descriptor changed",
                    what, (unsigned long long)i);
    free(covered);
}

/* ---- xfer ---- */

static void xfer_target(int fd, void *arg)
{
    cfg *c = arg;
    xr_engine *e;
    xr_region *reg;
    H_OK(h_engine("decode", c->provider, c->trails, c->pthread_target, &e));
    if (c->pthread_target > 1) { /* the threads asked for are the threads running */
        char conf[4096], want[64];
        H_OK(xr_engine_config_get(e, conf, sizeof conf));
        snprintf(want, sizeof want, "progress_threads = %d,", c->pthread_target);
        H_CHECK(strstr(conf, want), "asked for %d progress threads:\n%s", c->pthread_target, conf);
        h_log("ok: %d progress threads share %u rails", c->pthread_target, c->trails);
    }
    uint8_t *buf = aligned_alloc(4096, REGION);
    H_OK(xr_mem_register(e, buf, REGION, XR_MEM_HOST, 0, XR_ACCESS_RW, &reg));
    /* Application fields travel in the metadata. */
    uint32_t block = 65536;
    H_OK(xr_metadata_set_field(e, "model", "llama-70b", 9));
    H_OK(xr_metadata_set_field(e, "model", "llama-3-70b", 11)); /* replaced, not added */
    H_OK(xr_metadata_set_field(e, "kv.block_bytes", &block, sizeof block));
    H_OK(xr_metadata_set_field(e, "empty", NULL, 0));
    H_CHECK(xr_metadata_set_field(e, "", "x", 1) == XR_EINVAL, "an empty field name");
    h_send_metadata(fd, e);
    h_send_u64(fd, (uintptr_t)buf); /* where the application's blocks live */
    static dlist l;
    for (unsigned r = 0; r < ROUNDS; r++) {
        gen(&l, r);
        uint64_t bg = 1000 + r, wtag = 2000 + r, rtag = 3000 + r;
        (void)rtag;
        /* WRITE: background in, descriptors land on it. */
        h_fill(buf, REGION, bg, 0);
        h_send_u64(fd, r);
        H_CHECK(h_recv_u64(fd, c->pthread_target ? NULL : e) == r, "round sync");
        verify_region(buf, &l, l.roff, wtag, bg, "WRITE target");
        /* READ: the whole region carries the read pattern. */
        h_fill(buf, REGION, rtag, 0);
        h_send_u64(fd, r);
        H_CHECK(h_recv_u64(fd, c->pthread_target ? NULL : e) == r, "round sync");
    }
    H_OK(xr_mem_deregister(reg));
    xr_engine_destroy(e);
    free(buf);
}

static void post_and_wait(xr_engine *e, xr_peer *p, xr_op op, const dlist *l, uint8_t *local,
                          uint64_t raddr, xr_xfer **keep)
{
    static xr_iov liov[MAX_DESC], riov[MAX_DESC];
    for (size_t d = 0; d < l->n; d++) {
        liov[d] = (xr_iov){(uintptr_t)local + l->loff[d], l->len[d]};
        riov[d] = (xr_iov){raddr + l->roff[d], l->len[d]};
    }
    xr_xfer *x;
    H_OK(xr_xfer_create(e, p, op, liov, riov, l->n, NULL, 0, &x));
    H_OK(xr_xfer_post(x));
    int rc = xr_xfer_wait(x, 120000);
    H_CHECK(rc == 0, "%s of %zu descriptors: %s: %s", op == XR_OP_WRITE ? "WRITE" : "READ", l->n,
            xr_err_name(rc), xr_xfer_error(x));
    if (keep)
        *keep = x;
    else
        xr_xfer_release(x);
}

static void check_striping(xr_engine *e, xr_xfer *x, unsigned nrails)
{
    /* The 8 MiB descriptor is above the stripe threshold: every rail that
     * reaches the peer carries a share. */
    for (unsigned i = 0; i < nrails; i++)
        H_CHECK(xr_xfer_chunk_count(x, (int)i) > 0, "rail %u got no chunk of a striped 8 MiB "
                "descriptor (%zu chunks in all)", i, xr_xfer_chunk_count(x, -1));
    for (unsigned i = 0; i < nrails; i++) {
        xr_rail_info ri;
        H_OK(xr_rail_info_get(e, i, &ri));
        H_CHECK(ri.counters.tx_bytes > 0, "rail %u moved no bytes", i);
        H_CHECK(ri.counters.errors == 0, "rail %u saw %llu errors", i,
                (unsigned long long)ri.counters.errors);
    }
}

static void xfer_initiator(int fd, void *arg)
{
    cfg *c = arg;
    xr_engine *e;
    xr_region *reg;
    xr_peer *p;
    /* With several progress threads asked for, the initiator has them too:
     * then each rail's thread posts what xr_xfer_post queues. */
    H_OK(h_engine("prefill", c->provider, c->irails, c->pthread_target > 1 ? c->pthread_target : 0,
                  &e));
    uint8_t *buf = aligned_alloc(4096, REGION);
    H_OK(xr_mem_register(e, buf, REGION, XR_MEM_HOST, 0, XR_ACCESS_NONE, &reg));
    p = h_load_peer(fd, e);
    H_CHECK(xr_peer_rail_count(p) == (int)c->trails, "peer rail count %d", xr_peer_rail_count(p));
    char model[32];
    size_t flen = 0;
    H_CHECK(xr_peer_field(p, "model", NULL, &flen) == XR_ETOOSMALL && flen == 11, "field size");
    flen = sizeof model;
    H_OK(xr_peer_field(p, "model", model, &flen));
    H_CHECK(flen == 11 && !memcmp(model, "llama-3-70b", 11), "field 'model'");
    uint32_t block = 0;
    flen = sizeof block;
    H_OK(xr_peer_field(p, "kv.block_bytes", &block, &flen));
    H_CHECK(block == 65536, "field 'kv.block_bytes' is %u", block);
    flen = sizeof model;
    H_OK(xr_peer_field(p, "empty", model, &flen));
    H_CHECK(flen == 0, "field 'empty' is %zu bytes", flen);
    H_CHECK(xr_peer_field(p, "dtype", model, &flen) == XR_ENOENT &&
                strstr(xr_engine_last_error(NULL), "no field 'dtype'"),
            "a missing field: %s", xr_engine_last_error(NULL));
    H_CHECK(xr_peer_rail_mask(p) == (c->irails == 64 ? ~0ull : (1ull << c->irails) - 1),
            "not every local rail reaches the peer: mask 0x%llx",
            (unsigned long long)xr_peer_rail_mask(p));
    uint64_t raddr = h_recv_u64(fd, NULL);
    static dlist l;
    size_t total = 0;
    for (unsigned r = 0; r < ROUNDS; r++) {
        gen(&l, r);
        uint64_t bg = 1000 + r, wtag = 2000 + r, rtag = 3000 + r;
        H_CHECK(h_recv_u64(fd, NULL) == r, "round sync");
        for (size_t d = 0; d < l.n; d++)
            h_fill(buf + l.loff[d], l.len[d], wtag, l.roff[d]);
        xr_xfer *x0 = NULL;
        post_and_wait(e, p, XR_OP_WRITE, &l, buf, raddr, r == 0 ? &x0 : NULL);
        if (x0) {
            if (!h_policy) /* a policy may keep a descriptor on one rail */
                check_striping(e, x0, c->irails);
            xr_xfer_release(x0);
        }
        h_send_u64(fd, r);
        H_CHECK(h_recv_u64(fd, NULL) == r, "round sync");
        h_fill(buf, REGION, bg, 0);
        post_and_wait(e, p, XR_OP_READ, &l, buf, raddr, NULL);
        verify_region(buf, &l, l.loff, rtag, bg, "READ initiator");
        h_send_u64(fd, r);
        for (size_t d = 0; d < l.n; d++)
            total += l.len[d];
    }
    h_log("%u rounds, %zu bytes each way over %u->%u %s rails: verified", ROUNDS, total, c->irails,
          c->trails, c->provider);
    char split[512];
    size_t w = 0;
    for (unsigned i = 0; i < c->irails && i < 8 && w < sizeof split; i++) {
        xr_rail_info ri;
        H_OK(xr_rail_info_get(e, i, &ri));
        w += (size_t)snprintf(split + w, sizeof split - w, " rail%u=%.1fMiB", i,
                              (double)ri.counters.tx_bytes / (1 << 20));
    }
    h_log("bytes per rail:%s%s", split, c->irails > 8 ? " ..." : "");
    H_OK(xr_peer_unload(p));
    H_OK(xr_mem_deregister(reg));
    xr_engine_destroy(e);
    free(buf);
}

/* ---- notif: every size, and a 32-rail metadata blob carried by one ---- */

static const size_t notif_sizes[] = {0, 1, 1025, 64 << 10, 1 << 20};
#define N_SIZES (sizeof notif_sizes / sizeof notif_sizes[0])

/* `also`: another engine of this process whose queued sends need progress. */
static void *wait_notif(xr_engine *e, xr_engine *also, const char *from, size_t *len)
{
    char name[64];
    size_t cap = 0;
    int rc;
    double give_up = h_now() + h_patience_s();
    /* Ask with no buffer first: the size comes back and the message stays queued. */
    while ((rc = xr_notif_get(e, name, sizeof name, NULL, &cap)) == XR_EAGAIN) {
        H_CHECK(h_now() < give_up, "no notification from '%s' in %.0f s", from, h_patience_s());
        if (also)
            xr_progress(also);
    }
    void *buf = malloc(cap ? cap : 1);
    if (rc == XR_ETOOSMALL) {
        size_t n = cap;
        H_OK(xr_notif_get(e, name, sizeof name, buf, &n));
        H_CHECK(n == cap, "size changed between calls: %zu then %zu", cap, n);
    } else {
        H_CHECK(rc == 0 && cap == 0, "xr_notif_get: %s", xr_err_name(rc));
    }
    H_CHECK(strcmp(name, from) == 0, "notification from '%s', expected '%s'", name, from);
    *len = cap;
    return buf;
}

static void notif_target(int fd, void *arg)
{
    cfg *c = arg;
    xr_engine *e;
    H_OK(h_engine("decode", c->provider, c->trails, c->pthread_target, &e));
    h_send_metadata(fd, e);
    unsigned seen = 0;
    void *blob = NULL;
    size_t blob_len = 0;
    uint64_t raddr = 0;
    while (seen != (1u << N_SIZES) - 1 || !blob || !raddr) {
        size_t n;
        uint8_t *m = wait_notif(e, NULL, "prefill", &n);
        if (n >= 4 && memcmp(m, "XRMD", 4) == 0) {
            blob = m, blob_len = n;
            continue;
        }
        if (n == 8 && seen == (1u << N_SIZES) - 1) {
            memcpy(&raddr, m, 8);
            free(m);
            continue;
        }
        unsigned k;
        for (k = 0; k < N_SIZES && notif_sizes[k] != n; k++)
            ;
        H_CHECK(k < N_SIZES, "a notification of %zu bytes was not sent", n);
        H_CHECK(!(seen & (1u << k)), "the %zu-byte notification arrived twice", n);
        long long bad = h_verify(m, n, 77 + n, 0);
        H_CHECK(bad < 0, "%zu-byte notification: byte %lld wrong", n, bad);
        seen |= 1u << k;
        free(m);
    }
    h_log("notifications of 0 B, 1 B, 1025 B, 64 KiB and 1 MiB received intact");
    /* The blob of a 32-rail engine, delivered as a notification, loads. */
    xr_peer *p32;
    H_OK(xr_peer_load(e, blob, blob_len, &p32));
    H_CHECK(xr_peer_rail_count(p32) == 32, "loaded peer has %d rails", xr_peer_rail_count(p32));
    h_log("a %zu-byte metadata blob of 32 rails went through a notification and loaded",
          blob_len);
    free(blob);
    /* ...and works: write into its region, then tell it. */
    static uint8_t src[1 << 20];
    xr_region *reg;
    h_fill(src, sizeof src, 4242, 0);
    H_OK(xr_mem_register(e, src, sizeof src, XR_MEM_HOST, 0, XR_ACCESS_NONE, &reg));
    xr_iov l = {(uintptr_t)src, sizeof src}, r = {raddr, sizeof src};
    xr_xfer *x;
    H_OK(xr_xfer_create(e, p32, XR_OP_WRITE, &l, &r, 1, "written", 7, &x));
    H_OK(xr_xfer_post(x));
    int rc = xr_xfer_wait(x, 60000);
    H_CHECK(rc == 0, "WRITE to the 32-rail peer: %s", xr_xfer_error(x));
    xr_xfer_release(x);
    h_recv_u64(fd, c->pthread_target ? NULL : e); /* the initiator verified */
    H_OK(xr_peer_unload(p32));
    H_OK(xr_mem_deregister(reg));
    xr_engine_destroy(e);
}

static void notif_initiator(int fd, void *arg)
{
    cfg *c = arg;
    xr_engine *e, *e32;
    xr_peer *p;
    H_OK(h_engine("prefill", c->provider, c->irails, 0, &e));
    p = h_load_peer(fd, e);
    for (size_t k = 0; k < N_SIZES; k++) {
        size_t n = notif_sizes[k];
        uint8_t *m = malloc(n ? n : 1);
        h_fill(m, n, 77 + n, 0);
        H_OK(xr_notif_send(e, p, n ? m : NULL, n));
        free(m); /* the engine keeps its own copy */
    }
    /* A second engine with 32 rails publishes through the first one's notification. */
    H_OK(h_engine("prefill-32", c->provider, 32, 0, &e32));
    static uint8_t dst[1 << 20];
    xr_region *reg;
    H_OK(xr_mem_register(e32, dst, sizeof dst, XR_MEM_HOST, 0, XR_ACCESS_WRITE, &reg));
    size_t blen = 0;
    xr_metadata_get(e32, NULL, &blen);
    void *blob = malloc(blen);
    H_OK(xr_metadata_get(e32, blob, &blen));
    h_log("32-rail metadata is %zu bytes", blen);
    H_OK(xr_notif_send(e, p, blob, blen));
    free(blob);
    uint64_t addr = (uintptr_t)dst;
    H_OK(xr_notif_send(e, p, &addr, sizeof addr));
    size_t n;
    void *m = wait_notif(e32, e, "decode", &n);
    H_CHECK(n == 7 && memcmp(m, "written", 7) == 0, "unexpected notification");
    free(m);
    long long bad = h_verify(dst, sizeof dst, 4242, 0);
    H_CHECK(bad < 0, "bytes from the peer that loaded our blob: byte %lld wrong", bad);
    h_send_u64(fd, 1);
    H_OK(xr_mem_deregister(reg));
    xr_engine_destroy(e32);
    H_OK(xr_peer_unload(p));
    xr_engine_destroy(e);
}

/* ---- order: a notification never overtakes its transfer's bytes ---- */

#define ORDER_ITERS 24
#define ORDER_BIG (4u << 20)
#define ORDER_SMALL 64

/* A target of WRITEs: a zeroed region, published, and its address sent. */
static uint8_t *write_target(int fd, cfg *c, xr_engine **e, xr_region **reg)
{
    H_OK(h_engine("decode", c->provider, c->trails, c->pthread_target, e));
    uint8_t *buf = aligned_alloc(4096, REGION);
    memset(buf, 0, REGION);
    H_OK(xr_mem_register(*e, buf, REGION, XR_MEM_HOST, 0, XR_ACCESS_WRITE, reg));
    h_send_metadata(fd, *e);
    h_send_u64(fd, (uintptr_t)buf);
    return buf;
}

static void order_target(int fd, void *arg)
{
    xr_engine *e;
    xr_region *reg;
    uint8_t *buf = write_target(fd, arg, &e, &reg);
    size_t span = 4 * ORDER_BIG + ORDER_SMALL * 4096;
    for (uint64_t k = 0; k < ORDER_ITERS; k++) {
        size_t n;
        uint64_t *m = wait_notif(e, NULL, "prefill", &n);
        H_CHECK(n == 8 && *m == k, "notification %llu out of order", (unsigned long long)k);
        free(m);
        /* No other synchronisation: the notification alone says the bytes are there. */
        long long bad = h_verify(buf, span, 5000 + k, 0);
        H_CHECK(bad < 0, "iteration %llu: byte %lld not yet written when the notification "
                "arrived", (unsigned long long)k, bad);
        h_send_u64(fd, k);
    }
    h_log("%d striped transfers: every notification came after all of its bytes", ORDER_ITERS);
    H_OK(xr_mem_deregister(reg));
    xr_engine_destroy(e);
    free(buf);
}

static void order_initiator(int fd, void *arg)
{
    cfg *c = arg;
    xr_engine *e;
    xr_region *reg;
    xr_peer *p;
    H_OK(h_engine("prefill", c->provider, c->irails, 0, &e));
    uint8_t *buf = aligned_alloc(4096, REGION);
    H_OK(xr_mem_register(e, buf, REGION, XR_MEM_HOST, 0, XR_ACCESS_NONE, &reg));
    p = h_load_peer(fd, e);
    uint64_t raddr = h_recv_u64(fd, NULL);
    /* Four striped 4 MiB blocks, then small blocks spread round-robin. */
    static xr_iov l[4 + ORDER_SMALL], r[4 + ORDER_SMALL];
    size_t n = 0, off = 0;
    for (int i = 0; i < 4; i++, off += ORDER_BIG, n++)
        l[n] = (xr_iov){(uintptr_t)buf + off, ORDER_BIG}, r[n] = (xr_iov){raddr + off, ORDER_BIG};
    for (int i = 0; i < ORDER_SMALL; i++, off += 4096, n++)
        l[n] = (xr_iov){(uintptr_t)buf + off, 4096}, r[n] = (xr_iov){raddr + off, 4096};
    /* Odd iterations repost one prepared transfer with that iteration's
     * notification (xr_xfer_post_notif): the same order must hold, and the
     * target must see the new message, never the previous one. */
    xr_xfer *prepared;
    H_OK(xr_xfer_create(e, p, XR_OP_WRITE, l, r, n, NULL, 0, &prepared));
    H_CHECK(xr_xfer_post_notif(prepared, NULL, 8) == XR_EINVAL, "a length without a message");
    for (uint64_t k = 0; k < ORDER_ITERS; k++) {
        h_fill(buf, off, 5000 + k, 0);
        xr_xfer *x = prepared;
        if (k % 2 == 0) {
            H_OK(xr_xfer_create(e, p, XR_OP_WRITE, l, r, n, &k, sizeof k, &x));
            H_OK(xr_xfer_post(x));
        } else {
            H_OK(xr_xfer_post_notif(x, &k, sizeof k));
        }
        int rc = xr_xfer_wait(x, 60000);
        H_CHECK(rc == 0, "iteration %llu: %s", (unsigned long long)k, xr_xfer_error(x));
        if (x != prepared)
            xr_xfer_release(x);
        H_CHECK(h_recv_u64(fd, NULL) == k, "ack");
    }
    xr_xfer_release(prepared);
    H_OK(xr_peer_unload(p));
    H_OK(xr_mem_deregister(reg));
    xr_engine_destroy(e);
    free(buf);
}

/* ---- group: one notification after every byte of every layer ---- */

#define GROUP_ITERS 12
#define GROUP_LAYERS 8
#define GROUP_BIG (1u << 20)
#define GROUP_SMALL 16
#define GROUP_LAYER_BYTES (GROUP_BIG + GROUP_SMALL * 4096)
#define GROUP_END 1000

static void group_target(int fd, void *arg)
{
    xr_engine *e;
    xr_region *reg;
    uint8_t *buf = write_target(fd, arg, &e, &reg);
    for (uint64_t k = 0; k < GROUP_ITERS; k++) {
        size_t n;
        uint64_t *m = wait_notif(e, NULL, "prefill", &n);
        H_CHECK(n == 8 && *m == k, "group notification %llu out of order (got %llu)",
                (unsigned long long)k, n == 8 ? (unsigned long long)*m : 0ull);
        free(m);
        /* The group's notification alone says every layer's bytes are here. */
        long long bad = h_verify(buf, GROUP_LAYERS * GROUP_LAYER_BYTES, 6000 + k, 0);
        H_CHECK(bad < 0, "group %llu: byte %lld (layer %lld) not yet written when its "
                "notification arrived", (unsigned long long)k, bad, bad / GROUP_LAYER_BYTES);
        h_send_u64(fd, k);
    }
    h_log("%d groups of %d layers, each layer posted as it became ready: every group's one "
          "notification came after all of its bytes", GROUP_ITERS, GROUP_LAYERS);
    /* Then: a group released open (never says anything), one whose member
     * was canceled (says nothing, unless the member had already ended),
     * one sealed empty (says at once), and the end. */
    bool seen[3] = {false};
    for (;;) {
        size_t n;
        uint64_t *m = wait_notif(e, NULL, "prefill", &n);
        uint64_t v = *m;
        free(m);
        if (v == GROUP_END)
            break;
        H_CHECK(v >= GROUP_ITERS && v < GROUP_ITERS + 3 && !seen[v - GROUP_ITERS],
                "unexpected notification %llu", (unsigned long long)v);
        seen[v - GROUP_ITERS] = true;
    }
    uint64_t cancel_late = h_recv_u64(fd, e);
    H_CHECK(!seen[0], "a group released before it was sealed sent its notification");
    H_CHECK(seen[1] == (cancel_late != 0), "canceled member: notification %s, cancel %s",
            seen[1] ? "sent" : "not sent", cancel_late ? "too late" : "in time");
    H_CHECK(seen[2], "an empty sealed group sent no notification");
    h_log("a group released open said nothing; a canceled member's group said %s; an empty "
          "group said its notification", seen[1] ? "it (the member had ended)" : "nothing");
    h_send_u64(fd, 1);
    H_OK(xr_mem_deregister(reg));
    xr_engine_destroy(e);
    free(buf);
}

static void group_initiator(int fd, void *arg)
{
    cfg *c = arg;
    xr_engine *e;
    xr_region *reg;
    H_OK(h_engine("prefill", c->provider, c->irails, c->pthread_target, &e));
    uint8_t *buf = aligned_alloc(4096, REGION);
    H_OK(xr_mem_register(e, buf, REGION, XR_MEM_HOST, 0, XR_ACCESS_NONE, &reg));
    xr_peer *p = h_load_peer(fd, e);
    uint64_t raddr = h_recv_u64(fd, NULL);
    /* One prepared transfer per layer: a striped block and small ones. */
    xr_xfer *layer[GROUP_LAYERS];
    for (unsigned l = 0; l < GROUP_LAYERS; l++) {
        xr_iov li[1 + GROUP_SMALL], ri[1 + GROUP_SMALL];
        size_t off = (size_t)l * GROUP_LAYER_BYTES;
        li[0] = (xr_iov){(uintptr_t)buf + off, GROUP_BIG};
        ri[0] = (xr_iov){raddr + off, GROUP_BIG};
        for (unsigned i = 0; i < GROUP_SMALL; i++) {
            size_t o = off + GROUP_BIG + (size_t)i * 4096;
            li[1 + i] = (xr_iov){(uintptr_t)buf + o, 4096};
            ri[1 + i] = (xr_iov){raddr + o, 4096};
        }
        /* Their own notifications are not sent inside a group. */
        uint64_t own = 999;
        H_OK(xr_xfer_create(e, p, XR_OP_WRITE, li, ri, 1 + GROUP_SMALL, &own, sizeof own,
                            &layer[l]));
    }
    uint64_t seed = 42;
    for (uint64_t k = 0; k < GROUP_ITERS; k++) {
        h_fill(buf, GROUP_LAYERS * GROUP_LAYER_BYTES, 6000 + k, 0);
        xr_group *g;
        H_OK(xr_group_create(e, p, &k, sizeof k, &g));
        for (unsigned l = 0; l < GROUP_LAYERS; l++) {
            /* "Compute" the layer, then send it while the next one computes. */
            struct timespec ts = {0, (long)(h_rng(&seed) % 1000) * 1000};
            nanosleep(&ts, NULL);
            if (!c->pthread_target)
                xr_progress(e);
            H_OK(xr_group_add(g, layer[l]));
        }
        H_OK(xr_group_seal(g));
        H_CHECK(xr_group_add(g, layer[0]) == XR_EINVAL, "xr_group_add after the seal");
        H_CHECK(xr_group_seal(g) == XR_EINVAL, "a second seal");
        int rc = xr_group_wait(g, 60000);
        H_CHECK(rc == 0, "group %llu: %s: %s", (unsigned long long)k, xr_err_name(rc),
                xr_group_error(g));
        xr_group_release(g);
        H_CHECK(h_recv_u64(fd, NULL) == k, "ack");
    }
    /* Released before it was sealed, with a member in flight. */
    uint64_t v = GROUP_ITERS;
    xr_group *g;
    H_OK(xr_group_create(e, p, &v, sizeof v, &g));
    H_OK(xr_group_add(g, layer[0]));
    xr_group_release(g);
    H_OK(xr_xfer_wait(layer[0], 60000));
    /* A member canceled in flight: the group fails with it. */
    v = GROUP_ITERS + 1;
    xr_xfer *big;
    xr_iov bl = {(uintptr_t)buf, REGION}, br = {raddr, REGION};
    H_OK(xr_xfer_create(e, p, XR_OP_WRITE, &bl, &br, 1, NULL, 0, &big));
    H_OK(xr_group_create(e, p, &v, sizeof v, &g));
    H_OK(xr_group_add(g, big));
    int crc = xr_xfer_cancel(big);
    H_OK(xr_group_seal(g));
    int rc = xr_group_wait(g, 60000);
    H_CHECK(crc == 0 ? rc == XR_ECANCELED : rc == 0, "cancel %s, group %s: %s",
            xr_err_name(crc), xr_err_name(rc), xr_group_error(g));
    xr_group_release(g);
    xr_xfer_release(big);
    /* Sealed with no member: the notification goes at once. */
    v = GROUP_ITERS + 2;
    H_OK(xr_group_create(e, p, &v, sizeof v, &g));
    H_OK(xr_group_seal(g));
    H_OK(xr_group_wait(g, 60000));
    xr_group_release(g);
    v = GROUP_END;
    H_OK(xr_notif_send(e, p, &v, sizeof v));
    h_send_u64(fd, crc != 0);
    h_recv_u64(fd, e); /* drives progress while the target checks */
    for (unsigned l = 0; l < GROUP_LAYERS; l++)
        xr_xfer_release(layer[l]);
    H_OK(xr_peer_unload(p));
    H_OK(xr_mem_deregister(reg));
    xr_engine_destroy(e);
    free(buf);
}

/* ---- reload: policies swapped while transfers are in flight ---- */

#define RL_ITERS 32
#define RL_SLOTS 8
#define RL_SLOT (REGION / RL_SLOTS)
#define RL_DEPTH 3

static void reload_target(int fd, void *arg)
{
    cfg *c = arg;
    xr_engine *e;
    xr_region *reg;
    H_OK(h_engine("decode", c->provider, c->trails, c->pthread_target, &e));
    uint8_t *buf = aligned_alloc(4096, REGION);
    H_OK(xr_mem_register(e, buf, REGION, XR_MEM_HOST, 0, XR_ACCESS_WRITE, &reg));
    h_send_metadata(fd, e);
    h_send_u64(fd, (uintptr_t)buf);
    for (uint64_t k = 0; k < RL_ITERS; k++) {
        size_t n;
        uint64_t *m = wait_notif(e, NULL, "prefill", &n);
        H_CHECK(n == 8, "notification of %zu bytes", n);
        uint64_t it = *m;
        free(m);
        long long bad = h_verify(buf + (it % RL_SLOTS) * RL_SLOT, RL_SLOT, 7000 + it, 0);
        H_CHECK(bad < 0, "transfer %llu: byte %lld wrong", (unsigned long long)it, bad);
        h_send_u64(fd, it);
    }
    h_log("%d transfers under alternating policies: every byte verified", RL_ITERS);
    H_OK(xr_mem_deregister(reg));
    xr_engine_destroy(e);
    free(buf);
}

static void reload_initiator(int fd, void *arg)
{
    cfg *c = arg;
    char pol[2][1024];
    snprintf(pol[0], sizeof pol[0], "%s/even_stripe.lua", c->scripts);
    snprintf(pol[1], sizeof pol[1], "%s/single_rail.lua", c->scripts);
    h_policy = pol[0];
    xr_engine *e;
    xr_region *reg;
    H_OK(h_engine("prefill", c->provider, c->irails, 0, &e));
    uint8_t *buf = aligned_alloc(4096, REGION);
    H_OK(xr_mem_register(e, buf, REGION, XR_MEM_HOST, 0, XR_ACCESS_NONE, &reg));
    xr_peer *p = h_load_peer(fd, e);
    uint64_t raddr = h_recv_u64(fd, NULL);
    xr_xfer *x[RL_ITERS] = {0};
    bool seen[RL_ITERS] = {false};
    uint64_t acked = 0, done = 0, striped = 0, single = 0;
    for (uint64_t k = 0; k < RL_ITERS; k++) {
        /* A slot is rewritten only after the target verified its last
         * transfer. Transfers finish out of order (striped ones and
         * single-rail ones overtake each other), so acks do too. */
        while (k >= RL_SLOTS && !seen[k - RL_SLOTS]) {
            uint64_t a = h_recv_u64(fd, e);
            H_CHECK(a < RL_ITERS && !seen[a], "ack %llu unexpected", (unsigned long long)a);
            seen[a] = true;
            acked++;
        }
        /* At most RL_DEPTH in flight. */
        while (k - done >= RL_DEPTH) {
            int rc = xr_xfer_wait(x[done], 60000);
            H_CHECK(rc == 0, "transfer %llu: %s", (unsigned long long)done, xr_xfer_error(x[done]));
            xr_xfer_release(x[done++]);
        }
        /* Swap the policy with transfers in flight; the next one follows it. */
        H_OK(xr_policy_reload(e, pol[k % 2]));
        uint8_t *slot = buf + (k % RL_SLOTS) * RL_SLOT;
        h_fill(slot, RL_SLOT, 7000 + k, 0);
        xr_iov l[3], r[3];
        size_t cut[4] = {0, RL_SLOT / 2, RL_SLOT / 2 + 4096, RL_SLOT};
        for (int d = 0; d < 3; d++) {
            l[d] = (xr_iov){(uintptr_t)slot + cut[d], cut[d + 1] - cut[d]};
            r[d] = (xr_iov){raddr + (k % RL_SLOTS) * RL_SLOT + cut[d], cut[d + 1] - cut[d]};
        }
        H_OK(xr_xfer_create(e, p, XR_OP_WRITE, l, r, 3, &k, sizeof k, &x[k]));
        unsigned used = 0;
        for (unsigned i = 0; i < c->irails; i++)
            used += xr_xfer_chunk_count(x[k], (int)i) > 0;
        H_CHECK(k % 2 ? used == 1 : used == c->irails, "transfer %llu under %s used %u rails",
                (unsigned long long)k, pol[k % 2], used);
        k % 2 ? single++ : striped++;
        H_OK(xr_xfer_post(x[k]));
    }
    while (done < RL_ITERS) {
        int rc = xr_xfer_wait(x[done], 60000);
        H_CHECK(rc == 0, "transfer %llu: %s", (unsigned long long)done, xr_xfer_error(x[done]));
        xr_xfer_release(x[done++]);
    }
    while (acked < RL_ITERS) {
        uint64_t a = h_recv_u64(fd, e);
        H_CHECK(a < RL_ITERS && !seen[a], "ack %llu unexpected", (unsigned long long)a);
        seen[a] = true;
        acked++;
    }
    xr_policy_stats st;
    H_OK(xr_policy_stats_get(e, &st));
    h_log("%llu reloads; %llu transfers striped over %u rails, %llu on one rail",
          (unsigned long long)st.reloads, (unsigned long long)striped, c->irails,
          (unsigned long long)single);
    H_OK(xr_peer_unload(p));
    H_OK(xr_mem_deregister(reg));
    xr_engine_destroy(e);
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s xfer|notif|order|group|reload PROVIDER INITIATOR_RAILS TARGET_RAILS "
                        "[PROGRESS_THREAD]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    cfg c = {argv[1], argv[2], (unsigned)atoi(argv[3]), (unsigned)atoi(argv[4]),
             argc > 5 ? atoi(argv[5]) : 0, NULL};
    h_policy = argc > 6 ? argv[6] : NULL;
    if (!strcmp(c.scenario, "reload")) {
        c.scripts = h_policy; /* here the argument is the policy directory */
        h_policy = NULL;
        if (!c.scripts)
            return fprintf(stderr, "reload needs the policy directory\n"), 2;
    }
    if (c.irails < 1 || c.irails > XR_MAX_RAILS || c.trails < 1 || c.trails > XR_MAX_RAILS)
        return fprintf(stderr, "rail counts must be 1..%d\n", XR_MAX_RAILS), 2;
    h_require_provider(c.provider);
    void (*t)(int, void *), (*i)(int, void *);
    if (!strcmp(c.scenario, "xfer"))
        t = xfer_target, i = xfer_initiator;
    else if (!strcmp(c.scenario, "notif"))
        t = notif_target, i = notif_initiator;
    else if (!strcmp(c.scenario, "order"))
        t = order_target, i = order_initiator;
    else if (!strcmp(c.scenario, "group"))
        t = group_target, i = group_initiator;
    else if (!strcmp(c.scenario, "reload"))
        t = reload_target, i = reload_initiator;
    else
        return fprintf(stderr, "unknown scenario %s\n", c.scenario), 2;
    int rc = h_run_pair(t, i, &c);
    printf("%s %s %u->%u rails%s%s: %s\n", c.scenario, c.provider, c.irails, c.trails,
           h_policy ? ", policy " : "", h_policy ? h_policy : "", rc ? "FAILED" : "passed");
    return rc;
}
