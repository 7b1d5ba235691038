#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# epc_ctx_abort on one node over the mpi transport: peers blocked in dispatch
# and in combine fail fast, naming the aborting rank (test_abort_mpi.c).
unset EPC_TRANSPORT EPC_OFI_PROVIDER EPC_ALGO EPC_FAULT EPC_RANKS_PER_NODE
export EPC_TRANSPORT=mpi EPC_TIMEOUT_MS=30000
exec "$EPC_MPIRUN" 4 "$top_builddir/tests/mpi/test_abort_mpi"
