/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tr_mpi.c - the mpi transport: non-blocking point-to-point on the
 * context's duplicated communicator (MPI_ERRORS_RETURN), straight from the
 * send region into the receive region.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_util.h"
#include "tr.h"

/* MPI counts are int: larger messages travel as 1 MiB elements. */
#define BIG_UNIT (1 << 20)

static epc_status_t mpi_init(epc_tr_t *tr, const char *provider)
{
    MPI_Datatype *unit = malloc(sizeof *unit);
    (void)provider;
    tr->provider[0] = '\0';
    tr->piece_max = INT_MAX; /* one MPI_BYTE message (post) */
    if (unit == NULL)
        return epc_error_obj(tr->owner, EPC_ERR_NO_MEMORY, "mpi transport state");
    MPI_Type_contiguous(BIG_UNIT, MPI_BYTE, unit);
    MPI_Type_commit(unit);
    tr->impl = unit;
    return EPC_OK;
}

static epc_status_t mpi_connect(epc_tr_t *tr)
{
    (void)tr; /* MPI knows its peers */
    return EPC_OK;
}

static void mpi_fini(epc_tr_t *tr)
{
    if (tr->impl != NULL) {
        MPI_Type_free((MPI_Datatype *)tr->impl);
        free(tr->impl);
        tr->impl = NULL;
    }
    free(tr->send_buf);
    free(tr->recv_buf);
    tr->send_buf = tr->recv_buf = NULL;
}

static epc_status_t grow(epc_tr_t *tr, char **buf, size_t *cap, size_t want)
{
    char *p;
    if (want <= *cap)
        return EPC_OK;
    p = realloc(*buf, want);
    if (p == NULL)
        return epc_error_obj(tr->owner, EPC_ERR_NO_MEMORY, "mpi transport: %zu-byte region", want);
    *buf = p;
    *cap = want;
    return EPC_OK;
}

static epc_status_t mpi_reserve(epc_tr_t *tr, size_t send, size_t recv)
{
    epc_status_t st = grow(tr, &tr->send_buf, &tr->send_cap, send);
    return st != EPC_OK ? st : grow(tr, &tr->recv_buf, &tr->recv_cap, recv);
}

/* Posts one message: up to INT_MAX bytes as one (so a receive may be
 * posted longer than its message), else whole MiB units plus a byte tail,
 * as two requests (the unit type is committed once). */
static int post(void *buf, size_t len, int peer, int tag, MPI_Comm comm, int is_send,
                MPI_Request *req, MPI_Datatype unit)
{
    size_t units = len / BIG_UNIT, tail = len % BIG_UNIT;
    int rc = MPI_SUCCESS;
    req[0] = req[1] = MPI_REQUEST_NULL;
    if (len <= INT_MAX) /* as one piece */
        units = 0, tail = len;
    if (units > 0)
        rc = is_send ? MPI_Isend(buf, (int)units, unit, peer, tag, comm, &req[0])
                     : MPI_Irecv(buf, (int)units, unit, peer, tag, comm, &req[0]);
    if (rc == MPI_SUCCESS && tail > 0) {
        char *t = (char *)buf + units * BIG_UNIT;
        rc = is_send ? MPI_Isend(t, (int)tail, MPI_BYTE, peer, tag, comm, &req[1])
                     : MPI_Irecv(t, (int)tail, MPI_BYTE, peer, tag, comm, &req[1]);
    }
    return rc;
}

/* An exchange in flight: two requests per message (MiB units, tail),
 * receives first, and the lists for naming a peer on timeout. */
typedef struct mpi_req {
    int n, nr;
    MPI_Request *r;
    epc_tr_msg_t *msgs; /* recvs then sends */
    const char *phase;
} mpi_req_t;

static void req_free(mpi_req_t *q)
{
    free(q->r);
    free(q->msgs);
    free(q);
}

