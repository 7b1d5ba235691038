/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_placement_spill - spill replicas without MPI: the co-reach counts
 * against a hand computation and every rejected input, the LIMITED
 * choice's main node (majority, then node block, never a node beyond its
 * experts' main nodes), and epcomm's planner with co-reach: a valid
 * table, spills only where the statistics call for them, the node limit
 * kept under LIMITED, and a busiest rank lower than the plan without.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "epcomm.h"

static unsigned lcg(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* E = 8 over 2 node blocks ([0, 4), [4, 8)). */
static void test_reach_counts(void **state)
{
    const int32_t idx[] = {0, 1, 5, 2, 3, -1, 6, -1, 1, 7, 4, 5};
    double reach[16], want[16] = {0};
    (void)state;
    want[0 * 2 + 1] = 1; /* token 0: 0 and 1 reach block 1 through 5 */
    want[1 * 2 + 1] = 1;
    want[5 * 2 + 0] = 1;
    want[6 * 2 + 0] = 1;  /* token 2: 6 and 1 reach each other's block */
    want[1 * 2 + 1] += 1; /* token 1 (one block) and token 3 (block 1 only): none */
    memset(reach, 0, sizeof reach);
    assert_int_equal(epc_placement_reach(idx, 4, 3, 8, 2, reach), EPC_OK);
    for (int i = 0; i < 16; i++)
        assert_true(reach[i] == want[i]);
    assert_int_equal(epc_placement_reach(idx, 4, 3, 8, 2, reach), EPC_OK); /* adds */
    for (int i = 0; i < 16; i++)
        assert_true(reach[i] == 2 * want[i]);
    assert_int_equal(epc_placement_reach(idx, 0, 3, 8, 2, reach), EPC_OK);
    assert_int_equal(epc_placement_reach(NULL, 0, 3, 8, 1, reach), EPC_OK);
}

static void test_reach_rejects(void **state)
{
    const int32_t idx[] = {0, 1, 5, 2, 9, -1};
    const int32_t twice[] = {0, 1, 5, 2, 2, -1};
    double reach[16];
    (void)state;
    memset(reach, 0, sizeof reach);
    assert_int_equal(epc_placement_reach(idx, 1, 3, 0, 1, reach), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_reach(idx, 1, 3, 8, 0, reach), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_reach(idx, 1, 3, 8, 9, reach), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_reach(idx, 1, 0, 8, 2, reach), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_reach(idx, 1, 9, 8, 2, reach), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_reach(idx, -1, 3, 8, 2, reach), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_reach(NULL, 1, 3, 8, 2, reach), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_reach(idx, 1, 3, 8, 2, NULL), EPC_ERR_INVALID_ARG);
    /* a bad second token: nothing added, not even the first token's */
    assert_int_equal(epc_placement_reach(idx, 2, 3, 8, 2, reach), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_reach(twice, 2, 3, 8, 2, reach), EPC_ERR_INVALID_ARG);
    for (int i = 0; i < 16; i++)
        assert_true(reach[i] == 0);
}

/*
 * E = 4, 4 ranks of 2 slots, 2 nodes: node 0 holds slots 0-3 = experts
 * {0, 1, 0, 2}, node 1 slots 4-7 = {0, 1, 3, 3}.  Main nodes: 0 (two
 * slots against one), 1 (a tie; node 0 holds 3 slots of block 0 =
 * experts {0, 1}, node 1 two), 2 and 3 their only node.
 */
static void test_limited_choice(void **state)
{
    const int32_t table[] = {0, 1, 0, 2, 0, 1, 3, 3};
    const int32_t idx[] = {1, 2, 1, 3, 1, -1, 0, -1, 0, 3, 0, -1, 1, 3};
    int32_t slots[14];
    epc_placement_params_t p = EPC_PLACEMENT_PARAMS_INIT;
    epc_placement_t *pl;
    (void)state;
    p.num_experts = 4, p.num_ranks = 4, p.ranks_per_node = 2, p.num_slots = 8;
    p.slot_expert = table;
    assert_int_equal(epc_placement_create(&p, &pl), EPC_OK);
    assert_int_equal(epc_placement_set_choice(pl, EPC_REPLICA_LIMITED), EPC_OK);
    assert_int_equal(epc_placement_map(pl, idx, 7, 2, 0, slots), EPC_OK);
    assert_int_equal(slots[0], 1); /* 1 with 2: node 0 reached and main */
    assert_int_equal(slots[1], 3); /* 2: its only slot */
    assert_int_equal(slots[2], 5); /* 1 with 3: node 1 reached, slot 5 unused so far */
    assert_true(slots[3] == 6 || slots[3] == 7);
    assert_int_equal(slots[4], 1); /* 1 alone: its main node only */
    assert_int_equal(slots[5], -1);
    assert_true(slots[6] == 0 || slots[6] == 2); /* 0 alone: never node 1 */
    /* 0 with 3: node 1 reached, so slot 4 too; a slot that took nothing */
    assert_true(slots[8] == 4 || slots[8] == 2 - slots[6]);
    assert_true(slots[10] == 0 || slots[10] == 2);
    assert_int_equal(slots[12], 5); /* slots 1 and 5 took 2 and 1: the least-loaded */
    epc_placement_destroy(pl);
}

/* A skewed routing of E = 64 over 16 ranks, 4 nodes, node limit 2: most
 * tokens pick node block 0's experts. */
static void route_skewed(int32_t *idx, int T, int K)
{
    enum { E = 64, R = 16, RPN = 4 };
    epc_router_params_t rp = EPC_ROUTER_PARAMS_INIT;
    epc_router_t *router;
    float *logits = malloc((size_t)T * E * sizeof *logits), *w = malloc((size_t)T * K * 4);
    unsigned seed = 5;
    rp.num_experts = E, rp.topk = K, rp.num_ranks = R, rp.ranks_per_node = RPN;
    rp.max_nodes_per_token = 2;
    assert_int_equal(epc_router_create(&rp, &router), EPC_OK);
    for (int i = 0; i < T * E; i++)
        logits[i] = (float)(lcg(&seed) % 1000) / 250.0f - 1.5f * logf(1.0f + (float)(i % E));
    assert_int_equal(epc_route(router, logits, T, idx, w), EPC_OK);
    epc_router_destroy(router);
    free(logits);
    free(w);
}

static epc_placement_t *plan(const double *load, const double *reach, epc_placement_algo_t algo)
{
    epc_placement_plan_params_t p = EPC_PLACEMENT_PLAN_PARAMS_INIT;
    epc_placement_t *pl = NULL;
    p.num_experts = 64, p.num_ranks = 16, p.ranks_per_node = 4, p.num_slots = 64 + 16;
    p.expert_load = load, p.algo = algo, p.expert_reach = reach;
    assert_int_equal(epc_placement_plan(&p, &pl), EPC_OK);
    return pl;
}

/* The busiest rank's mapped rows over the mean, under LIMITED; checks
 * every token stays within 2 nodes and every expert keeps a slot. */
static double mapped_imbalance(epc_placement_t *pl, const int32_t *idx, int T, int K)
{
    int32_t *slots = malloc((size_t)T * K * sizeof *slots), rep[80], n;
    double rows[16] = {0}, mx = 0;
    for (int e = 0; e < 64; e++) {
        assert_int_equal(epc_placement_replicas(pl, e, rep, 80, &n), EPC_OK);
        assert_true(n >= 1);
    }
    assert_int_equal(epc_placement_set_choice(pl, EPC_REPLICA_LIMITED), EPC_OK);
    assert_int_equal(epc_placement_map(pl, idx, T, K, 0, slots), EPC_OK);
    for (int t = 0; t < T; t++) {
        int seen[4] = {0}, nodes = 0;
        for (int j = 0; j < K; j++) {
            int r = slots[t * K + j] / 5, node = r / 4;
            rows[r] += 1;
            nodes += !seen[node];
            seen[node] = 1;
        }
        assert_true(nodes <= 2);
    }
    for (int r = 0; r < 16; r++)
        mx = rows[r] > mx ? rows[r] : mx;
    free(slots);
    return mx / ((double)T * K / 16);
}

/* Nodes holding slots of expert e. */
static int nodes_of(const epc_placement_t *pl, int e)
{
    int32_t s[80];
    int n, seen[4] = {0}, c = 0;
    assert_int_equal(epc_placement_replicas(pl, e, s, 80, &n), EPC_OK);
    for (int i = 0; i < n; i++) {
        c += !seen[s[i] / 5 / 4];
        seen[s[i] / 5 / 4] = 1;
    }
    return c;
}

/* T skewed tokens of K experts routed into idx, their load per expert
 * added to load and their co-reach over 4 nodes to reach. */
static void routed_load(int32_t *idx, int T, int K, double *load, double *reach)
{
    route_skewed(idx, T, K);
    for (int i = 0; i < T * K; i++)
        load[idx[i]] += 1;
    assert_int_equal(epc_placement_reach(idx, T, K, 64, 4, reach), EPC_OK);
}

static void test_plan_spill(void **state)
{
    enum { T = 2000, K = 6 };
    int32_t *idx = malloc((size_t)T * K * sizeof *idx);
    double load[64] = {0}, *reach = calloc(64 * 4, sizeof *reach), bad;
    epc_placement_t *plain, *spill, *eplb, *eplb_reach;
    int32_t a[80], b[80];
    int spilled = 0;
    (void)state;
    routed_load(idx, T, K, load, reach);
    plain = plan(load, NULL, EPC_PLACEMENT_BALANCED);
    spill = plan(load, reach, EPC_PLACEMENT_BALANCED);
    for (int e = 0; e < 64; e++) {
        assert_true(nodes_of(plain, e) == 1);
        spilled += nodes_of(spill, e) > 1;
    }
    assert_true(spilled > 0);
    assert_true(mapped_imbalance(spill, idx, T, K) < 0.95 * mapped_imbalance(plain, idx, T, K));
    /* EPLB, the reference, takes no co-reach */
    eplb = plan(load, NULL, EPC_PLACEMENT_EPLB);
    eplb_reach = plan(load, reach, EPC_PLACEMENT_EPLB);
    assert_int_equal(epc_placement_table(eplb, a, 80), EPC_OK);
    assert_int_equal(epc_placement_table(eplb_reach, b, 80), EPC_OK);
    assert_memory_equal(a, b, sizeof a);
    /* no co-reach at all: nothing to spill, the plain plan */
    memset(reach, 0, 64 * 4 * sizeof *reach);
    epc_placement_destroy(spill);
    spill = plan(load, reach, EPC_PLACEMENT_BALANCED);
    assert_int_equal(epc_placement_table(plain, a, 80), EPC_OK);
    assert_int_equal(epc_placement_table(spill, b, 80), EPC_OK);
    assert_memory_equal(a, b, sizeof a);
    bad = reach[7];
    reach[7] = -1;
    {
        epc_placement_plan_params_t p = EPC_PLACEMENT_PLAN_PARAMS_INIT;
        epc_placement_t *pl = NULL;
        p.num_experts = 64, p.num_ranks = 16, p.ranks_per_node = 4, p.expert_load = load;
        p.expert_reach = reach;
        assert_int_equal(epc_placement_plan(&p, &pl), EPC_ERR_INVALID_ARG);
        assert_null(pl);
        reach[7] = NAN;
        assert_int_equal(epc_placement_plan(&p, &pl), EPC_ERR_INVALID_ARG);
    }
    reach[7] = bad;
    {
        /* 0.7's layout (ending before expert_reach): accepted, no spills */
        epc_placement_plan_params_t p = EPC_PLACEMENT_PLAN_PARAMS_INIT;
        epc_placement_t *pl = NULL;
        p.size = offsetof(epc_placement_plan_params_t, expert_reach);
        p.num_experts = 64, p.num_ranks = 16, p.ranks_per_node = 4, p.num_slots = 80;
        p.expert_load = load;
        p.expert_reach = (const double *)&bad; /* past the caller's size: never read */
        assert_int_equal(epc_placement_plan(&p, &pl), EPC_OK);
        assert_int_equal(epc_placement_table(pl, b, 80), EPC_OK);
        assert_memory_equal(a, b, sizeof a);
        epc_placement_destroy(pl);
    }
    epc_placement_destroy(plain);
    epc_placement_destroy(spill);
    epc_placement_destroy(eplb);
    epc_placement_destroy(eplb_reach);
    free(idx);
    free(reach);
}

static int choice_of(const epc_placement_t *pl)
{
    epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
    assert_int_equal(epc_placement_info(pl, &info), EPC_OK);
    return info.choice;
}

/* A plan that keeps spills comes with LIMITED set (its map without a
 * set_choice is LIMITED's); plans without spills, and tables created from
 * the spill plan's, start at NEAR; 0.8's info layout is still filled. */
static void test_plan_choice(void **state)
{
    enum { T = 2000, K = 6 };
    int32_t *idx = malloc((size_t)T * K * sizeof *idx), table[80];
    int32_t *got = malloc((size_t)T * K * sizeof *got),
            *want = malloc((size_t)T * K * sizeof *want);
    double load[64] = {0}, *reach = calloc(64 * 4, sizeof *reach);
    epc_placement_params_t cp = EPC_PLACEMENT_PARAMS_INIT;
    epc_placement_info_t old = {0};
    epc_placement_t *spill, *plain, *eplb, *copy = NULL;
    (void)state;
    routed_load(idx, T, K, load, reach);
    spill = plan(load, reach, EPC_PLACEMENT_BALANCED);
    plain = plan(load, NULL, EPC_PLACEMENT_BALANCED);
    eplb = plan(load, reach, EPC_PLACEMENT_EPLB);
    assert_int_equal(choice_of(spill), EPC_REPLICA_LIMITED);
    assert_int_equal(choice_of(plain), EPC_REPLICA_NEAR);
    assert_int_equal(choice_of(eplb), EPC_REPLICA_NEAR);
    assert_int_equal(epc_placement_map(spill, idx, T, K, 0, got), EPC_OK);
    assert_int_equal(epc_placement_set_choice(spill, EPC_REPLICA_NEAR), EPC_OK);
    assert_int_equal(choice_of(spill), EPC_REPLICA_NEAR);
    assert_int_equal(epc_placement_set_choice(spill, EPC_REPLICA_LIMITED), EPC_OK);
    assert_int_equal(epc_placement_map(spill, idx, T, K, 0, want), EPC_OK);
    assert_memory_equal(got, want, (size_t)T * K * sizeof *got);
    /* the same table through epc_placement_create: NEAR, as every table */
    assert_int_equal(epc_placement_table(spill, table, 80), EPC_OK);
    cp.num_experts = 64, cp.num_ranks = 16, cp.ranks_per_node = 4, cp.num_slots = 80;
    cp.slot_expert = table;
    assert_int_equal(epc_placement_create(&cp, &copy), EPC_OK);
    assert_int_equal(choice_of(copy), EPC_REPLICA_NEAR);
    /* 0.8's layout ends before choice: filled up to there, nothing past */
    memset(&old, 0x5a, sizeof old);
    old.size = offsetof(epc_placement_info_t, choice);
    assert_int_equal(epc_placement_info(spill, &old), EPC_OK);
    assert_int_equal(old.num_slots, 80);
    assert_int_equal(old.choice, 0x5a5a5a5a);
    epc_placement_destroy(copy);
    epc_placement_destroy(eplb);
    epc_placement_destroy(plain);
    epc_placement_destroy(spill);
    free(idx), free(got), free(want), free(reach);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reach_counts),   cmocka_unit_test(test_reach_rejects),
        cmocka_unit_test(test_limited_choice), cmocka_unit_test(test_plan_spill),
        cmocka_unit_test(test_plan_choice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
