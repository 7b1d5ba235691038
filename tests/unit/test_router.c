/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_router - epc_route against a plainly written reference of the
 * DeepSeek-V3 gate (full sorts, libm expf), on thousands of random tokens in
 * every mode; known answers; the node-limit invariant; determinism; every
 * bad input.
 *
 * The library computes exp with its own vectorised polynomial (relative
 * error < 1e-7), so for softmax/sigmoid a different expert is accepted only
 * at a near-tie of the reference's choice scores (and such cases must stay
 * rare); the identity score has no exp and must match bit for bit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "epcomm.h"

/* ---- reference -------------------------------------------------------- */

typedef struct item {
    float v;
    int i;
} item_t;

/* Descending value, then ascending index. */
static int by_value_desc(const void *a, const void *b)
{
    const item_t *x = a, *y = b;
    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    return x->i - y->i;
}

/* Sum of the top gk allowed choice scores of experts [lo, hi), in
 * descending order; -inf when none is allowed. */
static float ref_block(const float *c, const int *allowed, int lo, int hi, int gk)
{
    item_t it[1024];
    int n = 0;
    float sum = 0;
    for (int e = lo; e < hi; e++)
        if (allowed[e])
            it[n++] = (item_t){c[e], e};
    if (n == 0)
        return -INFINITY;
    qsort(it, (size_t)n, sizeof *it, by_value_desc);
    for (int j = 0; j < gk && j < n; j++)
        sum += it[j].v;
    return sum;
}

/* Keeps only the `keep` best blocks of `size` experts in allowed[]. */
static void ref_limit(const float *c, int *allowed, int E, int size, int keep, int gk)
{
    item_t blocks[1024];
    int nb = E / size, ok[1024] = {0};
    for (int b = 0; b < nb; b++)
        blocks[b] = (item_t){ref_block(c, allowed, b * size, (b + 1) * size, gk), b};
    qsort(blocks, (size_t)nb, sizeof *blocks, by_value_desc);
    for (int j = 0; j < keep; j++)
        ok[blocks[j].i] = 1;
    for (int e = 0; e < E; e++)
        allowed[e] &= ok[e / size];
}

static void ref_scores(epc_score_fn_t fn, const float *x, int E, float *s)
{
    float m = x[0], sum = 0;
    for (int e = 0; e < E; e++) {
        if (fn == EPC_SCORE_SIGMOID)
            s[e] = 1.0f / (1.0f + expf(-x[e]));
        else
            s[e] = x[e];
        m = x[e] > m ? x[e] : m;
    }
    if (fn != EPC_SCORE_SOFTMAX)
        return;
    for (int e = 0; e < E; e++)
        sum += s[e] = expf(x[e] - m);
    for (int e = 0; e < E; e++)
        s[e] /= sum;
}

/* One token through the reference gate; c receives the choice scores. */
static void ref_route(const epc_router_params_t *p, const float *x, int32_t *idx, float *w,
                      float *c)
{
    int E = p->num_experts, k = p->topk, R = p->num_ranks ? p->num_ranks : 1;
    int rpn = p->ranks_per_node ? p->ranks_per_node : R, nodes = R / rpn,
        M = p->max_nodes_per_token;
    int allowed[1024], n = 0;
    float s[1024], sum = 0, scale = p->route_scale ? p->route_scale : 1.0f;
    item_t it[1024];
    ref_scores(p->score_fn, x, E, s);
    for (int e = 0; e < E; e++) {
        c[e] = p->expert_bias ? s[e] + p->expert_bias[e] : s[e];
        allowed[e] = 1;
    }
    if (p->num_groups) {
        int gk = p->group_score_topk
                     ? p->group_score_topk
                     : (k / p->max_groups_per_token > 1 ? k / p->max_groups_per_token : 1);
        ref_limit(c, allowed, E, E / p->num_groups, p->max_groups_per_token, gk);
    }
    if (M && M < nodes) {
        int gk = p->group_score_topk ? p->group_score_topk : (k / M > 1 ? k / M : 1);
        ref_limit(c, allowed, E, E / nodes, M, gk);
    }
    for (int e = 0; e < E; e++)
        if (allowed[e])
            it[n++] = (item_t){c[e], e};
    qsort(it, (size_t)n, sizeof *it, by_value_desc);
    for (int j = 0; j < k; j++) {
        idx[j] = it[j].i;
        w[j] = s[it[j].i];
        sum += w[j];
    }
    for (int j = 0; j < k; j++)
        w[j] = (p->normalize ? w[j] / sum : w[j]) * scale;
}

