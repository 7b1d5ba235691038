/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * fuzz_route - libFuzzer harness for epc_router_create, epc_route and
 * epc_layout.  The input's first bytes choose the router's shape (any
 * combination, valid or not), the rest become logits and raw topk_idx.
 * Invariants checked (abort on violation): a rejected router or input says
 * why; routed tokens name k distinct experts in range on at most M nodes
 * with finite weights; the layout of a routing counts T x k experts; layout
 * of arbitrary indices either succeeds or rejects them, never crashes.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epcomm.h"
#include "fuzz_check.h"

enum { HEADER = 12 };

static void params_from(const uint8_t *d, epc_router_params_t *p, float *bias)
{
    p->num_experts = 1 + d[0] % 64;
    p->topk = d[1] % 17;      /* 0 is invalid on purpose */
    p->num_ranks = d[2] % 17; /* 0 means 1 */
    p->ranks_per_node = d[3] % 9;
    p->max_nodes_per_token = d[4] % 10;
    p->num_groups = d[5] % 10;
    p->max_groups_per_token = d[6] % 10;
    p->group_score_topk = d[7] % 4;
    p->score_fn = (epc_score_fn_t)(d[8] % 4); /* 3 is invalid */
    p->normalize = d[9] & 1;
    p->route_scale = (d[9] & 2) ? 2.5f : 0.0f;
    if (d[9] & 4) {
        for (int e = 0; e < p->num_experts; e++)
            bias[e] = (float)((d[11] + 7 * e) % 17) * 0.01f;
        p->expert_bias = bias;
        p->expert_bias_len = (d[9] & 8) ? p->num_experts - 1 : p->num_experts;
    }
}

/* Checks one routed token against the router's shape. */
static void check_token(const epc_router_params_t *p, const int32_t *idx, const float *w)
{
    int R = p->num_ranks ? p->num_ranks : 1, rpn = p->ranks_per_node ? p->ranks_per_node : R;
    int epn = p->num_experts / (R / rpn), nodes[64] = {0}, distinct = 0;
    for (int j = 0; j < p->topk; j++) {
        CHECK(idx[j] >= 0 && idx[j] < p->num_experts);
        CHECK(isfinite(w[j]));
        for (int i = 0; i < j; i++)
            CHECK(idx[i] != idx[j]);
        distinct += nodes[idx[j] / epn]++ == 0;
    }
    CHECK(p->max_nodes_per_token == 0 || distinct <= p->max_nodes_per_token);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    epc_router_params_t p = EPC_ROUTER_PARAMS_INIT;
    epc_router_t *r = NULL;
    float bias[64], *x;
    int32_t *idx, *raw;
    float *w;
    int T, per_expert[64];
    epc_layout_t lay = {sizeof lay, NULL, NULL, per_expert, NULL, NULL};
    epc_status_t st;
    size_t span;
    if (size <= HEADER)
        return 0;
    params_from(data, &p, bias);
    T = data[10] % 24;
    st = epc_router_create(&p, &r);
    if (st != EPC_OK) {
        CHECK(st == EPC_ERR_INVALID_ARG && r == NULL && epc_last_error(NULL)[0] != '\0');
        return 0;
    }
    x = calloc((size_t)T * p.num_experts + 1, sizeof *x);
    idx = malloc(((size_t)T * p.topk + 1) * sizeof *idx);
    raw = malloc(((size_t)T * p.topk + 1) * sizeof *raw);
    w = malloc(((size_t)T * p.topk + 1) * sizeof *w);
    CHECK(x && idx && raw && w);
    /* Logits and raw indices from the rest of the input, recycled. */
    span = (size - HEADER) & ~(size_t)3; /* whole floats available */
    for (size_t i = 0; i < (size_t)T * p.num_experts && span >= 4; i++)
        memcpy(&x[i], data + HEADER + (i * 4) % span, 4);
    for (size_t i = 0; i < (size_t)T * p.topk; i++)
        raw[i] = (int32_t)data[HEADER + i % (size - HEADER)] % (p.num_experts + 2) - 1;
    st = epc_route(r, x, T, idx, w);
    CHECK(st == EPC_OK || st == EPC_ERR_INVALID_ARG);
    if (st == EPC_OK) {
        long sum = 0;
        for (int t = 0; t < T; t++)
            check_token(&p, idx + (size_t)t * p.topk, w + (size_t)t * p.topk);
        CHECK(epc_layout(r, idx, T, &lay) == EPC_OK);
        for (int e = 0; e < p.num_experts; e++)
            sum += per_expert[e];
        CHECK(sum == (long)T * p.topk);
    }
    st = epc_layout(r, raw, T, &lay);
    CHECK(st == EPC_OK || st == EPC_ERR_INVALID_ARG);
    epc_router_destroy(r);
    free(x), free(idx), free(raw), free(w);
    return 0;
}
