//! Liveness and readiness. Readiness needs PostgreSQL; Redis being down only
//! degrades lookups to PostgreSQL, so it is reported but does not fail it.

use super::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "ok")]
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ok`, or `unavailable` while PostgreSQL does not answer.
    #[schema(example = "ok")]
    status: &'static str,
    components: Components,
}

#[derive(Serialize, ToSchema)]
pub struct Components {
    /// `ok` or `down`.
    pub db: &'static str,
    /// `ok` or `down`; lookups fall back to PostgreSQL while it is down.
    pub redis: &'static str,
    /// `disabled` (webhook_only mode), `ok`, `down`, or `stuck`: a batch
    /// has kept failing for `KAFKA_STUCK_AFTER_SECONDS` and its partition
    /// stands still.
    pub kafka: &'static str,
    /// The stock-change relay: `disabled` (no topic), `ok` (this instance
    /// publishes), `standby` (another instance does) or `down` (publishing
    /// fails and is retried).
    pub stock_changes: &'static str,
    /// Present while a transaction has held the feed's horizon back for
    /// over [`HELD_BACK`]: which session, since when, for how long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock_changes_held_back: Option<String>,
}

/// How long the horizon may wait before readiness names what holds it: a
/// batch in flight holds it for milliseconds.
const HELD_BACK: Duration = Duration::from_secs(5);

/// The process is up and serving HTTP.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "operations",
    responses((status = 200, description = "Always, while the process serves", body = Liveness))
)]
pub async fn live() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// The previous service's liveness path, kept for its probes.
#[utoipa::path(
    get,
    path = "/api/v1/admin/liveness",
    tag = "operations",
    responses((status = 200, description = "Always, while the process serves", body = Liveness))
)]
pub async fn live_legacy() -> Json<Liveness> {
    live().await
}

/// Whether the service can take traffic, with the state of each component.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "operations",
    responses(
        (status = 200, description = "PostgreSQL answers", body = Readiness),
        (status = 503, description = "PostgreSQL does not answer", body = Readiness),
    )
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let components = check(&state).await;
    // A consumer whose batch keeps failing applies nothing: not ready.
    let ready = components.db == "ok" && components.kafka != "stuck";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if ready { "ok" } else { "unavailable" },
        components,
    };
    (status, Json(body))
}

/// Asks PostgreSQL and Redis, and reads the consumer's state. `/metrics`
/// runs the same check, so a scrape reports what readiness would say.
pub async fn check(state: &AppState) -> Components {
    let db = tokio::time::timeout(CHECK_TIMEOUT, state.ledger.database_answers());
    let (db, redis) = tokio::join!(db, state.ledger.cache_answers());
    Components {
        db: if matches!(db, Ok(true)) { "ok" } else { "down" },
        redis: if redis { "ok" } else { "down" },
        kafka: state.kafka.as_str(),
        stock_changes: state.relay.report().state.as_str(),
        stock_changes_held_back: held_back(state).await,
    }
}

/// What holds the feed back, once it has for [`HELD_BACK`]: asked of
/// PostgreSQL only then.
async fn held_back(state: &AppState) -> Option<String> {
    let held = state
        .changes
        .held_back()
        .filter(|held| *held >= HELD_BACK)?;
    let writer = tokio::time::timeout(CHECK_TIMEOUT, state.changes.oldest_writer()).await;
    let since = held.as_secs();
    Some(match writer {
        Ok(Ok(Some((pid, began)))) => format!(
            "held back for {since} s by pid {pid}, in a transaction since {}",
            began.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        _ => format!("held back for {since} s by a transaction still running"),
    })
}

/// The previous service's readiness path, kept for its probes.
#[utoipa::path(
    get,
    path = "/api/v1/admin/readiness",
    tag = "operations",
    responses(
        (status = 200, description = "PostgreSQL answers", body = Readiness),
        (status = 503, description = "PostgreSQL does not answer", body = Readiness),
    )
)]
pub async fn ready_legacy(state: State<AppState>) -> (StatusCode, Json<Readiness>) {
    ready(state).await
}
