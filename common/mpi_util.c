/* SPDX-License-Identifier: BSD-3-Clause */
/* mpi_util.c - MPI error conversion and failure agreement. */
#include <string.h>

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
    in[0] = (int)local;
    in[1] = me;
    rc = MPI_Allreduce(in, out, 1, MPI_2INT, MPI_MINLOC, comm);
    if (rc != MPI_SUCCESS)
        return epc_mpi_error(obj, rc, "MPI_Allreduce (error agreement)");
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
    int rc = MPI_Comm_dup(comm, dup);
    if (rc != MPI_SUCCESS)
        return epc_mpi_error(NULL, rc, "MPI_Comm_dup");
    rc = MPI_Comm_set_errhandler(*dup, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        MPI_Comm_free(dup);
        return epc_mpi_error(NULL, rc, "MPI_Comm_set_errhandler");
    }
    return EPC_OK;
}
