#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# The whole job ends.  For each phase in which a rank can stop (create, shm,
# grow, dispatch, combine, destroy) and each way it stops (stalls 60 s, or
# SIGKILL), rank 1 of `epc_bench` (4 ranks as 2 nodes, EPC_TIMEOUT_MS=1500,
# 4000 sanitized) fails there, over transport $1 (mpi, or ofi over tcp on
# loopback).  Every row must end with mpirun itself returning non-zero
# within EPC_TIMEOUT_MS + 5 s of the fault (timed from the fault's own log
# line), not because mpirun's --timeout fired.  As root, each job runs with
# a private /dev/shm, which must be empty afterwards: nothing of the job
# outlives it.
# A stall is ended by the survivors (a library timeout, then epc_bench's
# MPI_Abort); a kill by mpirun itself, as Open MPI ends a job whose process
# died (the survivors' side of a kill: fault_exit_*.sh).
transport=${1:-${EPC_TRANSPORT:-mpi}} # case.sh keeps the word ofi: EPC_TRANSPORT then
unset EPC_TRANSPORT EPC_OFI_PROVIDER EPC_ALGO EPC_FAULT
if [ "$transport" = ofi ]; then
    [ "$EPC_HAVE_OFI" = yes ] || { echo "SKIP: built --without-ofi"; exit 77; }
    export EPC_TRANSPORT=ofi EPC_OFI_PROVIDER=tcp FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
fi
# A sanitized build creates its context several times slower: 1.5 s would
# let creation itself time out before the fault is reached.
timeout_ms=1500
[ "${EPC_SANITIZED:-no}" = yes ] && timeout_ms=4000
export EPC_RANKS_PER_NODE=2 EPC_TIMEOUT_MS=$timeout_ms EPC_TEST_TIMEOUT=120
limit=$(awk -v t="$timeout_ms" 'BEGIN { print t / 1000 + 5 }') # EPC_TIMEOUT_MS + 5 s
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# A private /dev/shm where the kernel allows one (root, mount namespaces).
private=
if unshare --mount --propagation private sh -c 'mount -t tmpfs none /dev/shm' 2>/dev/null; then
    private=yes
else
    echo "note: no private /dev/shm here (needs root and mount namespaces): leftovers not checked"
fi
cat >"$dir/inside.sh" <<'IN'
mount -t tmpfs -o size=1g,mode=1777 epc-test /dev/shm || exit 99
"$@"
rc=$?
ls -A /dev/shm >"$EPC_LEFT"
exit $rc
IN

fails=0
printf '%-9s %-12s %6s %12s  %s\n' phase action rc "s to end" verdict
for phase in create shm grow dispatch combine destroy; do
    for action in stall=60000 exit; do
        out=$dir/out left=$dir/left
        : >"$left"
        set -- "$EPC_MPIRUN" 4 "$top_builddir/examples/epc_bench" -t 256 -H 512 -e 16 -k 2 -n 2 -w 1
        [ -n "$private" ] && set -- unshare --mount --propagation private sh "$dir/inside.sh" "$@"
        EPC_FAULT="1:$phase:$action" EPC_LEFT=$left "$@" >"$out" 2>&1
        rc=$?
        end=$(date +%s.%N)
        at=$(sed -n 's/.*EPC_FAULT: .* (at \([0-9.]*\)).*/\1/p' "$out" | head -n 1)
        verdict=ok
        if [ -z "$at" ]; then
            verdict="FAIL: the fault point was never reached"
        elif [ "$rc" -eq 0 ]; then
            verdict="FAIL: mpirun returned 0"
        elif grep -q "time limit for job execution\|timeout .* reached\|has exceeded the timeout" "$out"; then
            verdict="FAIL: mpirun --timeout ended the job"
        elif [ -s "$left" ]; then
            verdict="FAIL: left in /dev/shm: $(tr '\n' ' ' <"$left")"
        fi
        secs=$(awk -v a="$at" -v b="$end" 'BEGIN { if (a == "") print "-"; else printf "%.2f", b - a }')
        if [ "$verdict" = ok ] && awk -v s="$secs" -v l="$limit" 'BEGIN { exit !(s > l) }'; then
            verdict="FAIL: over $limit s"
        fi
        printf '%-9s %-12s %6s %12s  %s\n' "$phase" "$action" "$rc" "$secs" "$verdict"
        if [ "$verdict" != ok ]; then
            fails=$((fails + 1))
            sed 's/^/    | /' "$out" | tail -n 25
        fi
    done
done
echo "fault_job $transport: $fails rows failed"
[ "$fails" -eq 0 ]
