/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * placement.c - the slot table of an expert placement: validation, queries,
 * the load it implies, and the replica choice that maps logical expert ids
 * to slots before dispatch (docs/PLACEMENT.md).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "placement.h"
#include "router.h"

#define BAD(fn, ...) epc_error(EPC_ERR_INVALID_ARG, fn ": " __VA_ARGS__)

epc_status_t epc_placement_check(const epc_placement_t *pl, const char *fn)
{
    if (pl == NULL || pl->hdr.magic != EPC_MAGIC_PLACEMENT)
        return epc_error(EPC_ERR_INVALID_ARG, "%s: placement is %s", fn,
                         pl ? "not a live epc_placement_t" : "NULL");
    return EPC_OK;
}

/* Slots on node n holding an expert of e's node block (the router's
 * block of E / nodes experts, e x nodes / E). */
static int block_slots_on(const epc_placement_t *pl, int e, int n)
{
    int64_t b = (int64_t)e * pl->nodes / pl->E, c = 0;
    int sn = pl->S / pl->nodes;
    for (int s = n * sn; s < (n + 1) * sn; s++)
        c += (int64_t)pl->slot_expert[s] * pl->nodes / pl->E == b;
    return (int)c;
}

/* e's main node: the node holding most of its slots; on a tie, the one
 * holding most slots of e's node block, then the lowest.  Its slots are
 * ascending, so they come node by node. */
static int main_node_of(const epc_placement_t *pl, int e)
{
    const int32_t *rep = pl->rep_slot + pl->rep_begin[e];
    int n = pl->rep_begin[e + 1] - pl->rep_begin[e], best = -1, best_cnt = 0, best_blk = 0;
    for (int i = 0; i < n;) {
        int node = epc_placement_slot_node(pl, rep[i]), cnt = 0, blk;
        for (; i < n && epc_placement_slot_node(pl, rep[i]) == node; i++)
            cnt++;
        if (cnt < best_cnt)
            continue;
        blk = block_slots_on(pl, e, node);
        if (cnt > best_cnt || blk > best_blk) {
            best = node;
            best_cnt = cnt;
            best_blk = blk;
        }
    }
    return best;
}

/* The replica lists and each expert's home and main node, from the table:
 * counts, their prefix sums, then each slot at its expert's cursor
 * (rep_begin[e] advanced past e's slots, so shifted back by one expert
 * after). */
static void index_replicas(epc_placement_t *pl)
{
    memset(pl->rep_begin, 0, (size_t)(pl->E + 1) * sizeof *pl->rep_begin);
    for (int s = 0; s < pl->S; s++)
        pl->rep_begin[pl->slot_expert[s] + 1]++;
    for (int e = 0; e < pl->E; e++)
        pl->rep_begin[e + 1] += pl->rep_begin[e];
    for (int s = 0; s < pl->S; s++)
        pl->rep_slot[pl->rep_begin[pl->slot_expert[s]]++] = s;
    for (int e = pl->E; e > 0; e--)
        pl->rep_begin[e] = pl->rep_begin[e - 1];
    pl->rep_begin[0] = 0;
    pl->max_rep = 0;
    for (int e = 0; e < pl->E; e++) {
        int n = pl->rep_begin[e + 1] - pl->rep_begin[e];
        int node = epc_placement_slot_node(pl, pl->rep_slot[pl->rep_begin[e]]);
        for (int i = pl->rep_begin[e] + 1; i < pl->rep_begin[e + 1]; i++)
            if (epc_placement_slot_node(pl, pl->rep_slot[i]) != node)
                node = -1;
        pl->home_node[e] = node;
        pl->main_node[e] = node >= 0 ? node : main_node_of(pl, e);
        pl->max_rep = n > pl->max_rep ? n : pl->max_rep;
    }
}

