/*
 * etcd.c - etcd v3 through its JSON gateway (etcd.h): POST /v3/<service>/
 * <call> with a JSON body, over libcurl; JSON built and parsed by json-c.
 * Keys and values travel base64-encoded and 64-bit integers as decimal
 * strings, as the gateway's protobuf mapping has them.
 */
#include "etcd.h"

#include "core/log.h"

#include <curl/curl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ENDPOINTS 16
#define MAX_RESPONSE (512u << 20) /* a range of a fleet's metadata fits */

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

struct xr_etcd {
    char *endpoint[MAX_ENDPOINTS];
    unsigned nendpoints, cur;
    char *user, *password, *token;
    char *ca_file, *cert_file, *key_file;
    unsigned request_ms;
    CURL *req;
    buf out;
    char curl_err[CURL_ERROR_SIZE];
    /* The watch stream. */
    CURLM *multi;
    CURL *watch;
    struct curl_slist *watch_hdr;
    char *watch_body;
    json_tokener *tok;
    xr_etcd_watch_fn fn;
    void *user_arg;
    int64_t next_rev;
    bool ended;
    char watch_err[256];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- base64 (RFC 4648), what the gateway's bytes fields carry ---- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const void *src, size_t len)
{
    const uint8_t *s = src;
    char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < len)
            v |= s[i + 2];
        *o++ = b64chars[v >> 18 & 63];
        *o++ = b64chars[v >> 12 & 63];
        *o++ = i + 1 < len ? b64chars[v >> 6 & 63] : '=';
        *o++ = i + 2 < len ? b64chars[v & 63] : '=';
    }
    *o = 0;
    return out;
}

/* By ranges, not by a search of b64chars: a 32-rail blob is 90 KB of it. */
static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decode; a NUL is appended (keys are text). -1 if it is not base64. */
static ssize_t b64_decode(const char *s, uint8_t **out)
{
    size_t n = strlen(s);
    if (n % 4)
        return -1;
    uint8_t *d = malloc(n / 4 * 3 + 1);
    size_t w = 0;
    if (!d)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = s[i + k] == '=' && i + 4 == n && k >= 2 ? 0 : b64_value(s[i + k]);
        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0) {
            free(d);
            return -1;
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        d[w++] = (uint8_t)(x >> 16);
        if (s[i + 2] != '=')
            d[w++] = (uint8_t)(x >> 8);
        if (s[i + 3] != '=')
            d[w++] = (uint8_t)x;
    }
    d[w] = 0;
    *out = d;
    return (ssize_t)w;
}

/* The key just past every key that starts with `prefix`: etcd's range_end. */
static char *prefix_end(const char *prefix, size_t *len)
{
    size_t n = strlen(prefix);
    char *e = malloc(n + 1);
    if (!e)
        return NULL;
    memcpy(e, prefix, n + 1);
    while (n && (uint8_t)e[n - 1] == 0xff)
        n--;
    if (!n) { /* every key: "\0" means the end of the keyspace */
        *len = 1;
        e[0] = 0;
        return e;
    }
    e[n - 1]++;
    *len = n;
    return e;
}

/* ---- JSON helpers ---- */

static void jset_str(json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, json_object_new_string(v));
}

/* An int64 field as the gateway sends it (a decimal string), or a number. */
static int64_t jint(json_object *o, const char *k)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

static json_object *jget(json_object *o, const char *k)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

static void jset_int(json_object *o, const char *k, int64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%lld", (long long)v);
    jset_str(o, k, s);
}

static int jset_bytes(json_object *o, const char *k, const void *v, size_t len)
{
    char *s = b64_encode(v, len);
    if (!s)
        return xr__error_set(XR_ENOMEM, "etcd: out of memory");
    jset_str(o, k, s);
    free(s);
    return 0;
}

