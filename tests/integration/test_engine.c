/*
 * test_engine.c - engine set-up on a real provider, in one process:
 * options and XRAIL_* overrides, rail info, creation errors, and metadata
 * size queries.
 *
 * usage: test_engine PROVIDER
 */
#include "harness.h"

static const char *provider;

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

int main(int argc, char **argv)
{
    if (argc < 2)
        return fprintf(stderr, "usage: %s PROVIDER\n", argv[0]), 2;
    provider = argv[1];
    h_require_provider(provider);
    int rc;

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
    printf("engine set-up on %s: passed\n", provider);
    return 0;
}
