#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Dispatch/combine with 4 KiB pipeline chunks, so hier cuts its messages into
# the most chunks (8) in both directions; every value checked (mpi).
unset EPC_RANKS_PER_NODE EPC_TRANSPORT EPC_OFI_PROVIDER EPC_TIMEOUT_MS EPC_ALGO
export FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
export EPC_TRANSPORT=mpi EPC_RANKS_PER_NODE=2 EPC_CHUNK_KB=4
exec "$EPC_MPIRUN" 8 "$top_builddir/tests/mpi/test_coll_mpi" data