/* A kv of a response or an event, decoded. */
static int kv_decode(json_object *j, xr_etcd_kv *kv)
{
    memset(kv, 0, sizeof *kv);
    const char *k = json_object_get_string(jget(j, "key"));
    json_object *v = jget(j, "value");
    uint8_t *key = NULL;
    ssize_t kl = k ? b64_decode(k, &key) : -1;
    ssize_t vl = v ? b64_decode(json_object_get_string(v), &kv->value) : 0;
    if (kl < 0 || vl < 0) {
        free(key);
        free(kv->value);
        kv->value = NULL;
        return xr__error_set(XR_EDIR, "etcd: a key or value that is not base64");
    }
    kv->key = (char *)key;
    kv->len = (size_t)vl;
    kv->mod_revision = jint(j, "mod_revision");
    kv->lease = jint(j, "lease");
    return 0;
}

/* ---- requests ---- */

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    buf *b = arg;
    size_t len = size * n;
    if (b->n + len + 1 > MAX_RESPONSE)
        return 0; /* libcurl fails the request: CURLE_WRITE_ERROR */
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = 0;
    return len;
}

static void set_common(xr_etcd *c, CURL *h, const char *path, const char *body)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", c->endpoint[c->cur], path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->request_ms);
    if (c->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    if (c->cert_file)
        curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file);
    if (c->key_file)
        curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file);
}

static struct curl_slist *headers(xr_etcd *c)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (h && c->token) {
        char auth[1024];
        snprintf(auth, sizeof auth, "Authorization: %s", c->token);
        h = curl_slist_append(h, auth);
    }
    return h;
}

/* One POST to one endpoint. *http: the status; 0 if none came. */
static int post_once(xr_etcd *c, const char *path, const char *body, long *http)
{
    CURL *h = c->req;
    curl_easy_reset(h);
    set_common(c, h, path, body);
    struct curl_slist *hdr = headers(c);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->request_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &c->out);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curl_err);
    c->curl_err[0] = 0;
    c->out.n = 0;
    if (c->out.p)
        c->out.p[0] = 0;
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(hdr);
    *http = 0;
    if (rc != CURLE_OK)
        return xr__error_set(XR_EDIR, "etcd at %s: %s%s%s", c->endpoint[c->cur],
                             curl_easy_strerror(rc), *c->curl_err ? ": " : "", c->curl_err);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http);
    return 0;
}

static int authenticate(xr_etcd *c);

/* POST a JSON body, endpoint after endpoint until one answers; *resp gets
 * the parsed answer. An error etcd gives (HTTP status, {"error": ...}) is
 * XR_EDIR with its message. */
static int request(xr_etcd *c, const char *path, json_object *body, json_object **resp)
{
    const char *s = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN);
    long http = 0;
    int rc = XR_EDIR;
    for (unsigned tried = 0; tried < c->nendpoints; tried++) {
        rc = post_once(c, path, s, &http);
        if (!rc)
            break;
        c->cur = (c->cur + 1) % c->nendpoints; /* that one is down: the next */
    }
    if (!rc && http == 401 && c->user && strcmp(path, "/v3/auth/authenticate") != 0) {
        rc = authenticate(c); /* the token expired */
        if (!rc)
            rc = post_once(c, path, s, &http);
    }
    if (rc)
        return rc;
    json_object *j = json_tokener_parse(c->out.p ? c->out.p : "");
    const char *msg = json_object_get_string(jget(j, "error"));
    if (!msg)
        msg = json_object_get_string(jget(j, "message"));
    if (http != 200 || !j || msg) {
        rc = xr__error_set(XR_EDIR, "etcd at %s: %s: HTTP %ld: %.200s", c->endpoint[c->cur], path,
                           http, msg ? msg : c->out.p ? c->out.p : "no body");
        json_object_put(j);
        return rc;
    }
    *resp = j;
    return 0;
}

static int authenticate(xr_etcd *c)
{
    json_object *b = json_object_new_object(), *r = NULL;
    jset_str(b, "name", c->user);
    jset_str(b, "password", c->password ? c->password : "");
    free(c->token);
    c->token = NULL;
    int rc = request(c, "/v3/auth/authenticate", b, &r);
    json_object_put(b);
    if (rc)
        return rc;
    const char *t = json_object_get_string(jget(r, "token"));
    c->token = t ? strdup(t) : NULL;
    json_object_put(r);
    return c->token ? 0 : xr__error_set(XR_EDIR, "etcd: authentication gave no token");
}

