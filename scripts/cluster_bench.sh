#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
#
# cluster_bench.sh - hier against flat on the emulated cluster, with the
# links rate-limited: the measurement behind docs/PERFORMANCE.md's
# "Emulated cluster" section.
#
#   scripts/cluster_bench.sh [-o DIR] [-t TOKENS] [-n ITERS] [-H HIDDEN]
#                            [--rates "2gbit 10gbit none"] [--limits "2 0"]
#
# For each rate (a tc rate, or none for unshaped links), 4 hosts x 2 ranks come up (scripts/cluster.sh); for each
# node limit M (0: none) epc_bench runs hier and flat in one run, every
# iteration checked.  DIR (default ./cluster-bench) gets each run's table
# (.txt) and CSV, ratios.md (flat/hier time ratio against the inter-node
# byte ratio per op) and, with gnuplot, ratios.png.  Run from the build
# directory (it uses examples/epc_bench there).
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=./cluster-bench tokens=1024 iters=5 hidden=7168 rates="2gbit 10gbit none" limits="2 0"
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || { echo "cluster_bench.sh: option $1 needs a value" >&2; exit 2; }
    case $1 in
        -o) out=$2 ;;
        -t) tokens=$2 ;;
        -n) iters=$2 ;;
        -H) hidden=$2 ;;
        --rates) rates=$2 ;;
        --limits) limits=$2 ;;
        *) echo "cluster_bench.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift 2
done
bench=$(pwd)/examples/epc_bench
[ -x "$bench" ] || { echo "cluster_bench.sh: $bench not found: run from the build directory" >&2; exit 2; }
sh "$here/cluster.sh" check || exit $?
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
state=$(mktemp -d) || exit 1
export EPC_CLUSTER_STATE="$state/cluster"
trap 'sh "$here/cluster.sh" down; rm -rf "$state"' EXIT INT TERM
rc=0
printf '| link | node limit | op | hier us | flat us | time ratio | inter-node bytes hier / flat per rank | byte ratio | time / byte ratio |\n' >"$out/ratios.md"
printf '|---|---|---|---|---|---|---|---|---|\n' >>"$out/ratios.md"
: >"$out/ratios.dat"
for rate in $rates; do
    if [ "$rate" = none ]; then
        sh "$here/cluster.sh" up 4 --slots 2 || exit 1
    else
        sh "$here/cluster.sh" up 4 --slots 2 --rate "$rate" || exit 1
    fi
    for m in $limits; do
        name="bench_${rate}_m$m"
        echo "== $rate, node limit ${m} (0: none)"
        sh "$here/cluster.sh" run -- "$bench" -t "$tokens" -H "$hidden" -m "$m" -n "$iters" -w 1 -c \
            --csv "$out/$name.csv" >"$out/$name.txt" 2>&1 || rc=1
        grep -v '^epc_bench:' "$out/$name.txt"
        # CSV: algo,op,tokens,bytes,avg_us,min,max,algbw,busbw,inter,intra,model,wrong
        awk -F, -v rate="$rate" -v m="$m" -v md="$out/ratios.md" -v dat="$out/ratios.dat" '
            NR > 1 && $1 != "-" { t[$1 "," $2] = $5; b[$1 "," $2] = $10 }
            END {
                split("dispatch combine", ops, " ")
                for (i = 1; i <= 2; i++) {
                    o = ops[i]; h = "hier," o; f = "flat," o
                    if (!(h in t) || !(f in t) || t[h] <= 0 || b[h] <= 0) continue
                    tr = t[f] / t[h]; br = b[f] / b[h]
                    printf "| %s | %s | %s | %.0f | %.0f | %.2fx | %.0f / %.0f | %.2fx | %.0f%% |\n",
                        rate, (m == 0 ? "none" : "M = " m), o, t[h], t[f], tr, b[h], b[f], br,
                        100 * tr / br >> md
                    printf "\"%s %s\" %s %.4f %.4f\n", rate, (m == 0 ? "all" : "M=" m), o, tr, br >> dat
                }
            }' "$out/$name.csv"
    done
    sh "$here/cluster.sh" down
done
cat "$out/ratios.md"
if command -v gnuplot >/dev/null 2>&1; then
    for op in dispatch combine; do grep " $op " "$out/ratios.dat" >"$out/ratios_$op.dat"; done
    gnuplot <<EOF || rc=1
set terminal pngcairo size 900,520 font 'sans,11'
set output '$out/ratios.png'
set title 'Emulated cluster, 4 hosts x 2 ranks: flat / hier (higher = hier faster)'
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set ylabel 'flat / hier'
set yrange [0:2.6]
set grid ytics
set key top center horizontal maxrows 2
plot '$out/ratios_dispatch.dat' using 3:xtic(1) title 'dispatch time ratio', \
     '' using 4 title 'dispatch inter-node byte ratio', \
     '$out/ratios_combine.dat' using 3 title 'combine time ratio', \
     '' using 4 title 'combine inter-node byte ratio'
EOF
    echo "plot: $out/ratios.png"
fi
exit $rc
