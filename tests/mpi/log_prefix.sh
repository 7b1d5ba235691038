#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Every one of 4 ranks checks that its log lines carry its host, pid and rank.
exec "$EPC_MPIRUN" 4 "$top_builddir/tests/mpi/test_log_mpi"
