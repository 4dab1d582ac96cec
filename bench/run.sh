#!/usr/bin/env bash
# torsion's side-by-side benchmarks: torsion's example servers against the peers in bench/peers.
#
# usage: bench/run.sh            (from anywhere; a full default run takes about 6 minutes plus
#                                 the release builds)
#
# Settings (environment variables, defaults in brackets):
#   RUNS [3]            rounds; each round runs every scenario on every server (A B C A B C ...)
#   DURATION [5]        seconds of load per timed scenario
#   SERVERS ["torsion tokio mio tokio_mt"]   servers, in this order; a missing binary is skipped
#                       (also: async_echo, torsion's echo written with async streams; baseline)
#   SCENARIOS ["pp1 pp50 pp500 pl16 pl1 bulk churn hold udp64x1 udp64x32 udp1200x1 udp1200x32"];
#                       also mt50 mt500 mt4x50 mt4x500 (multi-core: see bench/README.md)
#                       (the udp scenarios run torsion's udp_echo and tokio_udp_echo; the
#                       other servers have no UDP peer and show "–" there)
#   BASE [torsion]      numerator of the ratio columns (BASE/peer)
#   HOLD_CONNS [10000]  idle connections in the hold scenario
#   CHURN_CLIENTS [4]   client threads in the churn scenario
#   TOKIO_WORKERS [2]   worker threads of tokio_mt
#   UDP_WINDOW [1]      datagrams each UDP sender keeps in flight (1: ping-pong)
#   TORSION_ARGS []     extra arguments for torsion's servers (after the endpoint)
#   MT_CPU [0,1]        CPU list of server and load generator in the mt* scenarios
#   BASELINE_BIN []     the `baseline` server: an echo_server binary built from another commit,
#                       for before/after runs (SERVERS="torsion baseline tokio")
#   SERVER_CPU [0]      CPU list the servers are pinned to (taskset -c)
#   LOADGEN_CPU [1]     CPU list the load generator is pinned to
#   STRACE [1]          0 skips the syscalls-per-message measurement
#   STRACE_DURATION [2] seconds of load under strace per server and scenario
#   STRACE_SCENARIOS ["pp50" + pl16 pl1 if run]  scenarios whose syscalls are counted
#   NICE []             run servers and load generator at this nice level (e.g. -10, as
#                       root) so that other work on a shared machine disturbs them less
#   NO_BUILD [0]        1 uses the binaries already built
#   OUT [bench/results/latest.md]   where the report is written (it is also printed)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
SERVERS=${SERVERS:-torsion tokio mio tokio_mt}
SCENARIOS=${SCENARIOS:-pp1 pp50 pp500 pl16 pl1 bulk churn hold udp64x1 udp64x32 udp1200x1 udp1200x32}
MT_CPU=${MT_CPU:-0,1}
BASE=${BASE:-torsion}
HOLD_CONNS=${HOLD_CONNS:-10000}
CHURN_CLIENTS=${CHURN_CLIENTS:-4}
TOKIO_WORKERS=${TOKIO_WORKERS:-2}
UDP_WINDOW=${UDP_WINDOW:-1}
TORSION_ARGS=${TORSION_ARGS:-}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
STRACE=${STRACE:-1}
STRACE_DURATION=${STRACE_DURATION:-2}
if [[ -z ${STRACE_SCENARIOS:-} ]]; then
    STRACE_SCENARIOS=""
    for sc in pp50 pl16 pl1; do
        [[ " $SCENARIOS " == *" $sc "* || $sc == pp50 ]] && STRACE_SCENARIOS+="$sc "
    done
fi
NO_BUILD=${NO_BUILD:-0}
NICE=${NICE:-}
# The prefix that runs a benchmark process at that nice level (none by default).
PRIO=()
[[ -n $NICE ]] && PRIO=(nice -n "$NICE")
OUT=${OUT:-$BENCH_DIR/results/latest.md}
ENDPOINT="tcp:port=0:interface=127.0.0.1"
UDP_ENDPOINT="udp:port=0:interface=127.0.0.1"
IO_TIMEOUT=10

