use crate::helpers::{Ev, spawn_app, stock_up};
use reqwest::StatusCode;
use uuid::Uuid;

#[tokio::test]
async fn events_total_grows_by_exactly_the_events_applied() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let applied = |app: &crate::helpers::TestApp| {
        let app = app.address.clone();
        async move {
            let text = reqwest::get(format!("{app}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            crate::helpers::metric_value(
                &text,
                "events_total",
                &[("source", "webhook"), ("outcome", "applied")],
            )
        }
    };
    let before = applied(&app).await;

    for q in 1..=5 {
        stock_up(&app, w, p, q).await;
    }
    let again = Ev::new(w, p, 100);
    app.post(&again.departure()).await;

    assert_eq!(applied(&app).await - before, 5.0);
    let rejected = app
        .metric(
            "events_total",
            &[
                ("source", "webhook"),
                ("outcome", "rejected"),
                ("reason", "insufficient_stock"),
            ],
        )
        .await;
    assert_eq!(rejected, 1.0);
    assert_eq!(app.metric("ledger_batch_size_sum", &[]).await, 6.0);
}

#[tokio::test]
async fn http_cache_and_pool_metrics_are_exposed() {
    let app = spawn_app().await;
    app.wait_for_cache().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 1).await;
    app.stock(w, p).await; // miss
    app.stock(w, p).await; // hit

    let response = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    let route = "/api/v1/warehouse/{warehouse_id}/products/{product_id}";
    assert_eq!(
        app.metric(
            "http_requests_total",
            &[("route", route), ("status", "200")]
        )
        .await,
        2.0
    );
    assert_eq!(
        app.metric("http_request_duration_seconds_count", &[("route", route)])
            .await,
        2.0
    );
    assert_eq!(
        app.metric("cache_requests_total", &[("result", "hit")])
            .await,
        1.0
    );
    assert_eq!(
        app.metric("cache_requests_total", &[("result", "miss")])
            .await,
        1.0
    );
    assert!(app.metric("db_pool_connections", &[("state", "max")]).await >= 1.0);
}

#[tokio::test]
async fn requests_with_made_up_methods_add_no_series_and_count_as_other() {
    let app = spawn_app().await;
    // The first scrape counts itself: read the series once it has.
    app.metrics_text().await;
    let before = app.metrics_text().await;
    for i in 0..20 {
        let method =
            reqwest::Method::from_bytes(format!("M{i}X{}", Uuid::new_v4().simple()).as_bytes())
                .unwrap();
        let answer = app
            .client
            .request(method, format!("{}/api/v1/rejections", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    let after = app.metrics_text().await;
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .count()
    };
    // One new series at most: `other` on this route with this status.
    assert!(series(&after) <= series(&before) + 1, "{after}");
    assert!(
        !after.contains("method=\"M0X"),
        "a made-up method became a label"
    );
    assert!(
        app.metric(
            "http_requests_total",
            &[("method", "other"), ("status", "405")]
        )
        .await
            >= 20.0
    );
}
