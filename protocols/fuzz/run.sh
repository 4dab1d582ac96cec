#!/usr/bin/env bash
# Bounded fuzzing of every decoder, for CI: each target runs for SECONDS (default 20).
# Needs cargo-fuzz and a nightly toolchain (or RUSTC_BOOTSTRAP=1 with stable); without
# them it says so and exits 0, so a CI without fuzzing tools still passes.
# Then a longer property-test run (PROPTEST_CASES, default 2000; debug build, reusing
# what `cargo test --workspace` built: about 25 s).
#
#   bash protocols/fuzz/run.sh            # 20 s per target
#   SECONDS_PER_TARGET=60 bash protocols/fuzz/run.sh
set -euo pipefail
cd "$(dirname "$0")"
secs="${SECONDS_PER_TARGET:-20}"
if cargo fuzz --version >/dev/null 2>&1; then
    if rustup run nightly rustc --version >/dev/null 2>&1; then
        toolchain=(+nightly)
    else
        toolchain=()
        export RUSTC_BOOTSTRAP=1
    fi
    for target in line netstring prefixed; do
        echo "== fuzz $target for ${secs}s"
        log="$(mktemp)"
        if ! cargo "${toolchain[@]}" fuzz run "$target" -- -max_total_time="$secs" \
            -rss_limit_mb=1024 >"$log" 2>&1; then
            tail -40 "$log" >&2
            echo "fuzz target $target failed; the input is in protocols/fuzz/artifacts/$target" >&2
            exit 1
        fi
        grep -E '^Done' "$log" || tail -3 "$log"
        rm -f "$log"
    done
else
    echo "cargo-fuzz is not installed: skipping the fuzz targets (cargo install cargo-fuzz)"
fi
echo "== property tests, ${PROPTEST_CASES:-2000} cases each"
cd ..
PROPTEST_CASES="${PROPTEST_CASES:-2000}" cargo test -p torsion-protocols --test properties
