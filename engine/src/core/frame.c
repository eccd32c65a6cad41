/*
 * frame.c - notification frames: the header codec and reassembly.
 *
 * Frames of one message may arrive in any order (a provider need not order
 * sends), so each names its message and offset; a message is complete when
 * its frames carried `total` bytes. The buffer is zeroed when made, so a
 * forged, overlapping frame yields a wrong message, never another
 * message's or the heap's bytes.
 */
#include "frame.h"

#include "bytes.h"

#include <stdlib.h>
#include <string.h>

typedef struct partial {
    xr_list link;
    uint64_t instance, seq;
    size_t total, got;
    uint8_t *data;
} partial;

void xr__frame_hdr_put(uint8_t *b, const xr_frame_hdr *h)
{
    xr__bytes_put_le(b, XR_FRAME_MAGIC, 4);
    xr__bytes_put_le(b + 4, 0, 4);
    xr__bytes_put_le(b + 8, h->instance, 8);
    xr__bytes_put_le(b + 16, h->seq, 8);
    xr__bytes_put_le(b + 24, h->total, 8);
    xr__bytes_put_le(b + 32, h->off, 8);
}

const char *xr__frame_hdr_get(const uint8_t *b, size_t flen, size_t max_total, xr_frame_hdr *h)
{
    if (flen < XR_FRAME_HDR || xr__bytes_get_le(b, 4) != XR_FRAME_MAGIC)
        return "a frame without the xrail header";
    h->instance = xr__bytes_get_le(b + 8, 8);
    h->seq = xr__bytes_get_le(b + 16, 8);
    h->total = xr__bytes_get_le(b + 24, 8);
    h->off = xr__bytes_get_le(b + 32, 8);
    size_t plen = flen - XR_FRAME_HDR;
    if (h->total == 0 && h->off == 0 && plen == 0)
        return NULL; /* a hello: it carries no message */
    if (h->total == 0 || (max_total && h->total > max_total) || h->off > h->total ||
        plen > h->total - h->off)
        return "a frame whose lengths do not add up";
    return NULL;
}

void xr__frame_reasm_init(xr_reasm *ra, size_t max_total)
{
    xr__list_init(&ra->partial);
    ra->max_total = max_total;
}

static void partial_free(partial *p)
{
    xr__list_remove(&p->link);
    free(p->data);
    free(p);
}

void xr__frame_reasm_fini(xr_reasm *ra)
{
    xr__list_each(n, &ra->partial)
        partial_free(xr__list_entry(n, partial, link));
}

const char *xr__frame_place(xr_reasm *ra, const uint8_t *frame, size_t flen, uint8_t **msg,
                            size_t *len)
{
    *msg = NULL;
    *len = 0;
    xr_frame_hdr h;
    const char *bad = xr__frame_hdr_get(frame, flen, ra->max_total, &h);
    if (bad)
        return bad;
    if (h.total == 0)
        return NULL; /* a hello (xr_peer_connect): its arrival was its purpose */
    size_t plen = flen - XR_FRAME_HDR;
    partial *p = NULL;
    xr__list_each(n, &ra->partial) {
        partial *q = xr__list_entry(n, partial, link);
        if (q->instance == h.instance && q->seq == h.seq) {
            p = q;
            break;
        }
    }
    if (!p && h.off == 0 && plen == h.total) { /* a one-frame message: no reassembly */
        uint8_t *d = malloc(h.total);
        if (!d)
            return "out of memory";
        memcpy(d, frame + XR_FRAME_HDR, h.total);
        *msg = d;
        *len = h.total;
        return NULL;
    }
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p || !(p->data = calloc(1, h.total))) {
            free(p);
            return "out of memory";
        }
        p->instance = h.instance;
        p->seq = h.seq;
        p->total = h.total;
        xr__list_push_back(&ra->partial, &p->link);
    }
    if (p->total != h.total) {
        partial_free(p);
        return "a frame that disagrees with its message's length";
    }
    memcpy(p->data + h.off, frame + XR_FRAME_HDR, plen);
    p->got += plen;
    if (p->got >= p->total) {
        *msg = p->data;
        *len = p->total;
        p->data = NULL;
        partial_free(p);
    }
    return NULL;
}
