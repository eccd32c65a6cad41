/*
 * xrail - the command-line tool: what rails a config opens, the effective
 * settings, policy checks and explanations, and metadata blobs.
 * Errors are one line on stderr and a non-zero exit.
 */
#include "core/script.h"
#include "core/layout.h"
#include "core/log.h"
#include "xrail.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One entry per command: its usage line(s) and what it does. `xrail --help`
 * prints them all; `xrail CMD [SUB] --help` prints its own. */
static const struct {
    const char *cmd, *sub, *usage, *what;
} commands[] = {
    {"rails", NULL, "rails [--config F]", "list the rails the config opens"},
    {"config", NULL, "config [--config F]",
     "print the effective settings (itself a valid config script)"},
    {"policy", "check", "policy check FILE [--config F]",
     "load and validate a rail policy against the config's rails"},
    {"policy", "explain",
     "policy explain --size N [--op write|read] [--mem host|host:NUMA|cuda:D]\n"
     "               [--peer-rails N] [--policy F] [--config F]",
     "print the plan and per-rail byte split of one transfer"},
    {"md", "get", "md get [--name N] [--config F] [--layout F]",
     "write this engine's metadata blob to stdout (engine name N, default xrail-cli)"},
    {"md", "dump", "md dump FILE [--json] [--layout F]",
     "decode a metadata blob (custom fields typed by the layout)"},
    {"md", "check", "md check FILE [--layout F]", "validate a metadata blob against a layout"},
    {"layout", "show", "layout show FILE", "print a layout script's fields, ids and types"},
    {"layout", "check", "layout check FILE", "load and validate a layout script"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const char *usage_tail =
    "\nSettings come from the config script (--config, XRAIL_CONFIG, or xrail.lua\n"
    "on XRAIL_SCRIPT_PATH), then XRAIL_* variables. Scripts named without a '/'\n"
    "are looked up on the script path (policies under policy/, layouts under layout/).\n";

static void usage(FILE *out, const char *cmd, const char *sub)
{
    bool one = false;
    for (size_t i = 0; i < NCOMMANDS; i++)
        one |= cmd && !strcmp(commands[i].cmd, cmd) && (!commands[i].sub || (sub && !strcmp(commands[i].sub, sub)));
    fputs(one ? "usage:\n" : "usage: xrail <command> [options]\n\n", out);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        bool mine = cmd && !strcmp(commands[i].cmd, cmd) &&
                    (!commands[i].sub || (sub && !strcmp(commands[i].sub, sub)));
        if (!one || mine)
            fprintf(out, "  xrail %s\n      %s\n", commands[i].usage, commands[i].what);
    }
    if (!one)
        fputs("\nEvery command takes --help.\n", out);
    fputs(usage_tail, out);
}

static void say(const char *fmt, va_list ap)
{
    fputs("xrail: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* A failure: one line on stderr, exit status 1. */
static int die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    return 1;
}

/* A usage error (docs/cli.md): the same line, exit status 2. */
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    return 2;
}

typedef struct args {
    const char *config, *policy, *layout, *file, *op, *mem;
    size_t size;
    const char *name; /* md get --name */
    int peer_rails, json, help;
    char config_buf[4096], policy_buf[4096], layout_buf[4096]; /* ./NAME of those */
} args;

/* A script named on the command line that is in the working directory is
 * taken from there, as a path ("--config four.lua" means ./four.lua when
 * there is one); other bare names are searched for on the script path. */
static const char *script_arg(const char *v, char *buf, size_t cap)
{
    if (strchr(v, '/') || access(v, R_OK) != 0 || snprintf(buf, cap, "./%s", v) >= (int)cap)
        return v;
    return buf;
}

static int parse(int argc, char **argv, int first, args *a)
{
    memset(a, 0, sizeof *a);
    a->op = "write";
    a->mem = "host";
    for (int i = first; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(s, "--help") || !strcmp(s, "-h"))
            a->help = 1;
        else if (!strcmp(s, "--json"))
            a->json = 1;
        else if (!strcmp(s, "--config") && v)
            a->config = script_arg(v, a->config_buf, sizeof a->config_buf), i++;
        else if (!strcmp(s, "--policy") && v)
            a->policy = script_arg(v, a->policy_buf, sizeof a->policy_buf), i++;
        else if (!strcmp(s, "--layout") && v)
            a->layout = script_arg(v, a->layout_buf, sizeof a->layout_buf), i++;
        else if (!strcmp(s, "--name") && v)
            a->name = v, i++;
        else if (!strcmp(s, "--op") && v)
            a->op = v, i++;
        else if (!strcmp(s, "--mem") && v)
            a->mem = v, i++;
        else if (!strcmp(s, "--size") && v) {
            char *end;
            unsigned long long n = strtoull(v, &end, 0);
            if (*end == 'k' || *end == 'K')
                n <<= 10, end++;
            else if (*end == 'm' || *end == 'M')
                n <<= 20, end++;
            else if (*end == 'g' || *end == 'G')
                n <<= 30, end++;
            if (end == v || *end)
                return usage_error("--size '%s' is not a size (e.g. 1048576, 64k, 16M)", v);
            a->size = (size_t)n, i++;
        } else if (!strcmp(s, "--peer-rails") && v) {
            a->peer_rails = atoi(v), i++;
            if (a->peer_rails < 1 || a->peer_rails > XR_MAX_RAILS)
                return usage_error("--peer-rails must be 1..%d", XR_MAX_RAILS);
        } else if (s[0] != '-' && !a->file)
            a->file = s;
        else
            return usage_error("unknown or incomplete option '%s' (see --help)", s);
    }
    return 0;
}

