#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Nonblocking dispatch/combine advanced by the context's progress thread
# (epc_test only reports then), 4 ranks as 2 nodes over the mpi transport.
unset EPC_RANKS_PER_NODE EPC_TRANSPORT EPC_OFI_PROVIDER EPC_TIMEOUT_MS EPC_ALGO
export EPC_TRANSPORT=mpi EPC_RANKS_PER_NODE=2 EPC_CHUNK_KB=4 EPC_PROGRESS=thread
exec "$EPC_MPIRUN" 4 "$top_builddir/tests/mpi/test_coll_mpi" nonblocking
