/*
 * policy.h - the rail-selection policy and the plan cache (see policy.c).
 */
#ifndef XR_POLICY_H
#define XR_POLICY_H

#include "core/plan.h"
#include "engine.h"

int xr__policy_init(xr_engine *e);
void xr__policy_fini(xr_engine *e);

/*
 * The plan for a class of transfers: peer (by its handle, name and the
 * local rails that reach it), op, memory kind, device and size class
 * (floor(log2(len)) + 1). A miss asks the policy script (or the built-in
 * equal stripe); a hit costs a short scan. Engine lock held; the plan stays
 * valid until the next flush, which also needs the lock.
 */
int xr__policy_plan_get(xr_engine *e, const void *peer, const char *peer_name, uint64_t reach,
                        xr_op op, xr_mem_kind kind, int device, size_t len,
                        const xr_plan **out);
/* Forget every cached plan: after a reload, a rail state change or an unload.
 * Engine lock held. */
void xr__policy_flush(xr_engine *e);
/* The rails a new region is registered on: the register hook's answer, or
 * every rail. Engine lock held. */
int xr__policy_region_rails(xr_engine *e, uint64_t addr, size_t len, xr_mem_kind kind,
                            int device, unsigned access, uint64_t *mask);
/* Give each rail's pending chunk error to on_rail_error and keep its
 * answer in the rail's err_action (XR_RAIL_ACT_*; "retry" without a hook):
 * "disable" takes the rail down, and the others leave it suspect until it
 * completes again. No lock held. */
void xr__policy_rail_errors(xr_engine *e);
/* Put a rail in a state (xr_rail_state) for a reason, and forget the plans
 * made with its old state if it entered or left plans. Engine lock held. */
void xr__policy_rail_state(xr_engine *e, unsigned i, int state, const char *reason);
/* The loaded policy's path, or NULL for the built-in one. Engine lock held. */
const char *xr__policy_path(const xr_engine *e);

#endif
