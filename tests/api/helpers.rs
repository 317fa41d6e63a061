//! Test harness: a real service on a random port with its own PostgreSQL
//! database and its own Redis key prefix, plus builders for events.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::oneshot;
use uuid::Uuid;
use warehouse_stock::cache::{Cache, CacheSettings};
use warehouse_stock::config::Settings;
use warehouse_stock::ledger::Ledger;
use warehouse_stock::startup::{Application, connect_database};
use warehouse_stock::telemetry::Metrics;

/// The PostgreSQL server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// A pool of the test's own, straight to its database.
    pub pool: PgPool,
    pub database_url: String,
    pub settings: Settings,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a fresh, uniquely named database; `overrides` win.
pub fn test_settings(overrides: &[(&str, &str)]) -> Settings {
    let db = format!("ws_test_{}", Uuid::new_v4().simple());
    let server = PgConnectOptions::from_str(&server_url()).expect("TEST_DATABASE_URL");
    let database_url = format!(
        "postgres://{}@{}:{}/{db}",
        server.get_username(),
        server.get_host(),
        server.get_port()
    );
    let mut vars: HashMap<String, String> = [
        ("APP_HOST", "127.0.0.1".to_string()),
        ("APP_PORT", "0".to_string()),
        ("DATABASE_URL", database_url),
        ("DATABASE_POOL_SIZE", "8".to_string()),
        ("REDIS_URL", redis_url()),
        ("CACHE_PREFIX", format!("{db}:")),
        ("LOG_LEVEL", "warn".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in overrides {
        vars.insert(k.to_string(), v.to_string());
    }
    Settings::from_lookup(|name| vars.get(name).cloned()).expect("test settings")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_from(test_settings(overrides)).await
}

/// Starts a service with exactly these settings; two calls with the same
/// settings give two instances sharing one database.
pub async fn spawn_app_from(settings: Settings) -> TestApp {
    let app = Application::build(&settings)
        .await
        .expect("Failed to build the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let pool = PgPool::connect_with(settings.database.clone())
        .await
        .expect("Failed to connect to the test database");
    let database_url = database_url(&settings);
    TestApp {
        address,
        client: reqwest::Client::new(),
        pool,
        database_url,
        settings,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub async fn post_event(&self, event: &Value) -> Response {
        self.client
            .post(format!("{}/api/v1/kafka/webhook", self.address))
            .json(event)
            .send()
            .await
            .expect("Failed to post an event")
    }

    /// Posts and returns (status, JSON body).
    pub async fn post(&self, event: &Value) -> (StatusCode, Value) {
        let response = self.post_event(event).await;
        let status = response.status();
        (status, response.json().await.expect("JSON answer"))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("Failed to GET");
        let status = response.status();
        (status, response.json().await.expect("JSON answer"))
    }

    pub async fn stock(&self, warehouse: Uuid, product: Uuid) -> i64 {
        let (status, body) = self
            .get(&format!("/api/v1/warehouse/{warehouse}/products/{product}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["quantity"].as_i64().expect("quantity")
    }

    /// The value of one sample of `/metrics`: the line of `name` whose
    /// labels include every `labels` pair (0 when there is none).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics_text().await, name, labels)
    }

    /// The whole `/metrics` page.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until the service's cache has seen Redis (it starts down).
    pub async fn wait_for_cache(&self) {
        for _ in 0..100 {
            let (_, body) = self.get("/health/ready").await;
            if body["components"]["redis"] == "ok" {
                // The probe enables the cache right after a successful ping.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("Redis never became reachable");
    }

    /// A ledger of the test's own on the same database and cache prefix.
    pub async fn ledger(&self, redis_url: &str) -> Ledger {
        let metrics = Metrics::new();
        let cache = Cache::new(
            &CacheSettings {
                url: redis_url.to_string(),
                prefix: self.settings.cache.prefix.clone(),
                ttl_seconds: 300,
                op_timeout: Duration::from_millis(200),
            },
            metrics.clone(),
        )
        .unwrap();
        let pool = connect_database(&self.settings).await.unwrap();
        Ledger::new(pool, cache, metrics)
    }

    /// Stops the service gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

/// A URL of the settings' database (tests connect without a password).
pub fn database_url(settings: &Settings) -> String {
    let db = &settings.database;
    format!(
        "postgres://{}@{}:{}/{}",
        db.get_username(),
        db.get_host(),
        db.get_port(),
        db.get_database().unwrap()
    )
}

/// Drops a test database even while connections are open.
pub async fn drop_database(database_url: &str) {
    let options = PgConnectOptions::from_str(database_url).unwrap();
    let name = options.get_database().unwrap().to_string();
    let mut conn = PgConnection::connect_with(&options.database("postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Builds movement events as JSON, each with a fresh CloudEvent id.
#[derive(Clone, Copy)]
pub struct Ev {
    pub movement: Uuid,
    pub warehouse: Uuid,
    pub product: Uuid,
    pub quantity: i64,
    pub timestamp: &'static str,
}

impl Ev {
    pub fn new(warehouse: Uuid, product: Uuid, quantity: i64) -> Self {
        Ev {
            movement: Uuid::new_v4(),
            warehouse,
            product,
            quantity,
            timestamp: "2025-02-18T12:12:56Z",
        }
    }

    pub fn movement(mut self, movement: Uuid) -> Self {
        self.movement = movement;
        self
    }

    pub fn at(mut self, timestamp: &'static str) -> Self {
        self.timestamp = timestamp;
        self
    }

    pub fn arrival(&self) -> Value {
        self.json("arrival")
    }

    pub fn departure(&self) -> Value {
        self.json("departure")
    }

    fn json(&self, event: &str) -> Value {
        json!({
            "id": Uuid::new_v4().to_string(),
            "source": "WH-3322",
            "specversion": "1.0",
            "type": "ru.retail.warehouses.movement",
            "datacontenttype": "application/json",
            "dataschema": "ru.retail.warehouses.movement.v1.0",
            "time": 1737439421623_i64,
            "subject": format!("WH-3322:{}", event.to_uppercase()),
            "destination": "ru.retail.warehouses",
            "data": {
                "movement_id": self.movement.to_string(),
                "warehouse_id": self.warehouse.to_string(),
                "timestamp": self.timestamp,
                "event": event,
                "product_id": self.product.to_string(),
                "quantity": self.quantity,
            }
        })
    }
}

/// Arrives `quantity` of `product` at `warehouse` and checks it applied.
pub async fn stock_up(app: &TestApp, warehouse: Uuid, product: Uuid, quantity: i64) {
    let (status, body) = app
        .post(&Ev::new(warehouse, product, quantity).arrival())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "processed", "{body}");
}

/// A port nothing listens on right now, for a server a test starts.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until a server a test started accepts connections on `port`.
pub fn wait_for_port(port: u16, what: &str) {
    for _ in 0..250 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not start on port {port}");
}

/// A Redis server of the test's own, which the test may stop and restart.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let port = free_port();
        let mut redis = PrivateRedis { port, child: None };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        self.child = Some(child);
        wait_for_port(self.port, "private redis-server");
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it keeps its data but answers nothing,
    /// like a Redis behind a partition. [`PrivateRedis::resume`] thaws it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sums the samples of `name` whose labels include every `labels` pair.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}
