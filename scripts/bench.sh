#!/usr/bin/env bash
# End-to-end benchmark of every workload in BENCHMARKS.md, on this machine,
# with PostgreSQL, Redis and the broker on the same box. Release build,
# defaults as shipped. Checks that every result is exact (a fast wrong run
# fails) and prints the figures as a table.
#
#   bash scripts/bench.sh            # all workloads except growth
#   bash scripts/bench.sh --growth   # also the 10M-stored-events growth run
#   bash scripts/bench.sh --kafka-only [--growth]  # only the Kafka ingest runs
#   bash scripts/bench.sh --sweep    # also step the load up and draw the graphs
#   COUNT=200000 bash scripts/bench.sh   # a shorter Kafka run
#   BENCH_BIN=/tmp/old/warehouse-stock bash scripts/bench.sh --kafka-only  # another build
#   bash scripts/bench.sh --webhook-only   # only the webhook ingest run
#   FEED=off bash scripts/bench.sh --kafka-only   # with the stock-change relay off
#
# The stock-change relay runs in every ingest run (FEED=on, the default):
# the Kafka run then also reports how long after the ingest the relay had
# published everything, the commit-to-acknowledgement latency of the
# changes (p50 and p99, from the service's histogram), and how fast a
# reader follows the HTTP feed from the start.
#
# Every run also measures PostgreSQL's own ceiling on this machine (a \copy
# of the run's audit log into an unindexed table) and prints the Kafka rate
# as a fraction of it, so figures from machines of different speed compare.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

COUNT=${COUNT:-1000000}
GROWTH=0
KAFKA_ONLY=0
WEBHOOK_ONLY=0
SWEEP=0
for arg in "$@"; do
  case $arg in
    --growth) GROWTH=1 ;;
    --kafka-only) KAFKA_ONLY=1 ;;
    --webhook-only) WEBHOOK_ONLY=1 ;;
    --sweep) SWEEP=1 ;;
    *) echo "usage: bash scripts/bench.sh [--kafka-only | --webhook-only] [--growth] [--sweep]" >&2; exit 2 ;;
  esac
done
FEED=${FEED:-on}
case $FEED in
  on) export STOCK_CHANGES_TOPIC="bench_changes_$(date +%s)" ;;
  off) export STOCK_CHANGES_TOPIC= ;;
  *) echo "FEED must be on or off" >&2; exit 2 ;;
esac
# Where --sweep writes its samples and graphs (committed, linked from
# BENCHMARKS.md).
OUT=${BENCH_OUT:-docs/bench}
PORT=${BENCH_PORT:-18080}
WORK=$(mktemp -d)
PSQL=(psql -h 127.0.0.1 -U postgres -w -qtA)
# BENCH_BIN runs another build (an A/B against an earlier commit's binary).
BIN=${BENCH_BIN:-./target/release/warehouse-stock}
declare -A RESULT

log() { printf '\n[bench] %s\n' "$*" >&2; }
fail() { printf '\n[bench] FAILED: %s\n' "$*" >&2; exit 1; }

