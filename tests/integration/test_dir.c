/*
 * test_dir.c - the etcd directory against a real etcd (Debian's
 * etcd-server), started here on free loopback ports with a temporary data
 * directory, and real engines in real processes over tcp;ofi_rxm:
 *
 *   publish and lookup   a target publishes; the watcher sees it join,
 *                        looks it up by name and WRITEs into its region
 *                        (verified by the target)
 *   update               the target registers a second region; the watcher
 *                        sees the update and WRITEs into it with the same
 *                        handle, no unload and load
 *   absent               a lookup of a name nobody published times out
 *   lease expiry         the target is SIGKILLed: the watcher sees it leave
 *                        within the TTL and a margin, new transfers get
 *                        XR_EGONE, a lookup says it left
 *   etcd down            etcd is SIGKILLed: a peer already loaded still
 *                        moves bytes; a lookup of an unknown name fails
 *                        with XR_EDIR
 *   etcd back            etcd restarts on the same data: a new engine
 *                        published after it is seen joining (the watch
 *                        came back) and is looked up
 *
 * Skipped, never passed, where etcd is not installed or libxrail was built
 * without the directory.
 *
 *   test_dir PROVIDER
 */
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>

#define REGION (1u << 20)
#define TTL_MS 2000

static const char *provider;
static char endpoint[64];
static char data_dir[] = "/tmp/xrail-etcd-XXXXXX";
static pid_t etcd_pid;
static int client_port, peer_port;

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    H_CHECK(s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
                getsockname(s, (struct sockaddr *)&a, &l) == 0, "a free port");
    close(s);
    return ntohs(a.sin_port);
}