epc_status_t epc_placement_build(int E, int R, int rpn, int S, const int32_t *slot_expert,
                                 epc_placement_t **pl_p)
{
    epc_placement_t *pl = calloc(1, sizeof *pl);
    if (pl != NULL) {
        pl->slot_expert = malloc((size_t)S * sizeof *pl->slot_expert);
        pl->rep_slot = malloc((size_t)S * sizeof *pl->rep_slot);
        pl->rep_begin = malloc((size_t)(E + 1) * sizeof *pl->rep_begin);
        pl->home_node = malloc((size_t)E * sizeof *pl->home_node);
        pl->main_node = malloc((size_t)E * sizeof *pl->main_node);
    }
    if (pl == NULL || !pl->slot_expert || !pl->rep_slot || !pl->rep_begin || !pl->home_node ||
        !pl->main_node) {
        if (pl != NULL) {
            free(pl->slot_expert);
            free(pl->rep_slot);
            free(pl->rep_begin);
            free(pl->home_node);
            free(pl->main_node);
        }
        free(pl);
        return epc_error(EPC_ERR_NO_MEMORY, "epc_placement_create: %d slots", S);
    }
    pl->hdr.magic = EPC_MAGIC_PLACEMENT;
    pl->E = E;
    pl->R = R;
    pl->rpn = rpn;
    pl->nodes = R / rpn;
    pl->S = S;
    pl->spr = S / R;
    for (int s = 0; s < S; s++)
        pl->slot_expert[s] = slot_expert ? slot_expert[s] : s;
    index_replicas(pl);
    *pl_p = pl;
    return EPC_OK;
}

epc_status_t epc_placement_shape(const char *fn, int E, int num_ranks, int ranks_per_node,
                                 int num_slots, int *R, int *rpn, int *S)
{
    if (num_ranks < 0 || ranks_per_node < 0 || num_slots < 0)
        return epc_error(EPC_ERR_INVALID_ARG,
                         "%s: num_ranks = %d, ranks_per_node = %d, num_slots = %d: must be >= 0",
                         fn, num_ranks, ranks_per_node, num_slots);
    *R = num_ranks ? num_ranks : 1;
    *rpn = ranks_per_node ? ranks_per_node : *R;
    *S = num_slots ? num_slots : E;
    if (E < 1)
        return epc_error(EPC_ERR_INVALID_ARG, "%s: num_experts = %d, must be >= 1", fn, E);
    if (*R % *rpn != 0)
        return epc_error(EPC_ERR_INVALID_ARG,
                         "%s: num_ranks = %d is not a multiple of ranks_per_node = %d", fn, *R,
                         *rpn);
    if (*S < E || *S % *R != 0)
        return epc_error(EPC_ERR_INVALID_ARG,
                         "%s: num_slots = %d must be >= num_experts = %d and a multiple of "
                         "num_ranks = %d",
                         fn, *S, E, *R);
    return EPC_OK;
}

/* Every entry in [0, E) and every expert with a slot. */
static epc_status_t check_table(int E, int S, const int32_t *t)
{
    char *seen;
    int missing = -1;
    for (int s = 0; s < S; s++)
        if (t[s] < 0 || t[s] >= E)
            return BAD("epc_placement_create", "slot_expert[%d] = %d is outside [0, %d)", s,
                       (int)t[s], E);
    if ((seen = calloc((size_t)E, 1)) == NULL)
        return epc_error(EPC_ERR_NO_MEMORY, "epc_placement_create: %d experts", E);
    for (int s = 0; s < S; s++)
        seen[t[s]] = 1;
    for (int e = 0; e < E && missing < 0; e++)
        if (!seen[e])
            missing = e;
    free(seen);
    if (missing >= 0)
        return BAD("epc_placement_create", "slot_expert gives logical expert %d no slot", missing);
    return EPC_OK;
}

epc_status_t epc_placement_create(const epc_placement_params_t *params,
                                  epc_placement_t **placement_p)
{
    static const epc_params_layouts_t layouts = {
        "EPC_PLACEMENT_PARAMS_INIT", sizeof(epc_placement_params_t), {0}};
    epc_placement_params_t p;
    epc_status_t st;
    int R, rpn, S;
    if (placement_p == NULL)
        return BAD("epc_placement_create", "placement_p is NULL");
    if ((st = epc_params_load(&p, params, &layouts, NULL, "epc_placement_create", "params")) !=
        EPC_OK)
        return st;
    if ((st = epc_placement_shape("epc_placement_create", p.num_experts, p.num_ranks,
                                  p.ranks_per_node, p.num_slots, &R, &rpn, &S)) != EPC_OK)
        return st;
    if (p.slot_expert == NULL && S != p.num_experts)
        return BAD("epc_placement_create",
                   "slot_expert is NULL (the identity) but num_slots = %d != num_experts = %d", S,
                   p.num_experts);
    if (p.slot_expert != NULL && (st = check_table(p.num_experts, S, p.slot_expert)) != EPC_OK)
        return st;
    return epc_placement_build(p.num_experts, R, rpn, S, p.slot_expert, placement_p);
}

