//! The movement event: parsing and validating a CloudEvents 1.0 message into a
//! [`MovementEvent`].
//!
//! Both transports (Kafka and the HTTP webhook) and both CloudEvents content
//! modes (structured JSON and binary headers) end up in [`EnvelopeFields`] and
//! go through one validator, so a message gets the same verdict whichever way
//! it arrives.
//!
//! The CloudEvents SDK is not used for parsing on purpose: producers of this
//! topic send `time` as epoch milliseconds (a JSON integer), which the SDK's
//! model rejects, and the API contract needs every broken field reported by
//! name rather than the first serde error.

use super::attributes::Attributes;
use super::correction::{Adjustment, CorrectionDetails, read_adjustment};
use super::entry::{EventKind, Quantity};
use super::fields::{FieldError, Fields, ParseError, field_error, present, whole_number};
use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The CloudEvents `type` of a movement's half.
pub const EVENT_TYPE: &str = "ru.retail.warehouses.movement";
/// The CloudEvents `type` of a correction: a count or an adjustment, whose
/// `data` holds the fields of `POST /api/v1/adjustments`.
pub const ADJUSTMENT_TYPE: &str = "ru.retail.warehouses.adjustment";
/// The only CloudEvents `specversion` this service accepts.
pub const SPEC_VERSION: &str = "1.0";
/// The largest message either transport accepts: an event is a few hundred
/// bytes, and one limit keeps the verdict the same over HTTP and Kafka.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Attributes the service interprets itself; every other attribute is kept
/// verbatim in the audit log.
const CORE_ATTRIBUTES: [&str; 7] = [
    "id",
    "source",
    "specversion",
    "type",
    "time",
    "datacontenttype",
    "data",
];

/// What identifies an event for idempotency, plus the content that must match
/// for a re-send to count as a duplicate rather than a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventContent {
    pub movement_id: Uuid,
    pub kind: EventKind,
    pub warehouse_id: Uuid,
    pub product_id: Uuid,
    pub quantity: Quantity,
    /// Truncated to microseconds, the precision PostgreSQL stores, so a
    /// re-sent event compares equal to what was stored.
    pub occurred_at: DateTime<Utc>,
}

/// A validated movement event together with its CloudEvents envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct MovementEvent {
    pub message_id: String,
    pub source: String,
    pub event_time: Option<DateTime<Utc>>,
    pub content: EventContent,
    /// Envelope attributes the service does not interpret (`subject`,
    /// `dataschema`, extensions …), kept for the audit log.
    pub attributes: Attributes,
    /// What a correction says besides its pair and quantity; `None` for a
    /// movement's half.
    pub correction: Option<Box<CorrectionDetails>>,
}

/// The envelope attributes of a message before validation, whichever content
/// mode it came in. Values are JSON so that type errors can be reported.
#[derive(Debug, Default)]
pub struct EnvelopeFields {
    pub attributes: Map<String, Value>,
    pub data: Option<Value>,
}

