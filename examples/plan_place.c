/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * plan_place.c - epc_plan --placement N: the routing's per-expert loads
 * (tokens routed with node limit -m, Zipf-skewed with --skew), a placement
 * planned from them with N redundant slots by DeepSeek's EPLB and by
 * epcomm's planner, against the contiguous default; for each, the time
 * the planner took, the busiest rank's and node's rows over the mean
 * (measured by mapping every routed token to a slot, and as the planner
 * expects it), the modelled dispatch and combine times (the cost model
 * over the mapped counts), then the table and the rows per rank and node.
 *
 * With more ranks than experts the job is one placement over all ranks
 * (S = E + N a multiple of R): planned and timed at that size, its load
 * figures are the planner's expectation (the routing is modelled per
 * expert-parallel group elsewhere in epc_plan, not across the job).
 */
#include <epcomm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plan_util.h"

#define PLACE_POOL (1 << 18) /* tokens routed in all */

typedef struct routed {
    int R, T, k;   /* sources (the job's ranks), tokens each */
    int32_t *idx;  /* [R x T x k] logical ids */
    double *load;  /* [E] tokens per logical expert */
    double *reach; /* [E x nodes] with --spill: epc_placement_reach's, else NULL */
} routed_t;

typedef struct outcome {
    const char *name;
    epc_placement_t *pl;
    double plan_ms, expected, rank_imb, node_imb, nodes_tok; /* nodes_tok: mean nodes per token */
    double *rank_rows, *node_rows;                           /* [R], [nodes] */
    epc_cost_t cost;
} outcome_t;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Routes every source's tokens (a share of the pool each) and counts the
 * load of each logical expert. */
static int route_all(const plan_opts_t *o, routed_t *rt)
{
    plan_opts_t so = *o;
    epc_router_t *router;
    float *logits, *w;
    int rc = 0;
    rt->R = o->ranks <= o->experts ? o->ranks : 0;
    rt->k = o->topk;
    rt->T = rt->R && (long)o->tokens * rt->R > PLACE_POOL ? PLACE_POOL / rt->R : o->tokens;
    rt->T = rt->T > 0 ? rt->T : 1;
    rt->load = calloc((size_t)o->experts, sizeof *rt->load);
    rt->idx = malloc((size_t)(rt->R ? rt->R : 1) * rt->T * rt->k * sizeof *rt->idx);
    so.tokens = rt->T;
    logits = malloc((size_t)rt->T * o->experts * sizeof *logits);
    w = malloc((size_t)rt->T * rt->k * sizeof *w);
    if (!rt->load || !rt->idx || !logits || !w || plan_router(&so, o->m, &router) != 0) {
        free(logits);
        free(w);
        return 1;
    }
    /* beyond one group: the loads of one routed source stand for all */
    for (int s = 0; s < (rt->R ? rt->R : 1) && rc == 0; s++) {
        int32_t *idx = rt->idx + (size_t)s * rt->T * rt->k;
        plan_logits(&so, s, logits);
        if (epc_route(router, logits, rt->T, idx, w) != EPC_OK)
            rc = plan_fail("route");
        for (int i = 0; rc == 0 && i < rt->T * rt->k; i++)
            rt->load[idx[i]] += idx[i] >= 0;
    }
    epc_router_destroy(router);
    free(logits);
    free(w);
    if (rc == 0 && o->spill) {
        int nodes = o->ranks / o->rpn;
        rt->reach = calloc((size_t)o->experts * nodes, sizeof *rt->reach);
        if (rt->reach == NULL || epc_placement_reach(rt->idx, (rt->R ? rt->R : 1) * rt->T, rt->k,
                                                     o->experts, nodes, rt->reach) != EPC_OK)
            rc = plan_fail("epc_placement_reach");
    }
    return rc;
}

/* The placement `algo` (an epc_placement_algo_t, or -1: the contiguous
 * default) with N slots more. */
