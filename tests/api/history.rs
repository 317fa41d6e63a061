//! A pair's history: its applied events in the ledger's order, each with
//! the stock right after it, in pages.

use crate::helpers::{Ev, all_pages, spawn_app, stock_up};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn a_pairs_history_replays_to_its_current_stock_in_pages_to_the_end() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let mut expected = Vec::new();
    let mut stock = 0i64;
    for i in 1..=7i64 {
        app.post_ok(&Ev::new(w, p, i * 10).arrival()).await;
        stock += i * 10;
        expected.push((i * 10, stock));
        app.post_ok(&Ev::new(w, p, i).departure()).await;
        stock -= i;
        expected.push((-i, stock));
    }
    // Refused and duplicate events are not history; another pair is not either.
    let refused = app.post(&Ev::new(w, p, 10_000).departure()).await;
    assert_eq!(refused.0, StatusCode::CONFLICT);
    stock_up(&app, Uuid::new_v4(), p, 5).await;

    let path = format!("/api/v1/warehouses/{w}/products/{p}/history");
    let items = all_pages(&app, &path, 3).await;
    assert_eq!(items.len(), expected.len());
    let mut previous = 0i64;
    let mut last_seq = 0i64;
    for (item, (delta, after)) in items.iter().zip(&expected) {
        assert_eq!(item["delta"], *delta, "{item}");
        assert_eq!(item["stock_after"], *after, "{item}");
        assert_eq!(
            item["stock_after"].as_i64().unwrap(),
            previous + item["delta"].as_i64().unwrap()
        );
        previous = *after;
        let seq = item["seq"].as_i64().unwrap();
        assert!(seq > last_seq, "in the ledger's order");
        last_seq = seq;
        assert_eq!(item["source"], "WH-3322");
        assert_eq!(item["quantity"], delta.abs());
        assert_eq!(
            item["event"],
            if *delta > 0 { "arrival" } else { "departure" }
        );
        assert_eq!(item["occurred_at"], "2025-02-18T12:12:56Z");
        assert!(item["applied_at"].is_string() && item["message_id"].is_string());
        assert!(item["movement_id"].is_string());
    }
    assert_eq!(
        previous,
        app.stock(w, p).await,
        "the last stock_after is the stock"
    );

    let (status, empty) = app
        .get(&format!(
            "/api/v1/warehouses/{}/products/{p}/history",
            Uuid::new_v4()
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(empty, json!({"items": [], "next_after": null}));
}

#[tokio::test]
async fn history_parameters_that_are_not_valid_answer_400_naming_the_parameter() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    for (query, name) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("after=-1", "after"),
        ("after=x", "after"),
        // An empty value is malformed, not absent, as the description says.
        ("limit=", "limit"),
        ("after=", "after"),
    ] {
        let (status, body) = app
            .get(&format!(
                "/api/v1/warehouses/{w}/products/{p}/history?{query}"
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(name),
            "{query}: {body}"
        );
    }
    let (status, body) = app
        .get(&format!("/api/v1/warehouses/x/products/{p}/history"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("warehouse_id"));
}
