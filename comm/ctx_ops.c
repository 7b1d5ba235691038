/* SPDX-License-Identifier: BSD-3-Clause */
/* ctx_ops.c - the context's accessors and data-movement primitives. */
#include <stdlib.h>
#include <string.h>

#include "ctx.h"
#include "mpi_util.h"
#include "params.h"

epc_status_t epc_ctx_check(const epc_ctx_t *ctx, const char *fn)
{
    if (ctx == NULL || ctx->hdr.magic != EPC_MAGIC_CTX)
        return epc_error(EPC_ERR_INVALID_ARG, "%s: ctx is %s", fn,
                         ctx == NULL ? "NULL" : "not a live epc_ctx_t (destroyed?)");
    return EPC_OK;
}

epc_status_t epc_ctx_enter(epc_ctx_t *ctx, const char *fn)
{
    epc_status_t st = epc_ctx_check(ctx, fn);
    if (st != EPC_OK)
        return st;
    if (ctx->aborted)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                             "%s: this rank aborted the context (epc_ctx_abort); only "
                             "epc_ctx_destroy is allowed",
                             fn);
    if ((st = epc_abort_poll(&ctx->abort)) != EPC_OK)
        return epc_error_context(&ctx->hdr, st, "%s", fn);
    if (ctx->failed)
        return epc_error_obj(&ctx->hdr, EPC_ERR_TRANSPORT,
                             "%s: an earlier call on this context timed out or lost its "
                             "transport; destroy the context",
                             fn);
    return EPC_OK;
}

epc_status_t epc_ctx_leave(epc_ctx_t *ctx, epc_status_t st)
{
    if (st != EPC_ERR_TIMEOUT && st != EPC_ERR_TRANSPORT)
        return st;
    ctx->failed = 1;
    /* Peers still waiting for this rank learn it now; the text keeps what
     * this rank saw (often the rank it waited for). */
    epc_abort_tell(&ctx->abort, epc_last_error(ctx), 0); /* destroy waits for the messages */
    return st;
}

epc_deadline_t epc_ctx_deadline(const epc_ctx_t *ctx)
{
    epc_deadline_t dl = epc_deadline_in_ms(ctx->timeout_ms);
    if (ctx->abort.sends != NULL) { /* the abort receive is posted */
        dl.interrupted = epc_abort_poll;
        dl.arg = (void *)&ctx->abort;
    }
    return dl;
}

epc_status_t epc_ctx_abort(epc_ctx_t *ctx, const char *reason)
{
    epc_status_t st = epc_ctx_check(ctx, "epc_ctx_abort");
    if (st != EPC_OK)
        return st;
    epc_ctx_lock(ctx); /* the progress thread may be telling the peers too */
    ctx->aborted = 1;
    epc_abort_tell(&ctx->abort, reason != NULL && reason[0] ? reason : "no reason given",
                   ctx->timeout_ms < 1000 ? ctx->timeout_ms : 1000);
    epc_ctx_unlock(ctx);
    return EPC_OK;
}

void epc_ctx_account(epc_ctx_t *ctx, int peer, uint64_t bytes, int sent)
{
    int cls = ctx->link_class[peer];
    if (sent)
        ctx->sent[cls] += bytes;
    else
        ctx->recv[cls] += bytes;
}

epc_status_t epc_ctx_topo(const epc_ctx_t *ctx, const epc_topo_t **topo)
{
    epc_status_t st = epc_ctx_check(ctx, "epc_ctx_topo");
    if (st == EPC_OK && topo == NULL)
        st = epc_error(EPC_ERR_INVALID_ARG, "epc_ctx_topo: topo is NULL");
    if (st == EPC_OK)
        *topo = ctx->topo;
    return st;
}

