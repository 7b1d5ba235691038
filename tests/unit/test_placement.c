/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_placement - expert placement without MPI: the table's validation and
 * queries, the replica choice (determinism, spread, node preference, the
 * node limit), the load a placement implies against a hand computation,
 * the planners (DeepSeek's EPLB against its published example; epcomm's
 * never worse and usually better on skewed loads; every output a valid
 * table), and the weight moves between two placements and their rounds.
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

#include "coll.h"
#include "epcomm.h"

static unsigned lcg(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static epc_placement_t *make(int E, int R, int rpn, int S, const int32_t *table)
{
    epc_placement_params_t p = EPC_PLACEMENT_PARAMS_INIT;
    epc_placement_t *pl = NULL;
    p.num_experts = E;
    p.num_ranks = R;
    p.ranks_per_node = rpn;
    p.num_slots = S;
    p.slot_expert = table;
    assert_int_equal(epc_placement_create(&p, &pl), EPC_OK);
    return pl;
}

static epc_placement_t *plan(const double *load, int E, int R, int rpn, int S, int G,
                             epc_placement_algo_t algo)
{
    epc_placement_plan_params_t p = EPC_PLACEMENT_PLAN_PARAMS_INIT;
    epc_placement_t *pl = NULL;
    p.num_experts = E;
    p.num_ranks = R;
    p.ranks_per_node = rpn;
    p.num_slots = S;
    p.expert_load = load;
    p.num_groups = G;
    p.algo = algo;
    assert_int_equal(epc_placement_plan(&p, &pl), EPC_OK);
    return pl;
}

/* The example of DeepSeek's EPLB README: two layers of 12 experts, 16
 * slots, 4 groups, 2 nodes, 8 GPUs, and the phy2log it prints. */
static void test_eplb_published_example(void **state)
{
    static const double w[2][12] = {{90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86},
                                    {20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27}};
    static const int32_t want[2][16] = {{5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1},
                                        {7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1}};
    (void)state;
    for (int l = 0; l < 2; l++) {
        epc_placement_t *pl = plan(w[l], 12, 8, 4, 16, 4, EPC_PLACEMENT_EPLB);
        int32_t got[16];
        assert_int_equal(epc_placement_table(pl, got, 16), EPC_OK);
        assert_memory_equal(got, want[l], sizeof got);
        epc_placement_destroy(pl);
    }
}

static void expect_bad(const epc_placement_params_t *p, const char *names)
{
    epc_placement_t *pl = (epc_placement_t *)0x1;
    assert_int_equal(epc_placement_create(p, &pl), EPC_ERR_INVALID_ARG);
    assert_ptr_equal(pl, (epc_placement_t *)0x1);
    assert_non_null(strstr(epc_last_error(NULL), names));
}

static void test_create_rejects(void **state)
{
    int32_t t[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    epc_placement_params_t p = EPC_PLACEMENT_PARAMS_INIT, q;
    epc_placement_t *pl;
    (void)state;
    p.num_experts = 4;
    p.num_ranks = 4;
    p.ranks_per_node = 2;
    p.num_slots = 8;
    p.slot_expert = t;
    q = p;
    q.num_experts = 0;
    expect_bad(&q, "num_experts");
    q = p;
    q.ranks_per_node = 3;
    expect_bad(&q, "ranks_per_node");
    q = p;
    q.num_slots = 6; /* not a multiple of 4 ranks */
    expect_bad(&q, "num_slots");
    q = p;
    q.num_experts = 12; /* fewer slots than experts */
    expect_bad(&q, "num_slots");
    q = p;
    q.num_ranks = -1;
    expect_bad(&q, "num_ranks");
    q = p;
    q.slot_expert = NULL; /* identity needs S = E */
    expect_bad(&q, "slot_expert");
    t[5] = 4;
    expect_bad(&p, "slot_expert[5] = 4");
    t[5] = -1;
    expect_bad(&p, "slot_expert[5] = -1");
    t[5] = 1;
    t[3] = 0;
    t[7] = 0; /* expert 3 has no slot */
    expect_bad(&p, "logical expert 3 no slot");
    q = p;
    q.size = 3;
    expect_bad(&q, "size");
    expect_bad(NULL, "params is NULL");
    assert_int_equal(epc_placement_create(&p, NULL), EPC_ERR_INVALID_ARG);
    t[3] = 3;
    t[7] = 3;
    assert_int_equal(epc_placement_create(&p, &pl), EPC_OK);
    epc_placement_destroy(pl);
    epc_placement_destroy(NULL);
}

static void test_queries(void **state)
{
    int32_t t[8] = {3, 1, 2, 3, 0, 1, 3, 3}, got[8], slots[8];
    epc_placement_t *pl = make(4, 4, 2, 8, t), *id = make(4, 2, 1, 0, NULL);
    epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
    int n = -1;
    (void)state;
    assert_int_equal(epc_placement_info(pl, &info), EPC_OK);
    assert_int_equal(info.num_experts, 4);
    assert_int_equal(info.num_slots, 8);
    assert_int_equal(info.slots_per_rank, 2);
    assert_int_equal(info.ranks_per_node, 2);
    assert_int_equal(info.max_replicas, 4);
    assert_int_equal(info.node_local, 0); /* expert 3 on both nodes */
    assert_int_equal(epc_placement_table(pl, got, 8), EPC_OK);
    assert_memory_equal(got, t, sizeof t);
    assert_int_equal(epc_placement_replicas(pl, 3, slots, 8, &n), EPC_OK);
    assert_int_equal(n, 4);
    assert_int_equal(slots[0], 0);
    assert_int_equal(slots[1], 3);
    assert_int_equal(slots[2], 6);
    assert_int_equal(slots[3], 7);
    assert_int_equal(epc_placement_replicas(pl, 3, slots, 3, &n), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_replicas(pl, 4, slots, 8, &n), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_replicas(pl, -1, slots, 8, &n), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_replicas(pl, 0, slots, 8, NULL), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_table(pl, got, 7), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_table(pl, NULL, 8), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_table(NULL, got, 8), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_info(pl, NULL), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_info(id, &info), EPC_OK);
    assert_int_equal(info.num_slots, 4);
    assert_int_equal(info.max_replicas, 1);
    assert_int_equal(info.node_local, 1);
    assert_int_equal(epc_placement_table(id, got, 8), EPC_OK);
    for (int s = 0; s < 4; s++)
        assert_int_equal(got[s], s);
    epc_placement_destroy(pl);
    epc_placement_destroy(id);
}

/* Loads by hand: expert e's load split evenly over its slots. */
static void test_load(void **state)
{
    int32_t t[8] = {3, 1, 2, 3, 0, 1, 3, 3};
    double w[4] = {8, 6, 5, 12}, rl[4], nl[2], imb = -1;
    epc_placement_t *pl = make(4, 4, 2, 8, t);
    (void)state;
    assert_int_equal(epc_placement_load(pl, w, rl, nl, &imb), EPC_OK);
    assert_true(fabs(rl[0] - (3 + 3)) < 1e-12); /* 3, 1: 12/4 + 6/2 */
    assert_true(fabs(rl[1] - (5 + 3)) < 1e-12); /* 2, 3 */
    assert_true(fabs(rl[2] - (8 + 3)) < 1e-12); /* 0, 1 */
    assert_true(fabs(rl[3] - (3 + 3)) < 1e-12); /* 3, 3 */
    assert_true(fabs(nl[0] - 14) < 1e-12 && fabs(nl[1] - 17) < 1e-12);
    assert_true(fabs(imb - 11.0 * 4 / 31) < 1e-12);
    w[2] = NAN;
    assert_int_equal(epc_placement_load(pl, w, rl, nl, &imb), EPC_ERR_INVALID_ARG);
    w[2] = -1;
    assert_int_equal(epc_placement_load(pl, w, rl, nl, &imb), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_load(pl, NULL, rl, nl, &imb), EPC_ERR_INVALID_ARG);
    memset(w, 0, sizeof w);
    assert_int_equal(epc_placement_load(pl, w, NULL, NULL, &imb), EPC_OK);
    assert_true(imb == 0.0);
    epc_placement_destroy(pl);
}

/* Expert 0 has three replicas on node 0 (slots 0, 1, 2) and one on node 1
 * (slot 6); expert 1 lives on node 1 only, expert 2 on node 0 only. */
static void test_map_choice(void **state)
{
    int32_t t[8] = {0, 0, 0, 2, 1, 3, 0, 3};
    int32_t idx[4 * 2], out[4 * 2], again[4 * 2];
    int per_slot[8] = {0};
    epc_placement_t *pl = make(4, 4, 2, 8, t);
    (void)state;
    /* with expert 1 (node 1) the token takes expert 0's node-1 replica */
    for (int i = 0; i < 4; i++) {
        idx[2 * i] = 0;
        idx[2 * i + 1] = 1;
    }
    assert_int_equal(epc_placement_map(pl, idx, 4, 2, 0, out), EPC_OK);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(out[2 * i], 6);
        assert_int_equal(out[2 * i + 1], 4);
    }
    /* with expert 2 (node 0): one of the node-0 replicas, spread by token */
    for (int i = 0; i < 4; i++) {
        idx[2 * i] = 2;
        idx[2 * i + 1] = 0;
    }
    for (int64_t first = 0; first < 300; first += 4) {
        assert_int_equal(epc_placement_map(pl, idx, 4, 2, first, out), EPC_OK);
        for (int i = 0; i < 4; i++) {
            assert_int_equal(out[2 * i], 3);
            assert_true(out[2 * i + 1] >= 0 && out[2 * i + 1] <= 2);
            per_slot[out[2 * i + 1]]++;
        }
    }
    assert_int_equal(per_slot[0], 100);
    assert_int_equal(per_slot[1], 100);
    assert_int_equal(per_slot[2], 100);
    /* alone, expert 0 spreads over all four; -1 stays; same answer twice,
     * also in place */
    idx[0] = 0;
    idx[1] = -1;
    memset(per_slot, 0, sizeof per_slot);
    for (int64_t tok = 0; tok < 400; tok++) {
        assert_int_equal(epc_placement_map(pl, idx, 1, 2, tok, out), EPC_OK);
        assert_int_equal(out[1], -1);
        per_slot[out[0]]++;
    }
    assert_int_equal(per_slot[0] + per_slot[1] + per_slot[2] + per_slot[6], 400);
    assert_int_equal(per_slot[6], 100);
    for (int i = 0; i < 8; i++)
        idx[i] = (int32_t)((i * 3) % 4 == 1 ? -1 : (i * 3) % 4);
    idx[1] = 3; /* token 0: experts 0, 3 */
    assert_int_equal(epc_placement_map(pl, idx, 4, 2, 17, out), EPC_OK);
    assert_int_equal(epc_placement_map(pl, idx, 4, 2, 17, again), EPC_OK);
    assert_memory_equal(out, again, sizeof out);
    assert_int_equal(epc_placement_map(pl, idx, 4, 2, 17, idx), EPC_OK);
    assert_memory_equal(out, idx, sizeof out);
    /* spreading: expert 0 beside expert 1 (node 1) now takes all four */
    assert_int_equal(epc_placement_set_choice(pl, EPC_REPLICA_SPREAD), EPC_OK);
    memset(per_slot, 0, sizeof per_slot);
    idx[0] = 0;
    idx[1] = 1;
    for (int64_t tok = 0; tok < 400; tok++) {
        assert_int_equal(epc_placement_map(pl, idx, 1, 2, tok, out), EPC_OK);
        assert_int_equal(out[1], 4);
        per_slot[out[0]]++;
    }
    assert_int_equal(per_slot[0], 100);
    assert_int_equal(per_slot[1], 100);
    assert_int_equal(per_slot[2], 100);
    assert_int_equal(per_slot[6], 100);
    assert_int_equal(epc_placement_set_choice(pl, (epc_replica_choice_t)4), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "choice"));
    assert_int_equal(epc_placement_set_choice(NULL, EPC_REPLICA_NEAR), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_set_choice(pl, EPC_REPLICA_NEAR), EPC_OK);
    assert_int_equal(epc_placement_map(pl, idx, 1, 2, 5, out), EPC_OK);
    assert_int_equal(out[0], 6);
    epc_placement_destroy(pl);
}

