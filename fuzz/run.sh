#!/usr/bin/env bash
# Bounded fuzzing of the targets in this directory, for CI: each runs SECONDS_PER_TARGET
# (default 20). Needs cargo-fuzz and a nightly toolchain (or RUSTC_BOOTSTRAP=1 with
# stable); without them it says so and exits 0, so a CI without fuzzing tools passes.
#
#   bash fuzz/run.sh
#   SECONDS_PER_TARGET=300 bash fuzz/run.sh conn_state
set -euo pipefail
cd "$(dirname "$0")"
secs="${SECONDS_PER_TARGET:-20}"
TARGETS=("$@")
if [ ${#TARGETS[@]} = 0 ]; then
    TARGETS=(endpoint_grammar chat_lines conn_state proxy_header)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: skipping ${TARGETS[*]} (cargo install cargo-fuzz)"
    exit 0
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    toolchain=()
    export RUSTC_BOOTSTRAP=1
fi
for target in "${TARGETS[@]}"; do
    echo "== fuzz $target for ${secs}s"
    log="$(mktemp)"
    if ! cargo "${toolchain[@]}" fuzz run "$target" -- -max_total_time="$secs" \
        -rss_limit_mb=1024 >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz target $target failed; the input is in fuzz/artifacts/$target" >&2
        exit 1
    fi
    grep -E '^Done' "$log" || tail -3 "$log"
    rm -f "$log"
done
