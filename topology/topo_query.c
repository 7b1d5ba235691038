/* SPDX-License-Identifier: BSD-3-Clause */
/* topo_query.c - read-only accessors of epc_topo_t, with argument checks. */
#include <string.h>

#include "params.h"
#include "topo.h"

/* A pointer we created and have not destroyed. */
static epc_status_t check(const epc_topo_t *t, const void *out, const char *fn)
{
    if (t == NULL || t->hdr.magic != EPC_MAGIC_TOPO)
        return epc_error(EPC_ERR_INVALID_ARG, "%s: topo is %s", fn,
                         t == NULL ? "NULL" : "not a live epc_topo_t (destroyed?)");
    if (out == NULL)
        return epc_error(EPC_ERR_INVALID_ARG, "%s: output pointer is NULL", fn);
    return EPC_OK;
}

static epc_status_t check_rank(const epc_topo_t *t, int rank, const void *out, const char *fn)
{
    epc_status_t st = check(t, out, fn);
    if (st == EPC_OK && (rank < 0 || rank >= t->nranks))
        return epc_error(EPC_ERR_INVALID_ARG, "%s: rank %d out of range [0, %d)", fn, rank,
                         t->nranks);
    return st;
}

static epc_status_t check_node(const epc_topo_t *t, int node, const void *out, const char *fn)
{
    epc_status_t st = check(t, out, fn);
    if (st == EPC_OK && (node < 0 || node >= t->nnodes))
        return epc_error(EPC_ERR_INVALID_ARG, "%s: node %d out of range [0, %d)", fn, node,
                         t->nnodes);
    return st;
}

epc_status_t epc_topo_num_ranks(const epc_topo_t *t, int *n)
{
    epc_status_t st = check(t, n, "epc_topo_num_ranks");
    if (st == EPC_OK)
        *n = t->nranks;
    return st;
}

epc_status_t epc_topo_my_rank(const epc_topo_t *t, int *rank)
{
    epc_status_t st = check(t, rank, "epc_topo_my_rank");
    if (st == EPC_OK)
        *rank = t->my_rank;
    return st;
}

epc_status_t epc_topo_num_nodes(const epc_topo_t *t, int *n)
{
    epc_status_t st = check(t, n, "epc_topo_num_nodes");
    if (st == EPC_OK)
        *n = t->nnodes;
    return st;
}

epc_status_t epc_topo_ranks_per_node(const epc_topo_t *t, int *rpn)
{
    epc_status_t st = check(t, rpn, "epc_topo_ranks_per_node");
    if (st == EPC_OK)
        *rpn = t->uniform_rpn;
    return st;
}

epc_status_t epc_topo_node_of(const epc_topo_t *t, int rank, int *node)
{
    epc_status_t st = check_rank(t, rank, node, "epc_topo_node_of");
    if (st == EPC_OK)
        *node = t->node_of[rank];
    return st;
}

epc_status_t epc_topo_local_rank(const epc_topo_t *t, int rank, int *local_rank)
{
    epc_status_t st = check_rank(t, rank, local_rank, "epc_topo_local_rank");
    if (st == EPC_OK)
        *local_rank = t->local_rank[rank];
    return st;
}

epc_status_t epc_topo_local_size(const epc_topo_t *t, int node, int *size)
{
    epc_status_t st = check_node(t, node, size, "epc_topo_local_size");
    if (st == EPC_OK)
        *size = t->node_start[node + 1] - t->node_start[node];
    return st;
}

epc_status_t epc_topo_node_ranks(const epc_topo_t *t, int node, int *ranks, int capacity,
                                 int *count)
{
    epc_status_t st = check_node(t, node, count, "epc_topo_node_ranks");
    int n;
    if (st != EPC_OK)
        return st;
    n = t->node_start[node + 1] - t->node_start[node];
    if (ranks == NULL || capacity < n)
        return epc_error(EPC_ERR_INVALID_ARG,
                         "epc_topo_node_ranks: ranks is %s, capacity %d < %d ranks of node %d",
                         ranks ? "given" : "NULL", capacity, n, node);
    memcpy(ranks, t->node_ranks + t->node_start[node], (size_t)n * sizeof *ranks);
    *count = n;
    return EPC_OK;
}

