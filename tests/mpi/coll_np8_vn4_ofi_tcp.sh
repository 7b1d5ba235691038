#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Dispatch/combine, 8 ranks as 2 nodes of 4 over ofi (tcp;ofi_rxm on lo).
[ "$EPC_HAVE_OFI" = yes ] || { echo "SKIP: built --without-ofi"; exit 77; }
unset EPC_RANKS_PER_NODE EPC_TRANSPORT EPC_OFI_PROVIDER EPC_TIMEOUT_MS EPC_ALGO
export FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
export EPC_TRANSPORT=ofi EPC_OFI_PROVIDER=tcp EPC_RANKS_PER_NODE=4
exec "$EPC_MPIRUN" 8 "$top_builddir/tests/mpi/test_coll_mpi" data
