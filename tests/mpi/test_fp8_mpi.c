/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_fp8_mpi - FP8 dispatch through both algorithms (the transport and
 * virtual nodes come from the environment): every received row's e4m3
 * bytes and scales equal the cast of its source token, which each rank
 * regenerates from (source rank, token) alone; cast, UE8M0 and
 * pre-quantised input; combine of the dequantised rows against a
 * reference sum; and the errors: an unknown payload, a missing x_scales,
 * hidden not a multiple of 128, ranks disagreeing, a cached handle
 * dispatched with another payload.  Then combine's wires: with expert
 * outputs every rank can regenerate, y over the FP32 and the BF16 wire
 * equals, bit for bit, a reference that sums each token's rows node by
 * node in the documented order (rounding each node's sum to bf16 for the
 * BF16 wire), through hier and flat; the two
 * wires differ within the header's bound; an unknown or disagreeing wire
 * is refused on every rank.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "mpi_test.h"

enum { H = 256, NB = H / 128, K = 3, TMAX = 40 };
static int R, me;
static const size_t RB = H + NB * sizeof(float); /* an FP8 row on the wire */

static uint16_t bf16(float f) /* round to nearest even (no NaN here) */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static int tokens_of(int rank)
{
    return rank == R - 1 && R > 2 ? 0 : 7 + 5 * rank; /* the last rank of 3+ sends nothing */
}

/* Token t of rank s: each 128-block its own magnitude, so scales differ. */
static void source_row(int s, int t, uint16_t *row)
{
    for (int i = 0; i < H; i++) {
        int v = (s * 131 + t * 17 + i * 7) % 97 - 48;
        row[i] = bf16(ldexpf((float)v, (t + i / 128 + s) % 9 - 4));
    }
}

static void source_experts(int s, int t, int E, int32_t *idx)
{
    for (int j = 0; j < K; j++)
        idx[j] = (t + j) % 4 == 3 ? -1 : (s * 5 + t * 3 + j * (E / K + 1)) % E;
}

/* Checks every received row against the cast of its source token. */
static void check_rows(const epc_dispatch_out_t *o, epc_payload_t payload)
{
    uint16_t src[H];
    uint8_t q[H];
    float sc[NB];
    int bad = 0;
    MT_CHECK(o->row_stride == RB, "row_stride %zu, want %zu", o->row_stride, RB);
    MT_CHECK(o->num_rows == 0 || o->scales == (const float *)(const void *)((char *)o->rows + H),
             "scales do not follow the row");
    for (int r = 0; r < o->num_rows; r++) {
        const uint8_t *row = (const uint8_t *)o->rows + (size_t)r * RB;
        if (o->src_rank[r] < 0) {
            for (size_t i = 0; i < RB; i++)
                bad += row[i] != 0;
            continue;
        }
        source_row(o->src_rank[r], o->src_token[r], src);
        epc_fp8_quantize(src, EPC_DTYPE_BF16, 1, H, payload == EPC_PAYLOAD_FP8_UE8M0, q, H, sc,
                         sizeof sc);
        if (memcmp(row, q, H) != 0 || memcmp(row + H, sc, sizeof sc) != 0) {
            if (bad++ < 3)
                fprintf(stderr, "rank %d: row %d (rank %d token %d) differs from its cast\n", me, r,
                        o->src_rank[r], o->src_token[r]);
        }
    }
    MT_CHECK(bad == 0, "%d received rows differ from the cast of their source", bad);
}

