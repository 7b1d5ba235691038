#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# ofi transport with tcp;ofi_rxm on lo, 8 ranks as 2 virtual nodes of 4.
[ "$EPC_HAVE_OFI" = yes ] || { echo "SKIP: built --without-ofi"; exit 77; }
unset EPC_RANKS_PER_NODE EPC_TRANSPORT EPC_OFI_PROVIDER EPC_TIMEOUT_MS
export FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
export EPC_TRANSPORT=ofi EPC_OFI_PROVIDER=tcp EPC_RANKS_PER_NODE=4
exec "$EPC_MPIRUN" 8 "$top_builddir/tests/mpi/test_comm_mpi" data