RAW="$BENCH_DIR/results/raw"
mkdir -p "$RAW" "$(dirname "$OUT")"
LOG="$RAW/log"
mkdir -p "$LOG"
rm -f "$LOG"/* "$RAW"/*.tsv "$RAW/failures"
DATA="$RAW/runs.tsv"
SYSC="$RAW/syscalls.tsv"
REPORT="$RAW/report.md"
: >"$DATA"
: >"$SYSC"
: >"$REPORT"

BENCH_TARGET=${CARGO_TARGET_DIR:-$BENCH_DIR/target}
ROOT_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LOADGEN="$BENCH_TARGET/release/loadgen"
TORSION_SKIP=""
T_START=$(date +%s)

say() { printf '%s\n' "$*" >&2; }
# Lines of the report: printed and kept for $OUT.
rep() { printf '%s\n' "$*" | tee -a "$REPORT"; }

for tool in taskset awk sed; do
    command -v "$tool" >/dev/null || { say "run.sh: '$tool' is required"; exit 2; }
done
for n in "$RUNS" "$DURATION" "$HOLD_CONNS" "$CHURN_CLIENTS" "$TOKIO_WORKERS" "$STRACE_DURATION" "$UDP_WINDOW"; do
    [[ $n =~ ^[0-9]+([.][0-9]+)?$ ]] || { say "run.sh: '$n' is not a number"; exit 2; }
done

# ---------------------------------------------------------------- processes and cleanup
SPID=""
SADDR=""
STRACE_PID=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    if [[ -n $STRACE_PID ]] && kill -0 "$STRACE_PID" 2>/dev/null; then
        kill -INT "$STRACE_PID" 2>/dev/null || true
        wait "$STRACE_PID" 2>/dev/null || true
    fi
    STRACE_PID=""
    stop_server
}
trap cleanup EXIT
trap 'say "run.sh: interrupted"; exit 130' INT TERM

# The server each scenario runs: the echo servers, except the pipelined scenarios (pl*:
# torsion's line_echo example, tokio's framed-lines peer) and the multi-core ones (mt*:
# torsion with one reactor per thread, tokio's multi-thread runtime, same thread count).
scenario_threads() { # SCENARIO -> server threads (mt*), else nothing
    case $1 in
        mt50 | mt500) echo 2 ;;
        mt4x50 | mt4x500) echo 4 ;;
    esac
}
server_cmd() { # NAME [SCENARIO] -> the command words, one per line; 1 if unknown, 3 if not in that scenario
    local sc=${2:-pp50} threads
    threads=$(scenario_threads "$sc")
    case $sc in
        udp*) case $1 in
                torsion) printf '%s\n' "$ROOT_TARGET/release/examples/udp_echo" "$UDP_ENDPOINT" ;;
                tokio) printf '%s\n' "$BENCH_TARGET/release/tokio_udp_echo" "$UDP_ENDPOINT" ;;
                baseline | mio | tokio_mt | torsion_rp | async_echo) return 3 ;;
                *) return 1 ;;
            esac
            return 0 ;;
        pl*) case $1 in
                torsion) printf '%s\n' "$ROOT_TARGET/release/examples/line_echo" "$ENDPOINT" ;;
                tokio) printf '%s\n' "$BENCH_TARGET/release/tokio_lines" "$ENDPOINT" ;;
                tokio_mt) printf '%s\n' "$BENCH_TARGET/release/tokio_lines" "$ENDPOINT" --workers "$TOKIO_WORKERS" ;;
                baseline) [[ -n ${BASELINE_LINES_BIN:-} ]] || return 3
                    printf '%s\n' "$BASELINE_LINES_BIN" "$ENDPOINT" ;;
                mio | torsion_rp) return 3 ;;
                *) return 1 ;;
            esac
            return 0 ;;
        mt*) case $1 in
                torsion) printf '%s\n' "$ROOT_TARGET/release/examples/echo_server" "$ENDPOINT" --threads "$threads" ;;
                torsion_rp) printf '%s\n' "$ROOT_TARGET/release/examples/echo_server" "$ENDPOINT:reuseport=1" --threads "$threads" ;;
                baseline) printf '%s\n' "${BASELINE_BIN:-$RAW/echo_server_baseline}" "$ENDPOINT" --threads "$threads" ;;
                tokio_mt) printf '%s\n' "$BENCH_TARGET/release/tokio_mt_echo" "$ENDPOINT" --workers "$threads" ;;
                tokio | mio) return 3 ;;
                *) return 1 ;;
            esac
            return 0 ;;
    esac
    case $1 in
        torsion_rp) return 3 ;; # only in the mt* scenarios
        torsion) printf '%s\n' "$ROOT_TARGET/release/examples/echo_server" "$ENDPOINT"
            # shellcheck disable=SC2086  # word splitting intended
            [[ -n $TORSION_ARGS ]] && printf '%s\n' $TORSION_ARGS
            true ;;
        async_echo) printf '%s\n' "$ROOT_TARGET/release/examples/async_echo" "$ENDPOINT" ;;
        baseline) printf '%s\n' "${BASELINE_BIN:-$RAW/echo_server_baseline}" "$ENDPOINT" ;;
        tokio) printf '%s\n' "$BENCH_TARGET/release/tokio_echo" "$ENDPOINT" ;;
        mio) printf '%s\n' "$BENCH_TARGET/release/mio_echo" "$ENDPOINT" ;;
        tokio_mt) printf '%s\n' "$BENCH_TARGET/release/tokio_mt_echo" "$ENDPOINT" --workers "$TOKIO_WORKERS" ;;
        *) return 1 ;;
    esac
}
# CPU lists (server, load generator) for a scenario: the mt* scenarios share MT_CPU.
server_cpu() { case $1 in mt*) echo "$MT_CPU" ;; *) echo "$SERVER_CPU" ;; esac; }
loadgen_cpu() { case $1 in mt*) echo "$MT_CPU" ;; *) echo "$LOADGEN_CPU" ;; esac; }

start_server() { # NAME TAG SCENARIO -> sets SPID and SADDR
    local name=$1 tag=$2 sc=$3 cmd
    mapfile -t cmd < <(server_cmd "$name" "$sc")
    local out="$LOG/$tag.server.out" err="$LOG/$tag.server.err"
    "${PRIO[@]}" taskset -c "$(server_cpu "$sc")" "${cmd[@]}" >"$out" 2>"$err" &
    SPID=$!
    local i
    for ((i = 0; i < 200; i++)); do
        SADDR=$(sed -n 's/^listening on //p' "$out" 2>/dev/null | head -n 1)
        [[ -n $SADDR ]] && return 0
        if ! kill -0 "$SPID" 2>/dev/null; then
            say "run.sh: $name exited before listening: $(tail -n 3 "$err")"
            wait "$SPID" 2>/dev/null || true
            SPID=""
            return 1
        fi
        sleep 0.05
    done
    say "run.sh: $name printed no 'listening on' line within 10 s"
    stop_server
    return 1
}

stop_server() {
    [[ -z $SPID ]] && return 0
    kill -TERM "$SPID" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$SPID" 2>/dev/null; then
        say "run.sh: server $SPID ignored SIGTERM for 5 s; killing it"
        kill -KILL "$SPID" 2>/dev/null || true
    fi
    wait "$SPID" 2>/dev/null || true
    SPID=""
}

jget() { # KEY FILE -> the value of a flat JSON field (strings unquoted)
    sed -n "s/.*\"$1\":\(\"[^\"]*\"\|[^,}]*\).*/\1/p" "$2" | head -n 1 | tr -d '"'
}

