/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_layout - dispatch layout against a plainly computed reference, route
 * statistics and the cost model on hand-worked answers, the recommended node
 * limit, hardware profiles, and every bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "epcomm.h"

static uint64_t rng = 0x1234567887654321ull;
static int irand(int n)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (int)(rng % (uint64_t)n);
}

static epc_router_t *router(int E, int k, int R, int rpn)
{
    epc_router_params_t p = EPC_ROUTER_PARAMS_INIT;
    epc_router_t *r = NULL;
    p.num_experts = E, p.topk = k, p.num_ranks = R, p.ranks_per_node = rpn;
    assert_int_equal(epc_router_create(&p, &r), EPC_OK);
    return r;
}

/* Random tokens: k distinct experts each, some slots -1. */
static void random_idx(int E, int k, int T, int32_t *idx)
{
    for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            int e, dup;
            do {
                e = irand(5) == 0 ? -1 : irand(E);
                dup = 0;
                for (int i = 0; i < j && e >= 0; i++)
                    dup |= idx[t * k + i] == e;
            } while (dup);
            idx[t * k + j] = e;
        }
}

static void test_layout_matches_reference(void **state)
{
    enum { E = 64, K = 6, R = 16, RPN = 4, N = R / RPN, T = 500 };
    static int32_t idx[T * K];
    static uint8_t in_rank[T * R], in_node[T * N], ref_in_rank[T * R], ref_in_node[T * N];
    int per_rank[R], per_node[N], per_expert[E], ref_rank[R] = {0}, ref_node[N] = {0},
                                                 ref_expert[E] = {0};
    epc_router_t *r = router(E, K, R, RPN);
    epc_layout_t lay = {sizeof lay, per_rank, per_node, per_expert, in_rank, in_node};
    (void)state;
    random_idx(E, K, T, idx);
    memset(ref_in_rank, 0, sizeof ref_in_rank);
    memset(ref_in_node, 0, sizeof ref_in_node);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < K; j++) {
            int e = idx[t * K + j];
            if (e < 0)
                continue;
            ref_expert[e]++;
            ref_in_rank[t * R + e / (E / R)] = 1;
            ref_in_node[t * N + e / (E / N)] = 1;
        }
    for (int t = 0; t < T; t++) {
        for (int d = 0; d < R; d++)
            ref_rank[d] += ref_in_rank[t * R + d];
        for (int n = 0; n < N; n++)
            ref_node[n] += ref_in_node[t * N + n];
    }
    memset(in_rank, 0x77, sizeof in_rank); /* poison: every byte must be written */
    memset(per_rank, 0x77, sizeof per_rank);
    assert_int_equal(epc_layout(r, idx, T, &lay), EPC_OK);
    assert_memory_equal(per_rank, ref_rank, sizeof per_rank);
    assert_memory_equal(per_node, ref_node, sizeof per_node);
    assert_memory_equal(per_expert, ref_expert, sizeof per_expert);
    assert_memory_equal(in_rank, ref_in_rank, sizeof in_rank);
    assert_memory_equal(in_node, ref_in_node, sizeof in_node);
    /* Outputs left NULL are skipped. */
    memset(&lay, 0, sizeof lay);
    lay.size = sizeof lay;
    lay.tokens_per_node = per_node;
    assert_int_equal(epc_layout(r, idx, T, &lay), EPC_OK);
    assert_memory_equal(per_node, ref_node, sizeof per_node);
    epc_router_destroy(r);
}

static void test_layout_bad_entries_write_nothing(void **state)
{
    static const struct {
        int32_t v[3];
        const char *want;
    } bad[] = {{{0, 8, 1}, "= 8 is outside"},
               {{0, -2, 1}, "= -2 is outside"},
               {{3, 5, 3}, "expert 3 twice"}};
    int32_t idx[2 * 3] = {0, 1, 2};
    int per_rank[4];
    epc_router_t *r = router(8, 3, 4, 2);
    epc_layout_t lay = {sizeof lay, per_rank, NULL, NULL, NULL, NULL};
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(idx + 3, bad[i].v, sizeof bad[i].v);
        memset(per_rank, 0x5a, sizeof per_rank);
        assert_int_equal(epc_layout(r, idx, 2, &lay), EPC_ERR_INVALID_ARG);
        assert_non_null(strstr(epc_last_error(NULL), "token 1"));
        assert_non_null(strstr(epc_last_error(NULL), bad[i].want));
        for (size_t b = 0; b < sizeof per_rank; b++)
            assert_int_equal(((unsigned char *)per_rank)[b], 0x5a);
    }
    assert_int_equal(epc_layout(r, NULL, 2, &lay), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_layout(r, idx, -1, &lay), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_layout(NULL, idx, 1, &lay), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_layout(r, idx, 1, NULL), EPC_ERR_INVALID_ARG);
    epc_router_destroy(r);
}

