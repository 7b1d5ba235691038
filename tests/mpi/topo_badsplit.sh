#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# 3 does not divide 8: every rank must fail cleanly, naming the variable.
export EPC_RANKS_PER_NODE=3
exec "$EPC_MPIRUN" 8 "$top_builddir/tests/mpi/test_topo_mpi" badsplit 3
