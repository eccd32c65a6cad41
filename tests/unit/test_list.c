/* test_list.c - the intrusive list every queue uses (engine/src/core/list.h). */
#include "list.h"
#include "unit.h"

typedef struct item {
    int v;
    xr_list link;
} item;

static int values(xr_list *h, int *out)
{
    int n = 0;
    xr__list_each(it, h)
        out[n++] = xr__list_entry(it, item, link)->v;
    return n;
}

START_TEST(fifo_stack_and_removal)
{
    xr_list h;
    xr__list_init(&h);
    ck_assert(xr__list_empty(&h));
    ck_assert_ptr_null(xr__list_pop_front(&h));
    item it[5];
    for (int i = 0; i < 5; i++) {
        it[i].v = i;
        xr__list_init(&it[i].link);
        ck_assert(!xr__list_linked(&it[i].link));
    }
    xr__list_push_back(&h, &it[1].link);
    xr__list_push_back(&h, &it[2].link);
    xr__list_push_front(&h, &it[0].link);
    xr__list_push_back(&h, &it[3].link);
    int v[8], n = values(&h, v);
    ck_assert_int_eq(n, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(v[i], i);
    xr__list_remove(&it[2].link); /* from the middle */
    xr__list_remove(&it[2].link); /* twice: harmless */
    ck_assert(!xr__list_linked(&it[2].link));
    n = values(&h, v);
    ck_assert(n == 3 && v[0] == 0 && v[1] == 1 && v[2] == 3);
    ck_assert_ptr_eq(xr__list_pop_front(&h), &it[0].link);
    /* removing the current node while walking */
    xr__list_each(x, &h)
        xr__list_remove(x);
    ck_assert(xr__list_empty(&h));
}
END_TEST

START_TEST(splice)
{
    xr_list a, b;
    xr__list_init(&a);
    xr__list_init(&b);
    item it[4];
    for (int i = 0; i < 4; i++) {
        it[i].v = i;
        xr__list_push_back(i < 2 ? &a : &b, &it[i].link);
    }
    xr__list_splice(&a, &b);
    ck_assert(xr__list_empty(&b));
    int v[8], n = values(&a, v);
    ck_assert_int_eq(n, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(v[i], i);
    xr__list_splice(&a, &b); /* an empty one changes nothing */
    ck_assert_int_eq(values(&a, v), 4);
    xr__list_splice(&b, &a); /* into an empty one */
    ck_assert(xr__list_empty(&a));
    ck_assert_int_eq(values(&b, v), 4);
}
END_TEST

static void add(TCase *tc)
{
    tcase_add_test(tc, fifo_stack_and_removal);
    tcase_add_test(tc, splice);
}

int main(void)
{
    return unit_run("list", add);
}
