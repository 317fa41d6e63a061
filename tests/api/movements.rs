use crate::helpers::{Ev, spawn_app, stock_up};
use reqwest::StatusCode;
use uuid::Uuid;

#[tokio::test]
async fn a_movement_is_found_by_its_movement_id_with_both_halves() {
    let app = spawn_app().await;
    let (from, to, p, m) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    stock_up(&app, from, p, 100).await;
    app.post(
        &Ev::new(from, p, 100)
            .movement(m)
            .at("2025-02-18T12:12:56Z")
            .departure(),
    )
    .await;
    let (_, in_transit) = app.get(&format!("/api/v1/movements/{m}")).await;
    assert_eq!(in_transit["status"], "in_transit");
    assert!(in_transit["arrival_time"].is_null());
    assert!(in_transit["quantity_diff"].is_null());

    app.post(
        &Ev::new(to, p, 98)
            .movement(m)
            .at("2025-02-18T14:34:56Z")
            .arrival(),
    )
    .await;
    let (status, body) = app.get(&format!("/api/v1/movements/{m}")).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["movement_id"], m.to_string());
    assert_eq!(body["product_id"], p.to_string());
    assert_eq!(body["source_warehouse_id"], from.to_string());
    assert_eq!(body["destination_warehouse_id"], to.to_string());
    assert_eq!(body["departure_time"], "2025-02-18T12:12:56Z");
    assert_eq!(body["arrival_time"], "2025-02-18T14:34:56Z");
    assert_eq!(body["departure_quantity"], 100);
    assert_eq!(body["arrival_quantity"], 98);
    assert_eq!(body["quantity_diff"], 2);
    assert_eq!(body["duration_seconds"], 8520.0);
    assert_eq!(body["status"], "completed");
    assert_eq!(app.stock(from, p).await, 0);
    assert_eq!(app.stock(to, p).await, 98);

    let (status, duration) = app.get(&format!("/api/v1/movements/{m}/duration")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(duration["duration_seconds"], 8520.0);
    assert_eq!(duration["departure_time"], "2025-02-18T12:12:56Z");
    assert_eq!(duration["arrival_time"], "2025-02-18T14:34:56Z");
}

#[tokio::test]
async fn an_arrival_before_its_departure_is_joined_when_the_departure_comes() {
    let app = spawn_app().await;
    let (from, to, p, m) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    app.post(
        &Ev::new(to, p, 10)
            .movement(m)
            .at("2025-02-18T14:00:00Z")
            .arrival(),
    )
    .await;
    let (_, arrived) = app.get(&format!("/api/v1/movements/{m}")).await;
    assert_eq!(arrived["status"], "arrived");
    assert!(arrived["source_warehouse_id"].is_null());
    let (status, _) = app.get(&format!("/api/v1/movements/{m}/duration")).await;
    assert_eq!(status, StatusCode::CONFLICT, "no departure, no duration");

    stock_up(&app, from, p, 10).await;
    let (status, _) = app
        .post(
            &Ev::new(from, p, 10)
                .movement(m)
                .at("2025-02-18T13:00:00Z")
                .departure(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (_, body) = app.get(&format!("/api/v1/movements/{m}")).await;
    assert_eq!(body["status"], "completed");
    assert_eq!(body["duration_seconds"], 3600.0);
    assert_eq!(body["quantity_diff"], 0);
}

#[tokio::test]
async fn halves_naming_different_products_are_a_movement_mismatch() {
    let app = spawn_app().await;
    let (from, to, m) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (p1, p2) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, from, p1, 5).await;
    app.post(&Ev::new(from, p1, 5).movement(m).departure())
        .await;

    let (status, body) = app.post(&Ev::new(to, p2, 5).movement(m).arrival()).await;

    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "movement_mismatch");
    assert_eq!(app.stock(to, p2).await, 0);
    let (_, movement) = app.get(&format!("/api/v1/movements/{m}")).await;
    assert_eq!(movement["status"], "in_transit");
}

#[tokio::test]
async fn halves_at_the_same_warehouse_are_a_movement_mismatch() {
    let app = spawn_app().await;
    let (w, p, m) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    app.post(&Ev::new(w, p, 5).movement(m).arrival()).await;

    let (status, body) = app.post(&Ev::new(w, p, 5).movement(m).departure()).await;

    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "movement_mismatch");
    assert_eq!(app.stock(w, p).await, 5);
}

#[tokio::test]
async fn an_unknown_movement_is_404_and_a_malformed_id_is_400() {
    let app = spawn_app().await;
    let (status, body) = app
        .get(&format!("/api/v1/movements/{}", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["detail"].is_string());
    let (status, _) = app
        .get(&format!("/api/v1/movements/{}/duration", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = app.get("/api/v1/movements/42").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("UUID"));
}

#[tokio::test]
async fn a_movement_whose_only_event_was_rejected_does_not_exist() {
    let app = spawn_app().await;
    let (w, p, m) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (status, _) = app.post(&Ev::new(w, p, 5).movement(m).departure()).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, _) = app.get(&format!("/api/v1/movements/{m}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