epc_status_t epc_ctx_stats(const epc_ctx_t *ctx, epc_ctx_stats_t *stats)
{
    static const epc_params_layouts_t layouts = {"EPC_CTX_STATS_INIT", sizeof *stats, {0}};
    epc_ctx_stats_t all = EPC_CTX_STATS_INIT, *s = &all; /* every field, then the caller's */
    epc_status_t st = epc_ctx_check(ctx, "epc_ctx_stats");
    if (st == EPC_OK)
        st = epc_out_check(stats, &layouts, NULL, "epc_ctx_stats", "stats");
    if (st != EPC_OK)
        return st;
    epc_ctx_lock((epc_ctx_t *)ctx); /* the progress thread moves bytes and grows */
    memcpy(s->bytes_sent, ctx->sent, sizeof s->bytes_sent);
    memcpy(s->bytes_recv, ctx->recv, sizeof s->bytes_recv);
    for (int l = 0; l < EPC_LANES; l++) { /* what every lane holds */
        const epc_lane_t *ln = &ctx->lane[l];
        s->shm_bytes += ln->shm->cap[ctx->lrank];
        s->net_bytes += ln->tr->send_cap + ln->tr->recv_cap;
        for (int i = 0; i < EPC_SCRATCH_COUNT; i++) /* private buffers count as held too */
            s->net_bytes += ln->scratch[i].cap;
        s->shm_grows += ln->shm->grows;
        s->net_grows += ln->tr->grows;
    }
    s->transport = ctx->lane[0].tr->ops->name;
    s->provider = ctx->lane[0].tr->provider;
    s->transport_reason = ctx->transport_reason;
    epc_ctx_unlock((epc_ctx_t *)ctx);
    epc_out_store(stats, &all);
    return EPC_OK;
}

/* Local checks of a pair exchange (agreed on afterwards). */
static epc_status_t pair_check(epc_ctx_t *ctx, epc_path_t path, size_t bytes)
{
    int partner = ctx->rank ^ 1;
    if (ctx->nranks % 2 != 0)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                             "epc_ctx_pair_exchange: %d ranks cannot pair up", ctx->nranks);
    if ((unsigned)path > EPC_PATH_NET || bytes > ((size_t)1 << 31))
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                             "epc_ctx_pair_exchange: path %d, bytes %zu (at most 2^31)", (int)path,
                             bytes);
    if (path == EPC_PATH_SHM && ctx->topo->node_of[partner] != ctx->node)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                             "epc_ctx_pair_exchange: path shm needs each pair (r, r^1) on one "
                             "node; ranks %d and %d are not",
                             ctx->rank, partner);
    return EPC_OK;
}

static epc_status_t pair_exchange(epc_ctx_t *ctx, epc_path_t path, size_t bytes);

epc_status_t epc_ctx_pair_exchange(epc_ctx_t *ctx, epc_path_t path, size_t bytes)
{
    epc_status_t st = epc_ctx_check(ctx, "epc_ctx_pair_exchange");
    if (st != EPC_OK)
        return st;
    epc_ctx_lock(ctx);
    if ((st = epc_ctx_enter(ctx, "epc_ctx_pair_exchange")) == EPC_OK) {
        st = epc_mpi_agree(ctx->comm, pair_check(ctx, path, bytes), &ctx->hdr,
                           epc_ctx_deadline(ctx));
        st = epc_ctx_leave(ctx, st == EPC_OK ? pair_exchange(ctx, path, bytes) : st);
    }
    epc_ctx_unlock(ctx);
    return st;
}

/* The exchange itself, once every rank agreed on its arguments. */
static epc_status_t pair_exchange(epc_ctx_t *ctx, epc_path_t path, size_t bytes)
{
    int partner = ctx->rank ^ 1;
    epc_lane_t *ln = &ctx->lane[0];
    epc_status_t st;
    if (path == EPC_PATH_SHM) {
        size_t cap;
        char *src;
        /* The source is the rank's own region (second half), the target
         * the partner's first half: both in the window, as a dispatch. */
        if ((st = epc_lane_shm_reserve(ln, 2 * bytes + 64, "pair exchange")) != EPC_OK)
            return st;
        src = epc_lane_shm_region(ln, ctx->lrank, &cap) + bytes + 64;
        st = epc_lane_shm_put(ln, ctx->topo->local_rank[partner], 0, src, bytes);
        return st == EPC_OK ? epc_lane_shm_fence(ln, "pair exchange") : st;
    } else {
        epc_tr_msg_t s = {partner, 0, bytes}, r = {partner, 0, bytes};
        if ((st = epc_lane_net_reserve(ln, bytes, bytes)) != EPC_OK)
            return st;
        return epc_lane_net_exchange(ln, &s, 1, &r, 1, "pair exchange");
    }
}