static void test_map_rejects(void **state)
{
    int32_t idx[4] = {0, 1, 2, 3}, out[4] = {9, 9, 9, 9}, keep[4] = {9, 9, 9, 9};
    epc_placement_t *pl = make(4, 2, 1, 0, NULL);
    (void)state;
    idx[3] = 4;
    assert_int_equal(epc_placement_map(pl, idx, 2, 2, 0, out), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "topk_idx[token 1][1] = 4"));
    idx[3] = 2;
    assert_int_equal(epc_placement_map(pl, idx, 2, 2, 0, out), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "twice"));
    idx[3] = -2;
    assert_int_equal(epc_placement_map(pl, idx, 2, 2, 0, out), EPC_ERR_INVALID_ARG);
    assert_memory_equal(out, keep, sizeof out); /* nothing written */
    idx[3] = 3;
    assert_int_equal(epc_placement_map(pl, idx, 2, 0, 0, out), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_map(pl, idx, 1, 5, 0, out), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_map(pl, idx, -1, 2, 0, out), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_map(pl, idx, 2, 2, -1, out), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "first_token"));
    assert_int_equal(epc_placement_map(pl, NULL, 2, 2, 0, out), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_map(pl, idx, 2, 2, 0, NULL), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_map(NULL, idx, 2, 2, 0, out), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_map(pl, idx, 2, 2, INT64_MAX - 1, out), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_map(pl, idx, 2, 2, INT64_MAX - 2, out), EPC_OK);
    assert_int_equal(epc_placement_map(pl, NULL, 0, 2, 0, NULL), EPC_OK);
    assert_int_equal(epc_placement_map(pl, idx, 2, 2, 0, out), EPC_OK);
    assert_memory_equal(out, idx, sizeof out); /* the identity */
    epc_placement_destroy(pl);
}

