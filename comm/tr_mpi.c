/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tr_mpi.c - the mpi transport: non-blocking point-to-point on the
 * context's duplicated communicator (MPI_ERRORS_RETURN), straight from the
 * send region into the receive region.
 */
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
        return epc_error_obj(tr->owner, EPC_ERR_NO_MEMORY, "mpi transport: %zu-byte region",
                             want);
    *buf = p;
    *cap = want;
    return EPC_OK;
}

static epc_status_t mpi_reserve(epc_tr_t *tr, size_t send, size_t recv)
{
    epc_status_t st = grow(tr, &tr->send_buf, &tr->send_cap, send);
    return st != EPC_OK ? st : grow(tr, &tr->recv_buf, &tr->recv_cap, recv);
}

/* Posts one message: whole MiB units plus a byte tail, as two requests
 * (the unit type is committed once). */
static int post(void *buf, size_t len, int peer, int tag, MPI_Comm comm, int is_send,
                MPI_Request *req, MPI_Datatype unit)
{
    size_t units = len / BIG_UNIT, tail = len % BIG_UNIT;
    int rc = MPI_SUCCESS;
    req[0] = req[1] = MPI_REQUEST_NULL;
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

static epc_status_t mpi_exchange(epc_tr_t *tr, const epc_tr_msg_t *sends, int ns,
                                 const epc_tr_msg_t *recvs, int nr, epc_deadline_t dl,
                                 const char *phase)
{
    int n = 2 * (ns + nr), rc = MPI_SUCCESS, pending = 0, tag = (int)(tr->epoch & 0x7fff);
    MPI_Request *req = malloc((size_t)(n ? n : 1) * sizeof *req);
    MPI_Datatype unit = *(MPI_Datatype *)tr->impl;
    epc_status_t st;
    if (req == NULL)
        return epc_error_obj(tr->owner, EPC_ERR_NO_MEMORY, "%s: %d requests", phase, n);
    for (int i = 0; i < n; i++)
        req[i] = MPI_REQUEST_NULL;
    /* Receives first, so most sends find their match posted. */
    for (int i = 0; i < nr && rc == MPI_SUCCESS; i++)
        if (recvs[i].len > 0)
            rc = post(tr->recv_buf + recvs[i].offset, recvs[i].len, recvs[i].peer, tag, tr->comm,
                      0, &req[2 * i], unit);
    for (int i = 0; i < ns && rc == MPI_SUCCESS; i++)
        if (sends[i].len > 0)
            rc = post(tr->send_buf + sends[i].offset, sends[i].len, sends[i].peer, tag, tr->comm,
                      1, &req[2 * (nr + i)], unit);
    st = rc != MPI_SUCCESS ? epc_mpi_error(tr->owner, rc, "MPI_Isend/MPI_Irecv")
                           : epc_mpi_wait_all(req, n, dl, &pending, phase);
    if (st == EPC_ERR_TIMEOUT) {
        int i = pending / 2;
        st = epc_error_obj(tr->owner, EPC_ERR_TIMEOUT,
                           "%s: mpi transport timed out %s rank %d (%zu bytes)", phase,
                           i < nr ? "waiting for data from" : "sending to",
                           i < nr ? recvs[i].peer : sends[i - nr].peer,
                           i < nr ? recvs[i].len : sends[i - nr].len);
    }
    if (st != EPC_OK)
        epc_mpi_cancel_all(req, n);
    free(req);
    return st;
}

const epc_tr_ops_t epc_tr_mpi_ops = {
    .name = "mpi",
    .init = mpi_init,
    .connect = mpi_connect,
    .fini = mpi_fini,
    .reserve = mpi_reserve,
    .exchange = mpi_exchange,
};
