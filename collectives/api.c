/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * api.c - the public dispatch/combine entry points: the nonblocking
 * starts (checks, a request, its first steps), the blocking calls (start
 * and wait), the combine buffer and the statistics.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "params.h"
#include "request.h"

#define BADARG(fn, ...) epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG, fn ": " __VA_ARGS__)

/* 0.3's layouts of the dispatch args and out ended before the payload. */
static const epc_params_layouts_t dispatch_layouts = {"EPC_DISPATCH_ARGS_INIT",
                                                      sizeof(epc_dispatch_args_t),
                                                      {offsetof(epc_dispatch_args_t, payload), 0}};
static const epc_params_layouts_t out_layouts = {"EPC_DISPATCH_OUT_INIT",
                                                 sizeof(epc_dispatch_out_t),
                                                 {offsetof(epc_dispatch_out_t, row_stride), 0}};
/* 0.2's layout of the combine args ended before the scalar channel, 0.3's
 * before the wire. */
static const epc_params_layouts_t combine_layouts = {"EPC_COMBINE_ARGS_INIT",
                                                     sizeof(epc_combine_args_t),
                                                     {offsetof(epc_combine_args_t, scalar_channel),
                                                      offsetof(epc_combine_args_t, wire),
                                                      offsetof(epc_combine_args_t, order), 0}};

/* args->algo, else the context's (EPC_ALGO, read at its creation). */
static epc_algo_t pick_algo(const epc_ctx_t *ctx, const epc_dispatch_args_t *a)
{
    return a->algo != EPC_ALGO_DEFAULT ? a->algo : ctx->algo;
}

/* This rank's checks of a dispatch that need no peer (a, loaded from the
 * caller's args): the verdict travels with the counts (or the cached
 * mode's agreement). */
static epc_status_t check_dispatch(epc_ctx_t *ctx, const epc_dispatch_args_t *a,
                                   epc_dispatch_out_t *out, epc_handle_t **handle, epc_algo_t algo)
{
    epc_status_t st;
    if (algo != EPC_ALGO_HIER && algo != EPC_ALGO_FLAT)
        return BADARG("epc_dispatch", "args->algo = %d", (int)a->algo);
    if ((st = epc_out_check(out, &out_layouts, &ctx->hdr, "epc_dispatch", "out")) != EPC_OK)
        return st;
    if (handle == NULL)
        return BADARG("epc_dispatch", "handle is NULL");
    if (*handle != NULL && !coll_handle_owned(ctx, *handle))
        return BADARG("epc_dispatch", "*handle is not a handle of this context");
    return EPC_OK;
}

/* epc_dispatch_start with the context's lock held. */
static epc_status_t dispatch_start(epc_ctx_t *ctx, const epc_dispatch_args_t *args,
                                   epc_dispatch_out_t *out, epc_handle_t **handle,
                                   epc_request_t **req)
{
    epc_status_t st = epc_ctx_enter(ctx, "epc_dispatch");
    epc_algo_t algo;
    epc_lane_t *ln;
    epc_request_t *r;
    if (st != EPC_OK)
        return st; /* no context, or a dead one: no one to tell */
    if (req == NULL)
        return BADARG("epc_dispatch_start", "req is NULL");
    ln = &ctx->comm.lane[ctx->dispatches % EPC_LANES];
    if ((st = coll_req_new(ctx, ln, 1, "epc_dispatch", &r)) != EPC_OK)
        return st;
    ctx->dispatches++;
    ctx->lane_dispatches[ln->index]++; /* older handles of this lane are stale from now on */
    /* its arrays stay the caller's until the request ends */
    r->local =
        epc_params_load(&r->args, args, &dispatch_layouts, &ctx->hdr, "epc_dispatch", "args");
    algo = pick_algo(ctx, &r->args);
    if (r->local == EPC_OK)
        r->local = check_dispatch(ctx, &r->args, out, handle, algo);
    r->cached = handle != NULL && *handle != NULL;
    r->out = out;
    r->handle_p = handle;
    if (r->local == EPC_OK) {
        if (r->cached) {
            r->h = *handle; /* unusable once its rows start moving (plan.c) */
        } else {
            r->local = coll_handle_new(ctx, &r->args, algo, &r->h);
        }
    }
    r->step = coll_plan_step_post;
    coll_progress(ctx); /* posts the count exchange */
    epc_ctx_kick(ctx);
    *req = r;
    return EPC_OK;
}

