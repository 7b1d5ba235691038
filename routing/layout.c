/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * layout.c - what routed tokens imply for dispatch: counts per rank, node and
 * expert, token-to-rank/node masks (DeepEP's get_dispatch_layout), and the
 * statistics and bytes of one source rank's batch.
 */
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "router.h"

epc_status_t epc_route_check_idx(int E, int k, const int32_t *idx, int T, const char *fn)
{
    if (T < 0)
        return epc_error(EPC_ERR_INVALID_ARG, "%s: num_tokens = %d < 0", fn, T);
    if (T > 0 && idx == NULL)
        return epc_error(EPC_ERR_INVALID_ARG, "%s: topk_idx is NULL", fn);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            int32_t e = idx[(size_t)t * k + j];
            if (e < -1 || e >= E)
                return epc_error(EPC_ERR_INVALID_ARG,
                                 "%s: topk_idx[token %d][%d] = %d is outside [-1, %d)", fn, t, j,
                                 (int)e, E);
            for (int i = 0; i < j && e >= 0; i++)
                if (idx[(size_t)t * k + i] == e)
                    return epc_error(EPC_ERR_INVALID_ARG,
                                     "%s: topk_idx[token %d] names expert %d twice (slots %d, %d)",
                                     fn, t, (int)e, i, j);
        }
    return EPC_OK;
}

/* Marks the distinct ranks and nodes of one token (epoch stamps avoid
 * clearing per token) and updates the counters. */
static void layout_token(int E, int k, int R, int rpn, const int32_t *idx, int t, int *rank_seen,
                         int *node_seen, const epc_layout_t *out)
{
    int epr = E / R, nodes = R / rpn;
    for (int j = 0; j < k; j++) {
        int e = idx[j], r, n;
        if (e < 0)
            continue;
        r = e / epr;
        n = r / rpn;
        if (out->tokens_per_expert)
            out->tokens_per_expert[e]++;
        if (rank_seen[r] != t) {
            rank_seen[r] = t;
            if (out->tokens_per_rank)
                out->tokens_per_rank[r]++;
            if (out->token_in_rank)
                out->token_in_rank[(size_t)t * R + r] = 1;
        }
        if (node_seen[n] != t) {
            node_seen[n] = t;
            if (out->tokens_per_node)
                out->tokens_per_node[n]++;
            if (out->token_in_node)
                out->token_in_node[(size_t)t * nodes + n] = 1;
        }
    }
}

epc_status_t epc_route_layout(int E, int k, int R, int rpn, const int32_t *idx, int T,
                              const epc_layout_t *out)
{
    int nodes = R / rpn, *rank_seen, *node_seen;
    epc_status_t st = epc_route_check_idx(E, k, idx, T, "epc_layout");
    if (st != EPC_OK)
        return st;
    if (out == NULL)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_layout: out is NULL");
    rank_seen = malloc((size_t)R * sizeof *rank_seen);
    node_seen = malloc((size_t)nodes * sizeof *node_seen);
    if (rank_seen == NULL || node_seen == NULL) {
        free(rank_seen);
        free(node_seen);
        return epc_error(EPC_ERR_NO_MEMORY, "epc_layout: %d ranks", R);
    }
    memset(rank_seen, 0xff, (size_t)R * sizeof *rank_seen); /* -1: no token yet */
    memset(node_seen, 0xff, (size_t)nodes * sizeof *node_seen);
    if (out->tokens_per_rank)
        memset(out->tokens_per_rank, 0, (size_t)R * sizeof(int));
    if (out->tokens_per_node)
        memset(out->tokens_per_node, 0, (size_t)nodes * sizeof(int));
    if (out->tokens_per_expert)
        memset(out->tokens_per_expert, 0, (size_t)E * sizeof(int));
    if (out->token_in_rank)
        memset(out->token_in_rank, 0, (size_t)T * R);
    if (out->token_in_node)
        memset(out->token_in_node, 0, (size_t)T * nodes);
    for (int t = 0; t < T; t++)
        layout_token(E, k, R, rpn, idx + (size_t)t * k, t, rank_seen, node_seen, out);
    free(rank_seen);
    free(node_seen);
    return EPC_OK;
}

epc_status_t epc_layout(const epc_router_t *r, const int32_t *idx, int T, const epc_layout_t *out)
{
    static const epc_params_layouts_t layouts = {"EPC_LAYOUT_INIT", sizeof(epc_layout_t), {0}};
    epc_layout_t arrays;
    epc_status_t st;
    if (r == NULL || r->hdr.magic != EPC_MAGIC_ROUTER)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_layout: router is %s",
                         r ? "not a live epc_router_t" : "NULL");
    if ((st = epc_params_load(&arrays, out, &layouts, NULL, "epc_layout", "out")) != EPC_OK)
        return st;
    return epc_route_layout(r->E, r->k, r->R, r->rpn, idx, T, &arrays);
}

