//! The dead-letter topic: records that could not be decoded, and events the
//! ledger rejected, with the original key, value and headers plus headers
//! saying why and where they came from.

use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

/// Header names added to every dead-letter record.
pub const ERROR_CODE: &str = "dlq_error_code";
pub const ERROR_DETAIL: &str = "dlq_error_detail";
/// For a conflicting duplicate: the differing `data` fields, comma-separated.
pub const ERROR_FIELDS: &str = "dlq_error_fields";
pub const ORIGINAL_TOPIC: &str = "dlq_original_topic";
pub const ORIGINAL_PARTITION: &str = "dlq_original_partition";
pub const ORIGINAL_OFFSET: &str = "dlq_original_offset";

/// One record to dead-letter and why.
pub struct DeadLetter<'a> {
    pub record: &'a OwnedMessage,
    pub code: &'a str,
    pub detail: &'a str,
    /// The fields a conflicting duplicate changed; empty for anything else,
    /// and then no `dlq_error_fields` header is sent.
    pub fields: &'a str,
}

/// Publishes `letters` and waits until the broker has acknowledged every
/// one. An error means some may not be stored: the caller must not commit
/// their offsets.
pub async fn publish(
    producer: &FutureProducer,
    topic: &str,
    letters: &[DeadLetter<'_>],
) -> Result<(), rdkafka::error::KafkaError> {
    let sends = letters.iter().map(|letter| {
        let record = letter.record;
        let mut headers = OwnedHeaders::new();
        if let Some(original) = record.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let partition = record.partition().to_string();
        let offset = record.offset().to_string();
        for (key, value) in [
            (ERROR_CODE, letter.code),
            (ERROR_DETAIL, letter.detail),
            (ORIGINAL_TOPIC, record.topic()),
            (ORIGINAL_PARTITION, partition.as_str()),
            (ORIGINAL_OFFSET, offset.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        if !letter.fields.is_empty() {
            headers = headers.insert(Header {
                key: ERROR_FIELDS,
                value: Some(letter.fields),
            });
        }
        let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(key) = record.key() {
            out = out.key(key);
        }
        if let Some(value) = record.payload() {
            out = out.payload(value);
        }
        producer.send(out, Duration::from_secs(10))
    });
    for result in futures_util::future::join_all(sends).await {
        result.map_err(|(e, _)| e)?;
    }
    Ok(())
}