APP_MODE=kafka bash scripts/setup.sh
need=()
command -v wrk >/dev/null || need+=(wrk)
[ "$KAFKA_ONLY" = 1 ] || [ "$WEBHOOK_ONLY" = 1 ] || command -v nginx >/dev/null || need+=(nginx)
[ "$SWEEP" = 0 ] || command -v gnuplot >/dev/null || need+=(gnuplot-nox)
if [ ${#need[@]} -gt 0 ]; then
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -n "${BENCH_BIN:-}" ] || cargo build --locked --release

fresh_db() { "${PSQL[@]}" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" postgres >/dev/null; }

# A server with autovacuum off never gathers statistics on the tables, which
# start empty here, so PostgreSQL keeps the plans it made for empty tables
# (sequential scans) as they grow. Deployments run autovacuum; where this
# server does not, the bench does its analyzing in its place: every 5 s it
# analyzes each table that changed by autovacuum's default threshold (50
# rows plus 10% of the table) since it was last analyzed. Analyzing every
# table every 5 s instead read 30,000 random pages of the audit log each
# time in the growth run, which autovacuum would not do.
AUTOVACUUM=$("${PSQL[@]}" -c "SHOW autovacuum" postgres)
ANALYZER=""
ANALYZE_CHANGED="DO \$\$ DECLARE t regclass; BEGIN
  FOR t IN SELECT s.relid FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
           WHERE s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0) LOOP
    EXECUTE format('ANALYZE %s', t);
  END LOOP; END \$\$"
start_analyzer() { # db
  [ "$AUTOVACUUM" = "on" ] && return 0
  ( while :; do sleep 5; "${PSQL[@]}" -c "$ANALYZE_CHANGED" "$1" >/dev/null 2>&1 || true; done ) &
  ANALYZER=$!
}
stop_analyzer() {
  if [ -n "$ANALYZER" ]; then kill "$ANALYZER" 2>/dev/null || true; fi
  ANALYZER=""
}
[ "$AUTOVACUUM" = "on" ] || log "autovacuum is off on this server: analyzing the bench database every 5 s in its place"

# Each workload starts from a checkpoint, so the previous one's WAL (a 1M
# event ingest writes gigabytes) is not flushed in the middle of the next.
checkpoint() { "${PSQL[@]}" -c "CHECKPOINT" postgres >/dev/null; }

start_service() { # db, extra env...
  checkpoint
  local db=$1; shift
  env POSTGRES_DB="$db" APP_PORT="$PORT" APP_HOST=127.0.0.1 LOG_LEVEL=warn "$@" "$BIN" serve \
    >"$WORK/service.log" 2>&1 &
  SERVICE=$!
  start_analyzer "$db"
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && return 0
    sleep 0.1
  done
  fail "the service did not become ready (see $WORK/service.log)"
}

stop_service() {
  stop_analyzer
  kill "$SERVICE" 2>/dev/null || true
  wait "$SERVICE" 2>/dev/null || true
}

# The broker keeps topics in memory: a run deletes the ones it made, or
# sixteen runs leave gigabytes behind and the later runs slow down.
BENCH_TOPICS=()
drop_topics() {
  local topic
  for topic in "${BENCH_TOPICS[@]}" ${STOCK_CHANGES_TOPIC:+"$STOCK_CHANGES_TOPIC"}; do
    "$NISSHI_BIN" topic delete --broker "tcp://${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}" \
      "$topic" >/dev/null 2>&1 || true
  done
}
trap 'stop_service; drop_topics' EXIT

# Events the service has committed as applied so far, and the consumer lag
# summed over partitions, from its metrics: the counter moves only after a
# batch commits. Polling PostgreSQL instead (a psql process and a backend
# five times a second) took CPU from the run.
applied_and_lag() {
  curl -s "http://127.0.0.1:$PORT/metrics" |
    awk '/^events_total\{/ && /source="kafka"/ && /outcome="applied"/ {n += $2}
         /^kafka_consumer_lag\{/ {lag += $2}
         END {printf "%d %d\n", n, lag}'
}

# The relay's figures from the service's metrics: changes published, and
# the p50 and p99 of its commit-to-acknowledgement latency (interpolated
# in the histogram's buckets).
feed_figures() {
  curl -s "http://127.0.0.1:$PORT/metrics" | python3 -c '
import re, sys
buckets, published = [], 0
for line in sys.stdin:
    if line.startswith("stock_changes_published_total "):
        published = int(float(line.split()[1]))
    m = re.match(r"stock_changes_publish_latency_seconds_bucket\{le=\"([^\"]+)\"\} (\S+)", line)
    if m:
        buckets.append((float(m.group(1)), float(m.group(2))))
def quantile(q):
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return float("nan")
    lo, below = 0.0, 0.0
    for le, n in buckets:
        if n >= q * total:
            if le == float("inf"):
                return lo
            return lo + (le - lo) * (q * total - below) / max(n - below, 1e-9)
        lo, below = le, n
    return lo
print(published, f"{quantile(0.5) * 1000:.0f}", f"{quantile(0.99) * 1000:.0f}")
'
}

# A reader following the HTTP feed from `after` until it has `count`
# changes, 1000 a page, on one connection. Prints changes per second.
follow_feed() { # after, count
  python3 - "$PORT" "$1" "$2" <<'PY'
import http.client, json, sys, time
port, after, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port)
seen, started, last = 0, time.time(), None
while seen < count:
    conn.request("GET", f"/api/v1/stock/changes?after={after}&limit=1000&wait=5")
    page = json.loads(conn.getresponse().read())
    for item in page["items"]:
        assert last is None or item["seq"] > last, "out of order"
        last = item["seq"]
    seen += len(page["items"])
    after = page["next_after"]
    if not page["items"] and time.time() - started > 120:
        sys.exit(f"the feed gave {seen} of {count}")
print(round(seen / (time.time() - started)))
PY
}

# PostgreSQL's CPU so far, in clock ticks: what the postmaster's exited
# children (its backends) used. The service's connections close when it
# stops, so the difference across a run is the CPU the run cost PostgreSQL:
# on a shared machine a steadier A/B figure than the rate. Empty where the
# server is not on this machine.
pg_cpu_ticks() {
  local pm
  pm=$(pgrep -o -x postgres 2>/dev/null) || return 0
  awk '{print $16 + $17}' "/proc/$pm/stat" 2>/dev/null || true
}

# Kafka ingest: pre-produce COUNT movements, then time from consumer start
# until every effect is committed in PostgreSQL. Prints the rate.
kafka_ingest() { # db, topic
  local db=$1 topic=$2 expected
  expected=$(python3 -c "import json,sys; print(json.load(open('$WORK/expect.json'))['applied'])")
  local start end stored=0 peak=0 rss base shown="" last=-1 moved=$SECONDS
  # Events stored before the run (the growth run's 10M), counted before the
  # clock starts. A fresh database does not exist yet: the service creates it.
  base=$("${PSQL[@]}" -c "SELECT count(*) FROM event_log" "$db" 2>/dev/null || echo 0)
  local first_seq
  first_seq=$("${PSQL[@]}" -c "SELECT coalesce(max(seq), 0) FROM event_log" "$db" 2>/dev/null || echo 0)
  # Events stored before the run were published before it, as far as this
  # run's relay is concerned: it starts at the end of the log.
  if [ "$base" != 0 ] && [ -n "$STOCK_CHANGES_TOPIC" ]; then
    "${PSQL[@]}" -c "INSERT INTO change_relay (topic, position)
      SELECT '$STOCK_CHANGES_TOPIC', coalesce(max(seq), 0) FROM event_log" "$db" >/dev/null
  fi
  checkpoint # before the clock starts; start_service's own is then instant
  local pg_ticks
  pg_ticks=$(pg_cpu_ticks)
  start=$(date +%s.%N)
  start_service "$db" APP_MODE=kafka KAFKA_TOPIC="$topic" KAFKA_DLQ_TOPIC="$topic.dlq" \
    KAFKA_GROUP_ID="bench-$RANDOM$RANDOM"
  # One sample a second: elapsed seconds, events applied, consumer lag.
  echo "t_s applied lag" >"$WORK/ingest.dat"
  local lag sampled=-1
  while :; do
    rss=$(awk '/VmHWM/{print $2}' "/proc/$SERVICE/status")
    [ "$rss" -gt "$peak" ] && peak=$rss
    read -r stored lag < <(applied_and_lag)
    if [ "$SECONDS" != "$sampled" ]; then
      sampled=$SECONDS
      echo "$(python3 -c "print(round($(date +%s.%N) - $start, 2))") $stored $lag" >>"$WORK/ingest.dat"
    fi
    [ $((SECONDS % 5)) = 0 ] && [ "$SECONDS" != "$shown" ] && shown=$SECONDS && printf '[bench] kafka ingest: %s / %s events stored\n' "$stored" "$expected" >&2
    [ "$stored" -ge "$expected" ] && break
    kill -0 "$SERVICE" || fail "the service died (see $WORK/service.log)"
    # A run that stops short (records lost or a partition stalled) would
    # otherwise poll for ever.
    [ "$stored" != "$last" ] && last=$stored && moved=$SECONDS
    [ $((SECONDS - moved)) -lt 60 ] || fail "no progress for 60 s at $stored of $expected events (see $WORK/service.log)"
    # The poll (a curl and two awks) is CPU taken from the run: at five per
    # second it was 5% of both cores. Once a second until the end is near,
    # then every 0.1 s, so the end is still timed to a tenth of a second.
    if [ $((stored * 10)) -lt $((expected * 9)) ]; then sleep 1; else sleep 0.1; fi
  done
  end=$(date +%s.%N)
  FEED_RESULT="off"
  if [ -n "$STOCK_CHANGES_TOPIC" ]; then
    local published p50 p99 caught follow
    while :; do
      read -r published p50 p99 < <(feed_figures)
      [ "$published" -ge "$expected" ] && break
      python3 -c "import sys; sys.exit(0 if $(date +%s.%N) - $end < 300 else 1)" ||
        fail "the relay published $published of $expected changes"
      sleep 0.2
    done
    caught=$(python3 -c "print(round($(date +%s.%N) - $end, 1))")
    follow=$(follow_feed "$first_seq" "$expected")
    FEED_RESULT="relay done $caught s after the ingest, commit to ack p50 ${p50} ms, p99 ${p99} ms; HTTP reader $follow changes/s"
    log "stock-change feed: $FEED_RESULT"
  fi
  # Batches run again after meeting a concurrent batch (see the ledger).
  RETRIES=$(curl -s "http://127.0.0.1:$PORT/metrics" |
    awk '/^ledger_batch_retries_total\{/ {n += $2} END {printf "%d", n}')
  stop_service
  PG_CPU="not measured (the server is not on this machine)"
  if [ -n "$pg_ticks" ]; then
    pg_ticks=$(($(pg_cpu_ticks) - pg_ticks))
    PG_CPU=$(python3 -c "t = $pg_ticks / $(getconf CLK_TCK); print(f'{t:.1f} s = {t * 1e6 / $COUNT:.1f} µs per record')")
  fi
  # Exactness: the audit log and every stock figure.
  local applied
  applied=$("${PSQL[@]}" -c "SELECT count(*) FROM event_log WHERE outcome = 'applied'" "$db")
  [ "$((applied - base))" -eq "$expected" ] || fail "applied $((applied - base)), expected $expected"
  python3 - "$WORK/expect.json" >"$WORK/expect.csv" <<'PY'
import json, sys
for s in json.load(open(sys.argv[1]))["stock"]:
    print(f'{s["warehouse_id"]},{s["product_id"]},{s["quantity"]}')
PY
  local wrong
  wrong=$("${PSQL[@]}" "$db" <<SQL
CREATE TEMP TABLE expected (warehouse_id uuid, product_id uuid, quantity bigint);
\copy expected FROM '$WORK/expect.csv' WITH (FORMAT csv)
SELECT count(*) FROM expected e LEFT JOIN stock s USING (warehouse_id, product_id)
WHERE coalesce(s.quantity, 0) <> e.quantity;
SQL
)
  [ "$(echo "$wrong" | tail -n1)" = "0" ] || fail "stock differs from the generator's model in $wrong pairs"
  RATE=$(python3 -c "print(round($COUNT / ($end - $start)))")
  # VmHWM is in KiB; MB here are MiB, to a tenth (the memory target is 50).
  PEAK_MB=$(python3 -c "print(round($peak / 1024, 1))")
  log "kafka ingest: $COUNT records in $(python3 -c "print(round($end - $start, 1))") s = $RATE records/s, peak RSS $PEAK_MB MB, $RETRIES batch retries, PostgreSQL CPU $PG_CPU, exact"
}

# PostgreSQL's own ceiling on this machine, now: the rows per second a
# \copy writes the audit log's rows (the entries the run just stored, as
# they are) into a table of the same columns with no index, no constraint
# and no trigger. The ingest does far more per event (reads, the rules,
# four indexes, the stock rows, a transaction per batch); the ratio of its
# rate to this one is what compares across machines of different speed.
pg_ceiling() { # db
  local db=$1 rows start end
  "${PSQL[@]}" -c "\copy (SELECT * FROM event_log LIMIT $COUNT) TO '$WORK/ceiling.csv' WITH (FORMAT csv)" "$db"
  rows=$(wc -l <"$WORK/ceiling.csv")
  "${PSQL[@]}" -c "DROP TABLE IF EXISTS bench_ceiling; CREATE TABLE bench_ceiling (LIKE event_log)" "$db"
  checkpoint
  start=$(date +%s.%N)
  "${PSQL[@]}" -c "\copy bench_ceiling FROM '$WORK/ceiling.csv' WITH (FORMAT csv)" "$db"
  end=$(date +%s.%N)
  "${PSQL[@]}" -c "DROP TABLE bench_ceiling" "$db"
  rm -f "$WORK/ceiling.csv"
  CEILING=$(python3 -c "print(round($rows / ($end - $start)))")
  log "PostgreSQL ceiling: \\copy of $rows audit-log rows into an unindexed table at $CEILING rows/s"
}

# Webhook ingest: unique single-event POSTs at 64 connections for 30 s,
# then checked against PostgreSQL.
webhook_run() {
  log "webhook ingest: unique single-event POSTs, 64 connections, 30 s"
  fresh_db ws_bench_webhook
  start_service ws_bench_webhook
  wrk -t2 -c64 -d30s --latency -s scripts/bench/webhook.lua "http://127.0.0.1:$PORT" | tee "$WORK/webhook.txt"
  local published p50 p99
  WEBHOOK_FEED="off"
  if [ -n "$STOCK_CHANGES_TOPIC" ]; then
    sleep 2 # the relay's last round
    read -r published p50 p99 < <(feed_figures)
    WEBHOOK_FEED="$published changes published, commit to ack p50 ${p50} ms, p99 ${p99} ms"
    log "stock-change feed during the webhook run: $WEBHOOK_FEED"
  fi
  stop_service
  local requests non2xx applied total
  requests=$(awk '/requests in/{print $1}' "$WORK/webhook.txt")
  non2xx=$(awk '/Non-2xx/{print $4}' "$WORK/webhook.txt"); non2xx=${non2xx:-0}
  applied=$("${PSQL[@]}" -c "SELECT count(*) FROM event_log WHERE outcome = 'applied'" ws_bench_webhook)
  total=$("${PSQL[@]}" -c "SELECT coalesce(sum(quantity), 0) FROM stock" ws_bench_webhook)
  [ "$non2xx" = 0 ] || fail "$non2xx webhook requests failed"
  [ "$total" = "$applied" ] || fail "stock total $total differs from $applied applied arrivals"
  [ "$applied" -ge "$requests" ] || fail "$requests answered but only $applied applied"
  RESULT[webhook]="$(awk '/Requests\/sec/{printf "%d", $2}' "$WORK/webhook.txt") requests/s, p99 $(awk '$1=="99%"{print $2}' "$WORK/webhook.txt")"
}

if [ "$WEBHOOK_ONLY" = 1 ]; then
  webhook_run
  printf '\n| figure | result |\n|---|---|\n'
  printf '| webhook ingest (64 connections, 30 s) | %s |\n' "${RESULT[webhook]}"
  printf '| stock-change feed (%s) during it | %s |\n' "$FEED" "$WEBHOOK_FEED"
  exit 0
fi

log "producing $COUNT movements (50 warehouses x 2000 products, 25% departures, 5% duplicates)"
# The reads whose cost must not grow with the log, on database $1 (its
# size $2 names the figures): a product across warehouses (random
# products), and the first page of the movements in transit (the console's
# default view). Each is checked against PostgreSQL before it is timed.
read_runs() { # database, size label
  local db=$1 size=$2 product got want
  start_service "$db"
  log "GET products/{p}/stock on $size events, random products, wrk -t2 -c64 -d15s"
  "${PSQL[@]}" -c "SELECT DISTINCT product_id FROM stock" "$db" >"$WORK/products.txt"
  product=$(head -n1 "$WORK/products.txt")
  got=$(curl -s "http://127.0.0.1:$PORT/api/v1/products/$product/stock" | python3 -c "import json,sys; print(json.load(sys.stdin)['total'])")
  want=$("${PSQL[@]}" -c "SELECT sum(quantity) FROM stock WHERE product_id = '$product'" "$db")
  [ "$got" = "$want" ] || fail "product total $got, PostgreSQL has $want"
  BENCH_LINES="$WORK/products.txt" BENCH_PREFIX=/api/v1/products/ BENCH_SUFFIX=/stock \
    wrk -t2 -c64 -d15s --latency -s scripts/bench/random_get.lua \
    "http://127.0.0.1:$PORT" | tee "$WORK/product.txt"
  RESULT[product_$size]="$(awk '/Requests\/sec/{printf "%d", $2}' "$WORK/product.txt") requests/s, p99 $(awk '$1=="99%"{print $2}' "$WORK/product.txt")"

  log "GET movements?status=in_transit (first page of 100) on $size events, wrk -t2 -c64 -d15s"
  local url="http://127.0.0.1:$PORT/api/v1/movements?status=in_transit&limit=100" code
  code=$(curl -s -o "$WORK/page.json" -w '%{http_code}' "$url")
  if [ "$code" != 200 ]; then
    # An earlier build reads the whole log for this page: on a large one
    # it runs out of REQUEST_TIMEOUT_MS.
    RESULT[transit_$size]="one request answers $code after $(curl -s -o /dev/null -w '%{time_total}' "$url") s"
    stop_service
    return
  fi
  got=$(python3 -c "import json; print(len(json.load(open('$WORK/page.json'))['items']))")
  [ "$got" -gt 0 ] || fail "no movement in transit on $db"
  wrk -t2 -c64 -d15s --latency "$url" | tee "$WORK/transit.txt"
  RESULT[transit_$size]="$(awk '/Requests\/sec/{printf "%d", $2}' "$WORK/transit.txt") requests/s, p99 $(awk '$1=="99%"{print $2}' "$WORK/transit.txt")"
  stop_service
}

TOPIC="bench_$(date +%s)"
BENCH_TOPICS+=("$TOPIC" "$TOPIC.dlq")
KAFKA_TOPIC=$TOPIC KAFKA_DLQ_TOPIC="$TOPIC.dlq" "$BIN" produce --count "$COUNT" --warehouses 50 \
  --products 2000 --departure-share 0.25 --duplicate-share 0.05 --seed 7 --expect "$WORK/expect.json"

fresh_db ws_bench
kafka_ingest ws_bench "$TOPIC"
cp "$WORK/ingest.dat" "$WORK/ingest-empty.dat"
pg_ceiling ws_bench
RATIO=$(python3 -c "print(f'{$RATE / $CEILING:.2f}')")
RESULT[kafka]="$RATE records/s = $RATIO x the PostgreSQL ceiling"
RESULT[ceiling]="$CEILING rows/s"
RESULT[memory]="$PEAK_MB MB"
RESULT[pg_cpu]="$PG_CPU"
EMPTY_RATE=$RATE

# wrk's figures as one line: requests/s, p50 and p99 in ms, errors (non-2xx
# answers plus socket errors).
wrk_line() { # file
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    n, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
errors += sum(int(n) for n in m.groups()) if m else 0
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {errors}")
PY
}

# pgbench's figures as one line: transactions/s in `unit`, and the mean
# latency.
pgbench_line() { # file, unit
  awk -v unit="$2" '/^tps/ {t = $3} /^latency average/ {a = $4}
    END {printf "%d %s, mean %s ms", t, unit, a}' "$1"
}

# The anchors of the HTTP rows: what this machine's Redis, PostgreSQL and a
# static web server do on their own, with the same 64 connections, in the
# same run. A cache hit is an HTTP answer plus a Redis GET, a cache miss
# one more PostgreSQL point select, and an acknowledged webhook write waits
# for a commit: each row is read against the ceiling of the part it waits
# on. The service is stopped first, so each anchor has the machine to itself.
anchor_runs() {
  local static="$WORK/static" conf="$WORK/nginx.conf"
  log "anchors: nginx static file, redis-benchmark GET, pgbench point selects and one-row commits, 64 connections"
  mkdir -p "$static" && chmod 755 "$WORK" "$static"
  printf '%s' "$1" >"$static/stock.json" && chmod 644 "$static/stock.json"
  cat >"$conf" <<NGINX
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
daemon off;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/json;
  server { listen 127.0.0.1:$((PORT + 1)); root $static; }
}
NGINX
  nginx -c "$conf" -p "$WORK" & local nginx_pid=$!
  wait_for_port $((PORT + 1)) nginx
  wrk -t2 -c64 -d15s --latency "http://127.0.0.1:$((PORT + 1))/stock.json" >"$WORK/nginx.txt"
  kill "$nginx_pid"; wait "$nginx_pid" 2>/dev/null || true
  local rps p99 errors
  read -r rps _ p99 errors < <(wrk_line "$WORK/nginx.txt")
  [ "$errors" = 0 ] || fail "nginx answered $errors requests with an error"
  RESULT[nginx]="$rps requests/s, p99 $p99 ms"

  # redis-benchmark's GET reads one key of the cached answer's size, set by
  # its SET test first; database 15, which nothing else here uses.
  redis-benchmark -h 127.0.0.1 -p 6379 --dbnum 15 -c 64 --threads 2 -n 400000 -d "${#1}" \
    -t set,get --csv >"$WORK/redis.csv"
  redis-cli -n 15 unlink key:__rand_int__ >/dev/null
  RESULT[redis]=$(awk -F'","' '/^"GET"/ {printf "%d requests/s, p99 %s ms", $2, $7}' "$WORK/redis.csv")

  fresh_db ws_bench_anchor
  "${PSQL[@]}" -c "CREATE DATABASE ws_bench_anchor" postgres >/dev/null
  pgbench -h 127.0.0.1 -U postgres -i -s 1 -q ws_bench_anchor >/dev/null 2>&1
  pgbench -h 127.0.0.1 -U postgres -n -S -M prepared -c 64 -j 2 -T 15 ws_bench_anchor >"$WORK/select.txt" 2>&1
  printf 'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, :client_id, 1, now());\n' \
    >"$WORK/commit.sql"
  pgbench -h 127.0.0.1 -U postgres -n -M prepared -c 64 -j 2 -T 15 -f "$WORK/commit.sql" \
    ws_bench_anchor >"$WORK/commit.txt" 2>&1
  fresh_db ws_bench_anchor
  RESULT[pg_select]=$(pgbench_line "$WORK/select.txt" selects/s)
  RESULT[pg_commit]=$(pgbench_line "$WORK/commit.txt" commits/s)
}

