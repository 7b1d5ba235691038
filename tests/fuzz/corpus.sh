#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# The fuzz harness over the seed corpus and 20000 pseudo-random inputs.
exec "$top_builddir/tests/fuzz/fuzz_route_check" -n 20000 "$top_srcdir/tests/fuzz/seeds_route"
