#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# 8 ranks on this machine, no virtual nodes: one node of 8.
unset EPC_RANKS_PER_NODE
exec "$EPC_MPIRUN" 8 "$top_builddir/tests/mpi/test_topo_mpi" map 1 8
