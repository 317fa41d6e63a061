//! Hostile readers on a log big enough to hurt: 64 unauthenticated callers
//! asking for everything that used to scan the audit log, while a writer
//! posts to the webhook. A log of a thousand entries shows nothing; the
//! harm the readers did was measured on 300k.

use crate::helpers::{Ev, TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use uuid::Uuid;

/// Entries seeded: 300k arrivals over 500 warehouses and 20,000 pairs.
const SEEDED: i64 = 300_000;

/// Seeds the log as the bench's growth run does, at 300k entries.
async fn seed(app: &TestApp) {
    sqlx::query(
        "INSERT INTO event_log (message_id, source, movement_id, event, warehouse_id, product_id,
                                quantity, occurred_at, outcome, received_at, opens_movement,
                                stock_after)
         SELECT 'seed-' || i, 'seed', md5('m' || i)::uuid, 'arrival', md5('w' || (i % 500))::uuid,
                md5('p' || (i % 20000))::uuid, 1, now() - interval '1 day', 'applied',
                now() - interval '1 day', true, (i + 19999) / 20000
         FROM generate_series(1, $1) AS i",
    )
    .bind(SEEDED)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO stock (warehouse_id, product_id, quantity)
         SELECT warehouse_id, product_id, count(*) FROM event_log GROUP BY 1, 2",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(&app.pool).await.unwrap();
}

/// One hostile request of kind `n % 7`: the filters that walked the log,
/// a long poll of one quiet warehouse, a moment far back, and a bulk
/// lookup of 1,000 pairs nobody has.
async fn hostile(app: &TestApp, n: usize, pairs: &[(Uuid, Uuid)]) -> StatusCode {
    let (seeded_w, seeded_p) = pairs[n % pairs.len()];
    let get = |path: String| app.client.get(format!("{}{path}", app.address)).send();
    let answer = match n % 7 {
        0 => {
            get(format!(
                "/api/v1/movements?warehouse_id={seeded_w}&status=completed"
            ))
            .await
        }
        1 => get("/api/v1/movements?status=reversed".into()).await,
        2 => {
            get(format!(
                "/api/v1/stock/changes?warehouse_id={}&wait=5",
                Uuid::new_v4()
            ))
            .await
        }
        3 => get(format!("/api/v1/products/{seeded_p}/stock")).await,
        4 => {
            get(format!(
                "/api/v1/warehouses/{seeded_w}/products?as_of=2000-01-01T00:00:00Z&limit=1000"
            ))
            .await
        }
        5 => get(format!("/api/v1/stock/changes?product_id={seeded_p}")).await,
        _ => {
            let items: Vec<Value> = (0..1000)
                .map(|_| json!({"warehouse_id": Uuid::new_v4(), "product_id": Uuid::new_v4()}))
                .collect();
            app.client
                .post(format!("{}/api/v1/stock/lookup", app.address))
                .json(&json!({ "items": items }))
                .send()
                .await
        }
    };
    answer.map_or(StatusCode::REQUEST_TIMEOUT, |a| a.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_hostile_readers_on_a_log_of_300k_entries_leave_every_webhook_write_answered() {
    let app = Arc::new(spawn_app().await);
    seed(&app).await;
    let pairs: Arc<Vec<(Uuid, Uuid)>> = Arc::new(
        sqlx::query_as("SELECT warehouse_id, product_id FROM stock LIMIT 64")
            .fetch_all(&app.pool)
            .await
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..64)
        .map(|reader| {
            let (app, stop, pairs) = (app.clone(), stop.clone(), pairs.clone());
            tokio::spawn(async move {
                let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
                let mut n = reader;
                while !stop.load(Ordering::Relaxed) {
                    *answers
                        .entry(hostile(&app, n, &pairs).await.as_u16())
                        .or_default() += 1;
                    n += 64;
                }
                answers
            })
        })
        .collect();

    // The writer posts one event at a time while the readers run.
    let mut statuses = Vec::new();
    for _ in 0..100 {
        let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
        let (status, body) = app.post(&Ev::new(w, p, 2).arrival()).await;
        statuses.push((status, body));
    }
    stop.store(true, Ordering::Relaxed);
    let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
    for reader in readers {
        for (status, n) in reader.await.unwrap() {
            *answers.entry(status).or_default() += n;
        }
    }
    let refused: Vec<_> = statuses
        .iter()
        .filter(|(status, _)| *status != StatusCode::OK)
        .collect();
    assert!(refused.is_empty(), "writes refused: {refused:?}");
    // The readers did run, and every answer they got is an answer of the
    // API (a page, a refusal of its own), never a failure of the server.
    let asked: usize = answers.values().sum();
    assert!(asked >= 64, "the readers asked {asked} times: {answers:?}");
    assert!(
        answers.keys().all(|s| [200, 400, 503].contains(s)),
        "{answers:?}"
    );
    // And the log they read is the seeded one, still whole.
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM event_log")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(entries, SEEDED + 100);
}
