/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_placement_mpi - dispatch and combine through an expert placement,
 * and the placement collectives.
 *
 * For the identity, a permutation, a planned placement with one redundant
 * slot per rank (replicas) and the same planned with the routing's
 * co-reach (spill replicas on other nodes), under both algorithms and
 * each replica choice (near, spread, balanced, limited): every rank's
 * logical topk_idx is mapped to slots, dispatched by a context of S
 * experts, and every received row is checked against the reference built
 * from every rank's regenerated inputs (which slot, which source token, the
 * row's bytes, how many rows per slot).  Each "expert" multiplies its rows
 * by a function of its logical id; inputs are small integers and weights
 * powers of two, so every fp32 sum is exact and combine must give the
 * logical reference bit for bit, whatever replica each token took.  With
 * inputs whose sums round, placements that keep each node's experts
 * together (replicas there, node blocks moved) give the bits of none
 * through both algorithms (the low-latency combine: any placement).
 * Then: epc_placement_agree (same table; a table that differs on one
 * rank: EPC_ERR_MISMATCH everywhere; S not the context's experts; a NULL
 * placement on one rank), and epc_placement_move_weights (weights that
 * encode their expert id reach every new slot; bad arguments on one rank,
 * slot_bytes that differ).
 */
#include <math.h>
#include <stdint.h>

#include "mpi_test.h"

#define E 16
#define K 4
#define HIDDEN 32
#define MAXT 24
#define WFLOATS 300 /* floats per slot of the weight moves (more than 1 KiB) */

static int R, me, rpn;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33, x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static int tokens_of(int r, int it)
{
    return (r + it) % 5 == 0 ? 0 : 3 + (7 * r + 5 * it) % (MAXT - 2);
}

/* Rank r's logical ids in iteration it: K distinct, some -1. */
static void idx_of(int r, int it, int32_t *idx)
{
    for (int t = 0; t < tokens_of(r, it); t++)
        for (int j = 0; j < K; j++) {
            int32_t e;
            int dup;
            uint64_t h = mix((uint64_t)r * 1000003u + (uint64_t)t * 131u + (uint64_t)it);
            do {
                e = (int32_t)(h % E);
                h = mix(h + 1);
                dup = 0;
                for (int i = 0; i < j; i++)
                    dup |= idx[t * K + i] == e;
            } while (dup);
            idx[t * K + j] = (j == K - 1 && t % 3 == 1) ? -1 : e;
        }
}

static float x_of(int r, int t, int h)
{
    return (float)(r * 64 + t * 2 + h % 7);
}

static float weight_of(int j)
{
    return ldexpf(1.0f, -j); /* 1, 1/2, 1/4, ...: exact sums */
}

/* The expert of logical id e: y = (1 + e % 3) x. */
static float expert_gain(int e)
{
    return (float)(1 + e % 3);
}

static epc_ctx_t *make_ctx(int S)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_ctx_t *ctx = NULL;
    const epc_topo_t *topo;
    p.num_experts = S;
    p.hidden = HIDDEN;
    p.dtype = EPC_DTYPE_FP32;
    p.max_topk = K;
    p.max_tokens_per_rank = MAXT;
    MT_CHECK(epc_ctx_create(MPI_COMM_WORLD, &p, &ctx) == EPC_OK, "create: %s",
             epc_last_error(NULL));
    MT_CHECK(epc_ctx_topo(ctx, &topo) == EPC_OK && epc_topo_ranks_per_node(topo, &rpn) == EPC_OK,
             "topo: %s", epc_last_error(NULL));
    return ctx;
}

static epc_placement_t *from_table(int S, const int32_t *t)
{
    epc_placement_params_t p = EPC_PLACEMENT_PARAMS_INIT;
    epc_placement_t *pl = NULL;
    p.num_experts = E;
    p.num_ranks = R;
    p.ranks_per_node = rpn;
    p.num_slots = S;
    p.slot_expert = t;
    MT_CHECK(epc_placement_create(&p, &pl) == EPC_OK, "placement: %s", epc_last_error(NULL));
    return pl;
}

