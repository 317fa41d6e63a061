//! Fuzzes everything a stranger's bytes reach before the ledger: the
//! structured-mode parser, the binary-mode parser, and both transports'
//! decoders (size limit, `ce-`/`ce_` headers, content type), which must
//! agree on every message.
//!
//! Input layout: the bytes before the first 0x00 are binary-mode headers, one
//! `name=value` per line; the bytes after it are the body. Input without a
//! 0x00 is a structured-mode body only.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
use warehouse_stock::domain::{MovementEvent, Transport, binding};
use warehouse_stock::ingest::kafka::decode::decode;

fuzz_target!(|data: &[u8]| {
    check(MovementEvent::from_structured(data));

    let Some(split) = data.iter().position(|&b| b == 0) else {
        check(decode(&record(data, OwnedHeaders::new())));
        check(binding::decode(Transport::Http, [], data));
        return;
    };
    let (head, body) = (&data[..split], &data[split + 1..]);
    let head = String::from_utf8_lossy(head);
    let pairs: Vec<(&str, &str)> = head
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    check(MovementEvent::from_binary(pairs.iter().copied(), body));

    let mut headers = OwnedHeaders::new();
    for (name, value) in &pairs {
        headers = headers.insert(Header {
            key: &format!("ce_{name}"),
            value: Some(value.as_bytes()),
        });
    }
    let over_kafka = decode(&record(body, headers));
    let http_names: Vec<String> = pairs.iter().map(|(n, _)| format!("ce-{n}")).collect();
    let over_http = binding::decode(
        Transport::Http,
        http_names
            .iter()
            .zip(&pairs)
            .map(|(name, (_, value))| (name.as_str(), value.as_bytes())),
        body,
    );
    // The same message gets the same verdict over either transport.
    assert_eq!(
        over_kafka.as_ref().err().map(|e| e.code),
        over_http.as_ref().err().map(|e| e.code()),
    );
    check(over_kafka);
    check(over_http);
});

fn record(value: &[u8], headers: OwnedHeaders) -> OwnedMessage {
    OwnedMessage::new(
        Some(value.to_vec()),
        None,
        "fuzz".into(),
        Timestamp::NotAvailable,
        0,
        0,
        Some(headers),
    )
}

/// Whatever the parser accepts must satisfy the event contract.
fn check<E>(parsed: Result<MovementEvent, E>) {
    if let Ok(event) = parsed {
        assert!(!event.message_id.trim().is_empty());
        assert!(!event.source.trim().is_empty());
        assert!(event.content.quantity.get() >= 1);
        assert_eq!(
            event.content.occurred_at.timestamp_subsec_nanos() % 1000,
            0,
            "timestamps are kept to the microsecond"
        );
    }
}