/* E=8 over 4 ranks (2 experts each), 2 nodes of 2 ranks, source rank 0:
 * A -> experts 0,1 (rank 0); B -> 2,4,6 (ranks 1,2,3); C -> nothing. */
static void test_stats_known_answer(void **state)
{
    const int32_t idx[] = {0, 1, -1, 2, 4, 6, -1, -1, -1};
    epc_route_stats_t s = EPC_ROUTE_STATS_INIT;
    epc_router_t *r = router(8, 3, 4, 2);
    (void)state;
    assert_int_equal(epc_route_stats(r, idx, 3, 0, 100.0, &s), EPC_OK);
    assert_int_equal(s.num_tokens, 2);
    assert_true(s.mean_ranks_per_token == 2.0 && s.max_ranks_per_token == 3);
    assert_true(s.mean_nodes_per_token == 1.5 && s.max_nodes_per_token == 2);
    assert_true(s.expert_load_imbalance == 1.6);     /* 1 / (5/8) */
    assert_true(s.rank_load_imbalance == 1.0);       /* one token each */
    assert_true(s.node_load_imbalance == 2.0 / 1.5); /* node 0: A and B */
    assert_true(s.flat_inter_bytes == 200 && s.flat_intra_bytes == 200);
    assert_true(s.hier_inter_bytes == 100 && s.hier_intra_bytes == 400);
    /* From rank 2 (node 1): A is remote, B has two local ranks. */
    assert_int_equal(epc_route_stats(r, idx, 3, 2, 100.0, &s), EPC_OK);
    assert_true(s.flat_inter_bytes == 200 && s.flat_intra_bytes == 200);
    assert_true(s.hier_inter_bytes == 200);
    assert_int_equal(epc_route_stats(r, idx, 3, 4, 100.0, &s), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "src_rank = 4"));
    assert_int_equal(epc_route_stats(r, idx, 3, 0, -1.0, &s), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_route_stats(r, idx, 3, 0, 1.0, NULL), EPC_ERR_INVALID_ARG);
    epc_router_destroy(r);
}

static void test_cost_known_answer(void **state)
{
    int tpr[16] = {0}, tpn[8] = {0};
    epc_cost_params_t p = EPC_COST_PARAMS_INIT;
    epc_cost_t c = EPC_COST_INIT;
    (void)state;
    /* Rank 0 sends the same 10 tokens to ranks 2 and 3 (node 1). */
    tpr[0 * 4 + 2] = 10, tpr[0 * 4 + 3] = 10, tpn[0 * 2 + 1] = 10;
    p.num_ranks = 4, p.ranks_per_node = 2, p.row_bytes = 1000;
    p.intra_bw_gbs = 10, p.inter_bw_gbs = 1, p.tokens_per_rank = tpr, p.tokens_per_node = tpn;
    assert_int_equal(epc_cost_model(&p, &c), EPC_OK);
    /* flat: 20 rows over the network from rank 0: 20 kB at 1 GB/s. */
    assert_true(c.flat_dispatch_us == 20.0 && c.flat_max_inter_bytes == 20000);
    /* hier: 10 rows to forwarder rank 2 (10 us), which copies 20 rows
     * inside node 1 (20 kB at 10 GB/s = 2 us). */
    assert_true(c.hier_dispatch_us == 10.0 && c.hier_max_inter_bytes == 10000);
    assert_true(c.hier_max_intra_bytes == 20000);
    assert_true(c.flat_combine_us == c.flat_dispatch_us && c.hier_combine_us == c.hier_dispatch_us);
    /* Smaller rows out (as FP8's), larger back (as fp32 partial sums):
     * combine's times scale with its own row; the bytes reported stay
     * dispatch's. */
    p.row_bytes = 500, p.combine_row_bytes = 2000;
    assert_int_equal(epc_cost_model(&p, &c), EPC_OK);
    assert_true(c.flat_dispatch_us == 10.0 && c.flat_combine_us == 40.0);
    assert_true(c.hier_dispatch_us == 5.0 && c.hier_combine_us == 20.0);
    assert_true(c.hier_max_inter_bytes == 5000);
    p.row_bytes = 1000, p.combine_row_bytes = 0;
    /* A slow intra-node fabric makes the fan-out the bottleneck. */
    p.intra_bw_gbs = 0.5;
    assert_int_equal(epc_cost_model(&p, &c), EPC_OK);
    assert_true(c.hier_dispatch_us == 40.0);
}

