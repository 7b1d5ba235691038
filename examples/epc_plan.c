/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * epc_plan - what would this routing cost at this scale?  Plans without
 * moving data (no mpirun needed): generates gate logits, routes them with
 * every node limit M, and prints per M the distinct nodes per token, the
 * inter-node bytes per token of the flat and hierarchical paths, the load
 * imbalance and the modeled dispatch/combine times on a hardware profile.
 *
 *   epc_plan -e 256 -k 8 -r 64 --ranks-per-node 8 -m 4 --profile h800 \
 *            --skew 1.0 -t 4096 [--json] [--bench] [--placement N]
 *
 * Logits: Gumbel noise (seeded) plus -skew * ln(1 + popularity rank) of a
 * fixed random permutation of experts, so top-1 choices follow a Zipf law of
 * exponent skew (0 = uniform).  Up to 2^18 tokens are routed in all (split
 * evenly over the node limits tried, at least 2^15 per limit): every rank's
 * own tokens when they fit, else a sample of ranks whose counts stand for
 * the others (said in the output).  With more ranks than experts, the job
 * is planned as expert-parallel groups of E ranks (one expert per rank),
 * each serving its own ranks' tokens: the groups are alike, so one group's
 * counts are modelled (the busiest rank of one is the busiest of all).
 */
#include <epcomm.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plan_util.h"

#define POOL_TOKENS (1 << 18)     /* routed, over all node limits */
#define MIN_POOL_TOKENS (1 << 15) /* routed per node limit at least */

typedef struct row {
    int m;
    epc_route_stats_t st; /* summed over routed sources, then averaged */
    double imb_rank;      /* max / mean tokens received per rank */
    epc_cost_t cost;
} row_t;

/* Scratch of plan(): routers and the routed sources' counts per M (tokens
 * per rank, per node, rows per rank), one group's counts, the routing. */
typedef struct plan_buf {
    epc_router_t **routers;
    int **ltpr, **ltpn, **lrpr, *tpr, *tpn, *rpr, *tpe;
    float *logits, *w;
    int32_t *idx;
} plan_buf_t;

/* Routes local source s's tokens with every router; accumulates its counts
 * (group-local coordinates: tokens and the low-latency mode's rows per
 * rank, tokens per node) and the per-token statistics. */
static int route_source(const plan_opts_t *o, plan_buf_t *b, int nm, int s, row_t *rows)
{
    int Rg = o->group_ranks, gnodes = Rg / o->rpn, epr = o->experts / Rg;
    plan_logits(o, s, b->logits);
    for (int i = 0; i < nm; i++) {
        epc_layout_t lay = EPC_LAYOUT_INIT;
        epc_route_stats_t st = EPC_ROUTE_STATS_INIT;
        lay.tokens_per_rank = b->ltpr[i] + (size_t)s * Rg;
        lay.tokens_per_node = b->ltpn[i] + (size_t)s * gnodes;
        lay.tokens_per_expert = b->tpe;
        if (epc_route(b->routers[i], b->logits, o->tokens, b->idx, b->w) != EPC_OK ||
            epc_layout(b->routers[i], b->idx, o->tokens, &lay) != EPC_OK ||
            epc_route_stats(b->routers[i], b->idx, o->tokens, s, o->row_bytes, &st) != EPC_OK)
            return plan_fail("routing");
        for (int d = 0; d < Rg; d++)
            for (int e = d * epr; e < (d + 1) * epr; e++)
                b->lrpr[i][(size_t)s * Rg + d] += b->tpe[e];
        plan_stats_add(&rows[i].st, &st);
    }
    return 0;
}

/* One group's counts from the routed sources: source s sends as the
 * routed source at its position (modulo the sample) did. */
static void expand(const plan_opts_t *o, int sampled, const int *from, int n, int *to)
{
    for (int s = 0; s < o->group_ranks; s++)
        memcpy(to + (size_t)s * n, from + (size_t)(s % sampled) * n, (size_t)n * sizeof *to);
}

static double recv_imbalance(const plan_opts_t *o, const int *tpr)
{
    double mx = 0, sum = 0;
    int R = o->group_ranks;
    for (int d = 0; d < R; d++) {
        double r = 0;
        for (int s = 0; s < R; s++)
            r += tpr[(size_t)s * R + d];
        mx = r > mx ? r : mx;
        sum += r;
    }
    return sum > 0 ? mx * R / sum : 0;
}

