/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * fault.h - deterministic fault injection for the failure tests
 * (EPC_FAULT=RANK:PHASE:stall=MS|exit).  A no-op unless the variable names
 * this rank and phase.
 */
#ifndef EPC_COMMON_FAULT_H
#define EPC_COMMON_FAULT_H

typedef struct epc_fault {
    int rank;        /* rank of MPI_COMM_WORLD */
    char phase[16];  /* "dispatch" or "combine" */
    int kill;        /* 1: SIGKILL, 0: stall */
    long stall_ms;   /* 1..86400000 when !kill */
} epc_fault_t;

/* Parses an EPC_FAULT value.  0 and *f filled when it is exactly
 * RANK:dispatch|combine:exit or RANK:dispatch|combine:stall=MS; -1 (and *f
 * untouched) for anything else. */
int epc_fault_parse(const char *spec, epc_fault_t *f);

/* Called at the start of `phase` ("dispatch", "combine") by world rank
 * `rank`: stalls or kills the process when EPC_FAULT says so; a malformed
 * EPC_FAULT is reported once and otherwise ignored. */
void epc_fault_point(const char *phase, int world_rank);

#endif
