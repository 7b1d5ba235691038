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
#include "timer.h"

/* EPC_ERR_TRANSPORT naming the MPI call and MPI's own message. */
epc_status_t epc_mpi_error(epc_obj_t *obj, int mpi_rc, const char *call);

/*
 * Collective over comm (which must return errors, not abort), bounded by
 * dl.  Every rank passes its local status; returns EPC_OK when all are OK.
 * Otherwise the lowest failing rank broadcasts its error text: every
 * failing rank returns its own status and text, and the others get
 * EPC_ERR_PEER_FAILED with "rank R: <text>".
 */
epc_status_t epc_mpi_agree(MPI_Comm comm, epc_status_t local, epc_obj_t *obj, epc_deadline_t dl);

/*
 * The same in steps, for a caller that cannot block: start posts this
 * rank's status; test returns EPC_IN_PROGRESS until the verdict is known,
 * then the verdict as epc_mpi_agree's (dl: the deadline of the wait, its
 * expiry a timeout raised).  The state lives in *ag until then.
 */
typedef struct epc_agree {
    MPI_Comm comm;
    epc_obj_t *obj;
    epc_status_t local;
    int me, in[2], out[2];
    int reason; /* 1 once the failure's text is being broadcast */
    MPI_Request req;
    char text[EPC_ERR_TEXT_MAX];
} epc_agree_t;

epc_status_t epc_mpi_agree_start(epc_agree_t *ag, MPI_Comm comm, epc_status_t local,
                                 epc_obj_t *obj);
epc_status_t epc_mpi_agree_test(epc_agree_t *ag, epc_deadline_t dl);

/*
 * Tests one nonblocking collective once: EPC_OK when it completed,
 * EPC_IN_PROGRESS while dl holds, else EPC_ERR_TIMEOUT raised naming
 * `what` (the request is abandoned: MPI cannot cancel collectives),
 * EPC_ERR_TRANSPORT for an MPI error, or the deadline's interrupt.
 */
epc_status_t epc_mpi_test_one(MPI_Request *req, epc_deadline_t dl, epc_obj_t *obj,
                              const char *what);

/*
 * Completes one nonblocking collective whose start returned rc, by dl: the
 * one way the library waits for a collective.  EPC_ERR_TIMEOUT raised
 * naming `what` (the request is abandoned: MPI cannot cancel collectives),
 * EPC_ERR_TRANSPORT for an MPI error, or the deadline's interrupt.
 */
epc_status_t epc_mpi_finish(int rc, MPI_Request *req, epc_deadline_t dl, epc_obj_t *obj,
                            const char *what);

/*
 * Collective over comm, bounded by dl: do all ranks hold the same n values
 * v[] (doubles: integers up to 2^53 compare exactly)?  *differs gets the
 * index of the first value that differs between ranks (-1: none) and, for
 * it, the smallest and largest value held (lo, hi; may be NULL); every
 * rank gets the same answer.  Only MPI failures are raised (naming what);
 * the caller words the disagreement.  n <= EPC_MPI_COMPARE_MAX.
 */
#define EPC_MPI_COMPARE_MAX 16
epc_status_t epc_mpi_compare(MPI_Comm comm, const double *v, int n, epc_deadline_t dl,
                             epc_obj_t *obj, const char *what, int *differs, double *lo,
                             double *hi);

/* Duplicates comm with MPI_ERRORS_RETURN, so MPI failures become statuses. */
epc_status_t epc_mpi_dup(MPI_Comm comm, MPI_Comm *dup);

/*
 * Waits for n requests until the deadline, yielding the core between tests
 * (ranks may outnumber cores).  EPC_OK when all completed; on expiry
 * EPC_ERR_TIMEOUT (not raised: the caller names the phase and peer) with
 * *pending = index of the first incomplete request; EPC_ERR_TRANSPORT
 * (raised) if MPI fails; the interrupt's status (raised by it, quietly:
 * the caller adds whom it waited for with epc_error_context), *pending
 * set as for a timeout, when the deadline's interrupt ends the wait.
 * Completed requests become MPI_REQUEST_NULL.
 */
epc_status_t epc_mpi_wait_all(MPI_Request *reqs, int n, epc_deadline_t dl, int *pending,
                              const char *what);

/* Cancels and frees incomplete point-to-point requests after a timeout
 * (never collective ones: MPI forbids it). */
void epc_mpi_cancel_all(MPI_Request *reqs, int n);

/*
 * Gives up on a pending nonblocking collective without letting MPI write
 * into freed memory.  MPI can neither cancel nor free one (MPI-3.1 5.12),
 * and peers that did take part still deliver their share into its receive
 * buffer, possibly much later (a failed context's peers' data arrived
 * during MPI_Finalize).  So the n heap blocks in bufs (the buffers and
 * count arrays the collective reads or writes; NULLs allowed) are freed
 * once *req completes, never before: each call tests the requests given
 * up earlier and frees what finished.  *req is MPI_REQUEST_NULL after (it
 * may lie inside one of the blocks: it is read and cleared before any is
 * freed); when it already was, bufs are freed at once.  Blocks of a collective
 * that never completes stay reachable until the process exits.  At most
 * EPC_MPI_ABANDON_BUFS blocks per call.
 */
#define EPC_MPI_ABANDON_BUFS 4
void epc_mpi_abandon(MPI_Request *req, void *const *bufs, int n);

/* MPI_Ibarrier with a deadline; EPC_ERR_TIMEOUT raised naming `phase`. */
epc_status_t epc_mpi_barrier(MPI_Comm comm, epc_deadline_t dl, const char *phase, epc_obj_t *obj);

/* The deadline for collective bootstrap steps: EPC_TIMEOUT_MS from now. */
epc_deadline_t epc_mpi_default_deadline(void);

#endif