/* Zipf loads over a random permutation of the experts. */
static void zipf(double *w, int E, double s, unsigned seed)
{
    int *perm = malloc((size_t)E * sizeof *perm);
    for (int e = 0; e < E; e++)
        perm[e] = e;
    for (int e = E - 1; e > 0; e--) {
        int j = (int)(lcg(&seed) % (unsigned)(e + 1)), x = perm[e];
        perm[e] = perm[j];
        perm[j] = x;
    }
    for (int e = 0; e < E; e++)
        w[perm[e]] = 1e5 / pow(1.0 + e, s);
    free(perm);
}

/* A planned table: S / R slots per rank by construction, every expert
 * placed, hierarchical plans node-local with each group on one node. */
static void check_plan(const epc_placement_t *pl, int E, int R, int rpn, int G)
{
    epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
    int32_t *t;
    int *node_of_group = malloc((size_t)G * sizeof(int)), n;
    assert_int_equal(epc_placement_info(pl, &info), EPC_OK);
    t = malloc((size_t)info.num_slots * sizeof *t);
    assert_int_equal(epc_placement_table(pl, t, info.num_slots), EPC_OK);
    for (int e = 0; e < E; e++) {
        assert_int_equal(epc_placement_replicas(pl, e, NULL, 0, &n) == EPC_OK, 0); /* n >= 1 */
        int32_t slots[512];
        assert_int_equal(epc_placement_replicas(pl, e, slots, 512, &n), EPC_OK);
        assert_true(n >= 1);
    }
    if (G % (R / rpn) == 0) {
        int spn = info.num_slots / (R / rpn);
        assert_int_equal(info.node_local, 1);
        for (int g = 0; g < G; g++)
            node_of_group[g] = -1;
        for (int s = 0; s < info.num_slots; s++) {
            int g = t[s] / (E / G);
            if (node_of_group[g] < 0)
                node_of_group[g] = s / spn;
            assert_int_equal(node_of_group[g], s / spn);
        }
    }
    free(t);
    free(node_of_group);
}

