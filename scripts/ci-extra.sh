#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# scripts/ci-extra.sh - the checks CI runs after `./quickstart.sh check`
# (which has built and tested the normal configuration here):
#   1. valgrind memcheck on every unit test of that build (no error allowed)
#      and a 60-round soak with rank 0 of 4 under memcheck: no block
#      definitely lost outside Open MPI's own (tests/valgrind-mpi.supp)
#   2. a fresh clone built with --enable-sanitizers (ASan + UBSan) and its
#      whole `make check`
# Prints one "N passed, N failed" line per phase and exits non-zero on any
# failure.
set -uo pipefail
cd "$(dirname "$0")/.."
fail=0

say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

valgrind_units() {
    local pass=0 bad=0 t
    if ! command -v valgrind >/dev/null 2>&1; then
        echo "valgrind: not installed (Debian: apt-get install valgrind); skipped"
        return 0
    fi
    say "valgrind memcheck on the unit tests"
    for t in tests/unit/test_status tests/unit/test_config tests/unit/test_log tests/unit/test_hw \
        tests/unit/test_router tests/unit/test_layout tests/unit/test_hier_geom tests/unit/test_placement \
        tests/unit/test_placement_spill \
        tests/unit/test_kernels tests/unit/test_header_c; do
        if top_srcdir=$(pwd) ./libtool --mode=execute valgrind -q --error-exitcode=3 \
            --suppressions=tests/valgrind.supp \
            --leak-check=full --errors-for-leak-kinds=definite "$t" >"$t.valgrind.log" 2>&1; then
            pass=$((pass + 1))
        else
            bad=$((bad + 1))
            echo "---- valgrind: $t" >&2
            grep -v '^\[epcomm' "$t.valgrind.log" | tail -40 >&2
        fi
    done
    echo "valgrind: $pass passed, $bad failed"
    [ "$bad" -eq 0 ]
}

# The library's leaks, exactly: every context of a soak is created and
# destroyed, so a block of the library's left behind is lost for good.
# Leaks only (memory errors are the sanitizer phase's; Open MPI's own
# uninitialised bytes would drown them here).
valgrind_soak() {
    local log=tests/mpi/soak.valgrind.log
    command -v valgrind >/dev/null 2>&1 || return 0
    say "valgrind memcheck (leaks) on rank 0 of a 60-round soak"
    if EPC_TRANSPORT=mpi EPC_RANKS_PER_NODE=2 tests/mpi/mpirun.sh 4 sh -c \
        'if [ "$OMPI_COMM_WORLD_RANK" = 0 ]; then exec ./libtool --mode=execute valgrind -q \
            --undef-value-errors=no --num-callers=40 --leak-check=full \
            --errors-for-leak-kinds=definite --error-exitcode=3 \
            --suppressions=tests/valgrind.supp --suppressions=tests/valgrind-mpi.supp "$@"
        else exec "$@"; fi' sh tests/mpi/test_coll_mpi soak 60 4242 >"$log" 2>&1; then
        echo "valgrind soak: passed"
    else
        echo "---- valgrind: soak" >&2
        grep -v '^\[epcomm' "$log" | tail -60 >&2
        echo "valgrind soak: failed"
        return 1
    fi
}

sanitizer_build() {
    local dir out python
    # the Python the first build was configured with (quickstart picks the
    # one Debian's torch and mpi4py are installed for)
    python=$(sed -n 's/^PYTHON = //p' Makefile)
    dir=$(mktemp -d)
    out=$(mktemp)
    say "sanitizer build (--enable-sanitizers) in $dir"
    git clone -q . "$dir/src" && cd "$dir/src" && ./autogen.sh >/dev/null 2>&1 &&
        ./configure -q --enable-sanitizers --enable-werror ${python:+PYTHON="$python"} >/dev/null &&
        make -s -j"$(nproc)" >/dev/null || {
        echo "sanitizers: build failed"
        cd - >/dev/null
        return 1
    }
    make -j"$(nproc)" check >"$out" 2>&1
    local rc=$? pass failn
    grep -E '^(FAIL|ERROR|XPASS):' "$out" | sed 's/^[A-Z]*: //' | while read -r t; do
        echo "---- sanitizers: $t" >&2
        t=${t%.sh}
        grep -v "^\[epcomm" "${t%.case}.log" | tail -40 >&2
    done
    pass=$(sed -n 's/^# PASS: *//p' "$out")
    failn=$(sed -n 's/^# \(FAIL\|ERROR\|XPASS\): *//p' "$out" | awk '{s+=$1} END {print s+0}')
    echo "sanitizers: ${pass:-0} passed, $failn failed"
    cd - >/dev/null
    rm -rf "$dir" "$out"
    [ "$rc" -eq 0 ] && [ "$failn" -eq 0 ]
}

valgrind_units || fail=1
valgrind_soak || fail=1
sanitizer_build || fail=1
exit $fail
