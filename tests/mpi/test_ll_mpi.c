/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_ll_mpi - the low-latency mode (epc_ll_*) as the header promises:
 *  - every received row, its source token, every count and per-source
 *    count against an independent reference (each rank regenerates every
 *    rank's tokens and routing), rows encoding (rank, token, element);
 *  - combine bitwise against a reference sum in the promised order
 *    (expert id ascending, fp32 from 0, one rounding), with weights that
 *    are not exact, outputs poisoned first; outputs from the context's
 *    buffer (no copy) and from the caller's;
 *  - T = 0 and T = max_tokens, two dispatches in flight on the two
 *    buffer sets, FP8 rows and scales (cast here, given, UE8M0) against
 *    epc_fp8_quantize;
 *  - every bad argument: its status naming the argument, on every rank
 *    when all pass it, on one (and a peer error naming it elsewhere), and
 *    the mode still working afterwards.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_test.h"

#define EPR 3
#define HIDDEN 256
#define TOPK 4
#define MAXT 12

static int nranks, E;

static uint16_t bf16_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1); /* nearest even (no NaN here) */
    return (uint16_t)(u >> 16);
}
static float f32_of(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Element h of rank s's token t in call c: small integers, exact in bf16. */
static uint16_t x_elem(int s, int t, int h, int c)
{
    return bf16_of((float)((s * 37 + t * 11 + h * 3 + c * 5) % 61 - 30));
}

static unsigned mix(unsigned a)
{
    a ^= a >> 16;
    a *= 0x7feb352dU;
    a ^= a >> 15;
    a *= 0x846ca68bU;
    return a ^ (a >> 16);
}

/* Rank s's T in call c: 0 and MAXT appear among the ranks. */
static int tokens_of(int s, int c)
{
    if (s == (c % nranks))
        return MAXT;
    if (s == ((c + 1) % nranks) && nranks > 1)
        return 0;
    return (int)(mix((unsigned)(s * 131 + c)) % (MAXT + 1));
}

/* Rank s's topk_idx of token t in call c: distinct experts, some -1. */
static void idx_of(int s, int t, int c, int32_t *idx)
{
    for (int j = 0; j < TOPK; j++) {
        unsigned h = mix((unsigned)((s * 1000 + t) * 16 + j) ^ (unsigned)c * 7919U);
        int g = (h % 5 == 0) ? -1 : (int)(h / 5 % (unsigned)E), dup = 0;
        for (int i = 0; i < j; i++)
            dup |= g >= 0 && idx[i] == g;
        idx[j] = dup ? -1 : g;
    }
}

static float weight_of(int s, int t, int j)
{
    return 0.1f + (float)(mix((unsigned)(s * 7 + t * 13 + j)) % 1000) / 997.0f;
}

/* An expert's output of a received row: the row times (g % 5 + 1). */
static uint16_t out_elem(uint16_t in, int g)
{
    return bf16_of(f32_of(in) * (float)(g % 5 + 1));
}

typedef struct call {
    int c, T, fp8; /* fp8: the epc_payload_t (0: native) */
    uint16_t *x;
    int32_t *idx;
    float *w;
    epc_ll_out_t out;
    epc_request_t *req;
} call_t;

static void make_call(call_t *k, int c, int fp8)
{
    k->c = c;
    k->fp8 = fp8;
    k->T = tokens_of(mt_rank, c);
    k->x = malloc((size_t)(k->T + 1) * HIDDEN * 2);
    k->idx = malloc((size_t)(k->T + 1) * TOPK * 4);
    k->w = malloc((size_t)(k->T + 1) * TOPK * 4);
    for (int t = 0; t < k->T; t++) {
        for (int h = 0; h < HIDDEN; h++)
            k->x[(size_t)t * HIDDEN + h] = x_elem(mt_rank, t, h, c);
        idx_of(mt_rank, t, c, k->idx + (size_t)t * TOPK);
        for (int j = 0; j < TOPK; j++)
            k->w[(size_t)t * TOPK + j] = weight_of(mt_rank, t, j);
    }
    memset(&k->out, 0x5a, sizeof k->out);
    k->out.size = sizeof k->out;
}

static void free_call(call_t *k)
{
    free(k->x);
    free(k->idx);
    free(k->w);
}

static epc_status_t start_dispatch(epc_ctx_t *ctx, call_t *k)
{
    epc_ll_dispatch_args_t a = EPC_LL_DISPATCH_ARGS_INIT;
    a.x = k->x;
    a.num_tokens = k->T;
    a.topk = TOPK;
    a.topk_idx = k->idx;
    a.payload = (epc_payload_t)k->fp8;
    if (k->fp8 == EPC_PAYLOAD_FP8_GIVEN) { /* cast here: rows and scales as given */
        static uint8_t q[MAXT * HIDDEN];
        static float sc[MAXT * HIDDEN / 128];
        epc_fp8_quantize(k->x, EPC_DTYPE_BF16, k->T, HIDDEN, 0, q, HIDDEN, sc,
                         HIDDEN / 128 * sizeof(float));
        a.x = q, a.x_scales = sc;
    }
    return epc_ll_dispatch(ctx, &a, &k->out, &k->req);
}

static epc_status_t finish(epc_request_t **req)
{
    epc_status_t st = epc_wait(*req);
    epc_request_free(*req);
    *req = NULL;
    return st;
}

/* Checks one received row (e, slot) against source s's token t. */
static int row_ok(const call_t *k, const char *row, int s, int t)
{
    uint16_t src[HIDDEN];
    for (int h = 0; h < HIDDEN; h++)
        src[h] = x_elem(s, t, h, k->c);
    if (!k->fp8)
        return memcmp(row, src, sizeof src) == 0;
    {
        uint8_t q[HIDDEN];
        float sc[HIDDEN / 128];
        epc_fp8_quantize(src, EPC_DTYPE_BF16, 1, HIDDEN, k->fp8 == EPC_PAYLOAD_FP8_UE8M0, q, HIDDEN,
                         sc, sizeof sc);
        return memcmp(row, q, HIDDEN) == 0 && memcmp(row + HIDDEN, sc, sizeof sc) == 0;
    }
}

/* The dispatch's out against the reference: every source's tokens to
 * this rank's experts, in token order, at their fixed places. */
static void check_dispatch(const call_t *k)
{
    const epc_ll_out_t *o = &k->out;
    int32_t idx[TOPK];
    int bad_rows = 0, bad_counts = 0;
    MT_CHECK(o->num_local_experts == EPR && o->max_tokens == MAXT && o->slots == nranks * MAXT,
             "shape %d %d %d", o->num_local_experts, o->max_tokens, o->slots);
    MT_CHECK((o->scales != NULL) == (k->fp8 != 0), "scales %p with payload %d",
             (const void *)o->scales, k->fp8);
    for (int e = 0; e < EPR; e++) {
        int g = mt_rank * EPR + e, total = 0;
        for (int s = 0; s < nranks; s++) {
            int n = 0;
            for (int t = 0; t < tokens_of(s, k->c); t++) {
                idx_of(s, t, k->c, idx);
                for (int j = 0; j < TOPK; j++) {
                    size_t pos = (size_t)e * o->slots + (size_t)s * MAXT + n;
                    if (idx[j] != g)
                        continue;
                    bad_rows += o->src_token[pos] != t ||
                                !row_ok(k, (const char *)o->rows + pos * o->row_stride, s, t);
                    n++;
                }
            }
            bad_counts += o->src_count[e * nranks + s] != n;
            total += n;
        }
        bad_counts += o->count[e] != total;
    }
    MT_CHECK(bad_rows == 0 && bad_counts == 0, "call %d: %d rows, %d counts wrong", k->c, bad_rows,
             bad_counts);
}

/* The experts: out = row x (g % 5 + 1), at the row's place in `dst`. */
static void run_experts(const call_t *k, uint16_t *dst)
{
    const epc_ll_out_t *o = &k->out;
    for (int e = 0; e < EPR; e++)
        for (int s = 0; s < nranks; s++)
            for (int i = 0; i < o->src_count[e * nranks + s]; i++) {
                size_t pos = (size_t)e * o->slots + (size_t)s * MAXT + i;
                int t = o->src_token[pos];
                for (int h = 0; h < HIDDEN; h++)
                    dst[pos * HIDDEN + h] = out_elem(x_elem(s, t, h, k->c), mt_rank * EPR + e);
            }
}

/* y against the promised sum: experts ascending, fp32 from 0. */
static void check_combine(const call_t *k, const uint16_t *y)
{
    int bad = 0;
    for (int t = 0; t < k->T; t++) {
        const int32_t *idx = k->idx + (size_t)t * TOPK;
        for (int h = 0; h < HIDDEN; h++) {
            float acc = 0;
            uint16_t got = y[(size_t)t * HIDDEN + h], want;
            for (int g = 0; g < E; g++)
                for (int j = 0; j < TOPK; j++)
                    if (idx[j] == g)
                        acc += k->w[(size_t)t * TOPK + j] *
                               f32_of(out_elem(x_elem(mt_rank, t, h, k->c), g));
            want = bf16_of(acc);
            /* the sign of a zero sum is not promised */
            bad += got != want && !((got | want) == 0x8000 || (got == 0 && want == 0x8000));
        }
    }
    MT_CHECK(bad == 0, "call %d: %d of %d combined elements differ", k->c, bad, k->T * HIDDEN);
}

/* Experts and combine of call k (own buffer when zero_copy is 0). */
static void combine_call(epc_ctx_t *ctx, call_t *k, int zero_copy)
{
    epc_ll_combine_args_t a = EPC_LL_COMBINE_ARGS_INIT;
    uint16_t *eo = NULL, *own = NULL, *y = malloc((size_t)(k->T + 1) * HIDDEN * 2);
    epc_status_t st;
    memset(y, 0xff, (size_t)(k->T + 1) * HIDDEN * 2);
    if (zero_copy) {
        st = epc_ll_combine_buffer(ctx, &k->out, (void **)&eo);
        MT_CHECK(st == EPC_OK, "combine_buffer: %s", epc_last_error(ctx));
    } else {
        eo = own = malloc((size_t)EPR * nranks * MAXT * HIDDEN * 2);
    }
    run_experts(k, eo);
    a.dispatched = &k->out;
    a.expert_out = eo;
    a.topk_weights = k->w;
    a.y = y;
    st = epc_ll_combine(ctx, &a, &k->req);
    MT_CHECK(st == EPC_OK, "combine start: %s", epc_last_error(ctx));
    if (st == EPC_OK) {
        st = finish(&k->req);
        MT_CHECK(st == EPC_OK, "combine call %d: %s", k->c, epc_last_error(ctx));
        if (st == EPC_OK)
            check_combine(k, y);
    }
    free(own);
    free(y);
}

/* One call, dispatch to combine. */
static void one_call(epc_ctx_t *ctx, int c, int fp8, int zero_copy)
{
    call_t k;
    epc_status_t st;
    make_call(&k, c, fp8);
    st = start_dispatch(ctx, &k);
    MT_CHECK(st == EPC_OK, "dispatch start: %s", epc_last_error(ctx));
    if (st == EPC_OK && (st = finish(&k.req)) == EPC_OK) {
        check_dispatch(&k);
        combine_call(ctx, &k, zero_copy);
    }
    MT_CHECK(st == EPC_OK, "dispatch call %d: %s", c, epc_last_error(ctx));
    free_call(&k);
}

/* Two microbatches: both dispatches in flight on the two buffer sets. */
static void two_in_flight(epc_ctx_t *ctx, int c)
{
    call_t a, b;
    make_call(&a, c, 0);
    make_call(&b, c + 1, 0);
    MT_CHECK(start_dispatch(ctx, &a) == EPC_OK, "a: %s", epc_last_error(ctx));
    MT_CHECK(start_dispatch(ctx, &b) == EPC_OK, "b: %s", epc_last_error(ctx));
    MT_CHECK(finish(&a.req) == EPC_OK, "a wait: %s", epc_last_error(ctx));
    check_dispatch(&a);
    combine_call(ctx, &a, 1);
    MT_CHECK(finish(&b.req) == EPC_OK, "b wait: %s", epc_last_error(ctx));
    check_dispatch(&b);
    combine_call(ctx, &b, 0);
    free_call(&a);
    free_call(&b);
}

/* `got` is `want` and the text names `word`. */
static void expect(epc_status_t got, epc_status_t want, const epc_ctx_t *ctx, const char *word,
                   const char *what)
{
    const char *text = epc_last_error(ctx);
    MT_CHECK(got == want && strstr(text, word) != NULL, "%s: got %s, want %s naming '%s': %s", what,
             epc_status_name(got), epc_status_name(want), word, text);
}

/* A dispatch whose arguments fail on `who` (-1: every rank): that rank
 * gets want naming word, the others a peer error naming it; out stays
 * poisoned everywhere. */
static void bad_dispatch(epc_ctx_t *ctx, int who, epc_ll_dispatch_args_t *bad, epc_status_t want,
                         const char *word, const char *what)
{
    call_t k;
    char peer[32];
    epc_ll_out_t poison;
    epc_ll_dispatch_args_t good = EPC_LL_DISPATCH_ARGS_INIT;
    epc_status_t st;
    make_call(&k, 900, 0);
    poison = k.out;
    good.x = k.x;
    good.num_tokens = k.T;
    good.topk = TOPK;
    good.topk_idx = k.idx;
    st = epc_ll_dispatch(ctx, who < 0 || who == mt_rank ? bad : &good, &k.out, &k.req);
    MT_CHECK(st == EPC_OK, "%s: start: %s", what, epc_last_error(ctx));
    st = finish(&k.req);
    snprintf(peer, sizeof peer, "rank %d", who);
    if (who < 0 || who == mt_rank)
        expect(st, want, ctx, word, what);
    else
        expect(st, EPC_ERR_PEER_FAILED, ctx, peer, what);
    MT_CHECK(memcmp(&k.out, &poison, sizeof poison) == 0, "%s: out written", what);
    free_call(&k);
}

static void bad_dispatches(epc_ctx_t *ctx)
{
    int32_t idx[MAXT * TOPK] = {0};
    uint16_t x[(MAXT + 1) * HIDDEN];
    epc_ll_dispatch_args_t a = EPC_LL_DISPATCH_ARGS_INIT, b;
    int one = 1 % nranks;
    memset(x, 0, sizeof x);
    for (int t = 0; t < MAXT; t++)
        for (int j = 0; j < TOPK; j++)
            idx[t * TOPK + j] = (t + j) % E;
    a.x = x, a.num_tokens = 2, a.topk = TOPK, a.topk_idx = idx;
    b = a, b.num_tokens = MAXT + 1;
    bad_dispatch(ctx, one, &b, EPC_ERR_CAPACITY, "num_tokens", "T above max_tokens on one");
    b = a, b.num_tokens = -1;
    bad_dispatch(ctx, -1, &b, EPC_ERR_INVALID_ARG, "num_tokens", "T < 0");
    b = a, b.topk = 0;
    bad_dispatch(ctx, one, &b, EPC_ERR_INVALID_ARG, "topk", "topk 0");
    b = a, b.topk = TOPK + 1;
    bad_dispatch(ctx, -1, &b, EPC_ERR_INVALID_ARG, "topk", "topk above max_topk");
    b = a, b.x = NULL;
    bad_dispatch(ctx, one, &b, EPC_ERR_INVALID_ARG, "x", "x NULL");
    b = a, b.topk_idx = NULL;
    bad_dispatch(ctx, -1, &b, EPC_ERR_INVALID_ARG, "topk_idx", "topk_idx NULL");
    b = a, b.payload = (epc_payload_t)9;
    bad_dispatch(ctx, one, &b, EPC_ERR_INVALID_ARG, "payload", "payload 9");
    b = a, b.payload = EPC_PAYLOAD_FP8_GIVEN;
    bad_dispatch(ctx, -1, &b, EPC_ERR_INVALID_ARG, "x_scales", "FP8_GIVEN without scales");
    b = a, b.size = 3;
    bad_dispatch(ctx, one, &b, EPC_ERR_INVALID_ARG, "size", "unknown size");
    idx[1] = E;
    bad_dispatch(ctx, -1, &a, EPC_ERR_INVALID_ARG, "topk_idx", "expert id E");
    idx[1] = idx[0];
    bad_dispatch(ctx, one, &a, EPC_ERR_INVALID_ARG, "twice", "expert repeated");
    idx[1] = (1 + 0) % E;
    bad_dispatch(ctx, -1, NULL, EPC_ERR_INVALID_ARG, "args", "args NULL");
}

/* One rank's rows in FP8, the others' native: every rank gets
 * EPC_ERR_MISMATCH naming the payload, out untouched. */
static void payload_mismatch(epc_ctx_t *ctx)
{
    call_t k;
    epc_ll_out_t poison;
    make_call(&k, 901, mt_rank == 1 % nranks ? EPC_PAYLOAD_FP8 : EPC_PAYLOAD_NATIVE);
    poison = k.out;
    MT_CHECK(start_dispatch(ctx, &k) == EPC_OK, "start: %s", epc_last_error(ctx));
    if (nranks > 1)
        expect(finish(&k.req), EPC_ERR_MISMATCH, ctx, "payload", "payload kinds differ");
    else
        MT_CHECK(finish(&k.req) == EPC_OK, "one rank: %s", epc_last_error(ctx));
    MT_CHECK(nranks == 1 || memcmp(&k.out, &poison, sizeof poison) == 0, "out written");
    free_call(&k);
}

/* The calls refused at the start (nothing posted, local). */
static void refused_starts(epc_ctx_t *ctx)
{
    epc_ll_dispatch_args_t a = EPC_LL_DISPATCH_ARGS_INIT;
    epc_ll_combine_args_t c = EPC_LL_COMBINE_ARGS_INIT;
    epc_ll_out_t o = EPC_LL_OUT_INIT;
    size_t bytes = 0;
    void *buf = NULL;
    expect(epc_ll_dispatch(ctx, &a, &o, NULL), EPC_ERR_INVALID_ARG, ctx, "req", "req NULL");
    expect(epc_ll_combine(ctx, &c, NULL), EPC_ERR_INVALID_ARG, ctx, "req", "combine req NULL");
    expect(epc_ll_dispatch(NULL, &a, &o, NULL), EPC_ERR_INVALID_ARG, NULL, "ctx", "ctx NULL");
    expect(epc_ll_buffer_size(ctx, 0, &bytes), EPC_ERR_INVALID_ARG, ctx, "max_tokens", "size 0");
    expect(epc_ll_buffer_size(ctx, 65537, &bytes), EPC_ERR_INVALID_ARG, ctx, "max_tokens",
           "size 65537");
    MT_CHECK(bytes == 0, "a refused buffer size wrote %zu", bytes);
    expect(epc_ll_buffer_size(ctx, 8, NULL), EPC_ERR_INVALID_ARG, ctx, "bytes", "bytes NULL");
    expect(epc_ll_buffer_size(NULL, 8, &bytes), EPC_ERR_INVALID_ARG, NULL, "ctx", "size ctx");
    expect(epc_ll_combine_buffer(ctx, NULL, &buf), EPC_ERR_INVALID_ARG, ctx, "dispatched",
           "combine_buffer NULL");
    expect(epc_ll_combine_buffer(ctx, &o, NULL), EPC_ERR_INVALID_ARG, ctx, "buf", "buf NULL");
    expect(epc_ll_combine_buffer(ctx, &o, &buf), EPC_ERR_INVALID_ARG, ctx, "dispatched",
           "combine_buffer of nothing");
}

static int progress_thread(void)
{
    const char *p = getenv("EPC_PROGRESS");
    return p != NULL && strcmp(p, "thread") == 0;
}

/* Rows rank `one` received in k (known to every rank). */
static int rows_on(const call_t *k, int one)
{
    int rows = 0;
    for (int e = 0; mt_rank == one && e < EPR; e++)
        rows += k->out.count[e];
    MPI_Bcast(&rows, 1, MPI_INT, one, MPI_COMM_WORLD);
    return rows;
}

/* A combine whose arguments fail on rank `one` (bad: 0 args NULL, 1 an
 * unknown size, 2 expert_out NULL with rows, 3 y NULL with tokens, 4 a
 * stale `dispatched`): it gets EPC_ERR_INVALID_ARG naming the argument,
 * every other rank a peer error naming it, and no rank's y is written. */
static void bad_combine_args(epc_ctx_t *ctx, int c, int bad)
{
    static const char *const word[] = {"args", "size", "expert_out", "y", "dispatched"};
    call_t k;
    epc_ll_combine_args_t a = EPC_LL_COMBINE_ARGS_INIT, b;
    epc_ll_out_t stale;
    size_t ybytes = (MAXT + 1) * HIDDEN * 2;
    uint16_t *y = malloc(ybytes), *eo = NULL;
    unsigned char *poison = malloc(ybytes);
    char peer[32];
    epc_status_t st;
    int one = 1 % nranks;
    make_call(&k, c, 0);
    MT_CHECK(start_dispatch(ctx, &k) == EPC_OK && finish(&k.req) == EPC_OK, "dispatch: %s",
             epc_last_error(ctx));
    MT_CHECK(k.T > 0 || mt_rank != one, "call %d: rank %d has no tokens", c, one);
    MT_CHECK(rows_on(&k, one) > 0, "call %d: rank %d received no rows", c, one);
    MT_CHECK(epc_ll_combine_buffer(ctx, &k.out, (void **)&eo) == EPC_OK, "buffer: %s",
             epc_last_error(ctx));
    run_experts(&k, eo);
    memset(y, 0x3c, ybytes), memset(poison, 0x3c, ybytes);
    a.dispatched = &k.out, a.expert_out = eo, a.topk_weights = k.w, a.y = y;
    b = a;
    if (bad == 1)
        b.size = 5;
    else if (bad == 2)
        b.expert_out = NULL;
    else if (bad == 3)
        b.y = NULL;
    else if (bad == 4) {
        stale = k.out;
        stale.call += 2; /* a dispatch that never was */
        b.dispatched = &stale;
    }
    st = epc_ll_combine(ctx, mt_rank != one ? &a : bad == 0 ? NULL : &b, &k.req);
    MT_CHECK(st == EPC_OK, "bad combine %d: start: %s", bad, epc_last_error(ctx));
    st = finish(&k.req);
    snprintf(peer, sizeof peer, "rank %d", one);
    if (mt_rank == one)
        expect(st, EPC_ERR_INVALID_ARG, ctx, word[bad], word[bad]);
    else
        expect(st, EPC_ERR_PEER_FAILED, ctx, peer, word[bad]);
    MT_CHECK(memcmp(y, poison, ybytes) == 0, "bad combine %d: y written", bad);
    free_call(&k);
    free(y), free(poison);
}

/* Refused at the start, nothing posted, on every rank: a second combine
 * of a dispatch whose combine is in flight, and any call while the
 * caller holds the context's two requests.  The calls go on afterwards. */
static void held_refusals(epc_ctx_t *ctx, int c)
{
    call_t a, b, n;
    epc_ll_combine_args_t args = EPC_LL_COMBINE_ARGS_INIT;
    uint16_t *y = malloc((MAXT + 1) * HIDDEN * 2), *eo = NULL;
    epc_request_t *comb = NULL, *again = NULL;
    make_call(&a, c, 0), make_call(&b, c + 1, 0), make_call(&n, c + 2, 0);
    n.req = NULL;
    MT_CHECK(start_dispatch(ctx, &a) == EPC_OK && start_dispatch(ctx, &b) == EPC_OK,
             "two dispatches: %s", epc_last_error(ctx));
    expect(start_dispatch(ctx, &n), EPC_ERR_CAPACITY, ctx, "2 requests", "a third request");
    MT_CHECK(n.req == NULL, "a refused dispatch returned a request");
    MT_CHECK(finish(&a.req) == EPC_OK && finish(&b.req) == EPC_OK, "waits: %s",
             epc_last_error(ctx));
    check_dispatch(&a), check_dispatch(&b);
    MT_CHECK(epc_ll_combine_buffer(ctx, &a.out, (void **)&eo) == EPC_OK, "buffer: %s",
             epc_last_error(ctx));
    run_experts(&a, eo);
    args.dispatched = &a.out, args.expert_out = eo, args.topk_weights = a.w, args.y = y;
    MT_CHECK(epc_ll_combine(ctx, &args, &comb) == EPC_OK, "combine a: %s", epc_last_error(ctx));
    if (!progress_thread()) /* the thread may have finished it on some ranks */
        expect(epc_ll_combine(ctx, &args, &again), EPC_ERR_CAPACITY, ctx, "in flight",
               "the same combine twice in flight");
    MT_CHECK(again == NULL, "a refused combine returned a request");
    MT_CHECK(finish(&comb) == EPC_OK, "combine a: %s", epc_last_error(ctx));
    check_combine(&a, y);
    combine_call(ctx, &b, 1);
    free_call(&a), free_call(&b), free_call(&n);
    free(y);
}

/* A combine in flight holds its buffer set: the dispatch two after its
 * dispatch is refused at the start (nothing posted) until it completes;
 * a dispatch combined once cannot be combined again. */
static void set_rules(epc_ctx_t *ctx, int c)
{
    call_t a, b, n;
    epc_ll_combine_args_t args = EPC_LL_COMBINE_ARGS_INIT;
    uint16_t *y = malloc((MAXT + 1) * HIDDEN * 2), *eo = NULL;
    epc_request_t *comb = NULL;
    make_call(&a, c, 0), make_call(&b, c + 1, 0), make_call(&n, c + 2, 0);
    MT_CHECK(start_dispatch(ctx, &a) == EPC_OK && finish(&a.req) == EPC_OK, "a: %s",
             epc_last_error(ctx));
    MT_CHECK(start_dispatch(ctx, &b) == EPC_OK && finish(&b.req) == EPC_OK, "b: %s",
             epc_last_error(ctx));
    MT_CHECK(epc_ll_combine_buffer(ctx, &a.out, (void **)&eo) == EPC_OK, "buffer: %s",
             epc_last_error(ctx));
    run_experts(&a, eo);
    args.dispatched = &a.out, args.expert_out = eo, args.topk_weights = a.w, args.y = y;
    MT_CHECK(epc_ll_combine(ctx, &args, &comb) == EPC_OK, "combine a: %s", epc_last_error(ctx));
    /* With a progress thread the combine may already be complete on some
     * ranks (the thread finished it), and the dispatch would start there
     * only: the refusal is checked where the caller alone progresses. */
    if (!progress_thread())
        expect(start_dispatch(ctx, &n), EPC_ERR_CAPACITY, ctx, "in flight",
               "dispatch over a combine");
    MT_CHECK(finish(&comb) == EPC_OK, "combine a: %s", epc_last_error(ctx));
    check_combine(&a, y);
    MT_CHECK(epc_ll_combine(ctx, &args, &comb) == EPC_OK, "combine a again: %s",
             epc_last_error(ctx));
    expect(finish(&comb), EPC_ERR_INVALID_ARG, ctx, "dispatched", "combined twice");
    combine_call(ctx, &b, 0);
    free_call(&a), free_call(&b), free_call(&n);
    free(y);
}

static epc_ctx_t *make_ctx(void)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_ctx_t *ctx = NULL;
    p.num_experts = E;
    p.hidden = HIDDEN;
    p.dtype = EPC_DTYPE_BF16;
    p.max_topk = TOPK;
    p.max_tokens_per_rank = 64;
    MT_CHECK(epc_ctx_create(MPI_COMM_WORLD, &p, &ctx) == EPC_OK, "create: %s",
             epc_last_error(NULL));
    return ctx;
}