/* The low-latency mode on a hand-worked answer, its bad inputs, and
 * DeepEP's published low-latency table (H800 + CX7 400 Gb/s, 128 tokens
 * per rank, hidden 7168, top-8 of 256 experts, FP8 dispatch, BF16
 * combine) reproduced within 20% on every row with the h800 profile's
 * bandwidths and the default fixed term. */
static void test_cost_low_latency(void **state)
{
    static const struct {
        int ep;
        double dispatch_us, combine_us;
    } deepep[] = {{8, 77, 114},   {16, 118, 195},  {32, 155, 273},
                  {64, 173, 314}, {128, 192, 369}, {256, 194, 360}};
    int tpr[16] = {0}, tpn[8] = {0}, rpr[16] = {0};
    epc_cost_params_t p = EPC_COST_PARAMS_INIT;
    epc_cost_t c = EPC_COST_INIT;
    (void)state;
    p.num_ranks = 4, p.ranks_per_node = 2, p.row_bytes = 1000;
    p.intra_bw_gbs = 10, p.inter_bw_gbs = 1, p.tokens_per_rank = tpr, p.tokens_per_node = tpn;
    assert_int_equal(epc_cost_model(&p, &c), EPC_OK);
    assert_true(c.ll_dispatch_us == -1 && c.ll_combine_us == -1); /* none asked */
    /* rank 0: 30 rows to rank 2 (other node), 50 to rank 1 (same node) */
    rpr[0 * 4 + 2] = 30, rpr[0 * 4 + 1] = 50, p.rows_per_rank = rpr, p.ll_latency_us = 4;
    assert_int_equal(epc_cost_model(&p, &c), EPC_OK);
    /* 30 kB at 1 GB/s beside 50 kB at 10 GB/s, plus the 4 us */
    assert_true(c.ll_dispatch_us == 34.0 && c.ll_max_inter_bytes == 30000);
    assert_true(c.ll_max_intra_bytes == 50000 && c.ll_combine_us == 34.0);
    p.ll_latency_us = -1;
    assert_int_equal(epc_cost_model(&p, &c), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "ll_latency_us"));
    p.ll_latency_us = 0, rpr[3] = -2;
    assert_int_equal(epc_cost_model(&p, &c), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "rows_per_rank[3]"));
    for (size_t i = 0; i < sizeof deepep / sizeof deepep[0]; i++) {
        int R = deepep[i].ep, nodes = R / 8;
        int *t = malloc((size_t)R * R * sizeof *t), *n = malloc((size_t)R * nodes * sizeof *n);
        epc_cost_params_t q = EPC_COST_PARAMS_INIT;
        double d, cb;
        assert_non_null(t), assert_non_null(n);
        for (int x = 0; x < R * R; x++)
            t[x] = 128 * 8 / R; /* each token's 8 rows spread evenly */
        for (int x = 0; x < R * nodes; x++)
            n[x] = 128;
        q.num_ranks = R, q.ranks_per_node = 8, q.row_bytes = 7168 + 7168 / 128 * 4;
        q.combine_row_bytes = 7168 * 2, q.intra_bw_gbs = 160, q.inter_bw_gbs = 50;
        q.tokens_per_rank = t, q.tokens_per_node = n, q.rows_per_rank = t;
        assert_int_equal(epc_cost_model(&q, &c), EPC_OK);
        d = c.ll_dispatch_us / deepep[i].dispatch_us, cb = c.ll_combine_us / deepep[i].combine_us;
        print_message("EP%d: dispatch %.1f us (DeepEP %.0f, %.2fx), combine %.1f us (DeepEP %.0f, "
                      "%.2fx)\n",
                      R, c.ll_dispatch_us, deepep[i].dispatch_us, d, c.ll_combine_us,
                      deepep[i].combine_us, cb);
        assert_true(d > 0.8 && d < 1.2 && cb > 0.8 && cb < 1.2);
        free(t), free(n);
    }
}

