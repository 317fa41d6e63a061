//! Many figures at once: the bulk stock lookup.

use crate::helpers::{TestApp, spawn_app, stock_up};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

async fn lookup(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    app.post_json("/api/v1/stock/lookup", body).await
}

fn pairs_body(pairs: &[(Uuid, Uuid)]) -> Value {
    json!({"items": pairs.iter().map(|(w, p)| json!({"warehouse_id": w, "product_id": p})).collect::<Vec<_>>()})
}

#[tokio::test]
async fn a_bulk_lookup_answers_every_pair_in_the_order_asked_and_never_a_stale_figure() {
    let app = spawn_app().await;
    app.wait_for_cache().await;
    let known: Vec<(Uuid, Uuid)> = (0..4).map(|_| (Uuid::new_v4(), Uuid::new_v4())).collect();
    for (i, &(w, p)) in known.iter().enumerate() {
        stock_up(&app, w, p, i as i64 + 1).await;
    }
    let unseen = (Uuid::new_v4(), Uuid::new_v4());
    // Unknown, known and repeated pairs, mixed.
    let asked = vec![known[2], unseen, known[0], known[2], known[3], known[1]];
    let want = [3, 0, 1, 3, 4, 2];
    for round in 0..2 {
        // The second round is served from the cache the first one filled.
        let (status, body) = lookup(&app, &pairs_body(&asked)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let items = body["items"].as_array().unwrap();
        assert_eq!(items.len(), asked.len());
        for ((item, &(w, p)), q) in items.iter().zip(&asked).zip(want) {
            assert_eq!(item["warehouse_id"], w.to_string(), "round {round}");
            assert_eq!(item["product_id"], p.to_string());
            assert_eq!(item["quantity"], q);
        }
    }
    let hits = app
        .metric("cache_requests_total", &[("result", "hit")])
        .await;
    assert!(hits >= 5.0, "the second round read Redis: {hits} hits");
    // A write after the cache was filled is seen by the next lookup.
    stock_up(&app, known[0].0, known[0].1, 100).await;
    let (_, body) = lookup(&app, &pairs_body(&[known[0]])).await;
    assert_eq!(body["items"][0]["quantity"], 101);
}

#[tokio::test]
async fn a_bulk_lookup_of_1000_pairs_is_answered_and_of_1001_is_413() {
    let app = spawn_app().await;
    let w = Uuid::new_v4();
    let p = Uuid::new_v4();
    stock_up(&app, w, p, 9).await;
    let mut pairs: Vec<(Uuid, Uuid)> = (0..999).map(|_| (Uuid::new_v4(), p)).collect();
    pairs.push((w, p));
    let (status, body) = lookup(&app, &pairs_body(&pairs)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 1000);
    assert_eq!(body["items"][999]["quantity"], 9);
    pairs.push((w, p));
    let (status, body) = lookup(&app, &pairs_body(&pairs)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "too_many_items");
    assert!(body["detail"].as_str().unwrap().contains("1000"));
}

#[tokio::test]
async fn a_bulk_lookup_that_is_not_valid_answers_4xx_with_a_detail() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let cases = [
        (json!({"items": []}), StatusCode::BAD_REQUEST, "items"),
        (json!({}), StatusCode::BAD_REQUEST, "items"),
        (
            json!({"items": [{"warehouse_id": "WH-1", "product_id": id}]}),
            StatusCode::BAD_REQUEST,
            "warehouse_id",
        ),
        (
            json!({"items": [{"warehouse_id": id}]}),
            StatusCode::BAD_REQUEST,
            "product_id",
        ),
    ];
    for (body, want, name) in cases {
        let (status, answer) = lookup(&app, &body).await;
        assert_eq!(status, want, "{body}: {answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains(name),
            "{body}: {answer}"
        );
    }
    let response = app
        .client
        .post(format!("{}/api/v1/stock/lookup", app.address))
        .header("Content-Type", "application/json")
        .body("{\"items\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["code"], "malformed_json");
    let response = app
        .client
        .post(format!("{}/api/v1/stock/lookup", app.address))
        .header("Content-Type", "text/plain")
        .body("{\"items\": []}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["detail"].is_string());
}
