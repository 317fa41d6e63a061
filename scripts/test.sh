#!/usr/bin/env bash
# The whole test suite: prepares the machine (scripts/setup.sh), then runs
# every unit and integration test against real PostgreSQL, Redis and broker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

bash scripts/setup.sh --tests
docker-compose -f docker-compose.yml config -q
# Hygiene first: a formatting or lint slip fails in seconds, not after the suite.
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# The compile-time checked queries against the migrated schema itself.
bash scripts/sqlx-prepare.sh --check
# Test databases are disposable; drop the ones earlier runs left behind.
psql -h 127.0.0.1 -U postgres -w -tAc \
  "SELECT datname FROM pg_database WHERE datname LIKE 'ws_test_%'" postgres |
  while read -r db; do
    [ -n "$db" ] && psql -h 127.0.0.1 -U postgres -w -qc "DROP DATABASE \"$db\" WITH (FORCE)" postgres
  done
cargo test --locked --all-targets
