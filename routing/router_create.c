/* SPDX-License-Identifier: BSD-3-Clause */
/* router_create.c - validating router parameters; router lifetime. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "router.h"

#define BAD(...) epc_error(EPC_ERR_INVALID_ARG, "epc_router_create: " __VA_ARGS__)

/* Shape: E, k, R, ranks per node, and the node limit. */
static epc_status_t check_shape(const epc_router_params_t *p, int R, int rpn)
{
    int nodes;
    if (p->num_experts < 1)
        return BAD("num_experts = %d, must be >= 1", p->num_experts);
    if (p->topk < 1 || p->topk > p->num_experts || p->topk > EPC_ROUTE_MAX_SELECT)
        return BAD("topk = %d, must be in [1, min(num_experts = %d, %d)]", p->topk, p->num_experts,
                   EPC_ROUTE_MAX_SELECT);
    if (R < 1 || p->num_experts % R != 0)
        return BAD("num_experts = %d is not divisible by num_ranks = %d", p->num_experts, R);
    if (rpn < 1 || R % rpn != 0)
        return BAD("num_ranks = %d is not divisible by ranks_per_node = %d", R, rpn);
    nodes = R / rpn;
    if (p->max_nodes_per_token < 0 || p->max_nodes_per_token > nodes)
        return BAD("max_nodes_per_token = %d, must be in [0, nodes = %d]", p->max_nodes_per_token,
                   nodes);
    if (p->max_nodes_per_token > EPC_ROUTE_MAX_SELECT && p->max_nodes_per_token < nodes)
        return BAD("max_nodes_per_token = %d > %d is not supported", p->max_nodes_per_token,
                   EPC_ROUTE_MAX_SELECT);
    if (p->max_nodes_per_token > 0 &&
        (long)p->topk > (long)p->max_nodes_per_token * (p->num_experts / nodes))
        return BAD("topk = %d is infeasible: max_nodes_per_token = %d x %d experts per node",
                   p->topk, p->max_nodes_per_token, p->num_experts / nodes);
    return EPC_OK;
}

/* Group limit, score details, bias. */
static epc_status_t check_rest(const epc_router_params_t *p)
{
    int G = p->num_groups;
    if (G < 0 || (G > 0 && p->num_experts % G != 0))
        return BAD("num_groups = %d does not divide num_experts = %d", G, p->num_experts);
    if (G > 0 && (p->max_groups_per_token < 1 || p->max_groups_per_token > G ||
                  p->max_groups_per_token > EPC_ROUTE_MAX_SELECT))
        return BAD("max_groups_per_token = %d, must be in [1, num_groups = %d]",
                   p->max_groups_per_token, G);
    if (G > 0 && (long)p->topk > (long)p->max_groups_per_token * (p->num_experts / G))
        return BAD("topk = %d is infeasible: max_groups_per_token = %d x %d experts per group",
                   p->topk, p->max_groups_per_token, p->num_experts / G);
    /* Both limits at once can leave fewer than k experts (the chosen groups
     * may lie on more nodes than M allows): DeepSeek-V3 uses one or the
     * other, with groups = nodes. */
    if (G > 0 && p->max_nodes_per_token > 0)
        return BAD("num_groups = %d and max_nodes_per_token = %d: use one limit, not both "
                   "(for DeepSeek-V3's node-limited gate, max_nodes_per_token alone)",
                   G, p->max_nodes_per_token);
    if (G == 0 && p->max_groups_per_token != 0)
        return BAD("max_groups_per_token = %d given without num_groups", p->max_groups_per_token);
    if (p->group_score_topk < 0 || p->group_score_topk > EPC_ROUTE_MAX_SELECT)
        return BAD("group_score_topk = %d, must be in [0, %d]", p->group_score_topk,
                   EPC_ROUTE_MAX_SELECT);
    if (p->score_fn != EPC_SCORE_SOFTMAX && p->score_fn != EPC_SCORE_SIGMOID &&
        p->score_fn != EPC_SCORE_IDENTITY)
        return BAD("score_fn = %d is not an epc_score_fn_t", (int)p->score_fn);
    if (!isfinite(p->route_scale) || p->route_scale < 0)
        return BAD("route_scale = %g, must be finite and >= 0", (double)p->route_scale);
    if (p->expert_bias != NULL && p->expert_bias_len != p->num_experts)
        return BAD("expert_bias_len = %d does not match num_experts = %d", p->expert_bias_len,
                   p->num_experts);
    if (p->expert_bias == NULL && p->expert_bias_len != 0)
        return BAD("expert_bias_len = %d but expert_bias is NULL", p->expert_bias_len);
    for (int e = 0; p->expert_bias != NULL && e < p->num_experts; e++)
        if (!isfinite(p->expert_bias[e]))
            return BAD("expert_bias[%d] = %g is not finite", e, (double)p->expert_bias[e]);
    return EPC_OK;
}

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

