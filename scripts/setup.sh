#!/usr/bin/env bash
# Makes this machine ready to build, test and run warehouse-stock:
# installs what is missing (Debian packages, schemathesis, the nisshi broker)
# and starts PostgreSQL, Redis and the broker unless they already answer.
# Safe to run any number of times: it reuses whatever is already running.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

install_packages
install_schemathesis
start_postgres
start_redis
"$here/broker.sh"
log "ready: PostgreSQL 127.0.0.1:5432, Redis 127.0.0.1:6379, broker 127.0.0.1:${BROKER_PORT:-9092}"