/* ---- random comparison ------------------------------------------------ */

static uint64_t rng = 88172645463325252ull;
static float frand(float lo, float hi)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return lo + (hi - lo) * (float)((rng >> 11) * (1.0 / 9007199254740992.0));
}

/* Distinct nodes of one token's experts. */
static int nodes_of(const int32_t *idx, int k, int epn)
{
    int seen[1024] = {0}, n = 0;
    for (int j = 0; j < k; j++)
        if (!seen[idx[j] / epn]++)
            n++;
    return n;
}

/* Routes T random tokens both ways; returns the number of near-tie
 * disagreements (fails on any other difference). */
static int compare_random(const epc_router_params_t *p, int T)
{
    int E = p->num_experts, k = p->topk, R = p->num_ranks ? p->num_ranks : 1;
    int rpn = p->ranks_per_node ? p->ranks_per_node : R, epn = E / (R / rpn), ties = 0;
    float *x = malloc((size_t)T * E * sizeof *x), *w = malloc((size_t)T * k * sizeof *w);
    int32_t *idx = malloc((size_t)T * k * sizeof *idx);
    epc_router_t *r = NULL;
    assert_int_equal(epc_router_create(p, &r), EPC_OK);
    for (int i = 0; i < T * E; i++)
        x[i] = frand(-6, 6);
    assert_int_equal(epc_route(r, x, T, idx, w), EPC_OK);
    for (int t = 0; t < T; t++) {
        int32_t ridx[256];
        float rw[256], c[1024];
        const int32_t *li = idx + (size_t)t * k;
        ref_route(p, x + (size_t)t * E, ridx, rw, c);
        if (p->max_nodes_per_token)
            assert_true(nodes_of(li, k, epn) <= p->max_nodes_per_token);
        if (memcmp(ridx, li, (size_t)k * sizeof *li) != 0) {
            assert_int_not_equal(p->score_fn, EPC_SCORE_IDENTITY); /* must be exact */
            for (int j = 0; j < k; j++)
                if (fabsf(c[li[j]] - c[ridx[j]]) > 1e-5f * fmaxf(1.0f, fabsf(c[ridx[j]])))
                    fail_msg("token %d slot %d: expert %d (ref %d), choice %.9g vs %.9g", t, j,
                             li[j], ridx[j], c[li[j]], c[ridx[j]]);
            ties++;
            continue;
        }
        for (int j = 0; j < k; j++) {
            float a = w[(size_t)t * k + j], b = rw[j];
            if (p->score_fn == EPC_SCORE_IDENTITY)
                assert_true(a == b);
            else if (fabsf(a - b) > 2e-6f * fmaxf(1.0f, fabsf(b)))
                fail_msg("token %d slot %d: weight %.9g vs reference %.9g", t, j, a, b);
        }
    }
    epc_router_destroy(r);
    free(x), free(w), free(idx);
    return ties;
}

static void test_random_all_modes(void **state)
{
    static const epc_score_fn_t fns[] = {EPC_SCORE_SOFTMAX, EPC_SCORE_SIGMOID, EPC_SCORE_IDENTITY};
    float bias[256];
    int cases = 0, ties = 0;
    (void)state;
    for (int e = 0; e < 256; e++)
        bias[e] = frand(-0.05f, 0.05f);
    for (int f = 0; f < 3; f++)
        for (int mode = 0; mode < 3; mode++) /* plain, node, group */
            for (int b = 0; b < 2; b++)
                for (int norm = 0; norm < 2; norm++) {
                    epc_router_params_t p = EPC_ROUTER_PARAMS_INIT;
                    p.num_experts = 256, p.topk = 8, p.num_ranks = 64, p.ranks_per_node = 8;
                    p.score_fn = fns[f];
                    p.normalize = norm && fns[f] != EPC_SCORE_IDENTITY;
                    p.route_scale = norm ? 2.5f : 0.0f;
                    if (mode == 1)
                        p.max_nodes_per_token = 4;
                    if (mode == 2)
                        p.num_groups = 16, p.max_groups_per_token = 6;
                    if (b)
                        p.expert_bias = bias, p.expert_bias_len = 256;
                    ties += compare_random(&p, 1000);
                    cases += 1000;
                }
    /* Near-ties happen, but rarely: a systematic error would be frequent. */
    assert_true(ties * 1000 < cases);
    printf("compared %d tokens over 36 modes, %d near-tie disagreements\n", cases, ties);
}