void epc_placement_destroy(epc_placement_t *pl)
{
    if (pl == NULL || pl->hdr.magic != EPC_MAGIC_PLACEMENT)
        return;
    pl->hdr.magic = EPC_MAGIC_DEAD;
    free(pl->slot_expert);
    free(pl->rep_slot);
    free(pl->rep_begin);
    free(pl->home_node);
    free(pl->main_node);
    free(pl);
}

epc_status_t epc_placement_info(const epc_placement_t *pl, epc_placement_info_t *info)
{
    static const epc_params_layouts_t layouts = {"EPC_PLACEMENT_INFO_INIT",
                                                 sizeof(epc_placement_info_t),
                                                 {offsetof(epc_placement_info_t, choice), 0}};
    epc_placement_info_t i = EPC_PLACEMENT_INFO_INIT;
    epc_status_t st = epc_placement_check(pl, "epc_placement_info");
    if (st != EPC_OK)
        return st;
    if ((st = epc_out_check(info, &layouts, NULL, "epc_placement_info", "info")) != EPC_OK)
        return st;
    i.num_experts = pl->E;
    i.num_slots = pl->S;
    i.num_ranks = pl->R;
    i.ranks_per_node = pl->rpn;
    i.slots_per_rank = pl->spr;
    i.max_replicas = pl->max_rep;
    i.node_local = 1;
    for (int e = 0; e < pl->E; e++)
        i.node_local &= pl->home_node[e] >= 0;
    i.choice = pl->choice;
    epc_out_store(info, &i);
    return EPC_OK;
}

epc_status_t epc_placement_table(const epc_placement_t *pl, int32_t *slot_expert, int capacity)
{
    epc_status_t st = epc_placement_check(pl, "epc_placement_table");
    if (st != EPC_OK)
        return st;
    if (slot_expert == NULL || capacity < pl->S)
        return BAD("epc_placement_table", "slot_expert is %s, capacity = %d (num_slots %d)",
                   slot_expert ? "given" : "NULL", capacity, pl->S);
    memcpy(slot_expert, pl->slot_expert, (size_t)pl->S * sizeof *slot_expert);
    return EPC_OK;
}

epc_status_t epc_placement_replicas(const epc_placement_t *pl, int expert, int32_t *slots,
                                    int capacity, int *count)
{
    epc_status_t st = epc_placement_check(pl, "epc_placement_replicas");
    int n;
    if (st != EPC_OK)
        return st;
    if (expert < 0 || expert >= pl->E)
        return BAD("epc_placement_replicas", "expert = %d is outside [0, %d)", expert, pl->E);
    if (count == NULL || (slots == NULL && capacity > 0) || capacity < 0)
        return BAD("epc_placement_replicas", "%s", count ? "slots is NULL" : "count is NULL");
    n = pl->rep_begin[expert + 1] - pl->rep_begin[expert];
    if (capacity < n)
        return BAD("epc_placement_replicas", "capacity = %d, expert %d has %d slots", capacity,
                   expert, n);
    memcpy(slots, pl->rep_slot + pl->rep_begin[expert], (size_t)n * sizeof *slots);
    *count = n;
    return EPC_OK;
}

/* Is node among the n nodes of reached? */
static int reaches(const int *reached, int n, int node)
{
    for (int i = 0; i < n; i++)
        if (reached[i] == node)
            return 1;
    return 0;
}

/* One replica of e for token t: the candidates on reached nodes if there
 * are any, else all replicas; candidate (t + e) mod their number. */
static int choose(const epc_placement_t *pl, int e, int64_t t, const int *reached, int nreached)
{
    const int32_t *rep = pl->rep_slot + pl->rep_begin[e];
    int n = pl->rep_begin[e + 1] - pl->rep_begin[e], ncand = 0, pick;
    uint64_t key = (uint64_t)t + (uint64_t)e; /* t <= INT64_MAX: no wrap */
    for (int i = 0; i < n; i++)
        ncand += reaches(reached, nreached, epc_placement_slot_node(pl, rep[i]));
    if (ncand == 0)
        return rep[key % (uint64_t)n];
    pick = (int)(key % (uint64_t)ncand);
    for (int i = 0; i < n; i++)
        if (reaches(reached, nreached, epc_placement_slot_node(pl, rep[i])) && pick-- == 0)
            return rep[i];
    return rep[0]; /* not reached: pick < ncand */
}

