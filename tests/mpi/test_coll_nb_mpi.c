/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_coll_nb_mpi - the nonblocking dispatch and combine: a two-microbatch
 * pipeline on both algorithms, every result against coll_ref.h's
 * reference; outputs untouched while in flight; the request limits (a
 * second dispatch or combine in flight, a third request, a free in flight)
 * refused on every rank; a handle two dispatches old refused; bad
 * arguments.  With EPC_PROGRESS=thread the context's thread advances the
 * requests (epc_test only reports).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_ref.h"
#include "epcomm.h"
#include "mpi_test.h"

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
 * buffer for h, or over the received rows when sc->in_place), its y
 * poisoned; with sk, over the scalar channel too (T:
 * this rank's tokens). */
static epc_request_t *nb_combine_start(epc_ctx_t *ctx, const scen_t *sc,
                                       const epc_dispatch_out_t *o, epc_handle_t *h, void *y,
                                       size_t ylen, int T, scalars_check_t *sk, const char *what)
{
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_request_t *req = NULL;
    void *eo = NULL;
    if (sc->in_place) /* over the received rows: hier reads them there */
        eo = (void *)o->rows;
    else
        MT_CHECK(epc_combine_buffer(ctx, h, &eo) == EPC_OK, "%s: buffer: %s", what,
                 epc_last_error(ctx));
    run_experts(sc, o, eo);
    memset(y, 0x7f, ylen);
    c.expert_out = eo, c.y = y;
    if (sk != NULL)
        scalars_arm(o, T, sc->k, sk, &c);
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
    epc_request_t *ra = nb_combine_start(ctx, sc, &o[0], h[0], y, sz, 0, NULL, what), *rb = NULL;
    c.expert_out = o[1].rows, c.y = y;
    MT_CHECK(epc_combine_start(ctx, h[1], &c, &rb) == EPC_ERR_CAPACITY &&
                 strstr(epc_last_error(ctx), "a combine is already in flight") != NULL,
             "%s: a second combine in flight: %s", what, epc_last_error(ctx));
    MT_CHECK(rb == NULL, "%s: a refused start wrote req", what);
    MT_CHECK(epc_wait(ra) == EPC_OK, "%s: combine A again: %s", what, epc_last_error(ctx));
    epc_request_free(ra);
}

/* Dispatch A, started and tested once: its outputs stay untouched while in
 * flight (written only at completion, which a progress thread may reach
 * at any moment: then they cannot be looked at); driven, then checked. */
static void nb_first_dispatch(epc_ctx_t *ctx, const scen_t *sc, const inputs_t *in,
                              const epc_dispatch_args_t *a, epc_dispatch_out_t *o, epc_handle_t **h,
                              const char *what)
{
    epc_dispatch_out_t poison = EPC_DISPATCH_OUT_INIT;
    epc_request_t *rd = NULL;
    int done = 0;
    *o = poison = mt_poisoned_out();
    MT_CHECK(epc_dispatch_start(ctx, a, o, h, &rd) == EPC_OK, "%s: start: %s", what,
             epc_last_error(ctx));
    MT_CHECK(epc_test(rd, &done) == EPC_OK || done, "%s: test: %s", what, epc_last_error(ctx));
    if (!done && !thread_progress())
        MT_CHECK(*h == NULL && memcmp(o, &poison, sizeof poison) == 0,
                 "%s: outputs written while in flight", what);
    MT_CHECK(drive(rd, what) == EPC_OK, "%s: dispatch A: %s", what, epc_last_error(ctx));
    check_dispatch(sc, in, 0, o, what);
}

/* A third dispatch reuses A's buffers: A's handle h0 is stale on every
 * rank, its combine refused naming the handle. */
static void nb_stale_handle(epc_ctx_t *ctx, const epc_dispatch_args_t *a, epc_handle_t *h0,
                            const char *what)
{
    epc_dispatch_out_t o3 = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h3 = NULL;
    epc_request_t *rc = NULL;
    MT_CHECK(epc_dispatch(ctx, a, &o3, &h3) == EPC_OK, "%s: dispatch C: %s", what,
             epc_last_error(ctx));
    MT_CHECK(epc_combine_start(ctx, h0, NULL, &rc) == EPC_OK, "%s: stale start", what);
    MT_CHECK(epc_wait(rc) == EPC_ERR_INVALID_ARG && strstr(epc_last_error(ctx), "handle") != NULL,
             "%s: a stale handle's combine: %s", what, epc_last_error(ctx));
    epc_request_free(rc);
    epc_handle_destroy(h3);
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
    epc_dispatch_out_t o[2] = {EPC_DISPATCH_OUT_INIT, EPC_DISPATCH_OUT_INIT},
                       o3 = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h[2] = {NULL, NULL}, *h3 = NULL;
    epc_request_t *rd = NULL, *rc = NULL, *r3 = NULL;
    scalars_check_t sk;
    if (ctx == NULL)
        return;
    snprintf(what, sizeof what, "nb E=%d k=%d H=%d %s", sc->E, sc->k, sc->hidden,
             algo == EPC_ALGO_HIER ? "hier" : "flat");
    memset(in, 0, sizeof in);
    for (int it = 0; it < 2; it++) {
        gen_all(sc, it, &in[it]);
        nb_args(sc, &in[it], it, algo, x[it], &a[it]);
    }
    nb_first_dispatch(ctx, sc, &in[0], &a[0], &o[0], &h[0], what);
    MT_CHECK(epc_dispatch_start(ctx, &a[1], &o[1], &h[1], &rd) == EPC_OK, "%s: start B: %s", what,
             epc_last_error(ctx));
    MT_CHECK(epc_dispatch_start(ctx, &a[1], &o3, &h3, &r3) == EPC_ERR_CAPACITY,
             "%s: a second dispatch in flight was not refused", what);
    MT_CHECK(epc_request_free(rd) == EPC_ERR_INVALID_ARG, "%s: freed in flight", what);
    /* A's combine, scalar channel included, while B's dispatch is in flight */
    rc = nb_combine_start(ctx, sc, &o[0], h[0], y, sz, in[0].T[mt_rank], &sk, what);
    MT_CHECK(epc_combine_start(ctx, h[0], NULL, &r3) == EPC_ERR_CAPACITY,
             "%s: a third request was not refused", what);
    MT_CHECK(drive(rc, what) == EPC_OK, "%s: combine A: %s", what, epc_last_error(ctx));
    scalars_verify(sc, &in[0], &sk, what);
    ref_combine(sc, &in[0], 0, 0, ref);
    MT_CHECK(memcmp(y, ref, (size_t)in[0].T[mt_rank] * rb) == 0, "%s: combine A differs", what);
    MT_CHECK(drive(rd, what) == EPC_OK, "%s: dispatch B: %s", what, epc_last_error(ctx));
    check_dispatch(sc, &in[1], 1, &o[1], what);
    rc = nb_combine_start(ctx, sc, &o[1], h[1], y, sz, 0, NULL, what);
    MT_CHECK(epc_wait(rc) == EPC_OK, "%s: combine B: %s", what, epc_last_error(ctx));
    MT_CHECK(epc_request_free(rc) == EPC_OK, "%s: free", what);
    ref_combine(sc, &in[1], 1, 0, ref);
    MT_CHECK(memcmp(y, ref, (size_t)in[1].T[mt_rank] * rb) == 0, "%s: combine B differs", what);
    nb_two_combines(ctx, sc, o, h, y, sz, what);
    nb_stale_handle(ctx, &a[0], h[0], what);
    for (int it = 0; it < 2; it++) {
        for (int r = 0; r < nranks; r++)
            free(in[it].idx[r]), free(in[it].w[r]);
        epc_handle_destroy(h[it]);
        free(x[it]);
    }
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
        {256, 8, 33, T_UNEVEN, 1, EPC_DTYPE_BF16, 0},
        {2 * nranks, 2, 5, T_ZERO_SOME, 4, EPC_DTYPE_FP32, 0},
        {64, 4, 1024, T_MAX, 1, EPC_DTYPE_BF16, 1},
    };
    nb_bad_args();
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        if (list[i].E % nranks == 0 && list[i].k <= list[i].E) {
            nb_pipeline(&list[i], EPC_ALGO_HIER);
            nb_pipeline(&list[i], EPC_ALGO_FLAT);
        }
    return mt_finish("test_coll_nb_mpi");
}

int main(int argc, char **argv)
{
    coll_ref_init(&argc, &argv);
    return mode_nonblocking();
}
