#!/usr/bin/env bash
# Bounded fuzzing of cargo-fuzz targets: builds them all first (a failed build is reported
# as one, not as a finding), then runs each for SECONDS_PER_TARGET (default 20). Needs
# cargo-fuzz and a nightly toolchain (or RUSTC_BOOTSTRAP=1 with stable); without them it
# says so and exits 0, so a CI without fuzzing tools passes.
#
#   bash .ci/fuzz.sh <directory holding the fuzz crate> <target>...
set -euo pipefail
dir="$1"
shift
cd "$dir"
secs="${SECONDS_PER_TARGET:-20}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: skipping $* (cargo install cargo-fuzz)"
    exit 0
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    toolchain=()
    export RUSTC_BOOTSTRAP=1
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in "$@"; do
    if ! cargo "${toolchain[@]}" fuzz build "$target" >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz target $target in $dir did not build (the tool or the machine failed, not the code under test)" >&2
        exit 1
    fi
done
for target in "$@"; do
    echo "== fuzz $target for ${secs}s"
    if ! cargo "${toolchain[@]}" fuzz run "$target" -- -max_total_time="$secs" \
        -rss_limit_mb=1024 >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz target $target found a failure; the input is in $dir/artifacts/$target" >&2
        exit 1
    fi
    grep -E '^Done' "$log" || tail -3 "$log"
done
