/*
 * delay_link.c - a link with delay and loss where the kernel has no tc
 * netem (sch_netem): a tun device in each of two network namespaces, and
 * this process between them as the wire. It holds every packet DELAY_MS
 * before passing it on, and drops LOSS_PERCENT of them at random. The TCP
 * stacks on both ends are the kernel's; test_link routes one rail's peer
 * address through the devices while a transfer runs on it.
 *
 *   delay_link NS_A NS_B IFNAME DELAY_MS LOSS_PERCENT
 *
 * Makes IFNAME in /run/netns/NS_A and /run/netns/NS_B, prints "ready" on
 * stdout, and relays until SIGTERM or SIGINT; the devices go with it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define SLOT 2048    /* a packet; the devices keep the default MTU of 1500 */
#define DEPTH 16384  /* packets held each way: 20 ms at 200 Mbit/s is about 350 */

/* One direction: packets read from `in`, written to `out` once due. */
typedef struct lane {
    int in, out;
    uint8_t (*pkt)[SLOT];
    uint16_t *len;
    uint64_t *due;
    unsigned head, tail; /* a ring: head is the next to send */
    unsigned long passed, dropped;
} lane;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* A tun device named `name` in namespace `ns`; its fd, or exits. */
static int tun_in(const char *ns, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    int nfd = open(path, O_RDONLY | O_CLOEXEC);
    if (nfd < 0 || setns(nfd, CLONE_NEWNET)) {
        fprintf(stderr, "delay_link: cannot enter %s: %s\n", path, strerror(errno));
        exit(1);
    }
    close(nfd);
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr)) {
        fprintf(stderr, "delay_link: tun device %s in %s: %s\n", name, ns, strerror(errno));
        exit(1);
    }
    return fd;
}

static void lane_init(lane *l, int in, int out)
{
    *l = (lane){.in = in, .out = out};
    l->pkt = malloc((size_t)DEPTH * SLOT);
    l->len = calloc(DEPTH, sizeof *l->len);
    l->due = calloc(DEPTH, sizeof *l->due);
    if (!l->pkt || !l->len || !l->due) {
        fprintf(stderr, "delay_link: out of memory\n");
        exit(1);
    }
}

/* xorshift: the loss needs no more than a fair coin of LOSS_PERCENT. */
static uint64_t rnd_state = 88172645463325252ull;
static unsigned rnd_percent(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return (unsigned)(rnd_state % 100);
}

/* Take what `in` has; each packet is due `delay` later, or dropped. */
static void lane_read(lane *l, uint64_t delay, unsigned loss)
{
    for (;;) {
        unsigned slot = l->tail % DEPTH;
        ssize_t n = read(l->in, l->pkt[slot], SLOT);
        if (n <= 0)
            return; /* EAGAIN: nothing more now */
        if (rnd_percent() < loss || l->tail - l->head == DEPTH) {
            l->dropped++; /* lost, or a full queue: a real link drops too */
            continue;
        }
        l->len[slot] = (uint16_t)n;
        l->due[slot] = now_ns() + delay;
        l->tail++;
    }
}

/* Pass on what is due; the wait until the next packet is (ns), or -1. */
static int64_t lane_send(lane *l, uint64_t now)
{
    while (l->head != l->tail) {
        unsigned slot = l->head % DEPTH;
        if (l->due[slot] > now)
            return (int64_t)(l->due[slot] - now);
        if (write(l->out, l->pkt[slot], l->len[slot]) < 0)
            l->dropped++; /* the far device's queue is full: dropped there */
        else
            l->passed++;
        l->head++;
    }
    return -1;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s NS_A NS_B IFNAME DELAY_MS LOSS_PERCENT\n", argv[0]);
        return 2;
    }
    uint64_t delay = strtoull(argv[4], NULL, 10) * 1000000ull;
    unsigned loss = (unsigned)strtoul(argv[5], NULL, 10);
    rnd_state ^= (uint64_t)getpid() << 20;
    int a = tun_in(argv[1], argv[3]), b = tun_in(argv[2], argv[3]);
    lane ab, ba;
    lane_init(&ab, a, b);
    lane_init(&ba, b, a);
    /* A wire should not wait for the CPU: on a busy host the devices'
     * queues would overflow while it does (best effort; needs root). */
    if (setpriority(PRIO_PROCESS, 0, -10))
        fprintf(stderr, "delay_link: setpriority: %s (relaying at normal priority)\n",
                strerror(errno));
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("ready\n");
    fflush(stdout);
    while (!stop) {
        uint64_t now = now_ns();
        int64_t w1 = lane_send(&ab, now), w2 = lane_send(&ba, now);
        int64_t wait = w1 < 0 ? w2 : w2 < 0 ? w1 : w1 < w2 ? w1 : w2;
        if (wait < 0 || wait > 100000000)
            wait = 100000000; /* look at `stop` at least every 100 ms */
        struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
        struct timespec ts = {(time_t)(wait / 1000000000), (long)(wait % 1000000000)};
        if (ppoll(p, 2, &ts, NULL) < 0 && errno != EINTR)
            break;
        if (p[0].revents & POLLIN)
            lane_read(&ab, delay, loss);
        if (p[1].revents & POLLIN)
            lane_read(&ba, delay, loss);
    }
    fprintf(stderr, "delay_link: passed %lu and %lu packets, dropped %lu and %lu (a->b, b->a)\n",
            ab.passed, ba.passed, ab.dropped, ba.dropped);
    return 0;
}