static double imbalance_of(const epc_placement_t *pl, const double *w)
{
    double imb;
    assert_int_equal(epc_placement_load(pl, w, NULL, NULL, &imb), EPC_OK);
    return imb;
}

/* Over many skewed loads and shapes: both plans valid; the balanced one
 * never worse than EPLB and strictly better on most. */
static void test_plan_against_eplb(void **state)
{
    static const int shape[][5] = {/* E, R, rpn, redundant, G (0 = nodes) */
                                   {256, 32, 8, 0, 0},   {256, 32, 8, 32, 0}, {256, 32, 8, 64, 0},
                                   {64, 16, 4, 16, 0},   {256, 32, 8, 32, 1}, {96, 8, 4, 8, 0},
                                   {256, 64, 8, 64, 16}, {60, 12, 6, 12, 0}};
    int better = 0, cases = 0;
    (void)state;
    for (size_t c = 0; c < sizeof shape / sizeof shape[0]; c++)
        for (unsigned seed = 1; seed <= 3; seed++) {
            int E = shape[c][0], R = shape[c][1], rpn = shape[c][2], S = E + shape[c][3];
            int G = shape[c][4] ? shape[c][4] : R / rpn;
            double *w = malloc((size_t)E * sizeof *w), a, b;
            epc_placement_t *pe, *pb;
            zipf(w, E, 0.6 + 0.2 * seed, seed * 7919u + (unsigned)c);
            pe = plan(w, E, R, rpn, S, shape[c][4], EPC_PLACEMENT_EPLB);
            pb = plan(w, E, R, rpn, S, shape[c][4], EPC_PLACEMENT_BALANCED);
            check_plan(pe, E, R, rpn, G);
            check_plan(pb, E, R, rpn, G);
            a = imbalance_of(pe, w);
            b = imbalance_of(pb, w);
            assert_true(b <= a + 1e-9);
            better += b < a - 1e-6;
            cases++;
            epc_placement_destroy(pe);
            epc_placement_destroy(pb);
            free(w);
        }
    print_message("balanced better than EPLB on %d of %d skewed cases\n", better, cases);
    assert_true(2 * better > cases);
}

