#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# A rank stalls inside a nonblocking combine (mpi transport) while the
# others' progress threads advance theirs (the callers only test): they
# fail in time, see fault_run.sh.
export EPC_TEST_NONBLOCKING=1 EPC_PROGRESS=thread
exec sh "$top_srcdir/tests/mpi/fault_run.sh" combine mpi
