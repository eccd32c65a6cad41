/*
 * test_link.c - real links failing under a transfer: 4 tcp rails, each a
 * shaped veth pair between two network namespaces (scripts/netns-rails.sh,
 * run by tests/faults/netns_faults.sh, which skips without root).
 *
 *   test_link PREFIX down|flap|loss|soakN|staged|staged_local|tail
 *
 * down  512 MiB WRITE, rail 1's link set down 1.5 s in; then a 512 MiB
 *       READ, the link down again 1.5 s in. Every byte verified. Printed:
 *       the time to detect, and the time to finish against the no-fault
 *       time and the goal (detect + 1.2 x bytes left / surviving rate).
 * flap  rail 1 down for 2 s in the middle of a WRITE, then up: the rail
 *       comes back (printed: how long after the link), and the next
 *       transfer moves bytes on all 4 rails.
 * loss  5% loss on rail 2, then 20 ms of delay each way, by netem or, where
 *       the kernel has none, by routing rail 2's peer address through
 *       delay_link (a tun device each side and a relay that holds and drops
 *       packets): a WRITE and a READ of 256 MiB complete each time, verified.
 * soakN N link-down WRITEs of 256 MiB (tests/bench/soak_link.sh): every
 *       one verified, and the distribution of detection and finish times.
 * staged, staged_local
 *       as `down`, 256 MiB, with the target's region staged (the request
 *       protocol: the target copies) or the initiator's (its bounce slots
 *       go by RMA): staged chunks that the dead link held fail over too.
 * tail  rail 1's link goes down as a 16 MiB WRITE starts, then as a READ
 *       does: the other rails finish their share within milliseconds and
 *       then nothing completes anywhere, as when the peer dies. The peer
 *       answers a probe on another rail, so rail 1 goes down, not the
 *       peer, and the transfer completes, verified.
 */
#define _GNU_SOURCE
#include "../integration/harness.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <time.h>

#define RAILS 4
#define BIG (512u << 20)
#define MIB (1024.0 * 1024.0)

static const char *prefix;
static char staged_side; /* 'a' or 'b': that side's engine stages its host regions */
static bool long_deadline; /* the loss case: a rail with 20 ms each way */

static void nap_ms(unsigned ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&t, NULL);
}

static void enter(char side)
{
    char path[160];
    snprintf(path, sizeof path, "/run/netns/%s-%c", prefix, side);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    H_CHECK(fd >= 0 && setns(fd, CLONE_NEWNET) == 0, "cannot enter %s: %m", path);
    close(fd);
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    H_CHECK(system(cmd) == 0, "'%s' failed", cmd);
}

static void link_set(unsigned rail, const char *state)
{
    sh("ip -n %s-a link set %s%u %s", prefix, prefix, rail, state);
}

static xr_engine *engine(const char *name, char side)
{
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = name;
    o.ignore_env = 1;
    o.progress_thread = 1;
    o.stage.host = side == staged_side;
    /* A rail whose round trip jumps from 0.05 to 40 ms can stall for more
     * than 1.5 s: TCP's retransmission timer, set for the fast path, fires
     * spuriously and backs off (CI judged the peer lost on that). A slow
     * link wants a longer deadline (docs/reliability.md, "The rules"). */
    if (long_deadline)
        o.health.deadline_ms = 5000;
    const char *lv = getenv("XR_TEST_LOG"); /* 0-3: the engines' log level, for debugging */
    if (lv && *lv)
        o.log_level = atoi(lv);
    xr_rail_spec spec[RAILS];
    char dom[RAILS][32], src[RAILS][32];
    for (unsigned i = 0; i < RAILS; i++) {
        snprintf(dom[i], sizeof dom[i], "%s%u", prefix, i);
        snprintf(src[i], sizeof src[i], "198.18.%u.%d", i, side == 'a' ? 1 : 2);
        spec[i] = (xr_rail_spec){.provider = "tcp;ofi_rxm", .domain = dom[i], .count = 1,
                                 .src_addr = src[i]};
    }
    o.rails = spec;
    o.n_rail_specs = RAILS;
    xr_engine *e;
    H_OK(xr_engine_create(&o, &e));
    return e;
}

/* The target: a region peers may read and write; it checks or fills the
 * pattern on the initiator's word. */
