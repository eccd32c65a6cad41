/*
 * test_policy.c - Lua rail policies on real shm rails: the split follows
 * the script, Lua runs once per class of transfers, a reload changes the
 * next transfer's split but not one in flight, and a broken script is
 * refused while the old one keeps working.
 *
 * usage: test_policy SCRIPTS_DIR
 */
#include "harness.h"

#include <sys/stat.h>
#include <sys/syscall.h>

#define SIZE (4u << 20)

static const char *dir;
static xr_engine *a, *b;
static xr_peer *peer;
static uint8_t *src, *dst;

static const char *policy(const char *name)
{
    static char path[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/policy/%s", dir, name);
    return path[k];
}

/* Two engines live in this process: progress both while waiting. */
static int wait_pair(xr_xfer *x, xr_engine *e1, xr_engine *e2)
{
    int rc;
    while ((rc = xr_xfer_status(x)) == XR_EINPROGRESS) {
        xr_progress(e1);
        xr_progress(e2);
    }
    return rc;
}

static void wait_both(xr_xfer *x)
{
    int rc = wait_pair(x, a, b);
    H_CHECK(rc == 0, "transfer: %s: %s", xr_err_name(rc), xr_xfer_error(x));
}

static xr_peer *connect_pair(xr_engine *from, xr_engine *to)
{
    size_t len = 0;
    xr_metadata_get(to, NULL, &len);
    void *md = malloc(len);
    H_OK(xr_metadata_get(to, md, &len));
    xr_peer *p;
    H_OK(xr_peer_load(from, md, len, &p));
    free(md);
    return p;
}

/* Post x (src -> dst, SIZE bytes, made with `tag`) from e1 to e2, verify
 * every byte, and give the bytes each of e1's rails moved. */
static void post_measured(xr_engine *e1, xr_engine *e2, xr_xfer *x, uint64_t tag,
                          uint64_t *per_rail)
{
    xr_rail_info before[4], after;
    for (unsigned i = 0; i < 4; i++)
        H_OK(xr_rail_info_get(e1, i, &before[i]));
    H_OK(xr_xfer_post(x));
    int rc = wait_pair(x, e1, e2);
    H_CHECK(rc == 0, "transfer: %s: %s", xr_err_name(rc), xr_xfer_error(x));
    long long bad = h_verify(dst, SIZE, tag, 0);
    H_CHECK(bad < 0, "byte %lld wrong", bad);
    for (unsigned i = 0; i < 4; i++) {
        H_OK(xr_rail_info_get(e1, i, &after));
        per_rail[i] = after.counters.tx_bytes - before[i].counters.tx_bytes;
    }
}

/* A SIZE-byte WRITE from e1 to peer p on e2, measured and released. */
static void write_measured(xr_engine *e1, xr_engine *e2, xr_peer *p, uint64_t tag,
                           uint64_t *per_rail)
{
    h_fill(src, SIZE, tag, 0);
    xr_iov l = {(uintptr_t)src, SIZE}, r = {(uintptr_t)dst, SIZE};
    xr_xfer *x;
    H_OK(xr_xfer_create(e1, p, XR_OP_WRITE, &l, &r, 1, NULL, 0, &x));
    post_measured(e1, e2, x, tag, per_rail);
    xr_xfer_release(x);
}

static void run_and_verify(xr_xfer *x, uint64_t tag, uint64_t *per_rail)
{
    post_measured(a, b, x, tag, per_rail);
}

static const char *write_tmp(const char *body);

/* register(region, rails): the decode side puts its writable region on
 * rails 2 and 3 only; the prefill side's traffic follows the keys. */
static void register_hook(void)
{
    h_policy = write_tmp(
        "local P = {}\n"
        "function P.plan(x, rails, peer)\n"
        "  local u = {} for _, r in ipairs(rails) do if r.state == 'up' then u[#u + 1] = r.index end end\n"
        "  return { rails = u }\n"
        "end\n"
        "function P.register(region, rails)\n"
        "  if region.access == 'write' then return { 2, 3 } end\n"
        "  if region.len == 12345 then return { 7 } end\n"
        "  return { 0, 1, 2, 3 }\n"
        "end\n"
        "return P\n");
    xr_engine *a2, *b2;
    H_OK(h_engine("decode2", "shm", 4, 0, &b2));
    const char *pol = h_policy;
    h_policy = NULL;
    H_OK(h_engine("prefill2", "shm", 4, 0, &a2));
    xr_region *rs, *rd, *bad;
    H_OK(xr_mem_register(a2, src, SIZE, XR_MEM_HOST, 0, XR_ACCESS_NONE, &rs));
    H_OK(xr_mem_register(b2, dst, SIZE, XR_MEM_HOST, 0, XR_ACCESS_WRITE, &rd));
    int rc = xr_mem_register(b2, src, 12345, XR_MEM_HOST, 0, XR_ACCESS_READ, &bad);
    H_CHECK(rc == XR_ESCRIPT && !bad && strstr(xr_engine_last_error(NULL), "register: returned "
            "rails[1]"), "a register hook answering rail 7 gave %s: %s", xr_err_name(rc),
            xr_engine_last_error(NULL));
    h_log("ok: register answering a rail that does not exist: %s", xr_engine_last_error(NULL));
    xr_peer *p = connect_pair(a2, b2);
    uint64_t per[4];
    write_measured(a2, b2, p, 11, per);
    H_CHECK(per[0] == 0 && per[1] == 0 && per[2] + per[3] == SIZE && per[2] && per[3],
            "register kept the region on rails 2 and 3, but bytes went %llu/%llu/%llu/%llu",
            (unsigned long long)per[0], (unsigned long long)per[1], (unsigned long long)per[2],
            (unsigned long long)per[3]);
    h_log("ok: register put the peer's region on rails 2 and 3: bytes 0/0/%llu/%llu",
          (unsigned long long)per[2], (unsigned long long)per[3]);
    H_OK(xr_peer_unload(p));
    H_OK(xr_mem_deregister(rs));
    H_OK(xr_mem_deregister(rd));
    xr_engine_destroy(a2);
    xr_engine_destroy(b2);
    unlink(pol);
}

/* on_rail_error(rail, err): a WRITE to a region the target deregistered
 * fails on a tcp rail; the hook answers "disable", plans drop the rail, and
 * the chunk goes to the other rail, where it fails too (the key is dead on
 * every rail), and that rail is disabled as well. */
static void rail_error_hook(void)
{
    h_policy = write_tmp(
        "local P = {}\n"
        "function P.plan(x, rails, peer)\n"
        "  local u = {} for _, r in ipairs(rails) do if r.state == 'up' then u[#u + 1] = r.index end end\n"
        "  return { rails = u }\n"
        "end\n"
        "function P.on_rail_error(rail, err)\n"
        "  print('rail ' .. rail.index .. ' failed: ' .. err.message)\n"
        "  return 'disable'\n"
        "end\n"
        "return P\n");
    const char *pol = h_policy;
    xr_engine *a3, *b3;
    H_OK(h_engine("prefill3", "tcp;ofi_rxm", 2, 0, &a3));
    h_policy = NULL;
    H_OK(h_engine("decode3", "tcp;ofi_rxm", 2, 0, &b3));
    xr_region *rs, *rd;
    H_OK(xr_mem_register(a3, src, SIZE, XR_MEM_HOST, 0, XR_ACCESS_NONE, &rs));
    H_OK(xr_mem_register(b3, dst, SIZE, XR_MEM_HOST, 0, XR_ACCESS_WRITE, &rd));
    xr_peer *p = connect_pair(a3, b3);
    H_OK(xr_mem_deregister(rd)); /* the keys a3 holds are now dead */
    xr_iov l = {(uintptr_t)src, 4096}, r = {(uintptr_t)dst, 4096};
    xr_xfer *x;
    H_OK(xr_xfer_create(a3, p, XR_OP_WRITE, &l, &r, 1, NULL, 0, &x));
    unsigned failed = xr_xfer_chunk_count(x, 0) ? 0 : 1;
    H_OK(xr_xfer_post(x));
    int rc = wait_pair(x, a3, b3);
    H_CHECK(rc == XR_EIO, "WRITE to a deregistered region gave %s: %s", xr_err_name(rc),
            xr_xfer_error(x));
    xr_xfer_release(x);
    xr_progress(a3); /* the hook runs from progress */
    xr_policy_stats st;
    H_OK(xr_policy_stats_get(a3, &st));
    xr_rail_info ri, ro;
    H_OK(xr_rail_info_get(a3, failed, &ri));
    H_OK(xr_rail_info_get(a3, 1 - failed, &ro));
    H_CHECK(st.rail_error_calls >= 2 && st.rails_disabled == 2 && !ri.up && !ro.up &&
            ri.state == XR_RAIL_DOWN && ri.counters.failovers == 1,
            "on_rail_error: %llu calls, %llu disabled, rail %u up=%d state %d, %llu failovers",
            (unsigned long long)st.rail_error_calls, (unsigned long long)st.rails_disabled,
            failed, ri.up, ri.state, (unsigned long long)ri.counters.failovers);
    h_log("ok: on_rail_error ran %llu time(s), took rail %u out (%s), and the chunk failed "
          "over to rail %u, which failed too: %s", (unsigned long long)st.rail_error_calls,
          failed, ri.reason, 1 - failed, ro.reason);
    H_OK(xr_rail_set_state(a3, 1 - failed, 1));
    /* The next transfer is planned without that rail, and it succeeds. */
    H_OK(xr_peer_unload(p));
    H_OK(xr_mem_register(b3, dst, SIZE, XR_MEM_HOST, 0, XR_ACCESS_WRITE, &rd));
    p = connect_pair(a3, b3);
    h_fill(src, SIZE, 12, 0);
    l.len = r.len = SIZE;
    H_OK(xr_xfer_create(a3, p, XR_OP_WRITE, &l, &r, 1, NULL, 0, &x));
    H_CHECK(xr_xfer_chunk_count(x, (int)failed) == 0, "the disabled rail was planned");
    H_OK(xr_xfer_post(x));
    H_CHECK(wait_pair(x, a3, b3) == 0, "WRITE after the rail was disabled: %s", xr_xfer_error(x));
    xr_xfer_release(x);
    H_CHECK(h_verify(dst, SIZE, 12, 0) < 0, "bytes after the rail was disabled");
    h_log("ok: the next 4 MiB WRITE avoided rail %u and arrived whole", failed);
    H_OK(xr_peer_unload(p));
    H_OK(xr_mem_deregister(rs));
    H_OK(xr_mem_deregister(rd));
    xr_engine_destroy(a3);
    xr_engine_destroy(b3);
    unlink(pol);
}

static xr_xfer *make(uint64_t tag)
{
    h_fill(src, SIZE, tag, 0);
    xr_iov l = {(uintptr_t)src, SIZE}, r = {(uintptr_t)dst, SIZE};
    xr_xfer *x;
    H_OK(xr_xfer_create(a, peer, XR_OP_WRITE, &l, &r, 1, NULL, 0, &x));
    return x;
}

static void expect_share(const uint64_t *per, const double *share, const char *what)
{
    for (unsigned i = 0; i < 4; i++) {
        double want = share[i] * SIZE;
        H_CHECK(per[i] + 4096 >= want && per[i] <= want + 4096,
                "%s: rail %u moved %llu bytes, its share is %.0f", what, i,
                (unsigned long long)per[i], want);
    }
    h_log("ok: %s: %llu / %llu / %llu / %llu bytes", what, (unsigned long long)per[0],
          (unsigned long long)per[1], (unsigned long long)per[2], (unsigned long long)per[3]);
}

static const char *write_tmp(const char *body)
{
    static char path[4][64];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "/tmp/xrail-policy-XXXXXX");
    int fd = mkstemp(path[k]);
    H_CHECK(fd >= 0, "mkstemp");
    h_write_all(fd, body, strlen(body));
    close(fd);
    return path[k];
}

