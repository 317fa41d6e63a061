//! The stock-change relay: every change on the Kafka topic once, per pair
//! in order, across kill -9, a broker restart and two instances, below the
//! ingest's priority.

use crate::broker::{applied_count, bootstrap, generated, kafka_settings, produce_generated};
use crate::changes::{applied_entries, uuid};
use crate::fixtures::{PrivateBroker, ServiceProcess};
use crate::helpers::{eventually, spawn_app_from, spawn_app_with, stock_up};
use crate::kafka::{expected_stock, pool_of, unique_events};
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Reads the changes topic from the start until `done` says enough; returns
/// the CloudEvents in partition order, each with its partition.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    done: impl Fn(&[(i32, Value)]) -> bool,
) -> Vec<(i32, Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("changes-reader-{}", Uuid::new_v4()))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    // `done` is asked when the topic has nothing more to give right now,
    // not after every record: it may look at all of them.
    let mut idle = true;
    while !(idle && done(&out)) {
        if Instant::now() >= deadline {
            let marks: Vec<_> = (0..partitions)
                .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(5)))
                .collect();
            let per: Vec<usize> = (0..partitions)
                .map(|p| out.iter().filter(|(q, _)| *q == p).count())
                .collect();
            panic!(
                "read {} records of {topic}: {per:?}, watermarks {marks:?}",
                out.len()
            );
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let value: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                out.push((m.partition(), value));
                idle = false;
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => idle = true,
        }
    }
    out
}

/// The distinct changes (by `seq`) among `records`.
pub fn changes_by_seq(records: &[(i32, Value)]) -> BTreeMap<i64, Value> {
    records
        .iter()
        .filter(|(_, r)| r["type"] == "ru.retail.warehouses.stock.changed")
        .map(|(_, r)| (r["data"]["seq"].as_i64().unwrap(), r["data"].clone()))
        .collect()
}

