//! The batch path itself, driven directly rather than over HTTP.

use crate::helpers::{Ev, TestApp, TestLedger, metric_value, redis_url, spawn_app};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;
use warehouse_stock::domain::{Differs, MovementEvent, Outcome, RejectReason};
use warehouse_stock::ledger::Ledger;

pub fn parse(message: &Value) -> MovementEvent {
    MovementEvent::from_structured(&serde_json::to_vec(message).unwrap()).unwrap()
}

#[tokio::test]
async fn events_in_one_batch_take_effect_in_order() {
    let app = spawn_app().await;
    let ledger = app.ledger(&redis_url()).await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let batch = [
        parse(&Ev::new(w, p, 10).arrival()),
        parse(&Ev::new(w, p, 15).departure()),
        parse(&Ev::new(w, p, 10).arrival()),
    ];

    let applied = ledger.apply(&batch).await.unwrap();

    let labels: Vec<&str> = applied.outcomes.iter().map(Outcome::label).collect();
    assert_eq!(labels, ["applied", "rejected", "applied"]);
    assert_eq!(app.stock(w, p).await, 20);
}

#[tokio::test]
async fn only_the_first_change_of_a_pair_without_a_stock_row_is_marked_as_its_first() {
    let app = spawn_app().await;
    let ledger = app.ledger(&redis_url()).await;
    // `fresh`: no row. `refused`: a refused departure writes its row first.
    let (w, fresh, refused) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    ledger
        .apply(&[parse(&Ev::new(w, refused, 1).departure())])
        .await
        .unwrap();
    let batch = [
        parse(&Ev::new(w, fresh, 5).departure()),
        parse(&Ev::new(w, fresh, 5).arrival()),
        parse(&Ev::new(w, fresh, 5).arrival()),
        parse(&Ev::new(w, refused, 2).arrival()),
    ];
    ledger.apply(&batch).await.unwrap();
    ledger
        .apply(&[parse(&Ev::new(w, fresh, 10).departure())])
        .await
        .unwrap();
    ledger
        .apply(&[parse(&Ev::new(w, fresh, 3).arrival())])
        .await
        .unwrap();

    let marks: Vec<(Uuid, String, String, bool)> = sqlx::query_as(
        "SELECT product_id, event, outcome, opens_pair FROM event_log
         WHERE warehouse_id = $1 ORDER BY seq",
    )
    .bind(w)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let marks: Vec<(&str, &str, &str, bool)> = marks
        .iter()
        .map(|(p, e, o, m)| {
            let pair = if *p == fresh { "fresh" } else { "refused" };
            (pair, e.as_str(), o.as_str(), *m)
        })
        .collect();
    assert_eq!(
        marks,
        [
            ("refused", "departure", "rejected", false),
            ("fresh", "departure", "rejected", false),
            ("fresh", "arrival", "applied", true),
            ("fresh", "arrival", "applied", false),
            // Its row exists, so the ledger cannot tell; the feed asks the log.
            ("refused", "arrival", "applied", false),
            ("fresh", "departure", "applied", false),
            // Back from 0: the row's first change was long ago.
            ("fresh", "arrival", "applied", false),
        ]
    );
}

/// One event per pair, the pairs in the rotation of `writer` at `round`,
/// so that concurrent writers name the same rows in different orders; a
/// third of them departures.
fn rotated_batch(pairs: &[(Uuid, Uuid)], writer: usize, round: usize) -> Vec<MovementEvent> {
    (0..pairs.len())
        .map(|i| {
            let (w, p) = pairs[(i + writer + round) % pairs.len()];
            let e = Ev::new(w, p, 1 + (i % 3) as i64);
            parse(&if (i + round).is_multiple_of(3) {
                e.departure()
            } else {
                e.arrival()
            })
        })
        .collect()
}

/// Adds the stock effect of every applied event of `batch` to `delta`, per
/// pair, and returns how many were applied.
fn add_applied(
    delta: &mut HashMap<(Uuid, Uuid), i64>,
    batch: &[MovementEvent],
    outcomes: &[Outcome],
) -> usize {
    let mut applied = 0;
    for (event, outcome) in batch.iter().zip(outcomes) {
        if let Outcome::Applied { .. } = outcome {
            let c = &event.content;
            let sign = if c.kind.as_str() == "arrival" { 1 } else { -1 };
            *delta.entry((c.warehouse_id, c.product_id)).or_default() +=
                sign * i64::from(c.quantity.get());
            applied += 1;
        }
    }
    applied
}

