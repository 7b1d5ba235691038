#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# A rank stalls inside a nonblocking dispatch (mpi transport) while the others
# drive theirs with epc_test: they fail in time, see fault_run.sh.
export EPC_TEST_NONBLOCKING=1
exec sh "$top_srcdir/tests/mpi/fault_run.sh" dispatch mpi
