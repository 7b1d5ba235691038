#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Soak: 600 dispatch/combine rounds on 8 ranks as 4 nodes of 2, each with a
# fresh context, random shape and routing, every value checked; the heap in
# use may grow by under 1 KiB per context (Open MPI's own), descriptors and
# shared-memory mappings not at all.  The seed is the time unless
# EPC_SOAK_SEED is set, and is printed for reruns; EPC_SOAK_ITERS changes
# the count.  (1000 rounds took 484 s beside the other tests of
# `make check -j2` here, and ran past the 600 s limit on a busier machine.)
# Under AddressSanitizer the heap is not checked (its
# quarantine keeps freed blocks), and a sanitized build (configure
# --enable-sanitizers) runs 400 rounds with a longer limit: about 4x slower
# per round beside the other tests.
unset EPC_TRANSPORT EPC_OFI_PROVIDER EPC_TIMEOUT_MS EPC_ALGO EPC_FAULT
export EPC_TRANSPORT=mpi EPC_RANKS_PER_NODE=2
iters=600
if [ "${EPC_SANITIZED:-no}" = yes ]; then
    iters=400
    : "${EPC_TEST_TIMEOUT:=1200}"
fi
: "${EPC_TEST_TIMEOUT:=600}"
export EPC_TEST_TIMEOUT
exec "$EPC_MPIRUN" 8 "$top_builddir/tests/mpi/test_coll_mpi" soak "${EPC_SOAK_ITERS:-$iters}" \
    "${EPC_SOAK_SEED:-$(date +%s)}"