static void expect_rejected(const char *body, const char *needle)
{
    const char *path = write_tmp(body);
    xr_policy_stats before, after;
    H_OK(xr_policy_stats_get(a, &before));
    int rc = xr_policy_reload(a, path);
    H_CHECK(rc == XR_ESCRIPT || rc == XR_ENORAIL, "%s: reload gave %s", needle,
            xr_err_name(rc));
    H_CHECK(strstr(xr_engine_last_error(NULL), needle), "message '%s' lacks '%s'",
            xr_engine_last_error(NULL), needle);
    H_OK(xr_policy_stats_get(a, &after));
    H_CHECK(after.reloads == before.reloads, "a broken script counted as a reload");
    h_log("ok: rejected: %s", xr_engine_last_error(NULL));
    unlink(path);
    /* The old policy (single_rail) still plans, and bytes still move. */
    uint64_t per[4];
    xr_xfer *x = make(99);
    run_and_verify(x, 99, per);
    xr_xfer_release(x);
    H_CHECK(per[0] == SIZE, "after a rejected reload, rail 0 moved %llu bytes",
            (unsigned long long)per[0]);
}

/* The rails listed in an explain text, as a mask. */
static unsigned explained_rails(const char *text)
{
    unsigned m = 0;
    for (unsigned i = 0; i < 4; i++) {
        char key[16];
        snprintf(key, sizeof key, "  rail %u:", i);
        if (strstr(text, key))
            m |= 1u << i;
    }
    return m;
}

