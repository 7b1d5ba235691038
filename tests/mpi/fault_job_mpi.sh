#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Every phase x stall/kill over the mpi transport: the whole job ends in time, see fault_job.sh.
exec sh "$top_srcdir/tests/mpi/fault_job.sh" mpi
