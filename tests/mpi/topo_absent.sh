#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# One rank never calls epc_topo_create: the others return EPC_ERR_TIMEOUT
# within twice EPC_TIMEOUT_MS instead of hanging (the job then aborts).
unset EPC_RANKS_PER_NODE
export EPC_TIMEOUT_MS=1000
out=$("$EPC_MPIRUN" 3 "$top_builddir/tests/mpi/test_topo_mpi" absent 2>&1)
rc=$?
echo "$out" | grep -v '^\[epcomm'
echo "$out" | grep -q "2 ranks timed out cleanly, 0 failed checks" && [ "$rc" -eq 0 ]
