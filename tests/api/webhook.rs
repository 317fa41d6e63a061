use crate::helpers::{Ev, spawn_app, stock_up};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn an_arrival_is_processed_and_reports_the_stock_after_it() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let event = Ev::new(w, p, 40);
    let message = event.arrival();

    let (status, body) = app.post(&message).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "processed");
    assert_eq!(body["message_id"], message["id"]);
    assert_eq!(body["movement_id"], event.movement.to_string());
    let details = &body["details"];
    assert_eq!(details["event_type"], "arrival");
    assert_eq!(details["warehouse_id"], w.to_string());
    assert_eq!(details["product_id"], p.to_string());
    assert_eq!(details["quantity"], 40);
    assert_eq!(details["stock_after"], 40);
    assert!(details["processed_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(app.stock(w, p).await, 40);
}

#[tokio::test]
async fn the_seed_example_message_is_accepted_verbatim() {
    let app = spawn_app().await;
    let w: Uuid = "25718666-6af6-4281-b5a6-3016e36fa557".parse().unwrap();
    let p: Uuid = "4705204f-498f-4f96-b4ba-df17fb56bf55".parse().unwrap();
    stock_up(&app, w, p, 100).await;
    let seed = r#"{"id":"b3b53031-e83a-4654-87f5-b6b6fb09fd99","source":"WH-3322","specversion":"1.0","type":"ru.retail.warehouses.movement","datacontenttype":"application/json","dataschema":"ru.retail.warehouses.movement.v1.0","time":1737439421623,"subject":"WH-3322:DEPARTURE","destination":"ru.retail.warehouses","data":{"movement_id":"c6290746-790e-43fa-8270-014dc90e02e0","warehouse_id":"25718666-6af6-4281-b5a6-3016e36fa557","timestamp":"2025-02-18T12:12:56Z","event":"departure","product_id":"4705204f-498f-4f96-b4ba-df17fb56bf55","quantity":100}}"#;

    let response = app
        .client
        .post(format!("{}/api/v1/kafka/webhook", app.address))
        .header("Content-Type", "application/json")
        .body(seed)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["details"]["stock_after"], 0);
    assert_eq!(app.stock(w, p).await, 0);
}

#[tokio::test]
async fn the_attributes_the_service_does_not_interpret_are_kept_in_the_log_as_sent() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let core_only = |event: &Ev| {
        let mut message = event.arrival();
        for name in ["subject", "dataschema", "destination"] {
            message.as_object_mut().unwrap().remove(name);
        }
        message
    };
    let mut with_extensions = core_only(&Ev::new(w, p, 3));
    let extensions = json!({
        "subject": "WH-3322:ARRIVAL",
        "dataschema": "ru.retail.warehouses.movement.v1.0",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "nested": {"b": [1, 2.5, null, "x"], "a": true},
    });
    for (name, value) in extensions.as_object().unwrap() {
        with_extensions[name] = value.clone();
    }
    let without = core_only(&Ev::new(w, p, 4));
    app.post_ok(&with_extensions).await;
    app.post_ok(&without).await;

    let logged: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT message_id, attributes FROM event_log \
         WHERE warehouse_id = $1 AND product_id = $2 ORDER BY quantity",
    )
    .bind(w)
    .bind(p)
    .fetch_all(&app.pool)
    .await
    .unwrap();

    assert_eq!(logged.len(), 2);
    assert_eq!(logged[0].0, with_extensions["id"].as_str().unwrap());
    assert_eq!(logged[0].1, extensions);
    assert_eq!(logged[1].1, json!({}));
}

#[tokio::test]
async fn a_departure_beyond_the_stock_is_rejected_and_changes_nothing() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 10).await;

    let (status, body) = app.post(&Ev::new(w, p, 11).departure()).await;

    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["status"], "rejected");
    assert_eq!(body["code"], "insufficient_stock");
    assert!(body["detail"].as_str().unwrap().contains("stock"));
    assert_eq!(app.stock(w, p).await, 10);
}

#[tokio::test]
async fn a_resent_event_is_a_duplicate_that_reports_the_current_stock() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let first = Ev::new(w, p, 5);
    let (_, original) = app.post(&first.arrival()).await;
    stock_up(&app, w, p, 7).await;

    // A redelivery carries a new CloudEvent id but the same content.
    let (status, body) = app.post(&first.arrival()).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "duplicate");
    assert_eq!(body["details"]["stock_after"], 12);
    assert_eq!(
        body["details"]["processed_at"], original["details"]["processed_at"],
        "a duplicate reports when the original was processed"
    );
    assert_eq!(app.stock(w, p).await, 12);
}

#[tokio::test]
async fn the_same_key_with_other_content_is_a_conflicting_duplicate_that_names_what_differs() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let event = Ev::new(w, p, 5);
    app.post(&event.arrival()).await;

    let mut changed = event;
    changed.quantity = 6;
    let (status, body) = app.post(&changed.arrival()).await;

    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "conflicting_duplicate");
    assert_eq!(body["differs"], serde_json::json!(["quantity"]));
    assert_eq!(app.stock(w, p).await, 5);

    // Re-sent, the conflict is answered the same, and another change of the
    // same key is named against the applied event, not against the conflict.
    let (_, again) = app.post(&changed.arrival()).await;
    assert_eq!(again["differs"], serde_json::json!(["quantity"]));
    let moved = changed.at("2025-02-18T13:00:00Z");
    let (_, other) = app.post(&moved.arrival()).await;
    assert_eq!(
        other["differs"],
        serde_json::json!(["quantity", "timestamp"])
    );

    // The audit log says the same, and other refusals name nothing.
    let (status, _) = app.post(&Ev::new(w, p, 500).departure()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, log) = app.get("/api/v1/rejections").await;
    let differs: Vec<(&str, &serde_json::Value)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["reason"].as_str().unwrap(), &i["differs"]))
        .collect();
    assert_eq!(
        differs,
        [
            ("conflicting_duplicate", &serde_json::json!(["quantity"])),
            (
                "conflicting_duplicate",
                &serde_json::json!(["quantity", "timestamp"])
            ),
            ("insufficient_stock", &serde_json::Value::Null),
        ]
    );
}

