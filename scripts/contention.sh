#!/usr/bin/env bash
# Cross-instance contention run (see scripts/bench/contention.py): eight
# service processes on one database (pool 4 each), 64 concurrent webhook
# posters, 6 hot pairs. Prints one JSON line per run and fails on any 5xx,
# transport error or inexact stock.
#
#   bash scripts/contention.sh           # one run
#   RUNS=5 bash scripts/contention.sh    # five in a row
#   BIN=/other/build/warehouse-stock bash scripts/contention.sh   # an A/B
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APP_MODE=kafka bash scripts/setup.sh
BIN=${BIN:-./target/release/warehouse-stock}
[ "$BIN" != ./target/release/warehouse-stock ] || cargo build --locked --release
status=0
for _ in $(seq 1 "${RUNS:-1}"); do
  python3 scripts/bench/contention.py --bin "$BIN" "$@" || status=1
done
exit $status