if [ "$KAFKA_ONLY" = 0 ]; then
# The 100,000 stocked pairs, for the cache-miss run.
"${PSQL[@]}" -c "SELECT warehouse_id || '/' || product_id FROM stock" ws_bench >"$WORK/pairs.txt"

webhook_run

log "GET stock, cache hit: one hot pair, wrk -t2 -c64 -d15s"
start_service ws_bench
hot=$(head -n1 "$WORK/pairs.txt")
want=$("${PSQL[@]}" -c "SELECT quantity FROM stock WHERE warehouse_id || '/' || product_id = '$hot'" ws_bench)
hit_body=$(curl -s "http://127.0.0.1:$PORT/api/v1/warehouse/${hot/\//\/products\/}")
got=$(python3 -c "import json,sys; print(json.load(sys.stdin)['quantity'])" <<<"$hit_body")
[ "$got" = "$want" ] || fail "GET answered $got, PostgreSQL has $want"
wrk -t2 -c64 -d15s --latency "http://127.0.0.1:$PORT/api/v1/warehouse/${hot/\//\/products\/}" | tee "$WORK/hit.txt"
RESULT[hit]="$(awk '/Requests\/sec/{printf "%d", $2}' "$WORK/hit.txt") requests/s, p99 $(awk '$1=="99%"{print $2}' "$WORK/hit.txt")"

