/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * coll_ref.h - what the dispatch/combine tests (test_coll_mpi,
 * test_coll_nb_mpi) check against, computed here, independently of the
 * library.
 *
 * Every rank can regenerate every rank's inputs (a pure function of rank,
 * scenario and iteration), so the expected rows of each receiver and the
 * expected combine result of each source are computed here: received rows
 * are compared element by element with the encoding of (source rank,
 * token, position, iteration), metadata and order with the reference,
 * combine with a sum done here in the documented order (node, then local
 * rank, then local expert) from known expert functions, bit for bit.
 * Header-only (static inline), as mpi_test.h: each test program is one
 * translation unit.
 */
#ifndef EPC_TEST_COLL_REF_H
#define EPC_TEST_COLL_REF_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epcomm.h"
#include "mpi_test.h"

static int nranks, nnodes, *node_of, *lrank_of;

typedef struct scen {
    int E, k, hidden, tmode, align;
    epc_dtype_t dtype;
    int in_place; /* expert outputs over the received rows: 1 every rank, 2 rank 0 only */
} scen_t;

enum { T_UNEVEN, T_ZERO_SOME, T_MAX, T_NONE_SOME, T_ONE_EXPERT };
#define MAXT 48

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33, x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static inline int tokens_of(const scen_t *sc, int r)
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
static inline void inputs_of(const scen_t *sc, int r, int it, int32_t *idx, float *w)
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
static inline float xval(int r, int t, int i, int it)
{
    return (float)((r * 37 + t * 11 + i * 3 + it * 5) % 33 - 16);
}

/* Set: expert_fn also gives -0, +-Inf and NaN (bf16 and fp32 only: fp16
 * NaN payloads are the conversion's), so the sums' signed zeros and NaNs
 * are checked bit for bit too. */
static int expert_specials;

/* Expert g's function (exact in every dtype for |x| <= 16). */
static inline float expert_fn(int g, float x)
{
    static const float special[] = {-0.0f, INFINITY, -INFINITY, NAN};
    int c = (g * 7 + (int)x + 16) % 23;
    if (expert_specials && c < 4)
        return special[c];
    return (x + (float)(g % 7 + 1)) * (1.0f + (float)(g % 4) / 4.0f);
}

static inline size_t esize(epc_dtype_t d)
{
    return d == EPC_DTYPE_FP32 ? 4 : 2;
}

/* Independent conversions (bf16 by rounding the bits; fp16 by _Float16). */
static inline void put(epc_dtype_t d, void *row, int i, float v)
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

static inline float get(epc_dtype_t d, const void *row, int i)
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

static inline void gen_all(const scen_t *sc, int it, inputs_t *in)
{
    for (int r = 0; r < nranks; r++) {
        in->T[r] = tokens_of(sc, r);
        in->idx[r] = realloc(in->idx[r], (size_t)(in->T[r] * sc->k + 1) * sizeof(int32_t));
        in->w[r] = realloc(in->w[r], (size_t)(in->T[r] * sc->k + 1) * sizeof(float));
        inputs_of(sc, r, it, in->idx[r], in->w[r]);
    }
}

/* The rows this rank must receive, in order, and its expert groups. */
static inline void check_dispatch(const scen_t *sc, const inputs_t *in, int it,
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
static inline void run_experts(const scen_t *sc, const epc_dispatch_out_t *o, void *out)
{
    size_t rb = (size_t)sc->hidden * esize(sc->dtype);
    for (int r = 0; r < o->num_rows; r++)
        for (int i = 0; i < sc->hidden; i++) {
            float v = o->src_rank[r] < 0
                          ? NAN
                          : expert_fn(mt_rank * (sc->E / nranks) + o->local_expert[r],
                                      get(sc->dtype, (const char *)o->rows + r * rb, i));
            put(sc->dtype, (char *)out + r * rb, i, v);
        }
}

/* a and b hold the same n values bit for bit, except that any NaN equals
 * any NaN: which NaN an operation on two NaNs gives (their sign, their
 * payload) is the compiler's operand order, not the library's. */
static inline int same_values(epc_dtype_t d, const void *a, const void *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = 0, v = 0;
        size_t s = esize(d);
        memcpy(&u, (const char *)a + i * s, s);
        memcpy(&v, (const char *)b + i * s, s);
        if (u != v && !(isnan(get(d, a, (int)i)) && isnan(get(d, b, (int)i))))
            return 0;
    }
    return 1;
}

