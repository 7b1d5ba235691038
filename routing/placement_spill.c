/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * placement_spill.c - spill replicas: under node-limited routing a node's
 * load is fixed by the tokens that pick its group, and replicas inside the
 * node only even out its ranks.  A token that picks a busy node's expert e
 * and also reaches another node n (through another expert) can have e
 * served on n at no network cost, if n holds a replica of e.  How many
 * such tokens there are is the co-reach (epc_placement_reach); the greedy
 * here gives lighter nodes' redundant slots to the busiest node's experts
 * with the most to move (docs/PLACEMENT.md, "Spill replicas").
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "placement.h"
#include "router.h"

#define FN "epc_placement_reach"
#define BAD(...) epc_error(EPC_ERR_INVALID_ARG, FN ": " __VA_ARGS__)

/* The router's node block of expert e among E over nodes blocks. */
static int block_of(int e, int E, int nodes)
{
    return (int)((int64_t)e * nodes / E);
}

/* Adds one token's co-reach: each expert e and each other block b that
 * holds another of the token's experts. */
static void reach_token(const int32_t *idx, int k, int E, int nodes, double *reach)
{
    int blocks[EPC_ROUTE_MAX_SELECT], nb = 0;
    for (int j = 0; j < k; j++) {
        int b, i;
        if (idx[j] < 0)
            continue;
        b = block_of(idx[j], E, nodes);
        for (i = 0; i < nb && blocks[i] != b; i++)
            ;
        if (i == nb)
            blocks[nb++] = b;
    }
    for (int j = 0; j < k; j++) {
        int e = idx[j];
        if (e < 0)
            continue;
        for (int i = 0; i < nb; i++)
            if (blocks[i] != block_of(e, E, nodes))
                reach[(size_t)e * nodes + blocks[i]] += 1.0;
    }
}

epc_status_t epc_placement_reach(const int32_t *topk_idx, int T, int k, int E, int nodes,
                                 double *reach)
{
    epc_status_t st;
    if (E < 1)
        return BAD("num_experts = %d, must be >= 1", E);
    if (nodes < 1 || nodes > E)
        return BAD("nodes = %d, must be in [1, num_experts = %d]", nodes, E);
    if (k < 1 || k > EPC_ROUTE_MAX_SELECT || k > E)
        return BAD("topk = %d, must be in [1, min(num_experts = %d, %d)]", k, E,
                   EPC_ROUTE_MAX_SELECT);
    if (reach == NULL)
        return BAD("reach is NULL");
    if ((st = epc_route_check_idx(E, k, topk_idx, T, FN)) != EPC_OK)
        return st;
    for (int t = 0; t < T; t++)
        reach_token(topk_idx + (size_t)t * k, k, E, nodes, reach);
    return EPC_OK;
}

/* The best spill from the busiest node h: the (expert of h's group, other
 * node with a free slot) moving the most load, at most its even share
 * among its replicas (home ones as sp->homes expects), the tokens
 * reaching that node, half the gap between the two nodes and a mean
 * rank's load.  Returns the load moved (0: none). */
static double best_spill(const epc_spill_t *sp, const double *w, const double *reach, int h,
                         int *be, int *bn)
{
    int E = sp->E, N = sp->nodes, gs = E / N, g = sp->group_at[h];
    double best = 0.0;
    for (int n = 0; n < N; n++) {
        if (n == h || sp->budget[n] == 0 || sp->from[n * N + g] >= gs - 1)
            continue;
        for (int e = g * gs; e < (g + 1) * gs; e++) {
            double x = w[e] / (sp->homes[e] + sp->count[e] + 1); /* its share once added */
            double r = reach[(size_t)e * N + sp->group_at[n]],
                   gap = (sp->load[h] - sp->load[n]) / 2;
            x = x < r ? x : r;
            x = x < gap ? x : gap;
            x = x < sp->slot_cap ? x : sp->slot_cap;
            if (x > best && !sp->on[(size_t)e * N + n]) {
                best = x;
                *be = e;
                *bn = n;
            }
        }
    }
    return best;
}

