#!/usr/bin/env bash
# TLS echo benchmarks: torsion's echo_server with an ssl: endpoint against tokio + tokio-rustls
# (peers/tokio_rustls_echo), the same rustls and ring provider on both, driven by
# loadgen's tlsload (rustls client). Scenarios, interleaved per round (A B A B ...):
#   bulk     16 KiB chunks over 10 connections: MB/s and server CPU ns per byte
#   full     full handshakes/s (2 client threads, no resumption) and server CPU per handshake
#   resumed  resumed handshakes/s (session tickets) and server CPU per handshake
#   hold     HOLD_CONNS idle TLS connections: server RSS KiB per connection
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

python3 - "$RAW/runs.tsv" "$OUT" "$RUNS" "$DURATION" "$HOLD_CONNS" <<'PY'
import json, statistics, sys, subprocess, os
path, out, runs, duration, hold = sys.argv[1:6]
rows = {}
for line in open(path):
    rnd, sc, srv, js = line.rstrip("\n").split("\t", 3)
    rows.setdefault((sc, srv), []).append(json.loads(js))
def fig(sc, r):
    if not r.get("ok"): return None
    return {"bulk": r.get("mb_per_s"), "full": r.get("per_s"), "resumed": r.get("per_s"),
            "hold": r.get("kib_per_conn")}[sc]
def cpu(sc, r):
    if not r.get("ok"): return None
    return {"bulk": r.get("server_cpu_ns_per_byte"), "full": r.get("server_cpu_us_per_handshake"),
            "resumed": r.get("server_cpu_us_per_handshake"), "hold": None}[sc]
units = {"bulk": ("MB/s", "server CPU ns/byte"), "full": ("handshakes/s", "server CPU µs/handshake"),
         "resumed": ("handshakes/s", "server CPU µs/handshake"), "hold": ("KiB/conn (lower is better)", "")}
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def ratio(sc, f):
    a, b = rows.get((sc, "torsion"), []), rows.get((sc, "tokio_rustls"), [])
    rs = [f(sc, x) / f(sc, y) for x, y in zip(a, b) if f(sc, x) and f(sc, y)]
    return statistics.median(rs) if rs else None
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines = [f"# TLS echo benchmarks ({commit})", "",
         f"`RUNS={runs} DURATION={duration} HOLD_CONNS={hold} bench/tls.sh` on {os.cpu_count()} CPUs "
         f"(load average {os.getloadavg()[0]:.2f}); server pinned to one CPU, tlsload to another; "
         "rustls 0.23 + ring on both servers and the client.", "",
         "| scenario | unit | torsion | tokio-rustls | torsion/tokio-rustls | server CPU: torsion | tokio-rustls | CPU ratio |",
         "|---|---|---|---|---|---|---|---|"]
for sc in ["bulk", "full", "resumed", "hold"]:
    if (sc, "torsion") not in rows: continue
    t = med([fig(sc, r) for r in rows[(sc, "torsion")]]); k = med([fig(sc, r) for r in rows.get((sc, "tokio_rustls"), [])])
    ct = med([cpu(sc, r) for r in rows[(sc, "torsion")]]); ck = med([cpu(sc, r) for r in rows.get((sc, "tokio_rustls"), [])])
    rf, rc = ratio(sc, fig), ratio(sc, cpu)
    f = lambda x, d=2: "—" if x is None else f"{x:.{d}f}"
    lines.append(f"| {sc} | {units[sc][0]} | {f(t)} | {f(k)} | {f(rf)} | {f(ct)} | {f(ck)} | {f(rc)} |")
fails = [(k, r.get("error")) for k, v in rows.items() for r in v if not r.get("ok")]
if fails:
    lines += ["", "Failures:"] + [f"- {k}: {e}" for k, e in fails]
lines += ["", "Ratios are per round (the two servers ran back to back), then the median. For",
          "throughput above 1 favours torsion; for CPU per unit and KiB per connection, below 1 does."]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