/* Enabling: not yet (refused), a mismatch, twice, then the buffer size. */
static void enable(epc_ctx_t *ctx)
{
    epc_ll_dispatch_args_t a = EPC_LL_DISPATCH_ARGS_INIT;
    epc_ll_out_t o = EPC_LL_OUT_INIT;
    epc_request_t *r = NULL;
    size_t bytes = 0;
    expect(epc_ll_dispatch(ctx, &a, &o, &r), EPC_ERR_INVALID_ARG, ctx, "not enabled",
           "before enable");
    expect(epc_ll_enable(ctx, 0), EPC_ERR_INVALID_ARG, ctx, "max_tokens", "enable 0");
    expect(epc_ll_enable(ctx, 65537), EPC_ERR_INVALID_ARG, ctx, "max_tokens", "enable 65537");
    if (nranks > 1) { /* one rank's bad argument: named on the others, nothing enabled */
        char peer[32];
        snprintf(peer, sizeof peer, "rank %d", nranks - 1);
        expect(epc_ll_enable(ctx, mt_rank == nranks - 1 ? -3 : MAXT),
               mt_rank == nranks - 1 ? EPC_ERR_INVALID_ARG : EPC_ERR_PEER_FAILED, ctx,
               mt_rank == nranks - 1 ? "max_tokens" : peer, "enable -3 on one rank");
        expect(epc_ll_dispatch(ctx, &a, &o, &r), EPC_ERR_INVALID_ARG, ctx, "not enabled",
               "after a failed enable");
    }
    if (nranks > 1)
        expect(epc_ll_enable(ctx, MAXT + (mt_rank == 0)), EPC_ERR_MISMATCH, ctx, "max_tokens",
               "enable mismatch");
    MT_CHECK(epc_ll_enable(ctx, MAXT) == EPC_OK, "enable: %s", epc_last_error(ctx));
    expect(epc_ll_enable(ctx, MAXT), EPC_ERR_INVALID_ARG, ctx, "already", "enable twice");
    MT_CHECK(epc_ll_buffer_size(ctx, MAXT, &bytes) == EPC_OK && bytes > 0, "size: %s",
             epc_last_error(ctx));
}

