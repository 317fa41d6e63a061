//! The one error type of the HTTP API. Every error answer is JSON with a
//! `detail` string, and a machine-readable `code` where one helps.

use crate::domain::event::MAX_MESSAGE_BYTES;
use crate::domain::{DecodeCode, DecodeError, FieldError, ParseError};
use crate::ingest::CommitError;
use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for programs: `malformed_json`, `invalid_event`,
    /// `invalid_uuid`, `not_found`, `unauthorized`, `unavailable`, …
    #[schema(example = "invalid_uuid")]
    pub code: &'static str,
    /// What went wrong, for people.
    #[schema(example = "warehouse_id must be a UUID, got \"abc\"")]
    pub detail: String,
    /// Every broken field, for `invalid_event` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    MalformedJson(String),
    #[error("{detail}")]
    InvalidEvent {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Over a route's own body limit (the webhook's is [`AppError::PayloadTooLarge`]).
    #[error("{0}")]
    BodyTooLarge(String),
    #[error("at most {limit} {what} per request, got {got}")]
    TooManyItems {
        what: &'static str,
        limit: usize,
        got: usize,
    },
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed, but what it asks for does not exist yet
    /// in the resource's present state.
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("the server is handling as many requests as it allows; retry shortly")]
    Overloaded,
    /// An `as_of` moment that later commits could still change.
    #[error(
        "as_of is not final yet: a transaction that began before it is still running; \
         retry shortly"
    )]
    NotFinal,
    #[error("the request took longer than the limit of {0:?}")]
    Timeout(std::time::Duration),
    /// A statement ran past its time limit and PostgreSQL stopped it.
    #[error(
        "the query took longer than the service allows and was stopped; retry, or ask for less"
    )]
    QueryTimeout,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        AppError::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::MalformedJson(_) => {
                (StatusCode::BAD_REQUEST, DecodeCode::MalformedJson.as_str())
            }
            AppError::InvalidEvent { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                DecodeCode::InvalidEvent.as_str(),
            ),
            AppError::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                DecodeCode::PayloadTooLarge.as_str(),
            ),
            AppError::BodyTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                DecodeCode::PayloadTooLarge.as_str(),
            ),
            AppError::TooManyItems { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_items"),
            AppError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                DecodeCode::UnsupportedMediaType.as_str(),
            ),
            AppError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            AppError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AppError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            AppError::NotFinal => (StatusCode::SERVICE_UNAVAILABLE, "as_of_not_final"),
            AppError::Timeout(_) | AppError::QueryTimeout => {
                (StatusCode::SERVICE_UNAVAILABLE, "timeout")
            }
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// What a caller is told when a service this one depends on does not
/// answer.
pub const UNAVAILABLE_DETAIL: &str =
    "the service cannot reach its database or is stopping; retry shortly";

impl AppError {
    /// The status and body every caller is shown, the console's error page
    /// included: the same code, and no database text.
    pub fn into_answer(self) -> (StatusCode, ErrorBody) {
        let (status, code) = self.status_and_code();
        let body = match self {
            AppError::InvalidEvent { detail, errors } => ErrorBody {
                code,
                detail,
                errors: Some(errors),
            },
            AppError::Internal(e) => {
                // The cause goes to the log, not to the caller.
                tracing::error!(error = ?e, "request failed");
                ErrorBody {
                    code,
                    detail: "internal error".into(),
                    errors: None,
                }
            }
            AppError::Unavailable(cause) => {
                // The database's own words (addresses, error text) go to the
                // log; an anonymous caller learns only that it may retry.
                tracing::warn!(cause, "answered 503 unavailable");
                ErrorBody {
                    code,
                    detail: UNAVAILABLE_DETAIL.into(),
                    errors: None,
                }
            }
            other => ErrorBody {
                code,
                detail: other.to_string(),
                errors: None,
            },
        };
        (status, body)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body) = self.into_answer();
        let code = body.code;
        let mut response = (status, Json(body)).into_response();
        match code {
            "unauthorized" => {
                response.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            "overloaded" | "unavailable" | "as_of_not_final" => {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("1"),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<ParseError> for AppError {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::MalformedJson(_) => AppError::MalformedJson(e.to_string()),
            ParseError::Invalid(ref errors) => AppError::InvalidEvent {
                detail: e.to_string(),
                errors: errors.clone(),
            },
        }
    }
}

impl From<DecodeError> for AppError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::TooLarge { .. } => AppError::PayloadTooLarge {
                limit: MAX_MESSAGE_BYTES,
            },
            DecodeError::UnsupportedMediaType(detail) => AppError::UnsupportedMediaType(detail),
            DecodeError::Parse(e) => e.into(),
        }
    }
}

impl From<CommitError> for AppError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Unavailable(_) | CommitError::ShuttingDown => {
                AppError::Unavailable(e.to_string())
            }
            CommitError::Failed(_) => AppError::Internal(anyhow::anyhow!(e)),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        // 57014 query_canceled: the read pool's statement_timeout, or one
        // an operator set.
        if let sqlx::Error::Database(db) = &e
            && db.code().as_deref() == Some("57014")
        {
            return AppError::QueryTimeout;
        }
        if crate::ingest::group_commit::is_unavailable(&e) {
            AppError::Unavailable(format!("database unavailable: {e}"))
        } else {
            AppError::Internal(anyhow::Error::new(e).context("Failed to query PostgreSQL"))
        }
    }
}

/// A JSON request body whose rejections answer in the API's error shape:
/// bad syntax is 400 `malformed_json`, a body of the wrong shape 400
/// `invalid_body`, a missing JSON content type 415, and a body over the
/// route's limit 413.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct ApiJson<T>(pub T);

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonSyntaxError(e) => AppError::MalformedJson(e.body_text()),
            JsonRejection::JsonDataError(e) => AppError::bad_request("invalid_body", e.body_text()),
            JsonRejection::MissingJsonContentType(e) => {
                AppError::UnsupportedMediaType(e.body_text())
            }
            JsonRejection::BytesRejection(e) => {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::BodyTooLarge(e.body_text())
                } else {
                    AppError::bad_request("unreadable_body", e.body_text())
                }
            }
            other => AppError::bad_request("invalid_body", other.body_text()),
        }
    }
}

/// Maps a body that could not be read: over the limit is 413, anything else
/// (a client that hung up) is 400.
pub fn body_rejection(rejection: BytesRejection, limit: usize) -> AppError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge { limit }
    } else {
        AppError::bad_request("unreadable_body", rejection.body_text())
    }
}
