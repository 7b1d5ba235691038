#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# shm and mpi transport, 2 ranks on one real node: every byte checked.
unset EPC_RANKS_PER_NODE EPC_TRANSPORT EPC_OFI_PROVIDER EPC_TIMEOUT_MS
export FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
export EPC_TRANSPORT=mpi
exec "$EPC_MPIRUN" 2 "$top_builddir/tests/mpi/test_comm_mpi" data
