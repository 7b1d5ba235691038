#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Rank 1 sends a corrupt (negative) expert count: every rank of 4 (2 nodes)
# refuses the dispatch naming rank 1, outputs untouched.
unset EPC_TRANSPORT EPC_OFI_PROVIDER EPC_ALGO EPC_FAULT EPC_TIMEOUT_MS
export EPC_RANKS_PER_NODE=2 EPC_FAULT=1:counts:corrupt
exec "$EPC_MPIRUN" 4 "$top_builddir/tests/mpi/test_fault_mpi" corrupt