static void test_cost_bad_params(void **state)
{
    int tpr[16] = {0}, tpn[8] = {0};
    epc_cost_params_t p = EPC_COST_PARAMS_INIT, q;
    epc_cost_t c = EPC_COST_INIT;
    (void)state;
    p.num_ranks = 4, p.ranks_per_node = 2, p.row_bytes = 1000;
    p.intra_bw_gbs = 10, p.inter_bw_gbs = 1, p.tokens_per_rank = tpr, p.tokens_per_node = tpn;
    q = p, q.ranks_per_node = 3;
    assert_int_equal(epc_cost_model(&q, &c), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "ranks_per_node = 3"));
    q = p, q.inter_bw_gbs = 0;
    assert_int_equal(epc_cost_model(&q, &c), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "inter_bw_gbs"));
    q = p, q.tokens_per_node = NULL;
    assert_int_equal(epc_cost_model(&q, &c), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "tokens_per_node"));
    q = p, q.combine_row_bytes = -1;
    assert_int_equal(epc_cost_model(&q, &c), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "combine_row_bytes"));
    /* 0.3's layout (without combine_row_bytes) is still accepted */
    q = p, q.size = offsetof(epc_cost_params_t, combine_row_bytes);
    assert_int_equal(epc_cost_model(&q, &c), EPC_OK);
    q = p, q.row_bytes = -1;
    assert_int_equal(epc_cost_model(&q, &c), EPC_ERR_INVALID_ARG);
    q = p, q.size = 3;
    assert_int_equal(epc_cost_model(&q, &c), EPC_ERR_INVALID_ARG);
    tpr[5] = -1;
    assert_int_equal(epc_cost_model(&p, &c), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "tokens_per_rank[5] = -1"));
    assert_int_equal(epc_cost_model(&p, NULL), EPC_ERR_INVALID_ARG);
}

/* The node limit; -1 when refused, -2 when refused but the output was
 * written anyway. */
static int node_limit(int k, int nodes, double intra, double inter)
{
    int m = -1;
    if (epc_recommend_node_limit(k, nodes, intra, inter, &m) == EPC_OK)
        return m;
    return m == -1 ? -1 : -2;
}

static void test_recommend_node_limit(void **state)
{
    (void)state;
    assert_int_equal(node_limit(8, 8, 160, 50), 3); /* 8/3 <= 3.2 */
    assert_int_equal(node_limit(8, 8, 450, 50), 1);
    assert_int_equal(node_limit(8, 8, 100, 50), 4);  /* exactly 2 */
    assert_int_equal(node_limit(8, 2, 20, 12.5), 2); /* capped by nodes */
    assert_int_equal(node_limit(6, 16, 1, 100), 6);  /* capped by k */
    assert_int_equal(node_limit(1, 4, 1, 100), 1);   /* one expert: one node */
    assert_int_equal(node_limit(0, 8, 160, 50), -1);
    assert_non_null(strstr(epc_last_error(NULL), "topk = 0"));
    assert_int_equal(node_limit(8, 8, 160, 0), -1);
    assert_non_null(strstr(epc_last_error(NULL), "inter_bw_gbs"));
}

/* An output struct of unknown size (0: not initialised with its macro; one
 * larger: a newer header's) is refused naming the argument and the macro,
 * and nothing of it is written. */
static void expect_size_refused(epc_status_t st, const char *arg, const char *init,
                                const unsigned char *out, size_t len)
{
    char want[64];
    assert_int_equal(st, EPC_ERR_INVALID_ARG);
    snprintf(want, sizeof want, "%s->size", arg);
    assert_non_null(strstr(epc_last_error(NULL), want));
    assert_non_null(strstr(epc_last_error(NULL), init));
    for (size_t b = sizeof(size_t); b < len; b++)
        assert_int_equal(out[b], 0x5a);
}

