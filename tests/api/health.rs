use crate::helpers::{drop_database, spawn_app};
use reqwest::StatusCode;

#[tokio::test]
async fn liveness_and_readiness_answer_on_both_paths() {
    let app = spawn_app().await;
    app.wait_for_cache().await;
    for path in ["/health/live", "/api/v1/admin/liveness"] {
        let (status, _) = app.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    for path in ["/health/ready", "/api/v1/admin/readiness"] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body["status"], "ok");
        assert_eq!(body["components"]["db"], "ok");
        assert_eq!(body["components"]["redis"], "ok");
        assert_eq!(body["components"]["kafka"], "disabled");
    }
}

#[tokio::test]
async fn readiness_is_503_when_postgresql_is_unreachable() {
    let app = spawn_app().await;
    drop_database(&app.database_url).await;

    let (status, body) = app.get("/health/ready").await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["components"]["db"], "down");
    assert_eq!(body["status"], "unavailable");
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404_and_a_wrong_method_a_json_405() {
    let app = spawn_app().await;
    let (status, body) = app.get("/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["detail"].is_string());

    let response = app
        .client
        .delete(format!("{}/api/v1/kafka/webhook", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["detail"].is_string());
}
