/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_fp8_mpi - FP8 dispatch through both algorithms (the transport and
 * virtual nodes come from the environment): every received row's e4m3
 * bytes and scales equal the cast of its source token, which each rank
 * regenerates from (source rank, token) alone; cast, UE8M0 and
 * pre-quantised input; combine of the dequantised rows against a
 * reference sum; and the errors: an unknown payload, a missing x_scales,
 * hidden not a multiple of 128, ranks disagreeing, a cached handle
 * dispatched with another payload.
 */
#include <math.h>
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
