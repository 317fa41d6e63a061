//! The stock-change feed: over HTTP (in order, exactly once, long polling,
//! the out-of-order-commit race) and over Kafka (every change once, per
//! pair in order, across kill -9, a broker restart and two instances), and
//! the low-stock levels and their alerts.

use crate::broker::{
    applied_count, bootstrap, eventually, generated, kafka_settings, produce_generated,
};
use crate::fixtures::{PrivateBroker, ServiceProcess};
use crate::helpers::{Ev, TestApp, spawn_app_from, spawn_app_with, stock_up, test_settings};
use crate::kafka::{expected_stock, pool_of, unique_events};
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgPool};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Follows the HTTP feed from `after`, passing `next_after` back, until
/// `count` changes arrived; returns them and the last `next_after`.
async fn follow(app: &TestApp, after: i64, count: usize, query: &str) -> (Vec<Value>, i64) {
    let mut items = Vec::new();
    let mut after = after;
    let started = Instant::now();
    while items.len() < count {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the feed gave {} of {count} changes",
            items.len()
        );
        let (status, page) = app
            .get(&format!(
                "/api/v1/stock/changes?after={after}&wait=5{query}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        let next = page["next_after"].as_i64().unwrap();
        assert!(next >= after, "next_after went back from {after} to {next}");
        after = next;
    }
    (items, after)
}

/// The applied audit entries, as the feed should give them.
async fn applied_entries(pool: &PgPool) -> Vec<(i64, Uuid, Uuid, i64, i64)> {
    sqlx::query_as(
        "SELECT seq, warehouse_id, product_id,
                CASE WHEN event = 'arrival' THEN quantity ELSE -quantity END::int8, stock_after
         FROM event_log WHERE outcome = 'applied' ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn uuid(v: &Value) -> Uuid {
    Uuid::parse_str(v.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn the_feed_lists_each_applied_event_once_in_order_and_nothing_for_duplicates_or_rejections()
{
    let app = spawn_app_with(&[]).await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let first = Ev::new(w, p, 10);
    let (status, _) = app.post(&first.arrival()).await;
    assert_eq!(status, StatusCode::OK);
    // A redelivery of the same event: a duplicate, no change.
    let mut again = first.arrival();
    again["id"] = json!(Uuid::new_v4().to_string());
    app.post(&again).await;
    // A departure beyond the stock: rejected, no change.
    let (status, _) = app.post(&Ev::new(w, p, 50).departure()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let gone = Ev::new(w, p, 4);
    app.post(&gone.departure()).await;
    stock_up(&app, Uuid::new_v4(), p, 7).await;

    let (items, next_after) = follow(&app, 0, 3, "").await;
    assert_eq!(items.len(), 3, "{items:#?}");
    let entries = applied_entries(&app.pool).await;
    assert_eq!(entries.len(), 3);
    for (item, (seq, w, p, delta, after)) in items.iter().zip(&entries) {
        assert_eq!(item["seq"], *seq);
        assert_eq!(uuid(&item["warehouse_id"]), *w);
        assert_eq!(uuid(&item["product_id"]), *p);
        assert_eq!(item["delta"], *delta);
        assert_eq!(item["quantity"], *after);
    }
    assert_eq!(items[0]["event"], "arrival");
    assert_eq!(items[0]["movement_id"], first.movement.to_string());
    assert_eq!(items[1]["event"], "departure");
    assert_eq!(
        (items[1]["delta"].clone(), items[1]["quantity"].clone()),
        (json!(-4), json!(6))
    );
    assert_eq!(items[1]["movement_id"], gone.movement.to_string());
    assert!(items[1]["message_id"].is_string() && items[1]["changed_at"].is_string());

    // Filters; and nothing new answers at once without `wait`, with the
    // position kept.
    let (status, page) = app
        .get(&format!(
            "/api/v1/stock/changes?warehouse_id={w}&product_id={p}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let (status, page) = app
        .get(&format!("/api/v1/stock/changes?after={next_after}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"], json!([]));
    assert_eq!(page["next_after"], next_after);
    let (status, page) = app.get("/api/v1/stock/changes?limit=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["next_after"], page["items"][0]["seq"]);
    for bad in [
        "wait=31",
        "wait=-1",
        "after=-3",
        "limit=0",
        "product_id=nope",
        "wait=",
    ] {
        let (status, body) = app.get(&format!("/api/v1/stock/changes?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["detail"].is_string());
    }
}

/// The race a feed numbered before commit loses rows to: a batch holding a
/// lower `seq` commits after a batch holding a higher one. The test holds
/// the first batch inside its statement, after it took its number, by
/// keeping the audit-log key it inserts locked in a transaction of its own.
/// A second instance meanwhile commits a later batch. A reader must not be
/// handed the later change while the earlier one may still commit, and it
/// must get both, in `seq` order, once the first commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_committing_after_a_later_one_is_still_read_and_in_order() {
    let settings = test_settings(&[]);
    let first = spawn_app_from(settings.clone()).await;
    let second = spawn_app_from(settings.clone()).await;
    let held = Ev::new(Uuid::new_v4(), Uuid::new_v4(), 5);
    let later = Ev::new(Uuid::new_v4(), Uuid::new_v4(), 3);

    let mut blocker = sqlx::PgConnection::connect(&first.database_url)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query(
        "INSERT INTO event_log (message_id, source, movement_id, event, warehouse_id, product_id,
                                quantity, occurred_at, outcome, received_at, opens_movement,
                                stock_after)
         VALUES ('blocker', 'test', $1, 'arrival', $2, $3, 1, now(), 'applied', now(), true, 1)",
    )
    .bind(held.movement)
    .bind(held.warehouse)
    .bind(held.product)
    .execute(&mut blocker)
    .await
    .unwrap();

    let held_request = {
        let client = first.client.clone();
        let url = format!("{}/api/v1/kafka/webhook", first.address);
        let body = held.arrival();
        tokio::spawn(async move { client.post(url).json(&body).send().await.unwrap().status() })
    };
    // The held batch has taken its number once it waits on the key.
    eventually("the held batch to wait on the blocker", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&first.pool)
        .await
        .unwrap();
        waiting > 0
    })
    .await;
    let (status, body) = second.post(&later.arrival()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(second.stock(later.warehouse, later.product).await, 3);
    assert!(!held_request.is_finished());

    // Committed and visible, but behind a number still in flight.
    let (status, page) = first.get("/api/v1/stock/changes?wait=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        page["items"],
        json!([]),
        "handed out past an in-flight number"
    );
    let after = page["next_after"].as_i64().unwrap();

    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    assert_eq!(held_request.await.unwrap(), StatusCode::OK);
    let (items, _) = follow(&first, after, 2, "").await;
    let pairs: Vec<(Uuid, i64)> = items
        .iter()
        .map(|i| (uuid(&i["warehouse_id"]), i["quantity"].as_i64().unwrap()))
        .collect();
    assert_eq!(pairs, vec![(held.warehouse, 5), (later.warehouse, 3)]);
    assert!(items[0]["seq"].as_i64() < items[1]["seq"].as_i64());
}

/// Many writers on two instances, one reader following the feed: every
/// applied event reaches the reader once, in `seq` order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_following_concurrent_writers_gets_every_change_once_in_order() {
    let settings = test_settings(&[]);
    let apps = [
        spawn_app_from(settings.clone()).await,
        spawn_app_from(settings.clone()).await,
    ];
    let warehouses: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let products: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let app = &apps[i % 2];
            let (client, url) = (
                app.client.clone(),
                format!("{}/api/v1/kafka/webhook", app.address),
            );
            let (warehouses, products) = (warehouses.clone(), products.clone());
            tokio::spawn(async move {
                for n in 0..40 {
                    let w = warehouses[(i + n) % warehouses.len()];
                    let p = products[(i * 7 + n) % products.len()];
                    let ev = Ev::new(w, p, 1 + (n % 5) as i64);
                    let body = if n % 3 == 2 {
                        ev.departure()
                    } else {
                        ev.arrival()
                    };
                    client.post(&url).json(&body).send().await.unwrap();
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        let (status, page) = apps[0]
            .get(&format!("/api/v1/stock/changes?after={after}&limit=7"))
            .await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["seq"].as_i64().unwrap()),
        );
        after = page["next_after"].as_i64().unwrap();
        if done && page["items"].as_array().unwrap().is_empty() {
            break;
        }
    }
    let applied: Vec<i64> = applied_entries(&apps[0].pool)
        .await
        .iter()
        .map(|e| e.0)
        .collect();
    assert!(applied.len() > 200, "only {} applied", applied.len());
    assert_eq!(seen, applied);
}

#[tokio::test]
async fn a_long_poll_answers_when_a_change_arrives_and_after_the_wait_when_none_does() {
    let app = spawn_app_with(&[]).await;
    let (_, page) = app.get("/api/v1/stock/changes").await;
    let after = page["next_after"].as_i64().unwrap();

    let started = Instant::now();
    let (status, page) = app
        .get(&format!("/api/v1/stock/changes?after={after}&wait=1"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"], json!([]));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "did not hold the request"
    );

    let waiting = {
        let client = app.client.clone();
        let url = format!("{}/api/v1/stock/changes?after={after}&wait=30", app.address);
        tokio::spawn(async move {
            let started = Instant::now();
            let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            (page, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "answered before anything changed");
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 9).await;
    let (page, waited) = waiting.await.unwrap();
    assert_eq!(page["items"][0]["warehouse_id"], w.to_string(), "{page}");
    assert_eq!(page["items"][0]["quantity"], 9);
    // Within the wait, and not by running it out.
    assert!(waited < Duration::from_secs(25), "held {waited:?}");
}

#[tokio::test]
async fn threshold_writes_need_the_admin_token_and_are_refused_without_one() {
    let token = "an-admin-token-for-tests";
    let app = spawn_app_with(&[("ADMIN_TOKEN", token)]).await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let pair = format!(
        "{}/api/v1/warehouses/{w}/products/{p}/threshold",
        app.address
    );
    let product = format!("{}/api/v1/products/{p}/threshold", app.address);
    let put = |url: &str, auth: Option<&str>, low: i64| {
        let mut request = app.client.put(url).json(&json!({ "low": low }));
        if let Some(auth) = auth {
            request = request.bearer_auth(auth);
        }
        request.send()
    };

    let refused = put(&pair, None, 5).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.json::<Value>().await.unwrap()["detail"].is_string());
    assert_eq!(
        put(&pair, Some("wrong-token-of-length"), 5)
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}/threshold"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(
        put(&product, Some(token), 8).await.unwrap().status(),
        StatusCode::OK
    );
    let (_, level) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}/threshold"))
        .await;
    assert_eq!(
        (level["low"].clone(), level["source"].clone()),
        (json!(8), json!("product"))
    );
    let set = put(&pair, Some(token), 5).await.unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    let (_, level) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}/threshold"))
        .await;
    assert_eq!(
        (level["low"].clone(), level["source"].clone()),
        (json!(5), json!("pair"))
    );
    assert_eq!(
        put(&pair, Some(token), -1).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );

    let delete = |url: String, auth: Option<&'static str>| {
        let mut request = app.client.delete(url);
        if let Some(auth) = auth {
            request = request.bearer_auth(auth);
        }
        request.send()
    };
    assert_eq!(
        delete(pair.clone(), None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        delete(pair.clone(), Some(token)).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete(pair.clone(), Some(token)).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let (_, level) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}/threshold"))
        .await;
    assert_eq!(level["source"], "product");
    assert_eq!(
        delete(product.clone(), Some(token)).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let (status, _) = app.get(&format!("/api/v1/products/{p}/threshold")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Without ADMIN_TOKEN no one may write, whatever they present.
    let closed = spawn_app_with(&[]).await;
    let url = format!("{}/api/v1/products/{p}/threshold", closed.address);
    let answer = closed
        .client
        .put(url)
        .bearer_auth(token)
        .json(&json!({"low": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert_eq!(answer.json::<Value>().await.unwrap()["code"], "forbidden");
}

/// Reads the changes topic from the start until `done` says enough; returns
/// the CloudEvents in partition order, each with its partition.
fn read_topic(
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
fn changes_by_seq(records: &[(i32, Value)]) -> BTreeMap<i64, Value> {
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

fn changes_topic() -> String {
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

/// Posts one event per `(kind, quantity)` for the pair, each applied.
async fn post_all(app: &TestApp, w: Uuid, p: Uuid, events: &[(&str, i64)]) {
    for &(kind, quantity) in events {
        let ev = Ev::new(w, p, quantity);
        let body = if kind == "arrival" {
            ev.arrival()
        } else {
            ev.departure()
        };
        let (status, answer) = app.post(&body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_follow_each_crossing_of_the_level_with_the_changes_seq() {
    let token = "an-admin-token-for-tests";
    let topic = changes_topic();
    let app = spawn_app_with(&[
        ("STOCK_CHANGES_TOPIC", &topic),
        ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap()),
        ("KAFKA_TOPIC_PARTITIONS", "1"),
        ("ADMIN_TOKEN", token),
    ])
    .await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let level = app
        .client
        .put(format!(
            "{}/api/v1/warehouses/{w}/products/{p}/threshold",
            app.address
        ))
        .bearer_auth(token)
        .json(&json!({"low": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(level.status(), StatusCode::OK);
    // 10, then 6 (no alert), 3 (low), 0 (depleted), 2 (none: still low),
    // 8 (restored), 0 (low and depleted), 1 (still low: nothing).
    stock_up(&app, w, p, 10).await;
    post_all(
        &app,
        w,
        p,
        &[
            ("departure", 4),
            ("departure", 3),
            ("departure", 3),
            ("arrival", 2),
            ("arrival", 6),
            ("departure", 8),
            ("arrival", 1),
        ],
    )
    .await;
    // A second pair, without a level, whose stock row a refused departure
    // created: its first arrival is no restoration though the ledger found
    // a row, and its return from 0 is one.
    let other = Uuid::new_v4();
    let (status, answer) = app.post(&Ev::new(w, other, 1).departure()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    post_all(
        &app,
        w,
        other,
        &[("arrival", 3), ("departure", 3), ("arrival", 1)],
    )
    .await;
    let records = read_topic(&bootstrap(), &topic, 1, |r| changes_by_seq(r).len() >= 11);
    let seqs: Vec<i64> = changes_by_seq(&records).keys().copied().collect();
    let alerts: Vec<(String, i64)> = records
        .iter()
        .filter(|(_, r)| r["type"] != "ru.retail.warehouses.stock.changed")
        .map(|(_, r)| {
            (
                r["type"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("ru.retail.warehouses.stock.")
                    .to_string(),
                r["data"]["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, i64)> = [
        ("low", seqs[2]),
        ("depleted", seqs[3]),
        ("restored", seqs[5]),
        ("low", seqs[6]),
        ("depleted", seqs[6]),
        ("depleted", seqs[9]),
        ("restored", seqs[10]),
    ]
    .into_iter()
    .map(|(t, s)| (t.to_string(), s))
    .collect();
    assert_eq!(alerts, expected);
    let low = records
        .iter()
        .find(|(_, r)| r["type"] == "ru.retail.warehouses.stock.low")
        .unwrap();
    assert_eq!(low.1["data"]["low"], 5);
    assert_eq!(
        (
            low.1["data"]["quantity"].clone(),
            low.1["data"]["previous_quantity"].clone()
        ),
        (json!(3), json!(6))
    );
    assert_eq!(low.1["id"], format!("stock-low-{}", seqs[2]));
}
