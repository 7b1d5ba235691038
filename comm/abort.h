/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * abort.h - failing fast.  A rank that cannot go on (its caller failed, or
 * a wait of its own timed out) tells every peer of the context, and every
 * wait of theirs on that context ends at once with EPC_ERR_PEER_FAILED
 * naming it, instead of after the deadline.
 *
 * Inside a node the news is a word in the shared control segment (one
 * atomic load per poll); across nodes, a small message on the context's
 * control communicator, received by a receive posted at creation and
 * tested at most once a millisecond by the waits.
 */
#ifndef EPC_COMM_ABORT_H
#define EPC_COMM_ABORT_H

#include <mpi.h>
#include <stdint.h>

#include "error.h"
#include "shm.h"
#include "timer.h"
#include "topo.h"

#define EPC_ABORT_TEXT EPC_SHM_ABORT_TEXT

typedef struct epc_abort_msg {
    int32_t rank;
    char text[EPC_ABORT_TEXT];
} epc_abort_msg_t;

typedef struct epc_abort {
    epc_obj_t *owner;
    MPI_Comm comm; /* control communicator (not owned) */
    int rank, nranks;
    const epc_topo_t *topo;      /* who is on another node */
    _Atomic uint64_t *node_word; /* shared: 0, or the aborting rank + 1 */
    char *node_text;             /* shared: its reason */
    MPI_Request recv;            /* a peer's abort message, posted at init */
    epc_abort_msg_t in;
    MPI_Request *sends; /* [nranks] */
    epc_abort_msg_t out;
    uint64_t next_test_ns; /* the receive is tested at most every 1 ms */
    int seen;              /* 1: a peer's abort was seen (seen_rank, seen_text) */
    int seen_rank;
    char seen_text[EPC_ABORT_TEXT];
    int told; /* this rank told its peers */
} epc_abort_t;

/* Posts the receive of peers' aborts (local; after the context's shared
 * memory exists).  EPC_ERR_NO_MEMORY / EPC_ERR_TRANSPORT raised. */
epc_status_t epc_abort_init(epc_abort_t *a, MPI_Comm comm, const epc_topo_t *topo,
                            const epc_shm_t *shm, epc_obj_t *owner);

/* Cancels the receive; frees what init allocated.  Accepts a zeroed a. */
void epc_abort_fini(epc_abort_t *a);

/* Tells every peer that this rank aborted, with `text` as the reason
 * (once; later calls do nothing).  Local: the messages are posted and
 * waited for at most wait_ms (0: tested once), so they leave before the
 * process may exit; epc_abort_fini waits up to 1 s for any still going. */
void epc_abort_tell(epc_abort_t *a, const char *text, long wait_ms);

/* EPC_OK while no peer aborted; else EPC_ERR_PEER_FAILED raised, not
 * logged, naming the rank and its reason (the waiter adds what it waited
 * for with epc_error_context, which logs).  Takes an epc_abort_t *: it is
 * the interrupt of the context's deadlines. */
epc_status_t epc_abort_poll(void *a);

#endif