/* The co-reach of every rank's ids in iterations 30 .. 35 (the ones
 * kind 3 runs), the same on every rank. */
static void reach_of(double *reach)
{
    int32_t idx[MAXT * K];
    memset(reach, 0, (size_t)E * (R / rpn) * sizeof *reach);
    for (int it = 30; it < 36; it++)
        for (int r = 0; r < R; r++) {
            idx_of(r, it, idx);
            MT_CHECK(epc_placement_reach(idx, tokens_of(r, it), K, E, R / rpn, reach) == EPC_OK,
                     "reach: %s", epc_last_error(NULL));
        }
}

/* Nodes holding a slot of some expert on two nodes or more (spills). */
static int spilled_experts(const epc_placement_t *pl)
{
    int32_t slots[E + 64];
    int n, count = 0;
    for (int e = 0; e < E; e++) {
        epc_placement_replicas(pl, e, slots, E + 64, &n);
        for (int i = 1; i < n; i++)
            if (slots[i] / ((E + R) / R) / rpn != slots[0] / ((E + R) / R) / rpn) {
                count++;
                break;
            }
    }
    return count;
}

/* kind 0: identity; 1: a permutation; 2: planned with R redundant slots
 * from a skewed load (expert e's load 2^(E-e)/...); 3: the same with the
 * routing's co-reach (spill replicas where there are several nodes); 5:
 * planned globally (one group: replicas on any node). */
static epc_placement_t *placement_of(int kind)
{
    int32_t t[E];
    if (kind >= 2) {
        epc_placement_plan_params_t p = EPC_PLACEMENT_PLAN_PARAMS_INIT;
        epc_placement_t *pl = NULL;
        double load[E], reach[E * 16];
        for (int e = 0; e < E; e++)
            load[e] = 1000.0 / (1 + (e * 5) % E);
        if (kind == 3)
            reach_of(reach);
        p.num_experts = E;
        p.num_ranks = R;
        p.ranks_per_node = rpn;
        p.num_slots = E + R;
        p.expert_load = load;
        p.expert_reach = kind == 3 ? reach : NULL;
        p.num_groups = kind == 5 ? 1 : 0;
        MT_CHECK(epc_placement_plan(&p, &pl) == EPC_OK, "plan: %s", epc_last_error(NULL));
        MT_CHECK(kind == 2 || R / rpn == 1 || spilled_experts(pl) > 0, "no spill replica");
        return pl;
    }
    for (int s = 0; s < E; s++)
        t[s] = kind == 0 ? s : (s * 7 + 3) % E;
    return from_table(E, t);
}

/* Expected rows at this rank: for each of its slots, the (source, token)
 * pairs that chose it, in source then token order. */
static int expected_rows(const epc_placement_t *pl, int it, int spr, int *cnt, int (*who)[2],
                         int cap)
{
    int32_t idx[MAXT * K], slot[MAXT * K];
    int n = 0;
    memset(cnt, 0, (size_t)spr * sizeof *cnt);
    for (int ls = 0; ls < spr; ls++)
        for (int s = 0; s < R; s++) {
            int T = tokens_of(s, it);
            idx_of(s, it, idx);
            epc_placement_map(pl, idx, T, K, (int64_t)s * MAXT, slot);
            for (int t = 0; t < T; t++)
                for (int j = 0; j < K; j++)
                    if (slot[t * K + j] == me * spr + ls && n < cap) {
                        who[n][0] = s;
                        who[n][1] = t;
                        n++;
                        cnt[ls]++;
                    }
        }
    return n;
}