#[tokio::test]
async fn concurrent_batches_on_shared_pairs_lose_no_update_and_never_deadlock() {
    let app = spawn_app().await;
    let pairs: Vec<(Uuid, Uuid)> = (0..6).map(|_| (Uuid::new_v4(), Uuid::new_v4())).collect();
    let mut tasks = Vec::new();
    for task in 0..8usize {
        let ledger = app.ledger(&redis_url()).await;
        let pairs = pairs.clone();
        tasks.push(tokio::spawn(async move {
            let mut delta: HashMap<(Uuid, Uuid), i64> = HashMap::new();
            for round in 0..20usize {
                // Each task walks the pairs in its own rotation, so batches
                // name the same rows in different orders.
                let batch = rotated_batch(&pairs, task, round);
                let applied = ledger
                    .apply(&batch)
                    .await
                    .expect("no error reaches the caller");
                add_applied(&mut delta, &batch, &applied.outcomes);
            }
            delta
        }));
    }
    let mut expected: HashMap<(Uuid, Uuid), i64> = HashMap::new();
    for task in tasks {
        for (pair, d) in task.await.unwrap() {
            *expected.entry(pair).or_default() += d;
        }
    }
    for (w, p) in pairs {
        assert_eq!(app.stock(w, p).await, expected[&(w, p)], "pair {w}/{p}");
    }
}

/// Waits until a ledger write statement is blocked on a row lock held by
/// another transaction of this database.
async fn wait_for_blocked_write(pool: &PgPool) {
    for _ in 0..500 {
        let blocked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query LIKE 'WITH stock_%'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if blocked > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the ledger's write never waited for the other transaction");
}

fn retries(ledger: &TestLedger) -> f64 {
    metric_value(
        &ledger.metrics().render(),
        "ledger_batch_retries_total",
        &[("cause", "conflict")],
    )
}

/// Applies `events` in the background; the caller makes it wait first.
fn apply_later(
    ledger: &Ledger,
    events: Vec<MovementEvent>,
) -> tokio::task::JoinHandle<Vec<Outcome>> {
    let ledger = ledger.clone();
    tokio::spawn(async move { ledger.apply(&events).await.unwrap().outcomes })
}

#[tokio::test]
async fn a_departure_decided_on_stock_that_changed_before_its_write_is_decided_again() {
    let app = spawn_app().await;
    let ledger = app.ledger(&redis_url()).await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    ledger
        .apply(&[parse(&Ev::new(w, p, 10).arrival())])
        .await
        .unwrap();
    // Another writer takes all ten, and has not committed when the
    // departure below reads the stock.
    let mut other = app.pool.begin().await.unwrap();
    sqlx::query("UPDATE stock SET quantity = 0 WHERE warehouse_id = $1 AND product_id = $2")
        .bind(w)
        .bind(p)
        .execute(&mut *other)
        .await
        .unwrap();

    let pending = apply_later(&ledger, vec![parse(&Ev::new(w, p, 8).departure())]);
    wait_for_blocked_write(&app.pool).await;
    other.commit().await.unwrap();
    let outcomes = pending.await.unwrap();

    // Decided on the ten it read, the departure would have written 2 over
    // the other writer's 0: a lost update. Decided again, it is refused.
    assert_eq!(
        outcomes[0],
        Outcome::Rejected {
            reason: RejectReason::InsufficientStock,
            replayed: false,
            differs: Differs::default(),
        }
    );
    assert_eq!(app.stock(w, p).await, 0);
    assert_eq!(retries(&ledger), 1.0);
}

/// Another transaction's uncommitted departure of `movement`: the audit
/// entry a ledger batch would write for it, the first of the movement.
async fn uncommitted_departure(
    pool: &PgPool,
    movement: Uuid,
    warehouse: Uuid,
    product: Uuid,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO event_log (message_id, source, movement_id, event, warehouse_id,
                                product_id, quantity, occurred_at, outcome, received_at,
                                opens_movement, stock_after)
         VALUES ('other', 'test', $1, 'departure', $2, $3, 5,
                 '2025-02-18T10:00:00Z', 'applied', now(), true, 0)",
    )
    .bind(movement)
    .bind(warehouse)
    .bind(product)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx
}

