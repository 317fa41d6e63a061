#!/usr/bin/env bash
# Shared helpers for the setup scripts. Sourced, not run.

CACHE_DIR="${WAREHOUSE_STOCK_CACHE:-$HOME/.cache/warehouse-stock}"
mkdir -p "$CACHE_DIR"
NISSHI_VERSION=0.8.1
# The Kafka-protocol broker for the tests and the bench (tansu's successor),
# built once per machine; the fault tests start private in-memory brokers
# from this binary.
export NISSHI_BIN="${NISSHI_BIN:-$CACHE_DIR/nisshi-$NISSHI_VERSION/bin/nisshi}"

SCHEMATHESIS_VERSION=4.32.5
# Checks the API against its own OpenAPI description (tests/api/schema.rs).
# A virtualenv of its own, so the machine's Python stays as it was.
export SCHEMATHESIS_BIN="${SCHEMATHESIS_BIN:-$CACHE_DIR/schemathesis-$SCHEMATHESIS_VERSION/bin/schemathesis}"

log() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  local port=$1 what=$2
  for _ in $(seq 1 150); do
    port_open "$port" && return 0
    sleep 0.2
  done
  log "$what did not start on port $port"
  return 1
}

# Installs the Debian packages in "$@" that are missing, in one apt run.
apt_install() {
  [ $# -gt 0 ] || return 0
  log "installing $*"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# What building and running the service needs.
install_packages() {
  local missing=()
  command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
  command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  # librdkafka is built from source by the rdkafka crate.
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || missing+=(libcurl4-openssl-dev)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  apt_install "${missing[@]}"
}

# What only the test suite needs, on top of install_packages.
install_test_packages() {
  local missing=()
  # Validates docker-compose.yml; no Docker engine is needed for that.
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  # schemathesis runs in a virtualenv of its own.
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3 python3-venv)
  # The console's tests drive Debian's Chromium through its ChromeDriver;
  # nothing downloads a browser at test time.
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  apt_install "${missing[@]}"
  # promtool and a Prometheus server for the monitoring tests. Without its
  # recommendations: the exporters it suggests are not needed. The package
  # does not start a server here (there is no init system to start it).
  if ! command -v promtool >/dev/null 2>&1; then
    log "installing prometheus"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  fi
}

start_postgres() {
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_for_port 5432 PostgreSQL
  fi
  # The service and the tests connect as postgres over TCP without a
  # password; a fresh Debian install wants one, so trust loopback instead.
  if ! psql -h 127.0.0.1 -U postgres -w -tAc 'SELECT 1' postgres >/dev/null 2>&1; then
    local version hba
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    # Only the postgres role, only from loopback: what the scripts, the
    # tests and the bench connect as. Other roles keep their passwords.
    log "letting the postgres role connect over loopback without a password ($hba)"
    as_root sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    sleep 1
    psql -h 127.0.0.1 -U postgres -w -tAc 'SELECT 1' postgres >/dev/null
  fi
}

start_redis() {
  if ! port_open 6379; then
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
      --appendonly no --dir "$CACHE_DIR" --logfile "$CACHE_DIR/redis.log"
    wait_for_port 6379 Redis
  fi
}

install_schemathesis() {
  [ -x "$SCHEMATHESIS_BIN" ] && return 0
  local venv
  venv="$(dirname "$(dirname "$SCHEMATHESIS_BIN")")"
  log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}
