/* SPDX-License-Identifier: BSD-3-Clause */
/* plan_util.h - options, logit generation and benchmarks of epc_plan. */
#ifndef EPC_PLAN_UTIL_H
#define EPC_PLAN_UTIL_H

#include <epcomm.h>

typedef struct plan_opts {
    int experts, topk, ranks, rpn, m, tokens, hidden;
    int group_ranks; /* ranks of one expert-parallel group: min(ranks, experts) */
    double row_bytes, skew, intra, inter;
    double combine_row_bytes;    /* a partial sum's row: hidden x 4 (fp32 wire) or x 2 */
    double ll_combine_row_bytes; /* the low-latency mode's: an output row, hidden x dtype */
    int fp8;                     /* --payload fp8: dispatch rows hidden + hidden/32 bytes */
    unsigned seed;
    epc_score_fn_t score;
    const char *score_name, *profile;
    int bias, normalize, json, bench;
    int placement; /* --placement N: redundant slots to plan with; -1: no */
    int groups;    /* --groups G: the planner's num_groups (0: nodes) */
    int choice;    /* --spread / --balanced / --limited: the epc_replica_choice_t (-1: each
                      placement's own: NEAR, LIMITED for a plan with spills) */
    int spill;     /* --spill: the routing's co-reach to epcomm's planner */
} plan_opts_t;

/* Parses argv; prints usage/errors.  0 ok, -1 help shown, 1 bad usage. */
int plan_parse(int argc, char **argv, plan_opts_t *o);

/* Source rank s's logits [tokens x experts], deterministic in (seed, s). */
void plan_logits(const plan_opts_t *o, int s, float *logits);

/* A router for node limit m (0 = none) with the options' gate. */
int plan_router(const plan_opts_t *o, int m, epc_router_t **r);

/* Cost model over one group's counts (tokens per rank and node, the
 * low-latency mode's rows per rank) with the options' bandwidths. */
int plan_cost(const plan_opts_t *o, const int *tpr, const int *tpn, const int *rpr,
              epc_cost_t *cost);

/* Sums a source's statistics into acc; then averages over n sources. */
void plan_stats_add(epc_route_stats_t *acc, const epc_route_stats_t *s);
void plan_stats_scale(epc_route_stats_t *acc, int n);

/* Progress line on stderr once a run has taken more than two seconds. */
void plan_progress(int done, int total);

/* Prints "epc_plan: WHAT: <last error>" and returns 1. */
int plan_fail(const char *what);

/* --placement: placements planned from the routing's loads, compared. */
int plan_placement(const plan_opts_t *o);

/* --bench: tokens/s of epc_route and epc_layout against the read bound. */
int plan_bench(const plan_opts_t *o);

#endif
