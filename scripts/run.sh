#!/usr/bin/env bash
# Prepares the machine (scripts/setup.sh) and runs the service in the
# foreground with a release build. Settings come from the environment or
# .env (see .env.example); with none, it serves on 0.0.0.0:8000 against the
# local PostgreSQL (database "warehouse", created if missing) and Redis.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
cargo build --locked --release
exec ./target/release/warehouse-stock serve
