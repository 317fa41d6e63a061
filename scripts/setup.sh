#!/usr/bin/env bash
# Makes this machine ready to build and run warehouse-stock: installs the
# Debian packages that are missing, starts PostgreSQL and Redis unless they
# already answer, and, for APP_MODE=kafka, the broker.
# With --tests it also installs what only the test suite needs (Chromium
# and its driver, Prometheus, docker-compose, schemathesis) and starts the
# broker, which the tests always use.
# Safe to run any number of times: it reuses whatever is already running.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

tests=false
[ "${1:-}" = "--tests" ] && tests=true

install_packages
if $tests; then
  install_test_packages
  install_schemathesis
fi
start_postgres
start_redis
if $tests || [ "${APP_MODE:-}" = "kafka" ]; then
  "$here/broker.sh"
  log "ready: PostgreSQL 127.0.0.1:5432, Redis 127.0.0.1:6379, broker 127.0.0.1:${BROKER_PORT:-9092}"
else
  log "ready: PostgreSQL 127.0.0.1:5432, Redis 127.0.0.1:6379 (no broker: APP_MODE is not kafka)"
fi