log "GET stock, cache miss: random pairs out of $(wc -l <"$WORK/pairs.txt"), cache emptied first"
redis-cli --scan --pattern 'warehouse-stock:ws_bench:*' | xargs -r -n 1000 redis-cli unlink >/dev/null
BENCH_LINES="$WORK/pairs.txt" BENCH_PREFIX=/api/v1/warehouse/ BENCH_JOIN=/products/ \
  wrk -t2 -c64 -d15s --latency -s scripts/bench/random_get.lua \
  "http://127.0.0.1:$PORT" | tee "$WORK/miss.txt"
RESULT[miss]="$(awk '/Requests\/sec/{printf "%d", $2}' "$WORK/miss.txt") requests/s, p99 $(awk '$1=="99%"{print $2}' "$WORK/miss.txt")"

# The lookups over time and in bulk, on the database the Kafka run left
# (about 10 applied entries per pair). Each is checked once against
# PostgreSQL before it is timed.
check_history() {
  local pair=$1 path got want
  path="/api/v1/warehouses/${pair/\//\/products\/}/history?limit=1000"
  got=$(curl -s "http://127.0.0.1:$PORT$path" | python3 -c "import json,sys; i=json.load(sys.stdin)['items']; print(i[-1]['stock_after'] if i else 0)")
  want=$("${PSQL[@]}" -c "SELECT quantity FROM stock WHERE warehouse_id || '/' || product_id = '$pair'" ws_bench)
  [ "$got" = "$want" ] || fail "history of $pair ends at $got, PostgreSQL has $want"
}
check_history "$hot"
log "GET history (first page of 100), random pairs, wrk -t2 -c64 -d15s"
BENCH_LINES="$WORK/pairs.txt" BENCH_PREFIX=/api/v1/warehouses/ BENCH_JOIN=/products/ \
  BENCH_SUFFIX='/history?limit=100' wrk -t2 -c64 -d15s --latency -s scripts/bench/random_get.lua \
  "http://127.0.0.1:$PORT" | tee "$WORK/history.txt"
