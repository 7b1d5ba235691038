/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * cost.c - the bandwidth cost model of dispatch and combine, flat and
 * hierarchical, from all-rank token counts (docs/ROUTING.md, "Cost model").
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "router.h"

typedef struct cost_in {
    int R, rpn, nodes;
    double row, crow, intra, inter; /* crow: combine's row */
    const int *tpr, *tpn, *rpr;     /* rpr: the low-latency mode's rows, or NULL */
    double ll_us;
} cost_in_t;

#define BAD(...) epc_error(EPC_ERR_INVALID_ARG, "epc_cost_model: " __VA_ARGS__)

/* params > topo; every figure must end up positive.  The topology is read
 * through its public accessors: routing stays pure computation. */
static epc_status_t resolve(const epc_cost_params_t *p, cost_in_t *in)
{
    epc_topo_bw_t bw = EPC_TOPO_BW_INIT;
    int R = 0, rpn = 0;
    if (p->topo != NULL && (epc_topo_num_ranks(p->topo, &R) != EPC_OK ||
                            epc_topo_ranks_per_node(p->topo, &rpn) != EPC_OK ||
                            epc_topo_bandwidth(p->topo, &bw) != EPC_OK))
        return BAD("topo is not a live epc_topo_t");
    in->R = p->num_ranks ? p->num_ranks : R;
    in->rpn = p->ranks_per_node ? p->ranks_per_node : rpn;
    in->intra = p->intra_bw_gbs > 0 ? p->intra_bw_gbs : bw.intra_gbs;
    in->inter = p->inter_bw_gbs > 0 ? p->inter_bw_gbs : bw.inter_gbs;
    in->row = p->row_bytes;
    in->crow = p->combine_row_bytes > 0 ? p->combine_row_bytes : p->row_bytes;
    in->tpr = p->tokens_per_rank;
    in->tpn = p->tokens_per_node;
    in->rpr = p->rows_per_rank;
    in->ll_us = p->ll_latency_us > 0 ? p->ll_latency_us : EPC_LL_LATENCY_US;
    if (!(p->ll_latency_us >= 0) || !isfinite(p->ll_latency_us))
        return BAD("ll_latency_us = %g, must be >= 0", p->ll_latency_us);
    if (in->R < 1 || in->rpn < 1 || in->R % in->rpn != 0)
        return BAD("num_ranks = %d and ranks_per_node = %d (uneven topology or not given)", in->R,
                   in->rpn);
    if (!(in->intra > 0) || !(in->inter > 0) || !isfinite(in->intra) || !isfinite(in->inter))
        return BAD("intra_bw_gbs = %g, inter_bw_gbs = %g: must be > 0", in->intra, in->inter);
    if (!(in->row >= 0) || !isfinite(in->row))
        return BAD("row_bytes = %g, must be >= 0", in->row);
    if (!(p->combine_row_bytes >= 0) || !isfinite(p->combine_row_bytes))
        return BAD("combine_row_bytes = %g, must be >= 0", p->combine_row_bytes);
    if (in->tpr == NULL || in->tpn == NULL)
        return BAD("%s is NULL", in->tpr == NULL ? "tokens_per_rank" : "tokens_per_node");
    in->nodes = in->R / in->rpn;
    for (long i = 0; i < (long)in->R * in->R; i++)
        if (in->tpr[i] < 0)
            return BAD("tokens_per_rank[%ld] = %d < 0", i, in->tpr[i]);
    for (long i = 0; i < (long)in->R * in->nodes; i++)
        if (in->tpn[i] < 0)
            return BAD("tokens_per_node[%ld] = %d < 0", i, in->tpn[i]);
    for (long i = 0; in->rpr != NULL && i < (long)in->R * in->R; i++)
        if (in->rpr[i] < 0)
            return BAD("rows_per_rank[%ld] = %d < 0", i, in->rpr[i]);
    return EPC_OK;
}

/* Rows each rank sends/receives over the network and copies in its node. */
typedef struct rows {
    double *send, *recv, *intra;
} rows_t;

/* Rows of the [R x R] counts `per` sent straight to their ranks (flat's
 * tokens, the low-latency mode's rows): a rank's own node's in its copies. */
static void direct_rows(const cost_in_t *in, const int *per, rows_t *w)
{
    for (int s = 0; s < in->R; s++)
        for (int d = 0; d < in->R; d++) {
            double n = per[(size_t)s * in->R + d];
            if (s / in->rpn == d / in->rpn) {
                w->intra[s] += n;
            } else {
                w->send[s] += n;
                w->recv[d] += n;
            }
        }
}

/* Source s sends one row per (token, other node) to the rank with its local
 * index there, which fans it out to the destination ranks of its node. */
static void hier_rows(const cost_in_t *in, rows_t *w)
{
    for (int s = 0; s < in->R; s++) {
        int sn = s / in->rpn, local = s % in->rpn;
        for (int n = 0; n < in->nodes; n++) {
            int fwd = n * in->rpn + local;
            double fan = 0;
            for (int d = n * in->rpn; d < (n + 1) * in->rpn; d++)
                fan += in->tpr[(size_t)s * in->R + d];
            if (n == sn) {
                w->intra[s] += fan;
                continue;
            }
            w->send[s] += in->tpn[(size_t)s * in->nodes + n];
            w->recv[fwd] += in->tpn[(size_t)s * in->nodes + n];
            w->intra[fwd] += fan;
        }
    }
}

