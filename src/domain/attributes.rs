//! The envelope attributes an event carries that the service does not
//! interpret (`subject`, `dataschema`, extensions …): kept for the audit
//! log, as the JSON object text they will be written as.
//!
//! Why text and not a `serde_json::Map`: a map of even one attribute is a
//! B-tree leaf of eleven slots, about 650 bytes with its strings, and
//! every event a partition worker holds kept one. The text is the size of
//! what it says, and the write copies it as it is (BENCHMARKS.md,
//! "Memory").

use serde::{Serialize, Serializer};
use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Map, Value};
use std::fmt;

/// An event's uninterpreted attributes: a JSON object, empty by default.
#[derive(Clone, Default)]
pub struct Attributes(Option<Box<RawValue>>);

impl Attributes {
    /// The attributes `map` holds; none if it is empty.
    pub fn from_map(map: &Map<String, Value>) -> Self {
        if map.is_empty() {
            return Attributes(None);
        }
        // A map of JSON values always serializes: its keys are strings
        // and its numbers finite.
        let text = to_raw_value(map).expect("a JSON object serializes");
        Attributes(Some(text))
    }

    /// The attributes as a map, for a reader that wants one by name.
    pub fn to_map(&self) -> Map<String, Value> {
        match &self.0 {
            None => Map::new(),
            Some(text) => {
                serde_json::from_str(text.get()).expect("the text of a JSON object parses")
            }
        }
    }

    /// The JSON object text: `{}` when there are none.
    pub fn as_str(&self) -> &str {
        self.0.as_deref().map_or("{}", RawValue::get)
    }
}

impl PartialEq for Attributes {
    /// Equal maps serialize to the same text: `Map` keeps its keys sorted.
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            None => Map::new().serialize(serializer),
            Some(text) => text.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attributes_are_written_as_the_object_they_were_read_from() {
        let map = json!({"subject": "WH-1:ARRIVAL", "n": 1.5, "deep": {"b": [1, null]}});
        let map = map.as_object().unwrap();
        let attributes = Attributes::from_map(map);
        assert_eq!(&attributes.to_map(), map);
        let written = serde_json::to_value(&attributes).unwrap();
        assert_eq!(written.as_object().unwrap(), map);
    }

    #[test]
    fn no_attributes_are_written_as_an_empty_object() {
        let none = Attributes::from_map(&Map::new());
        assert_eq!(none, Attributes::default());
        assert_eq!(serde_json::to_string(&none).unwrap(), "{}");
        assert!(none.to_map().is_empty());
    }

    #[test]
    fn attributes_compare_by_what_they_hold_whatever_order_they_came_in() {
        let a: Map<String, Value> = serde_json::from_str(r#"{"a": 1, "b": "x"}"#).unwrap();
        let b: Map<String, Value> = serde_json::from_str(r#"{"b": "x", "a": 1}"#).unwrap();
        let c: Map<String, Value> = serde_json::from_str(r#"{"a": 2, "b": "x"}"#).unwrap();
        assert_eq!(Attributes::from_map(&a), Attributes::from_map(&b));
        assert_ne!(Attributes::from_map(&a), Attributes::from_map(&c));
    }
}