/* Re-shares expert e's spills after one more (e homed on node h): each
 * takes the even share among e's replicas (home ones as sp->homes
 * expects), at most its cap (best_spill's bounds when it was chosen); the
 * load moves between the nodes and rem. */
static void reshare(epc_spill_t *sp, const double *w, int e, int h, double *rem)
{
    double share = w[e] / (sp->homes[e] + sp->count[e]);
    for (int i = 0; i < sp->num; i++) {
        double x;
        if (sp->expert[i] != e)
            continue;
        x = sp->cap[i] < share ? sp->cap[i] : share;
        sp->load[sp->node[i]] += x - sp->x[i];
        sp->load[h] -= x - sp->x[i];
        rem[e] -= x - sp->x[i];
        sp->x[i] = x;
    }
}

/*
 * Decides the spills of a hierarchical plan with one group per node
 * (group_at[n] on node n), sn slots a node: sp->spills (expert, node,
 * load) and rem[E], each expert's load left to its own node.  Greedy on
 * the busiest node's modelled load until no spill moves more than
 * PLAN_SPILL_MIN of the mean node load.  At most gs - 1 of a group's
 * experts go to one node, so its own node stays every expert's main node.
 */
void epc_plan_spills(epc_spill_t *sp, const double *w, const double *reach, int sn, double *rem)
{
    int E = sp->E, N = sp->nodes, gs = E / N;
    double total = 0.0;
    memcpy(rem, w, (size_t)E * sizeof *rem);
    memset(sp->on, 0, (size_t)E * N * sizeof *sp->on);
    memset(sp->from, 0, (size_t)N * N * sizeof *sp->from);
    memset(sp->count, 0, (size_t)E * sizeof *sp->count);
    for (int n = 0; n < N; n++) {
        sp->load[n] = 0.0;
        sp->budget[n] = sn - gs;
        for (int e = sp->group_at[n] * gs; e < (sp->group_at[n] + 1) * gs; e++)
            sp->load[n] += w[e];
        total += sp->load[n];
    }
    sp->slot_cap = total / sp->ranks;
    sp->num = 0;
    for (;;) {
        int h = 0, e = -1, n = -1;
        double x;
        for (int q = 1; q < N; q++)
            h = sp->load[q] > sp->load[h] ? q : h;
        x = best_spill(sp, w, reach, h, &e, &n);
        if (x <= total / N * PLAN_SPILL_MIN)
            break;
        sp->expert[sp->num] = e;
        sp->node[sp->num] = n;
        sp->cap[sp->num] = x;
        sp->x[sp->num++] = 0.0;
        sp->on[(size_t)e * N + n] = 1;
        sp->from[n * N + sp->group_at[h]]++;
        sp->count[e]++;
        sp->budget[n]--;
        reshare(sp, w, e, h, rem);
    }
}

/* The spill model on table t (one group per node): each replica of e
 * takes the even share among all of its slots, a spill at most the tokens
 * reaching its node; sp->x gets each spill's share, rem [E] what is left
 * to e's home slots, cnt [E] each expert's slots. */
void epc_spill_reshare(epc_spill_t *sp, const double *w, const double *reach, const int32_t *t,
                       int S, int *cnt, double *rem)
{
    int N = sp->nodes;
    memset(cnt, 0, (size_t)sp->E * sizeof *cnt);
    for (int s = 0; s < S; s++)
        cnt[t[s]]++;
    memcpy(rem, w, (size_t)sp->E * sizeof *rem);
    for (int i = 0; i < sp->num; i++) {
        int e = sp->expert[i];
        double share = w[e] / cnt[e], r = reach[(size_t)e * N + sp->group_at[sp->node[i]]];
        sp->x[i] = share < r ? share : r;
        rem[e] -= sp->x[i];
    }
}