RESULT[history]="$(awk '/Requests\/sec/{printf "%d", $2}' "$WORK/history.txt") requests/s, p99 $(awk '$1=="99%"{print $2}' "$WORK/history.txt")"

log "POST stock/lookup, 100 random pairs each, wrk -t2 -c16 -d15s"
got=$(curl -s -X POST -H 'Content-Type: application/json' "http://127.0.0.1:$PORT/api/v1/stock/lookup" \
  -d "{\"items\":[{\"warehouse_id\":\"${hot%/*}\",\"product_id\":\"${hot#*/}\"}]}" |
  python3 -c "import json,sys; print(json.load(sys.stdin)['items'][0]['quantity'])")
[ "$got" = "$want" ] || fail "bulk lookup answered $got, PostgreSQL has $want"
BENCH_PAIRS="$WORK/pairs.txt" BENCH_BULK=100 wrk -t2 -c16 -d15s --latency -s scripts/bench/lookup.lua \
  "http://127.0.0.1:$PORT" | tee "$WORK/lookup.txt"
bulk_rate=$(awk '/Requests\/sec/{printf "%d", $2}' "$WORK/lookup.txt")
single_rate=$(awk '/Requests\/sec/{printf "%d", $2}' "$WORK/miss.txt")
RESULT[lookup]="$bulk_rate requests/s = $((bulk_rate * 100)) pairs/s ($(python3 -c "print(round($bulk_rate * 100 / $single_rate, 1))")x the single-GET cache-miss run's pairs/s), p99 $(awk '$1=="99%"{print $2}' "$WORK/lookup.txt")"

