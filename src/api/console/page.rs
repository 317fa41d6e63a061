//! What every console page shares: where the console lives, a page's
//! result and its error page, and the small helpers of its forms.

use super::layout;
use crate::api::error::AppError;
use axum::response::{Html, IntoResponse, Response};

/// Where the console is served.
pub const PATH: &str = "/console";

/// A page's failure, shown as a readable page with the status and code
/// the API answers for the same fault.
pub struct PageError(AppError);

impl<E: Into<AppError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, body) = self.0.into_answer();
        let title = status.canonical_reason().unwrap_or("Error");
        let markup = layout::page(
            title,
            maud::html! {
                div.error {
                    p { strong { (status.as_u16()) " " (title) } " · " code { (body.code) } }
                    p { (body.detail) }
                }
                p { a href=(PATH) { "Back to the overview" } }
            },
        );
        (status, markup).into_response()
    }
}

/// A rendered page.
pub type Page = Result<Html<String>, PageError>;

/// Rows on a page of a list.
pub const ROWS: i64 = 100;

/// An optional query value: to a form, absent and empty are the same.
pub fn given(raw: &Option<String>) -> Option<&str> {
    raw.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[tokio::test]
    async fn an_error_page_carries_the_api_code_and_no_markup_from_its_detail() {
        let error = PageError(AppError::bad_request(
            "invalid_uuid",
            "warehouse_id must be a UUID, got \"<b>x</b>\"",
        ));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("invalid_uuid"), "{text}");
        assert!(text.contains("&lt;b&gt;x&lt;/b&gt;"), "{text}");
        assert!(!text.contains("<b>x</b>"), "{text}");
    }
}
