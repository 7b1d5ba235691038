/* SPDX-License-Identifier: BSD-3-Clause */
/* abort.c - telling peers that this rank stopped, and noticing theirs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abort.h"
#include "mpi_util.h"

/* Tag of abort messages on the control communicator. */
enum { ABORT_TAG = 1 };

/* The node word while its text is being written (never a rank + 1). */
#define WORD_WRITING UINT64_MAX

epc_status_t epc_abort_init(epc_abort_t *a, MPI_Comm comm, const epc_topo_t *topo,
                            const epc_shm_t *shm, epc_obj_t *owner)
{
    int rc;
    memset(a, 0, sizeof *a);
    a->owner = owner;
    a->comm = comm;
    a->topo = topo;
    a->recv = MPI_REQUEST_NULL;
    a->seen_rank = -1;
    MPI_Comm_rank(comm, &a->rank);
    MPI_Comm_size(comm, &a->nranks);
    epc_shm_abort_area(shm, &a->node_word, &a->node_text);
    if ((a->sends = malloc((size_t)a->nranks * sizeof *a->sends)) == NULL)
        return epc_error_obj(owner, EPC_ERR_NO_MEMORY, "abort requests of %d ranks", a->nranks);
    for (int r = 0; r < a->nranks; r++)
        a->sends[r] = MPI_REQUEST_NULL;
    rc = MPI_Irecv(&a->in, (int)sizeof a->in, MPI_BYTE, MPI_ANY_SOURCE, ABORT_TAG, comm, &a->recv);
    return rc == MPI_SUCCESS ? EPC_OK : epc_mpi_error(owner, rc, "MPI_Irecv(abort messages)");
}

void epc_abort_fini(epc_abort_t *a)
{
    int pending;
    if (a->owner == NULL)
        return; /* init never ran (a zeroed struct) */
    /* Abort messages still on their way leave before the communicator
     * goes, for a short while at most (a gone peer must not hold us). */
    if (a->told && a->sends != NULL)
        (void)epc_mpi_wait_all(a->sends, a->nranks, epc_deadline_in_ms(1000), &pending,
                               "abort messages");
    if (a->recv != MPI_REQUEST_NULL) {
        /* Cancelling a receive completes locally (MPI-3.1 3.8.4): this
         * wait cannot block on a peer. */
        MPI_Cancel(&a->recv);
        MPI_Wait(&a->recv, MPI_STATUS_IGNORE);
    }
    if (a->sends != NULL)
        for (int r = 0; r < a->nranks; r++)
            if (a->sends[r] != MPI_REQUEST_NULL)
                MPI_Request_free(&a->sends[r]);
    free(a->sends);
    a->sends = NULL;
}

/* Publishes the abort in the node's control segment, unless a rank of the
 * node did first (its reason then stands for the node). */
static void tell_node(epc_abort_t *a, const char *text)
{
    uint64_t none = 0;
    if (!atomic_compare_exchange_strong(a->node_word, &none, WORD_WRITING))
        return;
    snprintf(a->node_text, EPC_ABORT_TEXT, "%s", text);
    atomic_store_explicit(a->node_word, (uint64_t)a->rank + 1, memory_order_release);
}

void epc_abort_tell(epc_abort_t *a, const char *text, long wait_ms)
{
    const int *node_of = a->topo->node_of;
    int pending;
    if (a->told || a->sends == NULL)
        return;
    a->told = 1;
    tell_node(a, text);
    a->out.rank = a->rank;
    snprintf(a->out.text, sizeof a->out.text, "%s", text);
    for (int r = 0; r < a->nranks; r++)
        if (node_of[r] != node_of[a->rank])
            MPI_Isend(&a->out, (int)sizeof a->out, MPI_BYTE, r, ABORT_TAG, a->comm, &a->sends[r]);
    /* Small messages leave at once (eager); a peer that is gone must not
     * hold this rank, hence the short bound and no error.  (A deadline of
     * 0 ms would mean none: test once instead.) */
    if (wait_ms > 0)
        (void)epc_mpi_wait_all(a->sends, a->nranks, epc_deadline_in_ms(wait_ms), &pending,
                               "abort messages");
    else
        MPI_Testall(a->nranks, a->sends, &pending, MPI_STATUSES_IGNORE);
}

/* Looks for a peer's abort: the node word, then (at most every 1 ms) the
 * posted receive. */
static void look(epc_abort_t *a)
{
    uint64_t w = atomic_load_explicit(a->node_word, memory_order_acquire), now;
    int flag = 0;
    if (w != 0 && w != WORD_WRITING && (int)(w - 1) != a->rank) {
        a->seen = 1;
        a->seen_rank = (int)(w - 1);
        snprintf(a->seen_text, sizeof a->seen_text, "%s", a->node_text);
        return;
    }
    now = epc_time_ns();
    if (a->recv == MPI_REQUEST_NULL || now < a->next_test_ns)
        return;
    a->next_test_ns = now + 1000000;
    if (MPI_Test(&a->recv, &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag) {
        a->in.text[sizeof a->in.text - 1] = '\0';
        a->seen = 1;
        a->seen_rank = a->in.rank;
        snprintf(a->seen_text, sizeof a->seen_text, "%s", a->in.text);
    }
}

epc_status_t epc_abort_poll(void *arg)
{
    epc_abort_t *a = arg;
    if (!a->seen)
        look(a);
    if (!a->seen)
        return EPC_OK;
    /* Not logged here: the waiter adds what it was waiting for and logs. */
    return epc_error_quiet(a->owner, EPC_ERR_PEER_FAILED, "rank %d aborted the context: %s",
                           a->seen_rank, a->seen_text);
}