/* Odd shapes: small E, k = E, one node, M = nodes, group_score_topk set. */
static void test_random_shapes(void **state)
{
    static const int shapes[][6] = {
        /* E, k, R, rpn, M, gk */
        {8, 8, 4, 2, 2, 0},  {16, 3, 16, 4, 1, 0}, {64, 6, 8, 8, 0, 0},  {64, 6, 8, 2, 4, 3},
        {60, 5, 6, 2, 3, 1}, {128, 1, 4, 1, 1, 0}, {256, 8, 32, 4, 8, 0}};
    (void)state;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        epc_router_params_t p = EPC_ROUTER_PARAMS_INIT;
        p.num_experts = shapes[i][0], p.topk = shapes[i][1], p.num_ranks = shapes[i][2];
        p.ranks_per_node = shapes[i][3], p.max_nodes_per_token = shapes[i][4];
        p.group_score_topk = shapes[i][5];
        p.score_fn = EPC_SCORE_IDENTITY;
        assert_int_equal(compare_random(&p, 500), 0);
        p.score_fn = EPC_SCORE_SIGMOID;
        p.normalize = 1;
        compare_random(&p, 500);
    }
}

/* ---- known answers ---------------------------------------------------- */

static void route1(const epc_router_params_t *p, const float *x, int32_t *idx, float *w)
{
    epc_router_t *r = NULL;
    assert_int_equal(epc_router_create(p, &r), EPC_OK);
    assert_int_equal(epc_route(r, x, 1, idx, w), EPC_OK);
    epc_router_destroy(r);
}

static void test_known_answers(void **state)
{
    epc_router_params_t p = EPC_ROUTER_PARAMS_INIT;
    const float x[8] = {1, 2, 3, 10, 9, 8, 7, 0};
    const float zero[4] = {0, 0, 0, 0}, bias[4] = {0, 0.1f, 0, 0.2f};
    int32_t idx[8];
    float w[8];
    (void)state;
    /* 2 nodes of 4 experts; identity scores. */
    p.num_experts = 8, p.topk = 2, p.num_ranks = 4, p.ranks_per_node = 2;
    p.score_fn = EPC_SCORE_IDENTITY;
    route1(&p, x, idx, w);
    assert_int_equal(idx[0], 3), assert_int_equal(idx[1], 4); /* 10, 9 */
    /* M = 1: node 0 ranks 10+3 = 13, node 1 ranks 9+8 = 17: node 1 wins. */
    p.max_nodes_per_token = 1;
    route1(&p, x, idx, w);
    assert_int_equal(idx[0], 4), assert_int_equal(idx[1], 5);
    assert_true(w[0] == 9.0f && w[1] == 8.0f);
    p.normalize = 1;
    route1(&p, x, idx, w);
    assert_true(w[0] == 9.0f / 17.0f && w[1] == 8.0f / 17.0f);
    /* group_score_topk = 1 (amax): node 0 (10) beats node 1 (9). */
    p.group_score_topk = 1;
    route1(&p, x, idx, w);
    assert_int_equal(idx[0], 3), assert_int_equal(idx[1], 2);
    /* Sigmoid with bias: the bias picks, the weight is the unbiased score. */
    p = (epc_router_params_t)EPC_ROUTER_PARAMS_INIT;
    p.num_experts = 4, p.topk = 1, p.score_fn = EPC_SCORE_SIGMOID;
    p.expert_bias = bias, p.expert_bias_len = 4, p.route_scale = 2.5f;
    route1(&p, zero, idx, w);
    assert_int_equal(idx[0], 3);
    assert_true(w[0] == 0.5f * 2.5f);
    p.normalize = 1;
    route1(&p, zero, idx, w);
    assert_true(w[0] == 2.5f);
    /* Softmax of four equal logits: 1/4 each; ties go to the lower index. */
    p = (epc_router_params_t)EPC_ROUTER_PARAMS_INIT;
    p.num_experts = 4, p.topk = 3;
    route1(&p, zero, idx, w);
    assert_int_equal(idx[0], 0), assert_int_equal(idx[1], 1), assert_int_equal(idx[2], 2);
    assert_true(fabsf(w[0] - 0.25f) < 1e-7f);
}