stop_service
read_runs ws_bench 1M
anchor_runs "$hit_body"
fi

if [ "$GROWTH" = 1 ]; then
  log "growth: 10,000,000 events already stored, then the same Kafka ingest"
  fresh_db ws_bench_growth
  POSTGRES_DB=ws_bench_growth LOG_LEVEL=warn "$BIN" migrate
  "${PSQL[@]}" ws_bench_growth <<'SQL'
INSERT INTO event_log (message_id, source, movement_id, event, warehouse_id, product_id,
                       quantity, occurred_at, outcome, received_at, opens_movement, stock_after)
SELECT 'seed-' || i, 'seed', md5('m' || i)::uuid, 'arrival', md5('w' || (i % 500))::uuid,
       md5('p' || (i % 20000))::uuid, 1, now(), 'applied', now(), true,
       -- the pair is i % 20000; this is its (i + 19999) / 20000-th arrival of 1
       (i + 19999) / 20000
FROM generate_series(1, 10000000) AS i;
INSERT INTO stock (warehouse_id, product_id, quantity)
SELECT warehouse_id, product_id, count(*) FROM event_log GROUP BY 1, 2;
VACUUM ANALYZE;
SQL
  # Buffer statistics of the run alone: where the growth run's time goes.
  "${PSQL[@]}" -c "SELECT pg_stat_reset()" ws_bench_growth >/dev/null
  kafka_ingest ws_bench_growth "$TOPIC"
  log "growth run: blocks found in shared buffers / read from outside, per relation"
  "${PSQL[@]}" -F ' ' ws_bench_growth <<'SQL' >&2
