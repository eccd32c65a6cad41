/*
 * progress.h - driving the engine (progress.c): one pass over the rails,
 * staging and what completions left to do, and the public calls that
 * drive it while they wait.
 */
#ifndef XR_PROGRESS_H
#define XR_PROGRESS_H

#include "engine.h"

/* One share of the progress work: the rails with i % of == part, and, for
 * part 0, what is engine-wide. xr_progress is the whole (part 0 of 1).
 * The number of events handled. */
int xr__progress_share(xr_engine *e, unsigned part, unsigned of);

/* Set up a driver's share (rails i with i % of == index) and its epoll set
 * of their wait fds, once the rails are open; without one (a rail has no
 * wait fd, or epoll failed) it naps. 0. */
int xr__progress_part_open(xr_engine *e, xr_progress_part *pp, unsigned index, unsigned of);
void xr__progress_part_close(xr_progress_part *pp);
/* After a pass that handled nothing: spin, then sleep in epoll for at most
 * max_ms (< 0: the longest, 10 ms) if nothing of ours is in flight on its
 * rails, else nap progress_sleep_us (nap) or yield. `idle` counts passes
 * with nothing, and is reset by the caller when one handles something. */
void xr__progress_idle(xr_progress_part *pp, unsigned *idle, int max_ms, bool nap);
/* The rails' wake (xr_rail_cfg.wake): work was queued on `rail`; wake the
 * driver sleeping for it. */
void xr__progress_wake(void *arg, unsigned rail);

#endif
