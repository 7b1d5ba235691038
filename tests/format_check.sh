#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Every C/C++ source of the tree is as clang-format (with the committed
# .clang-format) would write it; the files that are not are named, with the
# command that fixes them.
command -v clang-format >/dev/null 2>&1 || { echo "SKIP: clang-format not installed"; exit 77; }
cd "$top_srcdir" || exit 1
bad=
for f in $(find include common topology routing comm collectives examples tests \
    \( -name '*.c' -o -name '*.h' -o -name '*.cpp' \) -type f | sort); do
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad="$bad $f"
done
if [ -n "$bad" ]; then
    echo "FAIL: not formatted:$bad"
    echo "fix: clang-format -i$bad"
    exit 1
fi
echo "all sources formatted"
