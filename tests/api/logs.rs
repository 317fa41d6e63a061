//! What the service writes to its log: spans with the figures operators
//! need, and never a secret or a message body at the default level.

use crate::helpers::{Ev, database_url, test_settings};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

const TOKEN: &str = "log-test-token-0123456789";

/// The service binary in webhook mode, logging to a file of its own.
struct LoggedService {
    child: Child,
    address: String,
    log: std::path::PathBuf,
}

impl LoggedService {
    async fn start(log_level: &str) -> Self {
        let settings = test_settings(&[]);
        let port = crate::helpers::free_port();
        let log = std::env::temp_dir().join(format!("ws-log-{}.txt", Uuid::new_v4().simple()));
        let child = Command::new(env!("CARGO_BIN_EXE_warehouse-stock"))
            .arg("serve")
            .current_dir(std::env::temp_dir())
            .env("APP_HOST", "127.0.0.1")
            .env("APP_PORT", port.to_string())
            .env("DATABASE_URL", database_url(&settings))
            .env("REDIS_URL", &settings.cache.url)
            .env("CACHE_PREFIX", &settings.cache.prefix)
            .env("WEBHOOK_TOKEN", TOKEN)
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", log_level)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("Failed to start the service binary");
        let service = LoggedService {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            let ready = client
                .get(format!("{}/health/ready", service.address))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return service;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the service did not become ready");
    }

    async fn post(&self, body: String) -> reqwest::StatusCode {
        reqwest::Client::new()
            .post(format!("{}/api/v1/kafka/webhook", self.address))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Stops the service and returns its log lines as JSON.
    fn stop(mut self) -> Vec<Value> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap();
        let text = std::fs::read_to_string(&self.log).unwrap();
        let _ = std::fs::remove_file(&self.log);
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
            .collect()
    }
}

#[tokio::test]
async fn at_debug_level_each_request_and_each_batch_has_a_span_with_its_figures() {
    let service = LoggedService::start("info,warehouse_stock=debug").await;
    let event = Ev::new(Uuid::new_v4(), Uuid::new_v4(), 7).arrival();
    assert_eq!(service.post(event.to_string()).await, 200);

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
    let service = LoggedService::start("info").await;
    let marker = format!("marker-{}", Uuid::new_v4().simple());
    let good = Ev::new(Uuid::new_v4(), Uuid::new_v4(), 7).arrival();
    let mut bad = good.clone();
    bad["data"]["quantity"] = Value::from(marker.clone());
    assert_eq!(service.post(good.to_string()).await, 200);
    assert_eq!(service.post(bad.to_string()).await, 422);
    assert_eq!(service.post(format!("{{\"{marker}\": ")).await, 400);

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