/*
 * EPC_REPLICA_BALANCED's allowance: a replica on a reached node is taken
 * while it holds at most 1/REPLICA_SLACK more rows (plus one) than the
 * expert's least-loaded replica in this call.  The preference saves
 * network copies; the bound keeps every share within about 1/8 of the
 * even split the planner assumed (NEAR's measured 1.58x on a global plan
 * whose even split is 1.00x: docs/PLACEMENT.md).
 */
#define REPLICA_SLACK 8

/* The least-loaded of e's replicas (on a reached node only: near), ties to
 * the first from (t + e) mod their number, in ascending slot order; -1
 * when near and none is on a reached node. */
static int least_loaded(const epc_placement_t *pl, int e, int64_t t, const int *reached,
                        int nreached, const int *count, int near)
{
    const int32_t *rep = pl->rep_slot + pl->rep_begin[e];
    int n = pl->rep_begin[e + 1] - pl->rep_begin[e], start = (int)(((uint64_t)t + e) % n);
    int best = -1;
    for (int i = 0; i < n; i++) {
        int s = rep[(start + i) % n];
        if (near && !reaches(reached, nreached, epc_placement_slot_node(pl, s)))
            continue;
        if (best < 0 || count[s] < count[best])
            best = s;
    }
    return best;
}

/* EPC_REPLICA_BALANCED: the least-loaded replica on a reached node while
 * within the allowance of the least-loaded one overall, else that one. */
static int choose_balanced(const epc_placement_t *pl, int e, int64_t t, const int *reached,
                           int nreached, const int *count)
{
    int all = least_loaded(pl, e, t, reached, nreached, count, 0);
    int near = least_loaded(pl, e, t, reached, nreached, count, 1);
    if (near >= 0 && count[near] <= count[all] + count[all] / REPLICA_SLACK + 1)
        return near;
    return all;
}

/* EPC_REPLICA_LIMITED: the least-loaded of e's replicas on its main node
 * or on a node the token already reaches; so a token's slots lie on its
 * experts' main nodes only. */
static int choose_limited(const epc_placement_t *pl, int e, int64_t t, const int *reached,
                          int nreached, const int *count)
{
    int cand[EPC_ROUTE_MAX_SELECT + 1], n = nreached;
    memcpy(cand, reached, (size_t)nreached * sizeof *cand);
    if (!reaches(reached, nreached, pl->main_node[e]))
        cand[n++] = pl->main_node[e];
    return least_loaded(pl, e, t, cand, n, count, 1);
}

/* One replica of e for token t by the placement's choice. */
static int choose_by_rule(const epc_placement_t *pl, int e, int64_t t, const int *reached,
                          int nreached, const int *count)
{
    if (pl->choice == EPC_REPLICA_BALANCED)
        return choose_balanced(pl, e, t, reached, nreached, count);
    if (pl->choice == EPC_REPLICA_LIMITED)
        return choose_limited(pl, e, t, reached, nreached, count);
    return choose(pl, e, t, reached, nreached);
}

/* Maps one token's k ids: experts whose slots share one node first (they
 * fix nodes the token reaches), then the others in the token's order.
 * Spreading, no node is ever reached: every replica is a candidate.
 * count (BALANCED and LIMITED, else NULL): rows each slot took in this
 * call. */
static void map_token(const epc_placement_t *pl, const int32_t *idx, int k, int64_t t, int32_t *out,
                      int *count)
{
    int reached[EPC_ROUTE_MAX_SELECT], n = 0, near = pl->choice != EPC_REPLICA_SPREAD;
    int32_t e_of[EPC_ROUTE_MAX_SELECT];
    memcpy(e_of, idx, (size_t)k * sizeof *e_of); /* out may alias idx */
    for (int j = 0; near && j < k; j++) {
        int e = e_of[j];
        if (e < 0 || pl->home_node[e] < 0)
            continue;
        if (!reaches(reached, n, pl->home_node[e]))
            reached[n++] = pl->home_node[e];
    }
    for (int j = 0; j < k; j++) {
        int e = e_of[j], s;
        if (e < 0) {
            out[j] = -1;
            continue;
        }
        s = choose_by_rule(pl, e, t, reached, n, count);
        out[j] = s;
        if (count != NULL)
            count[s]++;
        if (near && !reaches(reached, n, epc_placement_slot_node(pl, s)))
            reached[n++] = epc_placement_slot_node(pl, s);
    }
}

