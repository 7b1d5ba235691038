/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * shm.h - the intra-node path: every rank of a node (real or virtual) has a
 * receive region in a shared-memory segment of its own, mapped by all ranks
 * of the node, so a rank writes rows straight into a peer's region at an offset
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
    int mapped;      /* regions exist (0 until the first reserve) */
    char **ctl_base; /* [lsize]: the control segment (local rank 0's only) */
    size_t *ctl_cap; /* [lsize] */
    void *seg_info;  /* [lsize] names exchanged when segments are made */
    char *ctl;       /* one cache line per rank: fence counter, reserve flags
                      * (rank l's at ctl + 64 * l) */
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

/* Unmaps every segment (they were unlinked when mapped). */
void epc_shm_destroy(epc_shm_t *shm);

/*
 * Collective over the node: makes this rank's region at least `need` bytes
 * (each rank passes its own need).  When any rank must grow, all reallocate
 * their segments (amortised: at least 1.5x); the regions' contents are lost
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