/* Fills the derived fields and allocates scratch. */
static epc_status_t build(epc_router_t *r, const epc_router_params_t *p, int R, int rpn)
{
    r->hdr.magic = EPC_MAGIC_ROUTER;
    r->E = p->num_experts;
    r->k = p->topk;
    r->R = R;
    r->rpn = rpn;
    r->nodes = R / rpn;
    r->M = p->max_nodes_per_token;
    r->G = p->num_groups;
    r->topk_group = p->max_groups_per_token;
    r->epr = r->E / R;
    r->epn = r->E / r->nodes;
    r->epg = r->G ? r->E / r->G : r->E;
    r->node_gk = p->group_score_topk ? p->group_score_topk : max_int(1, r->M ? r->k / r->M : 1);
    r->group_gk =
        p->group_score_topk ? p->group_score_topk : max_int(1, r->G ? r->k / r->topk_group : 1);
    r->fn = p->score_fn;
    r->normalize = p->normalize != 0;
    r->scale = p->route_scale != 0.0f ? p->route_scale : 1.0f;
    r->scores = malloc((size_t)r->E * sizeof *r->scores);
    r->choice = malloc((size_t)r->E * sizeof *r->choice);
    r->node_ok = malloc((size_t)r->nodes);
    r->group_ok = malloc((size_t)(r->G ? r->G : 1));
    r->block_score = malloc((size_t)max_int(r->nodes, r->G) * sizeof *r->block_score);
    r->top1 = malloc((size_t)max_int(r->nodes, r->G) * sizeof *r->top1);
    r->top2 = malloc((size_t)max_int(r->nodes, r->G) * sizeof *r->top2);
    r->cand_v = malloc((size_t)r->E * sizeof *r->cand_v);
    r->cand_i = malloc((size_t)r->E * sizeof *r->cand_i);
    if (p->expert_bias != NULL && (r->bias = malloc((size_t)r->E * sizeof *r->bias)) != NULL)
        memcpy(r->bias, p->expert_bias, (size_t)r->E * sizeof *r->bias);
    if (!r->scores || !r->choice || !r->node_ok || !r->group_ok || !r->block_score || !r->top1 ||
        !r->top2 || !r->cand_v || !r->cand_i || (p->expert_bias && !r->bias))
        return epc_error(EPC_ERR_NO_MEMORY, "epc_router_create: scratch for %d experts", r->E);
    return EPC_OK;
}

epc_status_t epc_router_create(const epc_router_params_t *params, epc_router_t **router_p)
{
    static const epc_params_layouts_t layouts = {
        "EPC_ROUTER_PARAMS_INIT", sizeof(epc_router_params_t), {0}};
    epc_router_params_t loaded, *p = &loaded;
    epc_router_t *r;
    epc_status_t st;
    int R, rpn;
    if (router_p == NULL)
        return BAD("router_p is NULL");
    if ((st = epc_params_load(p, params, &layouts, NULL, "epc_router_create", "params")) != EPC_OK)
        return st;
    R = p->num_ranks ? p->num_ranks : 1;
    rpn = p->ranks_per_node ? p->ranks_per_node : R;
    if (p->num_ranks < 0 || p->ranks_per_node < 0)
        return BAD("num_ranks = %d, ranks_per_node = %d: must be >= 0", p->num_ranks,
                   p->ranks_per_node);
    if ((st = check_shape(p, R, rpn)) != EPC_OK || (st = check_rest(p)) != EPC_OK)
        return st;
    if ((r = calloc(1, sizeof *r)) == NULL)
        return epc_error(EPC_ERR_NO_MEMORY, "epc_router_create: router object");
    if ((st = build(r, p, R, rpn)) != EPC_OK) {
        epc_router_destroy(r);
        return st;
    }
    *router_p = r;
    return EPC_OK;
}

void epc_router_destroy(epc_router_t *r)
{
    if (r == NULL || r->hdr.magic != EPC_MAGIC_ROUTER)
        return;
    r->hdr.magic = EPC_MAGIC_DEAD;
    free(r->scores);
    free(r->choice);
    free(r->node_ok);
    free(r->group_ok);
    free(r->block_score);
    free(r->top1);
    free(r->top2);
    free(r->cand_v);
    free(r->cand_i);
    free(r->bias);
    free(r->idx_buf);
    free(r->w_buf);
    free(r);
}