/* The received rows against the reference, then the experts' outputs. */
static void check_rows(const epc_placement_t *pl, int it, const epc_dispatch_out_t *o,
                       const int32_t *table, int spr, float *eo)
{
    static int who[MAXT * K * 64][2];
    int cnt[64], n = expected_rows(pl, it, spr, cnt, who, MAXT * K * 64), bad = 0, i = 0;
    MT_CHECK(o->num_rows == n, "it %d: %d rows, expected %d", it, o->num_rows, n);
    for (int ls = 0; ls < spr; ls++)
        MT_CHECK(o->expert_count[ls] == cnt[ls], "it %d slot %d: %d rows, expected %d", it, ls,
                 o->expert_count[ls], cnt[ls]);
    for (; i < o->num_rows && i < n; i++) {
        const float *row = (const float *)((const char *)o->rows + (size_t)i * o->row_stride);
        int src = o->src_rank[i], tok = o->src_token[i];
        bad += src != who[i][0] || tok != who[i][1];
        for (int h = 0; h < HIDDEN; h++) {
            bad += row[h] != x_of(src, tok, h);
            eo[(size_t)i * HIDDEN + h] = row[h] * expert_gain(table[me * spr + o->local_expert[i]]);
        }
    }
    MT_CHECK(bad == 0, "it %d: %d wrong rows or values", it, bad);
}

/* y = sum over the token's logical experts of w x gain x row. */
static void check_combine(int it, const float *y)
{
    int32_t idx[MAXT * K];
    int T = tokens_of(me, it), bad = 0;
    idx_of(me, it, idx);
    for (int t = 0; t < T; t++) {
        float g = 0.0f;
        for (int j = 0; j < K; j++)
            if (idx[t * K + j] >= 0)
                g += weight_of(j) * expert_gain(idx[t * K + j]);
        for (int h = 0; h < HIDDEN; h++)
            bad += y[t * HIDDEN + h] != g * x_of(me, t, h);
    }
    MT_CHECK(bad == 0, "it %d: %d combined values differ from the logical reference", it, bad);
}

static void run_once(epc_ctx_t *ctx, const epc_placement_t *pl, epc_algo_t algo, int it)
{
    static float x[MAXT * HIDDEN], w[MAXT * K], y[MAXT * HIDDEN];
    static float eo[MAXT * K * 64 * HIDDEN];
    int32_t idx[MAXT * K], slot[MAXT * K], table[E + 64];
    epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_handle_t *h = NULL;
    int T = tokens_of(me, it);
    epc_placement_info(pl, &info);
    epc_placement_table(pl, table, E + 64);
    idx_of(me, it, idx);
    for (int t = 0; t < T; t++) {
        for (int hh = 0; hh < HIDDEN; hh++)
            x[t * HIDDEN + hh] = x_of(me, t, hh);
        for (int j = 0; j < K; j++)
            w[t * K + j] = weight_of(j);
    }
    MT_CHECK(epc_placement_map(pl, idx, T, K, (int64_t)me * MAXT, slot) == EPC_OK, "map: %s",
             epc_last_error(NULL));
    a.x = x;
    a.num_tokens = T;
    a.topk = K;
    a.topk_idx = slot;
    a.topk_weights = w;
    a.algo = algo;
    if (epc_dispatch(ctx, &a, &o, &h) != EPC_OK) {
        MT_CHECK(0, "dispatch: %s", epc_last_error(ctx));
        return;
    }
    check_rows(pl, it, &o, table, info.slots_per_rank, eo);
    memset(y, 0xff, sizeof y); /* poisoned: NaN */
    c.expert_out = eo;
    c.y = y;
    MT_CHECK(epc_combine(ctx, h, &c) == EPC_OK, "combine: %s", epc_last_error(ctx));
    check_combine(it, y);
    epc_handle_destroy(h);
}