static int make_placement(const plan_opts_t *o, const routed_t *rt, int algo, outcome_t *out)
{
    epc_placement_plan_params_t p = EPC_PLACEMENT_PLAN_PARAMS_INIT;
    epc_placement_params_t id = EPC_PLACEMENT_PARAMS_INIT;
    double t0 = now_ms();
    epc_status_t st;
    p.num_experts = id.num_experts = o->experts;
    p.num_ranks = id.num_ranks = o->ranks;
    p.ranks_per_node = id.ranks_per_node = o->rpn;
    p.num_slots = o->experts + o->placement;
    p.expert_load = rt->load;
    p.num_groups = o->groups;
    p.algo = (epc_placement_algo_t)algo;
    p.expert_reach = algo == EPC_PLACEMENT_BALANCED ? rt->reach : NULL;
    if (algo < 0 && o->experts % o->ranks == 0) {
        st = epc_placement_create(&id, &out->pl);
    } else {
        /* with more ranks than experts there is no contiguous placement:
         * the baseline is every expert with the same replicas (even loads) */
        double *even = algo < 0 ? malloc((size_t)o->experts * sizeof *even) : NULL;
        for (int e = 0; even && e < o->experts; e++)
            even[e] = 1.0;
        if (algo < 0)
            p.expert_load = even, p.algo = EPC_PLACEMENT_EPLB;
        st = p.expert_load ? epc_placement_plan(&p, &out->pl) : EPC_ERR_NO_MEMORY;
        free(even);
    }
    out->plan_ms = algo < 0 ? 0.0 : now_ms() - t0;
    if (st != EPC_OK)
        return plan_fail(algo < 0 ? "placement" : "epc_placement_plan");
    if (o->choice >= 0 &&
        epc_placement_set_choice(out->pl, (epc_replica_choice_t)o->choice) != EPC_OK)
        return plan_fail("epc_placement_set_choice");
    return epc_placement_load(out->pl, rt->load, NULL, NULL, &out->expected) == EPC_OK
               ? 0
               : plan_fail("epc_placement_load");
}

static double imbalance(const double *v, int n)
{
    double sum = 0.0, mx = 0.0;
    for (int i = 0; i < n; i++) {
        sum += v[i];
        mx = v[i] > mx ? v[i] : mx;
    }
    return sum > 0 ? mx * n / sum : 0.0;
}

/* Token t's slots counted into the cost model's arrays of source s. */
static void count_token(const int32_t *slots, int k, int spr, int rpn, int R, int s, int stamp,
                        int *seen_r, int *seen_n, int *tpr, int *tpn, int *rpr)
{
    int nodes = R / rpn;
    for (int j = 0; j < k; j++) {
        int r, n;
        if (slots[j] < 0)
            continue;
        r = slots[j] / spr;
        n = r / rpn;
        rpr[(size_t)s * R + r]++;
        if (seen_r[r] != stamp) {
            seen_r[r] = stamp;
            tpr[(size_t)s * R + r]++;
        }
        if (seen_n[n] != stamp) {
            seen_n[n] = stamp;
            tpn[(size_t)s * nodes + n]++;
        }
    }
}

/* Maps every routed token through the placement: rows per rank and node,
 * and the cost model over the counts (scaled to --tokens per rank). */
static int evaluate(const plan_opts_t *o, const routed_t *rt, outcome_t *out)
{
    epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
    int R = rt->R, nodes = R / o->rpn, rc = 0;
    int *tpr = calloc((size_t)R * R, sizeof *tpr), *tpn = calloc((size_t)R * nodes, sizeof *tpn);
    int *rpr = calloc((size_t)R * R, sizeof *rpr),
        *seen = malloc((size_t)(R + nodes) * sizeof *seen);
    int32_t *slots = malloc((size_t)rt->T * rt->k * sizeof *slots);
    double scale = (double)o->tokens / rt->T;
    epc_placement_info(out->pl, &info);
    if (!tpr || !tpn || !rpr || !seen || !slots)
        rc = plan_fail("memory");
    for (int i = 0; rc == 0 && i < R + nodes; i++)
        seen[i] = -1;
    for (int s = 0; rc == 0 && s < R; s++) {
        if (epc_placement_map(out->pl, rt->idx + (size_t)s * rt->T * rt->k, rt->T, rt->k,
                              (int64_t)s * rt->T, slots) != EPC_OK) {
            rc = plan_fail("epc_placement_map");
            break;
        }
        for (int t = 0; t < rt->T; t++)
            count_token(slots + (size_t)t * rt->k, rt->k, info.slots_per_rank, o->rpn, R, s,
                        s * rt->T + t, seen, seen + R, tpr, tpn, rpr);
    }
    for (int i = 0; rc == 0 && i < R * R; i++) {
        out->rank_rows[i % R] += rpr[i];
        out->node_rows[i % R / o->rpn] += rpr[i];
        tpr[i] = (int)(tpr[i] * scale + 0.5);
        rpr[i] = (int)(rpr[i] * scale + 0.5);
    }
    for (int i = 0; rc == 0 && i < R * nodes; i++) {
        out->nodes_tok += (double)tpn[i] / ((double)R * rt->T);
        tpn[i] = (int)(tpn[i] * scale + 0.5);
    }
    out->rank_imb = imbalance(out->rank_rows, R);
    out->node_imb = imbalance(out->node_rows, nodes);
    if (rc == 0)
        rc = plan_cost(o, tpr, tpn, rpr, &out->cost);
    free(tpr);
    free(tpn);
    free(rpr);
    free(seen);
    free(slots);
    return rc;
}

