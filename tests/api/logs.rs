//! What the service writes to its log: spans with the figures operators
//! need, and never a secret or a message body at the default level.

use crate::fixtures::ServiceProcess;
use crate::helpers::{Ev, test_settings};
use serde_json::Value;
use uuid::Uuid;

const TOKEN: &str = "log-test-token-0123456789";

/// The service binary in webhook mode with a webhook token, logging JSON
/// at `log_level` to a file of its own.
async fn start_logged(log_level: &str) -> ServiceProcess {
    let settings = test_settings(&[
        ("WEBHOOK_TOKEN", TOKEN),
        ("LOG_FORMAT", "json"),
        ("LOG_LEVEL", log_level),
    ]);
    ServiceProcess::start_logged(&settings, &[("WEBHOOK_TOKEN", TOKEN)]).await
}

async fn post(service: &ServiceProcess, body: String) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("{}/api/v1/kafka/webhook", service.address))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn at_debug_level_each_request_and_each_batch_has_a_span_with_its_figures() {
    let service = start_logged("info,warehouse_stock=debug").await;
    let event = Ev::new(Uuid::new_v4(), Uuid::new_v4(), 7).arrival();
    assert_eq!(post(&service, event.to_string()).await, 200);

    let lines = service.stop();

    let request = lines
        .iter()
        .find(|l| l["message"] == "finished" && l["span"]["route"] == "/api/v1/kafka/webhook")
        .expect("a finished request line for the webhook");
    assert_eq!(request["span"]["name"], "http");
    assert_eq!(request["span"]["method"], "POST");
    assert_eq!(request["span"]["status"], 200);
    assert!(request["span"]["latency_ms"].as_f64().unwrap() > 0.0);

    let batch = lines
        .iter()
        .find(|l| l["message"] == "batch committed")
        .expect("a batch line");
    let span = &batch["span"];
    assert_eq!(span["name"], "batch");
    assert_eq!(span["size"], 1);
    assert_eq!(span["applied"], 1);
    assert_eq!(span["duplicates"], 0);
    assert_eq!(span["rejected"], 0);
    assert!(span["duration_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn at_info_level_the_log_holds_neither_the_token_nor_message_bodies() {
    let service = start_logged("info").await;
    let marker = format!("marker-{}", Uuid::new_v4().simple());
    let good = Ev::new(Uuid::new_v4(), Uuid::new_v4(), 7).arrival();
    let mut bad = good.clone();
    bad["data"]["quantity"] = Value::from(marker.clone());
    assert_eq!(post(&service, good.to_string()).await, 200);
    assert_eq!(post(&service, bad.to_string()).await, 422);
    assert_eq!(post(&service, format!("{{\"{marker}\": ")).await, 400);

    let lines = service.stop();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();

    let startup = lines
        .iter()
        .find(|l| l["message"] == "starting")
        .expect("the startup line with the effective configuration");
    assert!(
        startup["config"]
            .as_str()
            .unwrap()
            .contains("webhook_token=***")
    );
    assert!(!text.contains(TOKEN), "the token reached the log");
    assert!(!text.contains(&marker), "a message body reached the log");
    let id = good["id"].as_str().unwrap();
    assert!(!text.contains(id), "a message id reached the log");
}
