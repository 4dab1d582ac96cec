#!/usr/bin/env bash
# Bounded fuzzing of every decoder, for CI (see .ci/fuzz.sh), then a longer property-test
# run (PROPTEST_CASES, default 2000; debug build, reusing what `cargo test --workspace`
# built: about 25 s).
#
#   bash protocols/fuzz/run.sh            # 20 s per target
#   SECONDS_PER_TARGET=60 bash protocols/fuzz/run.sh
set -euo pipefail
cd "$(dirname "$0")"
bash ../../.ci/fuzz.sh . line netstring prefixed
echo "== property tests, ${PROPTEST_CASES:-2000} cases each"
cd ..
PROPTEST_CASES="${PROPTEST_CASES:-2000}" cargo test -p torsion-protocols --test properties