epc_status_t epc_dispatch_start(epc_ctx_t *ctx, const epc_dispatch_args_t *args,
                                epc_dispatch_out_t *out, epc_handle_t **handle, epc_request_t **req)
{
    epc_status_t st = epc_ctx_check(ctx, "epc_dispatch");
    if (st != EPC_OK)
        return st;
    epc_ctx_lock(ctx);
    st = dispatch_start(ctx, args, out, handle, req);
    epc_ctx_unlock(ctx);
    return st;
}

/* Local checks of a combine, the caller's args loaded into *a; raised
 * into the context. */
static epc_status_t check_combine(epc_ctx_t *ctx, const epc_handle_t *h,
                                  const epc_combine_args_t *args, epc_combine_args_t *a)
{
    epc_status_t st;
    if (!coll_handle_owned(ctx, h))
        return BADARG("epc_combine", "handle is %s", h == NULL ? "NULL" : "not of this context");
    if (h->lane < 0 || ctx->lane_dispatches[h->lane] != h->lane_seq)
        return BADARG("epc_combine",
                      "the handle's dispatch %s; combine before the second dispatch after it",
                      h->lane < 0 ? "did not complete"
                                  : "was followed by two others (its rows were overwritten)");
    st = epc_params_load(a, args, &combine_layouts, &ctx->hdr, "epc_combine", "args");
    if (st != EPC_OK)
        return st;
    if (a->expert_out == NULL && h->num_rows[ctx->comm.rank] > 0)
        return BADARG("epc_combine", "args->expert_out is NULL");
    if (a->y == NULL && h->T > 0)
        return BADARG("epc_combine", "args->y is NULL");
    if (a->scalar_channel != 0 && a->scalar_channel != 1)
        return BADARG("epc_combine", "args->scalar_channel = %d (0 or 1)", a->scalar_channel);
    if (a->wire != EPC_WIRE_FP32 && a->wire != EPC_WIRE_BF16)
        return BADARG("epc_combine", "args->wire = %d (EPC_WIRE_FP32 or EPC_WIRE_BF16)",
                      (int)a->wire);
    if (a->order != EPC_ORDER_NODES && a->order != EPC_ORDER_LOGICAL)
        return BADARG("epc_combine", "args->order = %d (EPC_ORDER_NODES or EPC_ORDER_LOGICAL)",
                      (int)a->order);
    if (a->order == EPC_ORDER_LOGICAL && a->wire == EPC_WIRE_BF16)
        return BADARG("epc_combine", "args->wire EPC_WIRE_BF16 with args->order "
                                     "EPC_ORDER_LOGICAL: that order has no node sums to round");
    if (a->scalar_channel && ((a->row_scalars == NULL && h->num_rows[ctx->comm.rank] > 0) ||
                              (a->topk_scalars == NULL && h->T > 0)))
        return BADARG("epc_combine", "args->%s is NULL with scalar_channel 1",
                      a->topk_scalars == NULL ? "topk_scalars" : "row_scalars");
    return EPC_OK;
}

/* Every rank's verdict on its combine arguments with its reason, in one
 * collective on the combine lane's communicator (posted at the start, so
 * in the same order on every rank, whatever handle each was given). */
/* status, scalar_channel, wire, in place, order, reason */
#define VERDICT_REASON 5
#define VERDICT_INTS (VERDICT_REASON + EPC_REASON_LEN / 4)

/* Every rank's args->scalar_channel, wire and order must be this rank's:
 * EPC_ERR_MISMATCH (on every rank, which all see the same verdicts)
 * otherwise. */