static double imbalance(const int *v, int n)
{
    long sum = 0;
    int mx = 0;
    for (int i = 0; i < n; i++) {
        sum += v[i];
        mx = v[i] > mx ? v[i] : mx;
    }
    return sum > 0 ? (double)mx * n / (double)sum : 0.0;
}

/* Per-token distinct ranks/nodes and the bytes of both paths; rank_seen and
 * node_seen are zeroed scratch of R and nodes entries. */
static void token_stats(const epc_router_t *r, const int32_t *idx, int T, int src_node, double row,
                        int *rank_seen, int *node_seen, epc_route_stats_t *s)
{
    long nr_sum = 0, nn_sum = 0;
    for (int t = 0; t < T; t++) {
        int nr = 0, nn = 0, nr_local = 0, nn_remote = 0;
        for (int j = 0; j < r->k; j++) {
            int e = idx[(size_t)t * r->k + j], rk, nd;
            if (e < 0)
                continue;
            rk = e / r->epr;
            nd = rk / r->rpn;
            if (rank_seen[rk] != t + 1) {
                rank_seen[rk] = t + 1;
                nr++;
                nr_local += nd == src_node;
            }
            if (node_seen[nd] != t + 1) {
                node_seen[nd] = t + 1;
                nn++;
                nn_remote += nd != src_node;
            }
        }
        if (nr == 0)
            continue;
        s->num_tokens++;
        nr_sum += nr;
        nn_sum += nn;
        s->max_ranks_per_token = nr > s->max_ranks_per_token ? nr : s->max_ranks_per_token;
        s->max_nodes_per_token = nn > s->max_nodes_per_token ? nn : s->max_nodes_per_token;
        s->flat_inter_bytes += (nr - nr_local) * row;
        s->flat_intra_bytes += nr_local * row;
        s->hier_inter_bytes += nn_remote * row;
        s->hier_intra_bytes += nr * row; /* direct writes + the forwarders' fan-out */
    }
    s->mean_ranks_per_token = s->num_tokens ? (double)nr_sum / s->num_tokens : 0.0;
    s->mean_nodes_per_token = s->num_tokens ? (double)nn_sum / s->num_tokens : 0.0;
}

epc_status_t epc_route_stats(const epc_router_t *r, const int32_t *idx, int T, int src_rank,
                             double row_bytes, epc_route_stats_t *stats)
{
    static const epc_params_layouts_t layouts = {
        "EPC_ROUTE_STATS_INIT", sizeof(epc_route_stats_t), {0}};
    epc_route_stats_t s = EPC_ROUTE_STATS_INIT;
    epc_layout_t lay = EPC_LAYOUT_INIT;
    int *buf;
    epc_status_t st;
    if (r == NULL || r->hdr.magic != EPC_MAGIC_ROUTER)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_route_stats: router is %s",
                         r ? "not a live epc_router_t" : "NULL");
    if ((st = epc_out_check(stats, &layouts, NULL, "epc_route_stats", "stats")) != EPC_OK)
        return st;
    if (src_rank < 0 || src_rank >= r->R || !(row_bytes >= 0))
        return epc_error(EPC_ERR_INVALID_ARG,
                         "epc_route_stats: src_rank = %d (ranks %d), row_bytes = %g", src_rank,
                         r->R, row_bytes);
    /* counts per rank, node, expert, then two stamp arrays */
    buf = calloc((size_t)(2 * r->R + 2 * r->nodes + r->E), sizeof *buf);
    if (buf == NULL)
        return epc_error(EPC_ERR_NO_MEMORY, "epc_route_stats: %d ranks", r->R);
    lay.tokens_per_rank = buf;
    lay.tokens_per_node = buf + r->R;
    lay.tokens_per_expert = buf + r->R + r->nodes;
    st = epc_route_layout(r->E, r->k, r->R, r->rpn, idx, T, &lay);
    if (st == EPC_OK) {
        token_stats(r, idx, T, src_rank / r->rpn, row_bytes, buf + r->R + r->nodes + r->E,
                    buf + 2 * r->R + r->nodes + r->E, &s);
        s.expert_load_imbalance = imbalance(lay.tokens_per_expert, r->E);
        s.rank_load_imbalance = imbalance(lay.tokens_per_rank, r->R);
        s.node_load_imbalance = imbalance(lay.tokens_per_node, r->nodes);
        epc_out_store(stats, &s);
    }
    free(buf);
    return st;
}
