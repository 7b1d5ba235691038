#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# params.log_level = EPC_LOG_OFF silences the library (no "[epcomm" line on
# any rank) while statuses and texts still report every failure, whatever
# EPC_LOG_LEVEL says; EPC_LOG_LEVEL=off alone does the same.  The same
# failures at the default level do print, so the check can fail.
unset EPC_TRANSPORT EPC_OFI_PROVIDER EPC_ALGO EPC_FAULT EPC_LOG_LEVEL
export EPC_RANKS_PER_NODE=2
run() { # LOG_LEVEL MODE EXPECT_LINES
    out=$(EPC_LOG_LEVEL=$1 "$EPC_MPIRUN" 4 "$top_builddir/tests/mpi/test_api_mpi" "$2" 2>&1)
    rc=$?
    echo "$out"
    [ "$rc" -eq 0 ] || { echo "FAIL: EPC_LOG_LEVEL=$1 $2: exit $rc"; exit 1; }
    n=$(echo "$out" | grep -c '^\[epcomm')
    if [ "$3" = none ] && [ "$n" -ne 0 ]; then
        echo "FAIL: EPC_LOG_LEVEL=$1 $2: the library printed $n lines"; exit 1
    elif [ "$3" = some ] && [ "$n" -eq 0 ]; then
        echo "FAIL: EPC_LOG_LEVEL=$1 $2: nothing printed at the default level"; exit 1
    fi
    echo "EPC_LOG_LEVEL=$1 $2: $n library lines"
}
run "" quiet none
run debug quiet none
run off loud none
run "" loud some