impl MovementEvent {
    /// Reads an adjustment request (`POST /api/v1/adjustments`): every
    /// broken field is reported at once, as for a movement event. The
    /// correction is keyed by its `adjustment_id`, made at `now`, and sent
    /// by `source`.
    pub fn from_adjustment(
        body: &Value,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, ParseError> {
        let Value::Object(fields) = body else {
            return Err(invalid("body", "must be a JSON object"));
        };
        let mut errors = Vec::new();
        match read_adjustment(fields, "", &mut errors) {
            Some(adjustment) if errors.is_empty() => {
                let message_id = adjustment.id.to_string();
                Ok(Self::correcting(
                    adjustment,
                    message_id,
                    source.to_owned(),
                    Some(now),
                    Attributes::default(),
                ))
            }
            _ => Err(ParseError::Invalid(errors)),
        }
    }

    /// The correction as the ledger takes it: keyed by its id, sent as
    /// `message_id` by `source`. It happens when it is made: at
    /// `event_time`, else when it is read. Its time is no part of what
    /// makes a re-sent correction a duplicate.
    fn correcting(
        adjustment: Adjustment,
        message_id: String,
        source: String,
        event_time: Option<DateTime<Utc>>,
        attributes: Attributes,
    ) -> Self {
        MovementEvent {
            message_id,
            source,
            event_time,
            content: EventContent {
                movement_id: adjustment.id,
                kind: adjustment.kind,
                warehouse_id: adjustment.warehouse_id,
                product_id: adjustment.product_id,
                quantity: adjustment.quantity,
                occurred_at: event_time.unwrap_or_else(Utc::now).trunc_subsecs(6),
            },
            attributes,
            correction: Some(Box::new(adjustment.details)),
        }
    }

    /// Parses a message in CloudEvents structured JSON mode.
    pub fn from_structured(body: &[u8]) -> Result<Self, ParseError> {
        let value = parse_json(body)?;
        let Value::Object(mut attributes) = value else {
            return Err(invalid("$", "the message must be a JSON object"));
        };
        let data = attributes.remove("data");
        Self::from_envelope(EnvelopeFields { attributes, data })
    }

    /// Parses a message in CloudEvents binary mode: `attributes` are the
    /// `ce-`/`ce_` headers with the prefix removed (string values), `body` is
    /// the event data.
    pub fn from_binary<'a>(
        attributes: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: &[u8],
    ) -> Result<Self, ParseError> {
        let data = parse_json(body)?;
        let mut fields = EnvelopeFields {
            data: Some(data),
            ..Default::default()
        };
        for (name, value) in attributes {
            let value =
                if name == "time" && !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
                {
                    // Binary mode carries every attribute as a string; accept the
                    // epoch-millisecond form producers use in structured mode.
                    value
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::from(value))
                } else {
                    Value::from(value)
                };
            fields.attributes.insert(name.to_ascii_lowercase(), value);
        }
        Self::from_envelope(fields)
    }

    /// Validates envelope and data, reporting every broken field at once.
    pub fn from_envelope(fields: EnvelopeFields) -> Result<Self, ParseError> {
        let EnvelopeFields {
            mut attributes,
            data,
        } = fields;
        let mut errors = Vec::new();

        let message_id = non_empty_string(&attributes, "id", &mut errors);
        let source = non_empty_string(&attributes, "source", &mut errors);
        expect_exact(&attributes, "specversion", SPEC_VERSION, &mut errors);
        let adjustment = message_type(&attributes, &mut errors) == Some(ADJUSTMENT_TYPE);
        let event_time = event_time(&attributes, &mut errors);
        check_data_content_type(&attributes, &mut errors);
        let content = match present(data.as_ref()) {
            None => {
                errors.push(field_error("data", "is required"));
                None
            }
            Some(Value::Object(data)) if adjustment => {
                read_adjustment(data, "data.", &mut errors).map(Data::Adjustment)
            }
            Some(Value::Object(data)) => parse_data(data, &mut errors).map(Data::Movement),
            Some(_) => {
                errors.push(field_error("data", "must be a JSON object"));
                None
            }
        };
        // PostgreSQL's text and jsonb cannot hold U+0000, and the audit log
        // keeps every attribute: such an event could never be stored, and
        // would fail the whole batch it came in.
        for (name, value) in &attributes {
            if contains_nul(name, value) {
                errors.push(field_error(
                    name,
                    "must not contain the NUL character (U+0000)",
                ));
            }
        }

        match (message_id, source, content) {
            (Some(message_id), Some(source), Some(content)) if errors.is_empty() => {
                for name in CORE_ATTRIBUTES {
                    attributes.remove(name);
                }
                let attributes = Attributes::from_map(&attributes);
                Ok(match content {
                    Data::Movement(content) => MovementEvent {
                        message_id,
                        source,
                        event_time,
                        content,
                        attributes,
                        correction: None,
                    },
                    Data::Adjustment(adjustment) => MovementEvent::correcting(
                        adjustment, message_id, source, event_time, attributes,
                    ),
                })
            }
            _ => Err(ParseError::Invalid(errors)),
        }
    }
}

/// What a message's `data` holds, by its `type`.
enum Data {
    Movement(EventContent),
    Adjustment(Adjustment),
}

/// The message's `type`: one of the two this service takes.
fn message_type(
    attributes: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> Option<&'static str> {
    match present(attributes.get("type")) {
        None => {
            errors.push(field_error("type", "is required"));
            None
        }
        Some(Value::String(s)) if s == EVENT_TYPE => Some(EVENT_TYPE),
        Some(Value::String(s)) if s == ADJUSTMENT_TYPE => Some(ADJUSTMENT_TYPE),
        Some(other) => {
            errors.push(field_error(
                "type",
                format!("must be {EVENT_TYPE:?} or {ADJUSTMENT_TYPE:?}, got {other}"),
            ));
            None
        }
    }
}

/// The optional `time` attribute, or an error for it.
fn event_time(
    attributes: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    let v = present(attributes.get("time"))?;
    match parse_event_time(v) {
        Ok(t) => Some(t),
        Err(message) => {
            errors.push(field_error("time", message));
            None
        }
    }
}

