#!/bin/sh
# Waits for PostgreSQL, Redis and (with APP_MODE=kafka) the broker, applies
# migrations, then execs the service.
set -eu

wait_for() {
  host=$1 port=$2 name=$3
  i=0
  until nc -z "$host" "$port" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -ge 120 ]; then
      echo "docker-entrypoint: $name at $host:$port did not come up" >&2
      exit 1
    fi
    sleep 1
  done
}

wait_for "${POSTGRES_HOST:-127.0.0.1}" "${POSTGRES_PORT:-5432}" PostgreSQL
wait_for "${REDIS_HOST:-127.0.0.1}" "${REDIS_PORT:-6379}" Redis
if [ "${APP_MODE:-webhook_only}" = kafka ]; then
  broker=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
  broker=${broker%%,*}
  wait_for "${broker%:*}" "${broker##*:}" Kafka
fi

warehouse-stock migrate
exec warehouse-stock "$@"