/* The busiest rank's time in microseconds, rows of `row` bytes; its bytes
 * into *inter, *intra. */
static double busiest(const cost_in_t *in, const rows_t *w, double row, double *inter,
                      double *intra)
{
    double worst = 0;
    *inter = *intra = 0;
    for (int x = 0; x < in->R; x++) {
        double net = (w->send[x] > w->recv[x] ? w->send[x] : w->recv[x]) * row;
        double loc = w->intra[x] * row;
        double us = fmax(net / (in->inter * 1e3), loc / (in->intra * 1e3));
        worst = fmax(worst, us);
        *inter = fmax(*inter, net);
        *intra = fmax(*intra, loc);
    }
    return worst;
}

epc_status_t epc_cost_model(const epc_cost_params_t *params, epc_cost_t *c)
{
    static const epc_params_layouts_t layouts = {"EPC_COST_PARAMS_INIT",
                                                 sizeof(epc_cost_params_t),
                                                 {offsetof(epc_cost_params_t, combine_row_bytes),
                                                  offsetof(epc_cost_params_t, rows_per_rank), 0}};
    epc_cost_params_t loaded;
    const epc_cost_params_t *p = &loaded;
    cost_in_t in;
    rows_t w;
    double *buf, ci, cl; /* combine's bytes (not reported) */
    static const epc_params_layouts_t out_layouts = {
        "EPC_COST_INIT", sizeof(epc_cost_t), {offsetof(epc_cost_t, ll_dispatch_us), 0}};
    epc_cost_t out = EPC_COST_INIT;
    epc_status_t st;
    if ((st = epc_out_check(c, &out_layouts, NULL, "epc_cost_model", "cost")) != EPC_OK)
        return st;
    if ((st = epc_params_load(&loaded, params, &layouts, NULL, "epc_cost_model", "params")) !=
        EPC_OK)
        return st;
    if ((st = resolve(p, &in)) != EPC_OK)
        return st;
    if ((buf = calloc(3 * (size_t)in.R, sizeof *buf)) == NULL)
        return epc_error(EPC_ERR_NO_MEMORY, "epc_cost_model: %d ranks", in.R);
    w.send = buf;
    w.recv = buf + in.R;
    w.intra = buf + 2 * (size_t)in.R;
    /* Combine moves the same rows back along the reversed path: send and
     * receive swap, which the max over both leaves unchanged; only the
     * row's size may differ. */
    direct_rows(&in, in.tpr, &w);
    out.flat_dispatch_us =
        busiest(&in, &w, in.row, &out.flat_max_inter_bytes, &out.flat_max_intra_bytes);
    out.flat_combine_us = busiest(&in, &w, in.crow, &ci, &cl);
    memset(buf, 0, 3 * (size_t)in.R * sizeof *buf);
    hier_rows(&in, &w);
    out.hier_dispatch_us =
        busiest(&in, &w, in.row, &out.hier_max_inter_bytes, &out.hier_max_intra_bytes);
    out.hier_combine_us = busiest(&in, &w, in.crow, &ci, &cl);
    out.ll_dispatch_us = out.ll_combine_us = -1;
    if (in.rpr != NULL) {
        memset(buf, 0, 3 * (size_t)in.R * sizeof *buf);
        direct_rows(&in, in.rpr, &w);
        out.ll_dispatch_us =
            in.ll_us + busiest(&in, &w, in.row, &out.ll_max_inter_bytes, &out.ll_max_intra_bytes);
        out.ll_combine_us = in.ll_us + busiest(&in, &w, in.crow, &ci, &cl);
    }
    free(buf);
    epc_out_store(c, &out);
    return EPC_OK;
}

epc_status_t epc_recommend_node_limit(int topk, int num_nodes, double intra_bw_gbs,
                                      double inter_bw_gbs, int *node_limit)
{
    int cap = topk < num_nodes ? topk : num_nodes, m;
#define BAD_NL(...) epc_error(EPC_ERR_INVALID_ARG, "epc_recommend_node_limit: " __VA_ARGS__)
    if (node_limit == NULL)
        return BAD_NL("node_limit is NULL");
    if (topk < 1 || num_nodes < 1)
        return BAD_NL("%s = %d, must be >= 1", topk < 1 ? "topk" : "num_nodes",
                      topk < 1 ? topk : num_nodes);
    if (!(intra_bw_gbs > 0) || !(inter_bw_gbs > 0))
        return BAD_NL("%s = %g, must be > 0", !(intra_bw_gbs > 0) ? "intra_bw_gbs" : "inter_bw_gbs",
                      !(intra_bw_gbs > 0) ? intra_bw_gbs : inter_bw_gbs);
#undef BAD_NL
    for (m = 1; m < cap; m++)
        if ((double)topk <= (intra_bw_gbs / inter_bw_gbs) * m)
            break;
    *node_limit = m;
    return EPC_OK;
}