/* ---- the calls ---- */

int xr__etcd_open(const xr_dir_opts *o, xr_etcd **out)
{
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return xr__error_set(XR_EDIR, "etcd: libcurl: %s", curl_easy_strerror(curl_init_rc));
    xr_etcd *c = calloc(1, sizeof *c);
    char *list = strdup(o->endpoints), *save = NULL;
    if (!c || !list) {
        free(c);
        free(list);
        return xr__error_set(XR_ENOMEM, "etcd: out of memory");
    }
    for (char *t = strtok_r(list, ", ", &save); t && c->nendpoints < MAX_ENDPOINTS;
         t = strtok_r(NULL, ", ", &save)) {
        size_t n = strlen(t);
        while (n && t[n - 1] == '/')
            t[--n] = 0;
        c->endpoint[c->nendpoints++] = strdup(t);
    }
    free(list);
    c->request_ms = o->request_ms;
    c->user = o->user ? strdup(o->user) : NULL;
    c->password = o->password ? strdup(o->password) : NULL;
    c->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
    c->cert_file = o->cert_file ? strdup(o->cert_file) : NULL;
    c->key_file = o->key_file ? strdup(o->key_file) : NULL;
    c->req = curl_easy_init();
    c->multi = curl_multi_init();
    int rc = 0;
    if (!c->nendpoints)
        rc = xr__error_set(XR_EINVAL, "xr_dir_open: no endpoint in \"%s\"", o->endpoints);
    else if (!c->req || !c->multi)
        rc = xr__error_set(XR_ENOMEM, "etcd: libcurl handles");
    if (!rc && c->user)
        rc = authenticate(c);
    if (rc) {
        xr__etcd_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void xr__etcd_close(xr_etcd *c)
{
    if (!c)
        return;
    xr__etcd_watch_stop(c);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    if (c->req)
        curl_easy_cleanup(c->req);
    for (unsigned i = 0; i < c->nendpoints; i++)
        free(c->endpoint[i]);
    free(c->user);
    free(c->password);
    free(c->token);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c->out.p);
    free(c);
}

const char *xr__etcd_endpoint(const xr_etcd *c)
{
    return c->endpoint[c->cur];
}

int xr__etcd_lease_grant(xr_etcd *c, unsigned ttl_s, int64_t *id)
{
    json_object *b = json_object_new_object(), *r = NULL;
    jset_int(b, "TTL", ttl_s);
    int rc = request(c, "/v3/lease/grant", b, &r);
    json_object_put(b);
    if (rc)
        return rc;
    *id = jint(r, "ID");
    json_object_put(r);
    return *id ? 0 : xr__error_set(XR_EDIR, "etcd at %s: lease grant gave no ID",
                                   c->endpoint[c->cur]);
}

int xr__etcd_lease_keepalive(xr_etcd *c, int64_t id, int64_t *ttl_s)
{
    json_object *b = json_object_new_object(), *r = NULL;
    jset_int(b, "ID", id);
    int rc = request(c, "/v3/lease/keepalive", b, &r);
    json_object_put(b);
    if (rc)
        return rc;
    /* A stream of one answer: {"result": {"ID", "TTL"}}; no TTL: the lease
     * is gone. */
    *ttl_s = jint(jget(r, "result"), "TTL");
    json_object_put(r);
    return 0;
}

int xr__etcd_lease_revoke(xr_etcd *c, int64_t id)
{
    json_object *b = json_object_new_object(), *r = NULL;
    jset_int(b, "ID", id);
    int rc = request(c, "/v3/lease/revoke", b, &r);
    json_object_put(b);
    json_object_put(r);
    return rc;
}

int xr__etcd_put(xr_etcd *c, const char *key, const void *value, size_t len, int64_t lease)
{
    json_object *b = json_object_new_object(), *r = NULL;
    int rc = jset_bytes(b, "key", key, strlen(key));
    if (!rc)
        rc = jset_bytes(b, "value", value, len);
    if (!rc && lease)
        jset_int(b, "lease", lease);
    if (!rc)
        rc = request(c, "/v3/kv/put", b, &r);
    json_object_put(b);
    json_object_put(r);
    return rc;
}

int xr__etcd_range(xr_etcd *c, const char *key, unsigned how, xr_etcd_kv **kvs, size_t *n,
                   int64_t *rev)
{
    *kvs = NULL;
    *n = 0;
    json_object *b = json_object_new_object(), *r = NULL;
    int rc = jset_bytes(b, "key", key, strlen(key));
    if (!rc && (how & XR_ETCD_PREFIX)) {
        size_t el;
        char *end = prefix_end(key, &el);
        rc = end ? jset_bytes(b, "range_end", end, el) : xr__error_set(XR_ENOMEM, "etcd");
        free(end);
    }
    if (!rc && (how & XR_ETCD_KEYS_ONLY))
        json_object_object_add(b, "keys_only", json_object_new_boolean(1));
    if (!rc && (how & XR_ETCD_SERIALIZABLE))
        json_object_object_add(b, "serializable", json_object_new_boolean(1));
    if (!rc)
        rc = request(c, "/v3/kv/range", b, &r);
    json_object_put(b);
    if (rc)
        return rc;
    *rev = jint(jget(r, "header"), "revision");
    json_object *a = jget(r, "kvs");
    size_t count = a ? json_object_array_length(a) : 0;
    xr_etcd_kv *v = calloc(count ? count : 1, sizeof *v);
    if (!v)
        rc = xr__error_set(XR_ENOMEM, "etcd: %zu keys", count);
    for (size_t i = 0; !rc && i < count; i++) {
        rc = kv_decode(json_object_array_get_idx(a, i), &v[i]);
        if (!rc)
            *n = i + 1;
    }
    json_object_put(r);
    if (rc) {
        xr__etcd_kvs_free(v, *n);
        *n = 0;
        return rc;
    }
    *kvs = v;
    return 0;
}

void xr__etcd_kvs_free(xr_etcd_kv *kvs, size_t n)
{
    for (size_t i = 0; kvs && i < n; i++) {
        free(kvs[i].key);
        free(kvs[i].value);
    }
    free(kvs);
}

/* ---- the watch stream ---- */

/* One message of the stream: {"result": {"header", "events", "created",
 * "canceled", "compact_revision"}}. */
static void watch_message(xr_etcd *c, json_object *m)
{
    json_object *res = jget(m, "result");
    if (!res) {
        const char *e = json_object_get_string(jget(m, "error"));
        snprintf(c->watch_err, sizeof c->watch_err, "%.200s", e ? e : "a message without result");
        c->ended = true;
        return;
    }
    int64_t rev = jint(jget(res, "header"), "revision");
    json_object *ev = jget(res, "events");
    for (size_t i = 0, n = ev ? json_object_array_length(ev) : 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(ev, i);
        const char *type = json_object_get_string(jget(e, "type"));
        xr_etcd_kv kv;
        if (kv_decode(jget(e, "kv"), &kv))
            continue;
        c->fn(c->user_arg, type && strcmp(type, "DELETE") == 0, &kv);
        if (kv.mod_revision >= c->next_rev)
            c->next_rev = kv.mod_revision + 1;
        free(kv.key);
        free(kv.value);
    }
    if (rev >= c->next_rev && !(ev && json_object_array_length(ev)))
        c->next_rev = rev + 1; /* a progress or created message: nothing missed before it */
    if (json_object_get_boolean(jget(res, "canceled"))) {
        int64_t compact = jint(res, "compact_revision");
        snprintf(c->watch_err, sizeof c->watch_err, "the watch was canceled%s",
                 compact ? " (its revision was compacted)" : "");
        if (compact > c->next_rev)
            c->next_rev = compact;
        c->ended = true;
    }
}

static size_t watch_data(char *data, size_t size, size_t n, void *arg)
{
    xr_etcd *c = arg;
    size_t len = size * n, off = 0;
    while (off < len && !c->ended) {
        json_object *m = json_tokener_parse_ex(c->tok, data + off, (int)(len - off));
        enum json_tokener_error err = json_tokener_get_error(c->tok);
        if (err == json_tokener_continue)
            break; /* the message goes on in the next piece */
        size_t used = json_tokener_get_parse_end(c->tok);
        json_tokener_reset(c->tok);
        if (!m) {
            if (err != json_tokener_success) {
                snprintf(c->watch_err, sizeof c->watch_err, "unreadable JSON: %s",
                         json_tokener_error_desc(err));
                c->ended = true;
            }
            off += used ? used : len - off;
            continue;
        }
        watch_message(c, m);
        json_object_put(m);
        off += used ? used : len - off;
    }
    return len;
}

int xr__etcd_watch_start(xr_etcd *c, const char *prefix, int64_t from)
{
    xr__etcd_watch_stop(c);
    json_object *b = json_object_new_object(), *cr = json_object_new_object();
    size_t el = 0; /* set by prefix_end when it returns a key */
    char *end = prefix_end(prefix, &el);
    int rc = end ? 0 : xr__error_set(XR_ENOMEM, "etcd");
    if (!rc)
        rc = jset_bytes(cr, "key", prefix, strlen(prefix));
    if (!rc)
        rc = jset_bytes(cr, "range_end", end, el);
    free(end);
    jset_int(cr, "start_revision", from);
    json_object_object_add(cr, "progress_notify", json_object_new_boolean(1));
    json_object_object_add(b, "create_request", cr);
    if (!rc)
        c->watch_body = strdup(json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN));
    json_object_put(b);
    if (rc)
        return rc;
    c->watch = curl_easy_init();
    c->tok = json_tokener_new();
    c->watch_hdr = headers(c);
    if (!c->watch || !c->tok || !c->watch_body || !c->watch_hdr) {
        xr__etcd_watch_stop(c);
        return xr__error_set(XR_ENOMEM, "etcd: the watch");
    }
    set_common(c, c->watch, "/v3/watch", c->watch_body);
    curl_easy_setopt(c->watch, CURLOPT_HTTPHEADER, c->watch_hdr);
    curl_easy_setopt(c->watch, CURLOPT_WRITEFUNCTION, watch_data);
    curl_easy_setopt(c->watch, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->watch, CURLOPT_TCP_KEEPALIVE, 1L);
    c->next_rev = from;
    c->ended = false;
    c->watch_err[0] = 0;
    curl_multi_add_handle(c->multi, c->watch);
    return 0;
}