static void collectives(void)
{
    for (int kind = 0; kind < 4; kind++) {
        epc_placement_t *pl = placement_of(kind);
        epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
        epc_ctx_t *ctx;
        epc_placement_info(pl, &info);
        ctx = make_ctx(info.num_slots);
        MT_CHECK(epc_placement_agree(ctx, pl) == EPC_OK, "agree: %s", epc_last_error(ctx));
        for (int it = 0; it < 8; it++) {
            if (it == 2) /* two with every replica in turn, two balanced, two limited */
                MT_CHECK(epc_placement_set_choice(pl, EPC_REPLICA_SPREAD) == EPC_OK, "spread");
            if (it == 4)
                MT_CHECK(epc_placement_set_choice(pl, EPC_REPLICA_BALANCED) == EPC_OK, "balanced");
            if (it == 6)
                MT_CHECK(epc_placement_set_choice(pl, EPC_REPLICA_LIMITED) == EPC_OK, "limited");
            run_once(ctx, pl, it % 2 ? EPC_ALGO_FLAT : EPC_ALGO_HIER, it + 10 * kind);
        }
        epc_placement_destroy(pl);
        epc_ctx_destroy(ctx);
    }
}

/* Non-exact inputs: x and weights with many significant bits. */
static float xr_of(int r, int t, int h)
{
    return (float)((double)(mix((uint64_t)r << 40 | (uint64_t)t << 20 | (uint64_t)h) >> 11) /
                       9007199254740992.0 * 2.0 -
                   1.0);
}

/* This rank's tokens of iteration it with inputs whose sums round: x
 * [T x HIDDEN], weights w [T x K], and its logical ids mapped to slots of
 * pl; returns T. */
static int rounding_inputs(const epc_placement_t *pl, int it, float *x, float *w, int32_t *slot)
{
    int32_t idx[MAXT * K];
    int T = tokens_of(me, it);
    idx_of(me, it, idx);
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < HIDDEN; h++)
            x[t * HIDDEN + h] = xr_of(me, t, h);
        for (int j = 0; j < K; j++)
            w[t * K + j] = xr_of(me + 100, t, j) * 0.5f + 0.5f;
    }
    epc_placement_map(pl, idx, T, K, (int64_t)me * MAXT, slot);
    return T;
}

/* How many of n floats differ in their bits. */
static int bits_differ(const float *a, const float *b, int n)
{
    int differ = 0;
    for (int i = 0; i < n; i++)
        differ += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return differ;
}

/* One low-latency dispatch + combine of logical ids through placement pl
 * (slots mapped), experts y = (1 + e / 7) x for logical e: y into yout. */
static void ll_through(epc_ctx_t *ctx, const epc_placement_t *pl, int it, float *yout)
{
    static float x[MAXT * HIDDEN], w[MAXT * K];
    int32_t slot[MAXT * K], table[E + 64];
    epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
    epc_ll_dispatch_args_t a = EPC_LL_DISPATCH_ARGS_INIT;
    epc_ll_combine_args_t c = EPC_LL_COMBINE_ARGS_INIT;
    epc_ll_out_t o = EPC_LL_OUT_INIT;
    epc_request_t *req = NULL;
    float *eo = NULL;
    int T = rounding_inputs(pl, it, x, w, slot);
    epc_placement_info(pl, &info);
    epc_placement_table(pl, table, E + 64);
    a.x = x, a.num_tokens = T, a.topk = K, a.topk_idx = slot;
    if (epc_ll_dispatch(ctx, &a, &o, &req) != EPC_OK || epc_wait(req) != EPC_OK ||
        epc_ll_combine_buffer(ctx, &o, (void **)&eo) != EPC_OK) {
        MT_CHECK(0, "low-latency dispatch: %s", epc_last_error(ctx));
        return;
    }
    epc_request_free(req);
    for (int e = 0; e < o.num_local_experts; e++)
        for (int s = 0; s < R; s++)
            for (int i = 0; i < o.src_count[e * R + s]; i++) {
                size_t pos = (size_t)e * o.slots + (size_t)s * o.max_tokens + i;
                const float *row = (const float *)((const char *)o.rows + pos * o.row_stride);
                float gain = 1.0f + (float)table[me * info.slots_per_rank + e] / 7.0f;
                for (int h = 0; h < HIDDEN; h++)
                    eo[pos * HIDDEN + h] = row[h] * gain;
            }
    c.dispatched = &o, c.expert_out = eo, c.topk_weights = w, c.y = yout;
    MT_CHECK(epc_ll_combine(ctx, &c, &req) == EPC_OK && epc_wait(req) == EPC_OK,
             "low-latency combine: %s", epc_last_error(ctx));
    epc_request_free(req);
}