/// Applies `arrival` of `movement` while another transaction's departure of
/// it (from `from`, of `product`) is not yet committed, and commits that
/// departure once the ledger's write waits on it.
async fn arrival_racing_a_departure(
    app: &TestApp,
    ledger: &Ledger,
    movement: Uuid,
    from: Uuid,
    product: Uuid,
    arrival: Value,
) -> Vec<Outcome> {
    let other = uncommitted_departure(&app.pool, movement, from, product).await;
    let pending = apply_later(ledger, vec![parse(&arrival)]);
    wait_for_blocked_write(&app.pool).await;
    other.commit().await.unwrap();
    pending.await.unwrap()
}

#[tokio::test]
async fn an_arrival_written_beside_a_mismatching_departure_is_decided_again() {
    let app = spawn_app().await;
    let ledger = app.ledger(&redis_url()).await;
    let (from, to, product, other_product, movement) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let arrival = Ev::new(to, other_product, 5).movement(movement).arrival();
    let outcomes =
        arrival_racing_a_departure(&app, &ledger, movement, from, product, arrival).await;

    assert_eq!(
        outcomes[0],
        Outcome::Rejected {
            reason: RejectReason::MovementMismatch,
            replayed: false,
            differs: Differs::default(),
        }
    );
    assert_eq!(app.stock(to, other_product).await, 0);
    assert_eq!(retries(&ledger), 1.0);
}

/// Neither half saw the other when it was decided, so the arrival cannot
/// have been checked against the departure: it is decided again, after the
/// departure, and then joins it.
#[tokio::test]
async fn an_arrival_written_beside_a_matching_departure_is_decided_again_and_joins_it() {
    let app = spawn_app().await;
    let ledger = app.ledger(&redis_url()).await;
    let (from, to, product, movement) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let arrival = Ev::new(to, product, 4).movement(movement).arrival();
    let outcomes =
        arrival_racing_a_departure(&app, &ledger, movement, from, product, arrival).await;

    assert_eq!(outcomes[0], Outcome::Applied { stock_after: 4 });
    assert_eq!(retries(&ledger), 1.0);
    let (_, body) = app.get(&format!("/api/v1/movements/{movement}")).await;
    assert_eq!(body["status"], "completed", "{body}");
    assert_eq!(body["source_warehouse_id"], from.to_string());
    assert_eq!(body["destination_warehouse_id"], to.to_string());
    assert_eq!(body["quantity_diff"], 1, "{body}");
}

#[tokio::test]
async fn a_departure_decided_on_a_remembered_quantity_another_instance_changed_is_decided_again() {
    let app = spawn_app().await;
    let (ours, theirs) = (
        app.ledger(&redis_url()).await,
        app.ledger(&redis_url()).await,
    );
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    // Our ledger committed the ten, so it remembers them; the other
    // instance then takes four, which ours never sees.
    ours.apply(&[parse(&Ev::new(w, p, 10).arrival())])
        .await
        .unwrap();
    theirs
        .apply(&[parse(&Ev::new(w, p, 4).departure())])
        .await
        .unwrap();

    let outcomes = ours
        .apply(&[parse(&Ev::new(w, p, 8).departure())])
        .await
        .unwrap()
        .outcomes;

    // On the remembered ten the departure would leave 2; on the six that
    // are there it is refused.
    assert_eq!(
        outcomes[0],
        Outcome::Rejected {
            reason: RejectReason::InsufficientStock,
            replayed: false,
            differs: Differs::default(),
        }
    );
    assert_eq!(app.stock(w, p).await, 6);
    assert_eq!(retries(&ours), 1.0);
}

#[tokio::test]
async fn a_duplicate_reports_the_stock_there_is_not_the_stock_the_ledger_remembers() {
    let app = spawn_app().await;
    let (ours, theirs) = (
        app.ledger(&redis_url()).await,
        app.ledger(&redis_url()).await,
    );
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let arrival = Ev::new(w, p, 10);
    ours.apply(&[parse(&arrival.arrival())]).await.unwrap();
    theirs
        .apply(&[parse(&Ev::new(w, p, 4).departure())])
        .await
        .unwrap();

    let outcomes = ours
        .apply(&[parse(&arrival.arrival())])
        .await
        .unwrap()
        .outcomes;

    assert!(
        matches!(outcomes[0], Outcome::Duplicate { stock_after: 6, .. }),
        "{:?}",
        outcomes[0]
    );
    assert_eq!(app.stock(w, p).await, 6);
}