# ---------------------------------------------------------------- build
if [[ $NO_BUILD != 1 ]]; then
    say "== building bench/ (loadgen, peers) in release"
    if ! cargo build --release --manifest-path "$BENCH_DIR/Cargo.toml" >"$LOG/build-bench.log" 2>&1; then
        tail -n 30 "$LOG/build-bench.log" >&2
        say "run.sh: building bench/ failed (log: $LOG/build-bench.log)"
        exit 1
    fi
    if [[ " $SERVERS " == *" torsion "* ]]; then
        if [[ -f $ROOT/examples/echo_server.rs || -f $ROOT/examples/echo_server/main.rs ]]; then
            say "== building torsion's echo_server, line_echo and udp_echo examples in release"
            if ! (cd "$ROOT" && cargo build --release --example echo_server --example line_echo --example udp_echo) >"$LOG/build-torsion.log" 2>&1; then
                tail -n 30 "$LOG/build-torsion.log" >&2
                TORSION_SKIP="its examples FAILED TO BUILD (log: $LOG/build-torsion.log)"
            fi
        else
            TORSION_SKIP="the project has no examples/echo_server yet"
        fi
    fi
    if [[ " $SERVERS " == *" async_echo "* && -f $ROOT/examples/async_echo.rs ]]; then
        say "== building torsion's async_echo example in release"
        if ! (cd "$ROOT" && cargo build --release --example async_echo) >"$LOG/build-async.log" 2>&1; then
            tail -n 30 "$LOG/build-async.log" >&2
            say "run.sh: building async_echo failed (log: $LOG/build-async.log); it is skipped"
        fi
    fi
fi
[[ -x $LOADGEN ]] || { say "run.sh: no loadgen binary at $LOADGEN"; exit 1; }

ACTIVE=()
SKIPPED=()
for s in $SERVERS; do
    rc=0
    server_cmd "$s" >/dev/null || rc=$?
    if ((rc == 1)); then
        say "run.sh: unknown server '$s' (known: torsion torsion_rp async_echo baseline tokio mio tokio_mt)"
        exit 2
    fi
    # Its binary in the first scenario it takes part in (each run checks its own again).
    bin=""
    for sc in ${SCENARIOS:-pp50}; do
        bin=$(server_cmd "$s" "$sc" 2>/dev/null | head -n 1) && [[ -n $bin ]] && break
        bin=""
    done
    if [[ -z $bin ]]; then
        say "run.sh: skipping $s: it takes part in none of the scenarios [$SCENARIOS]"
        SKIPPED+=("$s")
    elif [[ $s == torsion && -n $TORSION_SKIP ]]; then
        say "run.sh: skipping torsion: $TORSION_SKIP"
        SKIPPED+=("$s")
    elif [[ -x $bin ]]; then
        ACTIVE+=("$s")
    else
        say "run.sh: skipping $s: no binary at $bin"
        SKIPPED+=("$s")
    fi
