#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# The peer-message harness over its seed corpus and 20000 pseudo-random inputs.
exec "$top_builddir/tests/fuzz/fuzz_wire_check" -n 20000 "$top_srcdir/tests/fuzz/seeds_wire"