static epc_status_t options_agreed(epc_request_t *r)
{
    epc_ctx_t *ctx = r->ctx;
    for (int s = 0; s < ctx->comm.nranks; s++) {
        const int *rec = r->rec_all + (size_t)s * VERDICT_INTS;
        if (rec[1] != r->cargs.scalar_channel)
            return epc_error_obj(&ctx->hdr, EPC_ERR_MISMATCH,
                                 "epc_combine: ranks disagree on args->scalar_channel (rank %d: "
                                 "%d, this rank: %d)",
                                 s, rec[1], r->cargs.scalar_channel);
        if (rec[2] != (int)r->cargs.wire)
            return epc_error_obj(&ctx->hdr, EPC_ERR_MISMATCH,
                                 "epc_combine: ranks disagree on args->wire (rank %d: %d, this "
                                 "rank: %d)",
                                 s, rec[2], (int)r->cargs.wire);
        if (rec[4] != (int)r->cargs.order)
            return epc_error_obj(&ctx->hdr, EPC_ERR_MISMATCH,
                                 "epc_combine: ranks disagree on args->order (rank %d: %d, this "
                                 "rank: %d)",
                                 s, rec[4], (int)r->cargs.order);
    }
    return EPC_OK;
}

/* After every rank's checks are known: the algorithm's schedule, or the
 * verdict (a failing rank keeps its own error, the others name the lowest
 * failing rank). */
static epc_status_t step_combine_agreed(epc_request_t *r)
{
    epc_ctx_t *ctx = r->ctx;
    epc_status_t st = coll_req_test_coll(r, &r->xcoll, "combine agreement");
    if (st == EPC_ERR_TIMEOUT)
        return epc_error_obj(&ctx->hdr, EPC_ERR_TIMEOUT,
                             "epc_combine: timed out agreeing on the arguments (a rank did not "
                             "call epc_combine)");
    if (st != EPC_OK && st != EPC_IN_PROGRESS && st != EPC_ERR_TRANSPORT) /* a peer aborted */
        return epc_error_context(&ctx->hdr, st, "epc_combine: agreeing on the arguments");
    if (st != EPC_OK)
        return st;
    if (r->local != EPC_OK)
        return epc_error_restore(&ctx->hdr, r->local, r->error);
    for (int s = 0; s < ctx->comm.nranks; s++) {
        const int *rec = r->rec_all + (size_t)s * VERDICT_INTS;
        char reason[EPC_REASON_LEN];
        if (rec[0] == EPC_OK)
            continue;
        memcpy(reason, rec + VERDICT_REASON, sizeof reason);
        reason[sizeof reason - 1] = '\0';
        return epc_error_obj(&ctx->hdr, EPC_ERR_PEER_FAILED, "epc_combine: rank %d: %s", s, reason);
    }
    if ((st = options_agreed(r)) != EPC_OK)
        return st;
    epc_fault_here("combine"); /* test hook */
    /* one sum per token over all its outputs: flat's exchange brings them */
    r->step = r->h->algo == EPC_ALGO_HIER && r->cargs.order == EPC_ORDER_NODES
                  ? coll_hier_combine_begin
                  : coll_flat_combine_begin;
    return r->cargs.scalar_channel ? coll_scalars_post(r) : EPC_OK;
}

int coll_req_in_place(const epc_request_t *r, int s)
{
    return r->rec_all[(size_t)s * VERDICT_INTS + 3];
}

