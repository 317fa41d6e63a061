use crate::fixtures::PrivateRedis;
use crate::helpers::{spawn_app, spawn_app_with, stock_up};
use redis::AsyncCommands;
use reqwest::StatusCode;
use std::time::Duration;
use uuid::Uuid;
use warehouse_stock::ledger::reads;

async fn redis_get(url: &str, key: &str) -> Option<String> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    conn.get(key).await.unwrap()
}

#[tokio::test]
async fn a_write_drops_the_cached_stock_and_the_next_read_caches_the_new_value() {
    let app = spawn_app().await;
    app.wait_for_cache().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 5).await;
    assert_eq!(app.stock(w, p).await, 5);
    let key = format!("{}stock:{w}:{p}", app.settings.cache.prefix);
    assert_eq!(
        cached_quantity(redis_get(&crate::helpers::redis_url(), &key).await),
        Some(5)
    );

    stock_up(&app, w, p, 3).await;

    assert_eq!(
        redis_get(&crate::helpers::redis_url(), &key).await,
        None,
        "the commit itself dropped the entry"
    );
    assert_eq!(app.stock(w, p).await, 8);
    assert_eq!(
        cached_quantity(redis_get(&crate::helpers::redis_url(), &key).await),
        Some(8)
    );
}

#[tokio::test]
async fn a_slow_bulk_reader_cannot_put_an_older_value_back() {
    let app = spawn_app().await;
    app.wait_for_cache().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let other = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 5).await;
    stock_up(&app, other.0, other.1, 2).await;
    let reader = app.ledger(&crate::helpers::redis_url()).await;
    let cache = reader.cache().clone();
    let keys = vec![cache.stock_key(w, p), cache.stock_key(other.0, other.1)];

    // The bulk reader misses both, loads them, and is slow: a write to one
    // of them commits before it fills the cache.
    let app_ref = &app;
    let read = cache
        .read_many(
            &keys,
            |_| true,
            |missed| async move {
                assert_eq!(missed, vec![0, 1]);
                let found = reads::stock_many(&app_ref.pool, [(w, p), other]).await?;
                stock_up(app_ref, w, p, 1).await;
                Ok::<_, sqlx::Error>(vec![found[&(w, p)], found[&other]])
            },
        )
        .await
        .unwrap();

    assert_eq!(read, vec![5, 2], "the slow reader answers what it read");
    let redis = crate::helpers::redis_url();
    assert_eq!(
        redis_get(&redis, &keys[0]).await,
        None,
        "its fill was refused"
    );
    assert_eq!(app.stock_many(&[(w, p), other]).await, vec![6, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_lookup_while_redis_is_down_answers_from_postgresql_and_none_is_stale_after() {
    let mut redis = PrivateRedis::start();
    let app = spawn_app_with(&[("REDIS_URL", &redis.url())]).await;
    app.wait_for_cache().await;
    let pairs: Vec<(Uuid, Uuid)> = (0..3).map(|_| (Uuid::new_v4(), Uuid::new_v4())).collect();
    for &(w, p) in &pairs {
        stock_up(&app, w, p, 4).await;
    }
    assert_eq!(app.stock_many(&pairs).await, vec![4, 4, 4]);

    redis.stop();
    stock_up(&app, pairs[1].0, pairs[1].1, 3).await;
    assert_eq!(app.stock_many(&pairs).await, vec![4, 7, 4]);

    // Back empty: the figures are filled again, and stay current.
    redis.restart();
    app.wait_for_cache().await;
    assert_eq!(app.stock_many(&pairs).await, vec![4, 7, 4]);
    stock_up(&app, pairs[2].0, pairs[2].1, 1).await;
    assert_eq!(app.stock_many(&pairs).await, vec![4, 7, 5]);
    let key = app_key(&app, pairs[0]);
    assert_eq!(
        cached_quantity(redis_get(&redis.url(), &key).await),
        Some(4)
    );
}

fn app_key(app: &crate::helpers::TestApp, (w, p): (Uuid, Uuid)) -> String {
    format!("{}stock:{w}:{p}", app.settings.cache.prefix)
}

#[tokio::test]
async fn a_slow_reader_cannot_put_an_older_value_back() {
    let app = spawn_app().await;
    app.wait_for_cache().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 5).await;
    let reader = app.ledger(&crate::helpers::redis_url()).await;
    let cache = reader.cache().clone();
    let key = cache.stock_key(w, p);

    // A reader misses, loads the row from PostgreSQL, and is slow: a write
    // commits (and is acknowledged) before the reader fills the cache.
    let (read, _) = cache
        .read_through(&key, || async {
            let before = reads::stock(&app.pool, w, p).await?;
            stock_up(&app, w, p, 1).await;
            Ok::<_, sqlx::Error>(Some(before))
        })
        .await
        .unwrap();

    assert_eq!(
        read.map(|figure| figure.quantity),
        Some(5),
        "the slow reader answers what it read"
    );
    assert_eq!(
        redis_get(&crate::helpers::redis_url(), &key).await,
        None,
        "its fill was refused"
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
    let key = format!("{}stock:{w}:{p}", app.settings.cache.prefix);
    assert_eq!(
        cached_quantity(redis_get(&redis.url(), &key).await),
        Some(5)
    );

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

    // After the pause the cache comes back, and the missed invalidation is
    // applied before Redis is read again.
    app.wait_for_cache().await;
    assert_eq!(app.stock(w, p).await, 9);
    assert_eq!(
        cached_quantity(redis_get(&redis.url(), &key).await),
        Some(9)
    );
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

/// The quantity of a cached stock figure, as Redis holds it.
fn cached_quantity(raw: Option<String>) -> Option<i64> {
    let figure: serde_json::Value = serde_json::from_str(&raw?).expect("a cached figure is JSON");
    figure["quantity"].as_i64()
}

#[tokio::test]
async fn a_bulk_lookup_of_pairs_that_never_changed_adds_no_cache_keys() {
    let app = spawn_app().await;
    app.wait_for_cache().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 4).await;
    let unknown: Vec<(Uuid, Uuid)> = (0..50).map(|_| (Uuid::new_v4(), Uuid::new_v4())).collect();
    let mut pairs = unknown.clone();
    pairs.push((w, p));
    let figures = app.stock_many(&pairs).await;
    assert_eq!(figures.iter().sum::<i64>(), 4);
    let url = crate::helpers::redis_url();
    let prefix = &app.settings.cache.prefix;
    for (w, p) in &unknown {
        let key = format!("{prefix}stock:{w}:{p}");
        assert_eq!(redis_get(&url, &key).await, None, "{key} was cached");
    }
    // A pair with a change is cached as before.
    let key = format!("{prefix}stock:{w}:{p}");
    assert_eq!(cached_quantity(redis_get(&url, &key).await), Some(4));
}