/* Combines the dequantised rows and compares with sum_j w x deq(cast(x)). */
static void check_combine(epc_ctx_t *ctx, epc_handle_t *h, const epc_dispatch_out_t *o, int T,
                          const int32_t *idx, const float *w)
{
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    uint16_t *eo = malloc(((size_t)o->num_rows + 1) * H * 2), *y = malloc(((size_t)T + 1) * H * 2);
    uint16_t src[H], deq[H];
    uint8_t q[H];
    float sc[NB], err = 0;
    MT_CHECK(epc_fp8_dequantize(o->rows, RB, o->scales, RB, o->num_rows, H, EPC_DTYPE_BF16, eo) ==
                 EPC_OK,
             "dequantize: %s", epc_last_error(NULL));
    c.expert_out = eo, c.y = y;
    MT_CHECK(epc_combine(ctx, h, &c) == EPC_OK, "combine: %s", epc_last_error(ctx));
    for (int t = 0; t < T; t++) {
        source_row(me, t, src);
        epc_fp8_quantize(src, EPC_DTYPE_BF16, 1, H, 0, q, H, sc, sizeof sc);
        epc_fp8_dequantize(q, H, sc, sizeof sc, 1, H, EPC_DTYPE_BF16, deq);
        for (int i = 0; i < H; i++) {
            float want = 0, mag = 0, d;
            uint32_t u = (uint32_t)deq[i] << 16, g = (uint32_t)y[(size_t)t * H + i] << 16;
            float dv, gv;
            memcpy(&dv, &u, 4), memcpy(&gv, &g, 4);
            for (int j = 0; j < K; j++)
                if (idx[t * K + j] >= 0)
                    want += w[t * K + j] * dv, mag += fabsf(w[t * K + j] * dv);
            d = fabsf(gv - want) / (mag > 0 ? mag : 1);
            err = d > err ? d : err;
        }
    }
    MT_CHECK(err < 1.0f / 64, "combine of dequantised rows off by %g (relative)", (double)err);
    free(eo), free(y);
}

static void inputs(int E, int T, uint16_t *x, int32_t *idx, float *w)
{
    for (int t = 0; t < T; t++) {
        source_row(me, t, x + (size_t)t * H);
        source_experts(me, t, E, idx + t * K);
        for (int j = 0; j < K; j++)
            w[t * K + j] = 0.25f + 0.125f * (float)j;
    }
}

static void one_dispatch(epc_ctx_t *ctx, int E, epc_algo_t algo, epc_payload_t payload)
{
    int T = tokens_of(me);
    uint16_t x[TMAX * H];
    uint8_t q[TMAX * H];
    float sc[TMAX * NB], w[TMAX * K];
    int32_t idx[TMAX * K];
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h = NULL;
    inputs(E, T, x, idx, w);
    a.x = x, a.num_tokens = T, a.topk = K, a.topk_idx = idx, a.topk_weights = w, a.algo = algo;
    a.payload = payload;
    if (payload == EPC_PAYLOAD_FP8_GIVEN) {
        epc_fp8_quantize(x, EPC_DTYPE_BF16, T, H, 0, q, H, sc, sizeof sc / TMAX);
        a.x = q, a.x_scales = sc;
    }
    MT_CHECK(epc_dispatch(ctx, &a, &o, &h) == EPC_OK, "algo %d payload %d: %s", algo, payload,
             epc_last_error(ctx));
    check_rows(&o, payload == EPC_PAYLOAD_FP8_GIVEN ? EPC_PAYLOAD_FP8 : payload);
    if (payload != EPC_PAYLOAD_FP8_UE8M0)
        check_combine(ctx, h, &o, T, idx, w);
    /* the same handle again (cached) with another payload: refused on every rank */
    a.payload = EPC_PAYLOAD_NATIVE, a.x = x;
    MT_CHECK(epc_dispatch(ctx, &a, &o, &h) == EPC_ERR_INVALID_ARG &&
                 strstr(epc_last_error(ctx), "payload") != NULL,
             "cached with another payload: %s", epc_last_error(ctx));
    epc_handle_destroy(h);
}

/* want on the rank that erred (all ranks when bad < 0), PEER_FAILED elsewhere. */
static void expect_agreed(epc_ctx_t *ctx, const epc_dispatch_args_t *a, int bad, epc_status_t want,
                          const char *word)
{
    epc_dispatch_out_t o = mt_poisoned_out();
    epc_handle_t *h = NULL;
    epc_status_t st = epc_dispatch(ctx, a, &o, &h);
    if (bad < 0 || me == bad)
        MT_CHECK(st == want && strstr(epc_last_error(ctx), word) != NULL, "%s: got %s: %s", word,
                 epc_status_name(st), epc_last_error(ctx));
    else
        MT_CHECK(st == EPC_ERR_PEER_FAILED, "%s: a peer got %s", word, epc_status_name(st));
    MT_CHECK(h == NULL && o.num_rows == 0x5a5a5a5a, "%s: outputs written", word);
}

