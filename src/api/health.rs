//! Liveness and readiness. Readiness needs PostgreSQL; Redis being down only
//! degrades lookups to PostgreSQL, so it is reported but does not fail it.

use super::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let db = tokio::time::timeout(
        CHECK_TIMEOUT,
        sqlx::query("SELECT 1").execute(state.ledger.pool()),
    );
    let (db, redis) = tokio::join!(db, state.ledger.cache().ping());
    let db_ok = matches!(db, Ok(Ok(_)));
    let kafka = state.kafka.as_str();
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if db_ok { "ok" } else { "unavailable" },
        "components": {
            "db": if db_ok { "ok" } else { "down" },
            "redis": if redis { "ok" } else { "down" },
            "kafka": kafka,
        }
    });
    (status, Json(body))
}
