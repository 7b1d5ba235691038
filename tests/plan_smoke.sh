#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# epc_plan end to end: the JSON table for a small job must show the node limit
# holding (nodes/token <= M), the hierarchical path never moving more
# inter-node bytes than the flat one, and bad options failing with a message.
set -e
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 needed to parse JSON"; exit 77; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$top_builddir/examples/epc_plan" -e 64 -k 6 -r 16 --ranks-per-node 4 --profile h800 \
    --skew 0.5 -t 512 --json >"$out"
python3 - "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rows = d["rows"]
assert [r["m"] for r in rows] == [0, 1, 2, 3, 4], rows
assert d["recommended_m"] == 2, d  # 6/2 = 3 <= 160/50
for r in rows:
    if r["m"]:
        assert r["nodes_per_token"] <= r["m"] + 1e-9, r
    assert r["hier_inter_bytes_per_token"] <= r["flat_inter_bytes_per_token"] + 1e-6, r
    assert r["hier_dispatch_us"] > 0 and r["flat_dispatch_us"] > 0, r
assert abs(rows[1]["nodes_per_token"] - 1.0) < 1e-9
print("epc_plan --json: node limit holds, hierarchical <= flat inter-node bytes")
PY
if "$top_builddir/examples/epc_plan" -e 60 -r 16 >/dev/null 2>"$out"; then
    echo "FAIL: -e 60 -r 16 accepted"; exit 1
fi
grep -q "ranks must divide" "$out" || { cat "$out"; exit 1; }
if "$top_builddir/examples/epc_plan" --profile a100 >/dev/null 2>"$out"; then
    echo "FAIL: --profile a100 accepted"; exit 1
fi
grep -q "a100" "$out" || { cat "$out"; exit 1; }
echo "bad options rejected with messages"
# --placement: no placement, EPLB and epcomm's planner from the routed
# loads; the planner never above EPLB, both below none, every rank listed.
"$top_builddir/examples/epc_plan" -e 64 -k 6 -r 16 --ranks-per-node 4 -m 2 --skew 1 -t 512 \
    --groups 8 --placement 16 >"$out"
python3 - "$out" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
rows = {l.split()[0]: l.split() for l in lines if l.split() and l.split()[0] in
        ("none", "eplb", "balanced")}
assert set(rows) == {"none", "eplb", "balanced"}, lines[:8]
exp = {k: float(v[3]) for k, v in rows.items()}
assert exp["balanced"] <= exp["eplb"] + 1e-9 < exp["none"], exp
bound = float([l for l in lines if "can go below" in l][0].split()[-1])
assert 1.0 <= bound <= exp["balanced"] + 1e-3, (bound, exp)
assert int(rows["eplb"][1]) == int(rows["balanced"][1]) == 80 and int(rows["none"][1]) == 64
# nodes per token: the contiguous placement keeps the router's node limit 2;
# groups of 8 split the router's blocks of 16 over nodes (at most all 4)
assert 1.0 <= float(rows["none"][6]) <= 2.0, rows
assert all(1.0 <= float(v[6]) <= 4.0 for v in rows.values()), rows
assert sum(1 for l in lines if l.startswith("rank ")) == 16
assert sum(1 for l in lines if l.startswith("node ")) == 4
print("epc_plan --placement: balanced %.3f <= eplb %.3f < none %.3f" % (
    exp["balanced"], exp["eplb"], exp["none"]))
PY
# --spill --limited (one group per node, node limit 2): spills planned and
# named, the spill plan's measured busiest rank below EPLB's and below the
# bound of plans without spills, and still at most 2 nodes per token.
"$top_builddir/examples/epc_plan" -e 64 -k 6 -r 16 --ranks-per-node 4 -m 2 --skew 1 -t 512 \
    --placement 16 --spill --limited >"$out"
python3 - "$out" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
assert "replicas limited, spill replicas planned" in lines[0], lines[0]
rows = {l.split()[0]: l.split() for l in lines if l.split() and l.split()[0] in
        ("none", "eplb", "balanced")}
meas = {k: float(v[4]) for k, v in rows.items()}
bound = float([l for l in lines if "can go below" in l][0].split("below ")[1].split()[0])
assert meas["balanced"] < min(meas["eplb"], bound), (meas, bound)
assert all(1.0 <= float(v[6]) <= 2.0 for v in rows.values()), rows
print("epc_plan --placement --spill --limited: %.3f < eplb %.3f, bound %.3f" % (
    meas["balanced"], meas["eplb"], bound))
PY
if "$top_builddir/examples/epc_plan" -e 64 -r 16 --ranks-per-node 4 --placement 3 >/dev/null \
    2>"$out"; then
    echo "FAIL: --placement 3 on 16 ranks accepted"; exit 1
fi
grep -q "multiple of the ranks" "$out" || { cat "$out"; exit 1; }
echo "epc_plan --placement checked"
