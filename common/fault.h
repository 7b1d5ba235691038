/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * fault.h - deterministic fault injection for the failure tests
 * (EPC_FAULT=RANK:PHASE:stall=MS|exit).  A no-op unless the variable names
 * this rank and phase.
 */
#ifndef EPC_COMMON_FAULT_H
#define EPC_COMMON_FAULT_H

/* Called at the start of `phase` ("dispatch", "combine") by world rank
 * `rank`: stalls or kills the process when EPC_FAULT says so. */
void epc_fault_point(const char *phase, int world_rank);

#endif
