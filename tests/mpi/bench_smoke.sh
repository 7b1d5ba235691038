#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# epc_bench end to end with checking: 4 ranks as 2 virtual nodes, both
# algorithms, messages large enough that hier pipelines them in several
# chunks; it exits non-zero on any wrong value or byte-count mismatch.
unset EPC_TRANSPORT EPC_OFI_PROVIDER EPC_ALGO
export EPC_RANKS_PER_NODE=2
exec "$EPC_MPIRUN" 4 "$top_builddir/examples/epc_bench" -t 1024 -H 2048 -e 32 -k 4 -n 1 -w 0 -c