SELECT relname, heap_blks_hit, heap_blks_read FROM pg_statio_user_tables
WHERE heap_blks_read + heap_blks_hit > 0 ORDER BY heap_blks_read DESC;
SELECT indexrelname, idx_blks_hit, idx_blks_read, pg_size_pretty(pg_relation_size(indexrelid))
FROM pg_statio_user_indexes WHERE idx_blks_read + idx_blks_hit > 0 ORDER BY idx_blks_read DESC;
SQL
  RESULT[growth]="$RATE records/s = $(python3 -c "print(round(100 * $RATE / $EMPTY_RATE))")% of the empty-database rate"
  [ "$KAFKA_ONLY" = 1 ] || read_runs ws_bench_growth 11M
fi

# CPU seconds a process has used so far (user + system).
cpu_of() { # pid...
  local pid total=0 ticks
  ticks=$(getconf CLK_TCK)
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  python3 -c "print($total / $ticks)"
}
# "pid ticks" of every PostgreSQL process, for postgres_cores_since.
postgres_ticks() {
  local pid
  for pid in $(pgrep -x postgres); do
    [ -r "/proc/$pid/stat" ] && awk -v p="$pid" '{print p, $14 + $15}' "/proc/$pid/stat"
  done 2>/dev/null
}
# Cores PostgreSQL used since a postgres_ticks snapshot, over `seconds`:
# a process that started since counts from 0, one that ended is left out
# (its last moments are lost; it does not make the figure negative).
postgres_cores_since() { # snapshot-file, seconds
  postgres_ticks | awk -v hz="$(getconf CLK_TCK)" -v d="$2" '
    NR == FNR {start[$1] = $2; next}
    {used += $2 - (($1 in start) ? start[$1] : 0)}
    END {printf "%.2f", used / hz / d}' "$1" -
}
# Busy core-seconds of the whole machine so far (all but idle and iowait).
busy_of_machine() {
  awk -v hz="$(getconf CLK_TCK)" '/^cpu / {print ($2 + $3 + $4 + $7 + $8) / hz}' /proc/stat
}

# The load graph: each workload at 1, 2, 4 ... 256 connections for
# SWEEP_SECONDS each, with the cores the service, PostgreSQL and the whole
# machine were busy for at each step (what says why throughput stops
# rising: on 2 cores, wrk, Redis and the broker share them too).
sweep_step() { # workload, connections, wrk args...
  local workload=$1 c=$2; shift 2
  local threads=$((c < 2 ? c : 2)) svc0 all0 svc1 all1 pg
  postgres_ticks >"$WORK/pg-ticks"
  svc0=$(cpu_of "$SERVICE"); all0=$(busy_of_machine)
  wrk -t"$threads" -c"$c" -d"${SWEEP_SECONDS}s" --latency "$@" >"$WORK/step.txt"
  svc1=$(cpu_of "$SERVICE"); all1=$(busy_of_machine)
  pg=$(postgres_cores_since "$WORK/pg-ticks" "$SWEEP_SECONDS")
  printf '%s %s %s %s\n' "$workload" "$c" "$(wrk_line "$WORK/step.txt")" \
    "$(python3 -c "d = $SWEEP_SECONDS; print(f'{($svc1 - $svc0) / d:.2f} $pg {($all1 - $all0) / d:.2f}')")" \
    | tee -a "$OUT/sweep.dat" >&2
}

