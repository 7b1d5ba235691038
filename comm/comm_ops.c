/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * comm_ops.c - what the communication object does for every call: the
 * entry checks, failing and telling the peers, deadlines, byte counters,
 * abort, its statistics and the pair-exchange benchmark primitive.
 */
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "mpi_util.h"

epc_status_t epc_comm_enter(epc_comm_t *cm, const char *fn)
{
    epc_status_t st;
    if (cm->aborted)
        return epc_error_obj(cm->owner, EPC_ERR_INVALID_ARG,
                             "%s: this rank aborted the context (epc_ctx_abort); only "
                             "epc_ctx_destroy is allowed",
                             fn);
    if ((st = epc_abort_poll(&cm->abort)) != EPC_OK)
        return epc_error_context(cm->owner, st, "%s", fn);
    if (cm->failed)
        return epc_error_obj(cm->owner, EPC_ERR_TRANSPORT,
                             "%s: an earlier call on this context timed out or lost its "
                             "transport; destroy the context",
                             fn);
    return EPC_OK;
}

epc_status_t epc_comm_leave(epc_comm_t *cm, epc_status_t st)
{
    if (st != EPC_ERR_TIMEOUT && st != EPC_ERR_TRANSPORT)
        return st;
    cm->failed = 1;
    /* Peers still waiting for this rank learn it now; the text keeps what
     * this rank saw (often the rank it waited for). */
    epc_abort_tell(&cm->abort, cm->owner->last_error, 0); /* destroy waits for the messages */
    return st;
}

epc_deadline_t epc_comm_deadline(const epc_comm_t *cm)
{
    epc_deadline_t dl = epc_deadline_in_ms(cm->timeout_ms);
    if (cm->abort.sends != NULL) { /* the abort receive is posted */
        dl.interrupted = epc_abort_poll;
        dl.arg = (void *)&cm->abort;
    }
    return dl;
}

void epc_comm_abort(epc_comm_t *cm, const char *reason)
{
    cm->aborted = 1;
    epc_abort_tell(&cm->abort, reason != NULL && reason[0] ? reason : "no reason given",
                   cm->timeout_ms < 1000 ? cm->timeout_ms : 1000);
}

void epc_comm_account(epc_comm_t *cm, int peer, uint64_t bytes, int sent)
{
    int cls = cm->link_class[peer];
    if (sent)
        cm->sent[cls] += bytes;
    else
        cm->recv[cls] += bytes;
}

void epc_comm_stats(const epc_comm_t *cm, epc_ctx_stats_t *s)
{
    memcpy(s->bytes_sent, cm->sent, sizeof s->bytes_sent);
    memcpy(s->bytes_recv, cm->recv, sizeof s->bytes_recv);
    for (int l = 0; l < EPC_LANES; l++) { /* what every lane holds */
        const epc_lane_t *ln = &cm->lane[l];
        s->shm_bytes += ln->shm->cap[cm->lrank];
        s->net_bytes += ln->tr->send_cap + ln->tr->recv_cap;
        s->shm_grows += ln->shm->grows;
        s->net_grows += ln->tr->grows;
    }
    s->transport = cm->lane[0].tr->ops->name;
    s->provider = cm->lane[0].tr->provider;
    s->transport_reason = cm->transport_reason;
}

/* Local checks of a pair exchange (agreed on afterwards). */
static epc_status_t pair_check(epc_comm_t *cm, epc_path_t path, size_t bytes)
{
    int partner = cm->rank ^ 1;
    if (cm->nranks % 2 != 0)
        return epc_error_obj(cm->owner, EPC_ERR_INVALID_ARG,
                             "epc_ctx_pair_exchange: %d ranks cannot pair up", cm->nranks);
    if ((unsigned)path > EPC_PATH_NET || bytes > ((size_t)1 << 31))
        return epc_error_obj(cm->owner, EPC_ERR_INVALID_ARG,
                             "epc_ctx_pair_exchange: path %d, bytes %zu (at most 2^31)", (int)path,
                             bytes);
    if (path == EPC_PATH_SHM && cm->topo->node_of[partner] != cm->node)
        return epc_error_obj(cm->owner, EPC_ERR_INVALID_ARG,
                             "epc_ctx_pair_exchange: path shm needs each pair (r, r^1) on one "
                             "node; ranks %d and %d are not",
                             cm->rank, partner);
    return EPC_OK;
}

/* The exchange itself, once every rank agreed on its arguments. */
static epc_status_t pair_exchange(epc_comm_t *cm, epc_path_t path, size_t bytes)
{
    int partner = cm->rank ^ 1;
    epc_lane_t *ln = &cm->lane[0];
    epc_status_t st;
    if (path == EPC_PATH_SHM) {
        size_t cap;
        char *src;
        /* The source is the rank's own region (second half), the target
         * the partner's first half: both in the window, as a dispatch. */
        if ((st = epc_lane_shm_reserve(ln, 2 * bytes + 64, "pair exchange")) != EPC_OK)
            return st;
        src = epc_lane_shm_region(ln, cm->lrank, &cap) + bytes + 64;
        st = epc_lane_shm_put(ln, cm->topo->local_rank[partner], 0, src, bytes);
        return st == EPC_OK ? epc_lane_shm_fence(ln, "pair exchange") : st;
    } else {
        epc_tr_msg_t s = {.peer = partner, .len = bytes}, r = {.peer = partner, .len = bytes};
        if ((st = epc_lane_net_reserve(ln, bytes, bytes)) != EPC_OK)
            return st;
        return epc_lane_net_exchange(ln, &s, 1, &r, 1, "pair exchange");
    }
}

epc_status_t epc_comm_pair_exchange(epc_comm_t *cm, epc_path_t path, size_t bytes)
{
    epc_status_t st = epc_comm_enter(cm, "epc_ctx_pair_exchange");
    if (st != EPC_OK)
        return st;
    st = epc_mpi_agree(cm->mpi, pair_check(cm, path, bytes), cm->owner, epc_comm_deadline(cm));
    return epc_comm_leave(cm, st == EPC_OK ? pair_exchange(cm, path, bytes) : st);
}
