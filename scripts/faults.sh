#!/usr/bin/env bash
# The fault-injection scenarios (tests/api/faults.rs): kill -9 restarts,
# PostgreSQL stopped for 10 s, Redis frozen, the broker restarted.
#
#   bash scripts/faults.sh          # the short versions, as in the test suite
#   bash scripts/faults.sh --long   # 200,000 messages and 5 kill -9 restarts
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"
"$here/setup.sh" --tests

if [ "${1:-}" = "--long" ]; then
  export FAULT_MESSAGES="${FAULT_MESSAGES:-200000}" FAULT_KILLS="${FAULT_KILLS:-5}"
fi
# Release build: the long run moves 200,000 messages through a debug build
# otherwise. One scenario at a time, so they do not compete for the cores.
cargo test --release --locked --test api -- faults:: --test-threads=1 --nocapture