static void test_ties_nodes_lower_index(void **state)
{
    epc_router_params_t p = EPC_ROUTER_PARAMS_INIT;
    float x[16];
    int32_t idx[4];
    float w[4];
    (void)state;
    for (int e = 0; e < 16; e++)
        x[e] = 1.0f; /* everything ties */
    p.num_experts = 16, p.topk = 4, p.num_ranks = 4, p.ranks_per_node = 1;
    p.max_nodes_per_token = 2, p.score_fn = EPC_SCORE_IDENTITY;
    route1(&p, x, idx, w);
    for (int j = 0; j < 4; j++)
        assert_int_equal(idx[j], j); /* nodes 0 and 1, experts in order */
}

static void test_determinism_and_zero_tokens(void **state)
{
    epc_router_params_t p = EPC_ROUTER_PARAMS_INIT;
    epc_router_t *r = NULL;
    enum { T = 300 };
    static float x[T * 64], w1[T * 4], w2[T * 4];
    static int32_t i1[T * 4], i2[T * 4];
    (void)state;
    p.num_experts = 64, p.topk = 4, p.num_ranks = 8, p.ranks_per_node = 2;
    p.max_nodes_per_token = 2, p.score_fn = EPC_SCORE_SOFTMAX, p.normalize = 1;
    for (int i = 0; i < T * 64; i++)
        x[i] = frand(-3, 3);
    assert_int_equal(epc_router_create(&p, &r), EPC_OK);
    assert_int_equal(epc_route(r, x, T, i1, w1), EPC_OK);
    assert_int_equal(epc_route(r, x, T, i2, w2), EPC_OK);
    assert_memory_equal(i1, i2, sizeof i1);
    assert_memory_equal(w1, w2, sizeof w1);
    /* Token t alone gives the same answer as within the batch. */
    assert_int_equal(epc_route(r, x + 64 * 123, 1, i2, w2), EPC_OK);
    assert_memory_equal(i2, i1 + 4 * 123, 4 * sizeof *i2);
    assert_int_equal(epc_route(r, NULL, 0, NULL, NULL), EPC_OK);
    epc_router_destroy(r);
    epc_router_destroy(NULL);
}

/* ---- bad input -------------------------------------------------------- */

static void expect_create_error(epc_router_params_t p, const char *field)
{
    epc_router_t *r = (epc_router_t *)0x1;
    if (epc_router_create(&p, &r) != EPC_ERR_INVALID_ARG)
        fail_msg("accepted bad params (expected error naming %s)", field);
    assert_ptr_equal(r, (epc_router_t *)0x1);
    if (strstr(epc_last_error(NULL), field) == NULL)
        fail_msg("message \"%s\" does not name %s", epc_last_error(NULL), field);
}

