//! Decoding a webhook request into a movement event: CloudEvents structured
//! mode (a JSON body) or binary mode (`ce-*` headers, body = data), decided
//! by the headers exactly as the CloudEvents HTTP binding says.

use crate::domain::event::is_json_media_type;
use crate::domain::{FieldError, MovementEvent, ParseError};
use axum::http::{HeaderMap, header};

/// Why a request could not be decoded.
#[derive(Debug)]
pub enum DecodeError {
    /// The content type is neither JSON, CloudEvents JSON, nor binary mode.
    UnsupportedMediaType(String),
    Parse(ParseError),
}

impl From<ParseError> for DecodeError {
    fn from(e: ParseError) -> Self {
        DecodeError::Parse(e)
    }
}

/// Decodes one event from a request's headers and body.
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<MovementEvent, DecodeError> {
    let content_type = match headers.get(header::CONTENT_TYPE) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            DecodeError::UnsupportedMediaType("the Content-Type header is not ASCII".into())
        })?),
    };

    if headers.contains_key("ce-specversion") {
        return decode_binary(headers, content_type, body);
    }
    match content_type {
        // Clients that send JSON without saying so are common; be lenient.
        None => Ok(MovementEvent::from_structured(body)?),
        Some(ct) if is_json_media_type(ct) || is_media_type(ct, "application/cloudevents+json") => {
            Ok(MovementEvent::from_structured(body)?)
        }
        Some(ct) if is_media_type(ct, "application/cloudevents-batch+json") => {
            Err(DecodeError::UnsupportedMediaType(
                "CloudEvents batch mode is not supported; send one event per request".into(),
            ))
        }
        Some(ct) => Err(DecodeError::UnsupportedMediaType(format!(
            "Content-Type {ct:?} is not supported; send application/json, \
             application/cloudevents+json, or binary mode with ce-* headers"
        ))),
    }
}

fn decode_binary(
    headers: &HeaderMap,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<MovementEvent, DecodeError> {
    if let Some(ct) = content_type
        && !is_json_media_type(ct)
    {
        return Err(DecodeError::UnsupportedMediaType(format!(
            "binary-mode data must be application/json, got {ct:?}"
        )));
    }
    let mut attributes = Vec::new();
    let mut bad_headers = Vec::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        match value.to_str() {
            Ok(v) => attributes.push((attribute, v)),
            Err(_) => bad_headers.push(FieldError {
                field: attribute.to_string(),
                message: "header value must be visible ASCII".into(),
            }),
        }
    }
    if !bad_headers.is_empty() {
        return Err(ParseError::Invalid(bad_headers).into());
    }
    if let Some(ct) = content_type {
        attributes.push(("datacontenttype", ct));
    }
    Ok(MovementEvent::from_binary(attributes, body)?)
}

fn is_media_type(content_type: &str, expected: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert!(matches!(
            decode(&h, b"{}"),
            Err(DecodeError::UnsupportedMediaType(_))
        ));
        let mut h = binary_headers();
        h.insert("content-type", HeaderValue::from_static("application/xml"));
        assert!(matches!(
            decode(&h, DATA.as_bytes()),
            Err(DecodeError::UnsupportedMediaType(_))
        ));
    }
}
