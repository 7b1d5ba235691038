#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
#
# cluster.sh - an emulated cluster on one Linux machine: N "hosts", each a
# network namespace with its own hostname, joined by veth pairs to a bridge
# in a namespace of the script's own, optionally rate-limited (tbf on both
# ends of every link).  Real MPI and libfabric traffic crosses the links.
#
#   scripts/cluster.sh up N [--rate R] [--slots S]   create h0..h(N-1)
#   scripts/cluster.sh run [--np P] [--timeout S] -- CMD [ARGS...]
#                                                    mpirun CMD across them
#   scripts/cluster.sh down                          remove everything
#   scripts/cluster.sh with N [--rate R] [--slots S] [--np P] -- CMD...
#                                                    up, run, down in one
#   scripts/cluster.sh status | check | counters
#
# R is a tc rate (2gbit, 10gbit, 500mbit); none by default.  Every name the
# script creates carries a per-run prefix (epcXXXXXX), kept in a state
# directory (--state DIR, or $EPC_CLUSTER_STATE, default ./.epc-cluster), so
# two clusters with different state directories never collide.  Nothing is
# created in the default namespace: the hosts' addresses (10.77.0.0/24) exist
# only inside the namespaces, with no route out.  `down` waits (bounded) for
# every process in the namespaces to exit, then deletes them; it is safe to
# run twice or after a crash.  Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and
# iproute2: `check` exits 77 with the reason when they are missing.
set -u

SUBNET=10.77.0
IFACE=epcv0
STATE=${EPC_CLUSTER_STATE:-./.epc-cluster}

die() { echo "cluster.sh: $*" >&2; exit 1; }
# Option $1 needs a value: $2 is the count of arguments left including it.
need() { [ "$2" -ge 2 ] || die "option $1 needs a value"; }
say() { echo "cluster.sh: $*" >&2; }

# Exits 77 (automake's skip) with the reason when namespaces cannot be made.
check() {
    for t in ip tc unshare; do
        command -v "$t" >/dev/null 2>&1 || { echo "cluster.sh: SKIP: '$t' not found (apt-get install iproute2 util-linux)"; exit 77; }
    done
    [ "$(id -u)" = 0 ] || { echo "cluster.sh: SKIP: needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for namespaces)"; exit 77; }
    unshare --net --uts true 2>/dev/null || { echo "cluster.sh: SKIP: cannot create network/UTS namespaces here (no CAP_SYS_ADMIN?)"; exit 77; }
    probe=epcprobe$$
    ip netns add "$probe" 2>/dev/null || { echo "cluster.sh: SKIP: 'ip netns add' failed (no CAP_NET_ADMIN or /run/netns not writable)"; exit 77; }
    ok=1
    ip -n "$probe" link add b0 type bridge 2>/dev/null || ok=0
    ip -n "$probe" link add v0 type veth peer name v1 2>/dev/null || ok=0
    ip netns del "$probe"
    [ $ok = 1 ] || { echo "cluster.sh: SKIP: the kernel lacks bridge or veth support"; exit 77; }
    return 0
}

load() {
    [ -f "$STATE/prefix" ] || return 1
    P=$(cat "$STATE/prefix")
    N=$(cat "$STATE/hosts")
    SLOTS=$(cat "$STATE/slots")
    return 0
}

ns_of() { echo "$P-h$1"; }

# tbf on one end of a link: both ends are shaped so both directions are.
shape() { # NS DEV RATE
    tc -n "$1" qdisc replace dev "$2" root tbf rate "$3" burst 256kb latency 5ms
}