static void target(int fd, void *unused)
{
    (void)unused;
    h_role = "target";
    enter('b');
    xr_engine *e = engine("decode", 'b');
    uint8_t *buf = aligned_alloc(4096, BIG);
    xr_region *reg;
    H_OK(xr_mem_register(e, buf, BIG, XR_MEM_HOST, 0, XR_ACCESS_RW, &reg));
    h_send_metadata(fd, e);
    h_send_u64(fd, (uintptr_t)buf);
    for (;;) {
        uint64_t cmd = h_recv_u64(fd, NULL), tag = cmd >> 1;
        if (cmd == UINT64_MAX)
            break;
        uint64_t len = h_recv_u64(fd, NULL);
        if (cmd & 1) { /* fill, for a READ */
            h_fill(buf, len, tag, 0);
            h_send_u64(fd, 0);
        } else {
            long long bad = h_verify(buf, len, tag, 0);
            h_send_u64(fd, bad < 0 ? 0 : (uint64_t)bad + 1);
        }
    }
    H_OK(xr_mem_deregister(reg));
    xr_engine_destroy(e);
    free(buf);
}

typedef struct run {
    xr_engine *e;
    xr_peer *p;
    int fd;
    uint8_t *buf;
    uint64_t raddr;
    uint64_t tag;
} run;

static int rail_state(xr_engine *e, unsigned i)
{
    xr_rail_info ri;
    H_OK(xr_rail_info_get(e, i, &ri));
    return ri.state;
}

typedef struct outcome {
    double secs, t_detect; /* t_detect: from the fault to the rail down; -1 none */
} outcome;

/*
 * One transfer of `len` bytes, verified. With fault_at >= 0, rail `rail`'s
 * link goes down fault_at seconds in, and back up up_after seconds later
 * (never if < 0).
 */
static outcome transfer(run *u, xr_op op, size_t len, double fault_at, unsigned rail,
                        double up_after)
{
    u->tag++;
    if (op == XR_OP_WRITE) {
        h_fill(u->buf, len, u->tag, 0);
    } else {
        h_send_u64(u->fd, u->tag << 1 | 1);
        h_send_u64(u->fd, len);
        h_recv_u64(u->fd, NULL);
        memset(u->buf, 0, len);
    }
    xr_iov l = {(uintptr_t)u->buf, len}, r = {u->raddr, len};
    xr_xfer *x;
    H_OK(xr_xfer_create(u->e, u->p, op, &l, &r, 1, NULL, 0, &x));
    outcome o = {0, -1};
    double t0 = h_now(), t_fault = -1, t_up = -1;
    H_OK(xr_xfer_post(x));
    int rc;
    while ((rc = xr_xfer_status(x)) == XR_EINPROGRESS && h_now() - t0 < 120) {
        double t = h_now() - t0;
        if (fault_at >= 0 && t_fault < 0 && t >= fault_at) {
            link_set(rail, "down");
            t_fault = h_now();
        }
        if (t_fault >= 0 && o.t_detect < 0 && rail_state(u->e, rail) == XR_RAIL_DOWN)
            o.t_detect = h_now() - t_fault;
        if (t_fault >= 0 && up_after >= 0 && t_up < 0 && h_now() - t_fault >= up_after) {
            link_set(rail, "up");
            t_up = h_now();
        }
        nap_ms(5);
    }
    o.secs = h_now() - t0;
    H_CHECK(rc == 0, "%s of %zu MiB: %s: %s", op == XR_OP_WRITE ? "WRITE" : "READ", len >> 20,
            xr_err_name(rc), xr_xfer_error(x));
    xr_xfer_release(x);
    if (op == XR_OP_WRITE) {
        h_send_u64(u->fd, u->tag << 1);
        h_send_u64(u->fd, len);
        uint64_t bad = h_recv_u64(u->fd, NULL);
        H_CHECK(bad == 0, "WRITE: byte %llu differs at the target", (unsigned long long)bad - 1);
    } else {
        long long bad = h_verify(u->buf, len, u->tag, 0);
        H_CHECK(bad < 0, "READ: byte %lld differs", bad);
    }
    if (t_fault >= 0 && up_after < 0)
        link_set(rail, "up");
    return o;
}

