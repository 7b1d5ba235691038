/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_coll_mpi - dispatch and combine checked value by value.
 *
 * Every rank can regenerate every rank's inputs (a pure function of rank,
 * scenario and iteration), so the expected rows of each receiver and the
 * expected combine result of each source are computed here, independently
 * of the library: received rows are compared element by element with the
 * encoding of (source rank, token, position, iteration), metadata and
 * order with the reference, combine with a sum done here in the documented
 * order (node, then local rank, then local expert) from known expert
 * functions, bit for bit; hier and flat must agree bit for bit; a cached
 * handle must reproduce the same bits.  Nodes and transport come from the
 * environment the script sets.  Modes: data, errors, soak ITERS SEED, and
 * links IFACE NODES (on the emulated cluster, scripts/cluster.sh): the
 * library must find NODES nodes by itself, and IFACE's byte counters on
 * every host must show that only inter-node traffic crossed the links.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epcomm.h"
#include "mpi_test.h"

#if defined(__SANITIZE_ADDRESS__)
#define EPC_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EPC_TEST_ASAN 1
#endif
#endif
#ifndef EPC_TEST_ASAN
#define EPC_TEST_ASAN 0
#endif

static int nranks, nnodes, *node_of, *lrank_of;

typedef struct scen {
    int E, k, hidden, tmode, align;
    epc_dtype_t dtype;
} scen_t;

enum { T_UNEVEN, T_ZERO_SOME, T_MAX, T_NONE_SOME, T_ONE_EXPERT };
#define MAXT 48

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33, x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static int tokens_of(const scen_t *sc, int r)
{
    switch (sc->tmode) {
    case T_ZERO_SOME:
        return r % 2 ? 0 : 9 + r;
    case T_MAX:
        return MAXT;
    default:
        return 5 + (7 * r) % 23;
    }
}

/* Rank r's topk_idx and weights for iteration it: distinct experts. */
static void inputs_of(const scen_t *sc, int r, int it, int32_t *idx, float *w)
{
    int T = tokens_of(sc, r);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < sc->k; j++) {
            uint64_t h = mix(((uint64_t)r << 40) ^ ((uint64_t)it << 32) ^ ((uint64_t)t << 8) ^ j);
            int e, dup;
            idx[t * sc->k + j] = -1;
            w[t * sc->k + j] = (float)((h >> 20) % 1000) / 997.0f + 0.01f;
            if ((sc->tmode == T_NONE_SOME && t % 3 == 1) || (j > 0 && h % 5 == 0))
                continue; /* all -1 for some tokens, holes elsewhere */
            if (sc->tmode == T_ONE_EXPERT) {
                if (j == 0)
                    idx[t * sc->k] = 0;
                continue;
            }
            do {
                e = (int)(h % (uint64_t)sc->E);
                h = mix(h);
                dup = 0;
                for (int q = 0; q < j; q++)
                    dup |= idx[t * sc->k + q] == e;
            } while (dup);
            idx[t * sc->k + j] = e;
        }
}

/* x[t][i] of rank r: a small integer, exact in every dtype. */
static float xval(int r, int t, int i, int it)
{
    return (float)((r * 37 + t * 11 + i * 3 + it * 5) % 33 - 16);
}

/* Expert g's function (exact in every dtype for |x| <= 16). */
static float expert_fn(int g, float x)
{
    return (x + (float)(g % 7 + 1)) * (1.0f + (float)(g % 4) / 4.0f);
}

static size_t esize(epc_dtype_t d)
{
    return d == EPC_DTYPE_FP32 ? 4 : 2;
}

/* Independent conversions (bf16 by rounding the bits; fp16 by _Float16). */
static void put(epc_dtype_t d, void *row, int i, float v)
{
    if (d == EPC_DTYPE_FP32) {
        ((float *)row)[i] = v;
    } else if (d == EPC_DTYPE_FP16) {
        _Float16 hv = (_Float16)v;
        memcpy((char *)row + 2 * i, &hv, 2);
    } else {
        uint32_t u;
        memcpy(&u, &v, 4);
        u += 0x7fff + ((u >> 16) & 1);
        ((uint16_t *)row)[i] = (uint16_t)(u >> 16);
    }
}