static int plan_alloc(const plan_opts_t *o, int nm, int sampled, plan_buf_t *b)
{
    size_t Rg = (size_t)o->group_ranks, Ng = Rg / o->rpn;
    b->routers = calloc((size_t)nm, sizeof *b->routers);
    b->ltpr = calloc((size_t)nm, sizeof *b->ltpr);
    b->ltpn = calloc((size_t)nm, sizeof *b->ltpn);
    b->lrpr = calloc((size_t)nm, sizeof *b->lrpr);
    b->tpr = malloc(Rg * Rg * sizeof *b->tpr);
    b->rpr = malloc(Rg * Rg * sizeof *b->rpr);
    b->tpn = malloc(Rg * Ng * sizeof *b->tpn);
    b->tpe = malloc((size_t)o->experts * sizeof *b->tpe);
    b->logits = malloc((size_t)o->tokens * o->experts * sizeof *b->logits);
    b->w = malloc((size_t)o->tokens * o->topk * sizeof *b->w);
    b->idx = malloc((size_t)o->tokens * o->topk * sizeof *b->idx);
    if (!b->routers || !b->ltpr || !b->ltpn || !b->lrpr || !b->tpr || !b->rpr || !b->tpn ||
        !b->tpe || !b->logits || !b->w || !b->idx)
        return plan_fail("out of memory");
    for (int i = 0; i < nm; i++) {
        b->ltpr[i] = calloc((size_t)sampled * Rg, sizeof **b->ltpr);
        b->ltpn[i] = calloc((size_t)sampled * Ng, sizeof **b->ltpn);
        b->lrpr[i] = calloc((size_t)sampled * Rg, sizeof **b->lrpr);
        if (!b->ltpr[i] || !b->ltpn[i] || !b->lrpr[i])
            return plan_fail("out of memory");
        if (plan_router(o, i, &b->routers[i]) != 0)
            return 1;
    }
    return 0;
}

static void plan_free(int nm, plan_buf_t *b)
{
    for (int i = 0; i < nm; i++) {
        if (b->routers)
            epc_router_destroy(b->routers[i]);
        if (b->ltpr)
            free(b->ltpr[i]);
        if (b->ltpn)
            free(b->ltpn[i]);
        if (b->lrpr)
            free(b->lrpr[i]);
    }
    free(b->routers), free(b->ltpr), free(b->ltpn), free(b->lrpr), free(b->tpr), free(b->tpn);
    free(b->rpr), free(b->tpe), free(b->logits), free(b->w), free(b->idx);
}

/* Builds the table: one row per M (0 = no limit, then 1..min(k, nodes)). */
static int plan(const plan_opts_t *o, row_t *rows, int nm, int *sampled_out)
{
    plan_buf_t b;
    long pool = POOL_TOKENS / nm > MIN_POOL_TOKENS ? POOL_TOKENS / nm : MIN_POOL_TOKENS;
    int rc, sampled, Rg = o->group_ranks;
    memset(&b, 0, sizeof b);
    sampled = (long)Rg * o->tokens <= pool ? Rg : (int)(pool / o->tokens);
    sampled = sampled < 1 ? 1 : sampled;
    *sampled_out = sampled;
    rc = plan_alloc(o, nm, sampled, &b);
    for (int s = 0; rc == 0 && s < sampled; s++) {
        rc = route_source(o, &b, nm, s, rows);
        plan_progress(s + 1, sampled);
    }
    for (int i = 0; rc == 0 && i < nm; i++) {
        rows[i].m = i;
        plan_stats_scale(&rows[i].st, sampled);
        expand(o, sampled, b.ltpr[i], Rg, b.tpr);
        expand(o, sampled, b.ltpn[i], Rg / o->rpn, b.tpn);
        expand(o, sampled, b.lrpr[i], Rg, b.rpr);
        rows[i].imb_rank = recv_imbalance(o, b.tpr);
        rc = plan_cost(o, b.tpr, b.tpn, b.rpr, &rows[i].cost);
    }
    plan_free(nm, &b);
    return rc;
}