static bool port_open(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

static void etcd_start(void)
{
    char client[64], peer[64], log[512], cluster[128];
    snprintf(client, sizeof client, "http://127.0.0.1:%d", client_port);
    snprintf(peer, sizeof peer, "http://127.0.0.1:%d", peer_port);
    snprintf(log, sizeof log, "%s/etcd.log", data_dir);
    snprintf(cluster, sizeof cluster, "xrail-test=%s", peer);
    fflush(NULL);
    etcd_pid = fork();
    H_CHECK(etcd_pid >= 0, "fork");
    if (etcd_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char dir[600];
        snprintf(dir, sizeof dir, "%s/data", data_dir);
        execlp("etcd", "etcd", "--name", "xrail-test", "--data-dir", dir,
               "--listen-client-urls", client, "--advertise-client-urls", client,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", cluster, (char *)NULL);
        _exit(127);
    }
    double t0 = h_now();
    while (!port_open(client_port)) {
        int st;
        H_CHECK(waitpid(etcd_pid, &st, WNOHANG) == 0, "etcd exited at start (see %s)", log);
        H_CHECK(h_now() - t0 < 30, "etcd did not listen on %d in 30 s", client_port);
        usleep(50000);
    }
    h_log("etcd %d listening at %s", etcd_pid, endpoint);
}

static void etcd_kill(void)
{
    if (etcd_pid > 0) {
        kill(etcd_pid, SIGKILL);
        waitpid(etcd_pid, NULL, 0);
        etcd_pid = 0;
    }
}

static pid_t main_pid;

static void cleanup(void)
{
    if (getpid() != main_pid) /* a target exiting: etcd is not its */
        return;
    etcd_kill();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", data_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", data_dir);
}

static int dir_open(xr_engine *e)
{
    xr_dir_opts o;
    xr_dir_opts_init(&o);
    o.endpoints = endpoint;
    o.prefix = "/xrail-test/";
    o.ttl_ms = TTL_MS;
    return xr_dir_open(e, &o);
}

/* A target: publishes one region, then more on request, and checks what
 * lands, until it is killed or told to stop. */
static void target(int fd, void *arg)
{
    const char *name = arg;
    h_role = name;
    xr_engine *e;
    H_OK(h_engine(name, provider, 2, 1, &e));
    uint8_t *buf[2] = {aligned_alloc(4096, REGION), aligned_alloc(4096, REGION)};
    xr_region *reg[2];
    H_OK(xr_mem_register(e, buf[0], REGION, XR_MEM_HOST, 0, XR_ACCESS_WRITE, &reg[0]));
    H_OK(dir_open(e));
    h_send_u64(fd, (uintptr_t)buf[0]);
    for (;;) {
        uint64_t cmd = h_recv_u64(fd, NULL);
        if (cmd == 0)
            break;
        if (cmd == 1) { /* publish a second region */
            H_OK(xr_mem_register(e, buf[1], REGION, XR_MEM_HOST, 0, XR_ACCESS_WRITE, &reg[1]));
            h_send_u64(fd, (uintptr_t)buf[1]);
            continue;
        }
        uint64_t which = h_recv_u64(fd, NULL);
        long long bad = h_verify(buf[which], REGION, cmd, 0);
        h_send_u64(fd, bad < 0 ? 0 : (uint64_t)bad + 1);
    }
    xr_engine_destroy(e);
}

/* The next event of `kind` about `name`, within `secs`. */
static double wait_event(xr_engine *e, xr_dir_event_kind kind, const char *name, double secs)
{
    double t0 = h_now();
    for (;;) {
        xr_dir_event ev;
        int rc = xr_dir_event_get(e, &ev);
        if (rc == 0 && ev.kind == kind && strcmp(ev.name, name) == 0)
            return h_now() - t0;
        H_CHECK(rc == 0 || rc == XR_EAGAIN, "xr_dir_event_get: %s", xr_err_name(rc));
        H_CHECK(h_now() - t0 < secs, "no %s event for '%s' in %.0f s",
                kind == XR_DIR_JOIN ? "join" : kind == XR_DIR_UPDATE ? "update" : "leave", name,
                secs);
        if (rc == XR_EAGAIN)
            usleep(10000);
    }
}

static int write_tag(xr_engine *e, xr_peer *p, uint8_t *src, uint64_t raddr, uint64_t tag)
{
    h_fill(src, REGION, tag, 0);
    xr_iov l = {(uintptr_t)src, REGION}, r = {raddr, REGION};
    xr_xfer *x;
    int rc = xr_xfer_create(e, p, XR_OP_WRITE, &l, &r, 1, NULL, 0, &x);
    if (rc)
        return rc;
    rc = xr_xfer_post(x);
    if (!rc)
        rc = xr_xfer_wait(x, 30000);
    if (rc)
        h_log("WRITE: %s: %s", xr_err_name(rc), xr_xfer_error(x));
    xr_xfer_release(x);
    return rc;
}

static void verified(int fd, uint64_t tag, uint64_t which, const char *what)
{
    h_send_u64(fd, tag);
    h_send_u64(fd, which);
    uint64_t bad = h_recv_u64(fd, NULL);
    H_CHECK(bad == 0, "%s: byte %llu wrong at the target", what, (unsigned long long)bad - 1);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PROVIDER\n", argv[0]);
        return 2;
    }
    provider = argv[1];
    h_require_provider(provider);
    if (system("command -v etcd >/dev/null 2>&1") != 0) {
        printf("SKIPPED: etcd is not installed (Debian: etcd-server; scripts/setup.sh)\n");
        return H_SKIP;
    }
    xr_engine *e;
    H_OK(h_engine("watcher", provider, 2, 1, &e));
    H_CHECK(mkdtemp(data_dir), "mkdtemp");
    main_pid = getpid();
    atexit(cleanup);
    client_port = free_port();
    peer_port = free_port();
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", client_port);
    etcd_start();
    int rc = XR_EDIR;
    for (double t0 = h_now(); rc == XR_EDIR && h_now() - t0 < 30; usleep(200000))
        rc = dir_open(e); /* etcd listens before it serves */
    if (rc == XR_ENOTSUP) {
        printf("SKIPPED: %s\n", xr_engine_last_error(NULL));
        return H_SKIP;
    }
    H_OK(rc);
    uint8_t *src = aligned_alloc(4096, REGION);
    xr_region *sreg;
    H_OK(xr_mem_register(e, src, REGION, XR_MEM_HOST, 0, XR_ACCESS_NONE, &sreg));

    /* Publish and lookup. */
    pid_t a_pid;
    int a = h_spawn(target, "kv-a", &a_pid);
    uint64_t a0 = h_recv_u64(a, NULL);
    h_log("join seen after %.3f s", wait_event(e, XR_DIR_JOIN, "kv-a", 10));
    xr_peer *pa;
    H_OK(xr_peer_lookup(e, "kv-a", 5000, &pa));
    xr_peer *again;
    H_OK(xr_peer_lookup(e, "kv-a", 0, &again));
    H_CHECK(again == pa, "a second lookup gave another handle");
    H_OK(write_tag(e, pa, src, a0, 11));
    verified(a, 11, 0, "WRITE after lookup");
    h_log("publish and lookup: ok");

    /* A watcher that opens after kv-a published learns it from its first
     * read of the prefix, keys only, and reads the blob at its lookup. */
    xr_engine *late;
    H_OK(h_engine("late-watcher", provider, 2, 1, &late));
    H_OK(dir_open(late));
    H_CHECK(wait_event(late, XR_DIR_JOIN, "kv-a", 10) >= 0, "the late watcher saw no join");
    uint8_t *lsrc = aligned_alloc(4096, REGION);
    xr_region *lreg;
    H_OK(xr_mem_register(late, lsrc, REGION, XR_MEM_HOST, 0, XR_ACCESS_NONE, &lreg));
    xr_peer *la;
    H_OK(xr_peer_lookup(late, "kv-a", 5000, &la));
    H_OK(write_tag(late, la, lsrc, a0, 13));
    verified(a, 13, 0, "WRITE from a watcher that read the blob at lookup");
    H_OK(xr_mem_deregister(lreg));
    xr_engine_destroy(late);
    free(lsrc);
    h_log("a late watcher: ok, kv-a read at its first lookup");

    /* Update: a new region reaches the same handle. */
    uint64_t a1 = 0;
    h_send_u64(a, 1);
    a1 = h_recv_u64(a, NULL);
    h_log("update seen after %.3f s", wait_event(e, XR_DIR_UPDATE, "kv-a", 10));
    H_OK(write_tag(e, pa, src, a1, 12));
    verified(a, 12, 1, "WRITE into the region published later");
    h_log("update: ok, a region registered after the lookup was written with the same handle");

    /* Absent. */
    xr_peer *none;
    double t0 = h_now();
    rc = xr_peer_lookup(e, "nobody", 300, &none);
    H_CHECK(rc == XR_ETIMEDOUT && !none, "a lookup of an absent name gave %s", xr_err_name(rc));
    H_CHECK(h_now() - t0 < 2, "the absent lookup took %.2f s", h_now() - t0);

    /* Lease expiry after SIGKILL. */
    kill(a_pid, SIGKILL);
    waitpid(a_pid, NULL, 0);
    close(a);
    double left = wait_event(e, XR_DIR_LEAVE, "kv-a", TTL_MS / 1000.0 + 10);
    h_log("SIGKILL -> leave event: %.2f s (lease %d ms)", left, TTL_MS);
    H_CHECK(left < TTL_MS / 1000.0 + 3, "the leave came %.2f s after the kill", left);
    xr_iov l = {(uintptr_t)src, 4096}, r = {a0, 4096};
    xr_xfer *x;
    rc = xr_xfer_create(e, pa, XR_OP_WRITE, &l, &r, 1, NULL, 0, &x);
    H_CHECK(rc == XR_EGONE, "a transfer to a peer that left: %s", xr_err_name(rc));
    rc = xr_peer_lookup(e, "kv-a", 200, &none);
    H_CHECK(rc == XR_EGONE, "a lookup of a peer that left: %s", xr_err_name(rc));
    h_log("lease expiry: ok");

    /* etcd down: loaded peers go on; lookups of unknown names say why. */
    pid_t b_pid;
    int b = h_spawn(target, "kv-b", &b_pid);
    uint64_t b0 = h_recv_u64(b, NULL);
    xr_peer *pb;
    H_OK(xr_peer_lookup(e, "kv-b", 10000, &pb));
    /* An engine that has seen kv-b (its first read of the prefix, keys
     * only) but not looked it up: with etcd down, its lookup cannot read
     * the blob, and says so. */
    xr_engine *seen;
    H_OK(h_engine("seen-not-loaded", provider, 1, 1, &seen));
    H_OK(dir_open(seen));
    wait_event(seen, XR_DIR_JOIN, "kv-b", 10);
    etcd_kill();
    H_OK(write_tag(e, pb, src, b0, 21));
    verified(b, 21, 0, "WRITE while etcd is down");
    usleep(1500000); /* the directory's thread notices (a renewal fails) */
    rc = xr_peer_lookup(e, "kv-c", 500, &none);
    H_CHECK(rc == XR_EDIR, "a lookup with etcd down: %s (%s)", xr_err_name(rc),
            xr_engine_last_error(NULL));
    h_log("etcd down: transfers go on; a lookup says: %s", xr_engine_last_error(NULL));
    rc = xr_peer_lookup(seen, "kv-b", 500, &none);
    H_CHECK(rc == XR_EDIR && strstr(xr_engine_last_error(NULL), "reading 'kv-b' from etcd"),
            "a lookup of a name seen, not loaded, with etcd down: %s (%s)", xr_err_name(rc),
            xr_engine_last_error(NULL));
    h_log("etcd down: a name seen but not loaded: %s", xr_engine_last_error(NULL));
    xr_engine_destroy(seen); /* its lease cannot be revoked: it runs out */
    /* kv-b registers a region while etcd is away: it publishes when etcd
     * returns, and the loaded handle takes it (from the watcher's new read
     * of the prefix, or its watch, whichever sees it first). */
    h_send_u64(b, 1);
    uint64_t b1 = h_recv_u64(b, NULL);

    /* etcd back: the watch returns, and a new engine is found. */
    etcd_start();
    h_log("kv-b's update seen %.3f s after the restart", wait_event(e, XR_DIR_UPDATE, "kv-b", 20));
    H_OK(write_tag(e, pb, src, b1, 22));
    verified(b, 22, 1, "WRITE into a region registered while etcd was down");
    pid_t c_pid;
    int c = h_spawn(target, "kv-c", &c_pid);
    uint64_t c0 = h_recv_u64(c, NULL);
    h_log("after the restart, join seen in %.3f s", wait_event(e, XR_DIR_JOIN, "kv-c", 20));
    xr_peer *pc;
    H_OK(xr_peer_lookup(e, "kv-c", 5000, &pc));
    H_OK(write_tag(e, pc, src, c0, 31));
    verified(c, 31, 0, "WRITE to an engine found after etcd's restart");
    H_OK(write_tag(e, pb, src, b0, 32));
    verified(b, 32, 0, "WRITE to the engine loaded before etcd's restart");
    h_log("etcd back: ok");

    h_send_u64(b, 0);
    h_send_u64(c, 0);
    waitpid(b_pid, NULL, 0);
    waitpid(c_pid, NULL, 0);
    H_OK(xr_mem_deregister(sreg));
    xr_engine_destroy(e);
    free(src);
    h_log("ok");
    return 0;
}
