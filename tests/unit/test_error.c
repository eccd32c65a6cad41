/* test_error.c - the error table and last-error text (engine/src/core/error.c),
 * the log (log.c) and the text builder (text.c). */
#include "log.h"
#include "unit.h"
#include "xrail.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

START_TEST(every_code_has_a_name_and_text)
{
    int n = 0;
#define XR__CHECK(name, code, msg)                                                           \
    ck_assert_str_eq(xr_err_name(XR_E##name), "XR_E" #name);                                \
    ck_assert_str_eq(xr_strerror(XR_E##name), msg);                                         \
    ck_assert_int_eq(XR_E##name, -(code));                                                  \
    n++;
    XR_ERRNO_MAP(XR__CHECK)
#undef XR__CHECK
    ck_assert_int_gt(n, 10);
    ck_assert_str_eq(xr_strerror(0), "success");
    ck_assert_str_eq(xr_err_name(0), "XR_OK");
    ck_assert_str_eq(xr_strerror(-9999), "unknown error");
    ck_assert_str_eq(xr_err_name(7), "XR_E?");
}
END_TEST

static void *other_thread(void *arg)
{
    (void)arg;
    xr__error_set(XR_EIO, "the other thread's failure");
    return NULL;
}

START_TEST(last_error_is_per_thread)
{
    ck_assert_int_eq(xr__error_set(XR_EINVAL, "field %s: %d bytes", "rails[5]", 12), XR_EINVAL);
    ck_assert_str_eq(xr__error_last(), "field rails[5]: 12 bytes");
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, NULL);
    ck_assert_str_eq(xr__error_last(), "field rails[5]: 12 bytes");
    char big[2 * XR_ERRMSG_MAX];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    xr__error_set(XR_EIO, "%s", big); /* cut, never overrun */
    ck_assert_uint_eq(strlen(xr__error_last()), XR_ERRMSG_MAX - 1);
    /* Context added to the last error, which is also an argument. */
    xr__error_set(XR_EDIR, "Couldn't connect to server");
    xr__error_set(XR_EDIR, "reading 'kv-b' from etcd: %s", xr__error_last());
    ck_assert_str_eq(xr__error_last(), "reading 'kv-b' from etcd: Couldn't connect to server");
}
END_TEST

START_TEST(text_put_counts_past_the_end)
{
    char buf[8];
    size_t w = 0;
    xr__text_put(buf, sizeof buf, &w, "%s", "abc");
    xr__text_put(buf, sizeof buf, &w, "%d", 12345);
    ck_assert_uint_eq(w, 8); /* would need 9 bytes with its NUL: too small */
    ck_assert_str_eq(buf, "abc1234");
    xr__text_put(buf, sizeof buf, &w, "more");
    ck_assert_uint_eq(w, 12);
    ck_assert_str_eq(buf, "abc1234");
    w = 0;
    xr__text_put(NULL, 0, &w, "%s", "size only");
    ck_assert_uint_eq(w, 9);
}
END_TEST

/* What log_write prints at `level` for a logger at `max`. */
static void logged(int max, int level, char *out, size_t cap)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fds[1], 2);
    xr_logger lg = {.name = "eng", .level = max};
    xr__log_write(&lg, level, "rail %u down", 3u);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    ssize_t n = read(fds[0], out, cap - 1);
    out[n > 0 ? n : 0] = 0;
    close(fds[0]);
}

/* A line is "YYYY-MM-DDTHH:MM:SS.mmmZ " and then `rest`. */
static void check_line(const char *out, const char *rest)
{
    ck_assert_uint_eq(strlen(out), 25 + strlen(rest));
    ck_assert_msg(out[4] == '-' && out[10] == 'T' && out[19] == '.' && out[23] == 'Z' &&
                      out[24] == ' ', "no timestamp: %s", out);
    ck_assert_str_eq(out + 25, rest);
}

START_TEST(log_filters_by_level)
{
    char out[256];
    logged(XR_LOG_WARN, XR_LOG_WARN, out, sizeof out);
    check_line(out, "xrail[eng] warn: rail 3 down\n");
    logged(XR_LOG_WARN, XR_LOG_INFO, out, sizeof out);
    ck_assert_str_eq(out, "");
    logged(XR_LOG_DEBUG, XR_LOG_DEBUG, out, sizeof out);
    check_line(out, "xrail[eng] debug: rail 3 down\n");
}
END_TEST

typedef struct seen {
    int calls, level;
    char engine[32], msg[64];
} seen;

static void capture(int level, const char *engine, const char *msg, void *user)
{
    seen *s = user;
    s->calls++;
    s->level = level;
    snprintf(s->engine, sizeof s->engine, "%s", engine);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
}

START_TEST(log_handler_takes_the_lines)
{
    seen s = {0};
    char out[256];
    xr_log_set_handler(capture, &s);
    logged(XR_LOG_WARN, XR_LOG_WARN, out, sizeof out);
    ck_assert_str_eq(out, ""); /* not on stderr */
    ck_assert_int_eq(s.calls, 1);
    ck_assert_int_eq(s.level, XR_LOG_WARN);
    ck_assert_str_eq(s.engine, "eng");
    ck_assert_str_eq(s.msg, "rail 3 down");
    logged(XR_LOG_WARN, XR_LOG_DEBUG, out, sizeof out); /* the level still filters */
    ck_assert_int_eq(s.calls, 1);
    xr_log_set_handler(NULL, NULL);
    logged(XR_LOG_WARN, XR_LOG_WARN, out, sizeof out);
    check_line(out, "xrail[eng] warn: rail 3 down\n");
    ck_assert_int_eq(s.calls, 1);
}
END_TEST

START_TEST(log_limit_holds_floods_back)
{
    xr_log_limit l = {0};
    unsigned held = 99;
    ck_assert(xr__log_limit_pass(&l, 50000000, &held)); /* the first line, in full */
    ck_assert_uint_eq(held, 0);
    for (int i = 0; i < 895; i++)
        ck_assert(!xr__log_limit_pass(&l, 50000000, &held));
    ck_assert(!xr__log_limit_due(&l, 50000000, &held)); /* asking counts nothing */
    usleep(60000);
    ck_assert(xr__log_limit_pass(&l, 50000000, &held)); /* the next interval: the count */
    ck_assert_uint_eq(held, 895);
    ck_assert(!xr__log_limit_pass(&l, 50000000, &held));
    ck_assert(!xr__log_limit_due(&l, 50000000, &held));
    usleep(60000);
    ck_assert(xr__log_limit_due(&l, 50000000, &held)); /* a flood that stopped is counted */
    ck_assert_uint_eq(held, 1);
    ck_assert(!xr__log_limit_due(&l, 50000000, &held));
}
END_TEST

static void add(TCase *tc)
{
    tcase_add_test(tc, every_code_has_a_name_and_text);
    tcase_add_test(tc, last_error_is_per_thread);
    tcase_add_test(tc, text_put_counts_past_the_end);
    tcase_add_test(tc, log_filters_by_level);
    tcase_add_test(tc, log_handler_takes_the_lines);
    tcase_add_test(tc, log_limit_holds_floods_back);
}

int main(void)
{
    return unit_run("error", add);
}
