/*
 * quickstart.c - docs/quickstart.md's C transfer as one program: a decode
 * engine and a prefill engine in one process, 4 tcp rails on loopback.
 * Decode registers a pool and publishes its metadata; prefill loads it,
 * writes 8 MiB with a notification, and decode checks every byte when the
 * notification arrives. Exits 0 only if it did.
 *
 * Decode only receives, so it runs a progress thread: the target of an RMA
 * completes nothing itself, yet its provider moves the bytes only when
 * polled. Without the thread (or a loop calling xr_progress on it), a
 * program with both sides in one thread waits for nothing.
 */
#include <xrail.h>

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LEN (8u << 20)

static int fail(const char *what)
{
    fprintf(stderr, "quickstart: %s: %s\n", what, xr_engine_last_error(NULL));
    return 1;
}

static xr_engine *engine(const char *name, int progress_thread)
{
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = name;
    o.progress_thread = progress_thread;
    xr_rail_spec rails = {.provider = "tcp;ofi_rxm", .domain = "lo", .count = 4};
    o.rails = &rails;
    o.n_rail_specs = 1;
    xr_engine *e = NULL;
    if (xr_engine_create(&o, &e))
        fail(name);
    return e;
}

int main(void)
{
    xr_engine *decode = engine("decode", 1), *prefill = engine("prefill", 0);
    if (!decode || !prefill)
        return 1;
    uint8_t *pool = calloc(1, LEN), *src = malloc(LEN);
    for (size_t i = 0; i < LEN; i++)
        src[i] = (uint8_t)(i * 7 + 3);

    /* Decode: register the pool, publish the metadata. */
    xr_region *r;
    if (xr_mem_register(decode, pool, LEN, XR_MEM_HOST, 0, XR_ACCESS_WRITE, &r))
        return fail("register");
    size_t len = 0;
    xr_metadata_get(decode, NULL, &len); /* XR_ETOOSMALL tells the size */
    void *md = malloc(len);
    if (xr_metadata_get(decode, md, &len))
        return fail("metadata");

    /* Decode will wait on its event fd: asked for now, before anything it
     * waits for can happen (nothing is written to it until it is asked). */
    struct pollfd pfd = {.fd = xr_engine_fd(decode), .events = POLLIN};
    if (pfd.fd < 0)
        return fail("xr_engine_fd");

    /* Prefill: load it (in real life, from a side channel), write, notify. */
    xr_peer *peer;
    if (xr_peer_load(prefill, md, len, &peer))
        return fail("load");
    xr_iov local = {(uintptr_t)src, LEN}, remote = {(uintptr_t)pool, LEN};
    xr_xfer *x;
    if (xr_xfer_create(prefill, peer, XR_OP_WRITE, &local, &remote, 1, "done", 4, &x) ||
        xr_xfer_post(x) || xr_xfer_wait(x, 30000))
        return fail("write");
    xr_xfer_release(x);

    /* Decode: the notification comes after every byte. An event loop waits
     * on the engine's fd (here poll; epoll, libuv or asyncio alike), which
     * the progress thread makes readable; no core spins. */
    char from[64], msg[16];
    size_t n = 0;
    int rc = XR_EAGAIN;
    /* Wait first, then look: the arrival itself makes the fd readable,
     * also when it came before this loop. */
    for (int woken = 0; rc == XR_EAGAIN && woken < 100; woken++) {
        uint64_t events;
        if (poll(&pfd, 1, 30000) != 1 || read(pfd.fd, &events, sizeof events) != sizeof events)
            break; /* 30 s and nothing: rc stays XR_EAGAIN */
        n = sizeof msg;
        rc = xr_notif_get(decode, from, sizeof from, msg, &n);
    }
    if (rc)
        return fail("notification");
    int ok = n == 4 && !memcmp(msg, "done", 4) && !strcmp(from, "prefill") &&
             !memcmp(pool, src, LEN);
    printf("quickstart: '%.*s' from %s; %u bytes %s\n", (int)n, msg, from, LEN,
           ok ? "verified" : "WRONG");

    xr_peer_unload(peer);
    xr_mem_deregister(r);
    xr_engine_destroy(prefill);
    xr_engine_destroy(decode);
    free(md);
    free(src);
    free(pool);
    return ok ? 0 : 1;
}