/* The planner's groups: --groups, else one per node when the nodes
 * divide the experts, else global (the library's default). */
static int groups_of(const plan_opts_t *o)
{
    int nodes = o->ranks / o->rpn;
    return o->groups ? o->groups : o->experts % nodes == 0 ? nodes : 1;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A lower bound of the busiest rank's load over the mean for any placement
 * with these slots and groups (as the planners build them): the mean; the
 * rank holding a replica of the hottest expert (split over as many
 * replicas as its node's, or globally the job's, redundant slots allow)
 * together with S / R - 1 other slots, each at least the lightest share
 * (without replicas: the lightest other experts); and, when groups stay
 * whole on nodes, the heaviest group spread over one node's ranks. */
static double load_bound(const plan_opts_t *o, const double *load)
{
    int E = o->experts, R = o->ranks, S = E + o->placement, nodes = R / o->rpn, spr = S / R;
    int G = groups_of(o), hier = G % nodes == 0, extra = hier ? (S - E) / nodes : S - E;
    double total = 0.0, lb, rest = 0.0, *sorted = malloc((size_t)E * sizeof *sorted);
    if (sorted == NULL)
        return 0.0;
    for (int e = 0; e < E; e++)
        total += sorted[e] = load[e];
    qsort(sorted, (size_t)E, sizeof *sorted, cmp_dbl);
    for (int i = 0; i < spr - 1 && i < E - 1; i++)
        rest += extra == 0 ? sorted[i] : sorted[0] / (1 + extra);
    lb = total / R;
    lb = sorted[E - 1] / (1 + extra) + rest > lb ? sorted[E - 1] / (1 + extra) + rest : lb;
    for (int g = 0; hier && g < G; g++) {
        double sum = 0.0;
        for (int e = g * (E / G); e < (g + 1) * (E / G); e++)
            sum += load[e];
        lb = sum / o->rpn > lb ? sum / o->rpn : lb;
    }
    free(sorted);
    return total > 0 ? lb / (total / R) : 0.0;
}

static void print_summary(const plan_opts_t *o, const routed_t *rt, const outcome_t *oc, int n)
{
    printf("# placement: %d experts, %d ranks (%d nodes of %d), top-%d, node limit %d, skew %g, "
           "%d redundant slots, %d groups, replicas %s%s; %s\n",
           o->experts, o->ranks, o->ranks / o->rpn, o->rpn, o->topk, o->m, o->skew, o->placement,
           groups_of(o),
           o->choice < 0 ? "as planned (near; limited with spills)"
                         : (const char *[]){"near", "spread", "balanced", "limited"}[o->choice],
           o->spill ? ", spill replicas planned" : "",
           rt->R ? "rows: every routed token mapped to a slot"
                 : "loads: the planner's expectation");
    if (rt->R)
        printf("# %d tokens routed per rank (%d modelled); profile %s\n", rt->T, o->tokens,
               o->profile);
    printf("# expected = busiest rank / mean as planned (even replica shares); no placement "
           "with these slots and groups can go below %.3f%s\n",
           load_bound(o, rt->load),
           o->spill ? " without spill replicas (they move load between nodes)" : "");
    printf("%-9s %6s %9s %10s %10s %10s %9s %12s %12s %12s\n", "placement", "slots", "plan_ms",
           "expected", "rank_imb", "node_imb", "nodes/tok", "hier_disp_us", "hier_comb_us",
           "step_us");
    for (int i = 0; i < n; i++) {
        epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
        epc_placement_info(oc[i].pl, &info);
        if (rt->R)
            printf("%-9s %6d %9.2f %10.3f %10.3f %10.3f %9.3f %12.1f %12.1f %12.1f\n", oc[i].name,
                   info.num_slots, oc[i].plan_ms, oc[i].expected, oc[i].rank_imb, oc[i].node_imb,
                   oc[i].nodes_tok, oc[i].cost.hier_dispatch_us, oc[i].cost.hier_combine_us,
                   oc[i].cost.hier_dispatch_us + oc[i].cost.hier_combine_us);
        else
            printf("%-9s %6d %9.2f %10.3f %10s %10s %9s %12s %12s %12s\n", oc[i].name,
                   info.num_slots, oc[i].plan_ms, oc[i].expected, "-", "-", "-", "-", "-", "-");
    }
}

/* The balanced plan's table by rank, with each rank's rows under every
 * placement, then the nodes'. */
static void print_table(const plan_opts_t *o, const routed_t *rt, const outcome_t *oc, int n)
{
    epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
    const outcome_t *best = &oc[n - 1];
    int32_t *t;
    epc_placement_info(best->pl, &info);
    if ((t = malloc((size_t)info.num_slots * sizeof *t)) == NULL)
        return;
    epc_placement_table(best->pl, t, info.num_slots);
    printf("# %s placement (logical expert of each slot) and rows per rank:", best->name);
    for (int i = 0; i < n && rt->R; i++)
        printf(" %s%s", oc[i].name, i + 1 < n ? " ->" : "");
    printf("\n");
    for (int r = 0; r < o->ranks; r++) {
        printf("rank %4d node %3d:", r, r / o->rpn);
        for (int q = 0; q < info.slots_per_rank; q++)
            printf(" %3d", t[r * info.slots_per_rank + q]);
        for (int i = 0; i < n && rt->R; i++)
            printf("%s%.0f", i ? " -> " : " | rows ", oc[i].rank_rows[r]);
        printf("\n");
    }
    for (int node = 0; node < o->ranks / o->rpn && rt->R; node++) {
        printf("node %3d: rows", node);
        for (int i = 0; i < n; i++)
            printf("%s%.0f", i ? " -> " : " ", oc[i].node_rows[node]);
        printf("\n");
    }
    free(t);
}

int plan_placement(const plan_opts_t *o)
{
    static const char *names[] = {"none", "eplb", "balanced"};
    static const int algos[] = {-1, EPC_PLACEMENT_EPLB, EPC_PLACEMENT_BALANCED};
    routed_t rt = {0, 0, 0, NULL, NULL, NULL};
    outcome_t oc[3];
    int rc = 0, nodes = o->ranks / o->rpn;
    memset(oc, 0, sizeof oc);
    if ((o->experts + o->placement) % o->ranks != 0) {
        fprintf(stderr,
                "epc_plan: --placement %d: experts + redundant slots (%d) must be a "
                "multiple of the ranks (%d)\n",
                o->placement, o->experts + o->placement, o->ranks);
        return 2;
    }
    if (route_all(o, &rt) != 0)
        rc = 1;
    for (int i = 0; rc == 0 && i < 3; i++) {
        oc[i].name = i == 0 && o->experts % o->ranks != 0 ? "uniform" : names[i];
        oc[i].rank_rows = calloc((size_t)o->ranks, sizeof(double));
        oc[i].node_rows = calloc((size_t)nodes, sizeof(double));
        rc = !oc[i].rank_rows || !oc[i].node_rows ? plan_fail("memory")
                                                  : make_placement(o, &rt, algos[i], &oc[i]);
        if (rc == 0 && rt.R)
            rc = evaluate(o, &rt, &oc[i]);
    }
    if (rc == 0) {
        print_summary(o, &rt, oc, 3);
        print_table(o, &rt, oc, 3);
    }
    for (int i = 0; i < 3; i++) {
        epc_placement_destroy(oc[i].pl);
        free(oc[i].rank_rows);
        free(oc[i].node_rows);
    }
    free(rt.idx);
    free(rt.load);
    free(rt.reach);
    return rc;
}