int xr__etcd_watch_poll(xr_etcd *c, int timeout_ms, xr_etcd_watch_fn fn, void *user,
                        int64_t *next_rev)
{
    if (!c->watch) {
        *next_rev = c->next_rev;
        return xr__error_set(XR_EDIR, "etcd: no watch");
    }
    c->fn = fn;
    c->user_arg = user;
    int running = 0, ready;
    curl_multi_poll(c->multi, NULL, 0, timeout_ms, &ready);
    curl_multi_perform(c->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left)))
        if (m->msg == CURLMSG_DONE) {
            c->ended = true;
            if (!c->watch_err[0])
                snprintf(c->watch_err, sizeof c->watch_err, "the stream ended: %s",
                         curl_easy_strerror(m->data.result));
        }
    *next_rev = c->next_rev;
    if (c->ended)
        return xr__error_set(XR_EDIR, "etcd at %s: watch: %s", c->endpoint[c->cur], c->watch_err);
    return 0;
}

void xr__etcd_watch_stop(xr_etcd *c)
{
    if (c->watch) {
        curl_multi_remove_handle(c->multi, c->watch);
        curl_easy_cleanup(c->watch);
        c->watch = NULL;
    }
    curl_slist_free_all(c->watch_hdr);
    c->watch_hdr = NULL;
    free(c->watch_body);
    c->watch_body = NULL;
    if (c->tok)
        json_tokener_free(c->tok);
    c->tok = NULL;
}

void xr__etcd_wakeup(xr_etcd *c)
{
    curl_multi_wakeup(c->multi);
}