static epc_status_t mpi_start(epc_tr_t *tr, const epc_tr_msg_t *sends, int ns,
                              const epc_tr_msg_t *recvs, int nr, const char *phase, void **out)
{
    int rc = MPI_SUCCESS, tag = (int)(tr->epoch & 0x7fff);
    MPI_Datatype unit = *(MPI_Datatype *)tr->impl;
    mpi_req_t *q = calloc(1, sizeof *q);
    if (q == NULL || (q->r = malloc((size_t)(2 * (ns + nr) + 1) * sizeof *q->r)) == NULL ||
        (q->msgs = malloc((size_t)(ns + nr + 1) * sizeof *q->msgs)) == NULL) {
        if (q != NULL)
            req_free(q);
        return epc_error_obj(tr->owner, EPC_ERR_NO_MEMORY, "%s: %d messages", phase, ns + nr);
    }
    q->n = 2 * (ns + nr), q->nr = nr, q->phase = phase;
    if (nr > 0) /* the lists may be NULL when empty */
        memcpy(q->msgs, recvs, (size_t)nr * sizeof *recvs);
    if (ns > 0)
        memcpy(q->msgs + nr, sends, (size_t)ns * sizeof *sends);
    for (int i = 0; i < q->n; i++)
        q->r[i] = MPI_REQUEST_NULL;
    for (int i = 0; i < nr && rc == MPI_SUCCESS; i++)
        if (recvs[i].len > 0)
            rc = post(tr->recv_buf + recvs[i].offset, recvs[i].len, recvs[i].peer, tag, tr->comm, 0,
                      &q->r[2 * i], unit);
    for (int i = 0; i < ns && rc == MPI_SUCCESS; i++)
        if (sends[i].len > 0)
            rc = post(tr->send_buf + sends[i].offset, sends[i].len, sends[i].peer, tag, tr->comm, 1,
                      &q->r[2 * (nr + i)], unit);
    if (rc != MPI_SUCCESS) {
        epc_mpi_cancel_all(q->r, q->n);
        req_free(q);
        return epc_mpi_error(tr->owner, rc, "MPI_Isend/MPI_Irecv");
    }
    *out = q;
    return EPC_OK;
}

static epc_status_t mpi_test(epc_tr_t *tr, void *req, int *done)
{
    mpi_req_t *q = req;
    int rc = MPI_Testall(q->n, q->r, done, MPI_STATUSES_IGNORE);
    return rc == MPI_SUCCESS ? EPC_OK : epc_mpi_error(tr->owner, rc, q->phase);
}

/* Receive i's two requests (MiB units, tail) both complete. */
static int mpi_arrived(epc_tr_t *tr, void *req, int i)
{
    mpi_req_t *q = req;
    int done = 0;
    (void)tr;
    return MPI_Testall(2, &q->r[2 * i], &done, MPI_STATUSES_IGNORE) == MPI_SUCCESS && done;
}

static epc_status_t mpi_wait(epc_tr_t *tr, void *req, epc_deadline_t dl)
{
    mpi_req_t *q = req;
    int pending = 0;
    epc_status_t st = epc_mpi_wait_all(q->r, q->n, dl, &pending, q->phase);
    if (st == EPC_ERR_TIMEOUT) {
        const epc_tr_msg_t *m = &q->msgs[pending / 2];
        st = epc_error_obj(tr->owner, EPC_ERR_TIMEOUT,
                           "%s: mpi transport timed out %s rank %d (%zu bytes)", q->phase,
                           pending / 2 < q->nr ? "waiting for data from" : "sending to", m->peer,
                           m->len);
    } else if (st == EPC_ERR_TRANSPORT) {
        epc_error_sync(tr->owner);
    } else if (st != EPC_OK) { /* a peer aborted: keep whom this rank waited for */
        const epc_tr_msg_t *m = &q->msgs[pending / 2];
        st = epc_error_context(tr->owner, st, "%s: mpi transport %s rank %d", q->phase,
                               pending / 2 < q->nr ? "waiting for data from" : "sending to",
                               m->peer);
    }
    if (st != EPC_OK)
        epc_mpi_cancel_all(q->r, q->n);
    req_free(q);
    return st;
}

const epc_tr_ops_t epc_tr_mpi_ops = {
    .name = "mpi",
    .init = mpi_init,
    .connect = mpi_connect,
    .fini = mpi_fini,
    .reserve = mpi_reserve,
    .start = mpi_start,
    .test = mpi_test,
    .arrived = mpi_arrived,
    .wait = mpi_wait,
};