/* The low-latency combine sums by logical expert under the agreed
 * placement: replicas give the bits of the contiguous placement, with
 * inputs whose sums round. */
static void ll_replicas(void)
{
    static float y_id[MAXT * HIDDEN], y_rep[MAXT * HIDDEN];
    epc_placement_t *id = placement_of(0), *rep = placement_of(2), *perm = placement_of(1);
    epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
    epc_ctx_t *a = make_ctx(E), *b;
    epc_placement_info(rep, &info);
    b = make_ctx(info.num_slots);
    MT_CHECK(epc_ll_enable(a, MAXT) == EPC_OK && epc_ll_enable(b, MAXT) == EPC_OK, "enable: %s",
             epc_last_error(NULL));
    MT_CHECK(epc_placement_agree(b, rep) == EPC_OK, "agree: %s", epc_last_error(b));
    for (int it = 0; it < 3; it++) {
        int T = tokens_of(me, it), differ;
        memset(y_id, 0xff, sizeof y_id);
        memset(y_rep, 0xff, sizeof y_rep);
        ll_through(a, id, it, y_id);
        ll_through(b, rep, it, y_rep);
        differ = bits_differ(y_id, y_rep, T * HIDDEN);
        MT_CHECK(differ == 0, "it %d: %d values differ between replicas and none", it, differ);
    }
    /* a permuted table agreed on a context of E slots: the same bits too */
    {
        epc_ctx_t *c = make_ctx(E);
        int T = tokens_of(me, 1), differ;
        MT_CHECK(epc_ll_enable(c, MAXT) == EPC_OK && epc_placement_agree(c, perm) == EPC_OK,
                 "perm: %s", epc_last_error(c));
        ll_through(a, id, 1, y_id);
        ll_through(c, perm, 1, y_rep);
        differ = bits_differ(y_id, y_rep, T * HIDDEN);
        MT_CHECK(differ == 0, "permuted: %d values differ", differ);
        epc_ctx_destroy(c);
    }
    epc_placement_destroy(id);
    epc_placement_destroy(rep);
    epc_placement_destroy(perm);
    epc_ctx_destroy(a);
    epc_ctx_destroy(b);
}

/* One normal dispatch + combine (algo, summation order) of logical ids
 * through pl (slots mapped), inputs whose sums round, experts y = (1 + e /
 * 7) x for logical e, their outputs (mode) in a buffer of the caller's
 * (0), over the received rows (1) or in epc_combine_buffer's (2): y into
 * yout. */
static void normal_ordered(epc_ctx_t *ctx, const epc_placement_t *pl, epc_algo_t algo, int it,
                           int mode, epc_sum_order_t order, float *yout)
{
    static float x[MAXT * HIDDEN], w[MAXT * K], eo[MAXT * K * 64 * HIDDEN];
    int32_t slot[MAXT * K], table[E + 64];
    epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_handle_t *h = NULL;
    int T = rounding_inputs(pl, it, x, w, slot);
    float *buf;
    epc_placement_info(pl, &info);
    epc_placement_table(pl, table, E + 64);
    a.x = x, a.num_tokens = T, a.topk = K, a.topk_idx = slot, a.topk_weights = w, a.algo = algo;
    if (epc_dispatch(ctx, &a, &o, &h) != EPC_OK) {
        MT_CHECK(0, "dispatch: %s", epc_last_error(ctx));
        return;
    }
    buf = mode == 1 ? (float *)o.rows : eo;
    if (mode == 2)
        MT_CHECK(epc_combine_buffer(ctx, h, (void **)&buf) == EPC_OK, "buffer: %s",
                 epc_last_error(ctx));
    for (int r = 0; r < o.num_rows; r++) {
        float *row = (float *)(void *)((char *)o.rows + (size_t)r * o.row_stride);
        float gain = 1.0f + (float)table[me * info.slots_per_rank + o.local_expert[r]] / 7.0f;
        for (int hh = 0; hh < HIDDEN; hh++)
            buf[(size_t)r * HIDDEN + hh] = o.src_rank[r] < 0 ? 0.0f : row[hh] * gain;
    }
    c.expert_out = buf, c.y = yout, c.order = order;
    MT_CHECK(epc_combine(ctx, h, &c) == EPC_OK, "combine: %s", epc_last_error(ctx));
    epc_handle_destroy(h);
}