static void print_table(const plan_opts_t *o, const row_t *rows, int nm, int sampled, int rec)
{
    int nodes = o->ranks / o->rpn;
    printf("# epc_plan: E=%d k=%d ranks=%d ranks/node=%d nodes=%d tokens/rank=%d row=%.0f B "
           "(combine %.0f B)\n",
           o->experts, o->topk, o->ranks, o->rpn, nodes, o->tokens, o->row_bytes,
           o->combine_row_bytes);
    printf("# gate: %s%s%s, skew=%g, seed=%u; profile %s: intra %.1f GB/s, inter %.1f GB/s\n",
           o->score_name, o->bias ? " + bias" : "", o->normalize ? ", normalized" : "", o->skew,
           o->seed, o->profile, o->intra, o->inter);
    if (o->group_ranks < o->ranks)
        printf("# %d expert-parallel groups of %d ranks: each holds all %d experts (one per "
               "rank) and serves its own ranks' tokens\n",
               o->ranks / o->group_ranks, o->group_ranks, o->experts);
    printf("# routed %s (%d of %d ranks x %d tokens)\n",
           sampled == o->group_ranks ? "every rank of a group"
                                     : "a sample of ranks, standing for all",
           sampled, o->group_ranks, o->tokens);
    printf("# recommended M (smallest with k/M <= intra/inter = %.2f): %d;  '<' marks -m %d\n",
           o->intra / o->inter, rec, o->m);
    printf("# ll_*: the low-latency mode (one row per (token, expert) to its rank, outputs back "
           "as %.0f-byte rows, plus %.0f us per call)\n",
           o->ll_combine_row_bytes, EPC_LL_LATENCY_US);
    printf("#\n# %4s %10s %10s %12s %12s %7s %8s %8s %12s %12s %8s %12s %12s %11s %11s\n", "M",
           "nodes/tok", "ranks/tok", "flat_B/tok", "hier_B/tok", "B_ratio", "imb_rank", "imb_exp",
           "flat_disp_us", "hier_disp_us", "speedup", "flat_comb_us", "hier_comb_us", "ll_disp_us",
           "ll_comb_us");
    for (int i = 0; i < nm; i++) {
        const row_t *r = &rows[i];
        const epc_route_stats_t *s = &r->st;
        double ft = s->num_tokens ? s->flat_inter_bytes / s->num_tokens : 0;
        double ht = s->num_tokens ? s->hier_inter_bytes / s->num_tokens : 0;
        char m[16];
        if (r->m == 0)
            snprintf(m, sizeof m, "none%s", o->m == 0 ? "<" : "");
        else
            snprintf(m, sizeof m, "%d%s%s", r->m, r->m == rec ? "*" : "", r->m == o->m ? "<" : "");
        printf("  %4s %10.2f %10.2f %12.0f %12.0f %7.2f %8.2f %8.2f %12.1f %12.1f %8.2f %12.1f "
               "%12.1f %11.1f %11.1f\n",
               m, s->mean_nodes_per_token, s->mean_ranks_per_token, ft, ht, ht > 0 ? ft / ht : 0,
               r->imb_rank, s->expert_load_imbalance, r->cost.flat_dispatch_us,
               r->cost.hier_dispatch_us, r->cost.flat_dispatch_us / r->cost.hier_dispatch_us,
               r->cost.flat_combine_us, r->cost.hier_combine_us, r->cost.ll_dispatch_us,
               r->cost.ll_combine_us);
    }
}

static void print_json(const plan_opts_t *o, const row_t *rows, int nm, int sampled, int rec)
{
    printf("{\"experts\": %d, \"topk\": %d, \"ranks\": %d, \"ranks_per_node\": %d, "
           "\"tokens_per_rank\": %d, \"row_bytes\": %.0f, \"combine_row_bytes\": %.0f, "
           "\"skew\": %g, \"seed\": %u, "
           "\"profile\": \"%s\", \"intra_gbs\": %g, \"inter_gbs\": %g, \"sampled_ranks\": %d, "
           "\"recommended_m\": %d, \"m\": %d,\n \"rows\": [",
           o->experts, o->topk, o->ranks, o->rpn, o->tokens, o->row_bytes, o->combine_row_bytes,
           o->skew, o->seed, o->profile, o->intra, o->inter, sampled, rec, o->m);
    for (int i = 0; i < nm; i++) {
        const epc_route_stats_t *s = &rows[i].st;
        printf("%s\n  {\"m\": %d, \"nodes_per_token\": %.4f, \"ranks_per_token\": %.4f, "
               "\"flat_inter_bytes_per_token\": %.1f, \"hier_inter_bytes_per_token\": %.1f, "
               "\"rank_imbalance\": %.4f, \"expert_imbalance\": %.4f, "
               "\"flat_dispatch_us\": %.3f, \"hier_dispatch_us\": %.3f, "
               "\"flat_combine_us\": %.3f, \"hier_combine_us\": %.3f, "
               "\"ll_dispatch_us\": %.3f, \"ll_combine_us\": %.3f}",
               i ? "," : "", rows[i].m, s->mean_nodes_per_token, s->mean_ranks_per_token,
               s->num_tokens ? s->flat_inter_bytes / s->num_tokens : 0,
               s->num_tokens ? s->hier_inter_bytes / s->num_tokens : 0, rows[i].imb_rank,
               s->expert_load_imbalance, rows[i].cost.flat_dispatch_us,
               rows[i].cost.hier_dispatch_us, rows[i].cost.flat_combine_us,
               rows[i].cost.hier_combine_us, rows[i].cost.ll_dispatch_us,
               rows[i].cost.ll_combine_us);
    }
    printf("\n ]}\n");
}

int main(int argc, char **argv)
{
    plan_opts_t o;
    row_t *rows;
    int nm, sampled = 0, rec, rc = plan_parse(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? 0 : 2;
    if (o.bench)
        return plan_bench(&o);
    if (o.placement >= 0)
        return plan_placement(&o);
    nm = 1 + (o.topk < o.group_ranks / o.rpn ? o.topk : o.group_ranks / o.rpn);
    rows = calloc((size_t)nm, sizeof *rows);
    if (rows == NULL || plan(&o, rows, nm, &sampled) != 0) {
        free(rows);
        return 1;
    }
    if (epc_recommend_node_limit(o.topk, o.group_ranks / o.rpn, o.intra, o.inter, &rec) != EPC_OK)
        rec = 0; /* bandwidths not positive: no recommendation printed */
    if (o.json)
        print_json(&o, rows, nm, sampled, rec);
    else
        print_table(&o, rows, nm, sampled, rec);
    free(rows);
    return 0;
}
