/*
 * test_engine.c - engine set-up on a real provider, in one process:
 * options and XRAIL_* overrides, rail info, creation errors, metadata
 * size queries, and metadata layout scripts between engines.
 *
 * usage: test_engine PROVIDER SCRIPTS_DIR
 */
#include "harness.h"

static const char *provider, *scripts;

/* A config script in a file of its own; drop_config removes it. */
static char *write_config(const char *fmt, ...)
{
    char *path = strdup("/tmp/xrail-config-XXXXXX");
    H_CHECK(path, "strdup");
    int fd = mkstemp(path);
    H_CHECK(fd >= 0, "mkstemp");
    char body[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    h_write_all(fd, body, strlen(body));
    close(fd);
    return path;
}

static void drop_config(char *path)
{
    unlink(path);
    free(path);
}

/* Options that read a config script only (hermetic: no environment). */
static void config_opts(xr_engine_opts *o, const char *config, const xr_rail_spec *rails,
                        unsigned n)
{
    xr_engine_opts_init(o);
    o->name = "cfg";
    o->ignore_env = 1;
    o->config = config;
    o->script_path = scripts;
    o->rails = rails;
    o->n_rail_specs = n;
}

/* An engine from a config script only. */
static int from_config(const char *config, const xr_rail_spec *rails, unsigned n, xr_engine **e)
{
    xr_engine_opts o;
    config_opts(&o, config, rails, n);
    return xr_engine_create(&o, e);
}

static void config_tests(void)
{
    const char *dom = strstr(provider, "tcp") ? "lo" : "";
    /* Rails, speeds, a threshold and a policy by name, from the script. */
    char *c1 = write_config(
        "return {\n"
        "  rails = { { provider = '%s', domain = %s%s%s, count = 3, speed = 250 } },\n"
        "  stripe_min = 65536,\n"
        "  policy = 'single_rail.lua',\n"
        "}\n", provider, *dom ? "'" : "", *dom ? dom : "nil", *dom ? "'" : "");
    xr_engine *e;
    H_OK(from_config(c1, NULL, 0, &e));
    H_CHECK(xr_rail_count(e) == 3, "config asked for 3 rails, got %d", xr_rail_count(e));
    xr_rail_info ri;
    H_OK(xr_rail_info_get(e, 2, &ri));
    H_CHECK(ri.speed_mbps == 250, "declared speed 250, got %llu", (unsigned long long)ri.speed_mbps);
    xr_policy_stats st;
    H_OK(xr_policy_stats_get(e, &st));
    H_CHECK(st.scripted, "the config's policy (found by name on the script path) is not loaded");
    xr_engine_destroy(e);
    h_log("ok: config script: 3 rails at 250 Mbit/s and single_rail.lua by name");

    /* Options win over the script. */
    xr_rail_spec two = {.provider = provider, .domain = *dom ? dom : NULL, .count = 2};
    H_OK(from_config(c1, &two, 1, &e));
    H_CHECK(xr_rail_count(e) == 2, "options asked for 2 rails, got %d", xr_rail_count(e));
    xr_engine_destroy(e);

    /* rails.max caps what the script lists. */
    char *c2 = write_config(
        "return { rails = { provider = '%s', domain = %s%s%s, count = 4, max = 1 } }\n",
        provider, *dom ? "'" : "", *dom ? dom : "nil", *dom ? "'" : "");
    H_OK(from_config(c2, NULL, 0, &e));
    H_CHECK(xr_rail_count(e) == 1, "rails.max = 1 gave %d rails", xr_rail_count(e));
    xr_engine_destroy(e);
    h_log("ok: options win over the script; rails.max caps it");

    /* The environment wins over both; the default xrail.lua is found on the path. */
    char spec[64];
    snprintf(spec, sizeof spec, "%s:%s:1", provider, dom);
    setenv("XRAIL_RAILS", spec, 1);
    setenv("XRAIL_SCRIPT_PATH", scripts, 1);
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = "default-config";
    H_OK(xr_engine_create(&o, &e));
    H_CHECK(xr_rail_count(e) == 1, "XRAIL_RAILS=%s gave %d rails", spec, xr_rail_count(e));
    H_OK(xr_policy_stats_get(e, &st));
    H_CHECK(st.scripted, "the default xrail.lua (policy even_stripe.lua) was not read");
    xr_engine_destroy(e);
    unsetenv("XRAIL_RAILS");
    unsetenv("XRAIL_SCRIPT_PATH");
    h_log("ok: XRAIL_RAILS wins; the default xrail.lua was found on XRAIL_SCRIPT_PATH");

    /* The stage and mr_cache tables reach the engine, and read back. */
    char *c3 = write_config("return { stage = { chunk = 65536, slots = 4, host = true }, "
                                  "mr_cache = { max_entries = 99 }, progress_sleep_us = 0, "
                                  "progress = 'thread', progress_threads = 5, "
                                  "ipc_fence = false }\n");
    H_OK(from_config(c3, &two, 1, &e));
    char cfg[4096];
    H_OK(xr_engine_config_get(e, cfg, sizeof cfg));
    H_CHECK(strstr(cfg, "stage = { chunk = 65536, slots = 4, rx_slots = 2, host = true }") &&
                strstr(cfg, "max_entries = 99,") && strstr(cfg, "progress_sleep_us = 0,") &&
                strstr(cfg, "progress_threads = 2,") && /* 5 asked, one per rail at most */
                strstr(cfg, "ipc_fence = false,"),
            "the config's stage, mr_cache and progress settings were not applied:\n%s", cfg);
    xr_engine_destroy(e);
    drop_config(c3);
    h_log("ok: the config's stage and mr_cache tables are applied and printed");

    /* Precedence, both ways. An option set to its default's own value is
     * the application's: the config's 4 MiB must not replace it (before
     * the fix it did, as "equal to the default" counted as unset). An
     * option left unset takes the config's. Setting one staging field keeps
     * the config's others (before, any one dropped them all). */
    char *c4 = write_config("return { chunk = 4194304, stage = { slots = 8, chunk = 65536 }, "
                                  "health = { deadline_ms = 2500, retries = 5 } }\n");
    xr_engine_opts po;
    config_opts(&po, c4, &two, 1);
    po.chunk_size = 1 << 20;         /* the default's value, set on purpose */
    po.stage.host = 0;               /* one staging field */
    po.health.deadline_ms = 1500;    /* the default's value again */
    H_OK(xr_engine_create(&po, &e));
    H_OK(xr_engine_config_get(e, cfg, sizeof cfg));
    H_CHECK(strstr(cfg, "chunk = 1048576,") && strstr(cfg, "slots = 8,") &&
                strstr(cfg, "stage = { chunk = 65536,") && strstr(cfg, "deadline_ms = 1500,") &&
                strstr(cfg, "retries = 5,"),
            "options set to a default's value lost to the config, or the config's other "
            "fields were dropped:\n%s", cfg);
    xr_engine_destroy(e);
    H_OK(from_config(c4, &two, 1, &e));
    H_OK(xr_engine_config_get(e, cfg, sizeof cfg));
    H_CHECK(strstr(cfg, "chunk = 4194304,") && strstr(cfg, "deadline_ms = 2500,"),
            "unset options did not take the config's values:\n%s", cfg);
    xr_engine_destroy(e);
    /* And the built-in defaults, to read, are what an engine with neither gets. */
    xr_engine_opts d;
    xr_engine_opts_defaults(&d);
    H_CHECK(d.chunk_size == 1 << 20 && d.health.deadline_ms == 1500 && d.stage.slots == 16 &&
                d.ipc_fence == 1,
            "xr_engine_opts_defaults");
    drop_config(c4);
    h_log("ok: options set to a default's value win over the config; unset ones take it");

    /* Broken configs are named and nothing is created. */
    static const struct { const char *body, *needle; } bad[] = {
        {"return { railz = {} }", "unknown key 'railz'"},
        {"return { stripe_min = 'big' }", "'stripe_min' must be an integer"},
        {"return { progress = 'sometimes' }", "progress must be \"manual\" or \"thread\""},
        {"return { progress_sleep_us = -5 }", "'progress_sleep_us' must be an integer >= 0"},
        {"return { progress_threads = 0 }", "'progress_threads' must be an integer >= 1"},
        {"return { rails = { { count = 99 } } }", "count 99 exceeds 64"},
        {"return { policy = 'nope.lua' }", "'nope.lua' not found in the script path"},
        {"return 7", "must return a table"},
        {"return {", "load:"},
        {"while true do end", "instruction budget"},
        {"return { rails = { max = os.getenv('N') } }", "global 'os'"},
        {"return { stage = { slotz = 4 } }", "unknown key 'slotz' (chunk, slots, rx_slots, host)"},
        {"return { stage = { chunk = 100 } }", "'chunk' must be an integer >= 4096"},
        {"return { stage = { host = 1 } }", "host must be true or false"},
        {"return { mr_cache = { enabled = 'yes' } }", "enabled must be true or false"},
        {"return { connect_on_load = 1 }", "connect_on_load must be true or false"},
        {"return { ipc_fence = 'no' }", "ipc_fence must be true or false"},
        /* A metamethod that raises, read outside a protected call, would
         * have aborted the process (Lua's panic). */
        {"return setmetatable({}, { __index = function(t, k) error('trap ' .. k) end })",
         "trap provider"},
        {"return { stage = setmetatable({}, { __index = function() while true do end end }) }",
         "instruction budget"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *c = write_config("%s", bad[i].body);
        xr_engine *x = NULL;
        int rc = from_config(c, &two, 1, &x);
        H_CHECK(rc < 0 && !x, "config '%s' was accepted", bad[i].body);
        H_CHECK(strstr(xr_engine_last_error(NULL), bad[i].needle), "config '%s': '%s' lacks '%s'",
                bad[i].body, xr_engine_last_error(NULL), bad[i].needle);
        h_log("ok: %s", xr_engine_last_error(NULL));
        drop_config(c);
    }
    H_CHECK(from_config("/nonexistent/xrail.lua", &two, 1, &e) < 0, "missing config accepted");
    drop_config(c1);
    drop_config(c2);
}

/* An engine with the layout `layout` (NULL: built-in), two rails. */
static int with_layout(const char *name, const char *layout, xr_engine **e)
{
    const char *dom = strstr(provider, "tcp") ? "lo" : NULL;
    xr_rail_spec rs = {.provider = provider, .domain = dom, .count = 2};
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = name;
    o.ignore_env = 1;
    o.script_path = scripts;
    o.rails = &rs;
    o.n_rail_specs = 1;
    o.layout = layout;
    return xr_engine_create(&o, e);
}

static void *md_of(xr_engine *e, size_t *len)
{
    *len = 0;
    H_CHECK(xr_metadata_get(e, NULL, len) == XR_ETOOSMALL, "size query");
    void *md = malloc(*len);
    H_OK(xr_metadata_get(e, md, len));
    return md;
}

static void layout_tests(void)
{
    /* A layout named in the config, found under layout/ on the script path. */
    char *c = write_config("return { layout = 'kv_cache.lua' }\n");
    xr_engine *kv, *kv2, *v1;
    const char *dom = strstr(provider, "tcp") ? "lo" : NULL;
    xr_rail_spec rs = {.provider = provider, .domain = dom, .count = 2};
    H_OK(from_config(c, &rs, 1, &kv));
    drop_config(c);
    H_OK(with_layout("kv-2", "kv_cache.lua", &kv2));
    H_OK(with_layout("v1", NULL, &v1));

    /* Declared fields are typed; required ones must be set before publishing. */
    uint64_t base = 0x7f0000000000;
    uint32_t layers = 80, blocks = 512, bbytes = 1 << 16;
    H_CHECK(xr_metadata_set_field(kv, "kv.layers", &base, 8) == XR_EINVAL &&
                strstr(xr_engine_last_error(NULL), "'kv.layers' is a u32 in layout 'kv_cache'"),
            "a u64 value for a u32 field: %s", xr_engine_last_error(NULL));
    size_t len = 0;
    H_CHECK(xr_metadata_get(kv, NULL, &len) == XR_EINVAL &&
                strstr(xr_engine_last_error(NULL), "custom.kv.base is required"),
            "publishing without required fields: %s", xr_engine_last_error(NULL));
    xr_engine *both[] = {kv, kv2};
    for (int i = 0; i < 2; i++) {
        H_OK(xr_metadata_set_field(both[i], "kv.base", &base, 8));
        H_OK(xr_metadata_set_field(both[i], "kv.layers", &layers, 4));
        H_OK(xr_metadata_set_field(both[i], "kv.blocks", &blocks, 4));
        H_OK(xr_metadata_set_field(both[i], "kv.block_bytes", &bbytes, 4));
        H_OK(xr_metadata_set_field(both[i], "kv.dtype", "float16", 7));
        H_OK(xr_metadata_set_field(both[i], "app.note", "untyped", 7));
    }
    H_OK(xr_metadata_set_field(kv, "model", "llama-3-70b", 11));
    H_OK(xr_metadata_set_field(v1, "app.note", "from v1", 7));

    /* kv_cache reading kv_cache: typed values, and the defaults of what was
     * not published (tp_rank). */
    void *md = md_of(kv, &len);
    xr_peer *p;
    H_OK(xr_peer_load(kv2, md, len, &p));
    uint32_t u32 = 99;
    uint64_t u64 = 0;
    char str[32];
    size_t n = 8;
    H_OK(xr_peer_field(p, "kv.base", &u64, &n));
    H_CHECK(n == 8 && u64 == base, "kv.base %llx", (unsigned long long)u64);
    n = 4;
    H_OK(xr_peer_field(p, "tp_rank", &u32, &n));
    H_CHECK(n == 4 && u32 == 0, "tp_rank default: %u", u32);
    n = sizeof str;
    H_OK(xr_peer_field(p, "model", str, &n));
    H_CHECK(n == 11 && !memcmp(str, "llama-3-70b", 11), "model");
    n = sizeof str;
    H_OK(xr_peer_field(p, "app.note", str, &n));
    H_CHECK(n == 7 && !memcmp(str, "untyped", 7), "extra field");
    H_OK(xr_peer_unload(p));
    /* What those bytes are, by the reader's layout. */
    H_CHECK(xr_metadata_field_type(kv2, "kv.base") == XR_FIELD_U64 &&
                xr_metadata_field_type(kv2, "tp_rank") == XR_FIELD_U32 &&
                xr_metadata_field_type(kv2, "model") == XR_FIELD_STRING &&
                xr_metadata_field_type(kv2, "app.note") == XR_FIELD_UNTYPED &&
                xr_metadata_field_type(v1, "kv.base") == XR_FIELD_UNTYPED &&
                xr_metadata_field_type(NULL, "x") == XR_EINVAL,
            "field types: kv.base %d, tp_rank %d, model %d, app.note %d",
            xr_metadata_field_type(kv2, "kv.base"), xr_metadata_field_type(kv2, "tp_rank"),
            xr_metadata_field_type(kv2, "model"), xr_metadata_field_type(kv2, "app.note"));

    /* The built-in layout reads it too: the typed section is skipped. */
    H_OK(xr_peer_load(v1, md, len, &p));
    n = 8;
    H_CHECK(xr_peer_field(p, "kv.base", &u64, &n) == XR_ENOENT, "v1 sees a typed field");
    n = sizeof str;
    H_OK(xr_peer_field(p, "app.note", str, &n));
    H_OK(xr_peer_unload(p));
    free(md);

    /* kv_cache cannot read xrail.v1: the first field it needs is named, and
     * the engine goes on working. */
    md = md_of(v1, &len);
    H_CHECK(xr_peer_load(kv2, md, len, &p) == XR_EBADMD &&
                strstr(xr_engine_last_error(NULL), "custom.model missing (required by layout "
                                                   "'kv_cache')"),
            "v1 -> kv_cache: %s", xr_engine_last_error(NULL));
    free(md);
    md = md_of(kv, &len);
    H_OK(xr_peer_load(kv2, md, len, &p));
    H_OK(xr_peer_unload(p));
    free(md);
    h_log("ok: kv_cache <-> kv_cache typed, kv_cache -> v1 skipped, v1 -> kv_cache refused");
    xr_engine_destroy(kv);
    xr_engine_destroy(kv2);
    xr_engine_destroy(v1);

    /* Malformed layouts stop creation, naming the field; nothing is left. */
    char *bad = write_config(
        "return { name = 'b', version = 1, fields = {\n"
        "  { id = 1, name = 'name', type = 'string', required = true },\n"
        "  { id = 2, name = 'instance', type = 'u64', required = true },\n"
        "  { id = 3, name = 'rails', type = 'list', required = true },\n"
        "  { id = 3, name = 'regions', type = 'list' } } }\n");
    xr_engine *x = NULL;
    H_CHECK(with_layout("bad", bad, &x) == XR_ESCRIPT && !x &&
                strstr(xr_engine_last_error(NULL), "regions: duplicate id 3"),
            "duplicate id: %s", xr_engine_last_error(NULL));
    drop_config(bad);
    H_CHECK(with_layout("bad", "no_such_layout.lua", &x) == XR_ENOENT && !x,
            "missing layout: %s", xr_engine_last_error(NULL));
    h_log("ok: %s", xr_engine_last_error(NULL));
}

static xr_engine *create_env(const char *rails_env, const char *max_env, int *rc)
{
    setenv("XRAIL_PROVIDER", provider, 1);
    if (strstr(provider, "tcp"))
        setenv("XRAIL_DOMAIN", "lo", 1);
    rails_env ? setenv("XRAIL_RAILS", rails_env, 1) : unsetenv("XRAIL_RAILS");
    max_env ? setenv("XRAIL_MAX_RAILS", max_env, 1) : unsetenv("XRAIL_MAX_RAILS");
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = "env";
    xr_engine *e = NULL;
    *rc = xr_engine_create(&o, &e);
    return e;
}

/* Nothing named: discovery takes the best family offered, alone; never the
 * fallbacks, the host-local shm, or a loopback interface; and says why. */
static void discovery_tests(void)
{
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = "discover";
    o.ignore_env = 1;
    xr_engine *e = NULL;
    int rc = xr_engine_create(&o, &e);
    if (rc == XR_ENORAIL) { /* a machine with no interface but loopback */
        H_CHECK(strstr(xr_engine_last_error(NULL), "discovery"), "ENORAIL without a reason: %s",
                xr_engine_last_error(NULL));
        h_log("ok: discovery found nothing it takes here: %s", xr_engine_last_error(NULL));
        return;
    }
    H_CHECK(rc == 0, "discovery: %s", xr_engine_last_error(NULL));
    static const char *const never[] = {"shm", "sockets", "udp;ofi_rxd", "net", "net;ofi_rxm"};
    xr_rail_info r0;
    H_OK(xr_rail_info_get(e, 0, &r0));
    for (int i = 0; i < xr_rail_count(e); i++) {
        xr_rail_info ri;
        H_OK(xr_rail_info_get(e, (unsigned)i, &ri));
        H_CHECK(!strcmp(ri.provider, r0.provider), "discovery mixed %s and %s", r0.provider,
                ri.provider);
        for (size_t k = 0; k < sizeof never / sizeof never[0]; k++)
            H_CHECK(strcmp(ri.provider, never[k]), "discovery took %s", ri.provider);
        H_CHECK(strcmp(ri.domain, "lo"), "discovery took the loopback interface");
    }
    char why[4096];
    H_OK(xr_rail_explain(e, why, sizeof why));
    H_CHECK(strstr(why, "discovery: took ") && strstr(why, r0.provider), "explain: %s", why);
    h_log("ok: discovery took %d rail(s) of %s:\n%s", xr_rail_count(e), r0.provider, why);
    xr_engine_destroy(e);
    /* A named provider without a domain leaves loopback out too; named, it is used. */
    xr_rail_spec lo = {.provider = "tcp;ofi_rxm", .domain = "lo", .count = 1};
    o.rails = &lo;
    o.n_rail_specs = 1;
    if (xr_engine_create(&o, &e) == 0) {
        H_OK(xr_rail_explain(e, why, sizeof why));
        H_CHECK(strstr(why, "no discovery"), "named rails explained as: %s", why);
        xr_engine_destroy(e);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return fprintf(stderr, "usage: %s PROVIDER SCRIPTS_DIR\n", argv[0]), 2;
    provider = argv[1];
    scripts = argv[2];
    /* xrail's rxm default (rail.c): set before libfabric's first look,
     * unless the environment has it. */
    const char *rx_before = getenv("FI_OFI_RXM_MSG_RX_SIZE");
    char rx_had[32];
    snprintf(rx_had, sizeof rx_had, "%s", rx_before ? rx_before : "");
    h_require_provider(provider);
    const char *rx = getenv("FI_OFI_RXM_MSG_RX_SIZE");
    H_CHECK(rx && !strcmp(rx, rx_before ? rx_had : "128"),
            "FI_OFI_RXM_MSG_RX_SIZE after the first engine: %s (before: %s)", rx ? rx : "unset",
            rx_before ? rx_had : "unset");
    int rc;
    discovery_tests();

    /* XRAIL_RAILS=N opens N rails on the provider the environment names. */
    xr_engine *e = create_env("3", NULL, &rc);
    H_CHECK(rc == 0, "XRAIL_RAILS=3: %s", xr_engine_last_error(NULL));
    H_CHECK(xr_rail_count(e) == 3, "XRAIL_RAILS=3 gave %d rails", xr_rail_count(e));
    for (unsigned i = 0; i < 3; i++) {
        xr_rail_info ri;
        H_OK(xr_rail_info_get(e, i, &ri));
        H_CHECK(ri.index == i && ri.up == 1, "rail %u: index %u up %d", i, ri.index, ri.up);
        H_CHECK(strcmp(ri.provider, provider) == 0, "rail %u provider '%s'", i, ri.provider);
        H_CHECK(ri.address[0] && ri.domain[0], "rail %u: empty address or domain", i);
        H_CHECK(ri.max_msg_size > 0, "rail %u: max_msg_size 0", i);
        H_CHECK(ri.numa_node >= -1, "rail %u: numa %d", i, ri.numa_node);
        H_CHECK(ri.counters.tx_bytes == 0 && ri.counters.errors == 0, "fresh counters");
        h_log("rail %u: %s %s %s numa %d mr_mode 0x%llx delivery_complete %d", i, ri.provider,
              ri.domain, ri.address, ri.numa_node, (unsigned long long)ri.mr_mode,
              ri.delivery_complete);
        for (unsigned k = 0; k < i; k++) {
            xr_rail_info rk;
            H_OK(xr_rail_info_get(e, k, &rk));
            H_CHECK(strcmp(rk.address, ri.address) != 0, "rails %u and %u share address %s", k,
                    i, ri.address);
        }
    }
    xr_rail_info ri;
    H_CHECK(xr_rail_info_get(e, 3, &ri) == XR_ENOENT, "rail 3 of 3");
    H_CHECK(xr_rail_set_state(e, 7, 0) == XR_ENOENT, "set_state of rail 7");
    H_OK(xr_rail_set_state(e, 1, 0));
    H_OK(xr_rail_info_get(e, 1, &ri));
    H_CHECK(ri.up == 0, "rail 1 still up after set_state(0)");

    /* Metadata size query: NULL buffer and a buffer one byte short. */
    size_t len = 0;
    H_CHECK(xr_metadata_get(e, NULL, &len) == XR_ETOOSMALL && len > 16, "size query");
    char *md = malloc(len);
    size_t short_len = len - 1;
    H_CHECK(xr_metadata_get(e, md, &short_len) == XR_ETOOSMALL && short_len == len,
            "short buffer");
    H_OK(xr_metadata_get(e, md, &len));
    free(md);
    xr_engine_destroy(e);

    /* XRAIL_MAX_RAILS caps what XRAIL_RAILS asks for: the knob that replaces
     * FI_EFA_DEV_LIST=0, without editing the rail list. */
    e = create_env("5", "2", &rc);
    H_CHECK(rc == 0 && xr_rail_count(e) == 2, "XRAIL_MAX_RAILS=2 gave %d rails",
            e ? xr_rail_count(e) : -1);
    xr_engine_destroy(e);

    /* The explicit list form. */
    char spec[128];
    snprintf(spec, sizeof spec, "%s:%s:2", provider, strstr(provider, "tcp") ? "lo" : "");
    e = create_env(spec, NULL, &rc);
    H_CHECK(rc == 0 && xr_rail_count(e) == 2, "XRAIL_RAILS=%s: %s", spec,
            xr_engine_last_error(NULL));
    xr_engine_destroy(e);

    /* Bad settings are named, and nothing is left behind. */
    e = create_env("lots", NULL, &rc);
    H_CHECK(rc == XR_EINVAL && !e, "XRAIL_RAILS=lots gave %s", xr_err_name(rc));
    H_CHECK(strstr(xr_engine_last_error(NULL), "provider:domain:count"), "message: %s",
            xr_engine_last_error(NULL));
    e = create_env("65", NULL, &rc);
    H_CHECK(rc == XR_EINVAL, "XRAIL_RAILS=65 gave %s", xr_err_name(rc));
    setenv("XRAIL_STRIPE_MIN", "12q", 1);
    e = create_env("1", NULL, &rc);
    H_CHECK(rc == XR_EINVAL && strstr(xr_engine_last_error(NULL), "XRAIL_STRIPE_MIN"),
            "XRAIL_STRIPE_MIN=12q: %s", xr_engine_last_error(NULL));
    unsetenv("XRAIL_STRIPE_MIN");
    /* Every variable that does not parse is refused by name, never read as
     * 0 (XRAIL_LOG=debug once meant errors only, XRAIL_MAX_RAILS=abc no cap). */
    static const char *const bad[][2] = {{"XRAIL_LOG", "verbose"}, {"XRAIL_MAX_RAILS", "abc"},
                                         {"XRAIL_MAX_RAILS", "65"}, {"XRAIL_MR_CACHE", "maybe"},
                                         {"XRAIL_STAGE_HOST", "yes please"},
                                         {"XRAIL_DEADLINE_MS", "soon"},
                                         {"XRAIL_CONNECT_ON_LOAD", "eagerly"}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        bool cap = !strcmp(bad[k][0], "XRAIL_MAX_RAILS"); /* create_env sets that one */
        if (!cap)
            setenv(bad[k][0], bad[k][1], 1);
        e = create_env("1", cap ? bad[k][1] : NULL, &rc);
        H_CHECK(rc == XR_EINVAL && !e && strstr(xr_engine_last_error(NULL), bad[k][0]),
                "%s=%s gave %s: %s", bad[k][0], bad[k][1], xr_err_name(rc),
                xr_engine_last_error(NULL));
        unsetenv(bad[k][0]);
    }
    /* Level names work, in any case, as the numbers do. */
    setenv("XRAIL_LOG", "Debug", 1);
    e = create_env("1", NULL, &rc);
    H_CHECK(rc == 0, "XRAIL_LOG=Debug: %s", xr_engine_last_error(NULL));
    xr_engine_destroy(e);
    unsetenv("XRAIL_LOG");
    unsetenv("XRAIL_RAILS");
    unsetenv("XRAIL_MAX_RAILS");
    unsetenv("XRAIL_PROVIDER");
    unsetenv("XRAIL_DOMAIN");

    /* Options: a missing name, and a provider this libfabric does not have. */
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.ignore_env = 1;
    H_CHECK(xr_engine_create(&o, &e) == XR_EINVAL && !e, "engine without a name");
    o.name = "x";
    xr_rail_spec bogus = {.provider = "no-such-provider", .count = 1};
    o.rails = &bogus;
    o.n_rail_specs = 1;
    H_CHECK(xr_engine_create(&o, &e) == XR_ENORAIL && !e, "unknown provider");
    H_CHECK(strstr(xr_engine_last_error(NULL), "no-such-provider"), "message: %s",
            xr_engine_last_error(NULL));
    H_CHECK(strcmp(xr_strerror(XR_ERANGE), "range outside a registered region") == 0 &&
                strcmp(xr_err_name(XR_ERANGE), "XR_ERANGE") == 0 &&
                strcmp(xr_err_name(-999), "XR_E?") == 0,
            "error table");
    config_tests();
    layout_tests();
    printf("engine set-up on %s: passed\n", provider);
    return 0;
}