/// The optional `datacontenttype` must say JSON.
fn check_data_content_type(attributes: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    let Some(v) = present(attributes.get("datacontenttype")) else {
        return;
    };
    match v.as_str() {
        Some(ct) if is_media_type(ct, JSON) => {}
        Some(ct) => errors.push(field_error(
            "datacontenttype",
            format!("must be application/json, got {ct:?}"),
        )),
        None => errors.push(field_error("datacontenttype", "must be a string")),
    }
}

/// Parses bytes as JSON, mapping every failure (bad UTF-8 included) to
/// [`ParseError::MalformedJson`].
fn parse_json(body: &[u8]) -> Result<Value, ParseError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::MalformedJson("the body is empty".into()));
    }
    serde_json::from_slice(body).map_err(|e| ParseError::MalformedJson(e.to_string()))
}

fn parse_data(data: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<EventContent> {
    let mut fields = Fields::new(data, "data.", errors);
    // Every field is read before any is given up on, so that every broken
    // one is reported, in this order.
    let [movement_id, warehouse_id, product_id] = fields.ids("movement_id");
    let occurred_at = fields.required("timestamp", timestamp);
    let kind = fields.required("event", event_kind);
    let quantity = fields.required("quantity", quantity);
    Some(EventContent {
        movement_id: movement_id?,
        kind: kind?,
        warehouse_id: warehouse_id?,
        product_id: product_id?,
        quantity: quantity?,
        occurred_at: occurred_at?,
    })
}

fn timestamp(v: &Value) -> Result<DateTime<Utc>, String> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
            .map_err(|e| format!("must be an RFC 3339 timestamp with an offset ({e})")),
        _ => Err("must be a string".into()),
    }
}

fn event_kind(v: &Value) -> Result<EventKind, String> {
    match v {
        Value::String(s) => EventKind::parse(s)
            .ok_or_else(|| format!("must be \"arrival\" or \"departure\", got {s:?}")),
        _ => Err("must be a string".into()),
    }
}

fn quantity(v: &Value) -> Result<Quantity, String> {
    match v {
        // The range message names the number as sent, not as saturated.
        Value::Number(n) => match whole_number(n) {
            Some(v) => Quantity::parse(v).map_err(|_| match v < 1 {
                true => format!("must be at least 1, got {n}"),
                false => format!("must be at most {}, got {n}", i32::MAX),
            }),
            None => Err(format!("must be a whole number, got {n}")),
        },
        _ => Err("must be an integer".into()),
    }
}

/// The epoch milliseconds `time` may carry: the years 0000 to 9999, the
/// range an RFC 3339 timestamp can write, so both forms accept the same
/// moments.
pub const EVENT_TIME_MILLIS: std::ops::RangeInclusive<i64> =
    -62_167_219_200_000..=253_402_300_799_999;

/// `time` is epoch milliseconds (what producers send) or an RFC 3339 string
/// (what the CloudEvents spec says).
fn parse_event_time(v: &Value) -> Result<DateTime<Utc>, String> {
    match v {
        Value::Number(n) => whole_number(n)
            .filter(|ms| EVENT_TIME_MILLIS.contains(ms))
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .ok_or_else(|| {
                format!(
                    "must be epoch milliseconds from {} to {} (the years 0000 to 9999), got {n}",
                    EVENT_TIME_MILLIS.start(),
                    EVENT_TIME_MILLIS.end()
                )
            }),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
            .map_err(|e| format!("must be an RFC 3339 timestamp or epoch milliseconds ({e})")),
        _ => Err("must be an RFC 3339 string or epoch milliseconds".into()),
    }
}

/// The media type of JSON data.
pub const JSON: &str = "application/json";

/// Whether `content_type`'s essence (before any parameters, such as a
/// charset) is `expected`, compared as media types are: without case.
pub fn is_media_type(content_type: &str, expected: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

/// Whether a NUL character is in `name` or anywhere in `value`.
fn contains_nul(name: &str, value: &Value) -> bool {
    name.contains('\0')
        || match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(|v| contains_nul("", v)),
            Value::Object(map) => map.iter().any(|(k, v)| contains_nul(k, v)),
            _ => false,
        }
}

fn non_empty_string(
    attributes: &Map<String, Value>,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match present(attributes.get(name)) {
        None => {
            errors.push(field_error(name, "is required"));
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.push(field_error(name, "must not be empty"));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(field_error(name, "must be a string"));
            None
        }
    }
}

