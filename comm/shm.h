/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * shm.h - the intra-node path: every rank of a node (real or virtual) has a
 * receive region in an MPI-3 shared window, mapped by all ranks of the
 * node, so a rank writes rows straight into a peer's region at an offset
 * agreed beforehand (one copy, like NVLink peer writes).  A fence makes
 * the writes of all ranks visible to all.
 */
#ifndef EPC_COMM_SHM_H
#define EPC_COMM_SHM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "timer.h"

typedef struct epc_shm {
    epc_obj_t *owner;
    MPI_Comm comm; /* the ranks of this node (not owned) */
    int lrank, lsize;
    MPI_Win win;   /* MPI_WIN_NULL until the first reserve */
    MPI_Win ctl_win; /* one cache line per rank: fence counter, reserve flags */
    char *ctl;       /* rank l's counter at ctl + 64 * l */
    uint64_t epoch;  /* fences passed by this rank */
    uint64_t reserves; /* reserves called by this rank */
    int broken;      /* a fence timed out: the counters no longer agree */
    const int *names; /* ranks (in the context's communicator) of the node */
    char **base;   /* [lsize]: each rank's region, mapped here */
    size_t *cap;   /* [lsize] */
    unsigned grows;
} epc_shm_t;

/* names[l]: the rank of local rank l in the owner's communicator (for
 * error messages); kept by reference. */
epc_status_t epc_shm_create(MPI_Comm node_comm, const int *names, epc_obj_t *owner,
                            epc_shm_t **shm_p);

/* Collective over the node (frees the window: call it on every rank). */
void epc_shm_destroy(epc_shm_t *shm);

/*
 * Collective over the node: makes this rank's region at least `need` bytes
 * (each rank passes its own need).  When any rank must grow, all reallocate
 * the window (amortised: at least 1.5x); the regions' contents are lost
 * then.  Bounded by the deadline; a timeout names `phase` and the rank
 * that did not arrive.
 */
epc_status_t epc_shm_reserve(epc_shm_t *shm, size_t need, epc_deadline_t dl, const char *phase);

/* Collective over the node: after it, every write any rank of the node made
 * into any region before it is visible to every rank.  A counter per rank
 * in shared memory (no MPI call): a timeout names the ranks that did not
 * arrive. */
epc_status_t epc_shm_fence(epc_shm_t *shm, epc_deadline_t dl, const char *phase);

#endif