/* normal_ordered in the default order. */
static void normal_through(epc_ctx_t *ctx, const epc_placement_t *pl, epc_algo_t algo, int it,
                           int mode, float *yout)
{
    normal_ordered(ctx, pl, algo, it, mode, EPC_ORDER_NODES, yout);
}

/* Replicas on every node (a global plan), spill replicas, the table
 * permuted: with EPC_ORDER_LOGICAL the normal combine gives the bits of
 * none through hier and flat, and those of the low-latency combine. */
static void logical_order(void)
{
    static float y_id[MAXT * HIDDEN], y_ll[MAXT * HIDDEN], y[MAXT * HIDDEN];
    epc_placement_t *id = placement_of(0),
                    *pl[3] = {placement_of(5), placement_of(3), placement_of(1)};
    epc_ctx_t *a = make_ctx(E);
    int it = 44, T = tokens_of(me, it), differ;
    MT_CHECK(epc_placement_agree(a, id) == EPC_OK && epc_ll_enable(a, MAXT) == EPC_OK, "agree: %s",
             epc_last_error(a));
    memset(y_id, 0xff, sizeof y_id);
    normal_ordered(a, id, EPC_ALGO_HIER, it, me % 3, EPC_ORDER_LOGICAL, y_id);
    ll_through(a, id, it, y_ll);
    differ = bits_differ(y_id, y_ll, T * HIDDEN);
    MT_CHECK(differ == 0, "logical order: %d values differ from the low-latency combine", differ);
    for (int p = 0; p < 3; p++) {
        epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
        epc_ctx_t *b;
        epc_placement_info(pl[p], &info);
        b = make_ctx(info.num_slots);
        MT_CHECK(epc_placement_agree(b, pl[p]) == EPC_OK, "agree: %s", epc_last_error(b));
        for (int v = 0; v < 2; v++) {
            memset(y, 0xff, sizeof y);
            normal_ordered(b, pl[p], v ? EPC_ALGO_FLAT : EPC_ALGO_HIER, it, (v + me) % 3,
                           EPC_ORDER_LOGICAL, y);
            differ = bits_differ(y_id, y, T * HIDDEN);
            MT_CHECK(differ == 0, "logical order, placement %d, %s: %d values differ from none", p,
                     v ? "flat" : "hier", differ);
        }
        epc_ctx_destroy(b);
        epc_placement_destroy(pl[p]);
    }
    epc_placement_destroy(id);
    epc_ctx_destroy(a);
}

/* Node n's slots hold node block (n - 1) mod N of the router (experts
 * [b E/N, (b+1) E/N)), reversed over its ranks: every node's experts
 * together, on another node, in another order. */
static epc_placement_t *blocks_moved(void)
{
    int32_t t[E];
    int N = R / rpn, per = E / N;
    for (int s = 0; s < E; s++) {
        int n = s / per, b = (n - 1 + N) % N;
        t[s] = b * per + (per - 1 - (s - n * per));
    }
    return from_table(E, t);
}

/* The normal combine with inputs whose sums round: placements that keep
 * each node's logical experts together (planned replicas under each
 * choice; the node blocks moved to other nodes), agreed on their contexts,
 * give the bits of none, through hier and flat, each rank's outputs in
 * its own buffer, over its rows or in epc_combine_buffer's, mixed. */
