#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Dispatch/combine, 8 ranks as 4 nodes of 2 over the mpi transport.
unset EPC_RANKS_PER_NODE EPC_TRANSPORT EPC_OFI_PROVIDER EPC_TIMEOUT_MS EPC_ALGO
export FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
export EPC_TRANSPORT=mpi EPC_RANKS_PER_NODE=2
exec "$EPC_MPIRUN" 8 "$top_builddir/tests/mpi/test_coll_mpi" data