/* The combine result of this rank, summed here in the documented order:
 * the token's experts grouped by node, the groups in the order of their
 * lowest expert id, each summed by expert id from 0, the sums added from
 * 0 in that order. */
static inline void ref_combine(const scen_t *sc, const inputs_t *in, int it, int unweighted,
                               void *y)
{
    int k = sc->k, epr = sc->E / nranks, me = mt_rank;
    size_t rb = (size_t)sc->hidden * esize(sc->dtype);
    for (int t = 0; t < in->T[me]; t++)
        for (int i = 0; i < sc->hidden; i++) {
            float acc = 0.0f, x = xval(me, t, i, it);
            uint64_t done = 0;                   /* nodes summed (at most 64 in these tests) */
            for (int g0 = 0; g0 < sc->E; g0++) { /* a group starts at its lowest expert */
                int n = node_of[g0 / epr], picked = 0;
                float ns = 0.0f;
                for (int j = 0; j < k; j++)
                    picked |= in->idx[me][t * k + j] == g0;
                if (!picked || (done >> n & 1))
                    continue;
                for (int g = g0; g < sc->E; g++)
                    for (int j = 0; j < k && node_of[g / epr] == n; j++)
                        if (in->idx[me][t * k + j] == g)
                            ns += (unweighted ? 1.0f : in->w[me][t * k + j]) * expert_fn(g, x);
                acc += ns, done |= 1ull << n;
            }
            put(sc->dtype, (char *)y + t * rb, i, acc);
        }
}

static inline epc_ctx_t *make_ctx(const scen_t *sc)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_ctx_t *ctx = NULL;
    const epc_topo_t *topo;
    p.num_experts = sc->E, p.hidden = sc->hidden, p.dtype = sc->dtype;
    p.max_tokens_per_rank = MAXT, p.max_topk = sc->E < 8 ? sc->E : 8;
    MT_CHECK(epc_ctx_create(MPI_COMM_WORLD, &p, &ctx) == EPC_OK, "create: %s",
             epc_last_error(NULL));
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

/* The scalar a receiving rank gives the row of (its local expert e,
 * source token t): exact in a float, so the source can check it. */
static inline float scalar_code(int rank, int e, int t)
{
    return (float)(((uint32_t)rank * 1000003u + (uint32_t)e * 7919u + (uint32_t)t * 31u) %
                   8388608u);
}

/* The combine's scalar channel, on: every received row's scalar encodes
 * (this rank, local expert, source token); after the combine each slot
 * (t, j) must hold its expert's code, 0 where the slot is -1. */
typedef struct scalars_check {
    float *rows, *slots;
} scalars_check_t;

static inline void scalars_arm(const epc_dispatch_out_t *o, int T, int k, scalars_check_t *sk,
                               epc_combine_args_t *c)
{
    sk->rows = malloc((size_t)(o->num_rows + 1) * sizeof *sk->rows);
    sk->slots = malloc((size_t)(T * k + 1) * sizeof *sk->slots);
    for (int i = 0; i < o->num_rows; i++)
        sk->rows[i] = o->src_rank[i] < 0
                          ? -7.0f /* padding: never sent */
                          : scalar_code(mt_rank, o->local_expert[i], o->src_token[i]);
    memset(sk->slots, 0x7f, (size_t)(T * k + 1) * sizeof *sk->slots); /* poison */
    c->scalar_channel = 1, c->row_scalars = sk->rows, c->topk_scalars = sk->slots;
}

static inline void scalars_verify(const scen_t *sc, const inputs_t *in, scalars_check_t *sk,
                                  const char *what)
{
    int epr = sc->E / nranks, bad = 0;
    for (int i = 0; i < in->T[mt_rank] * sc->k; i++) {
        int g = in->idx[mt_rank][i];
        float want = g < 0 ? 0.0f : scalar_code(g / epr, g % epr, i / sc->k);
        bad += sk->slots[i] != want;
    }
    MT_CHECK(bad == 0, "%s: %d topk_scalars differ from the rows' codes", what, bad);
    free(sk->rows);
    free(sk->slots);
}

/* One dispatch + combine with checks; y gets the combine result.  Odd
 * iterations also use the scalar channel. */