static void test_plan_rejects(void **state)
{
    double w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    epc_placement_plan_params_t p = EPC_PLACEMENT_PLAN_PARAMS_INIT, q;
    epc_placement_t *pl = NULL;
    (void)state;
    p.num_experts = 8;
    p.num_ranks = 4;
    p.ranks_per_node = 2;
    p.num_slots = 12;
    p.expert_load = w;
    q = p;
    q.num_groups = 3;
    assert_int_equal(epc_placement_plan(&q, &pl), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "num_groups"));
    q = p;
    q.num_slots = 10;
    assert_int_equal(epc_placement_plan(&q, &pl), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "num_slots"));
    q = p;
    q.expert_load = NULL;
    assert_int_equal(epc_placement_plan(&q, &pl), EPC_ERR_INVALID_ARG);
    q = p;
    q.algo = (epc_placement_algo_t)7;
    assert_int_equal(epc_placement_plan(&q, &pl), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "algo"));
    w[3] = INFINITY;
    assert_int_equal(epc_placement_plan(&p, &pl), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "expert_load[3]"));
    w[3] = 4;
    assert_null(pl);
    assert_int_equal(epc_placement_plan(&p, NULL), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_plan(NULL, &pl), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_plan(&p, &pl), EPC_OK); /* G = nodes = 2 */
    check_plan(pl, 8, 4, 2, 2);
    epc_placement_destroy(pl);
    q = p; /* 6 experts, 4 nodes of 2 ranks: the default groups fall back to global */
    q.num_experts = 6;
    q.num_ranks = 8;
    q.ranks_per_node = 2;
    q.num_slots = 8;
    assert_int_equal(epc_placement_plan(&q, &pl), EPC_OK);
    check_plan(pl, 6, 8, 2, 1);
    epc_placement_destroy(pl);
    memset(w, 0, sizeof w); /* no load at all still places every expert */
    assert_int_equal(epc_placement_plan(&p, &pl), EPC_OK);
    check_plan(pl, 8, 4, 2, 2);
    epc_placement_destroy(pl);
}

/* Every rank's receives fill each of its new slots once, from a slot that
 * held the same expert; every send is some rank's receive. */
static void check_moves(const epc_placement_t *from, const epc_placement_t *to, int R)
{
    epc_placement_info_t fi = EPC_PLACEMENT_INFO_INIT, ti = EPC_PLACEMENT_INFO_INIT;
    int32_t *ft, *tt;
    long sends = 0, remote_recvs = 0;
    assert_int_equal(epc_placement_info(from, &fi), EPC_OK);
    assert_int_equal(epc_placement_info(to, &ti), EPC_OK);
    ft = malloc((size_t)fi.num_slots * sizeof *ft);
    tt = malloc((size_t)ti.num_slots * sizeof *tt);
    epc_placement_table(from, ft, fi.num_slots);
    epc_placement_table(to, tt, ti.num_slots);
    for (int r = 0; r < R; r++) {
        epc_slot_move_t snd[256], rcv[256];
        int ns, nr, filled[256] = {0};
        assert_int_equal(epc_placement_moves(from, to, r, NULL, 0, &ns, NULL, 0, &nr), EPC_OK);
        assert_int_equal(nr, ti.slots_per_rank);
        assert_int_equal(epc_placement_moves(from, to, r, snd, ns, &ns, rcv, nr, &nr), EPC_OK);
        for (int i = 0; i < nr; i++) {
            int src = rcv[i].peer * fi.slots_per_rank + rcv[i].peer_slot;
            assert_int_equal(ft[src], tt[r * ti.slots_per_rank + rcv[i].slot]);
            assert_int_equal(filled[rcv[i].slot]++, 0);
            if (i > 0)
                assert_true(rcv[i].slot > rcv[i - 1].slot);
            remote_recvs += rcv[i].peer != r;
        }
        for (int i = 0; i < ns; i++) {
            assert_true(snd[i].peer != r);
            assert_int_equal(ft[r * fi.slots_per_rank + snd[i].slot],
                             tt[snd[i].peer * ti.slots_per_rank + snd[i].peer_slot]);
        }
        sends += ns;
        if (nr > 0)
            assert_int_equal(epc_placement_moves(from, to, r, snd, ns, &ns, rcv, nr - 1, &nr),
                             EPC_ERR_INVALID_ARG);
    }
    assert_int_equal(sends, remote_recvs);
    free(ft);
    free(tt);
}

