/* SPDX-License-Identifier: BSD-3-Clause */
/* topo_query.c - read-only accessors of epc_topo_t, with argument checks. */
#include <string.h>

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

epc_status_t epc_topo_rank_info(const epc_topo_t *t, int rank, epc_rank_info_t *info)
{
    epc_status_t st = check_rank(t, rank, info, "epc_topo_rank_info");
    const epc_rank_rec_t *r;
    if (st != EPC_OK)
        return st;
    r = &t->recs[rank];
    info->rank = rank;
    info->node = t->node_of[rank];
    info->local_rank = t->local_rank[rank];
    info->host = r->host;
    info->cpuset = r->loc.cpuset;
    info->bound = r->bound;
    info->package = r->loc.package;
    info->numa = r->loc.numa;
    info->cores = r->loc.cores;
    info->nics = r->loc.nics;
    info->gpus = r->loc.gpus;
    info->nic = r->nic;
    info->gpu = r->gpu;
    return EPC_OK;
}

epc_status_t epc_topo_node_info(const epc_topo_t *t, int node, epc_node_info_t *info)
{
    epc_status_t st = check_node(t, node, info, "epc_topo_node_info");
    const epc_rank_rec_t *r;
    if (st != EPC_OK)
        return st;
    info->node = node;
    info->first_rank = t->node_ranks[t->node_start[node]];
    info->num_ranks = t->node_start[node + 1] - t->node_start[node];
    r = &t->recs[info->first_rank];
    info->host = r->host;
    info->packages = r->sum.packages;
    info->numa_nodes = r->sum.numa_nodes;
    info->cores = r->sum.cores;
    info->pus = r->sum.pus;
    info->nics = r->sum.nics;
    info->gpus = r->sum.gpus;
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
        *bw = t->bw;
    return st;
}

epc_status_t epc_topo_hw_source(const epc_topo_t *t, const char **source)
{
    epc_status_t st = check(t, source, "epc_topo_hw_source");
    if (st == EPC_OK)
        *source = t->hw_source;
    return st;
}
