/* SPDX-License-Identifier: BSD-3-Clause */
/* lane.c - a lane's creation and the collectives' door to its buffers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "mpi_util.h"

epc_status_t epc_lane_create(epc_comm_t *cm, int index, epc_lane_t *ln)
{
    const epc_topo_t *t = cm->topo;
    epc_status_t st;
    ln->cm = cm;
    ln->index = index;
    ln->comm = MPI_COMM_NULL;
    if ((st = epc_mpi_dup(cm->mpi, &ln->comm)) != EPC_OK) {
        ln->comm = MPI_COMM_NULL;
        return epc_error_sync(cm->owner), st;
    }
    st = epc_shm_create(cm->ctrl, t->node_ranks + t->node_start[cm->node], cm->lsize, cm->lrank,
                        cm->owner, epc_deadline_in_ms(cm->timeout_ms), &ln->shm);
    if (st != EPC_OK)
        return st;
    /* After a timeout a rank is missing: agreeing would only wait for it
     * again (the others time out on it by themselves). */
    if ((st = epc_mpi_agree(cm->mpi, st, cm->owner, epc_comm_deadline(cm))) != EPC_OK)
        return st;
    st = epc_tr_create(cm->transport, cm->provider_req, ln->comm, cm->timeout_ms, cm->owner,
                       &ln->tr);
    if (st == EPC_OK) { /* its waits end early too when a peer aborts */
        ln->tr->interrupted = epc_abort_poll;
        ln->tr->interrupt_arg = &cm->abort;
    }
    return st;
}

void epc_lane_destroy(epc_lane_t *ln)
{
    epc_tr_destroy(ln->tr);
    epc_shm_destroy(ln->shm);
    /* Local in MPI: marks the communicator for freeing once its pending
     * operations (abandoned after a timeout) complete. */
    if (ln->comm != MPI_COMM_NULL && ln->comm != 0)
        MPI_Comm_free(&ln->comm);
    memset(ln, 0, sizeof *ln);
}

epc_status_t epc_lane_shm_reserve(epc_lane_t *ln, size_t need, const char *phase)
{
    return epc_shm_reserve(ln->shm, need, epc_comm_deadline(ln->cm), phase);
}

char *epc_lane_shm_region(const epc_lane_t *ln, int lrank, size_t *cap)
{
    *cap = ln->shm->cap[lrank];
    return ln->shm->base[lrank];
}

void epc_lane_shm_touch(epc_lane_t *ln)
{
    epc_shm_touch(ln->shm);
}

epc_status_t epc_lane_shm_fence(epc_lane_t *ln, const char *phase)
{
    return epc_shm_fence(ln->shm, epc_comm_deadline(ln->cm), phase);
}

epc_status_t epc_lane_reserve_begin(epc_lane_t *ln, size_t need, const char *phase, uint64_t *fence)
{
    return epc_shm_reserve_begin(ln->shm, need, phase, fence);
}

epc_status_t epc_lane_reserve_end(epc_lane_t *ln, size_t need, const char *phase)
{
    return epc_shm_reserve_end(ln->shm, need, epc_comm_deadline(ln->cm), phase);
}

epc_status_t epc_lane_fence_arrive(epc_lane_t *ln, const char *phase, uint64_t *fence)
{
    return epc_shm_fence_arrive(ln->shm, phase, fence);
}

int epc_lane_fence_test(const epc_lane_t *ln, uint64_t fence, int *missing)
{
    return epc_shm_fence_test(ln->shm, fence, missing);
}

epc_status_t epc_lane_fence_fail(epc_lane_t *ln, epc_status_t st, int missing, const char *phase)
{
    return epc_shm_fence_fail(ln->shm, st, missing, phase);
}

