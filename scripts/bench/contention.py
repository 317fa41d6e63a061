#!/usr/bin/env python3
"""Cross-instance contention run: several service processes on one database,
concurrent webhook posters, a few hot (warehouse, product) pairs.

Each poster sends arrivals, departures and one half of transfers whose other
half a partner poster sends, spread over every instance. At the end it
prints the wall time, the answers by status, the statements sqlx logged as
slow, the lock waits PostgreSQL logged past deadlock_timeout and the
deadlocks it broke, and checks that the stock of every pair equals the sum of
the effects the service acknowledged. Exits 1 on a 5xx, a transport error or
an inexact stock. Standard library only; run by scripts/contention.sh.
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter

PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-w", "-qtA"]
PG_LOG = "/var/log/postgresql/postgresql-15-main.log"


def psql(sql, db="postgres"):
    return subprocess.run(PSQL + ["-c", sql, db], check=True, capture_output=True,
                          text=True).stdout.strip()


def event(movement, warehouse, product, kind, quantity):
    return json.dumps({
        "id": str(uuid.uuid4()), "source": "contention", "specversion": "1.0",
        "type": "ru.retail.warehouses.movement", "time": 1737439421623,
        "data": {"movement_id": str(movement), "warehouse_id": str(warehouse),
                 "product_id": str(product), "timestamp": "2025-02-18T12:12:56Z",
                 "event": kind, "quantity": quantity}})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="./target/release/warehouse-stock")
    ap.add_argument("--instances", type=int, default=8)
    ap.add_argument("--pool", type=int, default=4)
    ap.add_argument("--posters", type=int, default=64)
    ap.add_argument("--posts", type=int, default=100, help="per poster")
    ap.add_argument("--base-port", type=int, default=18180)
    args = ap.parse_args()

    db = "contention_%s" % uuid.uuid4().hex[:12]
    warehouses = [uuid.uuid4() for _ in range(3)]
    products = [uuid.uuid4() for _ in range(2)]
    pairs = [(warehouses[k % 3], products[k // 3]) for k in range(6)]
    base = uuid.uuid4().int

    log_start = os.path.getsize(PG_LOG) if os.access(PG_LOG, os.R_OK) else None
    procs, logs = [], []
    try:
        for i in range(args.instances):
            env = dict(os.environ, POSTGRES_DB=db, APP_HOST="127.0.0.1",
                       APP_PORT=str(args.base_port + i), DATABASE_POOL_SIZE=str(args.pool),
                       CACHE_PREFIX=db + ":", LOG_LEVEL="warn", APP_MODE="webhook_only")
            log = open("/tmp/%s-%d.log" % (db, i), "w+")
            logs.append(log)
            procs.append(subprocess.Popen([args.bin, "serve"], env=env, stdout=log,
                                          stderr=subprocess.STDOUT))
            if i == 0:  # the first one creates the database and migrates it
                wait_ready(args.base_port)
                psql("ALTER DATABASE %s SET log_lock_waits = on" % db)
        for i in range(args.instances):
            wait_ready(args.base_port + i)

        answers = Counter()
        applied = Counter()
        errors = []
        lock = threading.Lock()

        def poster(n):
            conns = {}
            partner_slot = n % 2
            group = n // 2
            for j in range(args.posts):
                port = args.base_port + (n + j) % args.instances
                k = (n + j) % 6
                w, p = pairs[k]
                if j % 4 == 3:
                    # one half of a transfer; the partner poster sends the other
                    mid = uuid.UUID(int=base ^ (j << 16 | group << 4))
                    src, dst = warehouses[group % 3], warehouses[(group + 1) % 3]
                    product = products[j % 2]
                    if partner_slot == 0:
                        body = event(mid, src, product, "departure", 1)
                        key = (src, product, -1)
                    else:
                        body = event(mid, dst, product, "arrival", 1)
                        key = (dst, product, 1)
                else:
                    kind = "departure" if j % 4 == 2 else "arrival"
                    q = 1 + j % 3
                    body = event(uuid.uuid4(), w, p, kind, q)
                    key = (w, p, q if kind == "arrival" else -q)
                try:
                    c = conns.get(port) or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    conns[port] = c
                    c.request("POST", "/api/v1/kafka/webhook", body,
                              {"Content-Type": "application/json"})
                    r = c.getresponse()
                    data = r.read()
                    status = r.status
                    processed = status == 200 and json.loads(data)["status"] == "processed"
                except Exception as e:  # a transport error is a failure of the run
                    conns.pop(port, None)
                    with lock:
                        errors.append(repr(e))
                    continue
                with lock:
                    answers[status] += 1
                    if processed:
                        applied[(key[0], key[1])] += key[2]

        started = time.monotonic()
        threads = [threading.Thread(target=poster, args=(n,)) for n in range(args.posters)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - started
    finally:
        for pr in procs:
            pr.terminate()
        for pr in procs:
            try:
                pr.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pr.kill()

    slow = 0
    for log in logs:
        log.seek(0)
        slow += sum(1 for line in log if "slow statement" in line)
    waits = deadlocks = None
    if log_start is not None:
        with open(PG_LOG, errors="replace") as f:
            f.seek(log_start)
            mine = [line for line in f if db in line]
        waits = sum(1 for line in mine if "still waiting for" in line)
        deadlocks = sum(1 for line in mine if "deadlock detected" in line)

    inexact = []
    for (w, p) in pairs:
        got = psql("SELECT coalesce((SELECT quantity FROM stock WHERE warehouse_id = '%s' "
                   "AND product_id = '%s'), 0)" % (w, p), db)
        if int(got) != applied[(w, p)]:
            inexact.append("%s/%s: %s, expected %d" % (w, p, got, applied[(w, p)]))
    psql("DROP DATABASE %s WITH (FORCE)" % db)

    total = sum(answers.values())
    print(json.dumps({
        "instances": args.instances, "pool": args.pool, "posters": args.posters,
        "posts": total, "wall_s": round(wall, 2), "rate": round(total / wall, 1),
        "answers": {str(k): v for k, v in sorted(answers.items())},
        "transport_errors": len(errors), "slow_statements": slow,
        "lock_waits_over_deadlock_timeout": waits, "deadlocks": deadlocks,
        "exact": not inexact}))
    for line in inexact:
        print("inexact:", line, file=sys.stderr)
    bad = sum(v for k, v in answers.items() if k >= 500) or errors or inexact
    sys.exit(1 if bad else 0)


def wait_ready(port):
    for _ in range(300):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/health/ready" % port, timeout=1):
                return
        except Exception:
            time.sleep(0.1)
    raise SystemExit("instance on port %d did not become ready" % port)


if __name__ == "__main__":
    main()
