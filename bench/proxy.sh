#!/usr/bin/env bash
# TCP proxy benchmarks: the same echo server (torsion's echo_server) behind torsion's
# tcp_proxy example, HAProxy in TCP mode, and a tokio copy_bidirectional proxy
# (peers/tokio_proxy), driven by loadgen through the proxy. Every round runs each scenario
# on each proxy (A B C A B C ...), each run with a fresh proxy process; the echo server
# lives for the whole run. What is compared is the PROXY's CPU per message
# (utime + stime of the proxy process, from /proc) and the throughput through it.
#   pp50   pingpong 64 B over 50 connections: msgs/s, proxy CPU µs per message
#   bulk   16 KiB chunks over 10 connections, 256 KiB window: MB/s, proxy CPU µs per chunk
#   pp1    pingpong 64 B over 1 connection (latency; not in the default SCENARIOS)
# Usage: bench/proxy.sh                     (RUNS=3 DURATION=5: about 2 minutes + builds)
#        RUNS=1 DURATION=2 bench/proxy.sh   (a quick check)
#        PROXIES="torsion haproxy" SCENARIOS=pp50 bench/proxy.sh
# HAProxy is Debian's `haproxy` package (apt-get install -y haproxy); without it that
# column is skipped with a message.
set -euo pipefail
cd "$(dirname "$0")"
BENCH=$(pwd)
ROOT=$(cd .. && pwd)
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
SCENARIOS=${SCENARIOS:-"pp50 bulk"}
PROXIES=${PROXIES:-"torsion haproxy tokio"}
PROXY_CPU=${PROXY_CPU:-0}
# The echo server and the load generator share the other CPU: the proxy has one to itself.
ECHO_CPU=${ECHO_CPU:-1}
LOADGEN_CPU=${LOADGEN_CPU:-1}
OUT=${OUT:-$BENCH/results/proxy-latest.md}
RAW=$BENCH/results/raw/proxy
mkdir -p "$RAW" "$(dirname "$OUT")"
rm -f "$RAW"/*
LOCAL=tcp:port=0:interface=127.0.0.1
say() { printf '%s\n' "$*" >&2; }

if [ "${NO_BUILD:-0}" != 1 ]; then
    say "== building torsion's echo_server and tcp_proxy, and bench/ (loadgen, tokio_proxy), in release"
    (cd "$ROOT" && cargo build --quiet --release --example echo_server --example tcp_proxy)
    cargo build --quiet --release -p peers --bin tokio_proxy -p loadgen --bin loadgen
fi
ECHO=$ROOT/target/release/examples/echo_server
LOAD=$BENCH/target/release/loadgen

ACTIVE=()
for p in $PROXIES; do
    if [ "$p" = haproxy ] && ! command -v haproxy >/dev/null; then
        say "proxy.sh: haproxy is not installed (apt-get install -y haproxy): skipping it"
        continue
    fi
    ACTIVE+=("$p")
done

SPID=""
EPID=""
cleanup() {
    [ -n "$SPID" ] && kill -TERM "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
    [ -n "$EPID" ] && kill -TERM "$EPID" 2>/dev/null && wait "$EPID" 2>/dev/null
    true
}
trap cleanup EXIT

wait_line() { # PID FILE -> prints the address of the `listening on` line
    for _ in $(seq 600); do # up to 30 s: a loaded machine starts processes slowly
        if grep -q "^listening on " "$2" 2>/dev/null; then
            sed -n 's/^listening on //p' "$2" | head -n 1
            return 0
        fi
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

taskset -c "$ECHO_CPU" "$ECHO" "$LOCAL" >"$RAW/echo.out" 2>"$RAW/echo.err" &
EPID=$!
EADDR=$(wait_line "$EPID" "$RAW/echo.out") || { say "the echo server did not start: $(cat "$RAW/echo.err")"; exit 1; }
EPORT=${EADDR##*:}

start_proxy() { # NAME TAG -> sets SPID and SADDR
    local out=$RAW/$2.out err=$RAW/$2.err
    case $1 in
        torsion) taskset -c "$PROXY_CPU" "$ROOT/target/release/examples/tcp_proxy" "$LOCAL" \
            "tcp:host=127.0.0.1:port=$EPORT" >"$out" 2>"$err" & ;;
        tokio) taskset -c "$PROXY_CPU" "$BENCH/target/release/tokio_proxy" "$LOCAL" \
            "tcp:host=127.0.0.1:port=$EPORT" >"$out" 2>"$err" & ;;
        haproxy)
            local port
            port=$(free_port)
            # One thread, TCP mode, defaults otherwise (16 KiB buffers, no splicing).
            cat >"$RAW/$2.cfg" <<EOF
global
    nbthread 1
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend bench
    bind 127.0.0.1:$port
    default_backend echo
backend echo
    server echo 127.0.0.1:$EPORT
EOF
            taskset -c "$PROXY_CPU" haproxy -db -f "$RAW/$2.cfg" >"$out" 2>"$err" &
            SPID=$!
            # HAProxy prints no address: wait until its port accepts.
            for _ in $(seq 600); do
                if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                    SADDR=127.0.0.1:$port
                    return 0
                fi
                kill -0 "$SPID" 2>/dev/null || break
                sleep 0.05
            done
            say "haproxy did not start: $(tail -n 3 "$err")"
            return 1 ;;
    esac
    SPID=$!
    SADDR=$(wait_line "$SPID" "$out") || { say "$1 did not start: $(tail -n 3 "$err")"; return 1; }
}

run_one() { # PROXY SCENARIO ROUND -> prints the JSON line
    local tag=$2.$1.$3
    if ! start_proxy "$1" "$tag"; then
        echo "{\"ok\":false,\"error\":\"$1 did not start\"}"
        return 0
    fi
    local args=(--addr "$SADDR" --server-pid "$SPID" --timeout 10 --json)
    case $2 in
        pp50) args+=(--mode pingpong --conns 50 --size 64 --duration "$DURATION") ;;
        pp1) args+=(--mode pingpong --conns 1 --size 64 --duration "$DURATION") ;;
        bulk) args+=(--mode bulk --conns 10 --size 16384 --window 262144 --duration "$DURATION") ;;
        *) say "proxy.sh: unknown scenario $2"; exit 2 ;;
    esac
    taskset -c "$LOADGEN_CPU" "$LOAD" "${args[@]}" 2>"$RAW/$tag.loadgen.err" ||
        echo "{\"ok\":false,\"error\":\"loadgen: $(tail -n 1 "$RAW/$tag.loadgen.err")\"}"
    kill -TERM "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=""
}

LOAD_AVG=$(cut -d' ' -f1-3 /proc/loadavg)
say "== $RUNS round(s): [$SCENARIOS] x [${ACTIVE[*]}], $DURATION s each"
: >"$RAW/runs.tsv"
for round in $(seq "$RUNS"); do
    for sc in $SCENARIOS; do
        for p in "${ACTIVE[@]}"; do
            line=$(run_one "$p" "$sc" "$round")
            printf '%s\t%s\t%s\t%s\n' "$round" "$sc" "$p" "$line" | tee -a "$RAW/runs.tsv" >&2
        done
    done
done

python3 "$BENCH/proxy_report.py" "$RAW/runs.tsv" "$OUT" \
    "RUNS=$RUNS DURATION=$DURATION SCENARIOS=\"$SCENARIOS\" PROXIES=\"${ACTIVE[*]}\" PROXY_CPU=$PROXY_CPU ECHO_CPU=$ECHO_CPU LOADGEN_CPU=$LOADGEN_CPU bench/proxy.sh" \
    "$LOAD_AVG" "$(haproxy -v 2>/dev/null | head -n 1 || true)" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