static void test_moves(void **state)
{
    double w[32];
    epc_placement_t *id = make(32, 8, 4, 0, NULL), *a, *b;
    int ns, nr;
    (void)state;
    zipf(w, 32, 1.0, 5);
    a = plan(w, 32, 8, 4, 48, 0, EPC_PLACEMENT_BALANCED);
    zipf(w, 32, 1.2, 9);
    b = plan(w, 32, 8, 4, 40, 1, EPC_PLACEMENT_EPLB);
    check_moves(id, a, 8);
    check_moves(a, b, 8);
    check_moves(b, id, 8);
    check_moves(a, a, 8);
    /* a rank that already holds its new slots' experts receives from itself */
    assert_int_equal(epc_placement_moves(a, a, 3, NULL, 0, &ns, NULL, 0, &nr), EPC_OK);
    assert_int_equal(ns, 0);
    {
        epc_placement_t *other = make(32, 4, 4, 0, NULL);
        assert_int_equal(epc_placement_moves(id, other, 0, NULL, 0, &ns, NULL, 0, &nr),
                         EPC_ERR_INVALID_ARG);
        assert_non_null(strstr(epc_last_error(NULL), "shape"));
        epc_placement_destroy(other);
    }
    assert_int_equal(epc_placement_moves(id, a, 8, NULL, 0, &ns, NULL, 0, &nr),
                     EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_moves(id, a, 0, NULL, 0, NULL, NULL, 0, &nr),
                     EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_placement_moves(id, a, 0, NULL, 3, &ns, NULL, 0, &nr),
                     EPC_ERR_INVALID_ARG);
    epc_placement_destroy(id);
    epc_placement_destroy(a);
    epc_placement_destroy(b);
}

/* coll_move_rounds against the moves: every slot that changes rank has a
 * round and the others none; in no round does a rank send or receive more
 * than per slots; each rank's rounds ascend with its receiving slots and
 * with its sends in slot order (move() relies on both).  Returns the
 * rounds. */
static int check_rounds(const epc_placement_t *from, const epc_placement_t *to, int R, int per)
{
    epc_placement_info_t ti = EPC_PLACEMENT_INFO_INIT;
    int *round, *last = malloc((size_t)4 * R * sizeof *last), rounds, *cnt;
    int *last_send = calloc((size_t)R, sizeof *last_send);
    assert_int_equal(epc_placement_info(to, &ti), EPC_OK);
    round = malloc((size_t)ti.num_slots * sizeof *round);
    rounds = coll_move_rounds(from, to, per, round, last);
    cnt = calloc((size_t)(rounds + 1) * 2 * R, sizeof *cnt);
    for (int r = 0; r < R; r++) {
        epc_slot_move_t snd[256], rcv[256];
        int ns, nr;
        assert_int_equal(epc_placement_moves(from, to, r, snd, 256, &ns, rcv, 256, &nr), EPC_OK);
        for (int i = 0; i < nr; i++) {
            int rd = round[r * ti.slots_per_rank + rcv[i].slot];
            if (rcv[i].peer == r) {
                assert_int_equal(rd, -1);
                continue;
            }
            assert_true(rd >= 0 && rd < rounds);
            assert_true(++cnt[(size_t)rd * 2 * R + r] <= per);               /* received */
            assert_true(++cnt[(size_t)rd * 2 * R + R + rcv[i].peer] <= per); /* sent */
            if (i > 0 && rcv[i - 1].peer != r)
                assert_true(rd >= round[r * ti.slots_per_rank + rcv[i - 1].slot]);
        }
    }
    for (int q = 0; q < ti.num_slots; q++) { /* a sender's rounds ascend in slot order */
        int r = -1;
        for (int s = 0; s < R && round[q] >= 0; s++) {
            epc_slot_move_t snd[256], rcv[256];
            int ns, nr;
            epc_placement_moves(from, to, s, snd, 256, &ns, rcv, 256, &nr);
            for (int i = 0; i < ns; i++)
                if (snd[i].peer * ti.slots_per_rank + snd[i].peer_slot == q)
                    r = s;
        }
        if (r >= 0) {
            assert_true(round[q] >= last_send[r]);
            last_send[r] = round[q];
        }
    }
    free(round), free(last), free(cnt), free(last_send);
    return rounds;
}

