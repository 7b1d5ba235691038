#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# 8 ranks on the DGX-class XML: rank r must get GPU cuda r and NIC mlx5_r.
unset EPC_RANKS_PER_NODE
exec "$EPC_MPIRUN" 8 "$top_builddir/tests/mpi/test_topo_mpi" xml "$top_srcdir/tests/data/dgx8.xml"