#[tokio::test]
async fn a_rejected_event_stays_rejected_after_stock_arrives() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let departure = Ev::new(w, p, 3);
    let (status, _) = app.post(&departure.departure()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    stock_up(&app, w, p, 100).await;

    let (status, body) = app.post(&departure.departure()).await;

    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "insufficient_stock");
    assert_eq!(app.stock(w, p).await, 100);
    let (_, rejections) = app.get("/api/v1/rejections").await;
    assert_eq!(
        rejections["items"].as_array().unwrap().len(),
        1,
        "a replayed rejection is not stored twice: {rejections}"
    );
}

#[tokio::test]
async fn rejected_events_are_listed_oldest_first_in_keyset_pages() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let mut sent = Vec::new();
    for q in 1..=5 {
        let message = Ev::new(w, p, q).departure();
        sent.push(message["id"].as_str().unwrap().to_string());
        app.post(&message).await;
    }

    let (status, first) = app.get("/api/v1/rejections?limit=3").await;
    assert_eq!(status, StatusCode::OK);
    let after = first["next_after"]
        .as_i64()
        .expect("a full page has a cursor");
    let (_, second) = app
        .get(&format!("/api/v1/rejections?limit=3&after={after}"))
        .await;

    let ids: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|r| r["message_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, sent);
    assert!(second["next_after"].is_null());
    let one = &first["items"][0];
    assert_eq!(one["reason"], "insufficient_stock");
    assert_eq!(one["event"], "departure");
    assert_eq!(one["warehouse_id"], w.to_string());
    assert_eq!(one["quantity"], 1);
    assert!(one["received_at"].is_string());
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_400_malformed_json() {
    let app = spawn_app().await;
    for body in ["{\"id\":", "", "not json", "[[[["] {
        let response = app
            .client
            .post(format!("{}/api/v1/kafka/webhook", app.address))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body:?}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["code"], "malformed_json");
        assert!(answer["detail"].is_string());
    }
}

#[tokio::test]
async fn json_that_breaks_the_contract_is_a_422_listing_each_field() {
    let app = spawn_app().await;
    let mut message = Ev::new(Uuid::new_v4(), Uuid::new_v4(), 1).arrival();
    message["type"] = json!("something.else");
    message["data"]["quantity"] = json!(-4);
    message["data"]["product_id"] = json!("P-1");

    let (status, body) = app.post(&message).await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["code"], "invalid_event");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["type", "data.product_id", "data.quantity"]);
    assert!(body["errors"][0]["message"].is_string());
    assert!(body["detail"].as_str().unwrap().contains("data.quantity"));
}

#[tokio::test]
async fn a_body_over_64_kib_is_a_413() {
    let app = spawn_app().await;
    let mut message = Ev::new(Uuid::new_v4(), Uuid::new_v4(), 1).arrival();
    message["padding"] = json!("x".repeat(70 * 1024));

    let (status, body) = app.post(&message).await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["detail"].is_string());
}

#[tokio::test]
async fn a_content_type_that_is_neither_json_nor_cloudevents_is_a_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/api/v1/kafka/webhook", app.address))
        .header("Content-Type", "text/plain")
        .body(
            Ev::new(Uuid::new_v4(), Uuid::new_v4(), 1)
                .arrival()
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["detail"].is_string());
}

#[tokio::test]
async fn cloudevents_structured_content_type_is_accepted() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let response = app
        .client
        .post(format!("{}/api/v1/kafka/webhook", app.address))
        .header(
            "Content-Type",
            "application/cloudevents+json; charset=utf-8",
        )
        .body(Ev::new(w, p, 3).arrival().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.stock(w, p).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_answers_every_request_it_committed() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let client = app.client.clone();
            let url = format!("{}/api/v1/kafka/webhook", app.address);
            let message = Ev::new(w, p, 1).arrival();
            tokio::spawn(async move { client.post(url).json(&message).send().await })
        })
        .collect();
    // Stop while requests are in flight: once the first has committed.
    let pool = app.pool.clone();
    let _database = app.database.clone();
    crate::helpers::eventually("a first request committed", || async {
        let committed: i64 = sqlx::query_scalar("SELECT count(*) FROM event_log")
            .fetch_one(&pool)
            .await
            .unwrap();
        committed > 0
    })
    .await;

    app.stop().await;

    let mut answered = 0;
    for request in requests {
        match request.await.unwrap() {
            Ok(response) => {
                assert_eq!(
                    response.status(),
                    StatusCode::OK,
                    "no request fails during a stop"
                );
                answered += 1;
            }
            // Requests that arrive after the stop began are refused.
            Err(e) => assert!(e.is_connect() || e.is_request(), "{e}"),
        }
    }
    let committed: i64 = sqlx::query_scalar("SELECT count(*) FROM event_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        committed, answered,
        "every committed event was answered, and only those"
    );
}
