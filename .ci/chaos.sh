#!/usr/bin/env bash
# The chaos suite, short: each server in SERVERS, on each poller backend, against
# hundreds of hostile and well-behaved clients for CHAOS_SECONDS (default 10) with one
# seed (CHAOS_SEED, default: the time; printed, and in every failure message).
# The long soak is the same command with --seconds 1800 (see README.md, "Chaos").
set -euo pipefail
cd "$(dirname "$0")/.."

# name:kind:clients[:upstream]. A new server is one more entry here, plus its kind of
# clients in chaos/src (see the Kind enum in chaos/src/main.rs). Kind tls runs the example
# on an ssl: endpoint with a certificate the suite makes. With an upstream, that
# example runs first (same backend), and the server is given its address as a second
# argument: the proxy in front of an echo server.
SERVERS=(
  "echo_server:echo:200"
  "chat_server:chat:100"
  "tcp_proxy:proxy:200:echo_server"
  "echo_server:tls:100"
)
SECONDS_EACH="${CHAOS_SECONDS:-10}"
# From the commit, as the fault seed in .ci/run: the same commit draws the same clients.
commit_hex="$(git rev-parse --short=8 HEAD 2>/dev/null || echo 7)"
SEED="${CHAOS_SEED:-$((16#$commit_hex))}"
# Generous: the runs use debug builds on a busy 2-core machine. The bound catches a server
# that stops serving well-behaved clients, not one that is slow.
MAX_LATENCY_MS="${CHAOS_MAX_LATENCY_MS:-10000}"
echo "chaos: seed $SEED (set CHAOS_SEED=$SEED to run the same clients again)"

cargo build --quiet -p torsion-chaos
out=target/chaos
rm -rf "$out"
mkdir -p "$out/epoll" "$out/portable"
names=()
for entry in "${SERVERS[@]}"; do
  case " ${names[*]} " in *" ${entry%%:*} "*) ;; *) names+=("--example" "${entry%%:*}") ;; esac
done
# (every upstream is itself one of the servers above, so it is built and copied too)
cargo build --quiet "${names[@]}"
for entry in "${SERVERS[@]}"; do cp "target/debug/examples/${entry%%:*}" "$out/epoll/"; done
# The portable backend's servers also carry the fault layer: with TORSION_FAULT_SEED set,
# their system calls fail now and then (EAGAIN, EINTR, short transfers, EMFILE on accept,
# spurious and stale events), and the clients must not notice.
cargo build --quiet "${names[@]}" --features torsion-reactor/portable-poller,fault-injection
for entry in "${SERVERS[@]}"; do cp "target/debug/examples/${entry%%:*}" "$out/portable/"; done

failed=0
for backend in epoll portable; do
  label="$backend"
  [ "$backend" = portable ] && label="portable poller, faults injected"
  for entry in "${SERVERS[@]}"; do
    IFS=: read -r name kind clients upstream <<<"$entry"
    extra=()
    title="$name"
    [ "$kind" = tls ] && title="$name on ssl:"
    upstream_pid=
    if [ -n "${upstream:-}" ]; then
      fifo="$out/$backend/$upstream.out"
      rm -f "$fifo"
      mkfifo "$fifo"
      TORSION_FAULT_SEED="$SEED" RUST_LOG=error "$out/$backend/$upstream" \
        tcp:0:interface=127.0.0.1 >"$fifo" &
      upstream_pid=$!
      exec 3<"$fifo"
      read -r -t 60 line <&3 || { echo "chaos: $upstream did not start"; exit 1; }
      cat <&3 >/dev/null &
      exec 3<&-
      addr="${line#listening on }"
      extra=(--server-arg "tcp:host=127.0.0.1:port=${addr##*:}")
    fi
    TORSION_FAULT_SEED="$SEED" target/debug/torsion-chaos --server "$out/$backend/$name" \
      "${extra[@]}" --kind "$kind" --label "$title ($label)" --clients "$clients" \
      --seconds "$SECONDS_EACH" --seed "$SEED" --max-latency-ms "$MAX_LATENCY_MS" || failed=1
    if [ -n "$upstream_pid" ]; then
      kill -TERM "$upstream_pid" 2>/dev/null || true
      wait "$upstream_pid" 2>/dev/null || true
    fi
  done
done
# Leave the examples built for the default backend, as the tests expect them.
cargo build --quiet "${names[@]}"
if [ "$failed" != 0 ]; then
  echo "chaos: FAILED (seed $SEED)"
  exit 1
fi
echo "chaos: every run passed (seed $SEED)"
