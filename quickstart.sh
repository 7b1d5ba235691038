#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# quickstart.sh - set up, build and run epcomm on a fresh Debian machine.
#
#   ./quickstart.sh          install what is missing, build, run the main job
#   ./quickstart.sh check    install what is missing, build, run `make check`;
#                            the last line is "N passed, N failed, N skipped"
#
# Idempotent: installed packages and an up-to-date build are skipped.
# EPC_CONFIGURE_FLAGS adds configure options (CI uses --enable-werror).
# EPC_QUICKSTART_NP sets the rank count of the main job (default 4).
set -euo pipefail
cd "$(dirname "$0")"

mode=${1:-run}
case "$mode" in
run | check) ;;
-h | --help)
    sed -n '3,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "quickstart.sh: unknown mode '$mode' (expected: check, or nothing)" >&2
    exit 2
    ;;
esac

PACKAGES=(openmpi-bin libopenmpi-dev hwloc libhwloc-dev libfabric-dev libfabric-bin
    libcmocka-dev autoconf automake libtool pkg-config make gcc g++
    clang clang-format libclang-rt-14-dev python3 gnuplot-nox valgrind
    python3-torch python3-mpi4py python3-numpy python3-venv python3-pip python3-setuptools)

say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
die() {
    printf 'quickstart.sh: %s\n' "$*" >&2
    exit 1
}

install_packages() {
    local missing=() p
    if ! command -v dpkg-query >/dev/null 2>&1; then
        say "not a Debian system: install the equivalents of: ${PACKAGES[*]}"
        return 0
    fi
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "packages: all present"
        return 0
    fi
    local cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "quickstart.sh: missing packages: ${missing[*]}" >&2
        echo "Install them as root, then run this script again:" >&2
        echo "  sudo sh -c '$cmd'" >&2
        exit 1
    fi
    say "installing: ${missing[*]}"
    apt-get update -q >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
        >/dev/null || die "apt-get install failed: $cmd"
}

# Regenerates and reconfigures only when needed, then builds incrementally.
build() {
    local flags=${EPC_CONFIGURE_FLAGS:-}
    # The Python package is tested with the Python Debian's python3-torch
    # and python3-mpi4py were installed for, whatever `python3` is on PATH.
    if [ -z "${PYTHON:-}" ] && [ -x /usr/bin/python3 ] && command -v dpkg-query >/dev/null 2>&1; then
        flags="$flags PYTHON=/usr/bin/python3"
    fi
    if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
        say "autogen"
        ./autogen.sh >/dev/null 2>&1 || ./autogen.sh || die "autogen.sh failed"
    fi
    if [ ! -f config.status ] || [ ! -f Makefile ] || [ configure -nt config.status ] ||
        [ ! -f .quickstart-configure ] ||
        [ "$(cat .quickstart-configure 2>/dev/null)" != "$flags" ]; then
        say "configure $flags"
        # shellcheck disable=SC2086
        ./configure -q $flags || die "configure failed (see config.log)"
        printf '%s' "$flags" >.quickstart-configure
    fi
    say "make"
    make -s -j"$(nproc)" >/dev/null || make -j1 || die "build failed"
}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_mpi_yield_when_idle=1

main_job() {
    local np=${EPC_QUICKSTART_NP:-4}
    say "examples/epc_info"
    ./examples/epc_info
    say "mpirun -np $np examples/epc_topo (virtual nodes of 2 ranks: EPC_RANKS_PER_NODE=2)"
    EPC_RANKS_PER_NODE=${EPC_RANKS_PER_NODE:-2} \
        tests/mpi/mpirun.sh "$np" examples/epc_topo || die "epc_topo failed"
    # DeepSeek-V3-shaped routing (top-8, node limit, hidden 7168) scaled to
    # this machine: 4 ranks as 2 virtual nodes, 64 experts, up to 512 tokens.
    say "mpirun -np $np examples/epc_bench --sweep -t 512 -e 64 -k 8 -c --plot epc_bench.png (2 virtual nodes)"
    EPC_RANKS_PER_NODE=${EPC_RANKS_PER_NODE:-2} \
        tests/mpi/mpirun.sh "$np" examples/epc_bench --sweep -t 512 -H 7168 -e 64 -k 8 -n 3 -c \
        --plot epc_bench.png --csv epc_bench.csv || die "epc_bench failed"
    say "plot: $(pwd)/epc_bench.png, table: $(pwd)/epc_bench.csv"
    if grep -q '^EPC_HAVE_PYTHON = yes' Makefile; then
        say "mpirun -np $np python3 examples/readme_example.py (the README's PyTorch example)"
        PYTHONPATH=$(pwd)/python EPCOMM_LIBRARY=$(pwd)/.libs/libepcomm.so OMP_NUM_THREADS=1 \
            tests/mpi/mpirun.sh "$np" "$(sed -n 's/^PYTHON = //p' Makefile)" \
            examples/readme_example.py || die "the PyTorch example failed"
    fi
}

# Runs make check; prints failing logs and the one-line summary.
check() {
    local out rc=0 pass fail skip err
    out=$(mktemp)
    say "make check"
    make -j"$(nproc)" check 2>&1 | tee "$out" | grep -E '^(PASS|FAIL|XPASS|XFAIL|SKIP|ERROR):' || true
    rc=${PIPESTATUS[0]}
    pass=$(sed -n 's/^# PASS: *//p' "$out" | awk '{s+=$1} END {print s+0}')
    fail=$(sed -n 's/^# \(FAIL\|XPASS\|ERROR\): *//p' "$out" | awk '{s+=$1} END {print s+0}')
    skip=$(sed -n 's/^# SKIP: *//p' "$out" | awk '{s+=$1} END {print s+0}')
    if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
        tail -n 40 "$out" >&2
        fail=1 # the build or the harness failed before any test result
    fi
    for log in $(grep -E '^(FAIL|ERROR|XPASS):' "$out" | sed 's/^[A-Z]*: //'); do
        log=${log%.sh} # automake names a script's log without its .sh (X.case: X.log)
        log=${log%.case}.log
        echo "---- $log" >&2
        tail -n 60 "$log" >&2 || true
    done
    rm -f "$out"
    echo "$pass passed, $fail failed, $skip skipped"
    [ "$rc" -eq 0 ] && [ "$fail" -eq 0 ]
}

install_packages
build
if [ "$mode" = check ]; then
    check
else
    main_job
fi
