//! The bad-input corpus (`tests/corpus/bad_input.json`): every case gets its
//! specified 4xx over the webhook and its dead letter over Kafka, nothing
//! reaches the ledger, and the partition moves on past all of them.

use crate::broker::{kafka_settings, produce_raw, read_dead_letters};
use crate::helpers::eventually;
use crate::helpers::{Ev, spawn_app, spawn_app_from};
use rdkafka::Message;
use rdkafka::message::Headers;
use serde_json::{Map, Value};
use std::collections::HashMap;
use uuid::Uuid;

struct Case {
    name: String,
    body: Vec<u8>,
    content_type: String,
    status: u16,
    code: String,
    field: Option<String>,
    kafka: Option<String>,
}

fn corpus() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/bad_input.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let template = fresh_template(&file["template"]);
    file["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let body = build_body(c, &template);
            let kafka = match &c["kafka"] {
                Value::String(code) => Some(code.clone()),
                Value::Null => {
                    assert!(
                        c["kafka_note"].is_string(),
                        "{name}: say why Kafka is skipped"
                    );
                    None
                }
                other => panic!("{name}: kafka must be a code or null, got {other}"),
            };
            Case {
                body,
                content_type: c["content_type"]
                    .as_str()
                    .unwrap_or("application/json")
                    .to_string(),
                status: c["http"]["status"].as_u64().unwrap() as u16,
                code: c["http"]["code"].as_str().unwrap().to_string(),
                field: c["http"]["field"].as_str().map(str::to_string),
                kafka,
                name,
            }
        })
        .collect()
}

/// The template with fresh ids, so no case can collide with another test.
fn fresh_template(template: &Value) -> Value {
    let text = template
        .to_string()
        .replace("MESSAGE_ID", &Uuid::new_v4().to_string())
        .replace("MOVEMENT_ID", &Uuid::new_v4().to_string())
        .replace("WAREHOUSE_ID", &Uuid::new_v4().to_string())
        .replace("PRODUCT_ID", &Uuid::new_v4().to_string());
    serde_json::from_str(&text).unwrap()
}

fn build_body(case: &Value, template: &Value) -> Vec<u8> {
    if let Some(text) = case["body"].as_str() {
        return text.as_bytes().to_vec();
    }
    if let Some(hex) = case["body_hex"].as_str() {
        return (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
    }
    if let Some(generate) = case["generate"].as_object() {
        if let Some(depth) = generate.get("nested_arrays").and_then(Value::as_u64) {
            let depth = depth as usize;
            return format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        }
        if let Some(depth) = generate.get("nested_in_data").and_then(Value::as_u64) {
            let depth = depth as usize;
            let nested = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            let text = template.to_string();
            return text
                .replacen("\"data\":{", &format!("\"data\":{{\"deep\":{nested},"), 1)
                .into_bytes();
        }
        if let Some(bytes) = generate.get("padding").and_then(Value::as_u64) {
            let mut event = template.clone();
            event["padding"] = Value::String("x".repeat(bytes as usize));
            return event.to_string().into_bytes();
        }
        panic!("unknown generator {generate:?}");
    }
    let mut event = template.clone();
    for path in case["remove"].as_array().into_iter().flatten() {
        let (parent, key) = locate(&mut event, path.as_str().unwrap());
        parent.remove(key);
    }
    for (path, value) in case["set"].as_object().into_iter().flatten() {
        let (parent, key) = locate(&mut event, path);
        parent.insert(key.to_string(), value.clone());
    }
    event.to_string().into_bytes()
}

/// The object holding the last segment of a dotted path, and that segment.
fn locate<'a, 'p>(event: &'a mut Value, path: &'p str) -> (&'a mut Map<String, Value>, &'p str) {
    let mut segments: Vec<&str> = path.split('.').collect();
    let last = segments.pop().unwrap();
    let mut node = event;
    for segment in segments {
        node = &mut node[segment];
    }
    (node.as_object_mut().unwrap(), last)
}

#[test]
fn the_corpus_has_at_least_sixty_cases_with_distinct_names() {
    let cases = corpus();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cases.len());
}

#[tokio::test]
async fn every_corpus_case_gets_its_specified_answer_over_the_webhook() {
    let app = spawn_app().await;
    let mut wrong = Vec::new();

    for case in corpus() {
        let response = app
            .client
            .post(format!("{}/api/v1/kafka/webhook", app.address))
            .header("Content-Type", &case.content_type)
            .body(case.body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{}: the answer is not JSON: {e}", case.name));
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["field"].as_str())
            .collect();
        let detail_ok = body["detail"].as_str().is_some_and(|d| !d.is_empty());
        let field_ok = case.field.as_deref().is_none_or(|f| fields.contains(&f));
        if status != case.status || body["code"] != case.code.as_str() || !detail_ok || !field_ok {
            wrong.push(format!(
                "{}: expected {} {} {:?}, got {status} {body}",
                case.name, case.status, case.code, case.field
            ));
        }
    }

    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM event_log")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(recorded, 0, "a refused message reached the ledger");
    let (status, _) = app.get("/health/ready").await;
    assert!(status.is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_case_goes_to_the_dead_letter_topic_and_the_partition_moves_on() {
    let settings = kafka_settings(1, &[]);
    let cases: Vec<Case> = corpus().into_iter().filter(|c| c.kafka.is_some()).collect();
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let sentinel = Ev::new(w, p, 3).arrival().to_string();
    let keys: Vec<String> = (0..cases.len()).map(|i| format!("case-{i}")).collect();
    let mut records: Vec<(&str, &[u8])> = cases
        .iter()
        .zip(&keys)
        .map(|(c, k)| (k.as_str(), c.body.as_slice()))
        .collect();
    records.push(("sentinel", sentinel.as_bytes()));
    produce_raw(&settings, &records).await;

    let app = spawn_app_from(settings.clone()).await;
    // The valid event after every bad one: once it is applied, the consumer
    // has moved past all of them.
    eventually("the event after the corpus to be applied", || async {
        crate::broker::applied_count(&app.pool).await == 1
    })
    .await;

    let letters = read_dead_letters(&settings, cases.len());
    assert_eq!(letters.len(), cases.len());
    let by_key: HashMap<String, (String, Vec<u8>)> = letters
        .iter()
        .map(|m| {
            let code = m
                .headers()
                .unwrap()
                .iter()
                .find(|h| h.key == "dlq_error_code")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            (
                String::from_utf8_lossy(m.key().unwrap()).into_owned(),
                (code, m.payload().unwrap_or_default().to_vec()),
            )
        })
        .collect();
    let mut wrong = Vec::new();
    for (case, key) in cases.iter().zip(&keys) {
        match by_key.get(key) {
            None => wrong.push(format!("{}: no dead letter", case.name)),
            Some((code, payload)) => {
                if Some(code) != case.kafka.as_ref() {
                    wrong.push(format!(
                        "{}: expected {:?}, got {code}",
                        case.name, case.kafka
                    ));
                }
                if payload != &case.body {
                    wrong.push(format!(
                        "{}: the dead letter lost the original bytes",
                        case.name
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM event_log")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(recorded, 1, "only the valid event reaches the ledger");
}