/* Posts this rank's verdict; EPC_OK or why it could not. */
static epc_status_t post_verdict(epc_request_t *r)
{
    epc_ctx_t *ctx = r->ctx;
    r->rec_mine = calloc(VERDICT_INTS, sizeof *r->rec_mine);
    r->rec_all = calloc((size_t)VERDICT_INTS * ctx->comm.nranks, sizeof *r->rec_all);
    if (r->rec_mine == NULL || r->rec_all == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_combine: verdicts");
    r->rec_mine[0] = r->local;
    r->rec_mine[1] = r->local == EPC_OK ? r->cargs.scalar_channel : 0;
    r->rec_mine[2] = r->local == EPC_OK ? (int)r->cargs.wire : 0;
    r->rec_mine[4] = r->local == EPC_OK ? (int)r->cargs.order : 0;
    /* expert outputs written over the received rows (native dtype): hier
     * then reads them where they are, not from a copy (hier_combine.c) */
    if (r->local == EPC_OK && !r->h->fp8 &&
        (r->h->num_rows[ctx->comm.rank] == 0 || r->cargs.expert_out == (const void *)r->h->rows))
        r->rec_mine[3] = COLL_OUT_ROWS;
    else if (r->local == EPC_OK && r->h->algo == EPC_ALGO_HIER &&
             r->cargs.expert_out == (const void *)coll_hier_staging(ctx, r->h))
        r->rec_mine[3] = COLL_OUT_STAGED;
    if (r->local != EPC_OK) {
        snprintf(r->error, sizeof r->error, "%s", epc_last_error(NULL));
        /* cut to the record (calloc'd: stays terminated) */
        memcpy(r->rec_mine + VERDICT_REASON, r->error, strnlen(r->error, EPC_REASON_LEN - 1));
    }
    return epc_lane_allgather_post(coll_req_lane(r), r->rec_mine, VERDICT_INTS, r->rec_all,
                                   &r->xcoll, "MPI_Iallgather(verdicts)");
}

/* epc_combine_start with the context's lock held. */
static epc_status_t combine_start(epc_ctx_t *ctx, epc_handle_t *h, const epc_combine_args_t *args,
                                  epc_request_t **req)
{
    epc_status_t st = epc_ctx_enter(ctx, "epc_combine"), local;
    epc_combine_args_t a;
    epc_request_t *r;
    if (st != EPC_OK)
        return st;
    if (req == NULL)
        return BADARG("epc_combine_start", "req is NULL");
    local = check_combine(ctx, h, args, &a);
    /* a rank without a usable handle has no lane; it holds lane 0's place */
    st = coll_req_new(ctx, &ctx->comm.lane[local == EPC_OK ? h->lane : 0], 0, "epc_combine", &r);
    if (st != EPC_OK)
        return st;
    r->local = local;
    r->h = local == EPC_OK ? h : NULL;
    if (local == EPC_OK)
        r->cargs = a;
    r->cached = 1; /* the handle is the caller's: never freed by the request */
    r->step = step_combine_agreed;
    if ((st = post_verdict(r)) != EPC_OK) { /* the verdict could not even be posted */
        r->status = epc_ctx_leave(ctx, st);
        snprintf(r->error, sizeof r->error, "%s", epc_last_error(NULL));
    }
    coll_progress(ctx);
    epc_ctx_kick(ctx);
    *req = r;
    return EPC_OK;
}

epc_status_t epc_combine_start(epc_ctx_t *ctx, epc_handle_t *h, const epc_combine_args_t *args,
                               epc_request_t **req)
{
    epc_status_t st = epc_ctx_check(ctx, "epc_combine");
    if (st != EPC_OK)
        return st;
    epc_ctx_lock(ctx);
    st = combine_start(ctx, h, args, req);
    epc_ctx_unlock(ctx);
    return st;
}

epc_status_t epc_dispatch(epc_ctx_t *ctx, const epc_dispatch_args_t *args, epc_dispatch_out_t *out,
                          epc_handle_t **handle)
{
    epc_request_t *r;
    epc_status_t st = epc_dispatch_start(ctx, args, out, handle, &r);
    if (st != EPC_OK)
        return st;
    st = epc_wait(r);
    epc_request_free(r);
    return st;
}

epc_status_t epc_combine(epc_ctx_t *ctx, epc_handle_t *h, const epc_combine_args_t *args)
{
    epc_request_t *r;
    epc_status_t st = epc_combine_start(ctx, h, args, &r);
    if (st != EPC_OK)
        return st;
    st = epc_wait(r);
    epc_request_free(r);
    return st;
}

epc_status_t epc_combine_buffer(epc_ctx_t *ctx, epc_handle_t *h, void **buf)
{
    char *p;
    epc_status_t st = epc_ctx_check(ctx, "epc_combine_buffer");
    if (st == EPC_OK && (!coll_handle_owned(ctx, h) || buf == NULL))
        st = BADARG("epc_combine_buffer", "%s",
                    buf == NULL ? "buf is NULL" : "handle is not of this context");
    if (st == EPC_OK && (h->lane < 0 || ctx->lane_dispatches[h->lane] != h->lane_seq))
        st = BADARG("epc_combine_buffer",
                    "the handle's dispatch %s; ask before the second dispatch after it",
                    h->lane < 0 ? "did not complete"
                                : "was followed by two others (its rows were overwritten)");
    if (st == EPC_OK) { /* hier: where combine reads them, so they are not copied */
        epc_ctx_lock(ctx);
        p = h->algo == EPC_ALGO_HIER ? coll_hier_staging(ctx, h) : NULL;
        if (p == NULL)
            st = epc_ctx_scratch(ctx, h->lane, EPC_SCRATCH_EXPERT,
                                 (size_t)h->num_rows[ctx->comm.rank] * coll_row_bytes(ctx) + 1, &p);
        epc_ctx_unlock(ctx);
    }
    if (st == EPC_OK)
        *buf = p;
    return st;
}

epc_status_t epc_coll_stats(const epc_ctx_t *ctx, epc_coll_stats_t *stats)
{
    static const epc_params_layouts_t layouts = {"EPC_COLL_STATS_INIT", sizeof *stats, {0}};
    epc_status_t st = epc_ctx_check(ctx, "epc_coll_stats");
    if (st == EPC_OK)
        st = epc_out_check(stats, &layouts, NULL, "epc_coll_stats", "stats");
    if (st == EPC_OK) {
        epc_ctx_lock((epc_ctx_t *)ctx); /* the thread's requests write them */
        epc_out_store(stats, &ctx->cstats);
        epc_ctx_unlock((epc_ctx_t *)ctx);
    }
    return st;
}

/* The checks epc_fp8_quantize and _dequantize share (fn names them; xy
 * is x or y, named xy_name). */
static epc_status_t check_fp8(const char *fn, const char *xy_name, const void *xy, const void *q,
                              const void *scales, int rows, int hidden, epc_dtype_t dtype,
                              size_t q_stride, size_t s_stride)
{
    size_t nb = hidden > 0 ? (size_t)hidden / EPC_FP8_BLOCK : 0;
    if (rows < 0)
        return epc_error(EPC_ERR_INVALID_ARG, "%s: rows = %d < 0", fn, rows);
    if (hidden <= 0 || hidden % EPC_FP8_BLOCK != 0)
        return epc_error(EPC_ERR_INVALID_ARG, "%s: hidden = %d is not a positive multiple of %d",
                         fn, hidden, EPC_FP8_BLOCK);
    if (dtype < EPC_DTYPE_DEFAULT || dtype > EPC_DTYPE_FP32)
        return epc_error(EPC_ERR_INVALID_ARG, "%s: dtype = %d is not an epc_dtype_t", fn,
                         (int)dtype);
    if (rows > 0 && (xy == NULL || q == NULL || scales == NULL))
        return epc_error(EPC_ERR_INVALID_ARG, "%s: %s is NULL with %d rows", fn,
                         xy == NULL  ? xy_name
                         : q == NULL ? "q"
                                     : "scales",
                         rows);
    if (q_stride < (size_t)hidden)
        return epc_error(EPC_ERR_INVALID_ARG, "%s: q_stride = %zu < hidden = %d", fn, q_stride,
                         hidden);
    if (s_stride < nb * sizeof(float))
        return epc_error(EPC_ERR_INVALID_ARG, "%s: s_stride = %zu < %zu (hidden / %d floats)", fn,
                         s_stride, nb * sizeof(float), EPC_FP8_BLOCK);
    return EPC_OK;
}

epc_status_t epc_fp8_quantize(const void *x, epc_dtype_t dtype, int rows, int hidden, int ue8m0,
                              uint8_t *q, size_t q_stride, float *scales, size_t s_stride)
{
    epc_status_t st =
        check_fp8("epc_fp8_quantize", "x", x, q, scales, rows, hidden, dtype, q_stride, s_stride);
    if (st == EPC_OK)
        coll_fp8_quantize(x, dtype, rows, hidden, ue8m0 != 0, q, q_stride, scales, s_stride);
    return st;
}

epc_status_t epc_fp8_dequantize(const uint8_t *q, size_t q_stride, const float *scales,
                                size_t s_stride, int rows, int hidden, epc_dtype_t dtype, void *y)
{
    epc_status_t st =
        check_fp8("epc_fp8_dequantize", "y", y, q, scales, rows, hidden, dtype, q_stride, s_stride);
    if (st == EPC_OK)
        coll_fp8_dequantize(q, q_stride, scales, s_stride, rows, hidden, dtype, y);
    return st;
}