/* epc_ctx_stats' ll_transfer: "" before the mode is enabled, then what
 * the case expects (EPC_TEST_LL_TRANSFER: write, send, or none for ""
 * on one node); 0.9's shorter layout is accepted and written no further. */
static void check_transfer(epc_ctx_t *ctx, int enabled)
{
    const char *want = getenv("EPC_TEST_LL_TRANSFER");
    epc_ctx_stats_t s = EPC_CTX_STATS_INIT;
    struct {
        epc_ctx_stats_t s;
        char canary[16];
    } old;
    MT_CHECK(epc_ctx_stats(ctx, &s) == EPC_OK && s.ll_transfer != NULL, "stats: %s",
             epc_last_error(ctx));
    if (!enabled)
        MT_CHECK(strcmp(s.ll_transfer, "") == 0, "ll_transfer before enable: '%s'", s.ll_transfer);
    else if (want != NULL)
        MT_CHECK(strcmp(s.ll_transfer, strcmp(want, "none") ? want : "") == 0,
                 "ll_transfer '%s', expected '%s'", s.ll_transfer, want);
    memset(&old, 0x5a, sizeof old);
    old.s.size = offsetof(epc_ctx_stats_t, ll_transfer);
    MT_CHECK(epc_ctx_stats(ctx, &old.s) == EPC_OK, "0.9 stats: %s", epc_last_error(ctx));
    MT_CHECK(((unsigned char *)&old.s)[offsetof(epc_ctx_stats_t, ll_transfer)] == 0x5a,
             "0.9 stats: ll_transfer written past the caller's size");
    MT_CHECK(strcmp(old.s.transport, s.transport) == 0, "0.9 stats: transport");
}

