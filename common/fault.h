/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * fault.h - deterministic fault injection for the failure tests
 * (EPC_FAULT=RANK:PHASE:stall=MS|exit, or RANK:counts:corrupt).  A no-op
 * unless the variable names this rank and phase.
 */

/* Where a rank can be made to stall or die: inside epc_ctx_create (after
 * the parameters agree), between creating a shared-memory segment and
 * every node peer mapping it, when a region is about to grow, inside
 * dispatch (after the counts) and combine, at the start of destroy. */
#define EPC_FAULT_PHASES "create|shm|grow|dispatch|combine|lldispatch|llcombine|move|destroy"
#ifndef EPC_COMMON_FAULT_H
#define EPC_COMMON_FAULT_H

#include <mpi.h>

typedef struct epc_fault {
    int rank;       /* rank of MPI_COMM_WORLD */
    char phase[16]; /* one of EPC_FAULT_PHASES, or "counts" */
    int kill;       /* 1: SIGKILL */
    int corrupt;    /* 1: send a corrupt count (phase "counts" only) */
    long stall_ms;  /* 1..86400000 when neither kill nor corrupt */
} epc_fault_t;

/* Parses an EPC_FAULT value.  0 and *f filled when it is exactly
 * RANK:PHASE:exit or RANK:PHASE:stall=MS (PHASE in EPC_FAULT_PHASES), or
 * RANK:counts:corrupt; -1 (and *f untouched) for anything else. */
int epc_fault_parse(const char *spec, epc_fault_t *f);

/* Called at `phase` (EPC_FAULT_PHASES, or "counts") by world rank
 * `rank`: stalls or kills the process when EPC_FAULT says so, or returns 1
 * when the caller must corrupt what it sends (else 0); a malformed
 * EPC_FAULT is reported once and otherwise ignored. */
int epc_fault_point(const char *phase, int world_rank);

/* epc_fault_point for the calling process's rank in MPI_COMM_WORLD: what
 * the collectives call (inline, so MPI-free users of fault.c need no MPI). */
static inline int epc_fault_here(const char *phase)
{
    int world = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &world);
    return epc_fault_point(phase, world);
}

#endif
