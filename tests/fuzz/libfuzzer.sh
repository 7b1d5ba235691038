#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Coverage-guided fuzzing under libFuzzer with ASan and UBSan, for
# FUZZ_SECONDS (default 5): of route and layout, with FUZZ_TARGET=config
# of the EPC_* parser, with FUZZ_TARGET=wire of the checks of peers' messages
# (libfuzzer_config.sh, libfuzzer_wire.sh).  The seed corpus is copied so the
# source tree stays untouched; a crash fails the test and its input is
# printed (base64) in the log.
target=${FUZZ_TARGET:-route}
corpus=seeds_$target
bin="$top_builddir/tests/fuzz/fuzz_${target}_libfuzzer"
[ -x "$bin" ] || { echo "SKIP: $bin not built (no clang with libFuzzer)"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$top_srcdir/tests/fuzz/$corpus"/* "$work/"
cd "$work" || exit 1
"$bin" -max_total_time="${FUZZ_SECONDS:-5}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" "$work" >"$work/fuzz.log" 2>&1
rc=$?
grep -v '^\[epcomm' "$work/fuzz.log" | tail -n 25
# libFuzzer's own exit codes include 77, which automake would read as a skip.
[ "$rc" -eq 0 ] || { echo "FAIL: libFuzzer exited $rc"; exit 1; }