static void test_move_rounds(void **state)
{
    double w[32];
    int32_t hot[16];
    epc_placement_t *id = make(32, 8, 4, 0, NULL), *a, *b, *id8, *rep;
    (void)state;
    zipf(w, 32, 1.0, 5);
    a = plan(w, 32, 8, 4, 48, 0, EPC_PLACEMENT_BALANCED);
    zipf(w, 32, 1.2, 9);
    b = plan(w, 32, 8, 4, 40, 1, EPC_PLACEMENT_EPLB);
    for (int per = 1; per <= 7; per += 3) {
        assert_true(check_rounds(id, a, 8, per) >= 1);
        check_rounds(a, b, 8, per);
        check_rounds(b, id, 8, per);
        assert_int_equal(check_rounds(a, a, 8, per), 0); /* nothing moves */
    }
    /* expert 0, on rank 0 alone, copied onto every other rank: rank 0
     * sends one slot a round at per = 1, so three rounds at least */
    id8 = make(8, 4, 2, 0, NULL);
    for (int r = 0; r < 4; r++) {
        hot[4 * r] = 0;
        for (int j = 1; j < 4; j++)
            hot[4 * r + j] = (r * 3 + j - 1) % 7 + 1;
    }
    rep = make(8, 4, 2, 16, hot);
    assert_true(check_rounds(id8, rep, 4, 1) >= 3);
    assert_true(check_rounds(id8, rep, 4, 4) >= 1);
    epc_placement_destroy(id), epc_placement_destroy(a), epc_placement_destroy(b);
    epc_placement_destroy(id8), epc_placement_destroy(rep);
}

/* Every token of slots (mapped from idx [T x k] through pl) has its
 * logical experts and reaches at most m nodes. */
static void check_node_limit(const epc_placement_t *pl, const int32_t *idx, const int32_t *slots,
                             int T, int k, int m)
{
    epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
    int32_t table[256];
    assert_int_equal(epc_placement_info(pl, &info), EPC_OK);
    assert_true(info.num_slots <= 256);
    assert_int_equal(epc_placement_table(pl, table, 256), EPC_OK);
    for (int t = 0; t < T; t++) {
        int nodes[256], n = 0;
        for (int j = 0; j < k; j++) {
            int node = slots[t * k + j] / (info.num_slots / info.num_ranks) / info.ranks_per_node,
                seen = 0;
            assert_int_equal(table[slots[t * k + j]], idx[t * k + j]);
            for (int i = 0; i < n; i++)
                seen |= nodes[i] == node;
            if (!seen)
                nodes[n++] = node;
        }
        assert_true(n <= m);
    }
}

/* Routed with a node limit, then mapped through a hierarchical plan whose
 * groups are the router's node blocks: the physical nodes of each token
 * are as many as its logical blocks, so never more than M, whether the
 * replica choice is NEAR or BALANCED. */
static void test_map_keeps_node_limit(void **state)
{
    enum { E = 64, R = 16, RPN = 4, K = 6, M = 2, T = 500 };
    epc_router_params_t rp = EPC_ROUTER_PARAMS_INIT;
    epc_router_t *router;
    float *logits = malloc((size_t)T * E * sizeof *logits), *tw = malloc((size_t)T * K * 4);
    int32_t *idx = malloc((size_t)T * K * 4), *slots = malloc((size_t)T * K * 4);
    double w[E];
    unsigned seed = 11;
    epc_placement_t *pl;
    (void)state;
    rp.num_experts = E;
    rp.topk = K;
    rp.num_ranks = R;
    rp.ranks_per_node = RPN;
    rp.max_nodes_per_token = M;
    assert_int_equal(epc_router_create(&rp, &router), EPC_OK);
    for (int i = 0; i < T * E; i++)
        logits[i] = (float)(lcg(&seed) % 1000) / 100.0f - (float)(i % E) * 0.05f;
    assert_int_equal(epc_route(router, logits, T, idx, tw), EPC_OK);
    memset(w, 0, sizeof w);
    for (int i = 0; i < T * K; i++)
        w[idx[i]] += 1;
    pl = plan(w, E, R, RPN, E + 16, 0, EPC_PLACEMENT_BALANCED);
    for (int c = 0; c < 2; c++) {
        assert_int_equal(epc_placement_set_choice(pl, c ? EPC_REPLICA_BALANCED : EPC_REPLICA_NEAR),
                         EPC_OK);
        assert_int_equal(epc_placement_map(pl, idx, T, K, 0, slots), EPC_OK);
        check_node_limit(pl, idx, slots, T, K, M);
    }
    epc_placement_destroy(pl);
    epc_router_destroy(router);
    free(logits);
    free(tw);
    free(idx);
    free(slots);
}

