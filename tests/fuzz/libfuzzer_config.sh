#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# libFuzzer over the EPC_* parser and the EPC_FAULT grammar (see libfuzzer.sh).
FUZZ_TARGET=config exec sh "$top_srcdir/tests/fuzz/libfuzzer.sh"
