/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * hier.h - what the two hierarchical schedules (hier_dispatch.c,
 * hier_combine.c) share: this node's regions of a lane, as the geometry
 * (hier_geom.h) lays them out.
 */
#ifndef EPC_HIER_H
#define EPC_HIER_H

#include "hier_geom.h"
#include "request.h"

/* Local rank l's shared region in lane ln; its row metadata arrays in *m
 * when m is not NULL. */
char *hier_region(const epc_lane_t *ln, const hier_geom_t *g, int l, coll_meta_t *m);

/* EPC_ERR_INTERNAL (raised, naming phase) unless every region of this node
 * holds what the layout puts there: the writes, checked against each
 * region's row count, then stay inside the mappings. */
epc_status_t hier_check_regions(epc_ctx_t *ctx, const epc_lane_t *ln, const hier_geom_t *g,
                                const char *phase);

#endif
