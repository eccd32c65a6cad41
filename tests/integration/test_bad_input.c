/*
 * test_bad_input.c - two processes, real providers: every kind of bad input
 * gets a clear error, nothing is lost, and the engine keeps working.
 *
 * usage: test_bad_input PROVIDER RAILS
 */
#include "harness.h"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "core/layout.h" /* to forge metadata, which no application could do by accident */

#include <rdma/fabric.h> /* fi_version(): what the provider enforces differs by release */

#define BIG (32u << 20)
#define SMALL (1u << 20)
#define TAG_B 0xB0B
#define TAG_W 0x7777

static const char *provider;
static unsigned rails;

static void expect(int rc, int want, const char *needle, const char *what)
{
    H_CHECK(rc == want, "%s: got %s, want %s (%s)", what, xr_err_name(rc), xr_err_name(want),
            xr_engine_last_error(NULL));
    H_CHECK(strstr(xr_engine_last_error(NULL), needle), "%s: message '%s' lacks '%s'", what,
            xr_engine_last_error(NULL), needle);
    h_log("ok: %s -> %s: %s", what, xr_err_name(rc), xr_engine_last_error(NULL));
}

static void target(int fd, void *arg)
{
    (void)arg;
    xr_engine *e;
    xr_region *ra, *rb;
    H_OK(h_engine("decode", provider, rails, 1, &e));
    uint8_t *a = aligned_alloc(4096, BIG), *b = aligned_alloc(4096, SMALL);
    memset(a, 0, BIG);
    h_fill(b, SMALL, TAG_B, 0);
    H_OK(xr_mem_register(e, a, BIG, XR_MEM_HOST, 0, XR_ACCESS_RW, &ra));
    H_OK(xr_mem_register(e, b, SMALL, XR_MEM_HOST, 0, XR_ACCESS_READ, &rb));
    h_send_metadata(fd, e);
    h_send_u64(fd, (uintptr_t)a);
    h_send_u64(fd, (uintptr_t)b);
    /* The transfer whose peer was unloaded mid-flight still lands whole. */
    char name[64], msg[64];
    size_t n = sizeof msg;
    /* Bounded: an initiator that died must fail this test, not hang it. */
    for (time_t end = time(NULL) + 120; xr_notif_get(e, name, sizeof name, msg, &n) == XR_EAGAIN;
         n = sizeof msg)
        H_CHECK(time(NULL) < end, "no notification from the initiator in 120 s");
    H_CHECK(n == 8 && memcmp(msg, "inflight", 8) == 0, "unexpected notification");
    long long bad = h_verify(a, BIG, TAG_W, 0);
    H_CHECK(bad < 0, "transfer in flight when its peer was unloaded: byte %lld missing", bad);
    h_log("ok: a transfer in flight when its peer was unloaded arrived whole");
    if (h_recv_u64(fd, NULL) == 1) {
        bad = h_verify(b, SMALL, TAG_B, 0);
        H_CHECK(bad < 0, "the read-only region was written at byte %lld", bad);
        h_log("ok: the read-only region is unchanged after a forged WRITE");
    } else { /* the provider let it land (see the initiator): put it back */
        h_fill(b, SMALL, TAG_B, 0);
    }
    h_send_u64(fd, 1);
    h_recv_u64(fd, NULL);
    H_OK(xr_mem_deregister(ra));
    H_OK(xr_mem_deregister(rb));
    xr_engine_destroy(e);
    free(a);
    free(b);
}

static int run(xr_engine *e, xr_peer *p, xr_op op, uint64_t l, uint64_t r, size_t len,
               const char *notif, xr_xfer **keep)
{
    xr_iov li = {l, len}, ri = {r, len};
    xr_xfer *x;
    int rc = xr_xfer_create(e, p, op, &li, &ri, 1, notif, notif ? strlen(notif) : 0, &x);
    if (rc)
        return rc;
    H_OK(xr_xfer_post(x));
    rc = keep ? 0 : xr_xfer_wait(x, 60000);
    if (keep)
        *keep = x;
    else {
        if (rc)
            h_log("transfer failed as expected: %s", xr_xfer_error(x));
        xr_xfer_release(x);
    }
    return rc;
}

/* Rewrite the peer's metadata, under a new name, with a valid CRC: what
 * only a forger (or a bug) would send. */
static void *forge_with(const void *md, size_t len, void (*change)(xr_md *m), size_t *out_len)
{
    xr_md m;
    H_OK(xr__layout_decode(&xr__layout_md_schema, md, len, 0, &m));
    free(m.name);
    m.name = strdup("decode-forged");
    change(&m);
    *out_len = 0;
    xr__layout_encode(&xr__layout_md_schema, &m, NULL, out_len);
    void *f = malloc(*out_len);
    H_OK(xr__layout_encode(&xr__layout_md_schema, &m, f, out_len));
    xr__layout_free(&xr__layout_md_schema, &m);
    return f;
}