static void normal_replicas(void)
{
    static float y_id[MAXT * HIDDEN], y[MAXT * HIDDEN];
    epc_placement_t *id = placement_of(0), *pl[2] = {placement_of(2), blocks_moved()};
    epc_ctx_t *a = make_ctx(E);
    static const epc_replica_choice_t choices[] = {EPC_REPLICA_NEAR, EPC_REPLICA_SPREAD,
                                                   EPC_REPLICA_BALANCED};
    MT_CHECK(epc_placement_agree(a, id) == EPC_OK, "agree: %s", epc_last_error(a));
    for (int it = 0; it < 2; it++) {
        int T = tokens_of(me, it + 40);
        memset(y_id, 0xff, sizeof y_id);
        normal_through(a, id, EPC_ALGO_HIER, it + 40, (it + me) % 3, y_id);
        for (int p = 0; p < 2; p++) {
            epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
            epc_ctx_t *b;
            epc_placement_info(pl[p], &info);
            b = make_ctx(info.num_slots);
            MT_CHECK(epc_placement_agree(b, pl[p]) == EPC_OK, "agree: %s", epc_last_error(b));
            for (int v = 0; v < 6; v++) {
                int differ;
                epc_placement_set_choice(pl[p], choices[v % 3]);
                memset(y, 0xff, sizeof y);
                normal_through(b, pl[p], v < 3 ? EPC_ALGO_HIER : EPC_ALGO_FLAT, it + 40,
                               (it + v + me) % 3, y);
                differ = bits_differ(y_id, y, T * HIDDEN);
                MT_CHECK(differ == 0,
                         "it %d placement %d, %s, choice %d: %d values differ from none", it, p,
                         v < 3 ? "hier" : "flat", v % 3, differ);
            }
            epc_ctx_destroy(b);
        }
    }
    epc_placement_destroy(id);
    epc_placement_destroy(pl[0]);
    epc_placement_destroy(pl[1]);
    epc_ctx_destroy(a);
}

/* Same table: OK; rank 0's differs: MISMATCH on all; S not the context's:
 * INVALID_ARG on all; NULL on the last rank: its error, a peer's elsewhere. */
static void agreement(void)
{
    epc_ctx_t *ctx = make_ctx(E);
    int32_t t[E];
    epc_placement_t *same, *differs;
    for (int s = 0; s < E; s++)
        t[s] = s;
    same = from_table(E, t);
    if (me == 0) {
        t[0] = 1;
        t[1] = 0;
    }
    differs = from_table(E, t);
    MT_CHECK(epc_placement_agree(ctx, same) == EPC_OK, "%s", epc_last_error(ctx));
    MT_CHECK(epc_placement_agree(ctx, differs) == EPC_ERR_MISMATCH &&
                 strstr(epc_last_error(ctx), "tables differ") != NULL,
             "differs: %s", epc_last_error(ctx));
    {
        epc_placement_t *bigger = placement_of(2);
        epc_status_t st = epc_placement_agree(ctx, bigger);
        MT_CHECK(st == EPC_ERR_INVALID_ARG && strstr(epc_last_error(ctx), "slots") != NULL,
                 "slots: %d %s", st, epc_last_error(ctx));
        epc_placement_destroy(bigger);
    }
    {
        epc_status_t st = epc_placement_agree(ctx, me == R - 1 ? NULL : same);
        MT_CHECK(me == R - 1 ? st == EPC_ERR_INVALID_ARG : st == EPC_ERR_PEER_FAILED,
                 "NULL on rank %d: %d %s", R - 1, st, epc_last_error(ctx));
    }
    MT_CHECK(epc_placement_agree(NULL, same) == EPC_ERR_INVALID_ARG, "NULL ctx");
    MT_CHECK(epc_placement_agree(ctx, same) == EPC_OK, "after: %s", epc_last_error(ctx));
    epc_placement_destroy(same);
    epc_placement_destroy(differs);
    epc_ctx_destroy(ctx);
}

