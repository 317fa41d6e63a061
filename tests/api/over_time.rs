//! Stock over time and in bulk: a pair's history, its stock as of a moment,
//! a product across warehouses and in transit, many figures at once, the
//! task's own paths and who sent each half of a movement.

use crate::helpers::{Ev, TestApp, spawn_app, stock_up};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

/// Every page of `path` (which has no query yet) with `limit`, followed
/// through `next_after` to the end.
async fn all_pages(app: &TestApp, path: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let query = match &after {
            Some(a) => format!("{path}?limit={limit}&after={a}"),
            None => format!("{path}?limit={limit}"),
        };
        let (status, page) = app.get(&query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let got = page["items"].as_array().unwrap();
        assert!(got.len() <= limit);
        items.extend(got.iter().cloned());
        match &page["next_after"] {
            Value::Null => return items,
            next => after = Some(next.to_string().trim_matches('"').to_string()),
        }
    }
}

async fn post_ok(app: &TestApp, event: &Value) {
    let (status, body) = app.post(event).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_task_paths_answer_exactly_as_their_v1_counterparts() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let arrival = Ev::new(w, p, 7);
    post_ok(&app, &arrival.arrival()).await;
    for pair in [(w, p), (Uuid::new_v4(), p)] {
        let v1 = app
            .get(&format!(
                "/api/v1/warehouses/{}/products/{}",
                pair.0, pair.1
            ))
            .await;
        let task = app
            .get(&format!("/api/warehouses/{}/products/{}", pair.0, pair.1))
            .await;
        assert_eq!(v1, task);
    }
    let movement = arrival.movement;
    let v1 = app.get(&format!("/api/v1/movements/{movement}")).await;
    let task = app.get(&format!("/api/movements/{movement}")).await;
    assert_eq!(v1.0, StatusCode::OK);
    assert_eq!(v1, task);
    let missing = Uuid::new_v4();
    let (status, body) = app.get(&format!("/api/movements/{missing}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.get("/api/movements/nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("movement_id"));
}

#[tokio::test]
async fn a_movement_names_the_source_of_each_half_and_null_while_it_is_unseen() {
    let app = spawn_app().await;
    let (from, to, p) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, from, p, 10).await;
    let movement = Uuid::new_v4();
    let mut departure = Ev::new(from, p, 4).movement(movement).departure();
    departure["source"] = json!("WH-1001");
    post_ok(&app, &departure).await;
    let (_, view) = app.get(&format!("/api/v1/movements/{movement}")).await;
    assert_eq!(view["departure_source"], "WH-1001");
    assert_eq!(view["arrival_source"], Value::Null);
    // Read again (now from the cache), and after the arrival.
    let (_, cached) = app.get(&format!("/api/v1/movements/{movement}")).await;
    assert_eq!(cached, view);
    let mut arrival = Ev::new(to, p, 4).movement(movement).arrival();
    arrival["source"] = json!("WH-2002");
    post_ok(&app, &arrival).await;
    let (_, view) = app.get(&format!("/api/v1/movements/{movement}")).await;
    assert_eq!(view["departure_source"], "WH-1001");
    assert_eq!(view["arrival_source"], "WH-2002");
    assert_eq!(view["status"], "completed");
}

