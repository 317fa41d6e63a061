//! Low-stock levels (who may set them, which one is in force) and the
//! alerts the relay publishes when a change crosses one.

use crate::broker::bootstrap;
use crate::helpers::{Ev, TestApp, post_all, spawn_app_with, stock_up};
use crate::relay::{changes_by_seq, changes_topic, read_topic};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn threshold_writes_need_the_admin_token_and_are_refused_without_one() {
    let token = "an-admin-token-for-tests";
    let app = spawn_app_with(&[("ADMIN_TOKEN", token)]).await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let pair = format!(
        "{}/api/v1/warehouses/{w}/products/{p}/threshold",
        app.address
    );
    let product = format!("{}/api/v1/products/{p}/threshold", app.address);
    let put = |url: &str, auth: Option<&str>, low: i64| {
        let mut request = app.client.put(url).json(&json!({ "low": low }));
        if let Some(auth) = auth {
            request = request.bearer_auth(auth);
        }
        request.send()
    };

    let refused = put(&pair, None, 5).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.json::<Value>().await.unwrap()["detail"].is_string());
    assert_eq!(
        put(&pair, Some("wrong-token-of-length"), 5)
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}/threshold"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(
        put(&product, Some(token), 8).await.unwrap().status(),
        StatusCode::OK
    );
    let (_, level) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}/threshold"))
        .await;
    assert_eq!(
        (level["low"].clone(), level["source"].clone()),
        (json!(8), json!("product"))
    );
    let set = put(&pair, Some(token), 5).await.unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    let (_, level) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}/threshold"))
        .await;
    assert_eq!(
        (level["low"].clone(), level["source"].clone()),
        (json!(5), json!("pair"))
    );
    assert_eq!(
        put(&pair, Some(token), -1).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );

    let delete = |url: String, auth: Option<&'static str>| {
        let mut request = app.client.delete(url);
        if let Some(auth) = auth {
            request = request.bearer_auth(auth);
        }
        request.send()
    };
    assert_eq!(
        delete(pair.clone(), None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        delete(pair.clone(), Some(token)).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete(pair.clone(), Some(token)).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let (_, level) = app
        .get(&format!("/api/v1/warehouses/{w}/products/{p}/threshold"))
        .await;
    assert_eq!(level["source"], "product");
    assert_eq!(
        delete(product.clone(), Some(token)).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let (status, _) = app.get(&format!("/api/v1/products/{p}/threshold")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Without ADMIN_TOKEN no one may write, whatever they present.
    let closed = spawn_app_with(&[]).await;
    let url = format!("{}/api/v1/products/{p}/threshold", closed.address);
    let answer = closed
        .client
        .put(url)
        .bearer_auth(token)
        .json(&json!({"low": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert_eq!(answer.json::<Value>().await.unwrap()["code"], "forbidden");
    // Presenting nothing is a missing credential there too, as documented.
    let url = format!("{}/api/v1/products/{p}/threshold", closed.address);
    let answer = closed
        .client
        .put(url)
        .json(&json!({"low": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
}

const ADMIN: &str = "an-admin-token-for-tests";

/// A service whose relay publishes to a topic of its own, of one
/// partition, with the admin token `ADMIN`.
async fn relaying_app() -> (TestApp, String) {
    let topic = changes_topic();
    let app = spawn_app_with(&[
        ("STOCK_CHANGES_TOPIC", &topic),
        ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap()),
        ("KAFKA_TOPIC_PARTITIONS", "1"),
        ("ADMIN_TOKEN", ADMIN),
    ])
    .await;
    (app, topic)
}

/// Sets the pair's own level as the admin; the answer's status.
async fn set_pair_level(app: &TestApp, w: Uuid, p: Uuid, low: i64) -> StatusCode {
    app.client
        .put(format!(
            "{}/api/v1/warehouses/{w}/products/{p}/threshold",
            app.address
        ))
        .bearer_auth(ADMIN)
        .json(&json!({ "low": low }))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_follow_each_crossing_of_the_level_with_the_changes_seq() {
    let (app, topic) = relaying_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(set_pair_level(&app, w, p, 5).await, StatusCode::OK);
    // 10, then 6 (no alert), 3 (low), 0 (depleted), 2 (none: still low),
    // 8 (restored), 0 (low and depleted), 1 (still low: nothing).
    stock_up(&app, w, p, 10).await;
    post_all(
        &app,
        w,
        p,
        &[
            ("departure", 4),
            ("departure", 3),
            ("departure", 3),
            ("arrival", 2),
            ("arrival", 6),
            ("departure", 8),
            ("arrival", 1),
        ],
    )
    .await;
    // A second pair, without a level, whose stock row a refused departure
    // created: its first arrival is no restoration though the ledger found
    // a row, and its return from 0 is one.
    let other = Uuid::new_v4();
    let (status, answer) = app.post(&Ev::new(w, other, 1).departure()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    post_all(
        &app,
        w,
        other,
        &[("arrival", 3), ("departure", 3), ("arrival", 1)],
    )
    .await;
    let records = read_topic(&bootstrap(), &topic, 1, |r| changes_by_seq(r).len() >= 11);
    let seqs: Vec<i64> = changes_by_seq(&records).keys().copied().collect();
    let alerts: Vec<(String, i64)> = records
        .iter()
        .filter(|(_, r)| r["type"] != "ru.retail.warehouses.stock.changed")
        .map(|(_, r)| {
            (
                r["type"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("ru.retail.warehouses.stock.")
                    .to_string(),
                r["data"]["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, i64)> = [
        ("low", seqs[2]),
        ("depleted", seqs[3]),
        ("restored", seqs[5]),
        ("low", seqs[6]),
        ("depleted", seqs[6]),
        ("depleted", seqs[9]),
        ("restored", seqs[10]),
    ]
    .into_iter()
    .map(|(t, s)| (t.to_string(), s))
    .collect();
    assert_eq!(alerts, expected);
    let low = records
        .iter()
        .find(|(_, r)| r["type"] == "ru.retail.warehouses.stock.low")
        .unwrap();
    assert_eq!(low.1["data"]["low"], 5);
    assert_eq!(
        (
            low.1["data"]["quantity"].clone(),
            low.1["data"]["previous_quantity"].clone()
        ),
        (json!(3), json!(6))
    );
    assert_eq!(low.1["id"], format!("stock-low-{}", seqs[2]));
}

#[tokio::test]
async fn active_alerts_list_the_pairs_below_their_level_with_the_change_that_took_them_there() {
    let token = "an-admin-token-for-tests";
    let app = spawn_app_with(&[("ADMIN_TOKEN", token)]).await;
    let (w1, w2, w3, p) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    for w in [w1, w2, w3] {
        stock_up(&app, w, p, 10).await;
    }
    // w1 below its own level, w2 at 0 under the product's, w3 above it.
    let set = |path: String, low: i64| {
        let client = app.client.clone();
        async move {
            let answer = client
                .put(path)
                .bearer_auth(token)
                .json(&json!({ "low": low }))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
        }
    };
    set(
        format!(
            "{}/api/v1/warehouses/{w1}/products/{p}/threshold",
            app.address
        ),
        8,
    )
    .await;
    set(format!("{}/api/v1/products/{p}/threshold", app.address), 5).await;
    post_all(&app, w1, p, &[("departure", 3)]).await;
    post_all(&app, w2, p, &[("departure", 10)]).await;
    post_all(&app, w3, p, &[("departure", 4)]).await;

    let (status, body) = app.get("/api/v1/alerts/active").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{body}");
    let (depleted, low) = (&items[0], &items[1]);
    assert_eq!(depleted["warehouse_id"], w2.to_string());
    assert_eq!(depleted["level"], "depleted");
    assert_eq!(depleted["threshold"], 5);
    assert_eq!(depleted["threshold_from"], "product");
    assert_eq!(low["warehouse_id"], w1.to_string());
    assert_eq!(low["level"], "low");
    assert_eq!(
        (low["quantity"].clone(), low["threshold"].clone()),
        (json!(7), json!(8))
    );
    assert_eq!(low["threshold_from"], "pair");
    // The crossing is the departure, the pair's second change.
    let (_, history) = app
        .get(&format!("/api/v1/warehouses/{w1}/products/{p}/history"))
        .await;
    assert_eq!(low["crossed_seq"], history["items"][1]["seq"], "{history}");
    assert_eq!(low["crossed_at"], history["items"][1]["applied_at"]);

    let (status, body) = app.get("/api/v1/alerts/active?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_compared_against_the_level_in_force_when_it_was_made_not_when_published() {
    let (app, topic) = relaying_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(set_pair_level(&app, w, p, 5).await, StatusCode::OK);
    stock_up(&app, w, p, 10).await;
    // A transaction of another session holds the feed back, so nothing
    // made from here on is published before the level changes.
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *holder)
        .await
        .unwrap();
    post_all(&app, w, p, &[("departure", 7)]).await; // 10 -> 3: below 5
    assert_eq!(set_pair_level(&app, w, p, 2).await, StatusCode::OK);
    post_all(&app, w, p, &[("departure", 2)]).await; // 3 -> 1: below 2
    holder.rollback().await.unwrap();

    let records = read_topic(&bootstrap(), &topic, 1, |r| changes_by_seq(r).len() >= 3);
    let seqs: Vec<i64> = changes_by_seq(&records).keys().copied().collect();
    let alerts: Vec<(String, i64, i64)> = records
        .iter()
        .filter(|(_, r)| r["type"] == "ru.retail.warehouses.stock.low")
        .map(|(_, r)| {
            let d = &r["data"];
            (
                r["id"].as_str().unwrap().to_string(),
                d["seq"].as_i64().unwrap(),
                d["low"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        alerts,
        vec![
            (format!("stock-low-{}", seqs[1]), seqs[1], 5),
            (format!("stock-low-{}", seqs[2]), seqs[2], 2),
        ]
    );
}
