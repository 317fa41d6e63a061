use crate::helpers::{Ev, redis_url, spawn_app, stock_up};
use crate::ledger::parse;
use reqwest::StatusCode;
use uuid::Uuid;
use warehouse_stock::domain::Outcome;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_single_unit_departures_against_stock_fifty_apply_exactly_fifty() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 50).await;

    let requests = (0..200).map(|_| {
        let client = app.client.clone();
        let url = format!("{}/api/v1/kafka/webhook", app.address);
        let message = Ev::new(w, p, 1).departure();
        tokio::spawn(async move {
            let response = client.post(url).json(&message).send().await.unwrap();
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap();
            if status == StatusCode::OK {
                assert!(body["details"]["stock_after"].as_i64().unwrap() >= 0);
            }
            (status, body)
        })
    });
    let answers: Vec<_> = futures_join(requests).await;

    let applied = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let rejected = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["code"] == "insufficient_stock")
        .count();
    assert_eq!((applied, rejected), (50, 150));
    assert_eq!(app.stock(w, p).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transactions_from_separate_ledgers_never_oversell() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 50).await;
    // Four ledgers with their own pools stand in for four service instances.
    let mut ledgers = Vec::new();
    for _ in 0..4 {
        ledgers.push(app.ledger(&redis_url()).await);
    }

    let tasks = (0..200).map(|i| {
        let ledger = ledgers[i % 4].clone();
        let event = parse(&Ev::new(w, p, 1).departure());
        tokio::spawn(async move { ledger.apply(&[event]).await.unwrap().outcomes[0] })
    });
    let outcomes = futures_join(tasks).await;

    let applied = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Applied { .. }))
        .count();
    assert_eq!(applied, 50);
    assert_eq!(app.stock(w, p).await, 0);
}

async fn futures_join<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        out.push(task.await.unwrap());
    }
    out
}