/* Wait for rail i to come back after its link did; the seconds it took. */
static double wait_up(run *u, unsigned i, double limit)
{
    double t0 = h_now();
    while (rail_state(u->e, i) != XR_RAIL_UP && h_now() - t0 < limit)
        nap_ms(10);
    H_CHECK(rail_state(u->e, i) == XR_RAIL_UP, "rail %u did not come back within %.0f s", i,
            limit);
    return h_now() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void check_fault(const char *what, outcome base, outcome f, double fault_at,
                        unsigned deadline_ms, size_t len)
{
    H_CHECK(f.t_detect >= 0, "%s: the rail never went down", what);
    /* The goal: detection, then what was left at the fault at 3/4 of the
     * no-fault rate, with 20% slack. */
    double rate = (double)len / base.secs, left = (double)len - rate * fault_at;
    double goal = fault_at + f.t_detect + 1.2 * left / (0.75 * rate);
    h_log("%s: detected in %.2f s; finished in %.2f s against %.2f s without the fault "
          "(goal %.2f s: %s)", what, f.t_detect, f.secs, base.secs, goal,
          f.secs <= goal ? "met" : "missed");
    printf("faults.link.%s: detect %.2f s, finish %.2f s, no-fault %.2f s, goal %.2f s\n", what,
           f.t_detect, f.secs, base.secs, goal);
    H_CHECK(f.t_detect * 1000 <= deadline_ms + 1000, "%s: detection took %.2f s (deadline %u ms)",
            what, f.t_detect, deadline_ms);
}

/* Rail 2 with DELAY_MS each way and LOSS percent dropped, for a WRITE and a
 * READ of 256 MiB: netem where the kernel has it, else rail 2's peer
 * address routed through `relay` (delay_link), whose devices go when it
 * ends, and the route with them. The rail's connections stay up. */
static void impair(run *u, const char *relay, unsigned delay_ms, unsigned loss, double base)
{
    pid_t pid = -1;
    char dev[IFNAMSIZ];
    snprintf(dev, sizeof dev, "%sd", prefix);
    if (relay) {
        char d[16], l[16], na[64], nb[64];
        snprintf(d, sizeof d, "%u", delay_ms);
        snprintf(l, sizeof l, "%u", loss);
        snprintf(na, sizeof na, "%s-a", prefix);
        snprintf(nb, sizeof nb, "%s-b", prefix);
        int pfd[2];
        H_CHECK(pipe(pfd) == 0, "pipe: %m");
        pid = fork();
        H_CHECK(pid >= 0, "fork: %m");
        if (pid == 0) {
            /* The wire goes with the test, even when a check ends it. */
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            dup2(pfd[1], 1);
            /* libfabric's sockets are not close-on-exec: a relay holding the
             * rails' listeners kept a reset rail from binding its address
             * again (EADDRINUSE until the relay ended). */
            closefrom(3);
            execl(relay, relay, na, nb, dev, d, l, (char *)NULL);
            _exit(127);
        }
        close(pfd[1]);
        char ready[16] = "";
        ssize_t n = read(pfd[0], ready, sizeof ready - 1);
        close(pfd[0]);
        H_CHECK(n >= 5 && !strncmp(ready, "ready", 5), "%s did not start", relay);
    }
    for (int k = 0; k < 2; k++) {
        char side = k ? 'b' : 'a';
        if (!relay) { /* netem replaces the rail's shaper, rate included */
            sh("tc -n %s-%c qdisc replace dev %s2 root netem rate 200mbit loss %u%% delay %ums",
               prefix, side, prefix, loss, delay_ms);
            continue;
        }
        /* A long device queue: the relay is a process, and on a busy host
         * it may be off the CPU for tens of milliseconds; tun's default
         * ring of 500 packets then drops, and TCP backs off for seconds. */
        sh("ip -n %s-%c link set %s txqueuelen 20000 up", prefix, side, dev);
        sh("tc -n %s-%c qdisc add dev %s root tbf rate 200mbit burst 131072 latency 400ms",
           prefix, side, dev);
        sh("ip -n %s-%c route replace 198.18.2.%d/32 dev %s", prefix, side, k ? 1 : 2, dev);
    }
    /* Idle past TCP's retransmission timeout, so that the connections
     * start again slowly on the new path, and let them learn its round
     * trip on a small WRITE before the measured ones. */
    nap_ms(1000);
    transfer(u, XR_OP_WRITE, 4u << 20, -1, 0, -1);
    outcome w = transfer(u, XR_OP_WRITE, BIG / 2, -1, 0, -1);
    outcome r = transfer(u, XR_OP_READ, BIG / 2, -1, 0, -1);
    if (relay) {
        kill(pid, SIGTERM);
        int st;
        waitpid(pid, &st, 0);
    } else {
        for (int k = 0; k < 2; k++)
            sh("tc -n %s-%c qdisc replace dev %s2 root netem rate 200mbit", prefix, k ? 'b' : 'a',
               prefix);
    }
    printf("faults.link.loss: 256 MiB WRITE %.2f s, READ %.2f s with %u%% loss and %u ms of "
           "delay each way on rail 2 (%s); WRITE %.2f s before it\n", w.secs, r.secs, loss,
           delay_ms, relay ? "delay_link: this kernel has no netem" : "netem", base);
    /* A rail the slow path took down (its queue waited past the path rule)
     * comes back through its probes once the link is itself again. */
    if (rail_state(u->e, 2) != XR_RAIL_UP)
        h_log("rail 2, taken down while impaired, came back %.2f s after", wait_up(u, 2, 30));
}

static void initiator(run *u, const char *mode)
{
    unsigned deadline = h_deadline_ms();
    /* The peer answers once: first contact has a longer deadline. */
    transfer(u, XR_OP_WRITE, 1 << 20, -1, 0, -1);
    if (!strcmp(mode, "down")) {
        outcome bw = transfer(u, XR_OP_WRITE, BIG, -1, 0, -1);
        outcome fw = transfer(u, XR_OP_WRITE, BIG, 1.5, 1, -1);
        check_fault("down.write", bw, fw, 1.5, deadline, BIG);
        h_log("rail 1 came back %.2f s after its link", wait_up(u, 1, 30));
        outcome br = transfer(u, XR_OP_READ, BIG, -1, 0, -1);
        /* The link returns after 6 s: libfabric 1.x rxm cannot have a rail
         * holding READs reset (it crashes), so there the READs the rail
         * held finish when it is back; 2.x fails them over. */
        outcome fr = transfer(u, XR_OP_READ, BIG, 1.5, 1, 6.0);
        check_fault("down.read", br, fr, 1.5, deadline, BIG);
    } else if (!strncmp(mode, "soak", 4)) {
        /* soakN: N link-down WRITEs of 256 MiB, the link back after each;
         * the distribution of detection and finish times (tests/bench). */
        int n = atoi(mode + 4) > 0 ? atoi(mode + 4) : 10;
        double det[1000], fin[1000];
        if (n > 1000)
            n = 1000;
        for (int k = 0; k < n; k++) {
            outcome f = transfer(u, XR_OP_WRITE, BIG / 2, 1.0, 1, -1);
            H_CHECK(f.t_detect >= 0, "soak %d: the rail never went down", k);
            det[k] = f.t_detect, fin[k] = f.secs;
            wait_up(u, 1, 60);
            h_log("soak %d/%d: detected %.2f s, finished %.2f s", k + 1, n, det[k], fin[k]);
        }
        qsort(det, (size_t)n, sizeof det[0], cmp_double);
        qsort(fin, (size_t)n, sizeof fin[0], cmp_double);
        printf("faults.link.soak: %d runs, 0 hangs, 0 bytes lost; detection min %.2f median %.2f "
               "p90 %.2f max %.2f s; finish min %.2f median %.2f p90 %.2f max %.2f s\n", n,
               det[0], det[n / 2], det[n * 9 / 10], det[n - 1], fin[0], fin[n / 2],
               fin[n * 9 / 10], fin[n - 1]);
    } else if (!strncmp(mode, "staged", 6)) {
        outcome bw = transfer(u, XR_OP_WRITE, BIG / 2, -1, 0, -1);
        outcome fw = transfer(u, XR_OP_WRITE, BIG / 2, 1.5, 1, -1);
        char what[64];
        snprintf(what, sizeof what, "%s.write", mode);
        check_fault(what, bw, fw, 1.5, deadline, BIG / 2);
        h_log("rail 1 came back %.2f s after its link", wait_up(u, 1, 30));
        outcome br = transfer(u, XR_OP_READ, BIG / 2, -1, 0, -1);
        /* As in `down`: on 1.x a rail holding RMA READs (staged_local's)
         * is not reset, and they finish when the link is back. */
        outcome fr = transfer(u, XR_OP_READ, BIG / 2, 1.5, 1, 6.0);
        snprintf(what, sizeof what, "%s.read", mode);
        check_fault(what, br, fr, 1.5, deadline, BIG / 2);
        uint64_t staged = H_RAILS_SUM(u->e, staged), failovers = H_RAILS_SUM(u->e, failovers);
        /* Proof that the chunks were staged, and that some failed over. */
        H_CHECK(staged > 0, "%s: no chunk went through the bounce slots", mode);
        H_CHECK(failovers > 0, "%s: no staged chunk failed over", mode);
        printf("faults.link.%s: %llu staged chunks, %llu failed over\n", mode,
               (unsigned long long)staged, (unsigned long long)failovers);
    } else if (!strcmp(mode, "tail")) {
        size_t len = 16u << 20;
        outcome bw = transfer(u, XR_OP_WRITE, len, -1, 0, -1);
        uint64_t probes = H_RAILS_SUM(u->e, probes);
        outcome fw = transfer(u, XR_OP_WRITE, len, 0, 1, -1);
        H_CHECK(fw.t_detect >= 0, "tail.write: rail 1 never went down");
        h_log("rail 1 came back %.2f s after its link", wait_up(u, 1, 30));
        /* The link back after 6 s, as in `down`: libfabric 1.x cannot
         * reset a rail that holds READs. */
        outcome fr = transfer(u, XR_OP_READ, len, 0, 1, 6.0);
        H_CHECK(fr.t_detect >= 0, "tail.read: rail 1 never went down");
        uint64_t after = H_RAILS_SUM(u->e, probes);
        printf("faults.link.tail: 16 MiB WRITE %.2f s (rail 1 down %.2f s after its link), READ "
               "%.2f s (%.2f s); %.2f s without the fault; %llu probes\n", fw.secs, fw.t_detect,
               fr.secs, fr.t_detect, bw.secs, (unsigned long long)(after - probes));
        H_CHECK(fw.t_detect * 1000 <= deadline + 1000 && fr.t_detect * 1000 <= deadline + 1000,
                "tail: detection took %.2f / %.2f s (deadline %u ms)", fw.t_detect, fr.t_detect,
                deadline);
    } else if (!strcmp(mode, "flap")) {
        transfer(u, XR_OP_WRITE, BIG / 2, 1.0, 1, 2.0);
        double back = wait_up(u, 1, 30);
        h_log("flap: rail 1 came back %.2f s after the link's 2 s outage ended", back);
        xr_rail_info before, after;
        H_OK(xr_rail_info_get(u->e, 1, &before));
        transfer(u, XR_OP_WRITE, 64 << 20, -1, 0, -1);
        H_OK(xr_rail_info_get(u->e, 1, &after));
        uint64_t moved = after.counters.tx_bytes - before.counters.tx_bytes;
        H_CHECK(moved > 0, "flap: the next transfer did not use rail 1");
        printf("faults.link.flap: rail 1 back %.2f s after the link; next transfer put %.1f MiB "
               "on it\n", back, moved / MIB);
    } else {
        outcome base = transfer(u, XR_OP_WRITE, BIG / 2, -1, 0, -1);
        const char *relay = getenv("XR_DELAY_LINK");
        /* Loss and delay one at a time: both at once leave TCP about 0.3
         * MB/s on the rail (1.22 segments a round trip / sqrt(loss)), a
         * slow rail rather than a faulty one. */
        impair(u, relay && *relay ? relay : NULL, 0, 5, base.secs);
        impair(u, relay && *relay ? relay : NULL, 20, 0, base.secs);
    }
    for (unsigned i = 0; i < RAILS; i++) {
        xr_rail_info ri;
        H_OK(xr_rail_info_get(u->e, i, &ri));
        h_log("rail %u: %s, %llu stalls, %llu resets, %llu failovers, %llu probes; last error: %s",
              i, ri.up ? "up" : "down", (unsigned long long)ri.counters.stalls,
              (unsigned long long)ri.counters.resets, (unsigned long long)ri.counters.failovers,
              (unsigned long long)ri.counters.probes, ri.last_error);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PREFIX down|flap|loss|soakN|staged|staged_local|tail\n",
                argv[0]);
        return 2;
    }
    prefix = argv[1];
    long_deadline = !strcmp(argv[2], "loss");
    if (!strcmp(argv[2], "staged"))
        staged_side = 'b';
    else if (!strcmp(argv[2], "staged_local"))
        staged_side = 'a';
    pid_t pid;
    int fd = h_spawn(target, NULL, &pid);
    h_role = "initiator";
    enter('a');
    run u = {.fd = fd};
    u.e = engine("prefill", 'a');
    u.buf = aligned_alloc(4096, BIG);
    xr_region *reg;
    H_OK(xr_mem_register(u.e, u.buf, BIG, XR_MEM_HOST, 0, XR_ACCESS_NONE, &reg));
    u.p = h_load_peer(u.fd, u.e);
    u.raddr = h_recv_u64(u.fd, NULL);
    initiator(&u, argv[2]);
    h_send_u64(u.fd, UINT64_MAX);
    H_OK(xr_peer_unload(u.p));
    H_OK(xr_mem_deregister(reg));
    xr_engine_destroy(u.e);
    free(u.buf);
    int st;
    waitpid(pid, &st, 0);
    H_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the target failed (status 0x%x)", st);
    return 0;
}
