/* SPDX-License-Identifier: BSD-3-Clause */
/* mpi_util.c - MPI error conversion and failure agreement. */
#include <sched.h>
#include <string.h>

#include "config.h"
#include "mpi_util.h"

epc_status_t epc_mpi_error(epc_obj_t *obj, int mpi_rc, const char *call)
{
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(mpi_rc, msg, &len) != MPI_SUCCESS)
        strcpy(msg, "unknown MPI error");
    return epc_error_obj(obj, EPC_ERR_TRANSPORT, "%s failed: %s (code %d)", call, msg, mpi_rc);
}

epc_status_t epc_mpi_agree(MPI_Comm comm, epc_status_t local, epc_obj_t *obj)
{
    int in[2], out[2], me, rc;
    char text[EPC_ERR_TEXT_MAX];
    MPI_Comm_rank(comm, &me);
    MPI_Request req;
    int pending;
    epc_status_t st;
    in[0] = (int)local;
    in[1] = me;
    /* Non-blocking with a deadline: a peer that never arrives times out. */
    rc = MPI_Iallreduce(in, out, 1, MPI_2INT, MPI_MINLOC, comm, &req);
    if (rc != MPI_SUCCESS)
        return epc_mpi_error(obj, rc, "MPI_Iallreduce (error agreement)");
    st = epc_mpi_wait_all(&req, 1, epc_mpi_default_deadline(), &pending, "error agreement");
    /* A collective request can be neither cancelled nor freed (MPI-3.1
     * 5.12): after a timeout it is abandoned, and the caller fails. */
    if (st == EPC_ERR_TIMEOUT) {
        return epc_error_obj(obj, EPC_ERR_TIMEOUT,
                             "error agreement: not every rank reached it within EPC_TIMEOUT_MS "
                             "(a rank did not call, or called another collective)");
    }
    if (st != EPC_OK)
        return st;
    if (out[0] >= 0)
        return EPC_OK;
    /* The worst failure's text travels to everyone, so each rank's message
     * says what went wrong where, not just that something did. */
    if (me == out[1])
        strncpy(text, epc_last_error(NULL), sizeof text - 1);
    text[sizeof text - 1] = '\0';
    rc = MPI_Bcast(text, (int)sizeof text, MPI_CHAR, out[1], comm);
    if (rc != MPI_SUCCESS)
        return epc_mpi_error(obj, rc, "MPI_Bcast (error agreement)");
    if (local < 0) {
        epc_error_sync(obj);
        return local;
    }
    return epc_error_quiet(obj, EPC_ERR_PEER_FAILED, "rank %d: %s", out[1], text);
}

epc_status_t epc_mpi_dup(MPI_Comm comm, MPI_Comm *dup)
{
    MPI_Request req;
    int pending, rc = MPI_Comm_idup(comm, dup, &req);
    epc_status_t st;
    /* Non-blocking with a deadline: the first collective of every creation,
     * so a rank that never arrives is a timeout, not a hang.  Later steps
     * start with an agreement, which all ranks have then reached. */
    if (rc != MPI_SUCCESS)
        return epc_mpi_error(NULL, rc, "MPI_Comm_idup");
    st = epc_mpi_wait_all(&req, 1, epc_mpi_default_deadline(), &pending, "MPI_Comm_idup");
    if (st == EPC_ERR_TIMEOUT)
        return epc_error(EPC_ERR_TIMEOUT,
                         "creating a communicator: not every rank arrived within EPC_TIMEOUT_MS "
                         "(a rank did not call the collective create)");
    if (st != EPC_OK)
        return st;
    rc = MPI_Comm_set_errhandler(*dup, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        MPI_Comm_free(dup);
        return epc_mpi_error(NULL, rc, "MPI_Comm_set_errhandler");
    }
    return EPC_OK;
}

epc_deadline_t epc_mpi_default_deadline(void)
{
    const epc_config_t *cfg;
    (void)epc_config_get_quiet(&cfg); /* invalid values were reported already */
    return epc_deadline_in_ms((long)epc_cfg_int(cfg, EPC_CFG_TIMEOUT_MS));
}

epc_status_t epc_mpi_wait_all(MPI_Request *reqs, int n, epc_deadline_t dl, int *pending,
                              const char *what)
{
    for (;;) {
        int done = 0, rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS)
            return epc_mpi_error(NULL, rc, what);
        if (done)
            return EPC_OK;
        if (epc_deadline_expired(dl)) {
            *pending = 0;
            for (int i = 0; i < n; i++) {
                int flag = 0;
                if (reqs[i] != MPI_REQUEST_NULL)
                    MPI_Test(&reqs[i], &flag, MPI_STATUS_IGNORE);
                if (reqs[i] != MPI_REQUEST_NULL) {
                    *pending = i;
                    break;
                }
            }
            return EPC_ERR_TIMEOUT;
        }
        sched_yield();
    }
}

void epc_mpi_cancel_all(MPI_Request *reqs, int n)
{
    for (int i = 0; i < n; i++) {
        if (reqs[i] == MPI_REQUEST_NULL)
            continue;
        MPI_Cancel(&reqs[i]);
        MPI_Request_free(&reqs[i]);
    }
}

epc_status_t epc_mpi_barrier(MPI_Comm comm, epc_deadline_t dl, const char *phase, epc_obj_t *obj)
{
    MPI_Request req;
    int pending, rc = MPI_Ibarrier(comm, &req);
    epc_status_t st;
    if (rc != MPI_SUCCESS)
        return epc_mpi_error(obj, rc, "MPI_Ibarrier");
    st = epc_mpi_wait_all(&req, 1, dl, &pending, phase);
    if (st == EPC_ERR_TIMEOUT) /* abandoned: see epc_mpi_agree */
        return epc_error_obj(obj, EPC_ERR_TIMEOUT,
                             "%s: timed out waiting for the other ranks", phase);
    if (st != EPC_OK)
        epc_error_sync(obj);
    return st;
}
