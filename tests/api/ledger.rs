//! The batch path itself, driven directly rather than over HTTP.

use crate::helpers::{Ev, redis_url, spawn_app};
use serde_json::Value;
use std::collections::HashMap;
use uuid::Uuid;
use warehouse_stock::domain::{MovementEvent, Outcome};

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
                let batch: Vec<MovementEvent> = (0..pairs.len())
                    .map(|i| {
                        let (w, p) = pairs[(i + task + round) % pairs.len()];
                        let e = Ev::new(w, p, 1 + (i % 3) as i64);
                        parse(&if (i + round) % 3 == 0 {
                            e.departure()
                        } else {
                            e.arrival()
                        })
                    })
                    .collect();
                let applied = ledger
                    .apply(&batch)
                    .await
                    .expect("no error reaches the caller");
                for (event, outcome) in batch.iter().zip(&applied.outcomes) {
                    if let Outcome::Applied { .. } = outcome {
                        let c = &event.content;
                        let sign = if c.kind.as_str() == "arrival" { 1 } else { -1 };
                        *delta.entry((c.warehouse_id, c.product_id)).or_default() +=
                            sign * i64::from(c.quantity.get());
                    }
                }
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
