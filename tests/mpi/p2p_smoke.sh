#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# The transport benchmark runs every path at small sizes without error.
export FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
unset EPC_RANKS_PER_NODE EPC_TRANSPORT EPC_OFI_PROVIDER
exec "$EPC_MPIRUN" 2 "$top_builddir/tests/bench/epc_p2p" --min 4096 --max 65536