static const epc_params_layouts_t rank_info_layouts = {
    "EPC_RANK_INFO_INIT", sizeof(epc_rank_info_t), {0}};
static const epc_params_layouts_t node_info_layouts = {
    "EPC_NODE_INFO_INIT", sizeof(epc_node_info_t), {0}};
static const epc_params_layouts_t bw_layouts = {"EPC_TOPO_BW_INIT", sizeof(epc_topo_bw_t), {0}};

epc_status_t epc_topo_rank_info(const epc_topo_t *t, int rank, epc_rank_info_t *info)
{
    epc_status_t st = check_rank(t, rank, info, "epc_topo_rank_info");
    epc_rank_info_t all = EPC_RANK_INFO_INIT;
    const epc_rank_rec_t *r;
    if (st == EPC_OK)
        st = epc_out_check(info, &rank_info_layouts, NULL, "epc_topo_rank_info", "info");
    if (st != EPC_OK)
        return st;
    r = &t->recs[rank];
    all.rank = rank;
    all.node = t->node_of[rank];
    all.local_rank = t->local_rank[rank];
    all.host = r->host;
    all.cpuset = r->loc.cpuset;
    all.bound = r->bound;
    all.package = r->loc.package;
    all.numa = r->loc.numa;
    all.cores = r->loc.cores;
    all.nics = r->loc.nics;
    all.gpus = r->loc.gpus;
    all.nic = r->nic;
    all.gpu = r->gpu;
    epc_out_store(info, &all);
    return EPC_OK;
}

epc_status_t epc_topo_node_info(const epc_topo_t *t, int node, epc_node_info_t *info)
{
    epc_status_t st = check_node(t, node, info, "epc_topo_node_info");
    epc_node_info_t all = EPC_NODE_INFO_INIT;
    const epc_rank_rec_t *r;
    if (st == EPC_OK)
        st = epc_out_check(info, &node_info_layouts, NULL, "epc_topo_node_info", "info");
    if (st != EPC_OK)
        return st;
    all.node = node;
    all.first_rank = t->node_ranks[t->node_start[node]];
    all.num_ranks = t->node_start[node + 1] - t->node_start[node];
    r = &t->recs[all.first_rank];
    all.host = r->host;
    all.packages = r->sum.packages;
    all.numa_nodes = r->sum.numa_nodes;
    all.cores = r->sum.cores;
    all.pus = r->sum.pus;
    all.nics = r->sum.nics;
    all.gpus = r->sum.gpus;
    epc_out_store(info, &all);
    return EPC_OK;
}

epc_status_t epc_topo_link_class(const epc_topo_t *t, int a, int b, epc_link_class_t *cls)
{
    epc_status_t st = check_rank(t, a, cls, "epc_topo_link_class");
    const epc_rank_rec_t *ra, *rb;
    if (st == EPC_OK && (b < 0 || b >= t->nranks))
        return epc_error(EPC_ERR_INVALID_ARG, "epc_topo_link_class: rank_b %d out of range [0, %d)",
                         b, t->nranks);
    if (st != EPC_OK)
        return st;
    ra = &t->recs[a];
    rb = &t->recs[b];
    if (a == b)
        *cls = EPC_LINK_SELF;
    else if (t->node_of[a] != t->node_of[b])
        *cls = EPC_LINK_OTHER_NODE;
    else if (ra->loc.numa >= 0 && ra->loc.numa == rb->loc.numa)
        *cls = EPC_LINK_SAME_NUMA;
    else
        *cls = EPC_LINK_SAME_NODE;
    return EPC_OK;
}

epc_status_t epc_topo_bandwidth(const epc_topo_t *t, epc_topo_bw_t *bw)
{
    epc_status_t st = check(t, bw, "epc_topo_bandwidth");
    if (st == EPC_OK)
        st = epc_out_check(bw, &bw_layouts, NULL, "epc_topo_bandwidth", "bw");
    if (st == EPC_OK)
        epc_out_store(bw, &t->bw);
    return st;
}

epc_status_t epc_topo_hw_source(const epc_topo_t *t, const char **source)
{
    epc_status_t st = check(t, source, "epc_topo_hw_source");
    if (st == EPC_OK)
        *source = t->hw_source;
    return st;
}
