#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# 100 create/use/destroy cycles leave no fd, /dev/shm entry or memory (mpi).
unset EPC_RANKS_PER_NODE EPC_TRANSPORT EPC_OFI_PROVIDER EPC_TIMEOUT_MS
export FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
export EPC_TRANSPORT=mpi EPC_RANKS_PER_NODE=2
exec "$EPC_MPIRUN" 4 "$top_builddir/tests/mpi/test_comm_mpi" leak