static float get(epc_dtype_t d, const void *row, int i)
{
    if (d == EPC_DTYPE_FP32)
        return ((const float *)row)[i];
    if (d == EPC_DTYPE_FP16) {
        _Float16 hv;
        memcpy(&hv, (const char *)row + 2 * i, 2);
        return (float)hv;
    }
    uint32_t u = (uint32_t)((const uint16_t *)row)[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

typedef struct inputs {
    int T[64];
    int32_t *idx[64];
    float *w[64];
} inputs_t;

static void gen_all(const scen_t *sc, int it, inputs_t *in)
{
    for (int r = 0; r < nranks; r++) {
        in->T[r] = tokens_of(sc, r);
        in->idx[r] = realloc(in->idx[r], (size_t)(in->T[r] * sc->k + 1) * sizeof(int32_t));
        in->w[r] = realloc(in->w[r], (size_t)(in->T[r] * sc->k + 1) * sizeof(float));
        inputs_of(sc, r, it, in->idx[r], in->w[r]);
    }
}

/* The rows this rank must receive, in order, and its expert groups. */
static void check_dispatch(const scen_t *sc, const inputs_t *in, int it,
                           const epc_dispatch_out_t *o, const char *what)
{
    int epr = sc->E / nranks, pos = 0, bad = 0;
    size_t rb = (size_t)sc->hidden * esize(sc->dtype);
    MT_CHECK(o->num_local_experts == epr, "%s: %d local experts", what, o->num_local_experts);
    for (int le = 0; le < epr; le++) {
        int g = mt_rank * epr + le, cnt = 0, a = sc->align > 1 ? sc->align : 1;
        MT_CHECK(o->expert_begin[le] == pos, "%s: expert %d begins at %d, want %d", what, le,
                 o->expert_begin[le], pos);
        for (int s = 0; s < nranks; s++)
            for (int t = 0; t < in->T[s]; t++)
                for (int j = 0; j < sc->k; j++) {
                    const char *row = (const char *)o->rows + (size_t)(pos + cnt) * rb;
                    if (in->idx[s][t * sc->k + j] != g)
                        continue;
                    if (o->src_rank[pos + cnt] != s || o->src_token[pos + cnt] != t ||
                        o->local_expert[pos + cnt] != le ||
                        o->weight[pos + cnt] != in->w[s][t * sc->k + j])
                        bad++;
                    for (int i = 0; i < sc->hidden; i++)
                        bad += get(sc->dtype, row, i) != xval(s, t, i, it);
                    cnt++;
                }
        MT_CHECK(o->expert_count[le] == cnt, "%s: expert %d has %d rows, want %d", what, le,
                 o->expert_count[le], cnt);
        for (pos += cnt; pos % a != 0; pos++) { /* padding */
            bad += o->src_rank[pos] != -1;
            for (int i = 0; i < sc->hidden; i++)
                bad += get(sc->dtype, (const char *)o->rows + (size_t)pos * rb, i) != 0.0f;
        }
    }
    MT_CHECK(o->num_rows == pos && o->expert_begin[epr] == pos, "%s: %d rows, want %d", what,
             o->num_rows, pos);
    MT_CHECK(bad == 0, "%s: %d wrong values or metadata in received rows", what, bad);
}

/* Expert outputs: f_g of each received row; NaN in padding (must be ignored). */
static void run_experts(const scen_t *sc, const epc_dispatch_out_t *o, void *out)
{
    size_t rb = (size_t)sc->hidden * esize(sc->dtype);
    for (int r = 0; r < o->num_rows; r++)
        for (int i = 0; i < sc->hidden; i++) {
            float v = o->src_rank[r] < 0 ? NAN
                                         : expert_fn(mt_rank * (sc->E / nranks) + o->local_expert[r],
                                                     get(sc->dtype, (const char *)o->rows + r * rb, i));
            put(sc->dtype, (char *)out + r * rb, i, v);
        }
}

/* The combine result of this rank, summed here in the documented order. */
static void ref_combine(const scen_t *sc, const inputs_t *in, int it, int unweighted, void *y)
{
    int k = sc->k, epr = sc->E / nranks, me = mt_rank;
    size_t rb = (size_t)sc->hidden * esize(sc->dtype);
    for (int t = 0; t < in->T[me]; t++)
        for (int i = 0; i < sc->hidden; i++) {
            float acc = 0.0f, x = xval(me, t, i, it);
            for (int n = 0; n < nnodes; n++) {
                float ns = 0.0f;
                int any = 0;
                for (int l = 0; l < nranks; l++)
                    for (int d = 0; d < nranks; d++) {
                        float part = 0.0f;
                        int hit = 0;
                        if (node_of[d] != n || lrank_of[d] != l)
                            continue;
                        for (int g = d * epr; g < (d + 1) * epr; g++)
                            for (int j = 0; j < k; j++)
                                if (in->idx[me][t * k + j] == g) {
                                    float wv = unweighted ? 1.0f : in->w[me][t * k + j];
                                    part += wv * expert_fn(g, x);
                                    hit = 1;
                                }
                        if (hit)
                            ns += part, any = 1;
                    }
                if (any)
                    acc += ns;
            }
            put(sc->dtype, (char *)y + t * rb, i, acc);
        }
}

static epc_ctx_t *make_ctx(const scen_t *sc)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_ctx_t *ctx = NULL;
    const epc_topo_t *topo;
    p.num_experts = sc->E, p.hidden = sc->hidden, p.dtype = sc->dtype;
    p.max_tokens_per_rank = MAXT, p.max_topk = sc->E < 8 ? sc->E : 8;
    MT_CHECK(epc_ctx_create(MPI_COMM_WORLD, &p, &ctx) == EPC_OK, "create: %s", epc_last_error(NULL));
    if (ctx == NULL)
        return NULL;
    epc_ctx_topo(ctx, &topo);
    epc_topo_num_nodes(topo, &nnodes);
    for (int r = 0; r < nranks; r++) {
        epc_topo_node_of(topo, r, &node_of[r]);
        epc_topo_local_rank(topo, r, &lrank_of[r]);
    }
    return ctx;
}

/* One dispatch + combine with checks; y gets the combine result. */
static void round_trip(epc_ctx_t *ctx, const scen_t *sc, const inputs_t *in, int it,
                       epc_algo_t algo, int unweighted, epc_handle_t **h, void *y)
{
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_dispatch_out_t o;
    size_t rb = (size_t)sc->hidden * esize(sc->dtype);
    char *x = malloc((size_t)(in->T[mt_rank] + 1) * rb), *ref = malloc((size_t)(in->T[mt_rank] + 1) * rb);
    void *eo = NULL;
    char what[96];
    snprintf(what, sizeof what, "E=%d k=%d H=%d dtype=%d T=%d %s it=%d%s", sc->E, sc->k, sc->hidden,
             (int)sc->dtype, sc->tmode, algo == EPC_ALGO_HIER ? "hier" : "flat", it,
             *h ? " cached" : "");
    for (int t = 0; t < in->T[mt_rank]; t++)
        for (int i = 0; i < sc->hidden; i++)
            put(sc->dtype, x + t * rb, i, xval(mt_rank, t, i, it));
    a.x = x, a.num_tokens = in->T[mt_rank], a.topk = sc->k, a.topk_idx = in->idx[mt_rank];
    a.topk_weights = in->w[mt_rank], a.expert_alignment = sc->align, a.algo = algo;
    MT_CHECK(epc_dispatch(ctx, &a, &o, h) == EPC_OK, "%s: dispatch: %s", what, epc_last_error(ctx));
    if (*h != NULL) {
        check_dispatch(sc, in, it, &o, what);
        MT_CHECK(epc_combine_buffer(ctx, *h, &eo) == EPC_OK, "%s: buffer", what);
        run_experts(sc, &o, eo);
        memset(y, 0x7f, (size_t)in->T[mt_rank] * rb); /* poison */
        c.expert_out = eo, c.y = y, c.unweighted = unweighted;
        MT_CHECK(epc_combine(ctx, *h, &c) == EPC_OK, "%s: combine: %s", what, epc_last_error(ctx));
        ref_combine(sc, in, it, unweighted, ref);
        MT_CHECK(memcmp(y, ref, (size_t)in->T[mt_rank] * rb) == 0, "%s: combine differs from the "
                 "reference%s", what, unweighted ? " (unweighted)" : "");
    }
    free(x);
    free(ref);
}

static void scenario(const scen_t *sc)
{
    epc_ctx_t *ctx = make_ctx(sc);
    inputs_t in;
    size_t rb = (size_t)sc->hidden * esize(sc->dtype), ysz = (MAXT + 1) * rb;
    char *yh = malloc(ysz), *yf = malloc(ysz), *y2 = malloc(ysz);
    memset(&in, 0, sizeof in);
    for (int it = 0; ctx != NULL && it < 2; it++) {
        epc_handle_t *hh = NULL, *hf = NULL;
        gen_all(sc, it, &in);
        round_trip(ctx, sc, &in, it, EPC_ALGO_HIER, 0, &hh, yh);
        round_trip(ctx, sc, &in, it, EPC_ALGO_FLAT, 0, &hf, yf);
        MT_CHECK(memcmp(yh, yf, (size_t)in.T[mt_rank] * rb) == 0, "it %d: hier and flat differ", it);
        /* Cached mode: same topk_idx, handle reused, the same bits again. */
        round_trip(ctx, sc, &in, it, EPC_ALGO_HIER, it == 1, &hh, y2);
        if (it == 0)
            MT_CHECK(memcmp(yh, y2, (size_t)in.T[mt_rank] * rb) == 0, "cached run differs");
        epc_handle_destroy(hh);
        epc_handle_destroy(hf);
    }
    for (int r = 0; r < nranks; r++)
        free(in.idx[r]), free(in.w[r]);
    free(yh), free(yf), free(y2);
    MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
}

static int mode_data(void)
{
    const scen_t list[] = {
        {256, 8, 33, T_UNEVEN, 1, EPC_DTYPE_BF16},   {2 * nranks, 2, 1, T_ZERO_SOME, 4, EPC_DTYPE_FP32},
        {8, 1, 64, T_MAX, 1, EPC_DTYPE_FP16},        {64, 8, 7168, T_UNEVEN, 1, EPC_DTYPE_BF16},
        {16, 2, 5, T_NONE_SOME, 8, EPC_DTYPE_FP32},  {32, 4, 17, T_ONE_EXPERT, 1, EPC_DTYPE_BF16},
    };
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        if (list[i].E % nranks == 0 && list[i].k <= list[i].E)
            scenario(&list[i]);
    return mt_finish("test_coll_mpi data");
}

/* The context's progress thread runs (EPC_PROGRESS=thread). */
static int thread_progress(void)
{
    const char *p = getenv("EPC_PROGRESS");
    return p != NULL && strcmp(p, "thread") == 0;
}

/* Nonblocking calls: drives req with epc_test, computing between tests as
 * a caller overlapping its work would, then frees it; its final status. */
static epc_status_t drive(epc_request_t *req, const char *what)
{
    volatile double sink = 0;
    int done = 0, again = 0;
    epc_status_t st;
    while ((st = epc_test(req, &done)) == EPC_OK && !done)
        for (int i = 0; i < 2000; i++)
            sink += i * 0.5;
    MT_CHECK(done, "%s: epc_test returned %d without done", what, st);
    /* the final status is told again, the same */
    MT_CHECK(epc_test(req, &again) == st && again == 1, "%s: second test differs", what);
    MT_CHECK(epc_request_free(req) == EPC_OK, "%s: free: %s", what, epc_last_error(NULL));
    return st;
}

/* Microbatch it's rows and arguments (x must hold MAXT rows). */
static void nb_args(const scen_t *sc, const inputs_t *in, int it, epc_algo_t algo, char *x,
                    epc_dispatch_args_t *a)
{
    size_t rb = (size_t)sc->hidden * esize(sc->dtype);
    for (int t = 0; t < in->T[mt_rank]; t++)
        for (int i = 0; i < sc->hidden; i++)
            put(sc->dtype, x + t * rb, i, xval(mt_rank, t, i, it));
    *a = EPC_DISPATCH_ARGS_INIT;
    a->x = x, a->num_tokens = in->T[mt_rank], a->topk = sc->k, a->topk_idx = in->idx[mt_rank];
    a->topk_weights = in->w[mt_rank], a->expert_alignment = sc->align, a->algo = algo;
}

/* Starts the combine of microbatch it (experts run into the context's
 * buffer for h), its y poisoned. */
static epc_request_t *nb_combine_start(epc_ctx_t *ctx, const scen_t *sc, const epc_dispatch_out_t *o,
                                       epc_handle_t *h, void *y, size_t ylen, const char *what)
{
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_request_t *req = NULL;
    void *eo = NULL;
    MT_CHECK(epc_combine_buffer(ctx, h, &eo) == EPC_OK, "%s: buffer: %s", what, epc_last_error(ctx));
    run_experts(sc, o, eo);
    memset(y, 0x7f, ylen);
    c.expert_out = eo, c.y = y;
    MT_CHECK(epc_combine_start(ctx, h, &c, &req) == EPC_OK, "%s: combine start: %s", what,
             epc_last_error(ctx));
    return req;
}

/* Both handles valid, no request held: A's combine in flight, B's start
 * is refused on every rank (at most one combine at a time), then A's
 * completes. */
static void nb_two_combines(epc_ctx_t *ctx, const scen_t *sc, const epc_dispatch_out_t *o,
                            epc_handle_t *const *h, void *y, size_t sz, const char *what)
{
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_request_t *ra = nb_combine_start(ctx, sc, &o[0], h[0], y, sz, what), *rb = NULL;
    c.expert_out = o[1].rows, c.y = y;
    MT_CHECK(epc_combine_start(ctx, h[1], &c, &rb) == EPC_ERR_CAPACITY &&
                 strstr(epc_last_error(ctx), "a combine is already in flight") != NULL,
             "%s: a second combine in flight: %s", what, epc_last_error(ctx));
    MT_CHECK(rb == NULL, "%s: a refused start wrote req", what);
    MT_CHECK(epc_wait(ra) == EPC_OK, "%s: combine A again: %s", what, epc_last_error(ctx));
    epc_request_free(ra);
}

/* A two-microbatch pipeline: dispatch B in flight while A's experts run
 * and A's combine is in flight; the limits refused on every rank; every
 * result against the reference; a handle two dispatches old refused. */
static void nb_pipeline(const scen_t *sc, epc_algo_t algo)
{
    epc_ctx_t *ctx = make_ctx(sc);
    inputs_t in[2];
    size_t rb = (size_t)sc->hidden * esize(sc->dtype), sz = (MAXT + 1) * rb;
    char *x[2] = {malloc(sz), malloc(sz)}, *y = malloc(sz), *ref = malloc(sz), what[64];
    epc_dispatch_args_t a[2];
    epc_dispatch_out_t o[2], poison, o3;
    epc_handle_t *h[2] = {NULL, NULL}, *h3 = NULL;
    epc_request_t *rd = NULL, *rc = NULL, *r3 = NULL;
    int done = 0;
    if (ctx == NULL)
        return;
    snprintf(what, sizeof what, "nb E=%d k=%d H=%d %s", sc->E, sc->k, sc->hidden,
             algo == EPC_ALGO_HIER ? "hier" : "flat");
    memset(in, 0, sizeof in);
    for (int it = 0; it < 2; it++) {
        gen_all(sc, it, &in[it]);
        nb_args(sc, &in[it], it, algo, x[it], &a[it]);
    }
    memset(&o[0], 0xab, sizeof o[0]);
    poison = o[0];
    MT_CHECK(epc_dispatch_start(ctx, &a[0], &o[0], &h[0], &rd) == EPC_OK, "%s: start: %s", what,
             epc_last_error(ctx));
    MT_CHECK(epc_test(rd, &done) == EPC_OK || done, "%s: test: %s", what, epc_last_error(ctx));
    /* outputs are written only at completion (which a progress thread may
     * reach at any moment: then they cannot be looked at in flight) */
    if (!done && !thread_progress())
        MT_CHECK(h[0] == NULL && memcmp(&o[0], &poison, sizeof poison) == 0,
                 "%s: outputs written while in flight", what);
    MT_CHECK(drive(rd, what) == EPC_OK, "%s: dispatch A: %s", what, epc_last_error(ctx));
    check_dispatch(sc, &in[0], 0, &o[0], what);
    MT_CHECK(epc_dispatch_start(ctx, &a[1], &o[1], &h[1], &rd) == EPC_OK, "%s: start B: %s", what,
             epc_last_error(ctx));
    MT_CHECK(epc_dispatch_start(ctx, &a[1], &o3, &h3, &r3) == EPC_ERR_CAPACITY,
             "%s: a second dispatch in flight was not refused", what);
    MT_CHECK(epc_request_free(rd) == EPC_ERR_INVALID_ARG, "%s: freed in flight", what);
    rc = nb_combine_start(ctx, sc, &o[0], h[0], y, sz, what);
    MT_CHECK(epc_combine_start(ctx, h[0], NULL, &r3) == EPC_ERR_CAPACITY,
             "%s: a third request was not refused", what);
    MT_CHECK(drive(rc, what) == EPC_OK, "%s: combine A: %s", what, epc_last_error(ctx));
    ref_combine(sc, &in[0], 0, 0, ref);
    MT_CHECK(memcmp(y, ref, (size_t)in[0].T[mt_rank] * rb) == 0, "%s: combine A differs", what);
    MT_CHECK(drive(rd, what) == EPC_OK, "%s: dispatch B: %s", what, epc_last_error(ctx));
    check_dispatch(sc, &in[1], 1, &o[1], what);
    rc = nb_combine_start(ctx, sc, &o[1], h[1], y, sz, what);
    MT_CHECK(epc_wait(rc) == EPC_OK, "%s: combine B: %s", what, epc_last_error(ctx));
    MT_CHECK(epc_request_free(rc) == EPC_OK, "%s: free", what);
    ref_combine(sc, &in[1], 1, 0, ref);
    MT_CHECK(memcmp(y, ref, (size_t)in[1].T[mt_rank] * rb) == 0, "%s: combine B differs", what);
    nb_two_combines(ctx, sc, o, h, y, sz, what);
    /* a third dispatch reuses A's buffers: A's handle is stale on every rank */
    MT_CHECK(epc_dispatch(ctx, &a[0], &o3, &h3) == EPC_OK, "%s: dispatch C: %s", what,
             epc_last_error(ctx));
    MT_CHECK(epc_combine_start(ctx, h[0], NULL, &rc) == EPC_OK, "%s: stale start", what);
    MT_CHECK(epc_wait(rc) == EPC_ERR_INVALID_ARG && strstr(epc_last_error(ctx), "handle") != NULL,
             "%s: a stale handle's combine: %s", what, epc_last_error(ctx));
    epc_request_free(rc);
    for (int it = 0; it < 2; it++) {
        for (int r = 0; r < nranks; r++)
            free(in[it].idx[r]), free(in[it].w[r]);
        epc_handle_destroy(h[it]);
        free(x[it]);
    }
    epc_handle_destroy(h3);
    free(y), free(ref);
    MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
}

/* Argument checks of the nonblocking calls that need no peer. */
static void nb_bad_args(void)
{
    int done;
    MT_CHECK(epc_test(NULL, &done) == EPC_ERR_INVALID_ARG && strstr(epc_last_error(NULL), "req"),
             "epc_test(NULL): %s", epc_last_error(NULL));
    MT_CHECK(epc_wait(NULL) == EPC_ERR_INVALID_ARG, "epc_wait(NULL)");
    MT_CHECK(epc_request_free(NULL) == EPC_OK, "epc_request_free(NULL)");
    MT_CHECK(epc_dispatch_start(NULL, NULL, NULL, NULL, NULL) == EPC_ERR_INVALID_ARG,
             "epc_dispatch_start(NULL ctx)");
    MT_CHECK(epc_combine_start(NULL, NULL, NULL, NULL) == EPC_ERR_INVALID_ARG,
             "epc_combine_start(NULL ctx)");
}

static int mode_nonblocking(void)
{
    const scen_t list[] = {
        {256, 8, 33, T_UNEVEN, 1, EPC_DTYPE_BF16},
        {2 * nranks, 2, 5, T_ZERO_SOME, 4, EPC_DTYPE_FP32},
        {64, 4, 1024, T_MAX, 1, EPC_DTYPE_BF16},
    };
    nb_bad_args();
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        if (list[i].E % nranks == 0 && list[i].k <= list[i].E) {
            nb_pipeline(&list[i], EPC_ALGO_HIER);
            nb_pipeline(&list[i], EPC_ALGO_FLAT);
        }
    return mt_finish("test_coll_mpi nonblocking");
}

/* Ways a rank's dispatch input can be bad, with the status and the words
 * its own error names. */
static const struct bad_way {
    epc_status_t want;
    const char *says;
} bad_ways[] = {
    {EPC_ERR_INVALID_ARG, "is outside"},  /* an expert id outside [-1, E) */
    {EPC_ERR_CAPACITY, "max_tokens"},     /* more tokens than max_tokens_per_rank */
    {EPC_ERR_INVALID_ARG, "twice"},       /* an expert repeated in a token */
    {EPC_ERR_INVALID_ARG, "args->topk"},  /* topk 0 */
    {EPC_ERR_INVALID_ARG, "out is NULL"}, /* no output struct */
};

/* One dispatch where every rank r with bit r of `bad` set breaks its input
 * in way way[r] (bad_ways).  Each bad rank gets its own status and text;
 * every good rank EPC_ERR_PEER_FAILED naming the lowest bad rank and that
 * rank's reason; no rank's outputs are written.  (Several bad ranks once
 * crashed every bad rank but the lowest.) */
static void expect_bad_ranks(epc_ctx_t *ctx, unsigned bad, const int *way)
{
    static const scen_t sc = {16, 2, 8, T_UNEVEN, 1, EPC_DTYPE_BF16};
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_dispatch_out_t o, poison;
    epc_handle_t *h = NULL;
    int32_t idx[2 * (MAXT + 1)];
    float w[2 * (MAXT + 1)];
    uint16_t x[8 * (MAXT + 1)] = {0};
    int lowest = __builtin_ctz(bad), mine = (bad >> mt_rank) & 1;
    char name[64];
    epc_status_t st;
    inputs_of(&sc, mt_rank, 0, idx, w);
    a.x = x, a.num_tokens = tokens_of(&sc, mt_rank), a.topk = 2, a.topk_idx = idx, a.topk_weights = w;
    if (mine && way[mt_rank] == 0)
        idx[3] = -5;
    else if (mine && way[mt_rank] == 1)
        a.num_tokens = MAXT + 1;
    else if (mine && way[mt_rank] == 2)
        idx[1] = idx[0];
    else if (mine && way[mt_rank] == 3)
        a.topk = 0;
    memset(&o, 0x5a, sizeof o);
    poison = o;
    st = epc_dispatch(ctx, &a, mine && way[mt_rank] == 4 ? NULL : &o, &h);
    snprintf(name, sizeof name, "rank %d: ", lowest);
    if (mine)
        MT_CHECK(st == bad_ways[way[mt_rank]].want &&
                     strstr(epc_last_error(ctx), bad_ways[way[mt_rank]].says) &&
                     strstr(epc_last_error(ctx), "peer failed") == NULL,
                 "bad 0x%x: own status %d: %s", bad, st, epc_last_error(ctx));
    else
        MT_CHECK(st == EPC_ERR_PEER_FAILED && strstr(epc_last_error(ctx), name) &&
                     strstr(epc_last_error(ctx), bad_ways[way[lowest]].says),
                 "bad 0x%x: status %d: %s", bad, st, epc_last_error(ctx));
    MT_CHECK(h == NULL && memcmp(&o, &poison, sizeof o) == 0, "bad 0x%x: outputs written", bad);
}

/* A combine with y NULL (tokens on every rank) on the ranks of `bad`: each
 * refuses, the others name the lowest; y untouched everywhere. */
static void expect_bad_combine(epc_ctx_t *ctx, epc_handle_t *h, void *eo, uint16_t *y, size_t ylen,
                               unsigned bad)
{
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    int lowest = __builtin_ctz(bad), mine = (bad >> mt_rank) & 1;
    char name[32];
    epc_status_t st;
    c.expert_out = eo, c.y = mine ? NULL : y;
    memset(y, 0x44, ylen * sizeof *y);
    st = epc_combine(ctx, h, &c);
    snprintf(name, sizeof name, "rank %d: ", lowest);
    MT_CHECK(mine ? st == EPC_ERR_INVALID_ARG && strstr(epc_last_error(ctx), "args->y")
                  : st == EPC_ERR_PEER_FAILED && strstr(epc_last_error(ctx), name) &&
                        strstr(epc_last_error(ctx), "args->y"),
             "combine bad 0x%x: status %d: %s", bad, st, epc_last_error(ctx));
    for (size_t i = 0; i < ylen; i++)
        MT_CHECK(y[i] == 0x4444, "combine bad 0x%x: y written at %zu", bad, i);
}

/* Bad input on two ranks and on all, same and different reasons, in
 * dispatch and in combine; then a checked round trip on the same context. */
static void several_bad_ranks(epc_ctx_t *ctx)
{
    static const scen_t sc = {16, 2, 8, T_UNEVEN, 1, EPC_DTYPE_BF16};
    int same[64], mixed[64], all = nranks >= 32 ? -1 : (1 << nranks) - 1;
    /* (way 4, a NULL output struct, is tried on one rank in mode_errors) */
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_dispatch_out_t o;
    epc_handle_t *h = NULL;
    int32_t idx[2 * (MAXT + 1)];
    float w[2 * (MAXT + 1)];
    uint16_t x[8 * (MAXT + 1)] = {0}, y[8 * (MAXT + 1)], yy[8 * (MAXT + 1)];
    inputs_t in;
    void *eo = NULL;
    for (int r = 0; r < 64; r++) {
        same[r] = 0;
        mixed[r] = r % 4;
    }
    expect_bad_ranks(ctx, 1u << 1 | 1u << (nranks - 1), same);     /* two, same reason */
    expect_bad_ranks(ctx, 1u << 1 | 1u << (nranks - 1), mixed);    /* two, different reasons */
    expect_bad_ranks(ctx, (unsigned)all, mixed);                   /* all, different reasons */
    for (int r = 0; r < 64; r++)
        same[r] = 1;
    expect_bad_ranks(ctx, (unsigned)all, same);                    /* all over capacity */
    for (int r = 0; r < 64; r++)
        same[r] = 2;
    expect_bad_ranks(ctx, (unsigned)all, same);                    /* a repeated expert everywhere */
    inputs_of(&sc, mt_rank, 0, idx, w);
    a.x = x, a.num_tokens = tokens_of(&sc, mt_rank), a.topk = 2, a.topk_idx = idx, a.topk_weights = w;
    MT_CHECK(epc_dispatch(ctx, &a, &o, &h) == EPC_OK, "dispatch: %s", epc_last_error(ctx));
    MT_CHECK(epc_combine_buffer(ctx, h, &eo) == EPC_OK, "buffer: %s", epc_last_error(ctx));
    expect_bad_combine(ctx, h, eo, y, sizeof y / 2, 1u << 0 | 1u << (nranks - 1));
    expect_bad_combine(ctx, h, eo, y, sizeof y / 2, (unsigned)all);
    epc_handle_destroy(h);
    h = NULL;
    /* The context is whole: every row and every sum checked. */
    memset(&in, 0, sizeof in);
    gen_all(&sc, 0, &in);
    round_trip(ctx, &sc, &in, 0, EPC_ALGO_HIER, 0, &h, yy);
    epc_handle_destroy(h);
    h = NULL;
    round_trip(ctx, &sc, &in, 0, EPC_ALGO_FLAT, 0, &h, yy);
    epc_handle_destroy(h);
    for (int r = 0; r < nranks; r++)
        free(in.idx[r]), free(in.w[r]);
}

static int mode_errors(void)
{
    static const scen_t sc = {16, 2, 8, T_UNEVEN, 1, EPC_DTYPE_BF16};
    epc_ctx_t *ctx = make_ctx(&sc), *other = make_ctx(&sc);
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_dispatch_out_t o;
    epc_handle_t *h1 = NULL, *h2 = NULL, *h3 = NULL, *ho = NULL;
    int32_t idx[2 * (MAXT + 1)];
    float w[2 * (MAXT + 1)];
    uint16_t x[8 * (MAXT + 1)] = {0}, y[8 * (MAXT + 1)];
    void *eo;
    int way[64] = {0};
    if (ctx == NULL || other == NULL)
        return mt_finish("test_coll_mpi errors");
    /* One bad rank at a time: an expert id, capacity, a NULL output. */
    expect_bad_ranks(ctx, 1u << (1 % nranks), way);
    MT_CHECK(mt_rank != 1 % nranks || strstr(epc_last_error(ctx), "token 1"), "message: %s",
             epc_last_error(ctx));
    way[0] = 1;
    expect_bad_ranks(ctx, 1u, way);
    way[nranks - 1] = 4;
    expect_bad_ranks(ctx, 1u << (nranks - 1), way);
    /* Ranks that disagree on algo: EPC_ERR_MISMATCH on every rank. */
    inputs_of(&sc, mt_rank, 0, idx, w);
    a.x = x, a.num_tokens = tokens_of(&sc, mt_rank), a.topk = 2, a.topk_idx = idx, a.topk_weights = w;
    a.algo = mt_rank == nranks - 1 ? EPC_ALGO_FLAT : EPC_ALGO_HIER;
    MT_CHECK(epc_dispatch(ctx, &a, &o, &h1) == EPC_ERR_MISMATCH && h1 == NULL, "algo mismatch: %s",
             epc_last_error(ctx));
    a.algo = EPC_ALGO_DEFAULT;
    /* The context still works after all that. */
    MT_CHECK(epc_dispatch(ctx, &a, &o, &h1) == EPC_OK, "dispatch: %s", epc_last_error(ctx));
    MT_CHECK(epc_dispatch(other, &a, &o, &ho) == EPC_OK, "dispatch: %s", epc_last_error(other));
    MT_CHECK(epc_dispatch(ctx, &a, &o, &h2) == EPC_OK, "dispatch: %s", epc_last_error(ctx));
    /* the second dispatch after h1 reuses its buffers (two alternate) */
    MT_CHECK(epc_dispatch(ctx, &a, &o, &h3) == EPC_OK, "dispatch: %s", epc_last_error(ctx));
    /* The combine buffer of a stale handle: refused, *buf untouched. */
    eo = &a;
    MT_CHECK(epc_combine_buffer(ctx, h1, &eo) == EPC_ERR_INVALID_ARG && eo == (void *)&a &&
                 strstr(epc_last_error(ctx), "followed"),
             "stale buffer: %s", epc_last_error(ctx));
    epc_combine_buffer(ctx, h2, &eo);
    c.expert_out = eo, c.y = y;
    /* A stale handle, on every rank: all refuse, y untouched. */
    memset(y, 0x33, sizeof y);
    MT_CHECK(epc_combine(ctx, h1, &c) == EPC_ERR_INVALID_ARG && strstr(epc_last_error(ctx), "followed"),
             "stale: %s", epc_last_error(ctx));
    /* Another context's handle on one rank: it refuses, the others name it. */
    MT_CHECK(epc_combine(ctx, mt_rank == 0 ? ho : h2, &c) ==
                 (mt_rank == 0 ? EPC_ERR_INVALID_ARG : EPC_ERR_PEER_FAILED),
             "foreign: %s", epc_last_error(ctx));
    for (size_t i = 0; i < sizeof y / 2; i++)
        MT_CHECK(y[i] == 0x3333, "y written at %zu", i);
    /* Another context's handle in cached dispatch (all ranks): refused. */
    MT_CHECK(epc_dispatch(ctx, &a, &o, &ho) == EPC_ERR_INVALID_ARG, "foreign cached");
    /* (that refused dispatch took h2's buffers: h3 is the live one) */
    MT_CHECK(epc_combine(ctx, h3, &c) == EPC_OK, "combine: %s", epc_last_error(ctx));
    epc_handle_destroy(h1), epc_handle_destroy(h2), epc_handle_destroy(h3);
    epc_handle_destroy(ho);
    several_bad_ranks(ctx);
    MT_CHECK(epc_ctx_destroy(other) == EPC_OK && epc_ctx_destroy(ctx) == EPC_OK, "destroy");
    return mt_finish("test_coll_mpi errors");
}

/* Iteration it's random shape: a pure function of (seed, it), so every
 * rank draws the same one. */
static scen_t soak_shape(uint64_t seed, int it, int *algo, int *unweighted)
{
    static const epc_dtype_t dt[] = {EPC_DTYPE_FP32, EPC_DTYPE_BF16, EPC_DTYPE_FP16};
    uint64_t h = mix(seed * 0x9e3779b97f4a7c15ull + (uint64_t)it + 1);
    scen_t sc;
    sc.E = nranks * (1 + (int)(h % 8));
    sc.k = 1 + (int)((h >> 8) % (uint64_t)(sc.E < 8 ? sc.E : 8));
    sc.hidden = 1 + (int)((h >> 16) % 128);
    sc.tmode = (int)((h >> 24) % 5);
    sc.align = 1 << (int)((h >> 28) % 4);
    sc.dtype = dt[(h >> 32) % 3];
    *algo = (h >> 36) & 1 ? EPC_ALGO_HIER : EPC_ALGO_FLAT;
    *unweighted = (int)((h >> 37) & 1);
    return sc;
}

/*
 * Soak: `iters` rounds, each a fresh context with a random shape (experts,
 * top-k, hidden, dtype, token counts, alignment, algorithm, weighting) and
 * fresh routing, every row and every combined value checked; then resident
 * memory must have grown by under 5% since iteration 50, and descriptors
 * and shared-memory mappings must be back to what they were before the
 * first context.
 */
static int mode_soak(int iters, uint64_t seed)
{
    int fds = mt_count_dir("/proc/self/fd"), maps = mt_count_shm_maps(), it;
    long rss50 = 0, rss_end;
    char *y = malloc((MAXT + 1) * 128 * sizeof(float));
    inputs_t in;
    double t0 = MPI_Wtime(), growth, worst;
    memset(&in, 0, sizeof in);
    if (mt_rank == 0)
        printf("soak: %d iterations, seed %llu (rerun: test_coll_mpi soak %d %llu)\n", iters,
               (unsigned long long)seed, iters, (unsigned long long)seed);
    for (it = 0; it < iters; it++) {
        int algo, unweighted;
        scen_t sc = soak_shape(seed, it, &algo, &unweighted);
        epc_ctx_t *ctx = make_ctx(&sc);
        epc_handle_t *h = NULL;
        if (ctx == NULL)
            break;
        gen_all(&sc, it, &in);
        round_trip(ctx, &sc, &in, it, (epc_algo_t)algo, unweighted, &h, y);
        epc_handle_destroy(h);
        MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
        if (it == 49)
            rss50 = mt_rss_kib();
        if (mt_rank == 0 && (it + 1) % 250 == 0)
            printf("soak: %d iterations (%.0f s)\n", it + 1, MPI_Wtime() - t0), fflush(stdout);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    rss_end = mt_rss_kib();
    growth = rss50 > 0 ? (double)(rss_end - rss50) / (double)rss50 : 1.0;
    MPI_Reduce(&growth, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (mt_rank == 0)
        printf("soak: rank 0 resident %ld KiB after 50 iterations, %ld KiB after %d; "
               "largest growth on any rank %+.2f%%\n", rss50, rss_end, it, 100.0 * worst);
    MT_CHECK(it == iters && iters > 50, "ran %d of %d iterations", it, iters);
#if EPC_TEST_ASAN /* its quarantine keeps freed memory resident on purpose */
    if (mt_rank == 0)
        printf("soak: resident memory not checked under AddressSanitizer\n");
#else
    MT_CHECK(growth < 0.05, "resident memory grew %.2f%% (%ld -> %ld KiB)", 100.0 * growth, rss50,
             rss_end);
#endif
    MT_CHECK(mt_count_dir("/proc/self/fd") == fds, "fds %d -> %d", fds,
             mt_count_dir("/proc/self/fd"));
    MT_CHECK(mt_count_shm_maps() == maps, "shared-memory mappings %d -> %d", maps,
             mt_count_shm_maps());
    for (int r = 0; r < nranks; r++)
        free(in.idx[r]), free(in.w[r]);
    free(y);
    return mt_finish("test_coll_mpi soak");
}

/* Bytes this host's IFACE has sent: read by local rank 0 only (one per
 * host), 0 elsewhere, so a sum over ranks is a sum over hosts. */
static double host_tx(const char *iface)
{
    char path[256];
    double v = -1;
    FILE *f;
    if (lrank_of[mt_rank] != 0)
        return 0;
    snprintf(path, sizeof path, "/sys/class/net/%s/statistics/tx_bytes", iface);
    if ((f = fopen(path, "r")) != NULL) {
        if (fscanf(f, "%lf", &v) != 1)
            v = -1;
        fclose(f);
    }
    MT_CHECK(v >= 0, "cannot read %s", path);
    return v;
}

/* Sum over ranks of {link tx, library inter-node bytes, intra-node bytes}. */
static void traffic(epc_ctx_t *ctx, const char *iface, double sum[3])
{
    epc_ctx_stats_t st;
    double mine[3];
    MPI_Barrier(MPI_COMM_WORLD);
    MT_CHECK(epc_ctx_stats(ctx, &st) == EPC_OK, "stats: %s", epc_last_error(ctx));
    mine[0] = host_tx(iface);
    mine[1] = (double)st.bytes_sent[EPC_LINK_OTHER_NODE];
    mine[2] = (double)st.bytes_sent[EPC_LINK_SAME_NUMA] + (double)st.bytes_sent[EPC_LINK_SAME_NODE];
    MPI_Allreduce(mine, sum, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

/* Dispatch + combine, hier then flat, every value checked, between two
 * readings of the links' counters.  The links may carry the library's
 * inter-node bytes plus protocol overhead (TCP/IP headers, MPI's own
 * messages; about 1% was seen): at most 5% + 1 MiB more.  Intra-node
 * bytes, several times that margin here, must not appear on them. */
static int mode_links(const char *iface, int want_nodes)
{
    const scen_t sc = {64, 8, 7168, T_MAX, 1, EPC_DTYPE_BF16};
    size_t ysz = (MAXT + 1) * (size_t)sc.hidden * esize(sc.dtype);
    epc_ctx_t *ctx = make_ctx(&sc);
    double a[3], b[3], tx, net, local;
    char *y = malloc(ysz);
    inputs_t in;
    memset(&in, 0, sizeof in);
    MT_CHECK(nnodes == want_nodes, "the library found %d nodes, the cluster has %d", nnodes, want_nodes);
    gen_all(&sc, 0, &in);
    traffic(ctx, iface, a);
    for (int algo = EPC_ALGO_HIER; ctx != NULL && algo <= EPC_ALGO_FLAT; algo++) {
        epc_handle_t *h = NULL;
        round_trip(ctx, &sc, &in, 0, (epc_algo_t)algo, 0, &h, y);
        epc_handle_destroy(h);
    }
    traffic(ctx, iface, b);
    tx = b[0] - a[0], net = b[1] - a[1], local = b[2] - a[2];
    if (mt_rank == 0)
        printf("links: %.0f bytes crossed the links; the library sent %.0f inter-node and %.0f "
               "intra-node bytes\n", tx, net, local);
    MT_CHECK(net > 0 && local > 3 * (0.05 * net + (1 << 20)), "too little traffic to tell: net %.0f local %.0f", net, local);
    MT_CHECK(tx >= net, "the links carried %.0f bytes, less than the %.0f inter-node bytes", tx, net);
    MT_CHECK(tx <= 1.05 * net + (1 << 20), "the links carried %.0f bytes for %.0f inter-node bytes: "
             "same-host traffic (%.0f bytes) crossed them", tx, net, local);
    for (int r = 0; r < nranks; r++)
        free(in.idx[r]), free(in.w[r]);
    free(y);
    MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
    return mt_finish("test_coll_mpi links");
}

int main(int argc, char **argv)
{
    mt_init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    node_of = calloc((size_t)nranks, sizeof *node_of);
    lrank_of = calloc((size_t)nranks, sizeof *lrank_of);
    if (argc == 2 && !strcmp(argv[1], "data"))
        return mode_data();
    if (argc == 2 && !strcmp(argv[1], "nonblocking"))
        return mode_nonblocking();
    if (argc == 2 && !strcmp(argv[1], "errors"))
        return mode_errors();
    if (argc == 4 && !strcmp(argv[1], "soak") && atoi(argv[2]) > 0)
        return mode_soak(atoi(argv[2]), strtoull(argv[3], NULL, 10));
    if (argc == 4 && !strcmp(argv[1], "links") && atoi(argv[3]) > 0)
        return mode_links(argv[2], atoi(argv[3]));
    if (mt_rank == 0)
        fprintf(stderr, "usage: test_coll_mpi data|errors|soak ITERS SEED|links IFACE NODES\n");
    MPI_Finalize();
    return 2;
}
