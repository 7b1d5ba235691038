#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Virtual nodes from the environment: 8 ranks as 4 nodes of 2.
export EPC_RANKS_PER_NODE=2
exec "$EPC_MPIRUN" 8 "$top_builddir/tests/mpi/test_topo_mpi" map 4 2
