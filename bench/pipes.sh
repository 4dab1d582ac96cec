#!/usr/bin/env bash
# Standard I/O throughput: torsion's stdio_upper example (a LineReceiver on standard_io) against
# tokio's (peers/tokio_upper) and `tr a-z A-Z` (the floor: no lines, no event loop), each
# upper-casing SIZE of `yes` output read from a pipe and written to a pipe.
#
# usage: bench/pipes.sh          (a default run takes about a minute plus the release builds)
#
# Settings (environment variables, defaults in brackets):
#   RUNS [3]        rounds; each round runs every program once (A B C A B C ...)
#   SIZE [100M]     input size, as `head -c` takes it
#   PROGRAMS ["torsion tokio tr"]
#   NO_BUILD [0]    1 uses the binaries already built
#   OUT [bench/results/pipes.md]
#
# Each run is `cat INPUT | PROGRAM | wc -c`, with the program under /usr/bin/time: wall time,
# CPU time (user + system) and peak resident memory are the program's own. The output size is
# checked against the input's. Medians over the rounds are reported.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
RUNS=${RUNS:-3}
SIZE=${SIZE:-100M}
PROGRAMS=${PROGRAMS:-torsion tokio tr}
NO_BUILD=${NO_BUILD:-0}
OUT=${OUT:-$BENCH_DIR/results/pipes.md}
BENCH_TARGET=${CARGO_TARGET_DIR:-$BENCH_DIR/target}
ROOT_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

if [ ! -x /usr/bin/time ]; then
    echo "pipes.sh: needs GNU time (/usr/bin/time; Debian package \`time\`)" >&2
    exit 1
fi
if [ "$NO_BUILD" != 1 ]; then
    (cd "$ROOT" && cargo build --release --quiet --example stdio_upper)
    (cd "$BENCH_DIR" && cargo build --release --quiet -p peers --bin tokio_upper)
fi

command_for() {
    case "$1" in
        torsion) echo "$ROOT_TARGET/release/examples/stdio_upper" ;;
        tokio) echo "$BENCH_TARGET/release/tokio_upper" ;;
        tr) echo "tr a-z A-Z" ;;
        *) echo "pipes.sh: unknown program $1" >&2; exit 2 ;;
    esac
}

RAW="$BENCH_DIR/results/raw"
mkdir -p "$RAW"
INPUT="$RAW/pipes-input"
{ yes || true; } | head -c "$SIZE" >"$INPUT" # yes ends on SIGPIPE
BYTES=$(stat -c %s "$INPUT")
DATA="$RAW/pipes.tsv"
: >"$DATA"

for round in $(seq 1 "$RUNS"); do
    for program in $PROGRAMS; do
        cmd=$(command_for "$program")
        stats="$RAW/pipes-time"
        # shellcheck disable=SC2086 # the command may carry arguments
        out=$(cat "$INPUT" | /usr/bin/time -o "$stats" -f "%e %U %S %M" $cmd | wc -c)
        if [ "$out" != "$BYTES" ]; then
            echo "pipes.sh: $program wrote $out bytes for $BYTES" >&2
            exit 1
        fi
        read -r wall user sys rss <"$stats"
        echo -e "$program\t$round\t$wall\t$user\t$sys\t$rss" >>"$DATA"
        echo "round $round: $program ${wall}s wall, ${user}s user, ${sys}s sys, ${rss} KiB" >&2
    done
done
rm -f "$INPUT"

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

{
    echo "# Standard I/O throughput"
    echo
    echo "\`bench/pipes.sh\`: RUNS=$RUNS SIZE=$SIZE ($BYTES bytes of \`yes\` output, 2-byte lines),"
    echo "\`cat INPUT | PROGRAM | wc -c\`; medians over the rounds. $(uname -sr), $(nproc) CPUs."
    echo
    echo "| program | wall (s) | CPU user+sys (s) | MB/s (wall) | peak RSS (KiB) |"
    echo "|---|---:|---:|---:|---:|"
    for program in $PROGRAMS; do
        wall=$(awk -v p="$program" '$1 == p { print $3 }' "$DATA" | median)
        cpu=$(awk -v p="$program" '$1 == p { print $4 + $5 }' "$DATA" | median)
        rss=$(awk -v p="$program" '$1 == p { print $6 }' "$DATA" | median)
        rate=$(awk -v b="$BYTES" -v w="$wall" 'BEGIN { printf "%.0f", (w > 0) ? b / w / 1e6 : 0 }')
        echo "| $program | $wall | $cpu | $rate | $rss |"
    done
} >"$OUT"
cat "$OUT"
