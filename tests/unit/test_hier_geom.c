/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_hier_geom - the hierarchical path's geometry (collectives/hier_geom.c)
 * without MPI: a handle made by hand for random routings on 4 nodes of 2,
 * 2 of 3 and 1 of 4 ranks, every answer compared with a plainly computed
 * reference (tokens per node, the combine offsets table against the
 * definition summed plainly, the messages, the chunks, the
 * destinations' order).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hier_geom.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static int irand(int n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (int)(rng % (uint64_t)n);
}

/* A job of N nodes of L ranks (node-major), E experts, k per token, T
 * tokens on every rank; this rank is `rank`.  Only what the geometry reads
 * is filled: the routing, slot indices and every rank's counts. */
typedef struct job {
    int N, L, R, E, k, T, rank;
    int node_of[16], local_rank[16], node_ranks[16], node_start[17];
    int32_t idx[16][64 * 8], eidx[64 * 8], didx[64 * 8];
    float w[64 * 8];
    int *all;
    epc_handle_t h;
    hier_geom_t g;
} job_t;

/* Counts of source s: C per expert, tokens per node, tokens per rank. */
static void count_source(job_t *j, int s)
{
    int *C = j->all + (size_t)s * (j->E + j->N + j->R), *tpn = C + j->E, *tpr = tpn + j->N;
    for (int t = 0; t < j->T; t++) {
        int node_seen[16] = {0}, rank_seen[16] = {0};
        for (int q = 0; q < j->k; q++) {
            int e = j->idx[s][t * j->k + q], r = e / (j->E / j->R);
            C[e]++;
            tpn[j->node_of[r]] += !node_seen[j->node_of[r]]++;
            tpr[r] += !rank_seen[r]++;
        }
    }
}

static void make_job(job_t *j, int N, int L, int k, int rank)
{
    memset(j, 0, sizeof *j);
    j->N = N, j->L = L, j->R = N * L, j->E = 2 * j->R, j->k = k, j->T = 64, j->rank = rank;
    for (int r = 0; r < j->R; r++) {
        j->node_of[r] = r / L;
        j->local_rank[r] = r % L;
        j->node_ranks[r] = r;
    }
    for (int n = 0; n <= N; n++)
        j->node_start[n] = n * L;
    for (int s = 0; s < j->R; s++)
        for (int t = 0; t < j->T; t++) /* k distinct experts per token */
            for (int q = 0; q < k; q++) {
                int e, dup;
                do {
                    e = irand(j->E);
                    dup = 0;
                    for (int p = 0; p < q; p++)
                        dup |= j->idx[s][t * k + p] == e;
                } while (dup);
                j->idx[s][t * k + q] = e;
            }
    j->all = calloc((size_t)j->R * (j->E + N + j->R), sizeof *j->all);
    assert_non_null(j->all);
    for (int s = 0; s < j->R; s++)
        count_source(j, s);
    j->h = (epc_handle_t){.T = j->T,
                          .k = k,
                          .align = 1,
                          .idx = j->idx[rank],
                          .w = j->w,
                          .eidx = j->eidx,
                          .didx = j->didx,
                          .all = j->all,
                          .E = j->E,
                          .R = j->R,
                          .N = N,
                          .L = L,
                          .epr = j->E / j->R};
    j->g = (hier_geom_t){&j->h,
                         j->node_of,
                         j->local_rank,
                         j->node_ranks,
                         j->node_start,
                         N,
                         rank,
                         rank / L,
                         rank % L,
                         L,
                         16,
                         32,
                         32,
                         0,
                         0,
                         4096};
}

/* Token lists: every token of this rank that reaches node n, ascending,
 * and nothing else. */
static void check_token_lists(const job_t *j)
{
    int **lists = hier_token_lists(&j->g);
    assert_non_null(lists);
    for (int n = 0; n < j->N; n++) {
        int q = 0;
        for (int t = 0; t < j->T; t++) {
            int reaches = 0;
            for (int p = 0; p < j->k; p++)
                reaches |= j->node_of[j->idx[j->rank][t * j->k + p] / (j->E / j->R)] == n;
            if (reaches)
                assert_int_equal(lists[n][q++], t);
        }
        assert_int_equal(q, j->all[(size_t)j->rank * (j->E + j->N + j->R) + j->E + n]);
    }
    hier_free_lists(lists, j->N);
}

/* One message each way per other node, to the rank of this local index
 * there, sized by the counts, packed back to back. */
static void check_messages(const job_t *j)
{
    epc_tr_msg_t sends[16], recvs[16];
    size_t sb, rb, unit = 40;
    int m = hier_messages(&j->g, unit, 0, sends, recvs, &sb, &rb), i = 0;
    size_t so = 0, ro = 0;
    assert_int_equal(m, j->N - 1);
    for (int n = 0; n < j->N; n++) {
        int peer = n * j->L + j->g.my_local;
        const int *mine = j->all + (size_t)j->rank * (j->E + j->N + j->R) + j->E;
        const int *theirs = j->all + (size_t)peer * (j->E + j->N + j->R) + j->E;
        if (n == j->g.my_node)
            continue;
        assert_int_equal(sends[i].peer, peer);
        assert_int_equal(sends[i].offset, so);
        assert_int_equal(sends[i].len, (size_t)mine[n] * unit);
        assert_int_equal(recvs[i].offset, ro);
        assert_int_equal(recvs[i].len, (size_t)theirs[j->g.my_node] * unit);
        so += sends[i].len;
        ro += recvs[i].len;
        i++;
    }
    assert_int_equal(sb, so);
    assert_int_equal(rb, ro);
}

/* Chunks: between 1 and 8, and the ranges of a message tile it. */
static void check_chunks(const job_t *j)
{
    int c = hier_chunk_count(&j->g, 40);
    size_t lo, hi, next = 0;
    assert_true(c >= 1 && c <= 8);
    for (int i = 0; i < c; i++) {
        hier_chunk_range(1001, i, c, &lo, &hi);
        assert_int_equal(lo, next);
        next = hi;
    }
    assert_int_equal(next, 1001);
}

/* A token's slots for this node: its experts there, -1 elsewhere, and
 * whether it has any. */
static void check_slots_for_node(const job_t *j)
{
    coll_slot_t sl[8];
    int epr = j->E / j->R;
    for (int t = 0; t < j->T; t++) {
        int any = hier_slots_for_node(&j->g, t, j->g.my_node, sl), count = 0;
        for (int q = 0; q < j->k; q++) {
            int e = j->idx[j->rank][t * j->k + q];
            assert_int_equal(sl[q].expert, j->node_of[e / epr] == j->g.my_node ? e : -1);
            count += sl[q].expert >= 0;
        }
        assert_int_equal(any, count > 0);
    }
}

static void run_shape(int N, int L, int k)
{
    for (int rank = 0; rank < N * L; rank++) {
        job_t *j = calloc(1, sizeof *j);
        assert_non_null(j);
        make_job(j, N, L, k, rank);
        check_token_lists(j);
        check_messages(j);
        check_chunks(j);
        check_slots_for_node(j);
        free(j->all);
        free(j);
    }
}

static void test_four_nodes_of_two(void **state)
{
    (void)state;
    run_shape(4, 2, 4);
}

static void test_two_nodes_of_three(void **state)
{
    (void)state;
    run_shape(2, 3, 6);
}

static void test_one_node_of_four(void **state)
{
    (void)state;
    run_shape(1, 4, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_four_nodes_of_two),
        cmocka_unit_test(test_two_nodes_of_three),
        cmocka_unit_test(test_one_node_of_four),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
