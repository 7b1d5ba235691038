/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * shm.h - the intra-node path: every rank of a node (real or virtual) has a
 * receive region in a shared-memory segment of its own, mapped by all ranks
 * of the node, so a rank writes rows straight into a peer's region at an offset
 * agreed beforehand (one copy, like NVLink peer writes).  A fence makes
 * the writes of all ranks visible to all.
 *
 * Segments are anonymous (memfd): they have no name anywhere, so nothing
 * can outlive the processes that map them, whenever and however they die.
 */
#ifndef EPC_COMM_SHM_H
#define EPC_COMM_SHM_H

#include <mpi.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "timer.h"

/* Bytes of the node-wide abort text in the control segment. */
#define EPC_SHM_ABORT_TEXT 512

typedef struct epc_shm {
    epc_obj_t *owner;
    MPI_Comm comm; /* point-to-point between the node's ranks (not owned) */
    int lrank, lsize;
    const int *names;  /* [lsize]: the node's ranks in comm (kept by reference) */
    MPI_Request *reqs; /* [2 * lsize]: the node exchanges' requests */
    void *seg_info;    /* [lsize]: what each rank announced of its segment */
    int mapped;        /* regions exist (0 until the first reserve) */
    char **ctl_base;   /* [lsize]: the control segment (local rank 0's only) */
    size_t *ctl_cap;   /* [lsize] */
    char *ctl;         /* one cache line per rank: fence counter, reserve flags
                        * (rank l's at ctl + 64 * l); then the abort area */
    uint64_t epoch;    /* fences passed by this rank */
    uint64_t reserves; /* reserves called by this rank */
    int reserve_word;  /* the control word of the reserve under way (1 or 2) */
    int broken;        /* a fence or node exchange failed: counters no longer agree */
    char **base;       /* [lsize]: each rank's region, mapped here */
    size_t *cap;       /* [lsize] */
    unsigned grows;
} epc_shm_t;

/* Writes every page of every region mapped here once from this process (an
 * atomic no-op, safe while peers write): their first stores from here are
 * then not paid inside a call (shm.c says where that matters). */
void epc_shm_touch(epc_shm_t *s);

/* Creates the node's control segment (collective over the node's ranks:
 * names[0..lsize) in comm, this rank being names[lrank]), bounded by dl. */
epc_status_t epc_shm_create(MPI_Comm comm, const int *names, int lsize, int lrank, epc_obj_t *owner,
                            epc_deadline_t dl, epc_shm_t **shm_p);

/* Unmaps every segment (local; the segments vanish with the last mapping). */
void epc_shm_destroy(epc_shm_t *shm);

/*
 * Collective over the node: makes this rank's region at least `need` bytes
 * (each rank passes its own need).  When any rank must grow, all reallocate
 * their segments (amortised: at least 1.5x); the regions' contents are lost
 * then.  Bounded by the deadline; a timeout names `phase` and the rank
 * that did not arrive.
 */
epc_status_t epc_shm_reserve(epc_shm_t *shm, size_t need, epc_deadline_t dl, const char *phase);

/* The same in two halves around its fence, for a caller that waits for
 * the fence step by step: begin publishes this rank's need and arrives
 * (*target for epc_shm_fence_test); end, once every rank has arrived,
 * grows the regions if any rank must (node exchanges bounded by dl). */
epc_status_t epc_shm_reserve_begin(epc_shm_t *shm, size_t need, const char *phase,
                                   uint64_t *target);
epc_status_t epc_shm_reserve_end(epc_shm_t *shm, size_t need, epc_deadline_t dl, const char *phase);

/* Collective over the node: after it, every write any rank of the node made
 * into any region before it is visible to every rank.  A counter per rank
 * in shared memory (no MPI call): a timeout names the ranks that did not
 * arrive. */
epc_status_t epc_shm_fence(epc_shm_t *shm, epc_deadline_t dl, const char *phase);

/* The fence in steps: arrive (publishes this rank's writes; *target is the
 * fence's number), test (1 once every rank of the node arrived at target,
 * else *missing = the first local rank that has not), fail (the error of a
 * fence whose wait ended with st: a timeout or a peer's abort, naming the
 * missing rank; the node's counters no longer agree afterwards), and wait
 * (test until dl).  epc_shm_fence is arrive + wait. */
epc_status_t epc_shm_fence_arrive(epc_shm_t *shm, const char *phase, uint64_t *target);
int epc_shm_fence_test(const epc_shm_t *shm, uint64_t target, int *missing);
epc_status_t epc_shm_fence_fail(epc_shm_t *shm, epc_status_t st, int missing, const char *phase);
epc_status_t epc_shm_fence_wait(epc_shm_t *shm, uint64_t target, epc_deadline_t dl,
                                const char *phase);

/* The node-wide abort word (0: none; else the aborting rank + 1) and its
 * text, in the control segment every rank of the node maps. */
void epc_shm_abort_area(const epc_shm_t *shm, _Atomic uint64_t **word, char **text);

#endif