static void test_output_sizes(void **state)
{
    const int32_t idx[] = {0, 1, -1, 2, 4, 6};
    int tpr[16] = {0}, tpn[8] = {0}, per_rank[4];
    epc_cost_params_t p = EPC_COST_PARAMS_INIT;
    epc_router_t *r = router(8, 3, 4, 2);
    epc_route_stats_t s;
    epc_cost_t c;
    epc_layout_t lay = EPC_LAYOUT_INIT;
    epc_config_var_t v;
    (void)state;
    p.num_ranks = 4, p.ranks_per_node = 2, p.row_bytes = 1000;
    p.intra_bw_gbs = 10, p.inter_bw_gbs = 1, p.tokens_per_rank = tpr, p.tokens_per_node = tpn;
    for (int i = 0; i < 2; i++) {
        size_t extra = i == 0 ? 0 : 1; /* 0, or one past the current layout */
        memset(&s, 0x5a, sizeof s), memset(&c, 0x5a, sizeof c), memset(&v, 0x5a, sizeof v);
        s.size = extra ? sizeof s + extra : 0, c.size = extra ? sizeof c + extra : 0;
        v.size = extra ? sizeof v + extra : 0;
        expect_size_refused(epc_route_stats(r, idx, 2, 0, 1.0, &s), "stats", "EPC_ROUTE_STATS_INIT",
                            (unsigned char *)&s, sizeof s);
        expect_size_refused(epc_cost_model(&p, &c), "cost", "EPC_COST_INIT", (unsigned char *)&c,
                            sizeof c);
        expect_size_refused(epc_config_get_var(0, &v), "var", "EPC_CONFIG_VAR_INIT",
                            (unsigned char *)&v, sizeof v);
        memset(per_rank, 0x5a, sizeof per_rank);
        lay.size = extra ? sizeof lay + extra : 0, lay.tokens_per_rank = per_rank;
        expect_size_refused(epc_layout(r, idx, 2, &lay), "out", "EPC_LAYOUT_INIT",
                            (unsigned char *)per_rank, sizeof per_rank);
    }
    /* With its macro's size each is accepted, and the size is left as set. */
    s.size = sizeof s, c.size = sizeof c, v.size = sizeof v, lay.size = sizeof lay;
    assert_int_equal(epc_route_stats(r, idx, 2, 0, 1.0, &s), EPC_OK);
    assert_true(s.size == sizeof s && s.num_tokens == 2);
    assert_int_equal(epc_cost_model(&p, &c), EPC_OK);
    assert_true(c.size == sizeof c && c.flat_dispatch_us == 0.0);
    assert_int_equal(epc_config_get_var(0, &v), EPC_OK);
    assert_true(v.size == sizeof v && v.name != NULL && !strncmp(v.name, "EPC_", 4));
    assert_int_equal(epc_layout(r, idx, 2, &lay), EPC_OK);
    assert_true(per_rank[0] == 1 && per_rank[1] == 1 && per_rank[2] == 1 && per_rank[3] == 1);
    epc_router_destroy(r);
}

/* The profile table and EPC_HW_PROFILE's choices must agree. */
static void test_profiles(void **state)
{
    static const struct {
        const char *name;
        double intra, inter;
    } want[] = {
        {"h800", 160, 50}, {"h100-ib", 450, 50}, {"gb200-nvl72", 900, 50}, {"cpu-eth", 20, 12.5}};
    char allowed[256] = "";
    double a, b;
    (void)state;
    for (int i = 0; i < epc_config_count(); i++) {
        epc_config_var_t v = EPC_CONFIG_VAR_INIT;
        assert_int_equal(epc_config_get_var(i, &v), EPC_OK);
        if (!strcmp(v.name, "EPC_HW_PROFILE"))
            snprintf(allowed, sizeof allowed, "%s", v.allowed);
    }
    assert_string_equal(allowed, "h800|h100-ib|gb200-nvl72|cpu-eth");
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(epc_hw_profile(want[i].name, &a, &b), EPC_OK);
        assert_true(a == want[i].intra && b == want[i].inter);
    }
    assert_int_equal(epc_hw_profile("a100", &a, &b), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "a100"));
    assert_int_equal(epc_hw_profile(NULL, &a, &b), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_hw_profile("h800", NULL, &b), EPC_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_matches_reference),
        cmocka_unit_test(test_layout_bad_entries_write_nothing),
        cmocka_unit_test(test_stats_known_answer),
        cmocka_unit_test(test_cost_known_answer),
        cmocka_unit_test(test_cost_bad_params),
        cmocka_unit_test(test_cost_low_latency),
        cmocka_unit_test(test_output_sizes),
        cmocka_unit_test(test_recommend_node_limit),
        cmocka_unit_test(test_profiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