if [ "$SWEEP" = 1 ]; then
  SWEEP_SECONDS=${SWEEP_SECONDS:-8}
  LEVELS=${SWEEP_LEVELS:-"1 2 4 8 16 32 64 128 256"}
  mkdir -p "$OUT"
  echo "workload connections rps p50_ms p99_ms errors service_cores postgres_cores busy_cores" >"$OUT/sweep.dat"
  cp "$WORK/ingest-empty.dat" "$OUT/ingest.dat"
  [ -s "$WORK/pairs.txt" ] ||
    "${PSQL[@]}" -c "SELECT warehouse_id || '/' || product_id FROM stock" ws_bench >"$WORK/pairs.txt"

  log "sweep: webhook POSTs at $LEVELS connections, ${SWEEP_SECONDS} s each"
  fresh_db ws_bench_sweep
  start_service ws_bench_sweep
  for c in $LEVELS; do
    sweep_step webhook "$c" -s scripts/bench/webhook.lua "http://127.0.0.1:$PORT"
  done
  applied=$("${PSQL[@]}" -c "SELECT count(*) FROM event_log WHERE outcome = 'applied'" ws_bench_sweep)
  total=$("${PSQL[@]}" -c "SELECT coalesce(sum(quantity), 0) FROM stock" ws_bench_sweep)
  [ "$total" = "$applied" ] || fail "sweep: stock total $total differs from $applied applied arrivals"
  stop_service

  start_service ws_bench
  hot=$(head -n1 "$WORK/pairs.txt")
  log "sweep: GET stock, cache hit (one hot pair)"
  for c in $LEVELS; do
    sweep_step cache_hit "$c" "http://127.0.0.1:$PORT/api/v1/warehouse/${hot/\//\/products\/}"
  done
  log "sweep: GET stock, cache miss (random pairs, cache emptied before each step)"
  for c in $LEVELS; do
    redis-cli --scan --pattern 'warehouse-stock:ws_bench:*' | xargs -r -n 1000 redis-cli unlink >/dev/null
    BENCH_LINES="$WORK/pairs.txt" BENCH_PREFIX=/api/v1/warehouse/ BENCH_JOIN=/products/ \
      sweep_step cache_miss "$c" -s scripts/bench/random_get.lua "http://127.0.0.1:$PORT"
  done
  stop_service
  gnuplot -e "dir='$OUT'" scripts/bench/plot.gp
  log "sweep: graphs written to $OUT/throughput.png, $OUT/latency.png and $OUT/ingest.png"
fi

printf '\n| figure | result |\n|---|---|\n'
printf '| PostgreSQL ceiling (\\copy into an unindexed table) | %s |\n' "${RESULT[ceiling]}"
printf '| Kafka ingest (%s records, 3 partitions) | %s |\n' "$COUNT" "${RESULT[kafka]}"
printf '| webhook ingest (64 connections, 30 s) | %s |\n' "${RESULT[webhook]:-not run (--kafka-only)}"
printf '| GET stock, cache hit | %s |\n' "${RESULT[hit]:-not run (--kafka-only)}"
printf '| GET stock, cache miss | %s |\n' "${RESULT[miss]:-not run (--kafka-only)}"
printf '| anchor: nginx, a static file of the cache hit'"'"'s answer (64 connections, 15 s) | %s |\n' "${RESULT[nginx]:-not run (--kafka-only)}"
printf '| anchor: redis-benchmark GET of the answer'"'"'s size (64 connections) | %s |\n' "${RESULT[redis]:-not run (--kafka-only)}"
printf '| anchor: pgbench point selects (64 clients, 15 s) | %s |\n' "${RESULT[pg_select]:-not run (--kafka-only)}"
printf '| anchor: pgbench one-row commits (64 clients, 15 s) | %s |\n' "${RESULT[pg_commit]:-not run (--kafka-only)}"
printf '| GET history page (64 connections) | %s |\n' "${RESULT[history]:-not run (--kafka-only)}"
printf '| POST stock/lookup, 100 pairs (16 connections) | %s |\n' "${RESULT[lookup]:-not run (--kafka-only)}"
printf '| GET product across warehouses, log of 1M events (64 connections) | %s |\n' "${RESULT[product_1M]:-not run (--kafka-only)}"
printf '| GET product across warehouses, log of 11M events | %s |\n' "${RESULT[product_11M]:-not run (--growth)}"
printf '| GET movements in transit, first page, log of 1M events (64 connections) | %s |\n' "${RESULT[transit_1M]:-not run (--kafka-only)}"
printf '| GET movements in transit, first page, log of 11M events | %s |\n' "${RESULT[transit_11M]:-not run (--growth)}"
printf '| PostgreSQL CPU during Kafka ingest | %s |\n' "${RESULT[pg_cpu]}"
printf '| peak RSS during Kafka ingest | %s |\n' "${RESULT[memory]}"
printf '| stock-change feed (%s) after the Kafka ingest | %s |\n' "$FEED" "$FEED_RESULT"
printf '| growth (10M events stored) | %s |\n' "${RESULT[growth]:-not run (--growth)}"
[ "$SWEEP" = 0 ] || printf '\nThe sweep: %s/sweep.dat, %s/ingest.dat and the graphs in %s/\n' "$OUT" "$OUT" "$OUT"
