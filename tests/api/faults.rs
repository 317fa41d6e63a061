//! Fault injection: the service is killed, and PostgreSQL, Redis and the
//! broker go away mid-run. Each scenario ends with the generator's model
//! stock, an audit log holding every event once, and a clean `verify`.
//!
//! The short versions run with the suite. `bash scripts/faults.sh --long`
//! runs the long ones (FAULT_MESSAGES=200000, FAULT_KILLS=5).

use crate::broker::{applied_count, generated, kafka_settings, produce_generated};
use crate::fixtures::{PrivateBroker, PrivatePostgres, PrivateRedis, ServiceProcess};
use crate::helpers::eventually;
use crate::helpers::spawn_app_from;
use crate::kafka::{assert_stock, expected_stock, pool_of, unique_events, until_done};
use reqwest::StatusCode;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every event is in the audit log exactly once: as many rows as unique
/// events, and no message id twice.
async fn assert_audit_log_once(pool: &PgPool, unique: i64) {
    let (rows, ids): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT message_id) FROM event_log")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!((rows, ids), (unique, unique));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kill_9_restarts_during_a_run_lose_nothing_and_apply_nothing_twice() {
    let messages = env_or("FAULT_MESSAGES", 20_000);
    let kills = env_or("FAULT_KILLS", 3);
    // Static membership: a supervisor restarts the same instance, which takes
    // its partitions back at once (kafka.rs also kills a dynamic member).
    let settings = kafka_settings(
        3,
        &[
            ("KAFKA_BATCH_SIZE", "100"),
            ("KAFKA_GROUP_INSTANCE_ID", "instance-1"),
        ],
    );
    let config = generated(messages, 21, 0.05);
    produce_generated(&settings, config.clone(), false).await;
    let unique = unique_events(&config);
    let pool = pool_of(&settings).await;

    let mut service = ServiceProcess::start(&settings).await;
    let mut last = 0;
    for kill in 1..=kills {
        let target = unique * kill as i64 / (kills as i64 + 1);
        eventually("progress before the next kill", || async {
            applied_count(&pool).await >= target
        })
        .await;
        service.kill_9();
        let at_kill = applied_count(&pool).await;
        assert!(
            at_kill >= last && at_kill < unique,
            "kill {kill} at {at_kill} of {unique}"
        );
        last = at_kill;
        service = ServiceProcess::start(&settings).await;
    }

    until_done(&settings, &pool, messages as i64, unique).await;
    assert_audit_log_once(&pool, unique).await;
    assert_stock(&pool, &expected_stock(&config)).await;
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_stopped_for_ten_seconds_mid_run_pauses_the_consumer_and_loses_nothing() {
    let postgres = PrivatePostgres::start_new();
    let messages = env_or("FAULT_MESSAGES", 20_000);
    let mut settings = kafka_settings(3, &[("KAFKA_BATCH_SIZE", "100")]);
    settings.database = postgres.url().parse().unwrap();
    let config = generated(messages, 22, 0.05);
    produce_generated(&settings, config.clone(), false).await;
    let unique = unique_events(&config);
    let app = spawn_app_from(settings.clone()).await;

    eventually("some records applied", || async {
        applied_count(&app.pool).await >= unique / 4
    })
    .await;
    postgres.stop();
    let (status, body) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["components"]["db"], "down");
    // A lookup that must read PostgreSQL says so, without the database's
    // own error text.
    let id = Uuid::new_v4();
    let (status, body) = app
        .get(&format!("/api/v1/warehouses/{id}/products/{id}"))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "unavailable", "{body}");
    assert_eq!(body["detail"], warehouse_stock::api::UNAVAILABLE_DETAIL);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (status, _) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    postgres.start();

    until_done(&settings, &app.pool, messages as i64, unique).await;
    let (status, _) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_audit_log_once(&app.pool, unique).await;
    assert_stock(&app.pool, &expected_stock(&config)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_lookups_answer_from_postgresql_and_none_is_stale_after() {
    let mut redis = PrivateRedis::start();
    let messages = env_or("FAULT_MESSAGES", 20_000);
    let redis_url = redis.url();
    let settings = kafka_settings(
        3,
        &[
            ("KAFKA_BATCH_SIZE", "100"),
            ("REDIS_URL", redis_url.as_str()),
        ],
    );
    let config = generated(messages, 23, 0.05);
    let expected = expected_stock(&config);
    let pairs: Vec<(Uuid, Uuid)> = expected.keys().copied().collect();
    let app = spawn_app_from(settings.clone()).await;
    let producing = {
        let (settings, config) = (settings.clone(), config.clone());
        tokio::spawn(async move { produce_generated(&settings, config, false).await })
    };
    let unique = unique_events(&config);

    // Fill the cache while the stream moves the figures…
    eventually("some records applied", || async {
        applied_count(&app.pool).await >= unique / 5
    })
    .await;
    for &(w, p) in &pairs {
        app.stock(w, p).await;
    }
    app.stock_many(&pairs).await;
    // …then freeze Redis with those entries in it, and keep reading, one
    // pair at a time and all at once.
    redis.pause();
    for _ in 0..3 {
        for &(w, p) in &pairs {
            let (status, body) = app
                .get(&format!("/api/v1/warehouses/{w}/products/{p}"))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        assert_eq!(app.stock_many(&pairs).await.len(), pairs.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, body) = app.get("/health/ready").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "Redis down does not make the service unready"
    );
    assert_eq!(body["components"]["redis"], "down");
    redis.resume();

    producing.await.unwrap();
    until_done(&settings, &app.pool, messages as i64, unique).await;
    assert_audit_log_once(&app.pool, unique).await;
    assert_stock(&app.pool, &expected).await;
    // The entries cached before the freeze were changed while Redis was
    // away; none of them may be served now.
    app.wait_for_cache().await;
    for (&(w, p), &q) in &expected {
        assert_eq!(app.stock(w, p).await, q, "stale stock for {w}/{p}");
    }
    let figures = app.stock_many(&pairs).await;
    for (pair, q) in pairs.iter().zip(figures) {
        assert_eq!(q, expected[pair], "stale bulk figure for {pair:?}");
    }
    redis.stop();
}

/// The broker goes away and comes back while the service waits for the
/// stream, and the test holds the consumer to noticing, reconnecting by
/// itself and then applying the whole stream exactly. The service runs as a
/// child process, as in production. The broker is in memory: it forgets its
/// topics and offsets on a restart, which no Kafka cluster does, so it is
/// restarted before anything is produced; a consumer that had read records
/// would otherwise hold positions that name other records on the new broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_restarted_under_a_running_consumer_it_reconnects_and_stays_exact() {
    let mut broker = PrivateBroker::start();
    let mut settings = kafka_settings(3, &[("KAFKA_BATCH_SIZE", "100")]);
    settings.kafka.bootstrap_servers = format!("127.0.0.1:{}", broker.port);
    let pool = pool_of(&settings).await;
    let service = ServiceProcess::start(&settings).await;
    let client = reqwest::Client::new();
    let kafka_component = || async {
        let ready = client
            .get(format!("{}/health/ready", service.address))
            .send()
            .await
            .unwrap();
        ready.json::<serde_json::Value>().await.unwrap()["components"]["kafka"]
            .as_str()
            .unwrap()
            .to_string()
    };

    broker.stop();
    eventually("the consumer to see the broker gone", || async {
        kafka_component().await == "down"
    })
    .await;
    broker.restart();
    let config = generated(5_000, 24, 0.05);
    produce_generated(&settings, config.clone(), false).await;

    let unique = unique_events(&config);
    eventually("the stream applied", || async {
        let applied = applied_count(&pool).await;
        assert!(applied <= unique, "overshoot: {applied} of {unique}");
        applied == unique
    })
    .await;
    // The health check probes the broker on its own schedule, so it may
    // still carry a failed probe from the restart when the stream is done.
    eventually("readiness to report the broker back", || async {
        kafka_component().await == "ok"
    })
    .await;
    assert_audit_log_once(&pool, unique).await;
    assert_stock(&pool, &expected_stock(&config)).await;
}
