#!/usr/bin/env bash
# TLS echo benchmarks: torsion's echo_server with an ssl: endpoint against tokio + tokio-rustls
# (peers/tokio_rustls_echo), the same rustls and ring provider on both, driven by
# loadgen's tlsload (rustls client). Scenarios, interleaved per round (A B A B ...):
#   bulk     16 KiB chunks over 10 connections: MB/s and server CPU ns per byte
#   full     full handshakes/s (2 client threads, no resumption) and server CPU per handshake
#   resumed  resumed handshakes/s (session tickets) and server CPU per handshake
#   hold     HOLD_CONNS idle TLS connections: server RSS KiB per connection
#   stall    5000 handshakes stalled after half a ClientHello: server RSS KiB per connection
#            (not in the default SCENARIOS)
# Usage: bench/tls.sh            (RUNS=3 DURATION=5 HOLD_CONNS=10000)
#        RUNS=1 DURATION=2 HOLD_CONNS=2000 bench/tls.sh   (a quick check)
set -euo pipefail
cd "$(dirname "$0")"
BENCH=$(pwd)
ROOT=$(cd .. && pwd)
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
HOLD_CONNS=${HOLD_CONNS:-10000}
SCENARIOS=${SCENARIOS:-"bulk full resumed hold"}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
OUT=${OUT:-$BENCH/results/tls-latest.md}
RAW=$BENCH/results/raw/tls
mkdir -p "$RAW" "$(dirname "$OUT")"
ulimit -n "$(( HOLD_CONNS + 1000 < $(ulimit -Hn) ? HOLD_CONNS + 1000 : $(ulimit -Hn) ))" || true

if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --quiet --release --example echo_server)
    cargo build --quiet --release -p peers --bin tokio_rustls_echo -p loadgen --bin tlsload
fi
TORSION=$ROOT/target/release/examples/echo_server
TOKIO=$BENCH/target/release/tokio_rustls_echo
LOAD=$BENCH/target/release/tlsload

CERTS=$(mktemp -d)
trap 'rm -rf "$CERTS"' EXIT
# A throwaway CA and a P-256 server certificate for localhost that it signs.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$CERTS/ca.key" \
    -out "$CERTS/ca.pem" -subj /CN=torsion-bench-ca -days 30 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$CERTS/key.pem" \
    -out "$CERTS/req.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$CERTS/ext.cnf"
openssl x509 -req -in "$CERTS/req.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" \
    -CAcreateserial -out "$CERTS/cert.pem" -days 30 -extfile "$CERTS/ext.cnf" 2>/dev/null

start_server() { # name -> sets SPID, SPORT
    local log=$RAW/$1.server.log
    case $1 in
        torsion) taskset -c "$SERVER_CPU" "$TORSION" \
            "ssl:port=0:interface=127.0.0.1:privateKey=$CERTS/key.pem:certKey=$CERTS/cert.pem" \
            >"$RAW/$1.out" 2>"$log" & ;;
        tokio_rustls) taskset -c "$SERVER_CPU" "$TOKIO" tcp:port=0:interface=127.0.0.1 \
            --cert "$CERTS/cert.pem" --key "$CERTS/key.pem" >"$RAW/$1.out" 2>"$log" & ;;
    esac
    SPID=$!
    for _ in $(seq 600); do # up to 30 s: a loaded machine starts processes slowly
        if grep -q "listening on" "$RAW/$1.out" 2>/dev/null; then break; fi
        sleep 0.05
    done
    SPORT=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$RAW/$1.out")
    [ -n "$SPORT" ] || { echo "$1 did not start: $(cat "$log")" >&2; kill "$SPID" 2>/dev/null; return 1; }
}

run_one() { # server scenario -> prints the JSON line
    start_server "$1" || { echo "{\"ok\":false,\"error\":\"$1 did not start\"}"; return 0; }
    local args=(--addr "127.0.0.1:$SPORT" --ca "$CERTS/ca.pem" --server-pid "$SPID")
    case $2 in
        bulk) args+=(--mode bulk --duration "$DURATION") ;;
        full) args+=(--mode handshake --duration "$DURATION") ;;
        resumed) args+=(--mode handshake --resume --duration "$DURATION") ;;
        hold) args+=(--mode hold --conns "$HOLD_CONNS" --timeout 30) ;;
        stall) args+=(--mode stall --conns 5000 --timeout 30) ;;
    esac
    taskset -c "$LOADGEN_CPU" "$LOAD" "${args[@]}" || true
    kill -TERM "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
}

: >"$RAW/runs.tsv"
for round in $(seq "$RUNS"); do
    for sc in $SCENARIOS; do
        for srv in torsion tokio_rustls; do
            line=$(run_one "$srv" "$sc")
            echo "$round	$sc	$srv	$line" | tee -a "$RAW/runs.tsv" >&2
        done
    done
done

python3 "$BENCH/tls_report.py" "$RAW/runs.tsv" "$OUT" "$RUNS" "$DURATION" "$HOLD_CONNS"