static int engine(const args *a, const char *name, xr_engine **e)
{
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = name;
    o.config = a->config;
    o.policy = a->policy;
    o.layout = a->layout;
    if (xr_engine_create(&o, e))
        return die("%s", xr_engine_last_error(NULL));
    return 0;
}

static int cmd_rails(const args *a)
{
    xr_engine *e;
    if (engine(a, "xrail-cli", &e))
        return 1;
    printf("%-4s %-14s %-10s %-36s %-8s %-5s %-8s %s\n", "rail", "provider", "domain", "address",
           "speed", "numa", "gpu mem", "state");
    for (int i = 0; i < xr_rail_count(e); i++) {
        xr_rail_info ri;
        xr_rail_info_get(e, (unsigned)i, &ri);
        char speed[32] = "?";
        if (ri.speed_mbps)
            snprintf(speed, sizeof speed, "%llu", (unsigned long long)ri.speed_mbps);
        static const char *const states[] = {"up", "suspect", "down", "disabled"};
        /* Device memory: registered on the rail (FI_HMEM) or staged. */
        printf("%-4u %-14s %-10s %-36s %-8s %-5d %-8s %s\n", ri.index, ri.provider, ri.domain,
               ri.address, speed, ri.numa_node, ri.hmem ? "direct" : "staged",
               ri.state >= 0 && ri.state < 4 ? states[ri.state] : "?");
        if (*ri.reason || *ri.last_error || ri.counters.stalls || ri.counters.resets ||
            ri.counters.abandoned)
            printf("     %s%s%s%s; %llu stalls, %llu resets, %llu failovers, %llu probes, "
                   "%llu left with the provider\n",
                   *ri.reason ? "reason: " : "", ri.reason,
                   *ri.last_error ? " last error: " : "", ri.last_error,
                   (unsigned long long)ri.counters.stalls,
                   (unsigned long long)ri.counters.resets,
                   (unsigned long long)ri.counters.failovers,
                   (unsigned long long)ri.counters.probes,
                   (unsigned long long)ri.counters.abandoned);
    }
    char why[4096];
    if (!xr_rail_explain(e, why, sizeof why))
        printf("%s", why);
    xr_engine_destroy(e);
    return 0;
}

static int cmd_config(const args *a)
{
    xr_engine *e;
    if (engine(a, "xrail-cli", &e))
        return 1;
    static char buf[64 << 10];
    int rc = xr_engine_config_get(e, buf, sizeof buf);
    if (!rc)
        fputs(buf, stdout);
    xr_engine_destroy(e);
    return rc ? die("%s", xr_engine_last_error(NULL)) : 0;
}

static int cmd_policy_check(const args *a)
{
    if (!a->file)
        return usage_error("policy check: which FILE?");
    xr_engine *e;
    if (engine(a, "xrail-cli", &e))
        return 1;
    int rc = xr_policy_reload(e, a->file);
    if (rc)
        die("%s", xr_engine_last_error(NULL));
    else
        printf("%s: ok (loads, and plans writes and reads of host and device memory of "
               "4 KiB, 1 MiB and 64 MiB; this engine has %d rail(s))\n", a->file,
               xr_rail_count(e));
    xr_engine_destroy(e);
    return rc ? 1 : 0;
}