/* numa_local.lua over a declared topology: rails 0-1 sit by GPU 0 on NUMA
 * node 0, rails 2-3 by GPU 1 on node 1. */
static void numa_local(void)
{
    xr_rail_spec specs[4];
    for (int i = 0; i < 4; i++)
        specs[i] = (xr_rail_spec){.provider = "shm", .count = 1,
                                  .declared = XR_DECL_NUMA | XR_DECL_GPU | XR_DECL_PCI,
                                  .numa_node = i / 2, .gpu = i / 2, .pci = "0000:4f:00.0"};
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = "prefill4";
    o.ignore_env = 1;
    o.rails = specs;
    o.n_rail_specs = 4;
    o.policy = policy("numa_local.lua");
    xr_engine *a4, *b4;
    H_OK(xr_engine_create(&o, &a4));
    H_OK(h_engine("decode4", "shm", 4, 0, &b4));
    xr_rail_info ri;
    H_OK(xr_rail_info_get(a4, 3, &ri));
    H_CHECK(ri.numa_node == 1 && ri.gpu == 1 && !strcmp(ri.pci, "0000:4f:00.0"),
            "declared topology not kept: numa %d gpu %d pci %s", ri.numa_node, ri.gpu, ri.pci);
    xr_region *rs, *rd;
    H_OK(xr_mem_register(a4, src, SIZE, XR_MEM_HOST, 0, XR_ACCESS_NONE, &rs));
    H_OK(xr_mem_register(b4, dst, SIZE, XR_MEM_HOST, 0, XR_ACCESS_WRITE, &rd));
    xr_peer *p = connect_pair(a4, b4);
    static const struct { xr_mem_kind kind; int device; unsigned want; const char *what; } c[] = {
        {XR_MEM_CUDA, 1, 0xc, "cuda:1"}, {XR_MEM_CUDA, 0, 0x3, "cuda:0"},
        {XR_MEM_HOST, 1, 0xc, "host on NUMA node 1"}, {XR_MEM_HOST, -1, 0xf, "host, node unknown"},
        {XR_MEM_CUDA, 5, 0xf, "cuda:5, no rail near it"},
    };
    char text[2048];
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        H_OK(xr_policy_explain(a4, p, XR_OP_WRITE, c[i].kind, c[i].device, SIZE, text, sizeof text));
        H_CHECK(explained_rails(text) == c[i].want, "numa_local, %s: rails 0x%x, want 0x%x:\n%s",
                c[i].what, explained_rails(text), c[i].want, text);
        h_log("ok: numa_local.lua, %s: rails mask 0x%x", c[i].what, c[i].want);
    }
    /* A real host transfer follows the node the kernel reports for the buffer. */
    void *page = src;
    int node = -1;
    if (syscall(SYS_move_pages, 0, 1UL, &page, NULL, &node, 0) != 0 || node < 0)
        node = -1;
    unsigned want = node == 0 ? 0x3 : node == 1 ? 0xc : 0xf;
    uint64_t per[4];
    write_measured(a4, b4, p, 13, per);
    unsigned used = 0;
    for (unsigned i = 0; i < 4; i++)
        used |= (per[i] != 0) << i;
    H_CHECK(used == want, "buffer on NUMA node %d: rails 0x%x carried it, want 0x%x", node, used,
            want);
    h_log("ok: a host buffer on NUMA node %d went over rails 0x%x", node, used);
    H_OK(xr_peer_unload(p));
    H_OK(xr_mem_deregister(rs));
    H_OK(xr_mem_deregister(rd));
    xr_engine_destroy(a4);
    xr_engine_destroy(b4);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return fprintf(stderr, "usage: %s SCRIPTS_DIR\n", argv[0]), 2;
    dir = argv[1];
    h_require_provider("shm");

    /* Four rails declared at 400, 400, 100 and 100 Mbit/s. */
    xr_rail_spec specs[4];
    static const uint64_t speed[4] = {400, 400, 100, 100};
    for (int i = 0; i < 4; i++)
        specs[i] = (xr_rail_spec){.provider = "shm", .count = 1, .speed_mbps = speed[i]};
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = "prefill";
    o.ignore_env = 1;
    o.rails = specs;
    o.n_rail_specs = 4;
    o.policy = policy("weighted.lua");
    H_OK(xr_engine_create(&o, &a));
    H_OK(h_engine("decode", "shm", 4, 0, &b));
    src = aligned_alloc(4096, SIZE);
    dst = aligned_alloc(4096, SIZE);
    xr_region *rs, *rd;
    H_OK(xr_mem_register(a, src, SIZE, XR_MEM_HOST, 0, XR_ACCESS_NONE, &rs));
    H_OK(xr_mem_register(b, dst, SIZE, XR_MEM_HOST, 0, XR_ACCESS_WRITE, &rd));
    peer = connect_pair(a, b);

    /* weighted.lua: 40/40/10/10, byte for byte. */
    xr_policy_stats st0, st;
    H_OK(xr_policy_stats_get(a, &st0));
    H_CHECK(st0.scripted && st0.reloads == 1, "the policy from the options is not loaded");
    uint64_t per[4];
    xr_xfer *x = make(1);
    run_and_verify(x, 1, per);
    xr_xfer_release(x);
    expect_share(per, (const double[]){0.4, 0.4, 0.1, 0.1}, "weighted.lua");

    /* Lua runs once per class: 100 more transfers of the same shape ask nothing. */
    H_OK(xr_policy_stats_get(a, &st));
    uint64_t calls = st.plan_calls;
    for (int i = 0; i < 100; i++) {
        x = make(2);
        xr_xfer_release(x);
    }
    H_OK(xr_policy_stats_get(a, &st));
    H_CHECK(st.plan_calls == calls, "plan() ran %llu more times for one class",
            (unsigned long long)(st.plan_calls - calls));
    H_CHECK(st.plan_hits >= 100, "only %llu cache hits", (unsigned long long)st.plan_hits);
    h_log("ok: 101 transfers of one class, plan() ran %llu time(s) in all, %llu cache hits",
          (unsigned long long)st.plan_calls, (unsigned long long)st.plan_hits);

    /* explain shows the policy and the split. */
    char text[2048];
    H_OK(xr_policy_explain(a, peer, XR_OP_WRITE, XR_MEM_HOST, 0, SIZE, text, sizeof text));
    H_CHECK(strstr(text, "weighted.lua") && strstr(text, "rail 2: weight share 10.0%") &&
                strstr(text, "rail 0: weight share 40.0%"),
            "explain:\n%s", text);
    h_log("explain:\n%s", text);

    /* Reload with a transfer created (and in flight) under the old policy. */
    xr_xfer *old = make(3);
    size_t old_chunks[4];
    for (int i = 0; i < 4; i++)
        old_chunks[i] = xr_xfer_chunk_count(old, i);
    H_OK(xr_xfer_post(old));
    H_OK(xr_policy_reload(a, policy("single_rail.lua")));
    for (int i = 0; i < 4; i++)
        H_CHECK(xr_xfer_chunk_count(old, i) == old_chunks[i], "reload changed a planned transfer");
    wait_both(old);
    H_CHECK(h_verify(dst, SIZE, 3, 0) < 0, "transfer in flight across the reload");
    xr_xfer_release(old);
    x = make(4);
    run_and_verify(x, 4, per);
    xr_xfer_release(x);
    expect_share(per, (const double[]){1, 0, 0, 0}, "after reload to single_rail.lua");

    /* Broken scripts are refused and single_rail.lua stays. */
    expect_rejected("local P = {} function P.plan( return P", "load:");
    expect_rejected("return {}", "has no plan(xfer, rails, peer) function");
    expect_rejected("return 42", "must return a table of hooks");
    expect_rejected("return { plan = function() return 5 end }", "plan: returned a number");
    expect_rejected("return { plan = function() return { rails = {} } end }", "no rails");
    expect_rejected("return { plan = function() return { rails = '0,1' } end }",
                    "rails is a string; it must be a list of rail indexes");
    expect_rejected("return { plan = function() return { rails = { 0 }, stripe_mn = 4096 } end }",
                    "unknown key 'stripe_mn'");
    expect_rejected("return { plan = function() return { rails = { 99 } } end }",
                    "rails[1] is not a rail index 0..3");
    expect_rejected("return { plan = function() return { rails = { 'a' } } end }",
                    "rails[1] is not a rail index");
    expect_rejected("return { plan = function() return { rails = { 0, 0 } } end }",
                    "lists rail 0 twice");
    expect_rejected("return { plan = function() return { rails = { 0, 1 }, weights = { 1, -2 } } "
                    "end }", "weights[2] must be a number");
    expect_rejected("return { plan = function() return { rails = { 0 }, weights = { 1e7 } } end }",
                    "must be a number in (0, 1e6]");
    expect_rejected("return { plan = function() return { rails = { 0 }, chunk = 0 } end }",
                    "chunk must be an integer > 0");
    expect_rejected("return { plan = function() while true do end end }", "instruction budget");
    /* plan()'s answer is read under the sandbox too: a trap in its
     * metatable is the script's error, not Lua's panic. */
    expect_rejected("return { plan = function() return setmetatable({}, { __index = "
                    "function(t, k) error('trap ' .. k) end }) end }", "trap rails");
    expect_rejected("return { plan = function() local t = {} while true do "
                    "t[#t + 1] = string.rep('x', 65536) end end }", "memory");
    expect_rejected("return { plan = function() return os.execute('true') end }",
                    "undefined global 'os'");
    expect_rejected("return { plan = function() state = 1 return { rails = { 0 } } end }",
                    "attempt to write global 'state'");
    H_CHECK(xr_policy_reload(a, "/nonexistent/policy.lua") == XR_EINVAL, "missing file");

    /* A rail state change re-asks the policy: even_stripe without rail 1. */
    H_OK(xr_policy_reload(a, policy("even_stripe.lua")));
    H_OK(xr_rail_set_state(a, 1, 0));
    x = make(5);
    H_CHECK(xr_xfer_chunk_count(x, 1) == 0, "rail 1 is down but planned");
    run_and_verify(x, 5, per);
    xr_xfer_release(x);
    expect_share(per, (const double[]){1.0 / 3, 0, 1.0 / 3, 1.0 / 3}, "even_stripe, rail 1 down");
    H_OK(xr_rail_set_state(a, 1, 1));

    /* round_robin never splits: the descriptor lands on one rail. */
    H_OK(xr_policy_reload(a, policy("round_robin.lua")));
    x = make(6);
    run_and_verify(x, 6, per);
    xr_xfer_release(x);
    int used = 0;
    for (int i = 0; i < 4; i++)
        used += per[i] != 0;
    H_CHECK(used == 1, "round_robin split a descriptor over %d rails", used);
    h_log("ok: round_robin.lua kept the 4 MiB descriptor on one rail");

    H_OK(xr_peer_unload(peer));
    H_OK(xr_mem_deregister(rs));
    H_OK(xr_mem_deregister(rd));
    xr_engine_destroy(a);
    xr_engine_destroy(b);
    register_hook();
    rail_error_hook();
    numa_local();
    free(src);
    free(dst);
    printf("policies: passed\n");
    return 0;
}