/* Weights of slot s under placement pl: its expert's id in every float. */
static void fill_weights(const epc_placement_t *pl, float *w)
{
    epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
    int32_t t[E + 64];
    epc_placement_info(pl, &info);
    epc_placement_table(pl, t, E + 64);
    for (int ls = 0; ls < info.slots_per_rank; ls++)
        for (int i = 0; i < WFLOATS; i++)
            w[ls * WFLOATS + i] = (float)(t[me * info.slots_per_rank + ls] * 1000 + i);
}

static void check_moved(const epc_placement_t *to, const float *got, const char *what)
{
    static float want[(E + 64) * WFLOATS];
    epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
    int bad = 0;
    epc_placement_info(to, &info);
    fill_weights(to, want);
    for (int i = 0; i < info.slots_per_rank * WFLOATS; i++)
        bad += got[i] != want[i];
    MT_CHECK(bad == 0, "%s: %d floats wrong", what, bad);
}

static void weights(void)
{
    static float a[(E + 64) * WFLOATS], b[(E + 64) * WFLOATS], c[(E + 64) * WFLOATS];
    epc_ctx_t *ctx = make_ctx(E);
    epc_placement_t *id = placement_of(0), *perm = placement_of(1), *rep = placement_of(2);
    size_t sb = WFLOATS * sizeof(float);
    epc_status_t st;
    fill_weights(id, a);
    memset(b, 0xff, sizeof b);
    MT_CHECK(epc_placement_move_weights(ctx, id, rep, a, b, sb) == EPC_OK, "id->rep: %s",
             epc_last_error(ctx));
    check_moved(rep, b, "id->rep");
    memset(c, 0xff, sizeof c);
    MT_CHECK(epc_placement_move_weights(ctx, rep, perm, b, c, sb) == EPC_OK, "rep->perm: %s",
             epc_last_error(ctx));
    check_moved(perm, c, "rep->perm");
    /* bad arguments on one rank: its error there, a peer's elsewhere; c kept */
    memcpy(b, c, sizeof b);
    st = epc_placement_move_weights(ctx, perm, id, c, me == R - 1 ? NULL : a, sb);
    MT_CHECK(me == R - 1 ? st == EPC_ERR_INVALID_ARG : st == EPC_ERR_PEER_FAILED,
             "NULL new_weights on rank %d: %d %s", R - 1, st, epc_last_error(ctx));
    st = epc_placement_move_weights(ctx, perm, id, c, a, me == 0 ? 0 : sb);
    MT_CHECK(me == 0 ? st == EPC_ERR_INVALID_ARG : st == EPC_ERR_PEER_FAILED, "slot_bytes 0: %d",
             st);
    st = epc_placement_move_weights(ctx, perm, id, c, c + 1, sb);
    MT_CHECK(st == EPC_ERR_INVALID_ARG && strstr(epc_last_error(ctx), "overlap"), "overlap: %s",
             epc_last_error(ctx));
    st = epc_placement_move_weights(ctx, perm, id, c, a, me == 0 ? sb / 2 : sb);
    MT_CHECK(st == EPC_ERR_MISMATCH && strstr(epc_last_error(ctx), "slot_bytes"),
             "slot_bytes differ: %d %s", st, epc_last_error(ctx));
    MT_CHECK(memcmp(b, c, sizeof b) == 0, "a refused move changed old_weights");
    MT_CHECK(epc_placement_move_weights(ctx, perm, id, c, a, sb) == EPC_OK, "perm->id: %s",
             epc_last_error(ctx));
    check_moved(id, a, "perm->id");
    epc_placement_destroy(id);
    epc_placement_destroy(perm);
    epc_placement_destroy(rep);
    epc_ctx_destroy(ctx);
}

int main(int argc, char **argv)
{
    mt_init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &R);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (E % R != 0 || R > 16) {
        if (me == 0)
            fprintf(stderr, "test_placement_mpi: %d ranks do not divide %d experts\n", R, E);
        MPI_Finalize();
        return 77;
    }
    epc_ctx_destroy(make_ctx(E)); /* rpn: the job's ranks per node */
    collectives();
    ll_replicas();
    normal_replicas();
    logical_order();
    agreement();
    weights();
    return mt_finish("test_placement_mpi");
}