/* Its read-only region claims write access: the provider itself must
 * refuse the WRITE. */
static void grant_all(xr_md *m)
{
    for (uint32_t i = 0; i < m->nregions; i++)
        m->regions[i].access = XR_ACCESS_RW;
}

static void *forge(const void *md, size_t len, size_t *out_len)
{
    return forge_with(md, len, grant_all, out_len);
}

/* Values the format can carry and the meaning cannot. */
static void far_rail(xr_md *m) { m->rails[0].index = 8978446; }
static void staged_165(xr_md *m) { m->regions[0].staged = 165; }
static void kind_9(xr_md *m) { m->regions[0].kind = 9; }
static void raw_7(xr_md *m) { m->regions[0].keys[0].raw = 7; }
static void two_keys_one_rail(xr_md *m)
{
    if (m->regions[0].nkeys > 1)
        m->regions[0].keys[1].rail = m->regions[0].keys[0].rail;
    else
        m->regions[0].nkeys = 0, m->regions[0].staged = 0, m->regions[0].len = 0;
}
static void base_above(xr_md *m) { m->regions[0].keys[0].base = m->regions[0].addr + 1; }
static void long_addr(xr_md *m)
{
    free(m->rails[0].addr);
    m->rails[0].addr = calloc(1, 4096);
    m->rails[0].addrlen = 4096;
}

