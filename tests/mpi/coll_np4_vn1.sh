#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Dispatch/combine, 4 ranks as 4 nodes over the mpi transport.
unset EPC_RANKS_PER_NODE EPC_TRANSPORT EPC_OFI_PROVIDER EPC_TIMEOUT_MS EPC_ALGO
export FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
export EPC_TRANSPORT=mpi EPC_RANKS_PER_NODE=1
exec "$EPC_MPIRUN" 4 "$top_builddir/tests/mpi/test_coll_mpi" data
