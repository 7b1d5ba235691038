#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# The README's "Use from PyTorch" example is examples/readme_example.py,
# word for word, and it runs under mpirun on 4 ranks (2 virtual nodes).
set -e
block=$(mktemp)
trap 'rm -f "$block"' EXIT
awk '/^## Use from PyTorch/ {s = 1} s && /^```python/ {p = 1; next} p && /^```/ {exit} p' \
    "$top_srcdir/README.md" >"$block"
if ! diff -u "$top_srcdir/examples/readme_example.py" "$block"; then
    echo "FAIL: README.md's PyTorch example differs from examples/readme_example.py"
    exit 1
fi
lines=$(wc -l <"$block")
echo "README example: $lines lines"
EPC_RANKS_PER_NODE=2 exec sh "$top_srcdir/tests/python/run.sh" 4 examples/readme_example.py
