#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Shared body of the fault_* tests: 4 ranks as 2 nodes, rank 1 stalls for
# 8 s (or, with $3 = exit, kills itself) at phase $1 over transport $2 (mpi,
# or ofi over tcp on loopback); every other rank must fail within
# EPC_TIMEOUT_MS (1.5 s; 4 s sanitized) plus slack, naming the phase, and
# one must name rank 1.  Rank 0 ends the job with MPI_Abort(failures), so
# the verdict is read from its summary line.  The transport may come as
# EPC_TRANSPORT (as cases.tab gives it: case.sh keeps the word ofi, which
# marks a row that needs libfabric, for itself).
phase=$1 transport=${EPC_TRANSPORT:-mpi} action=stall=8000 recovery=
shift
for word in "$@"; do
    case $word in
    mpi | ofi) transport=$word ;;
    exit) action=exit ;;
    esac
done
# A killed rank ends an Open MPI job unless mpirun keeps it going.
[ "$action" = exit ] && recovery=--enable-recovery
unset EPC_TRANSPORT EPC_OFI_PROVIDER EPC_ALGO EPC_FAULT
if [ "$transport" = ofi ]; then
    [ "$EPC_HAVE_OFI" = yes ] || { echo "SKIP: built --without-ofi"; exit 77; }
    export EPC_TRANSPORT=ofi EPC_OFI_PROVIDER=tcp FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
fi
# A sanitized build creates its context several times slower: 1.5 s would
# let creation itself time out before the fault is reached.
timeout_ms=1500
[ "${EPC_SANITIZED:-no}" = yes ] && timeout_ms=4000
export EPC_RANKS_PER_NODE=2 EPC_TIMEOUT_MS=$timeout_ms EPC_FAULT="1:$phase:$action"
# shellcheck disable=SC2086
out=$("$EPC_MPIRUN" 4 $recovery "$top_builddir/tests/mpi/test_fault_mpi" "$phase" 2>&1)
echo "$out"
echo "$out" | grep -q "test_fault_mpi $phase: 3 surviving ranks reported an error in time, [1-9][0-9]* named rank 1, 0 failed checks" || {
    echo "FAIL: no clean summary from rank 0"; exit 1; }
# mpirun's exit status is rank 0's MPI_Abort either way: the job must
# have ended by itself, not by mpirun.sh's outer --timeout
if echo "$out" | grep -q "time limit for job execution has been reached"; then
    echo "FAIL: the job did not end by itself; mpirun's --timeout ended it"
    exit 1
fi
