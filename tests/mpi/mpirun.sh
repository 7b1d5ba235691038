#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Launches an MPI test: tests/mpi/mpirun.sh NP PROGRAM [ARGS...]
# mpirun's --timeout turns a deadlock into a failure instead of a hung
# `make check`; oversubscription lets 8 ranks run on 2 cores.
set -e
np=$1
shift
: "${MPIEXEC:=mpirun}"
: "${EPC_TEST_TIMEOUT:=120}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Ranks spin while waiting; with more ranks than cores they must yield.
export OMPI_MCA_mpi_yield_when_idle=1
exec "$MPIEXEC" -np "$np" --oversubscribe --bind-to none --timeout "$EPC_TEST_TIMEOUT" "$@"
