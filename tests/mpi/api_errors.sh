#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Every public function with each bad argument its header comment lists:
# the status it promises, a text naming the argument, outputs untouched.
unset EPC_TRANSPORT EPC_OFI_PROVIDER EPC_ALGO EPC_FAULT EPC_LOG_LEVEL
export EPC_RANKS_PER_NODE=2 EPC_TIMEOUT_MS=20000
exec "$EPC_MPIRUN" 4 "$top_builddir/tests/mpi/test_api_mpi"
