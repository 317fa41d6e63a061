//! What stands between a caller and a handler: the webhook's and the
//! admin's bearer tokens, the per-request time limit and the bound on
//! requests served at once.
//!
//! Each answers with the API's one error shape, so a caller that is refused
//! learns why in the same JSON as every other error.

use super::error::AppError;
use crate::config::{BearerToken, HttpSettings};
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The largest webhook body accepted.
pub const BODY_LIMIT: usize = crate::domain::event::MAX_MESSAGE_BYTES;

/// The largest bulk-lookup body accepted: 1,000 pairs, with room for
/// whitespace.
pub const LOOKUP_BODY_LIMIT: usize = 256 * 1024;

/// The limits of one server, shared by its middleware.
#[derive(Clone)]
pub struct Guard {
    token: Option<BearerToken>,
    admin: Option<BearerToken>,
    timeout: Duration,
    /// Writes, lookups and long polls each have their own bound, so that
    /// no kind of caller can take the places of another: a thousand idle
    /// long polls, or a flood of unauthenticated lookups, leave the
    /// webhook its own.
    writes: Limit,
    reads: Limit,
    polls: Limit,
}

/// One bound on requests served at once.
#[derive(Clone)]
pub struct Limit {
    places: Arc<Semaphore>,
    /// How many places there are: the most one request may take.
    size: u32,
}

impl Limit {
    fn new(permits: std::num::NonZeroUsize) -> Self {
        let size = u32::try_from(permits.get()).unwrap_or(Semaphore::MAX_PERMITS as u32);
        Limit {
            places: Arc::new(Semaphore::new(size as usize)),
            size,
        }
    }
}

/// The body bytes of a bulk lookup that count as one more request: about
/// 85 pairs. A lookup of 1,000 pairs takes the places of a dozen single
/// lookups, so a caller sending big lookups reaches the bound as soon as
/// one sending small ones does for the same work.
const LOOKUP_BYTES_PER_PLACE: u64 = 8 * 1024;

/// How many places `request` takes: one, and for a bulk lookup one more
/// per [`LOOKUP_BYTES_PER_PLACE`] of its declared body (as many as the
/// largest body when it declares none). Never more than the bound has.
fn weight(request: &Request, size: u32) -> u32 {
    if request.uri().path() != super::lookups::LOOKUP_PATH {
        return 1;
    }
    let bytes = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(LOOKUP_BODY_LIMIT as u64)
        .min(LOOKUP_BODY_LIMIT as u64);
    let extra = u32::try_from(bytes / LOOKUP_BYTES_PER_PLACE).unwrap_or(u32::MAX);
    extra.saturating_add(1).min(size)
}

/// Which bound a route counts against.
#[derive(Clone, Copy)]
pub enum Bound {
    Writes,
    Reads,
    Polls,
}

impl Guard {
    pub fn new(settings: &HttpSettings) -> Self {
        Guard {
            token: settings.webhook_token.clone(),
            admin: settings.admin_token.clone(),
            timeout: settings.request_timeout,
            writes: Limit::new(settings.max_concurrent_writes),
            reads: Limit::new(settings.max_concurrent_requests),
            polls: Limit::new(settings.max_concurrent_polls),
        }
    }

    /// The bound a route of `bound` counts against.
    pub fn limit(&self, bound: Bound) -> Limit {
        match bound {
            Bound::Writes => self.writes.clone(),
            Bound::Reads => self.reads.clone(),
            Bound::Polls => self.polls.clone(),
        }
    }
}

/// Refuses a webhook call without the configured bearer token. Without a
/// configured token every call passes, as with the service this replaces.
pub async fn require_token(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let Some(token) = &guard.token else {
        return next.run(request).await;
    };
    match check_bearer(token, &request) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Refuses an admin write without `ADMIN_TOKEN`. A service without the
/// setting takes no admin writes at all, so turning it on is a decision,
/// never a default: a request that presents a token is refused with 403,
/// and one without any with 401, as for a service that has a token, since
/// the document makes the header required and a client expects 401 for a
/// missing one.
pub async fn require_admin(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let Some(token) = &guard.admin else {
        if !request.headers().contains_key(AUTHORIZATION) {
            return AppError::Unauthorized(
                "this endpoint requires Authorization: Bearer <token>".into(),
            )
            .into_response();
        }
        return AppError::Forbidden(
            "admin writes are turned off: the service has no ADMIN_TOKEN".into(),
        )
        .into_response();
    };
    match check_bearer(token, &request) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Whether `request` presents `token` as its bearer token.
fn check_bearer(token: &BearerToken, request: &Request) -> Result<(), AppError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(presented) if token.matches(presented.trim()) => Ok(()),
        Some(_) => Err(AppError::Unauthorized(
            "the bearer token is not valid".into(),
        )),
        None => Err(AppError::Unauthorized(
            "this endpoint requires Authorization: Bearer <token>".into(),
        )),
    }
}

/// Sheds load instead of queueing it: past the bound, a request is answered
/// at once with 503 `overloaded`, so latency stays bounded for the rest and
/// callers back off on `Retry-After`. A bulk lookup counts by its size.
pub async fn limit_concurrency(
    State(limit): State<Limit>,
    request: Request,
    next: Next,
) -> Response {
    let places = weight(&request, limit.size);
    match limit.places.clone().try_acquire_many_owned(places) {
        Ok(_permit) => next.run(request).await,
        Err(_) => AppError::Overloaded.into_response(),
    }
}

/// Answers 503 `timeout` when a request takes longer than the limit. A
/// webhook event that was already handed to the ledger may still commit;
/// its sender's retry is then answered as a duplicate, so nothing is
/// applied twice.
///
/// A long poll of the feed is given its `wait` on top: holding it is what
/// it asked for.
pub async fn time_limit(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let limit = guard.timeout + requested_wait(&request);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => AppError::Timeout(limit).into_response(),
    }
}

/// The `wait` a feed request asks for; nothing for any other request, or
/// for a value the handler will refuse.
fn requested_wait(request: &Request) -> Duration {
    if request.uri().path() != super::changes::PATH {
        return Duration::ZERO;
    }
    request
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("wait="))
        .and_then(|raw| super::extract::parse_wait(Some(raw)).ok())
        .unwrap_or_default()
}
