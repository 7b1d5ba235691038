/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * mpi_util.h - MPI helpers shared by every layer that talks to other ranks:
 * turning MPI error codes into statuses, and agreeing on failure so that all
 * ranks of a collective call return an error together (none waits for a
 * peer that already gave up).
 */
#ifndef EPC_COMMON_MPI_UTIL_H
#define EPC_COMMON_MPI_UTIL_H

#include <mpi.h>

#include "error.h"

/* EPC_ERR_TRANSPORT naming the MPI call and MPI's own message. */
epc_status_t epc_mpi_error(epc_obj_t *obj, int mpi_rc, const char *call);

/*
 * Collective over comm (which must return errors, not abort).  Every rank
 * passes its local status; returns EPC_OK when all are OK.  Otherwise the
 * rank with the most severe (lowest) status, lowest rank first, broadcasts
 * its error text: it returns its own status, ranks that failed too keep
 * theirs, and the others get EPC_ERR_PEER_FAILED with "rank R: <text>".
 */
epc_status_t epc_mpi_agree(MPI_Comm comm, epc_status_t local, epc_obj_t *obj);

/* Duplicates comm with MPI_ERRORS_RETURN, so MPI failures become statuses. */
epc_status_t epc_mpi_dup(MPI_Comm comm, MPI_Comm *dup);

#endif
