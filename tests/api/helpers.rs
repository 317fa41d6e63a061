//! Test harness: a real service on a random port with its own PostgreSQL
//! database and its own Redis key prefix, plus builders for events.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::HashMap;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
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
    /// Keeps the database until the last holder is dropped.
    pub database: Arc<TestDatabase>,
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
        database: TestDatabase::of(&settings),
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

    /// Posts an event that must be applied (or answered as a duplicate).
    pub async fn post_ok(&self, event: &Value) {
        let (status, body) = self.post(event).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Posts `body` as JSON to `path`; returns (status, JSON body).
    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.address))
            .json(body)
            .send()
            .await
            .expect("Failed to post");
        let status = response.status();
        (status, response.json().await.expect("JSON answer"))
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

    /// `POST /api/v1/stock/lookup` of `pairs`: the quantities, in order.
    pub async fn stock_many(&self, pairs: &[(Uuid, Uuid)]) -> Vec<i64> {
        let body = json!({"items": pairs
            .iter()
            .map(|(w, p)| json!({"warehouse_id": w, "product_id": p}))
            .collect::<Vec<_>>()});
        let response = self
            .client
            .post(format!("{}/api/v1/stock/lookup", self.address))
            .json(&body)
            .send()
            .await
            .expect("Failed to POST a lookup");
        assert_eq!(response.status(), StatusCode::OK);
        let answer: Value = response.json().await.expect("JSON answer");
        answer["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["quantity"].as_i64().unwrap())
            .collect()
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

    /// Waits until Redis answers the service and its lookups read through
    /// it: the cache starts enabled, and after an outage the probe enables
    /// it again once the refreshes it missed are written.
    pub async fn wait_for_cache(&self) {
        crate::helpers::eventually("the cache to read through Redis", || async {
            let (_, body) = self.get("/health/ready").await;
            body["components"]["redis"] == "ok" && self.metric("cache_enabled", &[]).await == 1.0
        })
        .await;
    }

    /// A ledger of the test's own on the same database and cache prefix.
    pub async fn ledger(&self, redis_url: &str) -> TestLedger {
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
        TestLedger {
            ledger: Ledger::new(pool, cache.clone(), metrics.clone()),
            cache,
            metrics,
        }
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

/// A test's database, dropped when the last of its holders is: the
/// [`TestApp`]s on it and the [`TestPool`]s of it. Two holders of one
/// database share one guard, so the first to go does not drop it under
/// the other. Only the uniquely named test databases are dropped.
pub struct TestDatabase {
    url: String,
}

/// The guard of each database that has one, by URL.
static DATABASES: Mutex<Option<HashMap<String, Weak<TestDatabase>>>> = Mutex::new(None);

impl TestDatabase {
    pub fn of(settings: &Settings) -> Arc<TestDatabase> {
        let url = database_url(settings);
        let mut live = DATABASES.lock().unwrap();
        let live = live.get_or_insert_with(HashMap::new);
        if let Some(guard) = live.get(&url).and_then(Weak::upgrade) {
            return guard;
        }
        let guard = Arc::new(TestDatabase { url: url.clone() });
        live.insert(url, Arc::downgrade(&guard));
        guard
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let url = self.url.clone();
        if let Some(live) = DATABASES.lock().unwrap().as_mut() {
            live.remove(&url);
        }
        let options = PgConnectOptions::from_str(&url).unwrap();
        let name = options.get_database().unwrap_or_default().to_string();
        if !name.starts_with("ws_test_") {
            return;
        }
        // Drop runs inside the test's runtime, which cannot be blocked on;
        // the statement runs on a thread and runtime of its own. A failure
        // only leaves the database for the next run's cleanup.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = PgConnection::connect_with(&options.database("postgres")).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop the test database: {e}");
        }
    }
}

/// A pool of a test's own database that keeps the database while it lives.
pub struct TestPool {
    pool: PgPool,
    _database: Arc<TestDatabase>,
}

impl TestPool {
    /// Connects to the settings' database, creating and migrating it first
    /// if needed, as the service would.
    pub async fn connect(settings: &Settings) -> TestPool {
        TestPool {
            pool: connect_database(settings).await.unwrap(),
            _database: TestDatabase::of(settings),
        }
    }
}

impl Deref for TestPool {
    type Target = PgPool;
    fn deref(&self) -> &PgPool {
        &self.pool
    }
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

/// A ledger a test drives directly, with the cache and the metrics it was
/// built with (the ledger itself hands out neither).
#[derive(Clone)]
pub struct TestLedger {
    ledger: Ledger,
    cache: Cache,
    metrics: Metrics,
}

impl TestLedger {
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl std::ops::Deref for TestLedger {
    type Target = Ledger;

    fn deref(&self) -> &Ledger {
        &self.ledger
    }
}

/// Posts one event per `(kind, quantity)` for the pair, each applied.
pub async fn post_all(app: &TestApp, w: Uuid, p: Uuid, events: &[(&str, i64)]) {
    for &(kind, quantity) in events {
        let ev = Ev::new(w, p, quantity);
        let body = if kind == "arrival" {
            ev.arrival()
        } else {
            ev.departure()
        };
        app.post_ok(&body).await;
    }
}

/// Polls `check` until it holds. The deadline only bounds a hung run; it
/// is not a performance target.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(150) {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting for: {what}");
}

/// Every page of `path` (which has no query yet) with `limit`, followed
/// through `next_after` to the end.
pub async fn all_pages(app: &TestApp, path: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let query = match &after {
            Some(a) => format!("{path}?limit={limit}&after={a}"),
            None => format!("{path}?limit={limit}"),
        };
        let (status, page) = app.get(&query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let got = page["items"].as_array().unwrap();
        assert!(got.len() <= limit);
        items.extend(got.iter().cloned());
        match &page["next_after"] {
            Value::Null => return items,
            next => after = Some(next.to_string().trim_matches('"').to_string()),
        }
    }
}

/// The pair's changes on the HTTP feed, as (event, delta, quantity).
pub async fn pair_changes(app: &TestApp, w: Uuid, p: Uuid) -> Vec<(Value, Value, Value)> {
    let (status, page) = app
        .get(&format!(
            "/api/v1/stock/changes?warehouse_id={w}&product_id={p}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["event"].clone(),
                c["delta"].clone(),
                c["quantity"].clone(),
            )
        })
        .collect()
}
