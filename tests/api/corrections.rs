//! Corrections people make: counts and adjustments of a pair's stock, over
//! `POST /api/v1/adjustments`, applied by the ledger in the same batches as
//! movements and read back through history, the feed and `verify`.

use crate::broker::{kafka_settings, produce_raw, read_dead_letters};
use crate::helpers::{
    Ev, TestApp, eventually, pair_changes, spawn_app, spawn_app_from, spawn_app_with, stock_up,
};
use rdkafka::Message;
use rdkafka::message::Headers;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

async fn adjust(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    app.post_json("/api/v1/adjustments", body).await
}

fn count(w: Uuid, p: Uuid, quantity: i64) -> Value {
    json!({"adjustment_id": Uuid::new_v4(), "warehouse_id": w, "product_id": p,
           "kind": "count", "quantity": quantity, "reason": "cycle_count"})
}

fn change(w: Uuid, p: Uuid, quantity: i64, reason: &str) -> Value {
    json!({"adjustment_id": Uuid::new_v4(), "warehouse_id": w, "product_id": p,
           "kind": "adjustment", "quantity": quantity, "reason": reason})
}

async fn verify(app: &TestApp) -> Vec<String> {
    warehouse_stock::ledger::verify::verify(&app.pool, 20)
        .await
        .unwrap()
}

async fn stock(app: &TestApp, w: Uuid, p: Uuid) -> i64 {
    let (status, body) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["quantity"].as_i64().unwrap()
}

async fn history(app: &TestApp, w: Uuid, p: Uuid) -> Vec<Value> {
    let (status, body) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}/history"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_count_sets_the_stock_and_history_shows_it_with_its_reason_and_delta() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 4).await;
    let mut body = count(w, p, 10);
    body["note"] = json!("shelf B3, recounted");
    body["reference"] = json!("STK-2026-12");
    let (status, answer) = adjust(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "processed");
    assert_eq!(
        (answer["delta"].clone(), answer["stock_after"].clone()),
        (json!(6), json!(10))
    );
    assert!(answer["seq"].as_i64().unwrap() > 0);
    assert_eq!(stock(&app, w, p).await, 10);

    let items = history(&app, w, p).await;
    let last = items.last().unwrap();
    assert_eq!(last["event"], "count");
    assert_eq!(last["reason"], "cycle_count");
    assert_eq!(last["note"], "shelf B3, recounted");
    assert_eq!(last["reference"], "STK-2026-12");
    assert_eq!(
        (last["delta"].clone(), last["stock_after"].clone()),
        (json!(6), json!(10))
    );
    assert_eq!(last["seq"], answer["seq"]);
    assert!(
        items[0].get("reason").is_none(),
        "a movement has no reason: {}",
        items[0]
    );
}

#[tokio::test]
async fn a_count_that_matches_the_stock_is_recorded_as_a_confirmation_with_delta_0() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 7).await;
    let (status, answer) = adjust(&app, &count(w, p, 7)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (answer["delta"].clone(), answer["stock_after"].clone()),
        (json!(0), json!(7))
    );
    let items = history(&app, w, p).await;
    assert_eq!(items.len(), 2);
    assert_eq!(
        (items[1]["event"].clone(), items[1]["delta"].clone()),
        (json!("count"), json!(0))
    );
}

#[tokio::test]
async fn an_adjustment_adds_or_takes_away_and_never_below_zero() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 5).await;
    let (status, answer) = adjust(&app, &change(w, p, -3, "damaged")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (answer["delta"].clone(), answer["stock_after"].clone()),
        (json!(-3), json!(2))
    );
    let (status, answer) = adjust(&app, &change(w, p, -3, "lost")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["code"], "insufficient_stock");
    assert_eq!(stock(&app, w, p).await, 2);
    let (status, answer) = adjust(&app, &change(w, p, 8, "found")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["stock_after"], 10);
}

#[tokio::test]
async fn the_same_adjustment_id_again_is_a_duplicate_and_with_other_content_a_conflict() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 5).await;
    let body = change(w, p, 2, "found");
    let (_, first) = adjust(&app, &body).await;
    let (status, again) = adjust(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["status"], "duplicate");
    assert_eq!(
        (again["seq"].clone(), again["delta"].clone()),
        (first["seq"].clone(), json!(2))
    );
    assert_eq!(stock(&app, w, p).await, 7, "applied once");

    let mut other = body.clone();
    other["quantity"] = json!(3);
    other["note"] = json!("a different story");
    let (status, conflict) = adjust(&app, &other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["code"], "conflicting_duplicate");
    assert_eq!(conflict["differs"], json!(["quantity", "note"]));
    // Another kind under the same id is the same id used twice.
    let mut recount = body.clone();
    recount["kind"] = json!("count");
    let (status, conflict) = adjust(&app, &recount).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["code"], "conflicting_duplicate");
    assert_eq!(stock(&app, w, p).await, 7);
}

