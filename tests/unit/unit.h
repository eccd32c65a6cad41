/* unit.h - the runner the unit tests share. */
#ifndef XR_UNIT_H
#define XR_UNIT_H

#include <check.h>

/* Run a suite; the exit status ctest reads. */
static inline int unit_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

/* One suite of one case, which `add` fills (a 120 s timeout unless it sets one). */
static inline int unit_run(const char *name, void (*add)(TCase *tc))
{
    Suite *s = suite_create(name);
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 120);
    add(tc);
    suite_add_tcase(s, tc);
    return unit_run_suite(s);
}

#endif