fn expect_exact(
    attributes: &Map<String, Value>,
    name: &str,
    expected: &str,
    errors: &mut Vec<FieldError>,
) {
    match present(attributes.get(name)) {
        None => errors.push(field_error(name, "is required")),
        Some(Value::String(s)) if s == expected => {}
        Some(other) => errors.push(field_error(
            name,
            format!("must be {expected:?}, got {other}"),
        )),
    }
}

fn invalid(field: &str, message: &str) -> ParseError {
    ParseError::Invalid(vec![field_error(field, message)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seed_message() -> Value {
        json!({
            "id": "b3b53031-e83a-4654-87f5-b6b6fb09fd99",
            "source": "WH-3322",
            "specversion": "1.0",
            "type": "ru.retail.warehouses.movement",
            "datacontenttype": "application/json",
            "dataschema": "ru.retail.warehouses.movement.v1.0",
            "time": 1737439421623_i64,
            "subject": "WH-3322:DEPARTURE",
            "destination": "ru.retail.warehouses",
            "data": {
                "movement_id": "c6290746-790e-43fa-8270-014dc90e02e0",
                "warehouse_id": "25718666-6af6-4281-b5a6-3016e36fa557",
                "timestamp": "2025-02-18T12:12:56Z",
                "event": "departure",
                "product_id": "4705204f-498f-4f96-b4ba-df17fb56bf55",
                "quantity": 100
            }
        })
    }

    fn parse(v: &Value) -> Result<MovementEvent, ParseError> {
        MovementEvent::from_structured(&serde_json::to_vec(v).unwrap())
    }

    fn fields_of(err: ParseError) -> Vec<String> {
        match err {
            ParseError::Invalid(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected invalid_event, got {other:?}"),
        }
    }

    #[test]
    fn the_seed_example_parses_with_its_extra_attributes_kept() {
        let event = parse(&seed_message()).unwrap();
        assert_eq!(event.message_id, "b3b53031-e83a-4654-87f5-b6b6fb09fd99");
        assert_eq!(event.content.kind, EventKind::Departure);
        assert_eq!(event.content.quantity.get(), 100);
        assert_eq!(
            event.event_time.unwrap().timestamp_millis(),
            1737439421623_i64
        );
        assert_eq!(event.attributes.to_map()["subject"], "WH-3322:DEPARTURE");
        assert!(!event.attributes.to_map().contains_key("data"));
        assert!(!event.attributes.to_map().contains_key("id"));
    }

    #[test]
    fn time_may_be_an_rfc3339_string_or_absent() {
        let mut m = seed_message();
        m["time"] = json!("2025-01-21T06:03:41.623Z");
        assert_eq!(
            parse(&m).unwrap().event_time.unwrap().timestamp_millis(),
            1737439421623_i64
        );
        m.as_object_mut().unwrap().remove("time");
        assert!(parse(&m).unwrap().event_time.is_none());
    }

    #[test]
    fn every_broken_field_is_reported_at_once() {
        let mut m = seed_message();
        m["specversion"] = json!("0.3");
        m["data"]["quantity"] = json!(0);
        m["data"]["warehouse_id"] = json!("WH-1");
        m["data"]["timestamp"] = json!("2025-02-18T12:12:56");
        assert_eq!(
            fields_of(parse(&m).unwrap_err()),
            vec![
                "specversion",
                "data.warehouse_id",
                "data.timestamp",
                "data.quantity"
            ]
        );
    }

    #[test]
    fn quantities_outside_one_to_i32_max_or_fractional_are_invalid() {
        for bad in [
            json!(-1),
            json!(2147483648_i64),
            json!(1.5),
            json!(2147483648.0),
            json!("10"),
            json!(18446744073709551615_u64),
        ] {
            let mut m = seed_message();
            m["data"]["quantity"] = bad.clone();
            assert_eq!(
                fields_of(parse(&m).unwrap_err()),
                vec!["data.quantity"],
                "{bad}"
            );
        }
        let mut m = seed_message();
        m["data"]["quantity"] = json!(2147483647);
        assert_eq!(parse(&m).unwrap().content.quantity.get(), i32::MAX);
    }

    #[test]
    fn null_required_fields_count_as_missing() {
        let mut m = seed_message();
        m["id"] = Value::Null;
        m["data"]["event"] = Value::Null;
        assert_eq!(fields_of(parse(&m).unwrap_err()), vec!["id", "data.event"]);
    }

    #[test]
    fn a_non_json_datacontenttype_is_invalid_but_json_with_charset_is_fine() {
        let mut m = seed_message();
        m["datacontenttype"] = json!("application/json; charset=utf-8");
        assert!(parse(&m).is_ok());
        m["datacontenttype"] = json!("text/plain");
        assert_eq!(fields_of(parse(&m).unwrap_err()), vec!["datacontenttype"]);
    }

    #[test]
    fn bytes_that_are_not_json_are_malformed() {
        for body in [&b""[..], b"   ", b"{\"id\":", b"\xff\xfe", b"not json"] {
            assert!(matches!(
                MovementEvent::from_structured(body),
                Err(ParseError::MalformedJson(_))
            ));
        }
        let deep = "[".repeat(10_000);
        assert!(matches!(
            MovementEvent::from_structured(deep.as_bytes()),
            Err(ParseError::MalformedJson(_))
        ));
    }

    #[test]
    fn epoch_millis_time_spans_exactly_the_years_rfc_3339_can_write() {
        for (ms, first) in [
            (*EVENT_TIME_MILLIS.start(), "0000-01-01T00:00:00+00:00"),
            (*EVENT_TIME_MILLIS.end(), "9999-12-31T23:59:59.999+00:00"),
        ] {
            let mut m = seed_message();
            m["time"] = json!(ms);
            assert_eq!(parse(&m).unwrap().event_time.unwrap().to_rfc3339(), first);
        }
        for ms in [
            EVENT_TIME_MILLIS.start() - 1,
            EVENT_TIME_MILLIS.end() + 1,
            i64::MAX,
        ] {
            let mut m = seed_message();
            m["time"] = json!(ms);
            let err = parse(&m).unwrap_err().to_string();
            assert!(err.contains("the years 0000 to 9999"), "{err}");
        }
    }

    #[test]
    fn a_whole_number_written_with_a_fraction_is_a_whole_number() {
        let mut m = seed_message();
        m["data"]["quantity"] = json!(2147483647.0);
        m["time"] = json!(1737439421623.0);
        let event = parse(&m).unwrap();
        assert_eq!(event.content.quantity.get(), i32::MAX);
        assert_eq!(event.event_time.unwrap().timestamp_millis(), 1737439421623);
        m["data"]["quantity"] = serde_json::from_str("1e3").unwrap();
        assert_eq!(parse(&m).unwrap().content.quantity.get(), 1000);

        m["data"]["quantity"] = json!(2.5);
        assert_eq!(fields_of(parse(&m).unwrap_err()), ["data.quantity"]);
        m["data"]["quantity"] = json!(1e19);
        let err = parse(&m).unwrap_err().to_string();
        assert!(
            err.contains("must be at most 2147483647, got 1e+19"),
            "{err}"
        );
    }

    #[test]
    fn a_nul_character_in_any_attribute_is_refused_by_name() {
        // PostgreSQL cannot store it; accepted, it would fail its whole batch.
        let mut m = seed_message();
        m["id"] = json!("a\u{0}b");
        m["traceparent"] = json!({"nested": ["ok", "x\u{0}"]});
        m["ext\u{0}"] = json!(1);
        let mut fields = fields_of(parse(&m).unwrap_err());
        fields.sort();
        assert_eq!(fields, ["ext\u{0}", "id", "traceparent"]);
    }

    #[test]
    fn timestamps_are_truncated_to_microseconds() {
        let mut m = seed_message();
        m["data"]["timestamp"] = json!("2025-02-18T12:12:56.123456789+03:00");
        let t = parse(&m).unwrap().content.occurred_at;
        assert_eq!(t.to_rfc3339(), "2025-02-18T09:12:56.123456+00:00");
    }

    #[test]
    fn binary_mode_reads_attributes_from_headers() {
        let m = seed_message();
        let data = serde_json::to_vec(&m["data"]).unwrap();
        let headers = [
            ("id", "abc"),
            ("source", "WH-1"),
            ("specversion", "1.0"),
            ("type", EVENT_TYPE),
            ("time", "1737439421623"),
            ("subject", "s"),
        ];
        let event = MovementEvent::from_binary(headers, &data).unwrap();
        assert_eq!(event.message_id, "abc");
        assert_eq!(
            event.event_time.unwrap().timestamp_millis(),
            1737439421623_i64
        );
        assert_eq!(event.attributes.to_map()["subject"], "s");

        let missing = MovementEvent::from_binary([("id", "abc")], &data).unwrap_err();
        assert_eq!(fields_of(missing), vec!["source", "specversion", "type"]);
    }
}
