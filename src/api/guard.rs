//! What stands between a caller and a handler: the webhook's bearer token,
//! the per-request time limit and the bound on requests served at once.
//!
//! Each answers with the API's one error shape, so a caller that is refused
//! learns why in the same JSON as every other error.

use super::error::AppError;
use crate::config::{HttpSettings, WebhookToken};
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The limits of one server, shared by its middleware.
#[derive(Clone)]
pub struct Guard {
    token: Option<WebhookToken>,
    timeout: Duration,
    permits: Arc<Semaphore>,
}

impl Guard {
    pub fn new(settings: &HttpSettings) -> Self {
        Guard {
            token: settings.webhook_token.clone(),
            timeout: settings.request_timeout,
            permits: Arc::new(Semaphore::new(settings.max_concurrent_requests.get())),
        }
    }
}

/// Refuses a webhook call without the configured bearer token. Without a
/// configured token every call passes, as with the service this replaces.
pub async fn require_token(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let Some(token) = &guard.token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(presented) if token.matches(presented.trim()) => next.run(request).await,
        Some(_) => AppError::Unauthorized("the bearer token is not valid".into()).into_response(),
        None => {
            AppError::Unauthorized("this endpoint requires Authorization: Bearer <token>".into())
                .into_response()
        }
    }
}

/// Sheds load instead of queueing it: past the bound, a request is answered
/// at once with 503 `overloaded`, so latency stays bounded for the rest and
/// callers back off on `Retry-After`.
pub async fn limit_concurrency(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    match guard.permits.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => AppError::Overloaded.into_response(),
    }
}

/// Answers 503 `timeout` when a request takes longer than the limit. A
/// webhook event that was already handed to the ledger may still commit;
/// its sender's retry is then answered as a duplicate, so nothing is
/// applied twice.
pub async fn time_limit(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(guard.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => AppError::Timeout(guard.timeout).into_response(),
    }
}