#[tokio::test]
async fn a_pairs_history_replays_to_its_current_stock_in_pages_to_the_end() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let mut expected = Vec::new();
    let mut stock = 0i64;
    for i in 1..=7i64 {
        post_ok(&app, &Ev::new(w, p, i * 10).arrival()).await;
        stock += i * 10;
        expected.push((i * 10, stock));
        post_ok(&app, &Ev::new(w, p, i).departure()).await;
        stock -= i;
        expected.push((-i, stock));
    }
    // Refused and duplicate events are not history; another pair is not either.
    let refused = app.post(&Ev::new(w, p, 10_000).departure()).await;
    assert_eq!(refused.0, StatusCode::CONFLICT);
    stock_up(&app, Uuid::new_v4(), p, 5).await;

    let path = format!("/api/v1/warehouses/{w}/products/{p}/history");
    let items = all_pages(&app, &path, 3).await;
    assert_eq!(items.len(), expected.len());
    let mut previous = 0i64;
    let mut last_seq = 0i64;
    for (item, (delta, after)) in items.iter().zip(&expected) {
        assert_eq!(item["delta"], *delta, "{item}");
        assert_eq!(item["stock_after"], *after, "{item}");
        assert_eq!(
            item["stock_after"].as_i64().unwrap(),
            previous + item["delta"].as_i64().unwrap()
        );
        previous = *after;
        let seq = item["seq"].as_i64().unwrap();
        assert!(seq > last_seq, "in the ledger's order");
        last_seq = seq;
        assert_eq!(item["source"], "WH-3322");
        assert_eq!(item["quantity"], delta.abs());
        assert_eq!(
            item["event"],
            if *delta > 0 { "arrival" } else { "departure" }
        );
        assert_eq!(item["occurred_at"], "2025-02-18T12:12:56Z");
        assert!(item["applied_at"].is_string() && item["message_id"].is_string());
        assert!(item["movement_id"].is_string());
    }
    assert_eq!(
        previous,
        app.stock(w, p).await,
        "the last stock_after is the stock"
    );

    let (status, empty) = app
        .get(&format!(
            "/api/v1/warehouses/{}/products/{p}/history",
            Uuid::new_v4()
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(empty, json!({"items": [], "next_after": null}));
}

#[tokio::test]
async fn history_parameters_that_are_not_valid_answer_400_naming_the_parameter() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    for (query, name) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("after=-1", "after"),
        ("after=x", "after"),
        // An empty value is malformed, not absent, as the description says.
        ("limit=", "limit"),
        ("after=", "after"),
    ] {
        let (status, body) = app
            .get(&format!(
                "/api/v1/warehouses/{w}/products/{p}/history?{query}"
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(name),
            "{query}: {body}"
        );
    }
    let (status, body) = app
        .get(&format!("/api/v1/warehouses/x/products/{p}/history"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("warehouse_id"));
}

#[tokio::test]
async fn stock_as_of_each_applied_moment_is_the_stock_right_after_it() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    for q in [5, 7, 11] {
        post_ok(&app, &Ev::new(w, p, q).arrival()).await;
    }
    post_ok(&app, &Ev::new(w, p, 4).departure()).await;
    let items = all_pages(
        &app,
        &format!("/api/v1/warehouses/{w}/products/{p}/history"),
        100,
    )
    .await;
    assert_eq!(items.len(), 4);
    for item in &items {
        let at = item["applied_at"].as_str().unwrap();
        let encoded = at.replace('+', "%2B");
        for path in [
            format!("/api/v1/warehouses/{w}/products/{p}?as_of={encoded}"),
            format!("/api/warehouses/{w}/products/{p}?as_of={encoded}"),
        ] {
            let (status, body) = app.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["quantity"], item["stock_after"], "{path}");
            let echoed = chrono::DateTime::parse_from_rfc3339(body["as_of"].as_str().unwrap());
            let asked = chrono::DateTime::parse_from_rfc3339(at);
            assert_eq!(echoed.unwrap(), asked.unwrap());
        }
    }
    // Before the first event there was nothing; the current answer has no as_of.
    let (_, before) = app
        .get(&format!(
            "/api/v1/warehouses/{w}/products/{p}?as_of=2000-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(before["quantity"], 0);
    let (_, now) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}"))
        .await;
    assert_eq!(now["quantity"], 19);
    assert!(now.get("as_of").is_none(), "{now}");

    for bad in ["yesterday", "2025-13-01T00:00:00Z", "1737439421623", ""] {
        let (status, body) = app
            .get(&format!("/api/v1/warehouses/{w}/products/{p}?as_of={bad}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["detail"].as_str().unwrap().contains("as_of"), "{body}");
    }
}

#[tokio::test]
async fn a_product_across_warehouses_has_its_total_its_transit_and_pages_of_holders() {
    let app = spawn_app().await;
    let p = Uuid::new_v4();
    let mut holders: Vec<(Uuid, i64)> = (0..5).map(|i| (Uuid::new_v4(), 10 * (i + 1))).collect();
    for &(w, q) in &holders {
        stock_up(&app, w, p, q).await;
    }
    // A warehouse sold out is not a holder; another product does not count.
    let empty = Uuid::new_v4();
    stock_up(&app, empty, p, 3).await;
    post_ok(&app, &Ev::new(empty, p, 3).departure()).await;
    stock_up(&app, holders[0].0, Uuid::new_v4(), 1000).await;
    // Two shipments: one on the road, one arrived short.
    let on_road = Uuid::new_v4();
    post_ok(
        &app,
        &Ev::new(holders[1].0, p, 6).movement(on_road).departure(),
    )
    .await;
    holders[1].1 -= 6;
    let arrived = Uuid::new_v4();
    post_ok(
        &app,
        &Ev::new(holders[2].0, p, 8).movement(arrived).departure(),
    )
    .await;
    holders[2].1 -= 8;
    post_ok(
        &app,
        &Ev::new(holders[3].0, p, 7).movement(arrived).arrival(),
    )
    .await;
    holders[3].1 += 7;
    holders.sort();

    let path = format!("/api/v1/products/{p}/stock");
    let (status, whole) = app.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    let total: i64 = holders.iter().map(|h| h.1).sum();
    assert_eq!(whole["product_id"], p.to_string());
    assert_eq!(whole["total"], total);
    // On the road: the 6 of `on_road` and the 3 that emptied `empty`.
    assert_eq!(whole["in_transit"], 6 + 3);
    let items = all_pages(&app, &path, 2).await;
    let listed: Vec<(Uuid, i64)> = items
        .iter()
        .map(|i| {
            (
                i["warehouse_id"].as_str().unwrap().parse().unwrap(),
                i["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, holders);

    let (status, nothing) = app
        .get(&format!("/api/v1/products/{}/stock", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(nothing["total"], 0);
    assert_eq!(nothing["in_transit"], 0);
    assert_eq!(nothing["items"], json!([]));
    assert_eq!(nothing["next_after"], Value::Null);
    for (bad, name) in [
        ("/api/v1/products/nope/stock", "product_id"),
        (&*format!("{path}?after=zzz"), "after"),
        (&*format!("{path}?limit=0"), "limit"),
        (&*format!("{path}?after="), "after"),
    ] {
        let (status, body) = app.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body["detail"].as_str().unwrap().contains(name), "{body}");
    }
}

async fn lookup(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(format!("{}/api/v1/stock/lookup", app.address))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn pairs_body(pairs: &[(Uuid, Uuid)]) -> Value {
    json!({"items": pairs.iter().map(|(w, p)| json!({"warehouse_id": w, "product_id": p})).collect::<Vec<_>>()})
}

#[tokio::test]
async fn a_bulk_lookup_answers_every_pair_in_the_order_asked_and_never_a_stale_figure() {
    let app = spawn_app().await;
    app.wait_for_cache().await;
    let known: Vec<(Uuid, Uuid)> = (0..4).map(|_| (Uuid::new_v4(), Uuid::new_v4())).collect();
    for (i, &(w, p)) in known.iter().enumerate() {
        stock_up(&app, w, p, i as i64 + 1).await;
    }
    let unseen = (Uuid::new_v4(), Uuid::new_v4());
    // Unknown, known and repeated pairs, mixed.
    let asked = vec![known[2], unseen, known[0], known[2], known[3], known[1]];
    let want = [3, 0, 1, 3, 4, 2];
    for round in 0..2 {
        // The second round is served from the cache the first one filled.
        let (status, body) = lookup(&app, &pairs_body(&asked)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let items = body["items"].as_array().unwrap();
        assert_eq!(items.len(), asked.len());
        for ((item, &(w, p)), q) in items.iter().zip(&asked).zip(want) {
            assert_eq!(item["warehouse_id"], w.to_string(), "round {round}");
            assert_eq!(item["product_id"], p.to_string());
            assert_eq!(item["quantity"], q);
        }
    }
    let hits = app
        .metric("cache_requests_total", &[("result", "hit")])
        .await;
    assert!(hits >= 5.0, "the second round read Redis: {hits} hits");
    // A write after the cache was filled is seen by the next lookup.
    stock_up(&app, known[0].0, known[0].1, 100).await;
    let (_, body) = lookup(&app, &pairs_body(&[known[0]])).await;
    assert_eq!(body["items"][0]["quantity"], 101);
}

#[tokio::test]
async fn a_bulk_lookup_of_1000_pairs_is_answered_and_of_1001_is_413() {
    let app = spawn_app().await;
    let w = Uuid::new_v4();
    let p = Uuid::new_v4();
    stock_up(&app, w, p, 9).await;
    let mut pairs: Vec<(Uuid, Uuid)> = (0..999).map(|_| (Uuid::new_v4(), p)).collect();
    pairs.push((w, p));
    let (status, body) = lookup(&app, &pairs_body(&pairs)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 1000);
    assert_eq!(body["items"][999]["quantity"], 9);
    pairs.push((w, p));
    let (status, body) = lookup(&app, &pairs_body(&pairs)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "too_many_items");
    assert!(body["detail"].as_str().unwrap().contains("1000"));
}

#[tokio::test]
async fn a_bulk_lookup_that_is_not_valid_answers_4xx_with_a_detail() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let cases = [
        (json!({"items": []}), StatusCode::BAD_REQUEST, "items"),
        (json!({}), StatusCode::BAD_REQUEST, "items"),
        (
            json!({"items": [{"warehouse_id": "WH-1", "product_id": id}]}),
            StatusCode::BAD_REQUEST,
            "warehouse_id",
        ),
        (
            json!({"items": [{"warehouse_id": id}]}),
            StatusCode::BAD_REQUEST,
            "product_id",
        ),
    ];
    for (body, want, name) in cases {
        let (status, answer) = lookup(&app, &body).await;
        assert_eq!(status, want, "{body}: {answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains(name),
            "{body}: {answer}"
        );
    }
    let response = app
        .client
        .post(format!("{}/api/v1/stock/lookup", app.address))
        .header("Content-Type", "application/json")
        .body("{\"items\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["code"], "malformed_json");
    let response = app
        .client
        .post(format!("{}/api/v1/stock/lookup", app.address))
        .header("Content-Type", "text/plain")
        .body("{\"items\": []}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["detail"].is_string());
}

/// Posts arrivals until `stop` is set: to `pairs` in turn and, every third
/// time, to a new warehouse of `product`.
fn keep_writing(
    app: &TestApp,
    pairs: Vec<(Uuid, Uuid)>,
    product: Uuid,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    let client = app.client.clone();
    let url = format!("{}/api/v1/kafka/webhook", app.address);
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let (w, p) = if n % 3 == 2 {
                (Uuid::new_v4(), product)
            } else {
                pairs[n % pairs.len()]
            };
            let response = client
                .post(&url)
                .json(&Ev::new(w, p, 1).arrival())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            n += 1;
        }
        n
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_under_concurrent_writes_never_repeats_an_item_nor_skips_one_that_matched_throughout()
 {
    let app = spawn_app().await;
    let product = Uuid::new_v4();
    let holders: Vec<Uuid> = (0..12).map(|_| Uuid::new_v4()).collect();
    for &w in &holders {
        stock_up(&app, w, product, 1).await;
    }
    let (hw, hp) = (holders[0], product);
    for _ in 0..20 {
        stock_up(&app, hw, hp, 1).await;
    }
    let path = format!("/api/v1/warehouses/{hw}/products/{hp}/history");
    let before: Vec<i64> = all_pages(&app, &path, 1000)
        .await
        .iter()
        .map(|i| i["seq"].as_i64().unwrap())
        .collect();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pairs: Vec<(Uuid, Uuid)> = holders.iter().map(|&w| (w, product)).collect();
    let writer = keep_writing(&app, pairs, product, stop.clone());
    // Page slowly (2 at a time) while the writes go on, several times.
    for _ in 0..3 {
        let seqs: Vec<i64> = all_pages(&app, &path, 2)
            .await
            .iter()
            .map(|i| i["seq"].as_i64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "no repeats: {seqs:?}");
        assert!(before.iter().all(|s| seqs.contains(s)), "no skips");
        let listed: Vec<String> = all_pages(&app, &format!("/api/v1/products/{product}/stock"), 2)
            .await
            .iter()
            .map(|i| i["warehouse_id"].as_str().unwrap().to_string())
            .collect();
        let mut unique = listed.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), listed.len(), "no warehouse listed twice");
        for w in &holders {
            assert!(listed.contains(&w.to_string()), "holder {w} skipped");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(written > 0, "the pages were read while writes went on");
}

#[tokio::test]
async fn movements_are_listed_by_status_warehouse_product_and_age_in_pages_to_the_end() {
    let app = spawn_app().await;
    let (w1, w2, w3, w4) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let (p, q) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w1, p, 100).await;
    stock_up(&app, w4, q, 100).await;
    let on_road = Uuid::new_v4();
    post_ok(
        &app,
        &Ev::new(w1, p, 5)
            .movement(on_road)
            .at("2025-02-18T10:00:00Z")
            .departure(),
    )
    .await;
    let done = Uuid::new_v4();
    post_ok(
        &app,
        &Ev::new(w1, p, 6)
            .movement(done)
            .at("2025-02-18T11:00:00Z")
            .departure(),
    )
    .await;
    post_ok(
        &app,
        &Ev::new(w2, p, 6)
            .movement(done)
            .at("2025-02-18T12:00:00Z")
            .arrival(),
    )
    .await;
    let arrived_only = Uuid::new_v4();
    post_ok(&app, &Ev::new(w3, p, 2).movement(arrived_only).arrival()).await;
    let long_gone = Uuid::new_v4();
    post_ok(
        &app,
        &Ev::new(w4, q, 9)
            .movement(long_gone)
            .at("2025-01-01T00:00:00Z")
            .departure(),
    )
    .await;

    let ids = |items: Vec<Value>| -> Vec<String> {
        items
            .iter()
            .map(|m| m["movement_id"].as_str().unwrap().to_string())
            .collect()
    };
    let sorted = |mut v: Vec<Uuid>| -> Vec<String> {
        v.sort();
        v.iter().map(Uuid::to_string).collect()
    };
    // The stock-up arrivals are movements too (arrived only).
    let everything = ids(all_pages(&app, "/api/v1/movements", 1).await);
    assert_eq!(everything.len(), 2 + 4, "{everything:?}");
    let cases = [
        ("status=in_transit", vec![on_road, long_gone]),
        ("status=completed", vec![done]),
        (
            &*format!("status=arrived&product_id={p}&warehouse_id={w3}"),
            vec![arrived_only],
        ),
        (&*format!("warehouse_id={w2}"), vec![done]),
        (
            &*format!("product_id={q}&status=in_transit"),
            vec![long_gone],
        ),
        (
            "status=in_transit&departed_before=2025-02-01T00:00:00Z",
            vec![long_gone],
        ),
        (
            "departed_before=2025-02-18T10:30:00%2B00:00",
            vec![on_road, long_gone],
        ),
        (&*format!("warehouse_id={}", Uuid::new_v4()), vec![]),
    ];
    for (query, want) in cases {
        let path = format!("/api/v1/movements?{query}");
        // all_pages appends its own query, so page by hand here.
        let mut got = Vec::new();
        let mut after = String::new();
        loop {
            let (status, page) = app.get(&format!("{path}&limit=1{after}")).await;
            assert_eq!(status, StatusCode::OK, "{query}: {page}");
            got.extend(ids(page["items"].as_array().unwrap().clone()));
            match page["next_after"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => break,
            }
        }
        assert_eq!(got, sorted(want), "{query}");
    }
    let (_, page) = app
        .get(&format!(
            "/api/v1/movements?status=completed&product_id={p}"
        ))
        .await;
    let view = &page["items"][0];
    assert_eq!(view["quantity_diff"], 0);
    assert_eq!(view["departure_source"], "WH-3322");
    assert_eq!(view["source_warehouse_id"], w1.to_string());

    for (query, name) in [
        ("status=lost", "status"),
        ("warehouse_id=WH-1", "warehouse_id"),
        ("product_id=x", "product_id"),
        ("departed_before=last-week", "departed_before"),
        ("limit=0", "limit"),
        ("after=zzz", "after"),
        ("status=", "status"),
        ("warehouse_id=", "warehouse_id"),
        ("departed_before=", "departed_before"),
    ] {
        let (status, body) = app.get(&format!("/api/v1/movements?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(name),
            "{query}: {body}"
        );
    }
}
