/* SPDX-License-Identifier: BSD-3-Clause */
/* ctx_ops.c - the context's accessors and data-movement primitives. */
#include <stdlib.h>
#include <string.h>

#include "ctx.h"
#include "mpi_util.h"

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
    ctx->aborted = 1;
    epc_abort_tell(&ctx->abort, reason != NULL && reason[0] ? reason : "no reason given",
                   ctx->timeout_ms < 1000 ? ctx->timeout_ms : 1000);
    return EPC_OK;
}

void epc_ctx_account(epc_ctx_t *ctx, int peer, uint64_t bytes, int sent)
{
    epc_link_class_t cls = EPC_LINK_OTHER_NODE;
    epc_topo_link_class(ctx->topo, ctx->rank, peer, &cls);
    if (sent)
        ctx->sent[cls] += bytes;
    else
        ctx->recv[cls] += bytes;
}

epc_status_t epc_ctx_shm_reserve(epc_ctx_t *ctx, size_t need, const char *phase)
{
    return epc_shm_reserve(ctx->shm, need, epc_ctx_deadline(ctx), phase);
}

char *epc_ctx_shm_region(const epc_ctx_t *ctx, int lrank, size_t *cap)
{
    *cap = ctx->shm->cap[lrank];
    return ctx->shm->base[lrank];
}

epc_status_t epc_ctx_shm_fence(epc_ctx_t *ctx, const char *phase)
{
    return epc_shm_fence(ctx->shm, epc_ctx_deadline(ctx), phase);
}

epc_status_t epc_ctx_shm_put(epc_ctx_t *ctx, int lrank, size_t offset, const void *src,
                             size_t len)
{
    size_t cap;
    char *dst;
    if (lrank < 0 || lrank >= ctx->lsize)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INTERNAL, "shm put: local rank %d of %d", lrank,
                             ctx->lsize);
    dst = epc_ctx_shm_region(ctx, lrank, &cap);
    if (offset > cap || len > cap - offset)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INTERNAL,
                             "shm put: %zu bytes at %zu exceed local rank %d's %zu-byte region",
                             len, offset, lrank, cap);
    if (len == 0)
        return EPC_OK;
    memcpy(dst + offset, src, len);
    epc_ctx_account(ctx, ctx->topo->node_ranks[ctx->topo->node_start[ctx->node] + lrank], len, 1);
    return EPC_OK;
}

epc_status_t epc_ctx_scratch(epc_ctx_t *ctx, int which, size_t need, char **p)
{
    if (need > ctx->scratch[which].cap) {
        size_t cap = epc_tr_grow_size(ctx->scratch[which].cap, need);
        free(ctx->scratch[which].p);
        ctx->scratch[which].cap = 0;
        if ((ctx->scratch[which].p = malloc(cap)) == NULL)
            return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "context buffer of %zu bytes",
                                 cap);
        ctx->scratch[which].cap = cap;
    }
    *p = ctx->scratch[which].p;
    return EPC_OK;
}

epc_status_t epc_ctx_net_reserve(epc_ctx_t *ctx, size_t send, size_t recv)
{
    return epc_tr_reserve(ctx->tr, send, recv);
}

epc_status_t epc_ctx_net_exchange(epc_ctx_t *ctx, const epc_tr_msg_t *sends, int nsends,
                                  const epc_tr_msg_t *recvs, int nrecvs, const char *phase)
{
    epc_status_t st = epc_tr_exchange(ctx->tr, sends, nsends, recvs, nrecvs,
                                      epc_ctx_deadline(ctx), phase);
    if (st == EPC_OK)
        epc_ctx_account_exchange(ctx, sends, nsends, recvs, nrecvs);
    return st;
}

void epc_ctx_account_exchange(epc_ctx_t *ctx, const epc_tr_msg_t *sends, int nsends,
                              const epc_tr_msg_t *recvs, int nrecvs)
{
    for (int i = 0; i < nsends; i++)
        epc_ctx_account(ctx, sends[i].peer, sends[i].len, 1);
    for (int i = 0; i < nrecvs; i++)
        epc_ctx_account(ctx, recvs[i].peer, recvs[i].len, 0);
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

epc_status_t epc_ctx_stats(const epc_ctx_t *ctx, epc_ctx_stats_t *s)
{
    epc_status_t st = epc_ctx_check(ctx, "epc_ctx_stats");
    if (st == EPC_OK && s == NULL)
        st = epc_error(EPC_ERR_INVALID_ARG, "epc_ctx_stats: stats is NULL");
    if (st != EPC_OK)
        return st;
    memcpy(s->bytes_sent, ctx->sent, sizeof s->bytes_sent);
    memcpy(s->bytes_recv, ctx->recv, sizeof s->bytes_recv);
    s->shm_bytes = ctx->shm->cap[ctx->lrank];
    s->net_bytes = ctx->tr->send_cap + ctx->tr->recv_cap;
    for (int i = 0; i < EPC_SCRATCH_COUNT; i++) /* private buffers count as held too */
        s->net_bytes += ctx->scratch[i].cap;
    s->shm_grows = ctx->shm->grows;
    s->net_grows = ctx->tr->grows;
    s->transport = ctx->tr->ops->name;
    s->provider = ctx->tr->provider;
    s->transport_reason = ctx->transport_reason;
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
    epc_status_t st = epc_ctx_enter(ctx, "epc_ctx_pair_exchange");
    if (st != EPC_OK)
        return st;
    st = epc_mpi_agree(ctx->comm, pair_check(ctx, path, bytes), &ctx->hdr, epc_ctx_deadline(ctx));
    return epc_ctx_leave(ctx, st == EPC_OK ? pair_exchange(ctx, path, bytes) : st);
}

/* The exchange itself, once every rank agreed on its arguments. */
static epc_status_t pair_exchange(epc_ctx_t *ctx, epc_path_t path, size_t bytes)
{
    int partner;
    epc_status_t st;
    partner = ctx->rank ^ 1;
    if (path == EPC_PATH_SHM) {
        char *src;
        /* The source is the rank's own region (second half), the target
         * the partner's first half: both in the window, as a dispatch. */
        if ((st = epc_ctx_shm_reserve(ctx, 2 * bytes + 64, "pair exchange")) != EPC_OK)
            return st;
        src = ctx->shm->base[ctx->lrank] + bytes + 64;
        st = epc_ctx_shm_put(ctx, ctx->topo->local_rank[partner], 0, src, bytes);
        return st == EPC_OK ? epc_ctx_shm_fence(ctx, "pair exchange") : st;
    } else {
        epc_tr_msg_t s = {partner, 0, bytes}, r = {partner, 0, bytes};
        if ((st = epc_ctx_net_reserve(ctx, bytes, bytes)) != EPC_OK)
            return st;
        return epc_ctx_net_exchange(ctx, &s, 1, &r, 1, "pair exchange");
    }
}
