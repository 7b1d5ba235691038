#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Different job-wide params on one rank: EPC_ERR_MISMATCH on every rank.
unset EPC_RANKS_PER_NODE EPC_TRANSPORT EPC_OFI_PROVIDER EPC_TIMEOUT_MS
export FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
exec "$EPC_MPIRUN" 4 "$top_builddir/tests/mpi/test_comm_mpi" mismatch