epc_status_t epc_lane_shm_put(epc_lane_t *ln, int lrank, size_t offset, const void *src, size_t len)
{
    epc_comm_t *cm = ln->cm;
    size_t cap;
    char *dst;
    if (lrank < 0 || lrank >= cm->lsize)
        return epc_error_obj(cm->owner, EPC_ERR_INTERNAL, "shm put: local rank %d of %d", lrank,
                             cm->lsize);
    dst = epc_lane_shm_region(ln, lrank, &cap);
    if (offset > cap || len > cap - offset)
        return epc_error_obj(cm->owner, EPC_ERR_INTERNAL,
                             "shm put: %zu bytes at %zu exceed local rank %d's %zu-byte region",
                             len, offset, lrank, cap);
    if (len == 0)
        return EPC_OK;
    memcpy(dst + offset, src, len);
    epc_comm_account(cm, cm->topo->node_ranks[cm->topo->node_start[cm->node] + lrank], len, 1);
    return EPC_OK;
}

epc_status_t epc_lane_net_reserve(epc_lane_t *ln, size_t send, size_t recv)
{
    return epc_tr_reserve(ln->tr, send, recv);
}

char *epc_lane_net_send_at(const epc_lane_t *ln, size_t offset, size_t len)
{
    return offset <= ln->tr->send_cap && len <= ln->tr->send_cap - offset
               ? ln->tr->send_buf + offset
               : NULL;
}

const char *epc_lane_net_recv_at(const epc_lane_t *ln, size_t offset, size_t len)
{
    return offset <= ln->tr->recv_cap && len <= ln->tr->recv_cap - offset
               ? ln->tr->recv_buf + offset
               : NULL;
}

epc_status_t epc_lane_net_exchange(epc_lane_t *ln, const epc_tr_msg_t *sends, int nsends,
                                   const epc_tr_msg_t *recvs, int nrecvs, const char *phase)
{
    epc_status_t st =
        epc_tr_exchange(ln->tr, sends, nsends, recvs, nrecvs, epc_comm_deadline(ln->cm), phase);
    if (st == EPC_OK)
        epc_lane_net_account(ln, sends, nsends, recvs, nrecvs);
    return st;
}

epc_status_t epc_lane_net_post(epc_lane_t *ln, const epc_tr_msg_t *sends, int nsends,
                               const epc_tr_msg_t *recvs, int nrecvs, const char *phase, void **req)
{
    return epc_tr_start(ln->tr, sends, nsends, recvs, nrecvs, phase, req);
}

epc_status_t epc_lane_net_expose(epc_lane_t *ln, int want, int *exposed)
{
    return epc_tr_expose(ln->tr, want, exposed);
}

epc_status_t epc_lane_net_write_post(epc_lane_t *ln, const epc_tr_msg_t *sends, int nsends,
                                     const epc_tr_msg_t *recvs, int nrecvs, const char *phase,
                                     void **req)
{
    return epc_tr_write_start(ln->tr, sends, nsends, recvs, nrecvs, phase, req);
}

int epc_lane_net_arrived(epc_lane_t *ln, void *req, int i)
{
    return epc_tr_arrived(ln->tr, req, i);
}

epc_status_t epc_lane_net_test(epc_lane_t *ln, void *req, int *done)
{
    return epc_tr_test(ln->tr, req, done);
}

epc_status_t epc_lane_net_finish(epc_lane_t *ln, void *req, epc_deadline_t dl)
{
    return epc_tr_wait(ln->tr, req, dl);
}

void epc_lane_net_cancel(epc_lane_t *ln, void *req)
{
    char text[EPC_ERR_TEXT_MAX];
    epc_status_t st;
    snprintf(text, sizeof text, "%s", epc_last_error(NULL));
    st = epc_tr_wait(ln->tr, req, (epc_deadline_t){0}); /* an expired deadline: cancels */
    if (st != EPC_OK)
        epc_error_restore(ln->cm->owner, st, text);
}

void epc_lane_net_account(epc_lane_t *ln, const epc_tr_msg_t *sends, int nsends,
                          const epc_tr_msg_t *recvs, int nrecvs)
{
    for (int i = 0; i < nsends; i++)
        epc_comm_account(ln->cm, sends[i].peer, sends[i].len, 1);
    for (int i = 0; i < nrecvs; i++)
        epc_comm_account(ln->cm, recvs[i].peer, recvs[i].len, 0);
}

