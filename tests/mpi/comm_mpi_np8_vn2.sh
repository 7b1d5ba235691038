#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# shm and mpi transport, 8 ranks as 4 virtual nodes of 2.
unset EPC_RANKS_PER_NODE EPC_TRANSPORT EPC_OFI_PROVIDER EPC_TIMEOUT_MS
export FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
export EPC_TRANSPORT=mpi EPC_RANKS_PER_NODE=2
exec "$EPC_MPIRUN" 8 "$top_builddir/tests/mpi/test_comm_mpi" data