/// Every applied entry is on the topic (after dedupe by `seq`) with its
/// fields; along each pair, in `seq` order; and the last change of each
/// pair carries its stock.
async fn assert_topic_holds_every_change(pool: &PgPool, records: &[(i32, Value)]) {
    let entries = applied_entries(pool).await;
    let changes = changes_by_seq(records);
    let on_topic: Vec<i64> = changes.keys().copied().collect();
    let applied: Vec<i64> = entries.iter().map(|e| e.0).collect();
    assert_eq!(
        on_topic, applied,
        "the topic's changes differ from the applied entries"
    );
    for (seq, w, p, delta, after) in &entries {
        let c = &changes[seq];
        assert_eq!((uuid(&c["warehouse_id"]), uuid(&c["product_id"])), (*w, *p));
        assert_eq!(
            (c["delta"].as_i64(), c["quantity"].as_i64()),
            (Some(*delta), Some(*after))
        );
    }
    // The rest of each change, as the log holds it: the relay takes most
    // of them from memory, and must give what it would have read.
    let rest: Vec<(i64, Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT seq, movement_id, event, message_id, received_at
         FROM event_log WHERE outcome = 'applied' ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (seq, movement, event, message, at) in rest {
        let c = &changes[&seq];
        assert_eq!(uuid(&c["movement_id"]), movement, "change {seq}");
        assert_eq!(
            (c["event"].as_str(), c["message_id"].as_str()),
            (Some(event.as_str()), Some(message.as_str())),
            "change {seq}"
        );
        let changed_at: DateTime<Utc> = c["changed_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(changed_at, at, "change {seq}");
    }
    // In each partition, a change arrives only after every change before
    // it there: a consumer that drops any `seq` at or below the highest it
    // has seen (the README's advice) loses none.
    let mut highest: HashMap<i32, i64> = HashMap::new();
    let mut kept = std::collections::BTreeSet::new();
    for (partition, r) in records
        .iter()
        .filter(|(_, r)| r["type"] == "ru.retail.warehouses.stock.changed")
    {
        let seq = r["data"]["seq"].as_i64().unwrap();
        let top = highest.entry(*partition).or_insert(0);
        if seq > *top {
            *top = seq;
            kept.insert(seq);
        }
    }
    assert_eq!(
        kept.into_iter().collect::<Vec<_>>(),
        applied,
        "a consumer keeping the highest seq per partition missed a change"
    );
    // Per pair, in the order the topic holds them (first copies only).
    let mut last: HashMap<(Uuid, Uuid), (i64, i64)> = HashMap::new();
    let mut first_copy = std::collections::HashSet::new();
    for (_, r) in records
        .iter()
        .filter(|(_, r)| r["type"] == "ru.retail.warehouses.stock.changed")
    {
        let d = &r["data"];
        let seq = d["seq"].as_i64().unwrap();
        if !first_copy.insert(seq) {
            continue;
        }
        let pair = (uuid(&d["warehouse_id"]), uuid(&d["product_id"]));
        assert_eq!(r["subject"], format!("{}:{}", pair.0, pair.1));
        assert_eq!(r["id"], format!("stock-change-{seq}"));
        if let Some((previous, _)) = last.get(&pair) {
            assert!(*previous < seq, "pair {pair:?}: {seq} after {previous}");
        }
        last.insert(pair, (seq, d["quantity"].as_i64().unwrap()));
    }
    let stock: Vec<(Uuid, Uuid, i64)> =
        sqlx::query_as("SELECT warehouse_id, product_id, quantity FROM stock")
            .fetch_all(pool)
            .await
            .unwrap();
    for (w, p, q) in stock {
        if let Some((_, quantity)) = last.get(&(w, p)) {
            assert_eq!(*quantity, q, "last change of {w}/{p}");
        } else {
            assert_eq!(q, 0, "{w}/{p} has stock but no change");
        }
    }
}

/// Waits until every unique event of the stream is in the audit log,
/// applied or rejected.
async fn until_logged(pool: &PgPool, unique: i64) {
    eventually("the stream applied", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM event_log")
            .fetch_one(pool)
            .await
            .unwrap()
            == unique
    })
    .await;
}

pub fn changes_topic() -> String {
    format!("changes_{}", Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_applied_event_of_a_stream_with_duplicates_is_published_once_per_pair_in_order() {
    let topic = changes_topic();
    let settings = kafka_settings(3, &[("STOCK_CHANGES_TOPIC", &topic)]);
    let app = spawn_app_from(settings.clone()).await;
    let config = generated(10_000, 31, 0.05);
    produce_generated(&settings, config.clone(), false).await;
    let unique = unique_events(&config);
    until_logged(&app.pool, unique).await;
    let applied = applied_count(&app.pool).await as usize;
    let records = read_topic(&bootstrap(), &topic, 3, |r| {
        changes_by_seq(r).len() >= applied
    });
    assert_topic_holds_every_change(&app.pool, &records).await;
    for (&(w, p), &q) in &expected_stock(&config) {
        assert_eq!(app.stock(w, p).await, q);
    }
    // Nothing failed, so nothing was sent twice.
    assert_eq!(
        changes_by_seq(&records).len(),
        records
            .iter()
            .filter(|(_, r)| r["type"] == "ru.retail.warehouses.stock.changed")
            .count()
    );
    eventually("the relay's metrics to count them", || async {
        app.metric("stock_changes_published_total", &[]).await as usize == applied
    })
    .await;
    let (_, ready) = app.get("/health/ready").await;
    assert_eq!(ready["components"]["stock_changes"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_stream_and_a_restart_lose_no_change() {
    let topic = changes_topic();
    let settings = kafka_settings(
        3,
        &[
            ("STOCK_CHANGES_TOPIC", &topic),
            ("KAFKA_BATCH_SIZE", "100"),
            ("KAFKA_GROUP_INSTANCE_ID", "instance-1"),
        ],
    );
    let config = generated(8_000, 32, 0.05);
    produce_generated(&settings, config.clone(), false).await;
    let unique = unique_events(&config);
    let pool = pool_of(&settings).await;
    let service = ServiceProcess::start(&settings).await;
    eventually("some changes published", || async {
        let position: Option<i64> = sqlx::query_scalar("SELECT position FROM change_relay")
            .fetch_optional(&*pool)
            .await
            .unwrap();
        position.is_some_and(|p| p > 0)
    })
    .await;
    service.kill_9();
    let at_kill = applied_count(&pool).await;
    assert!(at_kill < unique, "the stream was done before the kill");
    let _service = ServiceProcess::start(&settings).await;
    until_logged(&pool, unique).await;
    let applied = applied_count(&pool).await as usize;
    let records = read_topic(&bootstrap(), &topic, 3, |r| {
        changes_by_seq(r).len() >= applied
    });
    assert_topic_holds_every_change(&pool, &records).await;
}

/// The broker is in memory, so a restart empties it: what it had
/// acknowledged before is read before the restart, and everything after
/// must reach the new broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_no_change() {
    let mut broker = PrivateBroker::start();
    let topic = changes_topic();
    let bootstrap = format!("127.0.0.1:{}", broker.port);
    let app = spawn_app_with(&[
        ("STOCK_CHANGES_TOPIC", &topic),
        ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap),
        ("KAFKA_TOPIC_PARTITIONS", "2"),
    ])
    .await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    for _ in 0..20 {
        stock_up(&app, w, p, 1).await;
    }
    let before = read_topic(&bootstrap, &topic, 2, |r| changes_by_seq(r).len() >= 20);
    eventually("the relay to store its position", || async {
        let position: i64 = sqlx::query_scalar("SELECT position FROM change_relay")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        position >= *changes_by_seq(&before).keys().last().unwrap()
    })
    .await;

    broker.stop();
    for _ in 0..30 {
        stock_up(&app, w, p, 2).await;
    }
    eventually("the relay to report the broker gone", || async {
        app.get("/health/ready").await.1["components"]["stock_changes"] == "down"
    })
    .await;
    broker.restart();
    let after = read_topic(&bootstrap, &topic, 2, |r| changes_by_seq(r).len() >= 30);
    let mut all = before;
    all.extend(after);
    assert_topic_holds_every_change(&app.pool, &all).await;
    assert!(app.metric("stock_changes_publish_errors_total", &[]).await >= 1.0);
}

/// Each thread of process `pid` by name, with its nice value (Linux keeps
/// one per thread: the 19th field of its `stat`, counted past the name).
fn thread_priorities(pid: u32) -> Vec<(String, i32)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|task| {
            let dir = task.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 2..];
            let nice = after_name.split(' ').nth(16)?.parse().ok()?;
            Some((name.trim().to_owned(), nice))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_and_its_producer_run_below_the_ingests_priority() {
    let topic = changes_topic();
    let settings = kafka_settings(1, &[("STOCK_CHANGES_TOPIC", &topic)]);
    let service = ServiceProcess::start(&settings).await;
    let client = reqwest::Client::new();
    let ready = format!("{}/health/ready", service.address);
    eventually("the relay to publish", || async {
        let body: Value = client
            .get(&ready)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["components"]["stock_changes"] == "ok"
    })
    .await;
    let threads = thread_priorities(service.id());
    let nice_of = |prefix: &str| -> Vec<i32> {
        threads
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|&(_, nice)| nice)
            .collect()
    };
    let workers = nice_of("tokio-rt-worker");
    assert!(!workers.is_empty(), "no runtime workers in {threads:?}");
    let ingest = workers[0];
    assert!(workers.iter().all(|&n| n == ingest), "{threads:?}");
    let lowered = (ingest + 10).min(19);
    assert_eq!(nice_of("stock-relay"), [lowered], "{threads:?}");
    // The consumer's librdkafka threads keep the ingest's priority, the
    // producer's (started from the relay's thread) take the relay's.
    let librdkafka = nice_of("rdk:");
    assert!(librdkafka.contains(&ingest), "{threads:?}");
    assert!(librdkafka.contains(&lowered), "{threads:?}");
    service.kill_9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_publish_each_change_once() {
    let topic = changes_topic();
    let settings = kafka_settings(2, &[("STOCK_CHANGES_TOPIC", &topic)]);
    let first = spawn_app_from(settings.clone()).await;
    let second = spawn_app_from(settings.clone()).await;
    let config = generated(3_000, 33, 0.0);
    produce_generated(&settings, config.clone(), false).await;
    let unique = unique_events(&config);
    until_logged(&first.pool, unique).await;
    // Webhook events on both instances too.
    for app in [&first, &second] {
        stock_up(app, Uuid::new_v4(), Uuid::new_v4(), 4).await;
    }
    let applied = applied_count(&first.pool).await as usize;
    let records = read_topic(&bootstrap(), &topic, 2, |r| {
        changes_by_seq(r).len() >= applied
    });
    // A little longer: a second publisher would add its copies now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let records = read_topic(&bootstrap(), &topic, 2, |r| r.len() >= records.len());
    assert_topic_holds_every_change(&first.pool, &records).await;
    let published = records
        .iter()
        .filter(|(_, r)| r["type"] == "ru.retail.warehouses.stock.changed")
        .count();
    assert_eq!(published, applied, "some changes were published twice");
    // The publishing instance took its own batches from memory, and read
    // the other's from the log.
    let mut publisher = None;
    for app in [&first, &second] {
        let name = "stock_changes_relay_read_total";
        let tail = app.metric(name, &[("from", "tail")]).await;
        let log = app.metric(name, &[("from", "log")]).await;
        if tail + log > 0.0 {
            assert!(publisher.is_none(), "both instances published");
            publisher = Some((tail, log));
        }
    }
    let (tail, log) = publisher.expect("no instance published");
    assert!(
        tail >= 1.0 && log >= 1.0,
        "from the tail {tail}, from the log {log}"
    );
    assert_eq!(tail + log, applied as f64);
    let states = [
        first.get("/health/ready").await.1["components"]["stock_changes"].clone(),
        second.get("/health/ready").await.1["components"]["stock_changes"].clone(),
    ];
    let mut states: Vec<String> = states
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    states.sort();
    assert_eq!(states, ["ok", "standby"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_loses_the_lead_to_a_standby_within_half_a_minute_and_no_change_is_lost() {
    let topic = changes_topic();
    let settings = kafka_settings(1, &[("STOCK_CHANGES_TOPIC", &topic)]);
    let pool = pool_of(&settings).await;
    let leader = ServiceProcess::start(&settings).await;
    let lease_holder = || async {
        sqlx::query_scalar::<_, Option<i32>>("SELECT leader_pid FROM change_relay")
            .fetch_optional(&*pool)
            .await
            .unwrap()
            .flatten()
    };
    eventually("the first instance to lead", || async {
        lease_holder().await.is_some()
    })
    .await;
    let frozen_pid = lease_holder().await;
    let standby = spawn_app_from(settings.clone()).await;
    stock_up(&standby, Uuid::new_v4(), Uuid::new_v4(), 3).await;
    eventually("the leader to publish", || async {
        let position: i64 = sqlx::query_scalar("SELECT position FROM change_relay")
            .fetch_one(&*pool)
            .await
            .unwrap();
        position > 0
    })
    .await;

    // The leader freezes: its process stops, its connections stay open.
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &leader.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let frozen = Instant::now();
    for _ in 0..10 {
        stock_up(&standby, Uuid::new_v4(), Uuid::new_v4(), 2).await;
    }
    let applied = applied_count(&pool).await as usize;
    let records = read_topic(&bootstrap(), &topic, 1, |r| {
        changes_by_seq(r).len() >= applied
    });
    let took = frozen.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "the standby took over after {took:?}"
    );
    assert_ne!(lease_holder().await, frozen_pid, "the lease moved");
    assert_topic_holds_every_change(&pool, &records).await;
    drop(leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_below_the_published_position_stops_the_relay_and_says_so() {
    let topic = changes_topic();
    let app = spawn_app_with(&[
        ("STOCK_CHANGES_TOPIC", &topic),
        ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap()),
        ("KAFKA_TOPIC_PARTITIONS", "1"),
    ])
    .await;
    for _ in 0..3 {
        stock_up(&app, Uuid::new_v4(), Uuid::new_v4(), 5).await;
    }
    let published = || async {
        sqlx::query_scalar::<_, i64>("SELECT position FROM change_relay")
            .fetch_optional(&app.pool)
            .await
            .unwrap()
            .unwrap_or(0)
    };
    let last: i64 = sqlx::query_scalar("SELECT max(seq) FROM event_log")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    eventually("the changes to be published", || async {
        published().await >= last
    })
    .await;
    // A failover to a replica that had only the first entry: the rest are
    // gone, and the sequence hands out their numbers again.
    sqlx::raw_sql(
        "DELETE FROM event_log WHERE seq > (SELECT min(seq) FROM event_log);
         SELECT setval('event_log_seq_seq', (SELECT min(seq) FROM event_log));",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    eventually("the relay to stop and say so", || async {
        let (_, body) = app.get("/health/ready").await;
        body["components"]["stock_changes"] == "diverged"
    })
    .await;
    let behind = app.metric("stock_changes_sequence_behind", &[]).await;
    assert!(behind >= 2.0, "behind by {behind}");
    // A change written now takes a number already published with another
    // change; it must not go out under it.
    stock_up(&app, Uuid::new_v4(), Uuid::new_v4(), 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let records = read_topic(&bootstrap(), &topic, 1, |r| changes_by_seq(r).len() >= 3);
    // Counted as records, not by `seq`: a reused number would repeat one.
    let changes = records
        .iter()
        .filter(|(_, r)| r["type"] == "ru.retail.warehouses.stock.changed")
        .count();
    assert_eq!(changes, 3, "a reused number was published");
}
