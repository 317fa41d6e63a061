use crate::helpers::{PrivateRedis, spawn_app, spawn_app_with, stock_up};
use redis::AsyncCommands;
use reqwest::StatusCode;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

async fn redis_get(url: &str, key: &str) -> Option<String> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    conn.get(key).await.unwrap()
}

#[tokio::test]
async fn a_write_refreshes_the_cached_stock_with_its_new_version() {
    let app = spawn_app().await;
    app.wait_for_cache().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 5).await;
    assert_eq!(app.stock(w, p).await, 5);
    let key = format!("{}stock:{w}:{p}", app.settings.cache_prefix);
    assert_eq!(
        redis_get(&crate::helpers::redis_url(), &key)
            .await
            .as_deref(),
        Some("1|5")
    );

    stock_up(&app, w, p, 3).await;

    assert_eq!(
        redis_get(&crate::helpers::redis_url(), &key)
            .await
            .as_deref(),
        Some("2|8"),
        "the commit itself refreshed the entry"
    );
    assert_eq!(app.stock(w, p).await, 8);
}

#[tokio::test]
async fn a_slow_reader_cannot_put_an_older_value_back() {
    let app = spawn_app().await;
    app.wait_for_cache().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 5).await;
    // A reader of the same cache that loaded the row (quantity 5, version 1)
    // before the next commit, and fills the cache only after it.
    let reader = app.ledger(&crate::helpers::redis_url()).await;
    let cache = reader.cache().clone();
    let (_stop, stopped) = watch::channel(false);
    tokio::spawn(cache.clone().run_probe(stopped));
    while !cache.is_up() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Drop the entry so the slow reader sees a miss, as it would have.
    let key = cache.stock_key(w, p);
    let client = redis::Client::open(crate::helpers::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = conn.del(&key).await.unwrap();
    stock_up(&app, w, p, 1).await; // version 2, quantity 6, refreshed into the cache

    cache.fill(&key, &5_i64, 1).await.unwrap();

    assert_eq!(
        redis_get(&crate::helpers::redis_url(), &key)
            .await
            .as_deref(),
        Some("2|6")
    );
    assert_eq!(app.stock(w, p).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_survive_redis_stopping_and_serve_nothing_stale_once_it_returns() {
    let mut redis = PrivateRedis::start();
    let app = spawn_app_with(&[("REDIS_URL", &redis.url())]).await;
    app.wait_for_cache().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 5).await;
    assert_eq!(app.stock(w, p).await, 5);

    // Redis stops: writes and reads keep working from PostgreSQL.
    redis.stop();
    stock_up(&app, w, p, 3).await;
    assert_eq!(app.stock(w, p).await, 8);
    let (status, body) = app.get("/health/ready").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "Redis down is degraded, not unready"
    );
    assert_eq!(body["components"]["redis"], "down");

    // Redis comes back (empty, as this one keeps nothing on disk).
    redis.restart();
    app.wait_for_cache().await;
    assert_eq!(app.stock(w, p).await, 8);
    stock_up(&app, w, p, 1).await;
    assert_eq!(app.stock(w, p).await, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_made_while_redis_hangs_is_not_hidden_by_the_old_entry_afterwards() {
    let redis = PrivateRedis::start();
    let app = spawn_app_with(&[("REDIS_URL", &redis.url())]).await;
    app.wait_for_cache().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 5).await;
    assert_eq!(app.stock(w, p).await, 5);
    let key = format!("{}stock:{w}:{p}", app.settings.cache_prefix);
    assert_eq!(redis_get(&redis.url(), &key).await.as_deref(), Some("1|5"));

    // Redis stops answering but keeps its data: the old entry survives.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(3000)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .unwrap();

    // Requests are neither failed nor held for the length of the pause.
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(2500))
        .build()
        .unwrap();
    let response = quick
        .post(format!("{}/api/v1/kafka/webhook", app.address))
        .json(&crate::helpers::Ev::new(w, p, 4).arrival())
        .send()
        .await
        .expect("a write while Redis hangs must not stall");
    assert_eq!(response.status(), StatusCode::OK);
    let stock: serde_json::Value = quick
        .get(format!("{}/api/v1/warehouse/{w}/products/{p}", app.address))
        .send()
        .await
        .expect("a read while Redis hangs must not stall")
        .json()
        .await
        .unwrap();
    assert_eq!(stock["quantity"], 9);

    // After the pause the cache comes back, and the missed refresh is
    // written before Redis is read again.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    app.wait_for_cache().await;
    assert_eq!(app.stock(w, p).await, 9);
    assert_eq!(redis_get(&redis.url(), &key).await.as_deref(), Some("2|9"));
}

#[tokio::test]
async fn a_redelivery_repairs_an_entry_left_stale_by_a_crash_between_commit_and_refresh() {
    let app = spawn_app().await;
    app.wait_for_cache().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 5).await;
    assert_eq!(app.stock(w, p).await, 5);

    // An instance commits an event but dies before its cache refresh: a
    // ledger whose Redis is unreachable does exactly that.
    let crashed = app.ledger("redis://127.0.0.1:1/0").await;
    let event = crate::helpers::Ev::new(w, p, 3).arrival();
    crashed
        .apply(&[crate::ledger::parse(&event)])
        .await
        .unwrap();
    assert_eq!(
        app.stock(w, p).await,
        5,
        "the entry is stale until the event is redelivered"
    );

    // Redelivery (Kafka after the crash, or a client retrying the webhook).
    let (status, body) = app.post(&event).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "duplicate");
    assert_eq!(app.stock(w, p).await, 8);
}
