#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Dispatch/combine on 4 emulated hosts, ofi with the tcp provider (see cluster_run.sh).
exec sh "$top_srcdir/tests/cluster/cluster_run.sh" ofi
