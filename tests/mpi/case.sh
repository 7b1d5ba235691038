#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# case.sh - runs one row of tests/mpi/cases.tab: the test named like its
# argument (tests/mpi/NAME.case, as `make check` passes it; or just NAME).
# It clears the EPC_* settings a test may inherit, sets the row's
# environment, skips (77) a row marked ofi in a build without libfabric,
# then launches the row's program on its ranks, or runs its script.
name=$(basename "$1" .case)
table=$top_srcdir/tests/mpi/cases.tab
row=$(awk -v n="$name" '$1 == n && !/^#/' "$table")
[ -n "$row" ] || { echo "case.sh: no row '$name' in $table"; exit 99; }
unset EPC_RANKS_PER_NODE EPC_TRANSPORT EPC_OFI_PROVIDER EPC_TIMEOUT_MS EPC_ALGO EPC_FAULT \
    EPC_CHUNK_KB EPC_PROGRESS EPC_PROGRESS_SLEEP_US EPC_TEST_NONBLOCKING
export FI_TCP_IFACE=lo FI_SOCKETS_IFACE=lo
# shellcheck disable=SC2086 # the row's words are split on purpose
set -- $row
ranks=$2 run=$3
shift 3
args=
for word in "$@"; do
    case $word in
    ofi) [ "$EPC_HAVE_OFI" = yes ] || { echo "SKIP: built --without-ofi"; exit 77; } ;;
    # only NAME=VALUE words with an upper-case NAME are settings: a
    # program's own --option=value stays an argument
    [A-Z]*=) unset "${word%=}" ;;
    [A-Z]*=*) export "$word" ;;
    *) args="$args $(echo "$word" | sed "s|%srcdir%|$top_srcdir|")" ;;
    esac
done
echo "case $name: $ranks ranks, $run$args"
# shellcheck disable=SC2086
if [ "$ranks" = - ]; then
    exec sh "$top_srcdir/$run" $args
fi
# shellcheck disable=SC2086
exec "$EPC_MPIRUN" "$ranks" "$top_builddir/$run" $args
