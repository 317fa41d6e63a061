use crate::helpers::spawn_app;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn binary_mode_takes_attributes_from_ce_headers_and_data_from_the_body() {
    let app = spawn_app().await;
    let (w, p, m) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let data = json!({
        "movement_id": m, "warehouse_id": w, "product_id": p,
        "timestamp": "2025-02-18T14:34:56+03:00", "event": "arrival", "quantity": 9
    });

    let response = app
        .client
        .post(format!("{}/api/v1/kafka/webhook", app.address))
        .header("ce-id", "binary-1")
        .header("ce-source", "WH-7")
        .header("ce-specversion", "1.0")
        .header("ce-type", "ru.retail.warehouses.movement")
        .header("ce-time", "2025-02-18T11:34:56Z")
        .header("Content-Type", "application/json")
        .body(data.to_string())
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["message_id"], "binary-1");
    assert_eq!(app.stock(w, p).await, 9);
    let (_, movement) = app.get(&format!("/api/v1/movements/{m}")).await;
    assert_eq!(movement["arrival_time"], "2025-02-18T11:34:56Z");
}

#[tokio::test]
async fn binary_mode_without_required_headers_is_a_422() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/api/v1/kafka/webhook", app.address))
        .header("ce-specversion", "1.0")
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = response.json().await.unwrap();
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"id") && fields.contains(&"type") && fields.contains(&"data.movement_id")
    );
}
