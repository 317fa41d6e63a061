use crate::helpers::{Ev, all_pages, spawn_app, spawn_app_with, stock_up};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn a_movement_is_found_by_its_movement_id_with_both_halves() {
    let app = spawn_app().await;
    let (from, to, p, m) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    stock_up(&app, from, p, 100).await;
    app.post(
        &Ev::new(from, p, 100)
            .movement(m)
            .at("2025-02-18T12:12:56Z")
            .departure(),
    )
    .await;
    let (_, in_transit) = app.get(&format!("/api/v1/movements/{m}")).await;
    assert_eq!(in_transit["status"], "in_transit");
    assert!(in_transit["arrival_time"].is_null());
    assert!(in_transit["quantity_diff"].is_null());

    app.post(
        &Ev::new(to, p, 98)
            .movement(m)
            .at("2025-02-18T14:34:56Z")
            .arrival(),
    )
    .await;
    let (status, body) = app.get(&format!("/api/v1/movements/{m}")).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["movement_id"], m.to_string());
    assert_eq!(body["product_id"], p.to_string());
    assert_eq!(body["source_warehouse_id"], from.to_string());
    assert_eq!(body["destination_warehouse_id"], to.to_string());
    assert_eq!(body["departure_time"], "2025-02-18T12:12:56Z");
    assert_eq!(body["arrival_time"], "2025-02-18T14:34:56Z");
    assert_eq!(body["departure_quantity"], 100);
    assert_eq!(body["arrival_quantity"], 98);
    assert_eq!(body["quantity_diff"], 2);
    assert_eq!(body["duration_seconds"], 8520.0);
    assert_eq!(body["status"], "completed");
    assert_eq!(app.stock(from, p).await, 0);
    assert_eq!(app.stock(to, p).await, 98);

    let (status, duration) = app.get(&format!("/api/v1/movements/{m}/duration")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(duration["duration_seconds"], 8520.0);
    assert_eq!(duration["departure_time"], "2025-02-18T12:12:56Z");
    assert_eq!(duration["arrival_time"], "2025-02-18T14:34:56Z");
}

#[tokio::test]
async fn an_arrival_before_its_departure_is_joined_when_the_departure_comes() {
    let app = spawn_app().await;
    let (from, to, p, m) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    app.post(
        &Ev::new(to, p, 10)
            .movement(m)
            .at("2025-02-18T14:00:00Z")
            .arrival(),
    )
    .await;
    let (_, arrived) = app.get(&format!("/api/v1/movements/{m}")).await;
    assert_eq!(arrived["status"], "arrived");
    assert!(arrived["source_warehouse_id"].is_null());
    let (status, body) = app.get(&format!("/api/v1/movements/{m}/duration")).await;
    // 400, as the service this one replaces answers: its clients check it.
    assert_eq!(status, StatusCode::BAD_REQUEST, "no departure, no duration");
    assert_eq!(body["code"], "movement_incomplete");

    stock_up(&app, from, p, 10).await;
    let (status, _) = app
        .post(
            &Ev::new(from, p, 10)
                .movement(m)
                .at("2025-02-18T13:00:00Z")
                .departure(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (_, body) = app.get(&format!("/api/v1/movements/{m}")).await;
    assert_eq!(body["status"], "completed");
    assert_eq!(body["duration_seconds"], 3600.0);
    assert_eq!(body["quantity_diff"], 0);
}

#[tokio::test]
async fn halves_naming_different_products_are_a_movement_mismatch() {
    let app = spawn_app().await;
    let (from, to, m) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (p1, p2) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, from, p1, 5).await;
    app.post(&Ev::new(from, p1, 5).movement(m).departure())
        .await;

    let (status, body) = app.post(&Ev::new(to, p2, 5).movement(m).arrival()).await;

    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "movement_mismatch");
    assert_eq!(app.stock(to, p2).await, 0);
    let (_, movement) = app.get(&format!("/api/v1/movements/{m}")).await;
    assert_eq!(movement["status"], "in_transit");
}

#[tokio::test]
async fn halves_at_the_same_warehouse_are_a_movement_mismatch() {
    let app = spawn_app().await;
    let (w, p, m) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    app.post(&Ev::new(w, p, 5).movement(m).arrival()).await;

    let (status, body) = app.post(&Ev::new(w, p, 5).movement(m).departure()).await;

    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "movement_mismatch");
    assert_eq!(app.stock(w, p).await, 5);
}

