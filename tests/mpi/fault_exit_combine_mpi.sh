#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# A rank kills itself (SIGKILL) inside combine (mpi transport): the others fail in time, see fault_run.sh.
exec sh "$top_srcdir/tests/mpi/fault_run.sh" combine mpi exit
