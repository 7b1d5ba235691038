#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# A peer that never sends: EPC_ERR_TIMEOUT within twice EPC_TIMEOUT_MS (mpi).
unset EPC_RANKS_PER_NODE EPC_TRANSPORT EPC_OFI_PROVIDER EPC_TIMEOUT_MS
export FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
export EPC_TRANSPORT=mpi EPC_TIMEOUT_MS=1000
exec "$EPC_MPIRUN" 2 "$top_builddir/tests/mpi/test_comm_mpi" timeout