epc_status_t epc_placement_map(const epc_placement_t *pl, const int32_t *topk_idx, int T, int k,
                               int64_t first_token, int32_t *slot_idx)
{
    epc_status_t st = epc_placement_check(pl, "epc_placement_map");
    int *count = NULL;
    if (st != EPC_OK)
        return st;
    if (k < 1 || k > EPC_ROUTE_MAX_SELECT || k > pl->E)
        return BAD("epc_placement_map", "topk = %d, must be in [1, min(num_experts = %d, %d)]", k,
                   pl->E, EPC_ROUTE_MAX_SELECT);
    if (first_token < 0 || (T > 0 && first_token > INT64_MAX - T))
        return BAD("epc_placement_map", "first_token = %lld, must be in [0, INT64_MAX - T]",
                   (long long)first_token);
    if (T > 0 && slot_idx == NULL)
        return BAD("epc_placement_map", "slot_idx is NULL");
    if ((st = epc_route_check_idx(pl->E, k, topk_idx, T, "epc_placement_map")) != EPC_OK)
        return st;
    if ((pl->choice == EPC_REPLICA_BALANCED || pl->choice == EPC_REPLICA_LIMITED) &&
        (count = calloc((size_t)pl->S, sizeof *count)) == NULL)
        return epc_error(EPC_ERR_NO_MEMORY, "epc_placement_map: counts of %d slots", pl->S);
    for (int t = 0; t < T; t++)
        map_token(pl, topk_idx + (size_t)t * k, k, first_token + t, slot_idx + (size_t)t * k,
                  count);
    free(count);
    return EPC_OK;
}

epc_status_t epc_placement_set_choice(epc_placement_t *pl, epc_replica_choice_t choice)
{
    epc_status_t st = epc_placement_check(pl, "epc_placement_set_choice");
    if (st != EPC_OK)
        return st;
    if (choice != EPC_REPLICA_NEAR && choice != EPC_REPLICA_SPREAD &&
        choice != EPC_REPLICA_BALANCED && choice != EPC_REPLICA_LIMITED)
        return BAD("epc_placement_set_choice", "choice = %d is not an epc_replica_choice_t",
                   (int)choice);
    pl->choice = choice;
    return EPC_OK;
}

epc_status_t epc_placement_load(const epc_placement_t *pl, const double *expert_load,
                                double *rank_load, double *node_load, double *imbalance)
{
    epc_status_t st = epc_placement_check(pl, "epc_placement_load");
    double *rl, sum = 0.0, mx = 0.0;
    if (st != EPC_OK)
        return st;
    if (expert_load == NULL)
        return BAD("epc_placement_load", "expert_load is NULL");
    for (int e = 0; e < pl->E; e++)
        if (!(expert_load[e] >= 0) || !isfinite(expert_load[e]))
            return BAD("epc_placement_load", "expert_load[%d] = %g is negative or not finite", e,
                       expert_load[e]);
    if ((rl = calloc((size_t)pl->R, sizeof *rl)) == NULL)
        return epc_error(EPC_ERR_NO_MEMORY, "epc_placement_load: %d ranks", pl->R);
    for (int s = 0; s < pl->S; s++) {
        int e = pl->slot_expert[s];
        rl[s / pl->spr] += expert_load[e] / (pl->rep_begin[e + 1] - pl->rep_begin[e]);
    }
    if (node_load != NULL)
        memset(node_load, 0, (size_t)pl->nodes * sizeof *node_load);
    for (int r = 0; r < pl->R; r++) {
        sum += rl[r];
        mx = rl[r] > mx ? rl[r] : mx;
        if (node_load != NULL)
            node_load[r / pl->rpn] += rl[r];
    }
    if (rank_load != NULL)
        memcpy(rank_load, rl, (size_t)pl->R * sizeof *rl);
    if (imbalance != NULL)
        *imbalance = sum > 0 ? mx * pl->R / sum : 0.0;
    free(rl);
    return EPC_OK;
}