#[tokio::test]
async fn an_unknown_movement_is_404_and_a_malformed_id_is_400() {
    let app = spawn_app().await;
    let (status, body) = app
        .get(&format!("/api/v1/movements/{}", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["detail"].is_string());
    let (status, _) = app
        .get(&format!("/api/v1/movements/{}/duration", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = app.get("/api/v1/movements/42").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("UUID"));
}

#[tokio::test]
async fn a_movement_whose_only_event_was_rejected_does_not_exist() {
    let app = spawn_app().await;
    let (w, p, m) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (status, _) = app.post(&Ev::new(w, p, 5).movement(m).departure()).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, _) = app.get(&format!("/api/v1/movements/{m}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_movement_names_the_source_of_each_half_and_null_while_it_is_unseen() {
    let app = spawn_app().await;
    let (from, to, p) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, from, p, 10).await;
    let movement = Uuid::new_v4();
    let mut departure = Ev::new(from, p, 4).movement(movement).departure();
    departure["source"] = json!("WH-1001");
    app.post_ok(&departure).await;
    let (_, view) = app.get(&format!("/api/v1/movements/{movement}")).await;
    assert_eq!(view["departure_source"], "WH-1001");
    assert_eq!(view["arrival_source"], Value::Null);
    // Read again (now from the cache), and after the arrival.
    let (_, cached) = app.get(&format!("/api/v1/movements/{movement}")).await;
    assert_eq!(cached, view);
    let mut arrival = Ev::new(to, p, 4).movement(movement).arrival();
    arrival["source"] = json!("WH-2002");
    app.post_ok(&arrival).await;
    let (_, view) = app.get(&format!("/api/v1/movements/{movement}")).await;
    assert_eq!(view["departure_source"], "WH-1001");
    assert_eq!(view["arrival_source"], "WH-2002");
    assert_eq!(view["status"], "completed");
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
    app.post_ok(
        &Ev::new(w1, p, 5)
            .movement(on_road)
            .at("2025-02-18T10:00:00Z")
            .departure(),
    )
    .await;
    let done = Uuid::new_v4();
    app.post_ok(
        &Ev::new(w1, p, 6)
            .movement(done)
            .at("2025-02-18T11:00:00Z")
            .departure(),
    )
    .await;
    app.post_ok(
        &Ev::new(w2, p, 6)
            .movement(done)
            .at("2025-02-18T12:00:00Z")
            .arrival(),
    )
    .await;
    let arrived_only = Uuid::new_v4();
    app.post_ok(&Ev::new(w3, p, 2).movement(arrived_only).arrival())
        .await;
    let long_gone = Uuid::new_v4();
    app.post_ok(
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

#[tokio::test]
async fn a_filtered_movement_list_walks_a_bounded_stretch_per_page_and_still_reaches_the_end() {
    let app = spawn_app_with(&[("READ_SCAN_LIMIT", "3")]).await;
    let (busy, quiet) = (Uuid::new_v4(), Uuid::new_v4());
    for _ in 0..8 {
        app.post_ok(&Ev::new(busy, Uuid::new_v4(), 1).arrival())
            .await;
    }
    let mut wanted = vec![Uuid::new_v4(), Uuid::new_v4()];
    for m in &wanted {
        app.post_ok(&Ev::new(quiet, Uuid::new_v4(), 2).movement(*m).arrival())
            .await;
    }
    wanted.sort();

    let mut found = Vec::new();
    let mut pages = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = app
            .get(&format!(
                "/api/v1/movements?warehouse_id={quiet}&limit=100{after}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        pages.push(items.len());
        found.extend(
            items
                .iter()
                .map(|m| m["movement_id"].as_str().unwrap().to_string()),
        );
        match page["next_after"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    let wanted: Vec<String> = wanted.iter().map(Uuid::to_string).collect();
    assert_eq!(found, wanted);
    // Ten movements walked three entries a page: at least four pages, some
    // short of their limit but with a next one.
    assert!(pages.len() >= 4, "{pages:?}");
    // Unfiltered, the same walk lists all ten, in order, to the end.
    let everything = all_pages(&app, "/api/v1/movements", 100).await;
    assert_eq!(everything.len(), 10);
}