/// Rounds of the stress test below: 50 in the suite (a few seconds);
/// `LEDGER_STRESS_ROUNDS=200` is the size BENCHMARKS.md reports loops of.
fn stress_rounds() -> usize {
    std::env::var("LEDGER_STRESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

/// Sixteen writers, each with a ledger and a pool of its own (as sixteen
/// instances would be), hammer six pairs of one database. Every batch names
/// the pairs in a rotation of its own, mixes arrivals and departures, and
/// carries halves of movements that a partner writer sends the other halves
/// of, in the opposite order, so that two batches often open the same two
/// movements at the same moment. Every fifth round redelivers the previous
/// batch. Any cycle of lock waits between batches, and any retry that gives
/// up, reaches a caller here as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_on_six_hot_pairs_never_see_an_error_and_lose_no_update() {
    const WRITERS: usize = 16;
    let app = spawn_app().await;
    let warehouses: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let products: Vec<Uuid> = (0..2).map(|_| Uuid::new_v4()).collect();
    let pairs: Vec<(Uuid, Uuid)> = (0..6)
        .map(|k| (warehouses[k % 3], products[k / 3]))
        .collect();
    let base = Uuid::new_v4().as_u128();
    let rounds = stress_rounds();
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let ledger = app.ledger(&redis_url()).await;
        let (pairs, warehouses, products) = (pairs.clone(), warehouses.clone(), products.clone());
        tasks.push(tokio::spawn(async move {
            let mut delta: HashMap<(Uuid, Uuid), i64> = HashMap::new();
            let mut applied_events = 0usize;
            let mut previous: Vec<MovementEvent> = Vec::new();
            for round in 0..rounds {
                let mut batch = rotated_batch(&pairs, writer, round);
                // Writers 2g and 2g+1 send the two halves of movements a
                // and b: one departs a then b, the other arrives b then a.
                let group = writer / 2;
                let halves: Vec<MovementEvent> = (0..2)
                    .map(|slot| {
                        let slot = if writer % 2 == 0 { slot } else { 1 - slot };
                        let id = Uuid::from_u128(
                            base ^ ((round as u128) << 16 | (group as u128) << 4 | slot as u128),
                        );
                        let from = warehouses[(group + slot) % 3];
                        let to = warehouses[(group + slot + 1) % 3];
                        let quantity = 1 + (round % 2) as i64;
                        let product = products[slot];
                        parse(&if writer % 2 == 0 {
                            Ev::new(from, product, quantity).movement(id).departure()
                        } else {
                            Ev::new(to, product, quantity).movement(id).arrival()
                        })
                    })
                    .collect();
                batch.insert(1, halves[0].clone());
                batch.insert(4, halves[1].clone());
                if round % 5 == 4 {
                    batch = std::mem::take(&mut previous);
                }
                let applied = ledger
                    .apply(&batch)
                    .await
                    .expect("no error reaches the caller");
                assert_eq!(applied.outcomes.len(), batch.len());
                applied_events += add_applied(&mut delta, &batch, &applied.outcomes);
                previous = batch;
            }
            let deadlocks = metric_value(
                &ledger.metrics().render(),
                "ledger_batch_retries_total",
                &[("cause", "deadlock")],
            );
            (delta, applied_events, deadlocks)
        }));
    }
    let mut expected: HashMap<(Uuid, Uuid), i64> = HashMap::new();
    let mut applied_events = 0usize;
    let mut deadlocks = 0.0;
    for task in tasks {
        let (delta, applied, d) = task.await.unwrap();
        applied_events += applied;
        deadlocks += d;
        for (pair, d) in delta {
            *expected.entry(pair).or_default() += d;
        }
    }
    for (w, p) in pairs {
        assert_eq!(
            app.stock(w, p).await,
            expected.get(&(w, p)).copied().unwrap_or(0),
            "pair {w}/{p}"
        );
    }
    // Each event one writer saw applied is in the audit log once, and no
    // other event is.
    let logged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM event_log WHERE outcome = 'applied'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(logged as usize, applied_events);
    // Retrying a deadlock hides it from the caller, but each one cost a
    // second of PostgreSQL's deadlock_timeout: batches take their locks in
    // one order, so there are none.
    assert_eq!(deadlocks, 0.0, "batches deadlocked");
}