static void errors(epc_ctx_t *ctx, int E)
{
    int T = tokens_of(me);
    uint16_t x[TMAX * H];
    float w[TMAX * K];
    int32_t idx[TMAX * K];
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    inputs(E, T, x, idx, w);
    a.x = x, a.num_tokens = T, a.topk = K, a.topk_idx = idx;
    a.payload = me == R - 1 ? (epc_payload_t)9 : EPC_PAYLOAD_FP8;
    expect_agreed(ctx, &a, R - 1, EPC_ERR_INVALID_ARG, "payload");
    a.payload = me == 0 ? EPC_PAYLOAD_FP8_GIVEN : EPC_PAYLOAD_FP8;
    a.num_tokens = me == 0 ? 1 : T; /* a rank with no tokens may leave x_scales NULL */
    expect_agreed(ctx, &a, 0, EPC_ERR_INVALID_ARG, "x_scales");
    a.num_tokens = T;
    a.payload = me == 0 ? EPC_PAYLOAD_FP8 : EPC_PAYLOAD_NATIVE;
    expect_agreed(ctx, &a, -1, EPC_ERR_MISMATCH, "fp8");
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float round_bf16(float f)
{
    return from_bf16(bf16(f));
}

/* Expert e's output for (source s, token t), element i: what every rank
 * can regenerate. */
static float expert_value(int e, int s, int t, int i)
{
    return round_bf16((float)((e * 29 + s * 13 + t * 7 + i * 3) % 61 - 30) / 7.0f);
}

/* The reference y of token t (k slots idx, weights w) over the given wire:
 * the token's experts grouped by node, the groups in the order of their
 * lowest expert; per group the fp32 sum of w x out by expert ascending;
 * y the sum of the groups' sums in that order, each rounded to bf16 for
 * the BF16 wire (as it leaves its node). */
static void reference_y(const epc_topo_t *topo, int E, int t, const int32_t *idx, const float *w,
                        int bf16w, float *y)
{
    int epr = E / R, node_of_e[512];
    for (int e = 0; e < E; e++)
        epc_topo_node_of(topo, e / epr, &node_of_e[e]);
    for (int i = 0; i < H; i++) {
        float acc = 0;
        uint64_t done = 0; /* nodes summed: they are numbered below R <= 64 */
        for (int e0 = 0; e0 < E; e0++) {
            int picked = 0, has = 0;
            float ns = 0;
            for (int j = 0; j < K; j++)
                picked |= idx[j] == e0;
            if (!picked || (done >> node_of_e[e0] & 1))
                continue;
            for (int e = e0; e < E; e++)
                for (int j = 0; j < K && node_of_e[e] == node_of_e[e0]; j++)
                    if (idx[j] == e) {
                        ns = (has ? ns : 0.0f) + w[j] * expert_value(e, me, t, i);
                        has = 1;
                    }
            acc += bf16w ? round_bf16(ns) : ns;
            done |= 1ull << node_of_e[e0];
        }
        y[i] = acc;
    }
}

/* Combines regenerable expert outputs over both wires and both algorithms. */
static void combine_wires(epc_ctx_t *ctx, int E)
{
    const epc_topo_t *topo;
    int T = tokens_of(me), wrong = 0, over = 0;
    uint16_t x[TMAX * H], *y[2][2];
    float w[TMAX * K], ref[H];
    int32_t idx[TMAX * K];
    epc_ctx_topo(ctx, &topo);
    inputs(E, T, x, idx, w);
    for (int algo = 0; algo < 2; algo++)
        for (int wire = 0; wire < 2; wire++) {
            epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
            epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
            epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
            epc_handle_t *h = NULL;
            uint16_t *eo;
            a.x = x, a.num_tokens = T, a.topk = K, a.topk_idx = idx, a.topk_weights = w;
            a.algo = algo ? EPC_ALGO_FLAT : EPC_ALGO_HIER;
            MT_CHECK(epc_dispatch(ctx, &a, &o, &h) == EPC_OK, "%s", epc_last_error(ctx));
            eo = malloc(((size_t)o.num_rows + 1) * H * 2);
            y[algo][wire] = malloc(((size_t)T + 1) * H * 2);
            for (int r = 0; r < o.num_rows; r++)
                for (int i = 0; i < H; i++)
                    eo[(size_t)r * H + i] =
                        o.src_rank[r] < 0 ? 0
                                          : bf16(expert_value(me * (E / R) + o.local_expert[r],
                                                              o.src_rank[r], o.src_token[r], i));
            c.expert_out = eo, c.y = y[algo][wire], c.wire = wire ? EPC_WIRE_BF16 : EPC_WIRE_FP32;
            MT_CHECK(epc_combine(ctx, h, &c) == EPC_OK, "wire %d: %s", wire, epc_last_error(ctx));
            epc_handle_destroy(h);
            free(eo);
        }
    for (int t = 0; t < T; t++)
        for (int wire = 0; wire < 2; wire++) {
            reference_y(topo, E, t, idx + t * K, w + t * K, wire, ref);
            for (int i = 0; i < H; i++) {
                uint16_t want = bf16(ref[i]);
                wrong += y[0][wire][(size_t)t * H + i] != want;
                wrong += y[1][wire][(size_t)t * H + i] != want;
            }
        }
    MT_CHECK(wrong == 0, "%d elements differ from the reference (hier and flat, both wires)",
             wrong);
    for (int t = 0; t < T; t++) /* the two wires within the header's bound (+ y's rounding) */
        for (int i = 0; i < H; i++) {
            double mag = 0, d = fabs((double)from_bf16(y[0][0][(size_t)t * H + i]) -
                                     from_bf16(y[0][1][(size_t)t * H + i]));
            for (int j = 0; j < K; j++)
                if (idx[t * K + j] >= 0)
                    mag += fabs(w[t * K + j] * expert_value(idx[t * K + j], me, t, i));
            over += d > mag * (1.0 / 256) * (1 + 1e-6) +
                            fabs(from_bf16(y[0][0][(size_t)t * H + i])) / 128;
        }
    MT_CHECK(over == 0, "%d elements: the BF16 wire beyond its bound", over);
    for (int i = 0; i < 4; i++)
        free(y[i / 2][i % 2]);
}

/* The order: unknown on one rank (its error, a peer's elsewhere); ranks
 * disagreeing (EPC_ERR_MISMATCH on all); LOGICAL with the BF16 wire on
 * one rank (no node sums to round); 0.8's layout, which ends before it,
 * still accepted (NODES).  y untouched by every failure. */
static void order_errors(epc_ctx_t *ctx, epc_handle_t *h, epc_combine_args_t *c, uint16_t *y)
{
    int T = tokens_of(me);
    epc_status_t st;
    c->wire = EPC_WIRE_FP32, c->order = me == 0 ? (epc_sum_order_t)5 : EPC_ORDER_LOGICAL;
    st = epc_combine(ctx, h, c);
    MT_CHECK(me == 0 ? st == EPC_ERR_INVALID_ARG && strstr(epc_last_error(ctx), "order")
                     : st == EPC_ERR_PEER_FAILED,
             "unknown order: %s: %s", epc_status_name(st), epc_last_error(ctx));
    c->order = me == 0 ? EPC_ORDER_LOGICAL : EPC_ORDER_NODES;
    st = epc_combine(ctx, h, c);
    MT_CHECK(R == 1 || (st == EPC_ERR_MISMATCH && strstr(epc_last_error(ctx), "order")),
             "disagreeing orders: %s: %s", epc_status_name(st), epc_last_error(ctx));
    c->order = EPC_ORDER_LOGICAL, c->wire = me == R - 1 ? EPC_WIRE_BF16 : EPC_WIRE_FP32;
    st = epc_combine(ctx, h, c);
    MT_CHECK(me == R - 1 ? st == EPC_ERR_INVALID_ARG && strstr(epc_last_error(ctx), "order")
                         : st == EPC_ERR_PEER_FAILED,
             "BF16 wire with the logical order: %s: %s", epc_status_name(st), epc_last_error(ctx));
    MT_CHECK(T == 0 || y[0] == 0x5a5a, "y written by a failed combine");
    c->size = offsetof(epc_combine_args_t, order), c->wire = EPC_WIRE_FP32;
    c->order = (epc_sum_order_t)5; /* past the caller's size: never read */
    st = epc_combine(ctx, h, c);
    MT_CHECK(st == EPC_OK, "0.8's combine args: %s: %s", epc_status_name(st), epc_last_error(ctx));
    c->size = sizeof *c, c->order = EPC_ORDER_NODES;
}

/* An unknown wire on one rank; ranks disagreeing on it. */
static void wire_errors(epc_ctx_t *ctx, int E)
{
    int T = tokens_of(me);
    uint16_t x[TMAX * H], *eo, y[TMAX * H];
    float w[TMAX * K];
    int32_t idx[TMAX * K];
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_handle_t *h = NULL;
    epc_status_t st;
    inputs(E, T, x, idx, w);
    a.x = x, a.num_tokens = T, a.topk = K, a.topk_idx = idx;
    MT_CHECK(epc_dispatch(ctx, &a, &o, &h) == EPC_OK, "%s", epc_last_error(ctx));
    eo = calloc((size_t)o.num_rows + 1, H * 2);
    memset(y, 0x5a, sizeof y);
    c.expert_out = eo, c.y = y, c.wire = me == 0 ? (epc_wire_t)7 : EPC_WIRE_BF16;
    st = epc_combine(ctx, h, &c);
    MT_CHECK(me == 0 ? st == EPC_ERR_INVALID_ARG && strstr(epc_last_error(ctx), "wire")
                     : st == EPC_ERR_PEER_FAILED,
             "unknown wire: %s: %s", epc_status_name(st), epc_last_error(ctx));
    c.wire = me == 0 ? EPC_WIRE_BF16 : EPC_WIRE_FP32;
    st = epc_combine(ctx, h, &c);
    MT_CHECK(R == 1 || (st == EPC_ERR_MISMATCH && strstr(epc_last_error(ctx), "wire")),
             "disagreeing wires: %s: %s", epc_status_name(st), epc_last_error(ctx));
    MT_CHECK(T == 0 || y[0] == 0x5a5a, "y written by a failed combine");
    order_errors(ctx, h, &c, y);
    epc_handle_destroy(h);
    free(eo);
}

static epc_ctx_t *context(int E, int hidden)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_ctx_t *ctx = NULL;
    p.num_experts = E, p.hidden = hidden, p.dtype = EPC_DTYPE_BF16;
    p.max_tokens_per_rank = TMAX, p.max_topk = K, p.timeout_ms = 60000;
    MT_CHECK(epc_ctx_create(MPI_COMM_WORLD, &p, &ctx) == EPC_OK, "create: %s",
             epc_last_error(NULL));
    return ctx;
}

int main(int argc, char **argv)
{
    epc_ctx_t *ctx;
    int E;
    mt_init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &R);
    me = mt_rank;
    E = 4 * R;
    if ((ctx = context(E, H)) == NULL)
        return mt_finish("fp8");
    for (int algo = EPC_ALGO_HIER; algo <= EPC_ALGO_FLAT; algo++)
        for (int p = EPC_PAYLOAD_FP8; p <= EPC_PAYLOAD_FP8_GIVEN; p++)
            one_dispatch(ctx, E, (epc_algo_t)algo, (epc_payload_t)p);
    errors(ctx, E);
    combine_wires(ctx, E);
    wire_errors(ctx, E);
    epc_ctx_destroy(ctx);
    if ((ctx = context(E, 192)) != NULL) { /* hidden not a multiple of 128 */
        uint16_t x[H] = {0};
        int32_t idx[K] = {0, 1, 2};
        epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
        a.x = x, a.num_tokens = 1, a.topk = K, a.topk_idx = idx, a.payload = EPC_PAYLOAD_FP8;
        expect_agreed(ctx, &a, -1, EPC_ERR_INVALID_ARG, "hidden");
        epc_ctx_destroy(ctx);
    }
    return mt_finish("fp8");
}