static void impossible_metadata(xr_engine *e, const void *md, size_t len)
{
    static const struct {
        void (*change)(xr_md *m);
        const char *needle, *what;
    } cases[] = {
        {far_rail, "rails[0].index is 8978446", "a rail index past the rail count"},
        {staged_165, "regions[0].staged is 165", "a staged flag of 165"},
        {kind_9, "regions[0].kind 9 is unknown", "an unknown region kind"},
        {raw_7, "regions[0].keys[0].raw is 7", "a key flag of 7"},
        {two_keys_one_rail, "regions[0]", "two keys for one rail, or an empty region"},
        {base_above, "regions[0].keys[0].base", "a key registered above its region"},
        {long_addr, "rails[0].addr", "a rail address longer than any"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t flen;
        void *f = forge_with(md, len, cases[i].change, &flen);
        xr_peer *p = NULL;
        expect(xr_peer_load(e, f, flen, &p), XR_EBADMD, cases[i].needle, cases[i].what);
        H_CHECK(!p, "%s: a peer was made", cases[i].what);
        free(f);
    }
}

static void initiator(int fd, void *arg)
{
    (void)arg;
    xr_engine *e;
    xr_region *rl;
    xr_peer *p, *p2;
    /* The refused WRITE below goes to a peer loaded from forged metadata,
     * never heard from: on 1.17 shm only first contact's deadline ends it.
     * Four rails connect well within 4 deadlines. */
    h_connect_ms = 4 * h_deadline_ms();
    H_OK(h_engine("prefill", provider, rails, 0, &e));
    uint8_t *l = aligned_alloc(4096, BIG);
    H_OK(xr_mem_register(e, l, BIG, XR_MEM_HOST, 0, XR_ACCESS_NONE, &rl));
    uint64_t len;
    uint8_t *md = h_recv(fd, NULL, &len);
    uint64_t a = h_recv_u64(fd, NULL), b = h_recv_u64(fd, NULL);
    uintptr_t lp = (uintptr_t)l;

    /* Broken metadata: truncated, corrupted, or not metadata at all. */
    expect(xr_peer_load(e, md, len - 3, &p), XR_EBADMD, "truncated", "truncated metadata");
    md[len / 2] ^= 0x10;
    expect(xr_peer_load(e, md, len, &p), XR_EBADMD, "CRC32C mismatch", "corrupted metadata");
    md[len / 2] ^= 0x10;
    expect(xr_peer_load(e, "hello", 5, &p), XR_EBADMD, "header truncated", "not metadata");
    H_OK(xr_peer_load(e, md, len, &p));
    expect(xr_peer_load(e, md, len, &p2), XR_EEXIST, "'decode' is already loaded",
           "peer loaded twice");

    /* Descriptors the peer's regions do not allow; the bad one is named. */
    xr_iov li[3] = {{lp, 100}, {lp + 100, 100}, {lp + 200, 20}};
    xr_iov ri[3] = {{a, 100}, {a + 100, 100}, {a + BIG - 10, 20}};
    xr_xfer *x;
    expect(xr_xfer_create(e, p, XR_OP_WRITE, li, ri, 3, NULL, 0, &x), XR_ERANGE,
           "descriptor 2: remote range", "remote range past a region's end");
    ri[2].addr = 16;
    expect(xr_xfer_create(e, p, XR_OP_WRITE, li, ri, 3, NULL, 0, &x), XR_ERANGE,
           "outside every region peer 'decode' published", "remote range in no region");
    expect(run(e, p, XR_OP_WRITE, lp, b, 64, NULL, NULL), XR_EACCESS,
           "does not grant remote write", "WRITE to a read-only region");
    /* A buffer nobody registered is registered on demand, and works. */
    size_t hn = SMALL < 4096 ? SMALL : 4096;
    uint8_t *heap = malloc(hn);
    H_OK(run(e, p, XR_OP_READ, (uintptr_t)heap, b, hn, NULL, NULL));
    H_CHECK(h_verify(heap, hn, TAG_B, 0) < 0, "READ into an unregistered heap buffer");
    h_log("ok: READ into an unregistered heap buffer, registered on demand");
    free(heap);
    /* One that is not even mapped memory is refused before anything is posted. */
    long pg = sysconf(_SC_PAGESIZE);
    uint8_t *two = mmap(NULL, 2 * (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
    H_CHECK(two != MAP_FAILED, "mmap");
    munmap(two + pg, (size_t)pg);
    expect(run(e, p, XR_OP_WRITE, (uintptr_t)two + (uintptr_t)pg - 10, a, 20, NULL, NULL),
           XR_ENOTREG, "descriptor 0: local buffer", "local buffer running into unmapped memory");
    expect(run(e, p, XR_OP_WRITE, (uintptr_t)two + (uintptr_t)pg, a, 20, NULL, NULL),
           XR_ENOTREG, "is not mapped memory", "unmapped local buffer");
    munmap(two, (size_t)pg);
    /* Ranges that wrap the address space, or hold nothing, are refused
     * before anything is posted: a wrapping one used to pass the region
     * check and crash the target. */
    xr_iov lw = {lp, 100}, rw = {0xfffffffffffffff5ull, 100};
    expect(xr_xfer_create(e, p, XR_OP_WRITE, &lw, &rw, 1, NULL, 0, &x), XR_ERANGE,
           "descriptor 0: remote range [0xfffffffffffffff5, +100) wraps", "wrapping remote range");
    lw = (xr_iov){UINTPTR_MAX - 10, 100};
    rw = (xr_iov){a, 100};
    expect(xr_xfer_create(e, p, XR_OP_WRITE, &lw, &rw, 1, NULL, 0, &x), XR_ERANGE,
           "descriptor 0: local range", "wrapping local range");
    xr_iov le[2] = {{lp, 100}, {lp, 0}}, re[2] = {{a, 100}, {a, 0}};
    expect(xr_xfer_create(e, p, XR_OP_WRITE, le, re, 2, NULL, 0, &x), XR_ERANGE,
           "descriptor 1: empty", "empty descriptor");
    impossible_metadata(e, md, len);
    li[0].len = 99;
    ri[2] = (xr_iov){a + 200, 20};
    expect(xr_xfer_create(e, p, XR_OP_WRITE, li, ri, 3, NULL, 0, &x), XR_EINVAL,
           "local length 99 != remote length 100", "length mismatch");

    /* What the region does grant still works. */
    H_OK(run(e, p, XR_OP_READ, lp, b, SMALL, NULL, NULL));
    H_CHECK(h_verify(l, SMALL, TAG_B, 0) < 0, "READ of the read-only region");

    /* A rail taken down carries nothing new; the others carry everything. */
    if (rails > 1) {
        H_OK(xr_rail_set_state(e, 0, 0));
        xr_iov l8 = {lp, 8u << 20}, r8 = {a, 8u << 20};
        H_OK(xr_xfer_create(e, p, XR_OP_WRITE, &l8, &r8, 1, NULL, 0, &x));
        H_CHECK(xr_xfer_chunk_count(x, 0) == 0, "rail 0 is down but got chunks");
        H_CHECK(xr_xfer_chunk_count(x, 1) > 0, "rail 1 got no chunk");
        H_OK(xr_xfer_post(x));
        H_OK(xr_xfer_wait(x, 60000));
        xr_xfer_release(x);
        H_OK(xr_rail_set_state(e, 0, 1));
        h_log("ok: with rail 0 down, a striped WRITE used the other %u rails", rails - 1);
    }

    /* A region a transfer holds cannot be deregistered under it. */
    xr_iov l1 = {lp, 64}, r1 = {a, 64};
    H_OK(xr_xfer_create(e, p, XR_OP_WRITE, &l1, &r1, 1, NULL, 0, &x));
    expect(xr_mem_deregister(rl), XR_EBUSY, "used by 1 transfer", "deregister while in use");
    xr_xfer_release(x);

    /* Unload the peer with a 32 MiB WRITE in flight: it completes, and the
     * notification tells the target it is all there. */
    h_fill(l, BIG, TAG_W, 0);
    xr_xfer *inflight;
    H_OK(run(e, p, XR_OP_WRITE, lp, a, BIG, "inflight", &inflight));
    H_OK(xr_peer_unload(p));
    int rc = xr_xfer_wait(inflight, 60000);
    H_CHECK(rc == 0, "in-flight transfer after unload: %s", xr_xfer_error(inflight));
    expect(xr_xfer_post(inflight), XR_ENOENT, "was unloaded", "repost after unload");
    xr_xfer_release(inflight);

    /* Forged access: our check passes, the provider must refuse. */
    size_t flen;
    void *forged = forge(md, len, &flen);
    xr_peer *pf;
    H_OK(xr_peer_load(e, forged, flen, &pf));
    free(forged);
    h_fill(l, SMALL, 0xBAD, 0);
    /* tcp completes the refused WRITE in error; shm (1.17) refuses it at the
     * target but never completes it: the deadline sees the peer answer
     * nothing, fails the transfer with XR_EPEER and resets the rail, which
     * cancels the operation. Either way the bytes must not land. */
    xr_iov lf = {lp, 4096}, rf = {b, 4096};
    H_OK(xr_xfer_create(e, pf, XR_OP_WRITE, &lf, &rf, 1, NULL, 0, &x));
    unsigned frail = 0;
    while (!xr_xfer_chunk_count(x, (int)frail))
        frail++;
    H_OK(xr_xfer_post(x));
    /* First contact's deadline (docs/reliability.md), and time to spare. */
    rc = xr_xfer_wait(x, (int)(h_connect_deadline_ms() + 14000));
    bool rail_lost = false;
    /* libfabric 2.x's shm moves bytes with the target's memory mapped into
     * the initiator (CMA, which any process of the same user may use
     * anyway), and does not check the access a region was registered with:
     * there the forged WRITE lands. Everywhere else the provider refuses. */
    bool enforced = !(strcmp(provider, "shm") == 0 && FI_MAJOR(fi_version()) >= 2);
    if (rc == 0 && !enforced) {
        h_log("note: libfabric %u.%u shm does not enforce a region's registered access: the "
              "forged WRITE landed", FI_MAJOR(fi_version()), FI_MINOR(fi_version()));
        xr_xfer_release(x);
        H_OK(xr_peer_unload(pf));
        H_OK(xr_peer_load(e, md, len, &p2));
        h_send_u64(fd, 2);
        h_recv_u64(fd, e);
        goto after_forged;
    }
    H_CHECK(rc == XR_EIO || rc == XR_EPEER, "a WRITE into memory registered without "
            "remote write gave %s; the provider must refuse it", xr_err_name(rc));
    if (rc == XR_EIO)
        H_CHECK(strstr(xr_xfer_error(x), "rail "), "the error does not name the rail: %s",
                xr_xfer_error(x));
    h_log("ok: forged write access refused by the provider: %s: %s", xr_err_name(rc),
          rc == XR_EIO ? xr_xfer_error(x) : xr_engine_last_error(NULL));
    xr_xfer_release(x);
    if (rail_lost) {
        H_OK(xr_rail_set_state(e, frail, 0));
        h_log("rail %u stalled on the refused operation and is taken out", frail);
    }
    H_OK(xr_peer_unload(pf));
    H_OK(xr_peer_load(e, md, len, &p2)); /* the name is free again */
    h_send_u64(fd, 1);
    h_recv_u64(fd, e);
after_forged:

    /* And after all that, the engine still moves bytes on what is left. */
    if (!rail_lost || rails > 1) {
        H_OK(run(e, p2, XR_OP_READ, lp, b, SMALL, NULL, NULL));
        H_CHECK(h_verify(l, SMALL, TAG_B, 0) < 0, "READ after the failures");
        h_log("ok: the engine still moves bytes after every failure above");
    }
    h_send_u64(fd, 2);
    H_OK(xr_peer_unload(p2));
    if (rail_lost) /* the stalled transfer still pins it; destroy frees both */
        expect(xr_mem_deregister(rl), XR_EBUSY, "used by 1 transfer", "deregister under a "
               "detached transfer");
    else
        H_OK(xr_mem_deregister(rl));
    xr_engine_destroy(e);
    free(md);
    free(l);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PROVIDER RAILS\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    provider = argv[1];
    rails = (unsigned)atoi(argv[2]);
    if (rails < 1 || rails > XR_MAX_RAILS)
        return fprintf(stderr, "rails must be 1..%d\n", XR_MAX_RAILS), 2;
    h_require_provider(provider);
    int rc = h_run_pair(target, initiator, NULL);
    printf("bad input over %u %s rails: %s\n", rails, provider, rc ? "FAILED" : "passed");
    return rc;
}
