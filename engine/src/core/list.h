/*
 * list.h - one intrusive, circular, doubly linked list for every queue and
 * set in the engine: a node lives inside the object it links, so queuing
 * allocates nothing, and any node is removed in O(1).
 *
 * A head is a node that links to itself when the list is empty; it must be
 * initialized with xr__list_init (a zeroed head is not an empty list). A
 * node that is on no list also links to itself after xr__list_remove, so a
 * second removal is harmless.
 */
#ifndef XR_CORE_LIST_H
#define XR_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct xr_list {
    struct xr_list *prev, *next;
} xr_list;

static inline void xr__list_init(xr_list *h)
{
    h->prev = h->next = h;
}

static inline bool xr__list_empty(const xr_list *h)
{
    return h->next == h;
}

/* Whether a node initialized with xr__list_init is on a list now. */
static inline bool xr__list_linked(const xr_list *n)
{
    return n->next && n->next != n;
}

static inline void xr__list_insert_(xr_list *n, xr_list *prev, xr_list *next)
{
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}

static inline void xr__list_push_back(xr_list *h, xr_list *n)
{
    xr__list_insert_(n, h->prev, h);
}

static inline void xr__list_push_front(xr_list *h, xr_list *n)
{
    xr__list_insert_(n, h, h->next);
}

static inline void xr__list_remove(xr_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* The first node, unlinked; NULL when the list is empty. */
static inline xr_list *xr__list_pop_front(xr_list *h)
{
    if (xr__list_empty(h))
        return NULL;
    xr_list *n = h->next;
    xr__list_remove(n);
    return n;
}

/* Move every node of `from` to the back of `to`; `from` is left empty. */
static inline void xr__list_splice(xr_list *to, xr_list *from)
{
    if (xr__list_empty(from))
        return;
    xr_list *first = from->next, *last = from->prev;
    first->prev = to->prev;
    to->prev->next = first;
    last->next = to;
    to->prev = last;
    xr__list_init(from);
}

/* The object that holds node `n` as its `member`. */
#define xr__list_entry(n, type, member) ((type *)((char *)(n) - offsetof(type, member)))

/* Walk a list; the body may remove the current node (not the next). */
#define xr__list_each(it, h)                                                                   \
    for (xr_list *it = (h)->next, *it##_next_ = it->next; it != (h);                           \
         it = it##_next_, it##_next_ = it->next)

#endif
