//! The stock-change feed over HTTP: in order, exactly once, long polling,
//! and the out-of-order-commit race.

use crate::helpers::{
    Ev, TestApp, eventually, spawn_app_from, spawn_app_with, stock_up, test_settings,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgPool};
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
pub async fn applied_entries(pool: &PgPool) -> Vec<(i64, Uuid, Uuid, i64, i64)> {
    sqlx::query_as(
        "SELECT seq, warehouse_id, product_id,
                coalesce(delta, CASE WHEN event = 'arrival' THEN quantity
                                     ELSE -quantity END::int8), stock_after
         FROM event_log WHERE outcome = 'applied' ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

pub fn uuid(v: &Value) -> Uuid {
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
async fn a_long_poll_answers_when_a_change_arrives_and_within_the_wait_when_none_does() {
    let app = spawn_app_with(&[]).await;
    let (_, page) = app.get("/api/v1/stock/changes").await;
    let after = page["next_after"].as_i64().unwrap();

    let started = Instant::now();
    let (status, page) = app
        .get(&format!("/api/v1/stock/changes?after={after}&wait=2"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"], json!([]));
    // Held for most of the wait, and answered within it: a client whose
    // timeout is the `wait` it asked for gets its answer.
    let held = started.elapsed();
    assert!(held >= Duration::from_millis(1500), "held only {held:?}");
    assert!(
        held < Duration::from_secs(2),
        "answered after the wait: {held:?}"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_answers_open_long_polls_at_once_and_the_service_exits_within_10_s() {
    let settings = test_settings(&[]);
    let service = crate::fixtures::ServiceProcess::start(&settings).await;
    let client = reqwest::Client::new();
    let (_, page): (StatusCode, Value) = {
        let answer = client
            .get(format!("{}/api/v1/stock/changes", service.address))
            .send()
            .await
            .unwrap();
        (answer.status(), answer.json().await.unwrap())
    };
    let after = page["next_after"].as_i64().unwrap();
    let url = format!(
        "{}/api/v1/stock/changes?after={after}&wait=30",
        service.address
    );
    let polls: Vec<_> = (0..6)
        .map(|_| {
            let request = client.get(&url).send();
            tokio::spawn(async move {
                let started = Instant::now();
                let status = request.await.map(|a| a.status());
                (status, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(polls.iter().all(|p| !p.is_finished()), "the polls wait");

    let status = tokio::task::spawn_blocking(move || service.terminate())
        .await
        .unwrap()
        .expect("exits within 10 s of SIGTERM");
    assert!(status.success(), "{status}");
    for poll in polls {
        let (status, waited) = poll.await.unwrap();
        assert_eq!(status.unwrap(), StatusCode::OK, "answered, not cut off");
        assert!(waited < Duration::from_secs(10), "held {waited:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_held_open_elsewhere_holds_the_feed_back_visibly_and_it_resumes_with_no_gap()
{
    let app = spawn_app_with(&[]).await;
    let (_, page) = app.get("/api/v1/stock/changes").await;
    let after = page["next_after"].as_i64().unwrap();
    // A session of some other program takes a transaction id and keeps it.
    let mut blocker = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()::text")
        .execute(&mut blocker)
        .await
        .unwrap();
    let blocker_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut blocker)
        .await
        .unwrap();

    // Writes go on for longer than the horizon keeps readings for (its
    // ticks come every few milliseconds while it is held back).
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let started = Instant::now();
    let mut written = 0;
    while started.elapsed() < Duration::from_secs(4) {
        stock_up(&app, w, p, 1).await;
        written += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, page) = app
        .get(&format!("/api/v1/stock/changes?after={after}&wait=0"))
        .await;
    assert_eq!(
        page["items"],
        json!([]),
        "handed out past a running transaction"
    );
    let held = app.metric("stock_changes_horizon_age_seconds", &[]).await;
    assert!(held >= 2.0, "held back for {held} s by the metric");
    // Readiness names the session, once it has held the feed for a while.
    eventually("readiness to name what holds the feed", || async {
        let (_, body) = app.get("/health/ready").await;
        body["components"]["stock_changes_held_back"]
            .as_str()
            .is_some_and(|held| held.contains(&format!("by pid {blocker_pid},")))
    })
    .await;

    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();
    let (items, _) = follow(&app, after, written, "").await;
    let quantities: Vec<i64> = items
        .iter()
        .map(|i| i["quantity"].as_i64().unwrap())
        .collect();
    assert_eq!(
        quantities,
        (1..=written as i64).collect::<Vec<_>>(),
        "no gap, in order"
    );
    eventually("the age to drop back", || async {
        app.metric("stock_changes_horizon_age_seconds", &[]).await < 1.0
    })
    .await;
    let (_, body) = app.get("/health/ready").await;
    assert!(
        body["components"]["stock_changes_held_back"].is_null(),
        "{body}"
    );
}

/// Follows the feed under `filter` from the start, returning every change
/// and each answer's `(after, next_after, items)`.
async fn follow_filtered(
    app: &TestApp,
    filter: &str,
    wait: u64,
) -> (Vec<Value>, Vec<(i64, i64, usize)>) {
    let (mut after, mut changes, mut answers) = (0, Vec::new(), Vec::new());
    loop {
        let (status, page) = app
            .get(&format!(
                "/api/v1/stock/changes?{filter}&after={after}&wait={wait}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap().clone();
        let next = page["next_after"].as_i64().unwrap();
        answers.push((after, next, items.len()));
        let last = items.is_empty() && next == after;
        changes.extend(items);
        if last {
            return (changes, answers);
        }
        after = next;
    }
}

#[tokio::test]
async fn a_feed_filtered_by_one_warehouse_or_product_walks_a_bounded_stretch_per_answer() {
    let app = spawn_app_with(&[("READ_SCAN_LIMIT", "5")]).await;
    let (busy, quiet, p) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for _ in 0..12 {
        app.post_ok(&Ev::new(busy, Uuid::new_v4(), 1).arrival())
            .await;
    }
    app.post_ok(&Ev::new(quiet, p, 4).arrival()).await;

    for filter in [format!("warehouse_id={quiet}"), format!("product_id={p}")] {
        let started = Instant::now();
        let (changes, answers) = follow_filtered(&app, &filter, 0).await;
        assert_eq!(changes.len(), 1, "{filter}: {changes:?}");
        assert_eq!(changes[0]["warehouse_id"], quiet.to_string());
        assert_eq!(changes[0]["quantity"], 4);
        // Each answer walked at most 5 positions past its `after`, so the
        // quiet warehouse's one change took several answers to reach.
        assert!(answers.len() >= 3, "{filter}: {answers:?}");
        for &(after, next, items) in &answers {
            assert!(next - after <= 5, "{filter}: {answers:?}");
            assert!(items <= 1);
        }
        // An answer that stopped short of the horizon does not wait.
        let (status, page) = app
            .get(&format!("/api/v1/stock/changes?{filter}&after=0&wait=20"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["next_after"], 5, "{page}");
        assert!(started.elapsed() < Duration::from_secs(15), "{filter}");
    }
    // A pair is followed along its own index, to the horizon at once.
    let (status, page) = app
        .get(&format!(
            "/api/v1/stock/changes?warehouse_id={quiet}&product_id={p}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["next_after"], 13, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_cap_the_feed_stops_waiting_for_another_programs_transaction_but_never_for_its_own()
{
    let app = spawn_app_with(&[("FEED_FOREIGN_WAIT_SECONDS", "1")]).await;
    let (_, page) = app.get("/api/v1/stock/changes").await;
    let after = page["next_after"].as_i64().unwrap();
    // A session of some other program takes a transaction id and keeps it.
    let mut other = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()::text")
        .execute(&mut other)
        .await
        .unwrap();
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 3).await;
    // Past the cap it is passed over: the change comes out while it runs.
    let (_, page) = app
        .get(&format!("/api/v1/stock/changes?after={after}&wait=10"))
        .await;
    assert_eq!(page["items"][0]["quantity"], 3, "{page}");
    let after = page["next_after"].as_i64().unwrap();

    // A session that names itself as the service is waited for, however
    // long: it may be a batch of another instance.
    let options = app
        .settings
        .database
        .clone()
        .application_name(warehouse_stock::config::APPLICATION_NAME);
    let mut own = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::query("BEGIN").execute(&mut own).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()::text")
        .execute(&mut own)
        .await
        .unwrap();
    stock_up(&app, w, p, 4).await;
    let (_, page) = app
        .get(&format!("/api/v1/stock/changes?after={after}&wait=3"))
        .await;
    assert_eq!(
        page["items"],
        json!([]),
        "handed out past the service's own"
    );
    sqlx::query("COMMIT").execute(&mut own).await.unwrap();
    let (_, page) = app
        .get(&format!("/api/v1/stock/changes?after={after}&wait=10"))
        .await;
    assert_eq!(page["items"][0]["quantity"], 7, "{page}");
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
}