void epc_lane_coll_init(epc_lane_coll_t *c)
{
    c->req = MPI_REQUEST_NULL;
    c->type = MPI_DATATYPE_NULL;
}

/* Counts `bytes` to (sent) or from every peer but this rank. */
static void account_all(epc_comm_t *cm, uint64_t bytes, int sent)
{
    for (int p = 0; p < cm->nranks; p++)
        if (p != cm->rank)
            epc_comm_account(cm, p, bytes, sent);
}

epc_status_t epc_lane_allgather_post(epc_lane_t *ln, const int *mine, int count, int *all,
                                     epc_lane_coll_t *c, const char *what)
{
    epc_comm_t *cm = ln->cm;
    int rc = MPI_Iallgather(mine, count, MPI_INT, all, count, MPI_INT, ln->comm, &c->req);
    if (rc != MPI_SUCCESS)
        return epc_mpi_error(cm->owner, rc, what);
    account_all(cm, (uint64_t)count * sizeof(int), 1);
    account_all(cm, (uint64_t)count * sizeof(int), 0);
    return EPC_OK;
}

epc_status_t epc_lane_alltoallv_post(epc_lane_t *ln, const void *sbuf, const int *scnt,
                                     const int *sdsp, void *rbuf, const int *rcnt, const int *rdsp,
                                     size_t unit, epc_lane_coll_t *c, const char *what)
{
    epc_comm_t *cm = ln->cm;
    int rc = MPI_Type_contiguous((int)unit, MPI_BYTE, &c->type);
    if (rc == MPI_SUCCESS && (rc = MPI_Type_commit(&c->type)) != MPI_SUCCESS)
        MPI_Type_free(&c->type);
    if (rc != MPI_SUCCESS) {
        c->type = MPI_DATATYPE_NULL;
        return epc_mpi_error(cm->owner, rc, what);
    }
    rc = MPI_Ialltoallv(sbuf, scnt, sdsp, c->type, rbuf, rcnt, rdsp, c->type, ln->comm, &c->req);
    if (rc != MPI_SUCCESS)
        return epc_mpi_error(cm->owner, rc, what);
    for (int p = 0; p < cm->nranks; p++) { /* this rank's own share counts as self */
        epc_comm_account(cm, p, (uint64_t)scnt[p] * unit, 1);
        epc_comm_account(cm, p, (uint64_t)rcnt[p] * unit, 0);
    }
    return EPC_OK;
}

epc_status_t epc_lane_coll_test(epc_lane_t *ln, epc_lane_coll_t *c, int *done, const char *what)
{
    int rc = MPI_Test(&c->req, done, MPI_STATUS_IGNORE);
    return rc == MPI_SUCCESS ? EPC_OK : epc_mpi_error(ln->cm->owner, rc, what);
}

int epc_lane_coll_pending(const epc_lane_coll_t *c)
{
    return c->req != MPI_REQUEST_NULL;
}

void epc_lane_coll_free(epc_lane_coll_t *c, void *const *bufs, int n)
{
    if (c->type != MPI_DATATYPE_NULL) /* MPI keeps it while a collective uses it */
        MPI_Type_free(&c->type);
    epc_mpi_abandon(&c->req, bufs, n);
}

epc_status_t epc_lane_agree_post(epc_lane_t *ln, epc_status_t local, epc_agree_t *ag)
{
    epc_status_t st = epc_mpi_agree_start(ag, ln->comm, local, ln->cm->owner);
    if (st == EPC_OK) {
        account_all(ln->cm, sizeof ag->in, 1);
        account_all(ln->cm, sizeof ag->in, 0);
    }
    return st;
}

epc_status_t epc_lane_agree_test(epc_lane_t *ln, epc_agree_t *ag, epc_deadline_t dl)
{
    int was_reason = ag->reason;
    epc_status_t st = epc_mpi_agree_test(ag, dl);
    if (!was_reason && ag->reason) { /* the failing rank's text now travels */
        if (ag->me == ag->out[1])
            account_all(ln->cm, sizeof ag->text, 1);
        else
            epc_comm_account(ln->cm, ag->out[1], sizeof ag->text, 0);
    }
    return st;
}