#[tokio::test]
async fn a_refused_adjustment_sent_again_gets_the_same_refusal_even_after_stock_arrives() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let body = change(w, p, -4, "damaged");
    let (status, answer) = adjust(&app, &body).await;
    assert_eq!(
        (status, answer["code"].clone()),
        (StatusCode::CONFLICT, json!("insufficient_stock"))
    );
    stock_up(&app, w, p, 10).await;
    let (status, answer) = adjust(&app, &body).await;
    assert_eq!(
        (status, answer["code"].clone()),
        (StatusCode::CONFLICT, json!("insufficient_stock"))
    );
    assert_eq!(stock(&app, w, p).await, 10);
}

#[tokio::test]
async fn an_expected_quantity_that_is_not_the_stock_is_refused_with_the_stock_now() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 9).await;
    let mut body = change(w, p, -2, "correction");
    body["expected_quantity"] = json!(8);
    let (status, answer) = adjust(&app, &body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(
        (answer["code"].clone(), answer["stock"].clone()),
        (json!("stale_quantity"), json!(9))
    );
    let mut body = change(w, p, -2, "correction");
    body["expected_quantity"] = json!(9);
    let (status, answer) = adjust(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["stock_after"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_against_a_basis_keeps_exactly_the_changes_made_after_it_while_departures_race() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 1000).await;
    // The counter reads the stock and the change it stands on.
    let basis = history(&app, w, p).await.last().unwrap()["seq"]
        .as_i64()
        .unwrap();
    // Departures go on while the counter walks the shelf and types: the
    // shelf held 990 when counted, so 10 were missing at the basis.
    let departures = async {
        let mut departed = 0;
        for _ in 0..20 {
            let (status, body) = app.post(&Ev::new(w, p, 3).departure()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            departed += 3;
        }
        departed
    };
    let mut body = count(w, p, 990);
    body["basis_seq"] = json!(basis);
    let ((status, answer), departed) = tokio::join!(adjust(&app, &body), departures);
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (
            answer["basis_seq"].clone(),
            answer["basis_quantity"].clone()
        ),
        (json!(basis), json!(1000))
    );
    assert_eq!(answer["delta"], -10);
    assert_eq!(stock(&app, w, p).await, 990 - departed);
    assert_eq!(verify(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn corrections_are_changes_in_the_feed_and_verify_finds_the_ledger_consistent() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 5).await;
    adjust(&app, &change(w, p, -2, "damaged")).await;
    adjust(&app, &count(w, p, 1)).await;
    let seen = pair_changes(&app, w, p).await;
    assert_eq!(
        seen,
        [
            (json!("arrival"), json!(5), json!(5)),
            (json!("adjustment"), json!(-2), json!(3)),
            (json!("count"), json!(-2), json!(1)),
        ]
    );
    assert_eq!(verify(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_request_that_breaks_the_contract_answers_422_naming_every_broken_field() {
    let app = spawn_app().await;
    let body = json!({"adjustment_id": "nope", "warehouse_id": Uuid::new_v4(),
                      "kind": "recount", "quantity": -1, "reason": "theft",
                      "note": "x".repeat(501), "basis_seq": -1, "colour": "red"});
    let (status, answer) = adjust(&app, &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["code"], "invalid_event");
    let mut fields: Vec<&str> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "adjustment_id",
            "basis_seq",
            "colour",
            "kind",
            "note",
            "product_id",
            "reason"
        ]
    );
    // A count below 0, a zero adjustment, a basis on an adjustment.
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    for (body, field) in [
        (count(w, p, -1), "quantity"),
        (change(w, p, 0, "other"), "quantity"),
        (
            {
                let mut b = change(w, p, 2, "other");
                b["basis_seq"] = json!(1);
                b
            },
            "basis_seq",
        ),
    ] {
        let (status, answer) = adjust(&app, &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["errors"][0]["field"], field, "{answer}");
    }
    let (status, _) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}/history"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(history(&app, w, p).await.is_empty(), "nothing was recorded");
}

#[tokio::test]
async fn corrections_need_the_webhook_token_where_one_is_set() {
    let token = "a-webhook-token-for-tests";
    let app = spawn_app_with(&[("WEBHOOK_TOKEN", token)]).await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let (status, _) = adjust(&app, &count(w, p, 3)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let answer = app
        .client
        .post(format!("{}/api/v1/adjustments", app.address))
        .bearer_auth(token)
        .json(&count(w, p, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
}

/// An adjustment as a CloudEvent, with `data` holding the request's fields.
fn message(data: &Value) -> Value {
    json!({"id": Uuid::new_v4().to_string(), "source": "scanner-12", "specversion": "1.0",
           "type": "ru.retail.warehouses.adjustment", "time": 1737439000000i64,
           "datacontenttype": "application/json", "data": data})
}

#[tokio::test]
async fn an_adjustment_cloudevent_over_the_webhook_is_applied_by_the_same_rules() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 6).await;
    let (status, answer) = app.post(&message(&count(w, p, 4))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["details"]["event_type"], "count");
    assert_eq!(answer["details"]["stock_after"], 4);
    let (status, answer) = app.post(&message(&change(w, p, -9, "lost"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["code"], "insufficient_stock");
    let mut broken = change(w, p, 0, "lost");
    broken["kind"] = json!("recount");
    let (status, answer) = app.post(&message(&broken)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let fields: Vec<&str> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["data.kind"]);
    let items = history(&app, w, p).await;
    let last = items.last().unwrap();
    assert_eq!(
        (last["event"].clone(), last["source"].clone()),
        (json!("count"), json!("scanner-12"))
    );
    assert_eq!(stock(&app, w, p).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adjustments_on_the_topic_apply_and_refused_ones_go_to_the_dead_letter_topic() {
    let settings = kafka_settings(1, &[]);
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let records: Vec<String> = [
        Ev::new(w, p, 10).arrival(),
        message(&change(w, p, -3, "damaged")),
        message(&change(w, p, -30, "lost")),
        message(&{
            let mut c = count(w, p, 5);
            c["expected_quantity"] = json!(6);
            c
        }),
        message(&count(w, p, 2)),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    let keyed: Vec<(&str, &[u8])> = records.iter().map(|r| ("pair", r.as_bytes())).collect();
    produce_raw(&settings, &keyed).await;
    let app = spawn_app_from(settings.clone()).await;
    eventually("the stream applied", || async {
        crate::broker::applied_count(&app.pool).await == 3
    })
    .await;
    assert_eq!(stock(&app, w, p).await, 2);
    let letters = read_dead_letters(&settings, 2);
    let codes: Vec<String> = letters
        .iter()
        .map(|m| {
            let header = m
                .headers()
                .unwrap()
                .iter()
                .find(|h| h.key == "dlq_error_code");
            String::from_utf8_lossy(header.unwrap().value.unwrap()).into_owned()
        })
        .collect();
    assert_eq!(codes, ["insufficient_stock", "stale_quantity"]);
    assert_eq!(verify(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_stock_answer_carries_the_seq_of_the_pairs_last_change_for_a_counter_to_count_against() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let path = format!("/api/v1/warehouses/{w}/products/{p}");
    let (_, never) = app.get(&path).await;
    assert_eq!(
        (never["quantity"].clone(), never["last_seq"].clone()),
        (json!(0), Value::Null)
    );
    stock_up(&app, w, p, 12).await;
    let (_, now) = app.get(&path).await;
    let seen = now["last_seq"].as_i64().unwrap();
    assert_eq!(seen, history(&app, w, p).await[0]["seq"].as_i64().unwrap());
    // Another change after the counter read the stock stays.
    app.post_ok(&Ev::new(w, p, 2).departure()).await;
    let (_, after) = app.get(&path).await;
    assert!(after["last_seq"].as_i64().unwrap() > seen, "{after}");
    let mut body = count(w, p, 11);
    body["basis_seq"] = json!(seen);
    let (status, answer) = adjust(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (answer["delta"].clone(), answer["stock_after"].clone()),
        (json!(-1), json!(9))
    );
    let (_, counted) = app.get(&path).await;
    assert_eq!(
        (counted["quantity"].clone(), counted["last_seq"].clone()),
        (json!(9), answer["seq"].clone())
    );
    // The bulk lookup says the same.
    let body = json!({"items": [{"warehouse_id": w, "product_id": p}]});
    let (_, lookup) = app.post_json("/api/v1/stock/lookup", &body).await;
    assert_eq!(lookup["items"][0]["last_seq"], answer["seq"]);
}