up() {
    n=$1; shift
    rate=""; SLOTS=2
    while [ $# -gt 0 ]; do
        case $1 in
            --rate) need "$1" $#; rate=$2; shift 2 ;;
            --slots) need "$1" $#; SLOTS=$2; shift 2 ;;
            *) die "up: unknown option '$1'" ;;
        esac
    done
    case $n in ''|*[!0-9]*) die "up: N must be a number of hosts (got '$n')" ;; esac
    [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up: N must be in 1..200 (got $n)"
    case $SLOTS in ''|*[!0-9]*|0) die "up: --slots must be a positive number (got '$SLOTS')" ;; esac
    [ ! -f "$STATE/prefix" ] || die "up: a cluster is already up ($STATE); run 'down' first"
    check >/dev/null || exit $?
    mkdir -p "$STATE" || die "up: cannot create the state directory $STATE"
    P=epc$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
    N=$n
    echo "$P" >"$STATE/prefix"; echo "$N" >"$STATE/hosts"; echo "$SLOTS" >"$STATE/slots"
    echo "$rate" >"$STATE/rate"
    trap 'say "up failed: removing what was created"; down; exit 1' EXIT
    ip netns add "$P-sw" || exit 1
    ip -n "$P-sw" link add br0 type bridge || exit 1
    ip -n "$P-sw" link set br0 up || exit 1
    : >"$STATE/hostfile"
    i=0
    while [ $i -lt "$N" ]; do
        ns=$(ns_of $i)
        ip netns add "$ns" || exit 1
        ip -n "$ns" link set lo up || exit 1
        ip -n "$P-sw" link add "p$i" type veth peer name "$IFACE" netns "$ns" || exit 1
        ip -n "$P-sw" link set "p$i" master br0 up || exit 1
        ip -n "$ns" addr add "$SUBNET.$((i + 1))/24" dev "$IFACE" || exit 1
        ip -n "$ns" link set "$IFACE" up || exit 1
        if [ -n "$rate" ]; then
            shape "$ns" "$IFACE" "$rate" || exit 1
            shape "$P-sw" "p$i" "$rate" || exit 1
        fi
        echo "h$i slots=$SLOTS" >>"$STATE/hostfile"
        i=$((i + 1))
    done
    # Names resolve only inside the namespaces: `ip netns exec` bind-mounts
    # /etc/netns/NS/hosts over /etc/hosts.  /etc/netns itself is removed at
    # `down` only if this run created it.
    [ -d /etc/netns ] || echo 1 >"$STATE/made_etc_netns"
    i=0
    while [ $i -lt "$N" ]; do
        mkdir -p "/etc/netns/$(ns_of $i)" || exit 1
        { echo "127.0.0.1 localhost"; j=0
          while [ $j -lt "$N" ]; do echo "$SUBNET.$((j + 1)) h$j"; j=$((j + 1)); done
        } >"/etc/netns/$(ns_of $i)/hosts" || exit 1
        i=$((i + 1))
    done
    write_agent
    trap - EXIT
    say "up: $N hosts h0..h$((N - 1)) ($SLOTS slots each) on $SUBNET.0/24${rate:+, links limited to $rate}, prefix $P"
}

# The launch agent Open MPI runs instead of ssh: AGENT [opts] HOST CMD...
# enters HOST's namespace, gives it its hostname and runs CMD there (the
# environment is inherited, as the daemons need it).
write_agent() {
    cat >"$STATE/agent" <<EOF
#!/bin/sh
while [ \$# -gt 0 ]; do case \$1 in -*) shift ;; *) break ;; esac; done
host=\$1; shift
case \$host in h[0-9]*) ;; *) echo "cluster agent: unknown host '\$host'" >&2; exit 255 ;; esac
exec ip netns exec "$P-\$host" unshare --uts -- sh -c 'hostname "\$0" && exec sh -c "\$1"' "\$host" "\$*"
EOF
    chmod 700 "$STATE/agent"
}

# mpirun inside h0 with the hostfile, the agent and the links only.
run() {
    load || die "run: no cluster is up ($STATE); run 'up N' first"
    np=$((N * SLOTS)); timeout=${EPC_TEST_TIMEOUT:-600}
    while [ $# -gt 0 ]; do
        case $1 in
            --np) need "$1" $#; np=$2; shift 2 ;;
            --timeout) need "$1" $#; timeout=$2; shift 2 ;;
            --) shift; break ;;
            *) die "run: unknown option '$1' (the command goes after --)" ;;
        esac
    done
    [ $# -gt 0 ] || die "run: no command (scripts/cluster.sh run -- CMD ARGS...)"
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export FI_TCP_IFACE=$IFACE FI_SOCKETS_IFACE=$IFACE
    export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    dir=$(cd "$STATE" && pwd)
    set -- "${MPIEXEC:-mpirun}" -np "$np" --oversubscribe --bind-to none --timeout "$timeout" \
        --hostfile "$dir/hostfile" --mca plm_rsh_agent "$dir/agent" \
        --mca plm_rsh_no_tree_spawn 1 --mca oob_tcp_if_include "$SUBNET.0/24" \
        --mca btl self,vader,tcp --mca btl_tcp_if_include "$SUBNET.0/24" \
        --mca mpi_yield_when_idle 1 "$@"
    "$dir/agent" h0 "exec $(quote "$@")"
}

