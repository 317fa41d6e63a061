#!/usr/bin/env bash
# Installs (once; the build is cached) and starts tansu, a Kafka-compatible
# broker, on 127.0.0.1:${BROKER_PORT:-9092} with its in-memory storage.
# Does nothing if something already listens there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

port="${BROKER_PORT:-9092}"
tansu="$TANSU_BIN"
root="$(dirname "$(dirname "$tansu")")"

if [ ! -x "$tansu" ]; then
  log "building tansu $TANSU_VERSION (about 10 minutes, once per machine)"
  cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,postgres \
    --root "$root" --quiet
fi

if port_open "$port"; then
  exit 0
fi
log "starting tansu on 127.0.0.1:$port"
nohup setsid "$tansu" broker \
  --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://tansu/ \
  >"$CACHE_DIR/tansu-$port.log" 2>&1 </dev/null &
wait_for_port "$port" tansu