done
((${#ACTIVE[@]} > 0)) || { say "run.sh: no server to benchmark"; exit 1; }

# ---------------------------------------------------------------- descriptors for hold
HARD=$(ulimit -Hn)
NEED=$((HOLD_CONNS + 1000))
if [[ $HARD != unlimited ]] && ((HARD < NEED)); then
    say "run.sh: the hard descriptor limit (ulimit -Hn) is $HARD; hold uses $((HARD - 1000)) connections instead of $HOLD_CONNS"
    HOLD_CONNS=$((HARD - 1000))
    NEED=$HARD
fi
if [[ $(ulimit -Sn) != unlimited ]] && (($(ulimit -Sn) < NEED)); then
    ulimit -Sn "$NEED"
fi

# ---------------------------------------------------------------- scenarios
scenario_args() {
    case $1 in
        pp1) echo "--mode pingpong --conns 1 --size 64 --duration $DURATION" ;;
        pp50) echo "--mode pingpong --conns 50 --size 64 --duration $DURATION" ;;
        pp500) echo "--mode pingpong --conns 500 --size 64 --duration $DURATION" ;;
        pl16) echo "--mode pipelined --conns 50 --depth 16 --size 32 --duration $DURATION" ;;
        pl1) echo "--mode pipelined --conns 50 --depth 1 --size 32 --duration $DURATION" ;;
        mt50 | mt4x50) echo "--mode pingpong --conns 50 --size 64 --duration $DURATION" ;;
        mt500 | mt4x500) echo "--mode pingpong --conns 500 --size 64 --duration $DURATION" ;;
        bulk) echo "--mode bulk --conns 10 --size 16384 --window 262144 --duration $DURATION" ;;
        churn) echo "--mode churn --conns $CHURN_CLIENTS --size 64 --duration $DURATION" ;;
        hold) echo "--mode hold --conns $HOLD_CONNS --size 64" ;;
        udp64x1) echo "--mode udp --conns 1 --size 64 --window $UDP_WINDOW --duration $DURATION" ;;
        udp64x32) echo "--mode udp --conns 32 --size 64 --window $UDP_WINDOW --duration $DURATION" ;;
        udp1200x1) echo "--mode udp --conns 1 --size 1200 --window $UDP_WINDOW --duration $DURATION" ;;
        udp1200x32) echo "--mode udp --conns 32 --size 1200 --window $UDP_WINDOW --duration $DURATION" ;;
        *) return 1 ;;
    esac
}
scenario_title() {
    case $1 in
        pp1) echo "pingpong 64 B, C=1" ;;
        pp50) echo "pingpong 64 B, C=50" ;;
        pp500) echo "pingpong 64 B, C=500" ;;
        pl16) echo "pipelined 32 B lines, C=50, depth 16" ;;
        pl1) echo "pipelined 32 B lines, C=50, depth 1" ;;
        mt50) echo "2 threads: pingpong 64 B, C=50" ;;
        mt500) echo "2 threads: pingpong 64 B, C=500" ;;
        mt4x50) echo "4 threads on 2 CPUs: pingpong 64 B, C=50" ;;
        mt4x500) echo "4 threads on 2 CPUs: pingpong 64 B, C=500" ;;
        bulk) echo "bulk 16 KiB, C=10" ;;
        churn) echo "churn, $CHURN_CLIENTS clients" ;;
        hold) echo "hold $HOLD_CONNS idle" ;;
        udp64x1) echo "UDP echo 64 B, 1 sender" ;;
        udp64x32) echo "UDP echo 64 B, 32 senders" ;;
        udp1200x1) echo "UDP echo 1,200 B, 1 sender" ;;
        udp1200x32) echo "UDP echo 1,200 B, 32 senders" ;;
    esac
}
for sc in $SCENARIOS; do
    scenario_args "$sc" >/dev/null || { say "run.sh: unknown scenario '$sc' (known: pp1 pp50 pp500 pl16 pl1 mt50 mt500 mt4x50 mt4x500 bulk churn hold udp64x1 udp64x32 udp1200x1 udp1200x32)"; exit 2; }
done

