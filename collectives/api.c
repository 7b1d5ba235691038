/* SPDX-License-Identifier: BSD-3-Clause */
/* api.c - the public dispatch/combine entry points and statistics. */
#include <stdlib.h>
#include <string.h>

#include "coll.h"
#include "fault.h"
#include "mpi_util.h"

/* args->algo, else the context's (EPC_ALGO, read at its creation). */
static epc_algo_t pick_algo(const epc_ctx_t *ctx, const epc_dispatch_args_t *a)
{
    if (a != NULL && a->size == sizeof *a && a->algo != EPC_ALGO_DEFAULT)
        return a->algo;
    return ctx->algo;
}

static void add_bytes(epc_coll_bytes_t *total, const epc_coll_bytes_t *b)
{
    total->payload_inter += b->payload_inter;
    total->payload_intra += b->payload_intra;
    total->meta_inter += b->meta_inter;
    total->meta_intra += b->meta_intra;
}

static void fill_out(const epc_ctx_t *ctx, const epc_handle_t *h, epc_dispatch_out_t *out)
{
    out->rows = h->rows;
    out->num_rows = h->num_rows[ctx->rank];
    out->num_local_experts = h->epr;
    out->expert_begin = h->begin + (size_t)ctx->rank * (h->epr + 1);
    out->expert_count = h->expert_count;
    out->src_rank = h->meta.src_rank;
    out->src_token = h->meta.src_token;
    out->local_expert = h->meta.local_expert;
    out->weight = h->meta.weight;
}

epc_status_t epc_dispatch(epc_ctx_t *ctx, const epc_dispatch_args_t *args, epc_dispatch_out_t *out,
                          epc_handle_t **handle)
{
    epc_handle_t *h = NULL;
    epc_status_t st = epc_ctx_enter(ctx, "epc_dispatch");
    epc_algo_t algo;
    int cached;
    if (st != EPC_OK)
        return st; /* no context, or a dead one: no one to tell */
    algo = pick_algo(ctx, args);
    if (algo != EPC_ALGO_HIER && algo != EPC_ALGO_FLAT)
        algo = EPC_ALGO_HIER, st = epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                                                 "epc_dispatch: args->algo = %d", (int)args->algo);
    if (st == EPC_OK && (out == NULL || handle == NULL))
        st = epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG, "epc_dispatch: %s is NULL",
                           out == NULL ? "out" : "handle");
    cached = handle != NULL && *handle != NULL;
    if (st == EPC_OK && cached && !coll_handle_owned(ctx, *handle))
        st = epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                           "epc_dispatch: *handle is not a handle of this context");
    memset(&ctx->cstats.last_dispatch, 0, sizeof ctx->cstats.last_dispatch);
    if (cached && st == EPC_OK) {
        h = *handle;
        st = coll_replan(ctx, args, h);
    } else if (cached) {
        st = epc_mpi_agree(ctx->comm, st, &ctx->hdr, epc_ctx_deadline(ctx));
    } else {
        st = coll_plan(ctx, st == EPC_OK ? args : NULL, algo, st, &h);
    }
    if (st == EPC_OK) {
        epc_fault_here("dispatch"); /* test hook: after the counts, before rows */
        st = h->algo == EPC_ALGO_HIER ? coll_hier_dispatch(ctx, args, h)
                                      : coll_flat_dispatch(ctx, args, h);
    }
    if (st != EPC_OK) {
        if (!cached)
            epc_handle_destroy(h);
        return epc_ctx_leave(ctx, st);
    }
    h->generation = ++ctx->generation;
    fill_out(ctx, h, out);
    *handle = h;
    add_bytes(&ctx->cstats.total, &ctx->cstats.last_dispatch);
    ctx->cstats.dispatches++;
    return EPC_OK;
}

/* Local checks of a combine; raised into the context. */
static epc_status_t check_combine(epc_ctx_t *ctx, const epc_handle_t *h,
                                  const epc_combine_args_t *a)
{
    if (!coll_handle_owned(ctx, h))
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                             "epc_combine: handle is %s", h == NULL ? "NULL" : "not of this context");
    if (h->generation != ctx->generation)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                             "epc_combine: the handle's dispatch was followed by another "
                             "(its rows were overwritten); combine right after its dispatch");
    if (a == NULL || a->size != sizeof *a)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                             "epc_combine: args is NULL or of unknown size; use "
                             "EPC_COMBINE_ARGS_INIT");
    if ((a->expert_out == NULL && h->num_rows[ctx->rank] > 0) || (a->y == NULL && h->T > 0))
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG, "epc_combine: args->%s is NULL",
                             a->y == NULL ? "y" : "expert_out");
    return EPC_OK;
}

epc_status_t epc_combine(epc_ctx_t *ctx, epc_handle_t *h, const epc_combine_args_t *args)
{
    epc_status_t st = epc_ctx_enter(ctx, "epc_combine");
    if (st != EPC_OK)
        return st;
    st = epc_mpi_agree(ctx->comm, check_combine(ctx, h, args), &ctx->hdr, epc_ctx_deadline(ctx));
    if (st != EPC_OK)
        return epc_ctx_leave(ctx, st);
    memset(&ctx->cstats.last_combine, 0, sizeof ctx->cstats.last_combine);
    epc_fault_here("combine"); /* test hook */
    st = h->algo == EPC_ALGO_HIER
             ? coll_hier_combine(ctx, h, args->expert_out, args->y, args->unweighted)
             : coll_flat_combine(ctx, h, args->expert_out, args->y, args->unweighted);
    if (st == EPC_OK) {
        add_bytes(&ctx->cstats.total, &ctx->cstats.last_combine);
        ctx->cstats.combines++;
    }
    return epc_ctx_leave(ctx, st);
}

epc_status_t epc_combine_buffer(epc_ctx_t *ctx, epc_handle_t *h, void **buf)
{
    char *p;
    epc_status_t st = epc_ctx_check(ctx, "epc_combine_buffer");
    if (st == EPC_OK && (!coll_handle_owned(ctx, h) || buf == NULL))
        st = epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG, "epc_combine_buffer: %s",
                           buf == NULL ? "buf is NULL" : "handle is not of this context");
    if (st == EPC_OK && h->generation != ctx->generation)
        st = epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                           "epc_combine_buffer: the handle's dispatch was followed by another "
                           "(its rows were overwritten); ask right after its dispatch");
    if (st == EPC_OK)
        st = epc_ctx_scratch(ctx, EPC_SCRATCH_EXPERT,
                             (size_t)h->num_rows[ctx->rank] * coll_row_bytes(ctx) + 1, &p);
    if (st == EPC_OK)
        *buf = p;
    return st;
}

epc_status_t epc_coll_stats(const epc_ctx_t *ctx, epc_coll_stats_t *stats)
{
    epc_status_t st = epc_ctx_check(ctx, "epc_coll_stats");
    if (st == EPC_OK && stats == NULL)
        st = epc_error(EPC_ERR_INVALID_ARG, "epc_coll_stats: stats is NULL");
    if (st == EPC_OK)
        *stats = ctx->cstats;
    return st;
}
