/*
 * raw.c - xrail-bench --raw: the same transfers as plain fi_write/fi_read
 * on one libfabric endpoint, with no engine in between, so that the
 * engine's own cost shows beside it.
 *
 * The endpoint is opened the way a rail is (RDM, RMA and messages, the same
 * MR modes, delivery-complete where the provider has it), memory is
 * registered once, and the peer's address, key and base travel over the
 * bench's pipe. Completions are read from the CQ in the same loop that
 * posts, as the engine's progress does.
 */
#include "raw.h"

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_rma.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(struct fi_context2) <= sizeof(((raw_op *)0)->fctx), "context fits");

#define MODES (FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_PROV_KEY | FI_MR_ALLOCATED | FI_MR_ENDPOINT)

struct raw_ep {
    struct fi_info *info;
    struct fid_fabric *fabric;
    struct fid_domain *domain;
    struct fid_ep *ep;
    struct fid_cq *cq;
    struct fid_av *av;
    struct fid_mr *mr;
    void *desc;
    fi_addr_t peer;
};

static void check(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "xrail-bench --raw: %s: %s\n", what, fi_strerror(-rc));
        exit(1);
    }
}

raw_ep *raw_open(const char *provider, const char *domain, void *buf, size_t len)
{
    raw_ep *r = calloc(1, sizeof *r);
    struct fi_info *h = fi_allocinfo(), *list = NULL;
    h->ep_attr->type = FI_EP_RDM;
    h->caps = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE | FI_MSG;
    h->mode = FI_CONTEXT | FI_CONTEXT2;
    h->domain_attr->mr_mode = MODES;
    h->domain_attr->threading = FI_THREAD_DOMAIN;
    h->fabric_attr->prov_name = strdup(provider);
    h->tx_attr->op_flags = FI_DELIVERY_COMPLETE; /* as the engine asks, where offered */
    int rc = fi_getinfo(FI_VERSION(1, 14), NULL, NULL, 0, h, &list);
    if (rc) {
        h->tx_attr->op_flags = 0;
        rc = fi_getinfo(FI_VERSION(1, 14), NULL, NULL, 0, h, &list);
    }
    check(rc, "fi_getinfo");
    struct fi_info *pick = list;
    /* The domain the bench's first rail uses (lo, or a veth of --netns). */
    for (struct fi_info *i = list; domain && i; i = i->next)
        if (i->domain_attr->name && !strcmp(i->domain_attr->name, domain)) {
            pick = i;
            break;
        }
    r->info = fi_dupinfo(pick);
    fi_freeinfo(list);
    fi_freeinfo(h);
    check(fi_fabric(r->info->fabric_attr, &r->fabric, NULL), "fi_fabric");
    check(fi_domain(r->fabric, r->info, &r->domain, NULL), "fi_domain");
    struct fi_cq_attr cq = {.format = FI_CQ_FORMAT_CONTEXT, .wait_obj = FI_WAIT_NONE,
                            .size = r->info->tx_attr->size + r->info->rx_attr->size};
    check(fi_cq_open(r->domain, &cq, &r->cq, NULL), "fi_cq_open");
    struct fi_av_attr av = {.type = FI_AV_TABLE};
    check(fi_av_open(r->domain, &av, &r->av, NULL), "fi_av_open");
    check(fi_endpoint(r->domain, r->info, &r->ep, NULL), "fi_endpoint");
    check(fi_ep_bind(r->ep, &r->cq->fid, FI_TRANSMIT | FI_RECV), "bind cq");
    check(fi_ep_bind(r->ep, &r->av->fid, 0), "bind av");
    check(fi_enable(r->ep), "fi_enable");
    check(fi_mr_reg(r->domain, buf, len,
                    FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE, 0, 1, 0, &r->mr, NULL),
          "fi_mr_reg");
    if (r->info->domain_attr->mr_mode & FI_MR_ENDPOINT) {
        check(fi_mr_bind(r->mr, &r->ep->fid, 0), "fi_mr_bind");
        check(fi_mr_enable(r->mr), "fi_mr_enable");
    }
    r->desc = fi_mr_desc(r->mr);
    return r;
}

size_t raw_name(raw_ep *r, void *buf, size_t cap, uint64_t base, raw_peer_info *pi)
{
    size_t n = cap;
    check(fi_getname(&r->ep->fid, buf, &n), "fi_getname");
    pi->key = fi_mr_key(r->mr);
    /* Without FI_MR_VIRT_ADDR the target addresses its region by offset. */
    pi->base = (r->info->domain_attr->mr_mode & FI_MR_VIRT_ADDR) ? base : 0;
    return n;
}

void raw_connect(raw_ep *r, const void *name)
{
    if (fi_av_insert(r->av, name, 1, &r->peer, 0, NULL) != 1)
        check(-FI_EINVAL, "fi_av_insert");
}

int raw_poll(raw_ep *r, void **ctx, int max)
{
    struct fi_cq_entry ent[64];
    ssize_t n = fi_cq_read(r->cq, ent, max < 64 ? (size_t)max : 64);
    if (n == -FI_EAVAIL) {
        struct fi_cq_err_entry ee = {0};
        fi_cq_readerr(r->cq, &ee, 0);
        fprintf(stderr, "xrail-bench --raw: completion error: %s\n", fi_strerror(ee.err));
        exit(1);
    }
    if (n <= 0)
        return 0;
    for (ssize_t i = 0; i < n; i++)
        ctx[i] = ent[i].op_context;
    return (int)n;
}

int raw_post(raw_ep *r, int write, void *buf, size_t len, uint64_t raddr, uint64_t key,
             void *ctx)
{
    ssize_t rc = write ? fi_write(r->ep, buf, len, r->desc, r->peer, raddr, key, ctx)
                       : fi_read(r->ep, buf, len, r->desc, r->peer, raddr, key, ctx);
    if (rc == -FI_EAGAIN)
        return 1;
    check((int)rc, write ? "fi_write" : "fi_read");
    return 0;
}

size_t raw_max_msg(raw_ep *r)
{
    return r->info->ep_attr->max_msg_size;
}

void raw_close(raw_ep *r)
{
    fi_close(&r->ep->fid);
    fi_close(&r->mr->fid);
    fi_close(&r->av->fid);
    fi_close(&r->cq->fid);
    fi_close(&r->domain->fid);
    fi_close(&r->fabric->fid);
    fi_freeinfo(r->info);
    free(r);
}
