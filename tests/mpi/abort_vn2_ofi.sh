#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# epc_ctx_abort on 2 virtual nodes over the ofi transport: peers blocked in dispatch
# and in combine fail fast, naming the aborting rank (test_abort_mpi.c).
unset EPC_TRANSPORT EPC_OFI_PROVIDER EPC_ALGO EPC_FAULT EPC_RANKS_PER_NODE
[ "$EPC_HAVE_OFI" = yes ] || { echo "SKIP: built --without-ofi"; exit 77; }
export EPC_OFI_PROVIDER=tcp FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
export EPC_RANKS_PER_NODE=2
export EPC_TRANSPORT=ofi EPC_TIMEOUT_MS=30000
exec "$EPC_MPIRUN" 4 "$top_builddir/tests/mpi/test_abort_mpi"