/* Replica counts of expert 0 (slots 0, 1, 2 and 6 of test_map_choice's
 * table) after each of T tokens: never more than the least-loaded one's
 * 1/8 plus 2 apart (the allowance, checked before the increment). */
static void check_balanced_shares(const int32_t *out, int T, int *cnt)
{
    memset(cnt, 0, 8 * sizeof *cnt);
    for (int t = 0; t < T; t++) {
        int mn, mx;
        cnt[out[2 * t]]++;
        mn = mx = cnt[0];
        for (int i = 1; i < 4; i++) {
            int c = cnt[i < 3 ? i : 6];
            mn = c < mn ? c : mn;
            mx = c > mx ? c : mx;
        }
        assert_true(mx <= mn + mn / 8 + 2);
    }
}

/* EPC_REPLICA_BALANCED on test_map_choice's table: expert 0 has three
 * replicas on node 0 (slots 0, 1, 2) and one on node 1 (slot 6). */
static void test_map_balanced(void **state)
{
    int32_t t[8] = {0, 0, 0, 2, 1, 3, 0, 3};
    enum { T = 400 };
    int32_t *idx = malloc(T * 2 * sizeof *idx), *out = malloc(T * 2 * sizeof *out);
    int32_t *again = malloc(T * 2 * sizeof *again);
    int cnt[8];
    epc_placement_t *pl = make(4, 4, 2, 8, t);
    (void)state;
    assert_int_equal(epc_placement_set_choice(pl, EPC_REPLICA_BALANCED), EPC_OK);
    /* every token also has expert 1 (node 1): NEAR would give slot 6 all
     * 400; BALANCED prefers it within the allowance, then the others */
    for (int i = 0; i < T; i++)
        idx[2 * i] = 0, idx[2 * i + 1] = 1;
    assert_int_equal(epc_placement_map(pl, idx, T, 2, 0, out), EPC_OK);
    for (int i = 0; i < T; i++)
        assert_int_equal(out[2 * i + 1], 4); /* one replica: always it */
    check_balanced_shares(out, T, cnt);
    assert_int_equal(out[0], 6); /* all at 0: the reached replica */
    assert_true(cnt[6] > cnt[0] && cnt[6] > cnt[1] && cnt[6] > cnt[2]);
    assert_int_equal(cnt[0] + cnt[1] + cnt[2] + cnt[6], T);
    /* with expert 2 (node 0) instead: node 0's replicas preferred */
    for (int i = 0; i < T; i++)
        idx[2 * i + 1] = 2;
    assert_int_equal(epc_placement_map(pl, idx, T, 2, 0, out), EPC_OK);
    check_balanced_shares(out, T, cnt);
    assert_true(cnt[6] < cnt[0] && cnt[6] < cnt[1] && cnt[6] < cnt[2]);
    assert_true(cnt[6] >= T / 4 - T / 4 / 8 - 2); /* yet still about its share */
    /* the same call gives the same slots, also in place; -1 stays */
    idx[1] = -1;
    assert_int_equal(epc_placement_map(pl, idx, T, 2, 9, out), EPC_OK);
    assert_int_equal(epc_placement_map(pl, idx, T, 2, 9, again), EPC_OK);
    assert_memory_equal(out, again, T * 2 * sizeof *out);
    assert_int_equal(out[1], -1);
    assert_int_equal(epc_placement_map(pl, idx, T, 2, 9, idx), EPC_OK);
    assert_memory_equal(out, idx, T * 2 * sizeof *out);
    /* T = 0 writes nothing; bad input is still rejected */
    assert_int_equal(epc_placement_map(pl, NULL, 0, 2, 0, NULL), EPC_OK);
    idx[0] = 4;
    assert_int_equal(epc_placement_map(pl, idx, T, 2, 0, out), EPC_ERR_INVALID_ARG);
    epc_placement_destroy(pl);
    free(idx), free(out), free(again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eplb_published_example),
        cmocka_unit_test(test_create_rejects),
        cmocka_unit_test(test_queries),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_map_choice),
        cmocka_unit_test(test_map_rejects),
        cmocka_unit_test(test_map_keeps_node_limit),
        cmocka_unit_test(test_map_balanced),
        cmocka_unit_test(test_plan_against_eplb),
        cmocka_unit_test(test_plan_rejects),
        cmocka_unit_test(test_moves),
        cmocka_unit_test(test_move_rounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