/* Build a peer with the same provider as our first rail, in-process, so
 * that the plan is the one a real transfer to such a peer would get. */
static int cmd_policy_explain(const args *a)
{
    if (!a->size)
        return usage_error("policy explain: --size N is required");
    xr_op op;
    if (!strcmp(a->op, "write"))
        op = XR_OP_WRITE;
    else if (!strcmp(a->op, "read"))
        op = XR_OP_READ;
    else
        return usage_error("--op must be write or read, not '%s'", a->op);
    xr_mem_kind kind = XR_MEM_HOST;
    int device = -1; /* host memory: the NUMA node, unknown unless host:N */
    if (!strncmp(a->mem, "cuda:", 5)) {
        kind = XR_MEM_CUDA;
        device = atoi(a->mem + 5);
    } else if (!strncmp(a->mem, "host:", 5)) {
        device = atoi(a->mem + 5);
    } else if (strcmp(a->mem, "host")) {
        return usage_error("--mem must be host, host:NUMA or cuda:D, not '%s'", a->mem);
    }
    xr_engine *e, *p;
    if (engine(a, "xrail-cli", &e))
        return 1;
    xr_rail_info r0;
    xr_rail_info_get(e, 0, &r0);
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = "peer";
    o.ignore_env = 1;
    xr_rail_spec spec = {.provider = r0.provider, .domain = r0.domain,
                         .count = a->peer_rails ? (unsigned)a->peer_rails
                                                : (unsigned)xr_rail_count(e)};
    o.rails = &spec;
    o.n_rail_specs = 1;
    int rc = xr_engine_create(&o, &p);
    if (rc) {
        xr_engine_destroy(e);
        return die("peer of %u %s rails: %s", spec.count, r0.provider, xr_engine_last_error(NULL));
    }
    size_t len = 0;
    xr_metadata_get(p, NULL, &len);
    void *md = malloc(len);
    xr_peer *peer = NULL;
    rc = xr_metadata_get(p, md, &len);
    if (!rc)
        rc = xr_peer_load(e, md, len, &peer);
    static char text[64 << 10];
    if (!rc)
        rc = xr_policy_explain(e, peer, op, kind, device, a->size, text, sizeof text);
    if (rc)
        die("%s", xr_engine_last_error(NULL));
    else
        fputs(text, stdout);
    free(md);
    xr_engine_destroy(e);
    xr_engine_destroy(p);
    return rc ? 1 : 0;
}

static int cmd_md_get(const args *a)
{
    xr_engine *e;
    if (engine(a, a->name ? a->name : "xrail-cli", &e))
        return 1;
    size_t len = 0;
    xr_metadata_get(e, NULL, &len);
    void *md = malloc(len);
    int rc = xr_metadata_get(e, md, &len);
    if (!rc)
        fwrite(md, 1, len, stdout);
    free(md);
    xr_engine_destroy(e);
    return rc ? die("%s", xr_engine_last_error(NULL)) : 0;
}

/* A layout script by path or by name on the script path; NULL: built-in. */
static int open_layout(const char *name, xr_layout **l)
{
    *l = NULL;
    if (!name)
        return 0;
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    char path[4096];
    if (xr__script_find(&o, name, "layout", path, sizeof path) || xr__layout_load(path, 0, l))
        return die("%s", xr__error_last()); /* core's own error text */
    return 0;
}

static int load_blob(const char *file, const xr_layout *l, xr_md *m, size_t *len,
                     unsigned *version)
{
    if (!file)
        return usage_error("which FILE?");
    FILE *f = fopen(file, "rb");
    if (!f)
        return die("cannot read '%s'", file);
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf)
        return die("out of memory reading '%s'", file);
    int rc = xr__layout_md_decode(l, buf, n, 0, m);
    *version = n >= 8 ? (unsigned)(buf[6] | buf[7] << 8) : 0;
    free(buf);
    *len = n;
    return rc ? die("%s: %s", file, xr__error_last()) : 0;
}

static void hex(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
}

