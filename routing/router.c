/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * router.c - the gate: scores -> (group limit) -> node limit -> top-k, with
 * the semantics of DeepSeek-V3's reference Gate.forward (group = node).
 * Ties always go to the lower index (experts, nodes and groups alike).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

/* Keeps the n best (value, index) pairs seen, best first; equal values keep
 * their arrival order, so with ascending indices the lower index wins. */
typedef struct topn {
    int n, len;
    float v[EPC_ROUTE_MAX_SELECT];
    int32_t i[EPC_ROUTE_MAX_SELECT];
} topn_t;

static inline void topn_init(topn_t *t, int n)
{
    t->n = n;
    t->len = 0;
}

static inline void topn_push(topn_t *t, float v, int32_t idx)
{
    int j;
    if (t->len == t->n) {
        if (!(v > t->v[t->n - 1]))
            return;
        j = t->n - 1;
    } else {
        j = t->len++;
    }
    for (; j > 0 && v > t->v[j - 1]; j--) {
        t->v[j] = t->v[j - 1];
        t->i[j] = t->i[j - 1];
    }
    t->v[j] = v;
    t->i[j] = idx;
}

/* Sum of the best `gk` choice scores among experts [lo, hi) that are
 * allowed, in descending order (as torch's topk(...).sum()).  -INFINITY if
 * none is allowed. */
static float block_score(const float *c, int lo, int hi, int gk, const uint8_t *allowed_group,
                         int epg)
{
    topn_t t;
    float sum = 0.0f;
    topn_init(&t, gk);
    for (int e = lo; e < hi; e++)
        if (allowed_group == NULL || allowed_group[e / epg])
            topn_push(&t, c[e], e);
    if (t.len == 0)
        return -INFINITY;
    for (int j = 0; j < t.len; j++)
        sum += t.v[j];
    return sum;
}

/* Rank of item i among n: how many come before it (higher value, or equal
 * value and lower position).  Branch-free: for a few node scores this beats
 * insertion, whose branches mispredict (measured with epc_plan --bench). */
static inline int rank_of(const float *v, int n, int i)
{
    int r = 0;
    for (int j = 0; j < n; j++)
        r += (v[j] > v[i]) | ((v[j] == v[i]) & (j < i));
    return r;
}

/* ok[b] = 1 for the `keep` best of `n` block scores (ties: lower index). */
static void keep_best(const float *score, int n, int keep, uint8_t *ok)
{
    topn_t t;
    if (n < 1)
        return;
    if (n <= 64) {
        for (int b = 0; b < n; b++)
            ok[b] = rank_of(score, n, b) < keep;
        return;
    }
    topn_init(&t, keep);
    for (int b = 0; b < n; b++) {
        topn_push(&t, score[b], b);
        ok[b] = 0;
    }
    for (int j = 0; j < t.len; j++)
        ok[t.i[j]] = 1;
}

/* ok[b] = 1 for the `keep` best of `nblocks` blocks of `size` experts,
 * ranked by the sum of their gk best allowed choice scores.  Returns a lower
 * bound of the k-th best choice score among the kept blocks (-inf if none
 * is known): the k-th largest of their two best values. */
static float limit_blocks(epc_router_t *r, const float *c, int nblocks, int size, int keep, int gk,
                          const uint8_t *allowed_group, uint8_t *ok)
{
    topn_t t;
    if (allowed_group != NULL || gk > 2) {
        for (int b = 0; b < nblocks; b++)
            r->block_score[b] = block_score(c, b * size, (b + 1) * size, gk, allowed_group, r->epg);
        keep_best(r->block_score, nblocks, keep, ok);
        return -INFINITY;
    }
    /* The common case, in one vectorised pass. */
    if (nblocks <= 64) {
        float floor;
        return epc_route_select_blocks(c, nblocks, size, gk, keep, r->k, r->block_score, r->top1,
                                       r->top2, ok, &floor)
                   ? floor
                   : -INFINITY;
    }
    epc_route_block_top2(c, nblocks, size, gk, r->block_score, r->top1, r->top2);
    keep_best(r->block_score, nblocks, keep, ok);
    topn_init(&t, r->k);
    for (int b = 0; b < nblocks; b++)
        if (ok[b]) {
            topn_push(&t, r->top1[b], b);
            topn_push(&t, r->top2[b], b);
        }
    return t.len == r->k ? t.v[r->k - 1] : -INFINITY;
}

/* The k best allowed experts into t (best first, ties to the lower index);
 * none below `floor` can be among them. */