FAILED=0
measure() { # SERVER SCENARIO RUN
    local srv=$1 sc=$2 run=$3 tag="$2.$1.$3" rc=0 bin
    # A server with no part in this scenario (mio has no line server) leaves its cell empty.
    bin=$(server_cmd "$srv" "$sc") || return 0
    bin=${bin%%$'\n'*}
    if [[ ! -x $bin ]]; then
        say "   $srv: skipped (no binary at $bin)"
        return 0
    fi
    if ! start_server "$srv" "$tag" "$sc"; then
        printf '%s\t%s\t%s\tFAIL\t\t\t\t\t\t\n' "$srv" "$sc" "$run" >>"$DATA"
        echo "$srv $sc run $run: server did not start" >>"$RAW/failures"
        FAILED=1
        return 0
    fi
    # shellcheck disable=SC2046
    "${PRIO[@]}" taskset -c "$(loadgen_cpu "$sc")" "$LOADGEN" --addr "$SADDR" $(scenario_args "$sc") \
        --server-pid "$SPID" --timeout "$IO_TIMEOUT" --json >"$LOG/$tag.json" 2>"$LOG/$tag.err" || rc=$?
    local died=""
    if ! kill -0 "$SPID" 2>/dev/null; then
        died="the server died during the run ($(tail -n 1 "$LOG/$tag.server.err")); "
    fi
    stop_server
    local f="$LOG/$tag.json"
    if [[ -n $died ]] || ((rc != 0)) || [[ $(jget ok "$f") != true ]]; then
        local why
        why="$died$(tail -n 1 "$LOG/$tag.err")"
        say "   $srv: FAILED: ${why:-exit status $rc}"
        echo "$srv $sc run $run: ${why:-loadgen exit status $rc}" >>"$RAW/failures"
        printf '%s\t%s\t%s\tFAIL\t\t\t\t\t\t\n' "$srv" "$sc" "$run" >>"$DATA"
        FAILED=1
        return 0
    fi
    local value
    case $sc in
        bulk) value=$(jget mb_per_s "$f") ;;
        hold) value=$(jget rss_per_conn_kib "$f") ;;
        *) value=$(jget msgs_per_s "$f") ;;
    esac
    local fair
    fair=$(awk -v lo="$(jget conn_msgs_min "$f")" -v hi="$(jget conn_msgs_max "$f")" \
        'BEGIN { if (hi != "" && hi > 0) printf "%.4f", lo / hi }')
    printf '%s\t%s\t%s\tok\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$srv" "$sc" "$run" "$value" \
        "$(jget server_cpu_us_per_msg "$f")" "$(jget p50_us "$f")" "$(jget p99_us "$f")" \
        "$(jget p999_us "$f")" "$(jget answered "$f")" "$(jget server_user_us_per_msg "$f")" "$fair" >>"$DATA"
    say "   $srv: $value  (server CPU $(jget server_cpu_us_per_msg "$f") µs/msg)"
}

