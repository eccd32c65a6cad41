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

#endif