/// The movements `open_movements` holds, by movement_id.
async fn on_the_road(pool: &PgPool) -> Vec<(Uuid, i32)> {
    sqlx::query_as("SELECT movement_id, quantity FROM open_movements ORDER BY movement_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_movements_on_the_road_are_exactly_the_departed_and_unclosed_ones_batch_by_batch() {
    let app = spawn_app().await;
    let ledger = app.ledger(&redis_url()).await;
    let (w1, w2, p) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut m: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    m.sort();
    ledger
        .apply(&[parse(&Ev::new(w1, p, 100).arrival())])
        .await
        .unwrap();
    // One batch: m0 departs; m1 departs and arrives; m2 arrives first.
    ledger
        .apply(&[
            parse(&Ev::new(w1, p, 5).movement(m[0]).departure()),
            parse(&Ev::new(w1, p, 6).movement(m[1]).departure()),
            parse(&Ev::new(w2, p, 6).movement(m[1]).arrival()),
            parse(&Ev::new(w2, p, 7).movement(m[2]).arrival()),
        ])
        .await
        .unwrap();
    assert_eq!(on_the_road(&app.pool).await, [(m[0], 5)]);
    // m2's departure completes it; m3 arrives at w1, so its departure
    // from w1 is refused and it never goes on the road.
    ledger
        .apply(&[
            parse(&Ev::new(w1, p, 7).movement(m[2]).departure()),
            parse(&Ev::new(w1, p, 8).movement(m[3]).arrival()),
        ])
        .await
        .unwrap();
    ledger
        .apply(&[parse(&Ev::new(w1, p, 9).movement(m[3]).departure())])
        .await
        .unwrap();
    assert_eq!(on_the_road(&app.pool).await, [(m[0], 5)]);
    ledger
        .apply(&[parse(&Ev::new(w2, p, 5).movement(m[0]).arrival())])
        .await
        .unwrap();
    assert_eq!(on_the_road(&app.pool).await, []);
    let diff = warehouse_stock::ledger::verify::verify(&app.pool, 10)
        .await
        .unwrap();
    assert!(diff.is_empty(), "{diff:?}");
}

/// A count of `quantity` of the pair, keyed `id`, as the adjustments route
/// reads one.
fn count(id: Uuid, w: Uuid, p: Uuid, quantity: i64) -> MovementEvent {
    let body = serde_json::json!({
        "adjustment_id": id, "warehouse_id": w, "product_id": p,
        "kind": "count", "quantity": quantity, "reason": "cycle_count"
    });
    MovementEvent::from_adjustment(&body, "test", chrono::Utc::now()).unwrap()
}

#[tokio::test]
async fn a_correction_and_its_duplicate_in_one_batch_both_carry_the_change_the_first_committed() {
    let app = spawn_app().await;
    let ledger = app.ledger(&redis_url()).await;
    let (w, p, id) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let counted = count(id, w, p, 7);
    let batch = [
        parse(&Ev::new(w, p, 10).arrival()),
        counted.clone(),
        counted.clone(),
    ];

    let applied = ledger.apply(&batch).await.unwrap();

    let labels: Vec<&str> = applied.outcomes.iter().map(Outcome::label).collect();
    assert_eq!(labels, ["applied", "applied", "duplicate"]);
    assert!(
        applied.changes[0].is_none(),
        "a movement's half asks for none"
    );
    let change = applied.changes[1].clone().expect("the count's own change");
    assert_eq!((change.delta, change.quantity), (-3, 7));
    assert_eq!(
        applied.changes[2].as_ref(),
        Some(&change),
        "the duplicate's"
    );
    assert_eq!(applied.quantities[&(w, p)], 7);
    let seq: i64 = sqlx::query_scalar(
        "SELECT seq FROM event_log WHERE movement_id = $1 AND outcome = 'applied'",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(change.seq, seq, "the number the log gave it");

    // Sent again in a batch of its own, it answers with the logged entry.
    let again = ledger.apply(&[counted]).await.unwrap();
    assert_eq!(again.outcomes[0].label(), "duplicate");
    assert_eq!(again.changes[0].as_ref(), Some(&change));
}

#[tokio::test]
async fn a_batch_of_movements_works_out_no_changes_for_receipts() {
    let app = spawn_app().await;
    let ledger = app.ledger(&redis_url()).await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let batch = [
        parse(&Ev::new(w, p, 10).arrival()),
        parse(&Ev::new(w, p, 4).departure()),
    ];

    let applied = ledger.apply(&batch).await.unwrap();

    assert!(applied.changes.is_empty());
    assert_eq!(applied.quantities[&(w, p)], 6);
}
