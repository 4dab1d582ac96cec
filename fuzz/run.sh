#!/usr/bin/env bash
# Bounded fuzzing of the reactor-side targets (see .ci/fuzz.sh), for CI.
#
#   bash fuzz/run.sh
#   SECONDS_PER_TARGET=300 bash fuzz/run.sh conn_state
set -euo pipefail
cd "$(dirname "$0")"
TARGETS=("$@")
if [ ${#TARGETS[@]} = 0 ]; then
    TARGETS=(endpoint_grammar chat_lines conn_state proxy_header)
fi
bash ../.ci/fuzz.sh . "${TARGETS[@]}"
