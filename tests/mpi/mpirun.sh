#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Launches an MPI test: tests/mpi/mpirun.sh NP PROGRAM [ARGS...]
# mpirun's --timeout turns a deadlock into a failure instead of a hung
# `make check`; oversubscription lets 8 ranks run on 2 cores.
set -e
np=$1
shift
: "${MPIEXEC:=mpirun}"
# A sanitized build runs 3-5x slower, beside the other tests of make -j.
if [ "${EPC_SANITIZED:-no}" = yes ]; then
    : "${EPC_TEST_TIMEOUT:=360}"
else
    : "${EPC_TEST_TIMEOUT:=120}"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Ranks spin while waiting; with more ranks than cores they must yield.
export OMPI_MCA_mpi_yield_when_idle=1
# In a sanitizer build: LeakSanitizer cannot attribute what Open MPI's
# unloaded components keep until exit (their frames become "unknown
# module"), so MPI programs run without leak detection; memory errors and
# undefined behaviour are still fatal.  The unit tests keep leak detection,
# and comm_leak_* measure the library's heap directly.
export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
exec "$MPIEXEC" -np "$np" --oversubscribe --bind-to none --timeout "$EPC_TEST_TIMEOUT" "$@"