static void select_topk(epc_router_t *r, const float *c, const uint8_t *gok, float floor, topn_t *t)
{
    topn_init(t, r->k);
    if (gok == NULL && floor > -INFINITY) {
        /* Few experts reach the floor: find them with a vector compare. */
        int n = epc_route_gather(c, r->nodes, r->epn, r->node_ok, floor, r->cand_v, r->cand_i);
        if (n >= r->k && n <= 64) { /* the usual few: rank them, no branches */
            epc_route_rank_select(r->cand_v, r->cand_i, n, r->k, t->v, t->i);
            t->len = r->k;
            return;
        }
        for (int i = 0; i < n; i++)
            topn_push(t, r->cand_v[i], r->cand_i[i]);
        return;
    }
    for (int node = 0; node < r->nodes; node++) {
        if (!r->node_ok[node])
            continue;
        for (int e = node * r->epn; e < (node + 1) * r->epn; e++) {
            /* Most experts lose to the current k-th best: test that first. */
            if (t->len == r->k && !(c[e] > t->v[r->k - 1]))
                continue;
            if (gok == NULL || gok[e / r->epg])
                topn_push(t, c[e], e);
        }
    }
}

/* Routes one token whose scores/choice are computed.  Returns 0; -1 when
 * normalisation is impossible (selected scores sum to <= 0 or overflow);
 * -2 when a weight overflows. */
static int route_token(epc_router_t *r, int32_t *idx, float *w)
{
    const float *c = r->bias ? r->choice : r->scores;
    const uint8_t *gok = NULL;
    topn_t t;
    float sum = 0.0f, floor = -INFINITY;
    if (r->G > 0) {
        limit_blocks(r, c, r->G, r->epg, r->topk_group, r->group_gk, NULL, r->group_ok);
        gok = r->group_ok;
    }
    if (r->M > 0 && r->M < r->nodes)
        floor = limit_blocks(r, c, r->nodes, r->epn, r->M, r->node_gk, gok, r->node_ok);
    else
        memset(r->node_ok, 1, (size_t)r->nodes);
    select_topk(r, c, gok, floor, &t);
    for (int j = 0; j < r->k; j++) {
        idx[j] = t.i[j];
        w[j] = r->scores[t.i[j]];
        sum += w[j];
    }
    if (r->normalize) {
        if (!(sum > 0.0f) || !isfinite(sum))
            return -1;
        for (int j = 0; j < r->k; j++)
            w[j] /= sum;
    }
    for (int j = 0; j < r->k; j++) {
        w[j] *= r->scale;
        if (!isfinite(w[j])) /* identity scores near FLT_MAX times the scale */
            return -2;
    }
    return 0;
}

/* Grows the output scratch to T tokens. */
static epc_status_t reserve(epc_router_t *r, int T)
{
    int32_t *i;
    float *w;
    if ((size_t)T <= r->buf_tokens)
        return EPC_OK;
    i = realloc(r->idx_buf, (size_t)T * (size_t)r->k * sizeof *i);
    if (i == NULL)
        return epc_error(EPC_ERR_NO_MEMORY, "epc_route: scratch for %d tokens", T);
    r->idx_buf = i;
    w = realloc(r->w_buf, (size_t)T * (size_t)r->k * sizeof *w);
    if (w == NULL)
        return epc_error(EPC_ERR_NO_MEMORY, "epc_route: scratch for %d tokens", T);
    r->w_buf = w;
    r->buf_tokens = (size_t)T;
    return EPC_OK;
}

epc_status_t epc_route(epc_router_t *r, const float *logits, int T, int32_t *topk_idx,
                       float *topk_weights)
{
    epc_status_t st;
    if (r == NULL || r->hdr.magic != EPC_MAGIC_ROUTER)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_route: router is %s",
                         r ? "not a live epc_router_t" : "NULL");
    if (T < 0)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_route: num_tokens = %d < 0", T);
    if (T > 0 && (logits == NULL || topk_idx == NULL || topk_weights == NULL))
        return epc_error(EPC_ERR_INVALID_ARG, "epc_route: %s is NULL",
                         !logits     ? "logits"
                         : !topk_idx ? "topk_idx"
                                     : "topk_weights");
    if (T == 0)
        return EPC_OK;
    if ((st = reserve(r, T)) != EPC_OK)
        return st;
    for (int t = 0; t < T; t++) {
        const float *x = logits + (size_t)t * (size_t)r->E;
        int bad = epc_route_scores(r->fn, x, r->E, r->bias, r->scores, r->choice);
        if (bad >= 0)
            return epc_error(EPC_ERR_INVALID_ARG,
                             "epc_route: logits[token %d][expert %d] = %g is not finite", t, bad,
                             (double)x[bad]);
        int rc = route_token(r, r->idx_buf + (size_t)t * r->k, r->w_buf + (size_t)t * r->k);
        if (rc == -1)
            return epc_error(EPC_ERR_INVALID_ARG,
                             "epc_route: token %d: selected scores do not sum to a positive "
                             "finite number, cannot normalize (score_fn %d)",
                             t, (int)r->fn);
        if (rc == -2)
            return epc_error(EPC_ERR_INVALID_ARG,
                             "epc_route: token %d: a weight overflows (logits too large for "
                             "score_fn %d x route_scale %g)",
                             t, (int)r->fn, (double)r->scale);
    }
    memcpy(topk_idx, r->idx_buf, (size_t)T * (size_t)r->k * sizeof *topk_idx);
    memcpy(topk_weights, r->w_buf, (size_t)T * (size_t)r->k * sizeof *topk_weights);
    return EPC_OK;
}