# ---------------------------------------------------------------- header
CMDLINE="${NICE:+NICE=$NICE }RUNS=$RUNS DURATION=$DURATION SERVERS=\"${ACTIVE[*]}\" SCENARIOS=\"$SCENARIOS\" HOLD_CONNS=$HOLD_CONNS CHURN_CLIENTS=$CHURN_CLIENTS TOKIO_WORKERS=$TOKIO_WORKERS UDP_WINDOW=$UDP_WINDOW SERVER_CPU=$SERVER_CPU LOADGEN_CPU=$LOADGEN_CPU MT_CPU=$MT_CPU STRACE_SCENARIOS=\"$STRACE_SCENARIOS\" bench/run.sh"
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1)
rep "# torsion echo benchmarks"
rep ""
rep "- command: \`$CMDLINE\`"
rep "- machine: $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
rep "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
rep "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT${DIRTY:+ (with uncommitted changes)}"
rep "- servers pinned to CPU $SERVER_CPU, load generator to CPU $LOADGEN_CPU (taskset); tokio_mt runs $TOKIO_WORKERS workers on that same CPU; mt* scenarios: servers and load generator share CPUs $MT_CPU"
((${#SKIPPED[@]} > 0)) && rep "- skipped (no binary${TORSION_SKIP:+; torsion: $TORSION_SKIP}): ${SKIPPED[*]}"
rep ""
# Rough duration (measured here): a timed run takes DURATION + ~0.3 s (start, connect, drain,
# stop), a hold run ~1 s (more on a busy machine), a strace run STRACE_DURATION + ~0.3 s.
EST=$(awk -v r="$RUNS" -v d="$DURATION" -v ns="${#ACTIVE[@]}" -v scs="$SCENARIOS" -v st="$STRACE" -v sd="$STRACE_DURATION" '
    BEGIN { n = split(scs, a, " "); h = 0; for (i = 1; i <= n; i++) if (a[i] == "hold") h++
            t = r * ns * ((n - h) * (d + 0.4) + h * 2) + (st == 1 ? ns * (sd + 0.5) : 0)
            printf "%d min %d s", t / 60, t % 60 }')
say "== $RUNS round(s): scenarios [$SCENARIOS] x servers [${ACTIVE[*]}], $DURATION s each; about $EST"

# ---------------------------------------------------------------- the runs, interleaved
for ((run = 1; run <= RUNS; run++)); do
    for sc in $SCENARIOS; do
        say "-- round $run/$RUNS: $(scenario_title "$sc")"
        for srv in "${ACTIVE[@]}"; do
            measure "$srv" "$sc" "$run"
        done
    done
done

# ---------------------------------------------------------------- syscalls per message
STRACE_NOTE=""
if [[ $STRACE != 1 ]]; then
    STRACE_NOTE="skipped (STRACE=$STRACE)"
elif ! command -v strace >/dev/null; then
    STRACE_NOTE="skipped: strace is not installed (apt-get install strace)"
    say "run.sh: $STRACE_NOTE"
else
    for ssc in $STRACE_SCENARIOS; do
    scenario_args "$ssc" >/dev/null || { say "run.sh: unknown strace scenario '$ssc'"; continue; }
    say "-- syscalls per message: strace -c -f during $(scenario_title "$ssc"), $STRACE_DURATION s per server"
    for srv in "${ACTIVE[@]}"; do
        bin=$(server_cmd "$srv" "$ssc") || continue
        [[ -x ${bin%%$'\n'*} ]] || continue
        tag="strace.$ssc.$srv"
        start_server "$srv" "$tag" "$ssc" || { echo "$srv strace $ssc: server did not start" >>"$RAW/failures"; FAILED=1; continue; }
        strace -c -f -p "$SPID" -o "$LOG/$tag.strace" 2>"$LOG/$tag.strace.err" &
        STRACE_PID=$!
        attached=0
        for ((i = 0; i < 100; i++)); do
            grep -q attached "$LOG/$tag.strace.err" 2>/dev/null && { attached=1; break; }
            kill -0 "$STRACE_PID" 2>/dev/null || break
            sleep 0.05
        done
        if ((attached == 0)); then
            say "run.sh: strace could not attach to $srv: $(head -n 1 "$LOG/$tag.strace.err")"
            kill -INT "$STRACE_PID" 2>/dev/null || true
            wait "$STRACE_PID" 2>/dev/null || true
            STRACE_PID=""
            stop_server
            STRACE_NOTE="strace could not attach (ptrace not permitted?); see $LOG"
            break 2
        fi
        rc=0
        # shellcheck disable=SC2046
        taskset -c "$(loadgen_cpu "$ssc")" "$LOADGEN" --addr "$SADDR" $(scenario_args "$ssc" | sed "s/--duration [^ ]*/--duration $STRACE_DURATION/") \
            --timeout 30 --json >"$LOG/$tag.json" 2>"$LOG/$tag.err" || rc=$?
        kill -INT "$STRACE_PID" 2>/dev/null || true
        wait "$STRACE_PID" 2>/dev/null || true
        STRACE_PID=""
        stop_server
        msgs=$(jget msgs "$LOG/$tag.json")
        total=$(awk '$NF == "total" {print $4}' "$LOG/$tag.strace")
        if ((rc != 0)) || [[ -z $msgs || -z $total ]]; then
            say "   $srv: FAILED under strace: $(tail -n 1 "$LOG/$tag.err")"
            echo "$srv strace run ($ssc): $(tail -n 1 "$LOG/$tag.err")" >>"$RAW/failures"
            FAILED=1
            continue
        fi
        # strace -c columns: % time, seconds, usecs/call, calls, [errors], syscall
        top=$(awk '$1 ~ /^[0-9.]+$/ && $NF != "total" {print $4, $NF}' "$LOG/$tag.strace" |
            sort -rn | head -n 4 | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}')
        printf '%s\t%s\t%s\t%s\t%s\n' "$srv" "$total" "$msgs" "$top" "$(scenario_title "$ssc")" >>"$SYSC"
        say "   $srv: $total syscalls / $msgs messages"
    done
    done
fi

# ---------------------------------------------------------------- the report
ELAPSED=$(($(date +%s) - T_START))
TITLES=""
for sc in $SCENARIOS; do TITLES+="$sc@$(scenario_title "$sc");"; done
awk -F'\t' -v servers="${ACTIVE[*]}" -v scenarios="$SCENARIOS" -v base="$BASE" -v runs="$RUNS" \
    -v titles="$TITLES" -v sysc="$SYSC" -v strace_note="$STRACE_NOTE" -v sdur="$STRACE_DURATION" '
function sortnum(a, n,    i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
function median(list,    a, n) { n = split(list, a, " "); if (n == 0) return ""; sortnum(a, n); return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
function fmt(v, digits) { if (v == "") return "–"; if (v >= 100) return sprintf("%.0f", v); if (v >= 10) return sprintf("%.1f", v); return sprintf("%." digits "f", v) }
function cell(srv, sc, col, digits,    m, s) {
    if (!((srv, sc) in tried)) return "–"
    m = median(vals[srv, sc, col]); s = fmt(m, digits)
    if (m == "") return "FAIL"
    if (fails[srv, sc] > 0) s = s " (" fails[srv, sc] " failed)"
    return s
}
# median over rounds of the per-round ratio BASE/peer (same round = measured back to back)
function ratio(peer, sc, col,    r, list, b, p) {
    list = ""
    for (r = 1; r <= runs; r++) {
        b = one[base, sc, r, col]; p = one[peer, sc, r, col]
        if (b != "" && p != "" && p + 0 > 0) list = list " " (b / p)
    }
    if (list == "") return "–"
    return sprintf("%.2f", median(list))
}
BEGIN {
    ns = split(servers, S, " "); nc = split(scenarios, C, " ")
    n = split(titles, T, ";"); for (i = 1; i <= n; i++) if (T[i] != "") { split(T[i], kv, "@"); title[kv[1]] = kv[2] }
    unit["pp1"] = unit["pp50"] = unit["pp500"] = "msgs/s"; unit["bulk"] = "MB/s"; unit["churn"] = "cycles/s"; unit["hold"] = "KiB RSS per conn (lower is better)"
    per["pp1"] = per["pp50"] = per["pp500"] = "message"; per["bulk"] = "16 KiB chunk"; per["churn"] = "cycle"; per["hold"] = "connection"
    unit["udp64x1"] = unit["udp64x32"] = unit["udp1200x1"] = unit["udp1200x32"] = "datagrams/s"
    per["udp64x1"] = per["udp64x32"] = per["udp1200x1"] = per["udp1200x32"] = "datagram"
    unit["pl16"] = unit["pl1"] = "requests/s"; per["pl16"] = per["pl1"] = "request"
    unit["mt50"] = unit["mt500"] = unit["mt4x50"] = unit["mt4x500"] = "msgs/s"
    per["mt50"] = per["mt500"] = per["mt4x50"] = per["mt4x500"] = "message"
    haspl = 0; for (j = 1; j <= nc; j++) if (index(C[j], "pl") == 1) haspl = 1
    hasbase = 0; for (i = 1; i <= ns; i++) if (S[i] == base) hasbase = 1
}
{
    srv = $1; sc = $2; r = $3; tried[srv, sc] = 1
    if ($4 != "ok") { fails[srv, sc]++; next }
    for (col = 5; col <= 9; col++) if ($col != "") { vals[srv, sc, col] = vals[srv, sc, col] " " $col; one[srv, sc, r, col] = $col }
    if ($11 != "") { vals[srv, sc, 11] = vals[srv, sc, 11] " " $11; one[srv, sc, r, 11] = $11 }
    if ($12 != "") { vals[srv, sc, 12] = vals[srv, sc, 12] " " $12; one[srv, sc, r, 12] = $12; hasfair = 1 }
    # column 10: requests (messages) per second of server CPU
    if ($6 != "" && $6 + 0 > 0) { v = 1e6 / $6; vals[srv, sc, 10] = vals[srv, sc, 10] " " v; one[srv, sc, r, 10] = v }
}
# the BASE/peer ratio of every round, in round order
function rounds(peer, sc, col,    r, list, b, p) {
    list = ""
    for (r = 1; r <= runs; r++) {
        b = one[base, sc, r, col]; p = one[peer, sc, r, col]
        list = list (list == "" ? "" : " ") ((b != "" && p != "" && p + 0 > 0) ? sprintf("%.2f", b / p) : "–")
    }
    return list
}
function table(col, label, digits, only,    i, j, sc, line, hdr, sep) {
    hdr = "| scenario | " label " |"; sep = "|---|---|"
    for (i = 1; i <= ns; i++) { hdr = hdr " " S[i] " |"; sep = sep "---:|" }
    if (hasbase) for (i = 1; i <= ns; i++) if (S[i] != base) { hdr = hdr " " base "/" S[i] " |"; sep = sep "---:|" }
    print hdr; print sep
    for (j = 1; j <= nc; j++) {
        sc = C[j]
        if (only != "" && index(sc, only) != 1) continue
        line = "| " title[sc] " | " (col == 5 || col == 10 ? unit[sc] : per[sc]) " |"
        for (i = 1; i <= ns; i++) line = line " " cell(S[i], sc, col, digits) " |"
        if (hasbase) for (i = 1; i <= ns; i++) if (S[i] != base) line = line " " ratio(S[i], sc, col) " |"
        print line
    }
}
END {
    print "## Throughput (median of " runs " run" (runs > 1 ? "s" : "") "; higher is better except hold)"
    print ""
    table(5, "unit", 2, "")
    print ""
    if (haspl) {
        print "## Requests per server CPU second (pipelined; 10^6 / CPU µs per request; higher is better)"
        print ""
        table(10, "unit", 2, "pl")
        print ""
    }
    print "## Server CPU per message (µs, utime+stime from /proc/PID/stat; lower is better)"
    print ""
    table(6, "per", 2, "")
    print ""
    print "## Server user-space CPU per message (µs, utime only: the server code, not the kernel; lower is better)"
    print ""
    table(11, "per", 3, "")
    print ""
    if (hasbase && ns > 1) {
        print "## Per-round ratios (" base "/peer, rounds in order: throughput / server CPU per message)"
        print ""
        hdr = "| scenario |"; sep = "|---|"
        for (i = 1; i <= ns; i++) if (S[i] != base) { hdr = hdr " " base "/" S[i] " |"; sep = sep "---|" }
        print hdr; print sep
        for (j = 1; j <= nc; j++) {
            sc = C[j]; line = "| " title[sc] " |"
            for (i = 1; i <= ns; i++) if (S[i] != base) line = line " " rounds(S[i], sc, 5) " / " rounds(S[i], sc, 6) " |"
            print line
        }
        print ""
    }
    print "## Latency (µs, p50 / p99 / p99.9; median over runs of each percentile)"
    print ""
    hdr = "| scenario |"; sep = "|---|"
    for (i = 1; i <= ns; i++) { hdr = hdr " " S[i] " |"; sep = sep "---:|" }
    print hdr; print sep
    for (j = 1; j <= nc; j++) {
        sc = C[j]; if (sc == "bulk" || sc == "hold") continue
        line = "| " title[sc] (sc == "churn" ? " (whole cycle)" : (index(sc, "pl") == 1 ? " (request)" : " (round trip)")) " |"
        for (i = 1; i <= ns; i++) {
            p50 = median(vals[S[i], sc, 7]); p99 = median(vals[S[i], sc, 8]); p999 = median(vals[S[i], sc, 9])
            line = line " " (p50 == "" ? "–" : fmt(p50, 1) " / " fmt(p99, 1) " / " fmt(p999, 1)) " |"
        }
        print line
    }
    print ""
    if (hasfair) {
        print "## Fairness (fewest / most messages one connection completed, median over runs; 1.000: every connection served alike)"
        print ""
        hdr = "| scenario |"; sep = "|---|"
        for (i = 1; i <= ns; i++) { hdr = hdr " " S[i] " |"; sep = sep "---:|" }
        print hdr; print sep
        for (j = 1; j <= nc; j++) {
            sc = C[j]; if (sc == "bulk" || sc == "hold" || sc == "churn" || sc == "pp1") continue
            line = "| " title[sc] " |"
            for (i = 1; i <= ns; i++) { m = median(vals[S[i], sc, 12]); line = line " " (m == "" ? "–" : sprintf("%.3f", m)) " |" }
            print line
        }
        print ""
    }
    print "## Syscalls per message or request (strace -c -f, " sdur " s per server and scenario)"
    print ""
    if (strace_note != "") { print strace_note; print "" }
    else {
        print "| scenario | server | syscalls | messages | per message | most frequent |"
        print "|---|---|---:|---:|---:|---|"
        while ((getline l < sysc) > 0) {
            split(l, f, "\t")
            printf "| %s | %s | %d | %d | %.3f | %s |\n", f[5], f[1], f[2], f[3], (f[3] > 0 ? f[2] / f[3] : 0), f[4]
        }
        print ""
        print "strace slows the server several-fold, so these runs batch differently from the timed ones; compare the counts between servers, not with the timed runs."
        print ""
    }
    if (hasbase) print "Ratios are " base "/peer, the median over rounds of the ratio within each round (servers run back to back). For hold and CPU, lower is better, so a ratio below 1 favours " base "."
    else print "No ratio columns: BASE=" base " was not among the servers run."
}' "$DATA" | tee -a "$REPORT"

if [[ -s $RAW/failures ]]; then
    rep ""
    rep "## Failures"
    rep ""
    while IFS= read -r l; do rep "- $l"; done <"$RAW/failures"
fi
rep ""
rep "Total time: $((ELAPSED / 60)) min $((ELAPSED % 60)) s. Raw results: bench/results/raw/ (runs.tsv, log/)."
cp "$REPORT" "$OUT"
say "== report written to $OUT"
exit "$FAILED"
