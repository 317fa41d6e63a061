//! The webhook token, the per-request time limit and the bound on requests
//! served at once.

use crate::helpers::{Ev, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

const TOKEN: &str = "s3cret-token-of-the-webhook";

async fn post_with(
    app: &crate::helpers::TestApp,
    auth: Option<&str>,
) -> (StatusCode, Value, Option<String>) {
    let mut request = app
        .client
        .post(format!("{}/api/v1/kafka/webhook", app.address))
        .json(&Ev::new(Uuid::new_v4(), Uuid::new_v4(), 5).arrival());
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (status, response.json().await.unwrap(), challenge)
}

#[tokio::test]
async fn with_a_token_configured_the_webhook_refuses_a_call_without_it() {
    let app = spawn_app_with(&[("WEBHOOK_TOKEN", TOKEN)]).await;

    let (status, body, challenge) = post_with(&app, None).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "unauthorized");
    assert!(body["detail"].as_str().unwrap().contains("Bearer"));
    assert_eq!(challenge.as_deref(), Some("Bearer"));
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM event_log")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(applied, 0, "a refused call must not reach the ledger");
}

#[tokio::test]
async fn with_a_token_configured_the_webhook_refuses_a_wrong_token() {
    let app = spawn_app_with(&[("WEBHOOK_TOKEN", TOKEN)]).await;

    for wrong in [
        "Bearer s3cret-token-of-the-webhooK",
        "Bearer s3cret-token-of-the-webhook-and-more",
        "Bearer ",
        "Basic czNjcmV0LXRva2VuLW9mLXRoZS13ZWJob29r",
        TOKEN,
    ] {
        let (status, body, _) = post_with(&app, Some(wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}");
        assert_eq!(body["code"], "unauthorized");
    }
}

#[tokio::test]
async fn with_the_right_token_the_webhook_applies_the_event_and_reads_stay_open() {
    let app = spawn_app_with(&[("WEBHOOK_TOKEN", TOKEN)]).await;

    let (status, body, _) = post_with(&app, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "processed");

    let w = body["details"]["warehouse_id"]
        .as_str()
        .unwrap()
        .to_string();
    let p = body["details"]["product_id"].as_str().unwrap().to_string();
    let (status, stock) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stock["quantity"], 5);
}

#[tokio::test]
async fn without_a_token_configured_the_webhook_takes_calls_without_one() {
    let app = spawn_app_with(&[]).await;

    let (status, body, _) = post_with(&app, None).await;

    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Opens a webhook request whose body never finishes, so the server holds it
/// (and its permit) until the time limit or until the socket closes.
async fn stalled_request(app: &crate::helpers::TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            b"POST /api/v1/kafka/webhook HTTP/1.1\r\nHost: test\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":",
        )
        .await
        .unwrap();
    stream
}

async fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("an answer before the test's own limit")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn a_request_over_the_time_limit_is_answered_503_timeout() {
    let app = spawn_app_with(&[("REQUEST_TIMEOUT_MS", "300")]).await;
    let mut stream = stalled_request(&app).await;

    let answer = read_answer(&mut stream).await;

    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"code\":\"timeout\""), "{answer}");
}

