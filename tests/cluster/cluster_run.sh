#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# tests/cluster/cluster_run.sh TRANSPORT: 4 emulated hosts x 2 ranks
# (scripts/cluster.sh), no virtual nodes.  The library must find the 4
# nodes by itself; dispatch/combine are checked value by value
# (test_coll_mpi data); the hosts' link byte counters must show that only
# inter-node traffic crossed the links (test_coll_mpi links); afterwards no
# namespace, interface, hosts file or process of the cluster may be left,
# whether the checks passed or not.  Skips (77) where namespaces are not
# available.
transport=$1
cluster="$top_srcdir/scripts/cluster.sh"
sh "$cluster" check || exit $?
if [ "$transport" = ofi ] && [ "$EPC_HAVE_OFI" != yes ]; then
    echo "SKIP: built --without-ofi"; exit 77
fi
state=$(mktemp -d) || exit 1
export EPC_CLUSTER_STATE="$state/cluster"
unset EPC_RANKS_PER_NODE EPC_TRANSPORT EPC_OFI_PROVIDER EPC_TIMEOUT_MS EPC_ALGO
export EPC_TRANSPORT="$transport" EPC_TEST_TIMEOUT=300
[ "$transport" = ofi ] && export EPC_OFI_PROVIDER=tcp
prefix=
cleanup() {
    sh "$cluster" down
    left=$(ip netns list | awk '{print $1}' | grep "^$prefix-")
    [ -z "$prefix" ] || [ -z "$left" ] || { echo "FAIL: namespaces left: $left"; rc=1; }
    [ -z "$prefix" ] || ! ls -d /etc/netns/"$prefix"-* >/dev/null 2>&1 || { echo "FAIL: /etc/netns/$prefix-* left"; rc=1; }
    rm -rf "$state"
}
rc=0
sh "$cluster" up 4 --slots 2 || { rm -rf "$state"; exit 1; }
prefix=$(cat "$EPC_CLUSTER_STATE/prefix")
trap 'cleanup; exit 1' INT TERM
sh "$cluster" run -- "$top_builddir/tests/mpi/test_coll_mpi" data || rc=1
sh "$cluster" run -- "$top_builddir/tests/mpi/test_coll_mpi" links epcv0 4 || rc=1
sh "$cluster" counters
cleanup
[ $rc = 0 ] && echo "PASS: 4 hosts x 2 ranks over $transport, cluster $prefix removed"
exit $rc