/* A string as a JSON string: quotes, backslashes and control bytes
 * escaped, and bytes above 0x7f as \u00XX, so that any name a peer sends
 * makes valid JSON. */
static void json_str(const char *v)
{
    putchar('"');
    for (const unsigned char *c = (const unsigned char *)(v ? v : ""); *c; c++) {
        if (*c == '"' || *c == '\\')
            printf("\\%c", *c);
        else if (*c < 0x20 || *c >= 0x7f)
            printf("\\u%04x", *c);
        else
            putchar(*c);
    }
    putchar('"');
}

/* A field's value as text: a declared integer as a number, printable
 * bytes as a quoted string, anything else as hex. */
static void print_value(const xr_layout *l, const xr_md_field *f, bool json)
{
    int type = xr__layout_field_type(l, f->name);
    if (type && type <= XR_FT_I32) {
        uint64_t u = 0;
        memcpy(&u, f->value, f->len < 8 ? f->len : 8);
        if (type == XR_FT_I32)
            printf("%d", (int32_t)(uint32_t)u);
        else
            printf("%llu", (unsigned long long)u);
        return;
    }
    bool text = true;
    for (uint32_t k = 0; k < f->len && text; k++)
        text = f->value[k] >= 0x20 && f->value[k] < 0x7f && f->value[k] != '"' &&
               f->value[k] != '\\';
    if (text) {
        printf("\"%.*s\"", (int)f->len, (const char *)f->value);
    } else {
        printf(json ? "\"0x" : "0x");
        hex(f->value, f->len);
        printf(json ? "\"" : " (%u bytes)", f->len);
    }
}

static int cmd_md_dump(const args *a, int check_only)
{
    xr_md m;
    size_t len = 0;
    unsigned version = 0;
    xr_layout *l;
    if (open_layout(a->layout, &l))
        return 1;
    if (load_blob(a->file, l, &m, &len, &version)) {
        xr__layout_destroy(l);
        return 1;
    }
    const char *lname = xr__layout_schema(l)->name;
    static const char *const access[] = {"none", "read", "write", "rw"};
    if (check_only) {
        printf("%s: ok: %zu bytes, engine '%s', %u rail(s), %u region(s), %u field(s); "
               "readable by layout '%s'\n", a->file, len, m.name, m.nrails, m.nregions, m.nfields,
               lname);
    } else if (a->json) {
        printf("{\"name\": ");
        json_str(m.name);
        printf(", \"instance\": %llu, \"bytes\": %zu, \"layout_version\": %u, \"rails\": [",
               (unsigned long long)m.instance, len, version);
        for (uint32_t i = 0; i < m.nrails; i++) {
            const xr_md_rail *r = &m.rails[i];
            printf("%s{\"index\": %u, \"provider\": ", i ? ", " : "", r->index);
            json_str(r->provider);
            printf(", \"domain\": ");
            json_str(r->domain);
            printf(", \"addr_format\": %u, \"address\": \"", r->addr_format);
            hex(r->addr, r->addrlen);
            printf("\", \"mr_mode\": %llu, \"speed_mbps\": %llu, \"numa\": %d}",
                   (unsigned long long)r->mr_mode, (unsigned long long)r->speed_mbps, r->numa);
        }
        printf("], \"regions\": [");
        for (uint32_t i = 0; i < m.nregions; i++) {
            const xr_md_region *g = &m.regions[i];
            printf("%s{\"addr\": %llu, \"len\": %llu, \"kind\": %u, \"device\": %u, "
                   "\"access\": \"%s\", \"keys\": [", i ? ", " : "", (unsigned long long)g->addr,
                   (unsigned long long)g->len, g->kind, g->device, access[g->access & 3]);
            for (uint32_t k = 0; k < g->nkeys; k++) {
                printf("%s{\"rail\": %u, \"raw\": %s, \"key\": \"", k ? ", " : "", g->keys[k].rail,
                       g->keys[k].raw ? "true" : "false");
                hex(g->keys[k].bytes, g->keys[k].nbytes);
                printf("\"}");
            }
            printf("]}");
        }
        printf("], \"fields\": [");
        for (uint32_t i = 0; i < m.nfields; i++) {
            printf("%s{\"name\": ", i ? ", " : "");
            json_str(m.fields[i].name);
            printf(", \"value\": ");
            print_value(l, &m.fields[i], true);
            printf(", \"value_hex\": \"");
            hex(m.fields[i].value, m.fields[i].len);
            printf("\"}");
        }
        printf("]}\n");
    } else {
        printf("engine '%s' (instance %016llx), %zu bytes, layout version %u, read as '%s'\n",
               m.name, (unsigned long long)m.instance, len, version, lname);
        printf("rails: %u\n", m.nrails);
        for (uint32_t i = 0; i < m.nrails; i++) {
            const xr_md_rail *r = &m.rails[i];
            printf("  [%u] %s %s format %u mr_mode 0x%llx speed %llu numa %d address ", r->index,
                   r->provider, r->domain ? r->domain : "", r->addr_format,
                   (unsigned long long)r->mr_mode, (unsigned long long)r->speed_mbps, r->numa);
            hex(r->addr, r->addrlen);
            printf("\n");
        }
        printf("regions: %u\n", m.nregions);
        for (uint32_t i = 0; i < m.nregions; i++) {
            const xr_md_region *g = &m.regions[i];
            printf("  [%u] 0x%llx +%llu %s device %u access %s, keys on %u rail(s)\n", i,
                   (unsigned long long)g->addr, (unsigned long long)g->len,
                   g->kind ? "cuda" : "host", g->device, access[g->access & 3], g->nkeys);
        }
        printf("fields: %u\n", m.nfields);
        if (!m.nfields && !a->layout)
            printf("  (read with the built-in layout, which keeps only the fields it knows "
                   "and an \"extra\" section: a blob written with a layout script of its own "
                   "needs it named, e.g. --layout kv_cache.lua)\n");
        for (uint32_t i = 0; i < m.nfields; i++) {
            printf("  %s = ", m.fields[i].name);
            print_value(l, &m.fields[i], false);
            printf("\n");
        }
    }
    xr__layout_free(xr__layout_schema(l), &m);
    xr__layout_destroy(l);
    return 0;
}

