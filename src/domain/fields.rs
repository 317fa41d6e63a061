//! Reading a JSON object's fields into typed values, reporting every
//! broken field at once under its full name: a movement's `data`, an
//! adjustment's request or `data`.

use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use uuid::Uuid;

/// One broken field of an otherwise well-formed JSON message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Why a message is not a movement event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The bytes are not JSON at all (or not UTF-8, or nested too deeply).
    MalformedJson(String),
    /// JSON that breaks the event contract; every broken field is listed.
    Invalid(Vec<FieldError>),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::MalformedJson(detail) => write!(f, "body is not valid JSON: {detail}"),
            ParseError::Invalid(errors) => {
                f.write_str("invalid movement event: ")?;
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{}: {}", e.field, e.message)?;
                }
                Ok(())
            }
        }
    }
}

/// A cursor over the fields of an object that records what is wrong with
/// each, under its full name (`prefix` then the field's); each conversion
/// only says what.
pub struct Fields<'a> {
    fields: &'a Map<String, Value>,
    prefix: &'a str,
    errors: &'a mut Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn new(
        fields: &'a Map<String, Value>,
        prefix: &'a str,
        errors: &'a mut Vec<FieldError>,
    ) -> Self {
        Fields {
            fields,
            prefix,
            errors,
        }
    }

    pub fn required<T>(
        &mut self,
        name: &str,
        convert: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        match present(self.fields.get(name)) {
            None => {
                self.error(name, "is required".into());
                None
            }
            Some(value) => self.check(name, convert(value)),
        }
    }

    /// The ids every entry names, in this order: its own key (`key`), then
    /// `warehouse_id` and `product_id`.
    pub fn ids(&mut self, key: &str) -> [Option<Uuid>; 3] {
        [key, "warehouse_id", "product_id"].map(|name| self.required(name, uuid))
    }

    pub fn optional<T>(
        &mut self,
        name: &str,
        convert: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        let value = present(self.fields.get(name))?;
        self.check(name, convert(value))
    }

    pub fn check<T>(&mut self, name: &str, converted: Result<T, String>) -> Option<T> {
        converted.map_err(|message| self.error(name, message)).ok()
    }

    pub fn error(&mut self, name: &str, message: String) {
        self.errors
            .push(field_error(&format!("{}{name}", self.prefix), message));
    }

    /// Names every field not in `known`: where a misspelt optional field
    /// would otherwise be dropped in silence.
    pub fn refuse_unknown(&mut self, known: &[&str], what: &str) {
        let unknown: Vec<&String> = self
            .fields
            .keys()
            .filter(|name| !known.contains(&name.as_str()))
            .collect();
        for name in unknown {
            self.error(name, format!("is not a field of {what}"));
        }
    }
}

pub fn uuid(v: &Value) -> Result<Uuid, String> {
    match v {
        Value::String(s) => Uuid::try_parse(s).map_err(|_| format!("must be a UUID, got {s:?}")),
        _ => Err("must be a UUID string".into()),
    }
}

/// A JSON number as a whole number: JSON Schema counts `10.0` as the
/// integer 10, and so does this parser. Past the range of `i64` it
/// saturates, which every caller's own range check then refuses.
pub fn whole_number(n: &serde_json::Number) -> Option<i64> {
    n.as_i64()
        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
}

/// JSON `null` counts as absent.
pub fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

pub fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}