#[tokio::test]
async fn past_the_concurrency_bound_a_request_is_shed_with_503_overloaded() {
    let app = spawn_app_with(&[("MAX_CONCURRENT_WRITES", "1")]).await;
    let _held = stalled_request(&app).await;
    // Give the server time to route the stalled request and take the permit.
    let mut shed = None;
    for _ in 0..50 {
        let (status, body) = app
            .post(&Ev::new(Uuid::new_v4(), Uuid::new_v4(), 1).arrival())
            .await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            shed = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = shed.expect("a write past the bound is shed");
    assert_eq!(body["code"], "overloaded");

    // Lookups have a bound of their own, which the held write does not take.
    let id = Uuid::new_v4();
    let (status, _) = app
        .get(&format!("/api/v1/warehouses/{id}/products/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    // Probes are never shed.
    let (status, _) = app.get("/health/live").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_up_to_their_bound_leave_writes_and_lookups_their_places() {
    let app = spawn_app_with(&[
        ("MAX_CONCURRENT_REQUESTS", "4"),
        ("MAX_CONCURRENT_POLLS", "4"),
    ])
    .await;
    let (_, page) = app.get("/api/v1/stock/changes").await;
    let after = page["next_after"].as_i64().unwrap();
    // Four readers hold every place the feed has, waiting for a change in a
    // warehouse nobody writes to.
    let quiet = Uuid::new_v4();
    let url = format!(
        "{}/api/v1/stock/changes?after={after}&wait=20&warehouse_id={quiet}",
        app.address
    );
    let polls: Vec<_> = (0..4)
        .map(|_| tokio::spawn(app.client.get(url.clone()).send()))
        .collect();
    // Nothing else asks for a place meanwhile, so none of the four can be
    // shed; a second is ample for a local request to take its place.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        polls.iter().all(|p| !p.is_finished()),
        "the four polls wait"
    );
    let probe = format!(
        "{}/api/v1/stock/changes?after={after}&wait=0&warehouse_id={quiet}",
        app.address
    );
    let (status, _) = app.get(probe.trim_start_matches(&app.address)).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a fifth poll is shed once four are held"
    );
    // Meanwhile writes and lookups are served as if no one polled.
    for _ in 0..8 {
        let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
        let (status, body) = app.post(&Ev::new(w, p, 2).arrival()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(app.stock(w, p).await, 2);
    }
    assert!(
        polls.iter().all(|p| !p.is_finished()),
        "the polls were held"
    );
}

/// How many sessions of the test's database wait for a lock.
async fn lock_waiters(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_lookup_that_outlives_its_request_is_stopped_by_the_database_not_left_running() {
    let app = spawn_app_with(&[("REQUEST_TIMEOUT_MS", "500")]).await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    crate::helpers::stock_up(&app, w, p, 3).await;
    // Another session holds the stock table, so a read of it waits.
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE stock IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .unwrap();

    let (status, body) = app.get(&format!("/api/v1/warehouses/{w}/products")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "timeout");
    // Its statement ends with the request: nothing of the service's is
    // left waiting for the lock, though the lock is still held.
    crate::helpers::eventually("the lookup's statement to stop", || async {
        lock_waiters(&app.pool).await == 0
    })
    .await;
    holder.rollback().await.unwrap();
    let (status, _) = app.get(&format!("/api/v1/warehouses/{w}/products")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_lookup_takes_places_by_its_size_so_big_lookups_reach_the_bound_first() {
    let app = spawn_app_with(&[("MAX_CONCURRENT_REQUESTS", "16")]).await;
    let lookup = |pairs: usize| {
        let items: Vec<Value> = (0..pairs)
            .map(|_| json!({ "warehouse_id": Uuid::new_v4(), "product_id": Uuid::new_v4() }))
            .collect();
        app.client
            .post(format!("{}/api/v1/stock/lookup", app.address))
            .json(&json!({ "items": items }))
            .send()
    };
    // Another session holds the stock table, so lookups of pairs not
    // cached wait, each holding its places.
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE stock IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let one = tokio::spawn(lookup(1));
    // 1,000 pairs are about 95 KB: twelve places.
    let big = tokio::spawn(lookup(1000));
    crate::helpers::eventually("both lookups to wait", || async {
        lock_waiters(&app.pool).await == 2
    })
    .await;

    // Thirteen of sixteen places are taken: a single read still fits, a
    // second big lookup does not.
    let movement = format!("/api/v1/movements/{}", Uuid::new_v4());
    let (status, body) = app.get(&movement).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let refused = lookup(1000).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "overloaded");

    holder.rollback().await.unwrap();
    assert_eq!(one.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(big.await.unwrap().unwrap().status(), StatusCode::OK);
    // Once they are answered, their places are free again.
    assert_eq!(lookup(1000).await.unwrap().status(), StatusCode::OK);
}
