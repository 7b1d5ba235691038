/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * warmup.c - epc_ctx_warmup: the costs of a context's first calls paid
 * ahead of them.  A fresh context's first dispatch and combine on each of
 * its two lanes grow and populate the node's shared regions, size the
 * transport's buffers and the scratch, and open the transport's
 * connections: many times a steady call.  The warm-up runs those calls on
 * synthetic tokens (zero rows, routing spread over as many ranks and nodes
 * as it can and evenly over the experts), then makes this rank's first
 * store to every page of the node's regions (epc_shm_touch: where that
 * store is slow, a call with new routing would pay it), so that a real
 * call of up to that many tokens finds all of it in place.
 */
#include <stdio.h>
#include <stdlib.h>

#include "request.h"
#include "topo.h"

#define FN "epc_ctx_warmup"

/* What epc_ctx_warmup rejects on this rank, before any collective. */
static epc_status_t check_warmup(epc_ctx_t *ctx, epc_algo_t algo, int tokens)
{
    epc_status_t st = epc_ctx_check(ctx, FN);
    if (st != EPC_OK)
        return st;
    if (algo != EPC_ALGO_DEFAULT && algo != EPC_ALGO_HIER && algo != EPC_ALGO_FLAT)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG, FN ": algo = %d", (int)algo);
    if (tokens < 0)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG, FN ": tokens = %d < 0", tokens);
    if (tokens > ctx->max_tokens)
        return epc_error_obj(&ctx->hdr, EPC_ERR_CAPACITY,
                             FN ": tokens = %d exceeds the context's max_tokens_per_rank (%d)",
                             tokens, ctx->max_tokens);
    return EPC_OK;
}

/* The ranks in round-robin over the nodes: local rank 0 of each node,
 * then local rank 1 of each, ...  Consecutive entries are on different
 * nodes while there are nodes left. */
static void rank_order(const epc_topo_t *topo, int *order)
{
    int n = 0;
    for (int l = 0; n < topo->nranks; l++)
        for (int m = 0; m < topo->nnodes; m++)
            if (topo->node_start[m] + l < topo->node_start[m + 1])
                order[n++] = topo->node_ranks[topo->node_start[m] + l];
}

/* The warm-up's routing, the most demanding for the buffers' sizes: token
 * t's slot j goes to rank order[(t + j) mod R], so a token reaches
 * min(k, R) ranks on as many nodes as it can (the most forwarded records
 * and combine slots), and to local expert (t / R + j / R) mod (E / R)
 * there, distinct within the token (k <= E) and spread evenly over a
 * rank's tokens (each rank receives its share, tokens x k / R per source). */
static void spread_routing(const epc_topo_t *topo, const int *order, int32_t *idx, int tokens,
                           int k, int E)
{
    int R = topo->nranks, epr = E / R;
    for (int t = 0; t < tokens; t++)
        for (int j = 0; j < k; j++)
            idx[(size_t)t * k + j] = order[(t + j) % R] * epr + (t / R + j / R) % epr;
}

/* One dispatch and its combine of the synthetic tokens (a.num_tokens -1
 * when this rank's arguments were bad: the peers then fail as they would
 * in any collective that a rank entered with a bad argument). */
static epc_status_t warm_lane(epc_ctx_t *ctx, const epc_dispatch_args_t *a, void *y)
{
    epc_dispatch_out_t out = EPC_DISPATCH_OUT_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_handle_t *h = NULL;
    epc_status_t st = epc_dispatch(ctx, a, &out, &h);
    if (st == EPC_OK) {
        c.expert_out = out.rows; /* the received (zero) rows as expert outputs */
        c.y = y;
        st = epc_combine(ctx, h, &c);
    }
    epc_handle_destroy(h);
    return st;
}

epc_status_t epc_ctx_warmup(epc_ctx_t *ctx, epc_algo_t algo, int tokens)
{
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_status_t st = epc_ctx_check(ctx, FN), mine;
    char text[EPC_ERR_TEXT_MAX] = "";
    size_t n;
    void *y;
    int *order;
    if (st != EPC_OK)
        return st; /* no context to reach the peers through */
    mine = st = check_warmup(ctx, algo, tokens);
    n = st == EPC_OK ? (size_t)tokens : 0;
    a.x = calloc(n * coll_row_bytes(ctx) + 1, 1);
    a.topk_idx = malloc(n * ctx->max_topk * sizeof(int32_t) + 1);
    y = malloc(n * coll_row_bytes(ctx) + 1);
    order = malloc((size_t)ctx->comm.topo->nranks * sizeof *order);
    if (st == EPC_OK && (a.x == NULL || a.topk_idx == NULL || y == NULL || order == NULL))
        mine = st = epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, FN ": %d tokens", tokens);
    if (mine != EPC_OK)
        snprintf(text, sizeof text, "%s", epc_last_error(ctx));
    else {
        rank_order(ctx->comm.topo, order);
        spread_routing(ctx->comm.topo, order, (int32_t *)a.topk_idx, tokens, ctx->max_topk,
                       ctx->num_experts);
    }
    a.num_tokens = mine == EPC_OK ? tokens : -1;
    a.topk = ctx->max_topk;
    a.algo = mine == EPC_OK ? algo : EPC_ALGO_DEFAULT;
    /* both lanes (dispatches alternate between them); a rank with a bad
     * argument enters the first dispatch only, as its peers leave it */
    for (int lane = 0; lane < 2 && (lane == 0 || st == EPC_OK); lane++)
        st = warm_lane(ctx, &a, y);
    /* and this rank's first store to every page of the node's regions
     * (shm.c's touch_writable says why) */
    for (int lane = 0; lane < 2 && st == EPC_OK; lane++)
        epc_lane_shm_touch(&ctx->comm.lane[lane]);
    free((void *)a.x), free((void *)a.topk_idx), free(y), free(order);
    if (mine != EPC_OK) /* this rank's own error, as it was raised */
        return epc_error_restore(&ctx->hdr, mine, text);
    return st;
}
