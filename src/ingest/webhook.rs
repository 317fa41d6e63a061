//! Decoding a webhook request into a movement event, through the HTTP
//! CloudEvents binding (`ce-` headers) of [`crate::domain::binding`].

use crate::domain::{DecodeError, MovementEvent, Transport, binding};
use axum::http::HeaderMap;

/// Decodes one event from a request's headers and body.
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<MovementEvent, DecodeError> {
    binding::decode(
        Transport::Http,
        headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DecodeCode;
    use axum::http::HeaderValue;

    const DATA: &str = r#"{"movement_id":"c6290746-790e-43fa-8270-014dc90e02e0","warehouse_id":"25718666-6af6-4281-b5a6-3016e36fa557","timestamp":"2025-02-18T12:12:56Z","event":"departure","product_id":"4705204f-498f-4f96-b4ba-df17fb56bf55","quantity":100}"#;

    fn binary_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("ce-id", "m-1"),
            ("ce-source", "WH-1"),
            ("ce-specversion", "1.0"),
            ("ce-type", "ru.retail.warehouses.movement"),
            ("content-type", "application/json"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn ce_headers_select_binary_mode() {
        let event = decode(&binary_headers(), DATA.as_bytes()).unwrap();
        assert_eq!(event.message_id, "m-1");
        assert_eq!(event.content.quantity.get(), 100);
    }

    #[test]
    fn other_content_types_are_unsupported() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        assert_eq!(
            decode(&h, b"{}").unwrap_err().code(),
            DecodeCode::UnsupportedMediaType
        );
        let mut h = binary_headers();
        h.insert("content-type", HeaderValue::from_static("application/xml"));
        assert_eq!(
            decode(&h, DATA.as_bytes()).unwrap_err().code(),
            DecodeCode::UnsupportedMediaType
        );
    }
}
