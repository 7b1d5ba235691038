#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Every row of tests/mpi/cases.tab is a test make check runs (its name is in
# Makefile.am's MPI_CASES), and every name there has a row: a row added to
# the table alone would otherwise never run.
table=$top_srcdir/tests/mpi/cases.tab
rows=$(awk '!/^#/ && NF { print $1 }' "$table" | sort)
listed=$(echo "$EPC_MPI_CASES" | tr ' ' '\n' | sed 's|.*/||; s|\.case$||' | awk 'NF' | sort)
[ -n "$listed" ] || { echo "FAIL: EPC_MPI_CASES is empty (run through make check)"; exit 1; }
dups=$(awk '!/^#/ && NF { print $1 }' "$table" | sort | uniq -d)
[ -z "$dups" ] || { echo "FAIL: rows named twice: $dups"; exit 1; }
missing=$(echo "$rows" | grep -vxF "$listed")
unknown=$(echo "$listed" | grep -vxF "$rows")
[ -z "$missing" ] || { echo "FAIL: rows not in MPI_CASES: $missing"; exit 1; }
[ -z "$unknown" ] || { echo "FAIL: MPI_CASES without a row: $unknown"; exit 1; }
echo "cases.tab: $(echo "$rows" | wc -l) rows, each listed in MPI_CASES"