static int cmd_layout(const args *a, bool show)
{
    if (!a->file)
        return usage_error("layout %s: which FILE?", show ? "show" : "check");
    xr_layout *l;
    if (open_layout(a->file, &l))
        return 1;
    static char buf[64 << 10];
    int rc = xr__layout_describe(l, buf, sizeof buf);
    if (rc)
        die("%s", xr__error_last());
    else if (show)
        fputs(buf, stdout);
    else
        printf("%s: ok: layout '%s' version %u\n", a->file, xr__layout_schema(l)->name,
               xr__layout_schema(l)->layout_id);
    xr__layout_destroy(l);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout, NULL, NULL);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("xrail %s (this tool built with xrail.h %d.%d.%d)\n", xr_version(),
               XR_VERSION_MAJOR, XR_VERSION_MINOR, XR_VERSION_PATCH);
        return 0;
    }
    const char *cmd = argv[1], *sub = argc > 2 ? argv[2] : "";
    bool two = !strcmp(cmd, "policy") || !strcmp(cmd, "md") || !strcmp(cmd, "layout");
    args a;
    int rc = parse(argc, argv, two ? 3 : 2, &a);
    if (rc)
        return rc;
    if (a.help || (two && (!*sub || sub[0] == '-'))) {
        usage(stdout, cmd, sub);
        return a.help ? 0 : 2;
    }
    if (!strcmp(cmd, "rails"))
        return cmd_rails(&a);
    if (!strcmp(cmd, "config"))
        return cmd_config(&a);
    if (!strcmp(cmd, "policy") && !strcmp(sub, "check"))
        return cmd_policy_check(&a);
    if (!strcmp(cmd, "policy") && !strcmp(sub, "explain"))
        return cmd_policy_explain(&a);
    if (!strcmp(cmd, "md") && !strcmp(sub, "get"))
        return cmd_md_get(&a);
    if (!strcmp(cmd, "md") && !strcmp(sub, "dump"))
        return cmd_md_dump(&a, 0);
    if (!strcmp(cmd, "md") && !strcmp(sub, "check"))
        return cmd_md_dump(&a, 1);
    if (!strcmp(cmd, "layout") && (!strcmp(sub, "show") || !strcmp(sub, "check")))
        return cmd_layout(&a, !strcmp(sub, "show"));
    return usage_error("unknown command '%s%s%s' (see xrail --help)", cmd, two ? " " : "", two ? sub : "");
}