# Each argument single-quoted for sh, so the agent's `sh -c` sees them as given.
quote() {
    for a in "$@"; do
        printf "'%s' " "$(printf '%s' "$a" | sed "s/'/'\\\\''/g")"
    done
}

# Every process in the namespaces gone (bounded: 15 s, then SIGKILL), then
# the namespaces, their links and the hosts files removed.  Idempotent.
down() {
    if ! load; then
        say "down: nothing is up ($STATE)"
        return 0
    fi
    deadline=$(($(date +%s) + 15))
    for ns in $(ip netns list | awk '{print $1}' | grep "^$P-"); do
        while [ -n "$(ip netns pids "$ns" 2>/dev/null)" ]; do
            if [ "$(date +%s)" -ge "$deadline" ]; then
                say "down: killing processes still in $ns: $(ip netns pids "$ns" | tr '\n' ' ')"
                ip netns pids "$ns" | xargs -r kill -9 2>/dev/null
                sleep 0.2
                break
            fi
            sleep 0.1
        done
        ip netns del "$ns" 2>/dev/null || say "down: could not delete namespace $ns"
        rm -rf "/etc/netns/$ns"
    done
    [ ! -f "$STATE/made_etc_netns" ] || rmdir /etc/netns 2>/dev/null
    rm -f "$STATE/prefix" "$STATE/hosts" "$STATE/slots" "$STATE/rate" "$STATE/hostfile" \
        "$STATE/agent" "$STATE/made_etc_netns"
    rmdir "$STATE" 2>/dev/null
    say "down: removed cluster $P"
    return 0
}

status() {
    load || { echo "no cluster up ($STATE)"; return 1; }
    rate=$(cat "$STATE/rate" 2>/dev/null)
    echo "cluster $P: $N hosts x $SLOTS slots, links limited to ${rate:-(unlimited)}"
    ip netns list | awk '{print $1}' | grep "^$P-" | while read -r ns; do
        echo "  $ns: $(ip netns pids "$ns" | wc -l) processes"
    done
}

# Bytes each host sent and received on its link (the veth's counters).
counters() {
    load || die "counters: no cluster is up ($STATE)"
    i=0
    while [ $i -lt "$N" ]; do
        ns=$(ns_of $i)
        echo "h$i tx_bytes=$(ip netns exec "$ns" cat /sys/class/net/$IFACE/statistics/tx_bytes) rx_bytes=$(ip netns exec "$ns" cat /sys/class/net/$IFACE/statistics/rx_bytes)"
        i=$((i + 1))
    done
}

with() {
    n=$1; shift
    upargs=""; runargs=""
    while [ $# -gt 0 ]; do
        case $1 in
            --rate|--slots) need "$1" $#; upargs="$upargs $1 $2"; shift 2 ;;
            --np|--timeout) need "$1" $#; runargs="$runargs $1 $2"; shift 2 ;;
            --) shift; break ;;
            *) die "with: unknown option '$1' (the command goes after --)" ;;
        esac
    done
    # shellcheck disable=SC2086 # the option lists are words by design
    up "$n" $upargs || exit 1
    trap 'down' EXIT INT TERM
    # shellcheck disable=SC2086
    run $runargs -- "$@"
}

main() {
    [ $# -gt 0 ] || { sed -n '4,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
    if [ "$1" = --state ]; then need "$1" $#; STATE=$2; shift 2; fi
    cmd=$1; shift
    case $cmd in
        up) [ $# -ge 1 ] || die "up: give the number of hosts"; up "$@" ;;
        run) run "$@" ;;
        down) down ;;
        with) [ $# -ge 1 ] || die "with: give the number of hosts"; with "$@" ;;
        status) status ;;
        counters) counters ;;
        check) check && echo "cluster.sh: network namespaces, veth, bridge and tc are usable" ;;
        *) die "unknown command '$cmd' (up, run, down, with, status, counters, check)" ;;
    esac
}

main "$@"