static void test_bad_params(void **state)
{
    epc_router_params_t base = EPC_ROUTER_PARAMS_INIT, p;
    float bias[8] = {0}, badbias[8] = {0};
    (void)state;
    base.num_experts = 8, base.topk = 2, base.num_ranks = 4, base.ranks_per_node = 2;
    badbias[5] = NAN;
    p = base, p.topk = 9, expect_create_error(p, "topk");
    p = base, p.topk = 0, expect_create_error(p, "topk");
    p = base, p.num_experts = 0, expect_create_error(p, "num_experts");
    p = base, p.num_ranks = 3, p.ranks_per_node = 1, expect_create_error(p, "num_ranks = 3");
    p = base, p.ranks_per_node = 3, expect_create_error(p, "ranks_per_node");
    p = base, p.max_nodes_per_token = 3, expect_create_error(p, "max_nodes_per_token");
    p = base, p.topk = 5, p.max_nodes_per_token = 1, expect_create_error(p, "infeasible");
    p = base, p.num_groups = 3, expect_create_error(p, "num_groups");
    p = base, p.num_groups = 4, p.max_groups_per_token = 5,
    expect_create_error(p, "max_groups_per_token");
    p = base, p.num_groups = 4, p.max_groups_per_token = 0,
    expect_create_error(p, "max_groups_per_token");
    p = base, p.max_groups_per_token = 2, expect_create_error(p, "max_groups_per_token");
    p = base, p.score_fn = (epc_score_fn_t)7, expect_create_error(p, "score_fn");
    p = base, p.route_scale = -1, expect_create_error(p, "route_scale");
    p = base, p.expert_bias = bias, p.expert_bias_len = 7,
    expect_create_error(p, "expert_bias_len");
    p = base, p.expert_bias = badbias, p.expert_bias_len = 8,
    expect_create_error(p, "expert_bias[5]");
    p = base, p.size = 4, expect_create_error(p, "size");
    p = base, p.group_score_topk = -1, expect_create_error(p, "group_score_topk");
    p = base, p.num_groups = 4, p.max_groups_per_token = 2, p.max_nodes_per_token = 1;
    expect_create_error(p, "not both");
    assert_int_equal(epc_router_create(NULL, NULL), EPC_ERR_INVALID_ARG);
}

static void test_bad_logits_write_nothing(void **state)
{
    epc_router_params_t p = EPC_ROUTER_PARAMS_INIT;
    epc_router_t *r = NULL;
    float x[5 * 8], w[5 * 2];
    int32_t idx[5 * 2];
    (void)state;
    p.num_experts = 8, p.topk = 2, p.score_fn = EPC_SCORE_SIGMOID;
    assert_int_equal(epc_router_create(&p, &r), EPC_OK);
    for (int bad = 0; bad < 3; bad++) {
        for (int i = 0; i < 5 * 8; i++)
            x[i] = frand(-1, 1);
        x[3 * 8 + 5] = bad == 0 ? NAN : bad == 1 ? INFINITY : -INFINITY;
        memset(idx, 0x5a, sizeof idx);
        memset(w, 0x5a, sizeof w);
        assert_int_equal(epc_route(r, x, 5, idx, w), EPC_ERR_INVALID_ARG);
        assert_non_null(strstr(epc_last_error(NULL), "token 3"));
        assert_non_null(strstr(epc_last_error(NULL), "expert 5"));
        for (size_t i = 0; i < sizeof idx; i++) /* poison intact: nothing written */
            assert_int_equal(((unsigned char *)idx)[i], 0x5a);
        for (size_t i = 0; i < sizeof w; i++)
            assert_int_equal(((unsigned char *)w)[i], 0x5a);
    }
    assert_int_equal(epc_route(r, x, -1, idx, w), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_route(r, NULL, 1, idx, w), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "logits"));
    assert_int_equal(epc_route(NULL, x, 1, idx, w), EPC_ERR_INVALID_ARG);
    epc_router_destroy(r);
}

static void test_normalize_impossible(void **state)
{
    epc_router_params_t p = EPC_ROUTER_PARAMS_INIT;
    epc_router_t *r = NULL;
    float x[4] = {-1, -2, -3, -4}, w[2] = {7, 7};
    int32_t idx[2] = {7, 7};
    (void)state;
    p.num_experts = 4, p.topk = 2, p.score_fn = EPC_SCORE_IDENTITY, p.normalize = 1;
    assert_int_equal(epc_router_create(&p, &r), EPC_OK);
    assert_int_equal(epc_route(r, x, 1, idx, w), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "normalize"));
    assert_true(idx[0] == 7 && w[0] == 7);
    epc_router_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_all_modes),
        cmocka_unit_test(test_random_shapes),
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_ties_nodes_lower_index),
        cmocka_unit_test(test_determinism_and_zero_tokens),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_bad_logits_write_nothing),
        cmocka_unit_test(test_normalize_impossible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