static inline void round_trip(epc_ctx_t *ctx, const scen_t *sc, const inputs_t *in, int it,
                              epc_algo_t algo, int unweighted, epc_handle_t **h, void *y)
{
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    size_t rb = (size_t)sc->hidden * esize(sc->dtype);
    char *x = malloc((size_t)(in->T[mt_rank] + 1) * rb),
         *ref = malloc((size_t)(in->T[mt_rank] + 1) * rb);
    void *eo = NULL;
    scalars_check_t sk;
    char what[96];
    snprintf(what, sizeof what, "E=%d k=%d H=%d dtype=%d T=%d %s it=%d%s%s", sc->E, sc->k,
             sc->hidden, (int)sc->dtype, sc->tmode, algo == EPC_ALGO_HIER ? "hier" : "flat", it,
             *h ? " cached" : "", sc->in_place ? " in place" : "");
    for (int t = 0; t < in->T[mt_rank]; t++)
        for (int i = 0; i < sc->hidden; i++)
            put(sc->dtype, x + t * rb, i, xval(mt_rank, t, i, it));
    a.x = x, a.num_tokens = in->T[mt_rank], a.topk = sc->k, a.topk_idx = in->idx[mt_rank];
    a.topk_weights = in->w[mt_rank], a.expert_alignment = sc->align, a.algo = algo;
    MT_CHECK(epc_dispatch(ctx, &a, &o, h) == EPC_OK, "%s: dispatch: %s", what, epc_last_error(ctx));
    if (*h != NULL) {
        check_dispatch(sc, in, it, &o, what);
        if (sc->in_place == 1 || (sc->in_place == 2 && mt_rank == 0))
            eo = (void *)o.rows; /* hier then reads them where they are */
        else
            MT_CHECK(epc_combine_buffer(ctx, *h, &eo) == EPC_OK, "%s: buffer", what);
        run_experts(sc, &o, eo);
        memset(y, 0x7f, (size_t)in->T[mt_rank] * rb); /* poison */
        c.expert_out = eo, c.y = y, c.unweighted = unweighted;
        if (it % 2 == 1)
            scalars_arm(&o, in->T[mt_rank], sc->k, &sk, &c);
        MT_CHECK(epc_combine(ctx, *h, &c) == EPC_OK, "%s: combine: %s", what, epc_last_error(ctx));
        if (it % 2 == 1)
            scalars_verify(sc, in, &sk, what);
        ref_combine(sc, in, it, unweighted, ref);
        MT_CHECK(same_values(sc->dtype, y, ref, (size_t)in->T[mt_rank] * sc->hidden),
                 "%s: combine differs from the reference%s", what,
                 unweighted ? " (unweighted)" : "");
    }
    free(x);
    free(ref);
}

static inline void scenario(const scen_t *sc)
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
        MT_CHECK(memcmp(yh, yf, (size_t)in.T[mt_rank] * rb) == 0, "it %d: hier and flat differ",
                 it);
        /* Cached mode: same topk_idx, handle reused, the same bits again. */
        round_trip(ctx, sc, &in, it, EPC_ALGO_HIER, it == 1, &hh, y2);
        if (it == 0)
            MT_CHECK(memcmp(yh, y2, (size_t)in.T[mt_rank] * rb) == 0, "cached run differs");
        epc_handle_destroy(hh);
        epc_handle_destroy(hf);
    }
    /* Expert outputs written over the received rows, on every rank (hier
     * reads them in place) and on rank 0 only (it must not): the same
     * bits as the reference, and as flat. */
    for (int mode = 1; ctx != NULL && mode <= 2; mode++) {
        scen_t ip = *sc;
        epc_handle_t *hh = NULL, *hf = NULL;
        ip.in_place = mode;
        gen_all(&ip, 2 + mode, &in);
        round_trip(ctx, &ip, &in, 2 + mode, EPC_ALGO_HIER, 0, &hh, yh);
        round_trip(ctx, &ip, &in, 2 + mode, EPC_ALGO_FLAT, 0, &hf, yf);
        MT_CHECK(memcmp(yh, yf, (size_t)in.T[mt_rank] * rb) == 0,
                 "in place (mode %d): hier and flat differ", mode);
        epc_handle_destroy(hh);
        epc_handle_destroy(hf);
    }
    for (int r = 0; r < nranks; r++)
        free(in.idx[r]), free(in.w[r]);
    free(yh), free(yf), free(y2);
    MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
}

/* MPI (mt_init) and the job's shape, which make_ctx fills in. */
static inline void coll_ref_init(int *argc, char ***argv)
{
    mt_init(argc, argv);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    node_of = calloc((size_t)nranks, sizeof *node_of);
    lrank_of = calloc((size_t)nranks, sizeof *lrank_of);
}

#endif
