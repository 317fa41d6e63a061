use crate::helpers::{Ev, TestApp, all_pages, spawn_app, spawn_app_with, stock_up};
use reqwest::StatusCode;
use uuid::Uuid;

#[tokio::test]
async fn a_pair_never_seen_has_zero_stock_on_both_paths() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    for prefix in ["warehouse", "warehouses"] {
        let (status, body) = app.get(&format!("/api/v1/{prefix}/{w}/products/{p}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["warehouse_id"], w.to_string());
        assert_eq!(body["product_id"], p.to_string());
        assert_eq!(body["quantity"], 0);
    }
}

#[tokio::test]
async fn a_malformed_warehouse_or_product_id_is_400() {
    let app = spawn_app().await;
    let (status, body) = app
        .get(&format!(
            "/api/v1/warehouse/WH-1/products/{}",
            Uuid::new_v4()
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("warehouse_id"));
    let (status, _) = app
        .get(&format!("/api/v1/warehouses/{}/products/x", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_warehouse_lists_its_stock_by_product_in_keyset_pages() {
    let app = spawn_app().await;
    let w = Uuid::new_v4();
    let mut products: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    for (i, p) in products.iter().enumerate() {
        stock_up(&app, w, *p, i as i64 + 1).await;
    }
    // Another warehouse's stock and a product sold out are not listed.
    stock_up(&app, Uuid::new_v4(), products[0], 50).await;
    let gone = Uuid::new_v4();
    stock_up(&app, w, gone, 3).await;
    app.post(&Ev::new(w, gone, 3).departure()).await;
    products.sort();

    let (status, first) = app
        .get(&format!("/api/v1/warehouses/{w}/products?limit=2"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut listed = Vec::new();
    let mut page = first;
    loop {
        for item in page["items"].as_array().unwrap() {
            listed.push(
                item["product_id"]
                    .as_str()
                    .unwrap()
                    .parse::<Uuid>()
                    .unwrap(),
            );
            assert!(item["quantity"].as_i64().unwrap() > 0);
        }
        let Some(after) = page["next_after"].as_str() else {
            break;
        };
        page = app
            .get(&format!(
                "/api/v1/warehouses/{w}/products?limit=2&after={after}"
            ))
            .await
            .1;
    }
    assert_eq!(listed, products);
}

#[tokio::test]
async fn a_limit_outside_one_to_a_thousand_is_400() {
    let app = spawn_app().await;
    let w = Uuid::new_v4();
    for limit in ["0", "1001", "ten"] {
        let (status, body) = app
            .get(&format!("/api/v1/warehouses/{w}/products?limit={limit}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{limit}");
        assert!(body["detail"].is_string());
    }
    let (status, _) = app.get("/api/v1/rejections?after=-3").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_task_paths_answer_exactly_as_their_v1_counterparts() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let arrival = Ev::new(w, p, 7);
    app.post_ok(&arrival.arrival()).await;
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
async fn stock_as_of_each_applied_moment_is_the_stock_right_after_it() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    for q in [5, 7, 11] {
        app.post_ok(&Ev::new(w, p, q).arrival()).await;
    }
    app.post_ok(&Ev::new(w, p, 4).departure()).await;
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
async fn a_warehouse_list_as_of_a_moment_shows_the_stock_it_held_then() {
    let app = spawn_app().await;
    let w = Uuid::new_v4();
    let (p1, p2) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p1, 5).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let then = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    stock_up(&app, w, p2, 7).await;
    app.post_ok(&Ev::new(w, p1, 5).departure()).await;

    let at = then.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (status, past) = app
        .get(&format!("/api/v1/warehouses/{w}/products?as_of={at}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{past}");
    assert_eq!(
        past["items"],
        serde_json::json!([{ "product_id": p1, "quantity": 5 }])
    );
    let (_, now) = app.get(&format!("/api/v1/warehouses/{w}/products")).await;
    assert_eq!(
        now["items"],
        serde_json::json!([{ "product_id": p2, "quantity": 7 }])
    );

    let (status, bad) = app
        .get(&format!("/api/v1/warehouses/{w}/products?as_of=yesterday"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["code"], "invalid_query");
}

#[tokio::test]
async fn a_warehouse_list_answers_csv_when_asked_with_a_link_to_the_next_page() {
    let app = spawn_app().await;
    let w = Uuid::new_v4();
    let mut products = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    products.sort();
    for (i, p) in products.iter().enumerate() {
        stock_up(&app, w, *p, i as i64 + 1).await;
    }
    let answer = app
        .client
        .get(format!(
            "{}/api/v1/warehouses/{w}/products?limit=2",
            app.address
        ))
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let link = answer.headers()["link"].to_str().unwrap().to_string();
    assert_eq!(
        link,
        format!(
            "</api/v1/warehouses/{w}/products?limit=2&after={}>; rel=\"next\"",
            products[1]
        )
    );
    let csv = answer.text().await.unwrap();
    assert_eq!(
        csv,
        format!(
            "warehouse_id,product_id,quantity\r\n{w},{},1\r\n{w},{},2\r\n",
            products[0], products[1]
        )
    );
}

#[tokio::test]
async fn a_moment_further_back_than_a_read_walks_is_refused_with_a_clear_400() {
    let app = spawn_app_with(&[("READ_SCAN_LIMIT", "4")]).await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    app.post_ok(&Ev::new(w, p, 10).arrival()).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let early = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    for _ in 0..5 {
        app.post_ok(&Ev::new(w, p, 1).arrival()).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let late = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    app.post_ok(&Ev::new(w, p, 1).arrival()).await;

    // Five changes after `early`: past the walk of 4.
    let (status, body) = app
        .get(&format!(
            "/api/v1/warehouses/{w}/products/{p}?as_of={early}"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "as_of_too_far_back");
    // A page of one pair walks as far as a single lookup.
    let (status, body) = app
        .get(&format!(
            "/api/v1/warehouses/{w}/products?as_of={early}&limit=1"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "as_of_too_far_back");

    // A page of four pairs walks one entry per pair: too short for it.
    let (status, body) = app
        .get(&format!(
            "/api/v1/warehouses/{w}/products?as_of={late}&limit=4"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // One change after `late`: within it, on both routes.
    let (status, body) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}?as_of={late}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["quantity"], 15);
    let (status, body) = app
        .get(&format!(
            "/api/v1/warehouses/{w}/products?as_of={late}&limit=1"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["items"],
        serde_json::json!([{ "product_id": p, "quantity": 15 }])
    );
    // A pair that did not exist yet is 0, however short the walk.
    let (status, body) = app
        .get(&format!(
            "/api/v1/warehouses/{w}/products/{p}?as_of=2000-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let fresh = Uuid::new_v4();
    app.post_ok(&Ev::new(w, fresh, 3).arrival()).await;
    let (status, body) = app
        .get(&format!(
            "/api/v1/warehouses/{w}/products/{fresh}?as_of=2000-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["quantity"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_as_of_answer_never_changes_even_for_a_write_that_waited_on_a_lock() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 5).await;
    // Another session holds the pair's stock row, so the next write waits.
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM stock WHERE warehouse_id = $1 AND product_id = $2 FOR UPDATE")
        .bind(w)
        .bind(p)
        .execute(&mut *holder)
        .await
        .unwrap();
    let departure = Ev::new(w, p, 3).departure();
    let writer = {
        let (client, url) = (
            app.client.clone(),
            format!("{}/api/v1/kafka/webhook", app.address),
        );
        tokio::spawn(async move { client.post(url).json(&departure).send().await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let moment = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let path = format!("/api/v1/warehouses/{w}/products/{p}?as_of={moment}");

    // The write that waits could still commit before this moment: no
    // answer yet, rather than one that would change.
    let (status, body) = app.get(&path).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "as_of_not_final");

    holder.rollback().await.unwrap();
    let answer = writer.await.unwrap().unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    // It was applied after it got the row, so after the moment asked.
    let (status, body) = app.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["quantity"], 5);
    let (_, now) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}"))
        .await;
    assert_eq!(now["quantity"], 2);
    let history = all_pages(
        &app,
        &format!("/api/v1/warehouses/{w}/products/{p}/history"),
        100,
    )
    .await;
    let applied = history.last().unwrap()["applied_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(applied).unwrap()
            > chrono::DateTime::parse_from_rfc3339(&moment).unwrap(),
        "{applied} after {moment}"
    );
}

#[tokio::test]
async fn a_moment_in_the_future_is_refused_at_once_with_a_clear_400() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    for path in [
        format!("/api/v1/warehouses/{w}/products/{p}?as_of=2999-01-01T00:00:00Z"),
        format!("/api/v1/warehouses/{w}/products?as_of=2999-01-01T00:00:00Z"),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], "as_of_in_future");
    }
}
