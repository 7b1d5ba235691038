#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# The tool's JSON: EPC_RANKS_PER_NODE=4 at 8 ranks is 2 nodes of 4 ranks with
# local ranks 0-3 in order; and an invalid split exits non-zero with a
# message from every rank.
set -e
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 needed to parse JSON"; exit 77; }
out=$(mktemp)
trap 'rm -f "$out" "$out.err"' EXIT
EPC_RANKS_PER_NODE=4 "$EPC_MPIRUN" 8 "$top_builddir/examples/epc_topo" --json >"$out"
python3 - "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["num_ranks"] == 8 and d["num_nodes"] == 2 and d["ranks_per_node"] == 4, d
assert len(d["nodes"]) == 2 and all(n["num_ranks"] == 4 for n in d["nodes"]), d["nodes"]
for r in d["ranks"]:
    assert r["node"] == r["rank"] // 4 and r["local_rank"] == r["rank"] % 4, r
    assert r["host"] and "nic" in r and "gpu" in r, r
print("epc_topo --json: 2 nodes of 4 ranks, local ranks correct")
PY
if EPC_RANKS_PER_NODE=3 "$EPC_MPIRUN" 8 "$top_builddir/examples/epc_topo" >"$out" 2>"$out.err"; then
    echo "FAIL: invalid split exited 0"; exit 1
fi
n=$(grep -c '^epc_topo: rank [0-9]*: invalid argument: EPC_RANKS_PER_NODE=3' "$out.err" || true)
[ "$n" -eq 8 ] || { cat "$out.err"; echo "FAIL: $n of 8 ranks printed the error"; exit 1; }
echo "invalid split: all 8 ranks exited with the error"
