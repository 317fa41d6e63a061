//! What closes a movement early: its reversal (recorded in error) and its
//! write-off (lost on the road), over
//! `POST /api/v1/movements/{id}/reversal` and `/write-off`, applied by the
//! ledger in the same batches as movements and read back through the
//! movement, history, the product's in-transit figure, the feed and
//! `verify`.

use crate::helpers::{Ev, TestApp, pair_changes, spawn_app, spawn_app_with, stock_up};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

async fn reverse(app: &TestApp, movement: Uuid, body: &Value) -> (StatusCode, Value) {
    app.post_json(&format!("/api/v1/movements/{movement}/reversal"), body)
        .await
}

async fn write_off(app: &TestApp, movement: Uuid, body: &Value) -> (StatusCode, Value) {
    app.post_json(&format!("/api/v1/movements/{movement}/write-off"), body)
        .await
}

fn reversal(reason: &str) -> Value {
    json!({"reversal_id": Uuid::new_v4(), "reason": reason, "note": "keyed twice"})
}

fn loss() -> Value {
    json!({"write_off_id": Uuid::new_v4(), "reason": "lost", "note": "truck 12, route 7"})
}

async fn movement(app: &TestApp, id: Uuid) -> Value {
    let (status, body) = app.get(&format!("/api/v1/movements/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn in_transit(app: &TestApp, p: Uuid) -> i64 {
    let (status, body) = app.get(&format!("/api/v1/products/{p}/stock")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["in_transit"].as_i64().unwrap()
}

async fn verify(app: &TestApp) -> Vec<String> {
    warehouse_stock::ledger::verify::verify(&app.pool, 20)
        .await
        .unwrap()
}

/// Three ids: a source holding `held`, a destination, a product.
async fn warehouses(app: &TestApp, held: i64) -> (Uuid, Uuid, Uuid) {
    let (from, to, p) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    stock_up(app, from, p, held).await;
    (from, to, p)
}

/// Moves `quantity` from `from` to `to`; the arrival only if `arrives`.
async fn send(app: &TestApp, from: Uuid, to: Uuid, p: Uuid, quantity: i64, arrives: bool) -> Uuid {
    let m = Uuid::new_v4();
    app.post_ok(&Ev::new(from, p, quantity).movement(m).departure())
        .await;
    if arrives {
        app.post_ok(&Ev::new(to, p, quantity).movement(m).arrival())
            .await;
    }
    m
}

#[tokio::test]
async fn a_reversal_gives_each_half_an_opposite_entry_and_the_movement_shows_it() {
    let app = spawn_app().await;
    let (from, to, p) = warehouses(&app, 10).await;
    let m = send(&app, from, to, p, 4, true).await;
    let body = reversal("correction");
    let (status, answer) = reverse(&app, m, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "processed");
    let entries: Vec<(Value, Value, Value, Value)> = answer["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let fields = ["warehouse_id", "reverses", "delta", "stock_after"];
            let [w, r, d, s] = fields.map(|f| e[f].clone());
            (w, r, d, s)
        })
        .collect();
    assert_eq!(
        entries,
        [
            (json!(from), json!("departure"), json!(4), json!(10)),
            (json!(to), json!("arrival"), json!(-4), json!(0)),
        ]
    );
    assert_eq!((app.stock(from, p).await, app.stock(to, p).await), (10, 0));
    let view = movement(&app, m).await;
    assert_eq!(view["status"], "reversed");
    assert_eq!(view["reversal"]["id"], body["reversal_id"]);
    assert_eq!(view["reversal"]["reason"], "correction");
    assert_eq!(view["reversal"]["note"], "keyed twice");
    assert!(view["reversal"]["applied_at"].is_string(), "{view}");
    let (_, history) = app
        .get(&format!("/api/v1/warehouses/{to}/products/{p}/history"))
        .await;
    let last = history["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["event"], &last["reason"], &last["delta"]),
        (&json!("reversal"), &json!("correction"), &json!(-4))
    );
    assert_eq!(verify(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn the_same_reversal_again_is_a_duplicate_and_another_is_refused_as_movement_reversed() {
    let app = spawn_app().await;
    let (from, to, p) = warehouses(&app, 10).await;
    let m = send(&app, from, to, p, 4, true).await;
    let body = reversal("correction");
    assert_eq!(reverse(&app, m, &body).await.0, StatusCode::OK);
    let (status, again) = reverse(&app, m, &body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["entries"].as_array().unwrap().len(), 2);
    let mut changed = body.clone();
    changed["note"] = json!("another note");
    let (status, conflict) = reverse(&app, m, &changed).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["code"], "conflicting_duplicate");
    assert_eq!(conflict["differs"], json!(["note"]));
    let (status, other) = reverse(&app, m, &reversal("other")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{other}");
    assert_eq!(other["code"], "movement_reversed");
    // Applied once: the stock moved back once.
    assert_eq!((app.stock(from, p).await, app.stock(to, p).await), (10, 0));
}

#[tokio::test]
async fn a_reversal_is_refused_whole_when_the_destination_no_longer_holds_the_quantity() {
    let app = spawn_app().await;
    let (from, to, p) = warehouses(&app, 10).await;
    let m = send(&app, from, to, p, 4, true).await;
    // Two of the four arrived units left the destination since.
    app.post_ok(&Ev::new(to, p, 2).departure()).await;
    let body = reversal("correction");
    let (status, answer) = reverse(&app, m, &body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["code"], "insufficient_stock");
    // Neither half was reversed.
    assert_eq!((app.stock(from, p).await, app.stock(to, p).await), (6, 2));
    assert_eq!(movement(&app, m).await["status"], "completed");
    // A refusal is an answer, not a record: once the stock is back, the
    // same request applies.
    stock_up(&app, to, p, 2).await;
    let (status, answer) = reverse(&app, m, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!((app.stock(from, p).await, app.stock(to, p).await), (10, 0));
}

#[tokio::test]
async fn a_half_that_arrives_after_its_movement_was_reversed_is_rejected_as_movement_reversed() {
    let app = spawn_app().await;
    let (from, to, p) = warehouses(&app, 10).await;
    let m = send(&app, from, to, p, 4, false).await;
    assert_eq!(in_transit(&app, p).await, 4);
    let (status, answer) = reverse(&app, m, &reversal("correction")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["entries"].as_array().unwrap().len(), 1);
    assert_eq!(in_transit(&app, p).await, 0);
    let arrival = Ev::new(to, p, 4).movement(m).arrival();
    let (status, late) = app.post(&arrival).await;
    assert_eq!(status, StatusCode::CONFLICT, "{late}");
    assert_eq!(late["code"], "movement_reversed");
    // Final, like every refusal of an event: sent again, the same answer.
    let (status, again) = app.post(&arrival).await;
    assert_eq!(
        (status, &again["code"]),
        (StatusCode::CONFLICT, &json!("movement_reversed"))
    );
    assert_eq!((app.stock(from, p).await, app.stock(to, p).await), (10, 0));
    let (_, rejections) = app.get("/api/v1/rejections").await;
    let reasons: Vec<&Value> = rejections["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["movement_id"] == json!(m))
        .map(|r| &r["reason"])
        .collect();
    assert_eq!(reasons, [&json!("movement_reversed")]);
    assert_eq!(verify(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_write_off_takes_a_movement_out_of_transit_and_a_late_arrival_still_completes_it() {
    let app = spawn_app().await;
    let (from, to, p) = warehouses(&app, 10).await;
    let m = send(&app, from, to, p, 4, false).await;
    let body = loss();
    let (status, answer) = write_off(&app, m, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["entries"][0]["delta"], 0);
    assert_eq!(answer["entries"][0]["stock_after"], 6);
    assert_eq!(answer["movement"]["status"], "written_off");
    assert_eq!(app.stock(from, p).await, 6);
    assert_eq!(in_transit(&app, p).await, 0);
    let (_, listed) = app
        .get(&format!(
            "/api/v1/movements?status=written_off&product_id={p}"
        ))
        .await;
    assert_eq!(listed["items"][0]["movement_id"], json!(m), "{listed}");
    assert_eq!(listed["items"][0]["write_off"]["reason"], "lost");
    let (status, again) = write_off(&app, m, &body).await;
    assert_eq!(
        (status, &again["status"]),
        (StatusCode::OK, &json!("duplicate"))
    );
    // The goods turn up after all.
    app.post_ok(&Ev::new(to, p, 4).movement(m).arrival()).await;
    let view = movement(&app, m).await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["write_off"]["id"], body["write_off_id"]);
    assert_eq!(app.stock(to, p).await, 4);
    assert_eq!(verify(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_write_off_of_a_movement_not_in_transit_is_refused_and_an_unknown_movement_is_404() {
    let app = spawn_app().await;
    let (from, to, p) = warehouses(&app, 10).await;
    let arrived = send(&app, from, to, p, 4, true).await;
    let (status, answer) = write_off(&app, arrived, &loss()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["code"], "movement_not_in_transit");
    let reversed = send(&app, from, to, p, 1, false).await;
    assert_eq!(
        reverse(&app, reversed, &reversal("correction")).await.0,
        StatusCode::OK
    );
    let (status, answer) = write_off(&app, reversed, &loss()).await;
    assert_eq!(
        (status, &answer["code"]),
        (StatusCode::CONFLICT, &json!("movement_not_in_transit"))
    );
    let written_off = send(&app, from, to, p, 1, false).await;
    assert_eq!(
        write_off(&app, written_off, &loss()).await.0,
        StatusCode::OK
    );
    let (status, answer) = write_off(&app, written_off, &loss()).await;
    assert_eq!(
        (status, &answer["code"]),
        (StatusCode::CONFLICT, &json!("movement_not_in_transit"))
    );
    let unknown = Uuid::new_v4();
    let (status, answer) = write_off(&app, unknown, &loss()).await;
    assert_eq!(
        (status, &answer["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
    let (status, answer) = reverse(&app, unknown, &reversal("other")).await;
    assert_eq!(
        (status, &answer["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
}

#[tokio::test]
async fn a_closing_that_breaks_the_contract_answers_422_naming_every_broken_field() {
    let app = spawn_app().await;
    let (from, to, p) = warehouses(&app, 10).await;
    let m = send(&app, from, to, p, 4, false).await;
    let body = json!({"reversal_id": "nope", "reason": "whim", "note": "x".repeat(501),
                      "colour": "red"});
    let (status, answer) = reverse(&app, m, &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["code"], "invalid_event");
    let mut fields: Vec<&str> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["colour", "note", "reason", "reversal_id"]);
    let (status, answer) = write_off(&app, m, &json!({"reason": "lost"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["errors"][0]["field"], "write_off_id");
    assert_eq!(movement(&app, m).await["status"], "in_transit");
}

#[tokio::test]
async fn a_reversal_racing_its_movements_arrival_ends_with_both_halves_undone() {
    let app = spawn_app().await;
    let (from, to, p) = warehouses(&app, 100).await;
    for _ in 0..8 {
        let m = send(&app, from, to, p, 5, false).await;
        let arrival = Ev::new(to, p, 5).movement(m).arrival();
        let body = reversal("correction");
        let ((reversed, answer), (arrived, _)) =
            tokio::join!(reverse(&app, m, &body), app.post(&arrival));
        assert_eq!(reversed, StatusCode::OK, "{answer}");
        // Whichever came first, the arrival is either reversed with the
        // departure or refused after it: never left standing.
        assert!(
            arrived == StatusCode::OK || arrived == StatusCode::CONFLICT,
            "{arrived}"
        );
        assert_eq!(movement(&app, m).await["status"], "reversed");
        assert_eq!((app.stock(from, p).await, app.stock(to, p).await), (100, 0));
    }
    assert_eq!(in_transit(&app, p).await, 0);
    assert_eq!(verify(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn reversals_and_write_offs_are_changes_in_the_feed() {
    let app = spawn_app().await;
    let (from, to, p) = warehouses(&app, 10).await;
    let m = send(&app, from, to, p, 4, false).await;
    assert_eq!(write_off(&app, m, &loss()).await.0, StatusCode::OK);
    assert_eq!(
        reverse(&app, m, &reversal("correction")).await.0,
        StatusCode::OK
    );
    let seen = pair_changes(&app, from, p).await;
    assert_eq!(
        seen,
        [
            (json!("arrival"), json!(10), json!(10)),
            (json!("departure"), json!(-4), json!(6)),
            (json!("write_off"), json!(0), json!(6)),
            (json!("reversal"), json!(4), json!(10)),
        ]
    );
    // Written off, then reversed: it was recorded in error after all.
    assert_eq!(movement(&app, m).await["status"], "reversed");
    assert_eq!(verify(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn closings_need_the_webhook_token_where_one_is_set() {
    let token = "a-webhook-token-for-tests";
    let app = spawn_app_with(&[("WEBHOOK_TOKEN", token)]).await;
    let m = Uuid::new_v4();
    let (status, _) = reverse(&app, m, &reversal("correction")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = write_off(&app, m, &loss()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let answer = app
        .client
        .post(format!("{}/api/v1/movements/{m}/write-off", app.address))
        .bearer_auth(token)
        .json(&loss())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn verify_names_a_reversal_that_does_not_undo_the_half_it_names() {
    let app = spawn_app().await;
    let (from, to, p) = warehouses(&app, 10).await;
    let m = send(&app, from, to, p, 4, true).await;
    assert_eq!(
        reverse(&app, m, &reversal("correction")).await.0,
        StatusCode::OK
    );
    assert_eq!(verify(&app).await, Vec::<String>::new());
    // Tampered with by hand: the departure's reversal now names the arrival.
    sqlx::query(
        "UPDATE event_log SET correction = correction || '{\"reverses\": \"arrival\"}'
         WHERE movement_id = $1 AND event = 'reversal' AND warehouse_id = $2",
    )
    .bind(m)
    .bind(from)
    .execute(&app.pool)
    .await
    .unwrap();
    let found = verify(&app).await;
    assert!(
        found
            .iter()
            .any(|line| line.starts_with("reversal") && line.contains("does not undo the arrival")),
        "{found:?}"
    );
}

#[tokio::test]
async fn rejections_can_be_filtered_by_reason() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let (_, refused) = app.post(&Ev::new(w, p, 5).departure()).await;
    assert_eq!(refused["code"], "insufficient_stock", "{refused}");
    let (_, all) = app
        .get("/api/v1/rejections?reason=insufficient_stock")
        .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "{all}");
    let (_, none) = app.get("/api/v1/rejections?reason=stale_quantity").await;
    assert_eq!(none["items"], serde_json::json!([]));
    let (status, bad) = app.get("/api/v1/rejections?reason=bored").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["code"], "invalid_query");
}
