/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * placement.h - internal layout of an expert placement and the planner's
 * building blocks (placement.c: the table and replica choice;
 * placement_plan.c: DeepSeek's EPLB and epcomm's balanced planner).
 *
 * Slot s lives on rank s / spr (spr = S / R), node rank / rpn.  The
 * replicas of logical expert e are rep_slot[rep_begin[e] .. rep_begin[e+1]),
 * ascending.
 */
#ifndef EPC_ROUTING_PLACEMENT_H
#define EPC_ROUTING_PLACEMENT_H

#include <stdint.h>

#include "epcomm.h"
#include "error.h"

struct epc_placement {
    epc_obj_t hdr; /* magic EPC_MAGIC_PLACEMENT */
    int E, R, rpn, nodes, S, spr;
    int max_rep;
    epc_replica_choice_t choice; /* epc_placement_map's rule */
    int32_t *slot_expert;        /* [S] */
    int32_t *rep_begin;          /* [E + 1] */
    int32_t *rep_slot;           /* [S] */
    int32_t *home_node;          /* [E]: the node of all of e's slots, or -1 */
    int32_t *main_node;          /* [E]: the node EPC_REPLICA_LIMITED falls back to */
};

/* A live placement, else EPC_ERR_INVALID_ARG raised naming fn. */
epc_status_t epc_placement_check(const epc_placement_t *pl, const char *fn);

/* The shape of a placement from its params (0: the defaults, written to
 * R, rpn, S), checked; EPC_ERR_INVALID_ARG raised naming fn and the field. */
epc_status_t epc_placement_shape(const char *fn, int E, int num_ranks, int ranks_per_node,
                                 int num_slots, int *R, int *rpn, int *S);

/* Builds a placement from a checked shape and a table the caller has
 * already validated (the planner's output).  EPC_ERR_NO_MEMORY raised. */
epc_status_t epc_placement_build(int E, int R, int rpn, int S, const int32_t *slot_expert,
                                 epc_placement_t **pl_p);

/* The node holding slot s. */
static inline int epc_placement_slot_node(const epc_placement_t *pl, int s)
{
    return s / pl->spr / pl->rpn;
}

/* DeepSeek's EPLB, the reference: phy2log [S] for weight [E] (layer count
 * 1), hierarchical when G is a multiple of nodes, else global.  Returns 0,
 * -1 when out of memory. */
int epc_eplb(const double *weight, int E, int S, int G, int nodes, int R, int32_t *phy2log);

/* epcomm's planner: the same three steps, each followed by local search
 * (swaps, then moving replicas between experts) that lowers the busiest
 * rank's load.  Same contract as epc_eplb. */
int epc_plan_balanced(const double *weight, int E, int S, int G, int nodes, int R,
                      int32_t *phy2log);

/* Below this share of the mean node load a spill is not worth a slot. */
#define PLAN_SPILL_MIN 1e-3

/* The spill planner's state (placement_spill.c): nodes N, one group per
 * node.  Arrays: expert, node, x, cap [S - E] (the spills, num of them;
 * their modelled load and its most), on [E x N] (e has a spill on n),
 * from [N x N] (spills on n of node g's group), count [E] (e's spills),
 * budget [N] (free slots), load [N] (modelled); set by the caller:
 * group_at [N] (the group on node n), homes [E] (the home slots each
 * expert is expected to get). */
typedef struct epc_spill {
    int E, nodes, ranks, num;
    double slot_cap; /* a spill's most: the mean rank load */
    int *expert, *node, *from, *count, *budget, *group_at, *homes;
    char *on;
    double *x, *cap, *load;
} epc_spill_t;

/* Decides spill replicas for weight [E] and reach [E x N] with sn slots a
 * node (docs/PLACEMENT.md); rem [E] gets each expert's load left to its
 * own node.  group_at and homes must be set. */
void epc_plan_spills(epc_spill_t *sp, const double *w, const double *reach, int sn, double *rem);

/* The spill model on table t, once planned: each spill's share into
 * sp->x, what is left to each expert's home slots into rem [E], each
 * expert's slot count into cnt [E]. */
void epc_spill_reshare(epc_spill_t *sp, const double *w, const double *reach, const int32_t *t,
                       int S, int *cnt, double *rem);

#endif
