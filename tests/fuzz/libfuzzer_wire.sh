#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# libFuzzer over the checks of peers' count and token records (see libfuzzer.sh).
FUZZ_TARGET=wire exec sh "$top_srcdir/tests/fuzz/libfuzzer.sh"
