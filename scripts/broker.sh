#!/usr/bin/env bash
# Installs (once; the build is cached) and starts nisshi, a Kafka-protocol
# broker, on 127.0.0.1:${BROKER_PORT:-9092} with its in-memory storage.
# Does nothing if something already listens there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

port="${BROKER_PORT:-9092}"
nisshi="$NISSHI_BIN"
root="$(dirname "$(dirname "$nisshi")")"

if [ ! -x "$nisshi" ]; then
  # Its `rama` dependency declares rustc 1.96; the toolchain here builds it
  # cleanly all the same, hence --ignore-rust-version.
  log "building nisshi $NISSHI_VERSION (about 15 minutes on 2 cores, once per machine)"
  cargo install nisshi --locked --version "$NISSHI_VERSION" --ignore-rust-version \
    --no-default-features --features dynostore --root "$root" --quiet
fi

if port_open "$port"; then
  exit 0
fi
log "starting nisshi on 127.0.0.1:$port"
nohup setsid "$nisshi" broker \
  --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://nisshi/ \
  >"$CACHE_DIR/nisshi-$port.log" 2>&1 </dev/null &
wait_for_port "$port" nisshi
