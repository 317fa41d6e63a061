#!/usr/bin/env bash
# Refreshes `.sqlx/`, the offline description of every compile-time checked
# query, from a scratch database migrated to the current schema. Run it
# after changing a `query!` or a migration, and commit `.sqlx/`. Builds read
# `.sqlx/` (SQLX_OFFLINE in .cargo/config.toml), so they need no database.
# With --check it changes nothing and fails if `.sqlx/` is not what the
# queries and migrations give now (scripts/test.sh runs that).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

start_postgres
db=ws_sqlx_prepare
server="postgres://postgres@127.0.0.1:5432"
export PGOPTIONS="-c client_min_messages=warning"
psql "$server/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
psql "$server/postgres" -qc "CREATE DATABASE $db"
trap 'psql "$server/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
# Each migration in a transaction of its own, as sqlx runs them, but for
# those marked `-- no-transaction`.
for migration in migrations/*.sql; do
  single=(--single-transaction)
  if head -n 1 "$migration" | grep -q '^-- no-transaction'; then single=(); fi
  psql "$server/$db" -q -v ON_ERROR_STOP=1 "${single[@]}" -f "$migration" >/dev/null
done

out="$PWD/.sqlx"
if [ "${1:-}" = "--check" ]; then
  out="$(mktemp -d)"
fi
rm -rf "$out" && mkdir -p "$out"
# Only this crate's macros must expand again, against the live database.
touch src/lib.rs
SQLX_OFFLINE=false DATABASE_URL="$server/$db" SQLX_OFFLINE_DIR="$out" \
  cargo check --locked --all-targets --quiet
if [ "$out" != "$PWD/.sqlx" ]; then
  if ! diff -r "$out" .sqlx >/dev/null; then
    diff -r "$out" .sqlx | head -20 >&2
    log ".sqlx/ is stale: run scripts/sqlx-prepare.sh and commit .sqlx/"
    exit 1
  fi
  rm -rf "$out"
  log ".sqlx/ matches the queries and the migrations"
else
  log "wrote $(ls .sqlx | wc -l) query descriptions to .sqlx/"
fi