int main(int argc, char **argv)
{
    epc_ctx_t *ctx;
    mt_init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    E = EPR * nranks;
    ctx = make_ctx();
    if (ctx != NULL) {
        check_transfer(ctx, 0);
        enable(ctx);
        check_transfer(ctx, 1);
        refused_starts(ctx);
        for (int c = 0; c < 8; c++) /* FP8 cast, FP8 as given, UE8M0 scales */
            one_call(ctx, c,
                     c == 2   ? EPC_PAYLOAD_FP8
                     : c == 5 ? EPC_PAYLOAD_FP8_GIVEN
                     : c == 7 ? EPC_PAYLOAD_FP8_UE8M0
                              : EPC_PAYLOAD_NATIVE,
                     c % 2);
        two_in_flight(ctx, 10);
        two_in_flight(ctx, 20);
        bad_dispatches(ctx);
        payload_mismatch(ctx);
        for (int bad = 0; bad < 5; bad++) /* rank 1 % nranks has MAXT tokens in these */
            bad_combine_args(ctx, nranks * (60 + bad) + 1 % nranks, bad);
        held_refusals(ctx, 70);
        set_rules(ctx, 50);
        for (int c = 40; c < 43; c++) /* still works */
            one_call(ctx, c, 0, c % 2);
        MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
    }
    return mt_finish("test_ll_mpi");
}
